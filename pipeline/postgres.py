"""A local PostgreSQL server for a Postgres-backed Dagster instance: ``ragindex dagster postgres up|down|url``.

One folder holds everything: ``data/`` (the cluster, made by ``initdb``), ``socket/``
(the server listens on a unix socket there, no TCP port) and ``postgres.log``. The
Dagster storage URL it gives is ``postgresql+psycopg2://`` on purpose: with
SQLAlchemy 2.1 and psycopg 3 installed, a plain ``postgresql://`` URL selects psycopg 3,
whose server-side parameters break dagster-postgres's ``NOTIFY channel, :id``.

``initdb`` and ``pg_ctl`` refuse to run as root; as root every server command runs as
the ``postgres`` user (``runuser -u postgres --``) and the folder is handed to that
user, so it must be a folder the ``postgres`` user can reach (not under a private
home directory). The tests (tests/orchestration) and benchmarks/backfill.py start
their servers through this same class.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

DB = "dagster"
USER = "postgres"
# What a unix socket path may hold (sun_path is 108 bytes; "/.s.PGSQL.<port>.lock" needs about 20 of them).
MAX_SOCKET_DIR = 85


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries here (Debian: ``apt-get install postgresql-15``), or no user to run them as."""


def bin_dir() -> Path:
    """The folder of ``initdb`` and ``pg_ctl``: the newest /usr/lib/postgresql/<N>/bin, else the PATH's."""
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True):
        if (Path(d) / "initdb").exists():
            return Path(d)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise PostgresUnavailable("no PostgreSQL server binaries (initdb, pg_ctl) found: install them, "
                              "e.g. `apt-get install -y postgresql-15` on Debian")


def default_folder() -> Path:
    return Path(os.environ.get("RAGINDEX_HOME") or ".ragindex").absolute() / "postgres"


@dataclass
class LocalPostgres:
    """A PostgreSQL cluster in ``folder``, listening on ``folder/socket`` only. ``durable=False`` (tests,
    benchmarks) turns fsync off: faster, and a crash may lose the cluster."""

    folder: Path
    port: int = 5432
    db: str = DB
    durable: bool = True

    def __post_init__(self) -> None:
        self.folder = Path(self.folder).absolute()
        if len(str(self.socket)) > MAX_SOCKET_DIR:
            raise ValueError(f"{self.socket} is too long for a unix socket path ({MAX_SOCKET_DIR} characters at most): "
                             "name a shorter folder")

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def socket(self) -> Path:
        return self.folder / "socket"

    @property
    def log(self) -> Path:
        return self.folder / "postgres.log"

    def url(self) -> str:
        """The SQLAlchemy URL of the database (psycopg2 over the unix socket), for dagster.yaml's ``postgres_url``."""
        return f"postgresql+psycopg2://{USER}@/{self.db}?host={self.socket}&port={self.port}"

    def dsn(self) -> str:
        """The libpq connection string of the same database (psycopg2.connect, psql)."""
        return f"host={self.socket} port={self.port} dbname={self.db} user={USER}"

    def _as_server_user(self, *cmd: str | Path) -> list[str]:
        args = [str(c) for c in cmd]
        return ["runuser", "-u", USER, "--", *args] if os.geteuid() == 0 else args

    def _run(self, *cmd: str | Path, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run(self._as_server_user(*cmd), capture_output=True, text=True, check=False)
        if check and out.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{Path(str(cmd[0])).name} failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}"
                               + (f"\n{log}" if log else ""))
        return out

    def running(self) -> bool:
        if not (self.data / "PG_VERSION").exists():
            return False
        return self._run(bin_dir() / "pg_ctl", "-D", self.data, "status", check=False).returncode == 0

    def _prepare(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.socket.mkdir(exist_ok=True)
        if os.geteuid() != 0:
            return
        try:
            pw = pwd.getpwnam(USER)
        except KeyError:
            raise PostgresUnavailable(f"running as root, and there is no {USER!r} user to run the server as") from None
        for p in (self.folder, self.socket, *([self.data] if self.data.exists() else [])):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        if subprocess.run(["runuser", "-u", USER, "--", "test", "-w", str(self.folder)], check=False).returncode != 0:
            raise PostgresUnavailable(f"the {USER!r} user cannot write {self.folder} (a parent folder is private?): "
                                      "name a folder it can reach, e.g. under /tmp or /var/lib")

    def up(self) -> LocalPostgres:
        """Create the cluster if needed, start the server if it is not running, create the database; idempotent."""
        bins = bin_dir()
        self._prepare()
        if not (self.data / "PG_VERSION").exists():
            self._run(bins / "initdb", "-D", self.data, "-U", USER, "--auth=trust", "-E", "UTF8", "--locale=C",
                      *([] if self.durable else ["--no-sync"]))
        if not self.running():
            opts = f"-k {self.socket} -p {self.port} -c listen_addresses='' -c max_connections=200"
            if not self.durable:
                opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            self._run(bins / "pg_ctl", "-D", self.data, "-l", self.log, "-o", opts, "-w", "-t", "60", "start")
        exists = self._run(bins / "psql", "-h", self.socket, "-p", str(self.port), "-U", USER, "-d", "postgres", "-tAc",
                           f"SELECT 1 FROM pg_database WHERE datname = '{self.db}'").stdout.strip()
        if exists != "1":
            self._run(bins / "createdb", "-h", self.socket, "-p", str(self.port), "-U", USER, self.db)
        return self

    def down(self) -> bool:
        """Stop the server (fast shutdown: open sessions are ended); False if it was not running. Data stays."""
        if not self.running():
            return False
        self._run(bin_dir() / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "60", "stop")
        return True
