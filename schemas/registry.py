"""The set of schema files, the lock file, and the immutability check CI runs."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from ragindex.fsutil import atomic_write_text
from ragindex.schemas.chunker import SchemaError, SchemaFile, parse_ref
from ragindex.schemas.location import Located, schemas_root

PACKAGE_DIR = Path(__file__).resolve().parent
# The schema new tenants get. Tenants pinned to an older default keep it until `ragindex migrate`.
# default@3 (issue 26), searched in hybrid-ctx: see ragindex.search.searcher.SCHEMA_MODES and README.
DEFAULT_SCHEMA = "default@3"


@dataclass(frozen=True)
class CheckProblem:
    ref: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.ref}: {self.problem} -> {self.fix}"


class SchemaRegistry:
    """Schema files in ``<root>/chunkers/`` and the lock file ``<root>/chunkers.lock``.

    ``root`` defaults to the project's (``$RAGINDEX_SCHEMAS``, else ``./schemas`` with a
    ``chunkers.lock``), else the schemas shipped with ragindex, which are read-only:
    ``lock`` refuses to write into the installed package (see ``ragindex.schemas.location``).
    """

    def __init__(self, root: Path | None = None) -> None:
        self.location = Located(Path(root), True, "given") if root else schemas_root()
        self.root = self.location.path
        self.dir = self.root / "chunkers"
        self.lock_path = self.root / "chunkers.lock"

    def files(self) -> dict[str, SchemaFile]:
        """Every schema file, validated, by ref. Raises SchemaError on the first bad file."""
        out = {}
        for path in sorted(self.dir.glob("*.toml")):
            sf = SchemaFile.load(path)
            out[sf.ref] = sf
        return out

    def get(self, ref: str) -> SchemaFile:
        """Load one schema by ``NAME@VERSION``."""
        name, version = parse_ref(ref)
        path = self.dir / f"{name}.v{version}.toml"
        if not path.exists():
            known = ", ".join(sorted(self.files())) or "none"
            raise SchemaError(f"no schema {ref} (looked for {path}); known: {known}")
        return SchemaFile.load(path)

    def runnable(self, ref: str) -> SchemaFile:
        """Load a schema for indexing: a published one must still match its locked fingerprint.

        A published NAME@VERSION edited in place would silently give different
        chunks under the same name (and re-embed a tenant); it is refused here as
        it is by ``schemas check``. A schema not published yet may run (try it
        before ``ragindex schemas lock``).
        """
        sf = self.get(ref)
        locked = self.lock().get(sf.ref)
        if locked is not None and locked != sf.fingerprint():
            name, version = parse_ref(sf.ref)
            raise SchemaError(f"schema {sf.ref} was changed after it was published (lock {locked[:12]}, file "
                              f"{sf.fingerprint()[:12]}), so it cannot run: restore {sf.path.name}, put the change in "
                              f"{name}.v{version + 1}.toml and run `ragindex schemas lock`")
        return sf

    def lock(self) -> dict[str, str]:
        """The published fingerprints, ref -> sha256."""
        if not self.lock_path.exists():
            return {}
        try:
            return dict(tomllib.loads(self.lock_path.read_text(encoding="utf-8")))
        except tomllib.TOMLDecodeError as exc:
            raise SchemaError(f"{self.lock_path}: corrupt lock file: {exc}") from exc

    def check(self) -> list[CheckProblem]:
        """Published schemas must be unchanged and every schema must be published."""
        locked = self.lock()
        files = self.files()
        problems = []
        for ref, fp in sorted(locked.items()):
            sf = files.get(ref)
            if sf is None:
                problems.append(CheckProblem(ref, "published schema file is missing", f"restore {self.dir}/{ref.replace('@', '.v')}.toml"))
            elif sf.fingerprint() != fp:
                name, version = parse_ref(ref)
                problems.append(
                    CheckProblem(
                        ref,
                        f"changed after publication (lock {fp[:12]}, now {sf.fingerprint()[:12]}): "
                        "its file or its kind's implementation differs",
                        f"bump the version: restore {sf.path.name}, put the change in {name}.v{version + 1}.toml, "
                        "then run `ragindex schemas lock` and `ragindex eval record`",
                    )
                )
        for ref in sorted(set(files) - set(locked)):
            problems.append(CheckProblem(ref, "not published in chunkers.lock", "run `ragindex schemas lock`"))
        return problems

    def publish(self) -> list[str]:
        """Record fingerprints of schemas not yet locked; refuse if a locked one changed."""
        changed = [p for p in self.check() if "not published" not in p.problem]
        if changed:
            raise SchemaError("refusing to lock: published schemas changed:\n  " + "\n  ".join(map(str, changed)))
        locked = self.lock()
        files = self.files()
        new = sorted(set(files) - set(locked))
        if new:
            locked.update({ref: files[ref].fingerprint() for ref in new})
            body = "# NAME@VERSION = fingerprint. Written by `ragindex schemas lock`; published schemas are immutable.\n"
            body += "".join(f'"{ref}" = "{fp}"\n' for ref, fp in sorted(locked.items()))
            self.location.require_writable("`ragindex schemas lock`")
            atomic_write_text(self.lock_path, body)
        return new
