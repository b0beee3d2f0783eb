"""Shared pieces of the ``ragindex`` command line: the root group, its context, options, errors and output.

Exit codes (``ragindex.errors``, with the error types they stand for): 0 ok, 1 error
(message on stderr; a JSON error object on stdout with --json), 2 usage, 3 over budget
(nothing changed), 4 tenant busy (another writer holds its lock), 5 a check failed,
6 verify --repair found damage and repaired it, 7 a run would delete more documents
than allowed (nothing changed).

Every command group lives in its own module of this package and imports what it
needs from here; nothing here imports a command module (``ragindex.cli`` puts
them together), so the CLI has no import cycle.
"""
from __future__ import annotations

import functools
import json
import os
import sys

import click

from ragindex import arguments
from ragindex.errors import (  # noqa: F401  (the command modules import the exit codes from here)
    EXIT_BUDGET,
    EXIT_BUSY,
    EXIT_CHECK,
    EXIT_CODES,
    EXIT_DELETIONS,
    EXIT_ERROR,
    EXIT_REPAIRED,
)

# Commands that write a tenant: a failed write there leaves the live generation as it was.
WRITERS = {"reindex", "rollback", "gc", "compact", "verify", "tenants_remove", "migrate"}
# The search modes `--mode` offers: ragindex.search.hybrid.MODES, written out so `--help` imports no search code
# (tests/cli/test_hardening.py checks that the two agree).
SEARCH_MODES = ("dense", "bm25", "hybrid", "hybrid-ctx")


def _emit(obj, as_json: bool, human) -> None:
    if as_json:
        click.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))
    else:
        human(obj)


def fail(message: str, code: int, kind: str, as_json: bool) -> None:
    """Print an error (a JSON object on stdout with --json, a line on stderr always) and exit with ``code``."""
    if as_json:
        click.echo(json.dumps({"error": {"kind": kind, "message": message, "exit_code": code}}, indent=2, ensure_ascii=False))
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _errors(fn):
    """Expected errors become one readable line (and a JSON object with --json) and their exit code.

    An unexpected exception is a bug: it is reported as one line naming its type,
    with a hint to rerun with --debug, which shows the full traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        as_json = bool(kwargs.get("as_json"))
        ctx = click.get_current_context(silent=True)
        debug = bool(getattr(ctx.find_object(Ctx), "debug", False)) if ctx else False
        try:
            return fn(*args, **kwargs)
        except (SystemExit, click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # usage errors keep click's own message and exit code 2
        except Exception as exc:  # noqa: BLE001 - sorted into expected and unexpected below
            if debug:
                raise
            for cls, code, kind in EXIT_CODES:
                if isinstance(exc, cls):
                    fail(str(exc), code, kind, as_json)
            if isinstance(exc, OSError):  # disk full, file too large, permissions
                tail = (" nothing was promoted, the live generation is untouched. Free space or fix permissions, then rerun."
                        if fn.__name__ in WRITERS else "")
                fail(f"a file operation failed ({exc});{tail}", EXIT_ERROR, "io", as_json)
            fail(f"unexpected {type(exc).__name__}: {exc} (this is a bug; rerun with --debug for the traceback "
                 "and report it)", EXIT_ERROR, "bug", as_json)

    return wrapper


class Checked(click.ParamType):
    """A value the library's own check accepts (``check(value, name)`` from ``ragindex.arguments``), so the CLI
    refuses exactly what the Python API and the HTTP service refuse, with the same words (a usage error, exit 2).
    ``parse`` turns the command line's text into the value first (int, float), if it is not text."""

    def __init__(self, check, parse=None, name: str = "text") -> None:
        self.check, self.parse, self.name = check, parse, name

    def convert(self, value, param, ctx):
        if isinstance(value, str) and self.parse is not None:
            try:
                value = self.parse(value)
            except ValueError:
                self.fail(f"{value!r} is not a valid {self.name}", param, ctx)
        try:
            return self.check(value, param.name if param is not None else self.name)
        except ValueError as exc:  # ragindex.errors.ArgumentError
            self.fail(str(exc), param, ctx)


class FiniteFloat(Checked):
    """A finite number (no nan, no inf) not below ``minimum``: ``ragindex.arguments.number``."""

    def __init__(self, minimum: float = 0.0) -> None:
        super().__init__(lambda value, name: arguments.number(value, name, minimum), float, "number")


class Ctx:
    """What every command gets: the Python API over $RAGINDEX_HOME with the --model choice (built on first use)."""

    def __init__(self, home: str | None, model: str | None, debug: bool = False, dimensions: int | None = None) -> None:
        if home:
            os.environ["RAGINDEX_HOME"] = home
        self.model = model  # None: the tenant's setting, else the bundled default
        self.dimensions = dimensions
        self.debug = debug
        self._api = None

    @property
    def api(self):
        """The Python API (``ragindex.api.Ragindex``) over the same state directory and model choice."""
        if self._api is None:
            from ragindex.api import Ragindex  # loads torch and faiss: not for --help

            self._api = Ragindex(model=self.model, dimensions=self.dimensions)
        return self._api

    @property
    def store(self):
        return self.api.store

    def tenant(self, name: str):
        return self.api.tenant(name)

    def embedder_for(self, tenant: str | None = None):
        return self.api.embedder_for(tenant)


pass_ctx = click.make_pass_decorator(Ctx)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of text.")
wait_option = click.option("--wait", type=FiniteFloat(0), default=0, show_default=True,
                           help="Seconds to wait for another writer of the tenant (default: fail at once, exit 4).")
hits_type = Checked(arguments.hits, int, "integer")  # -k: 1 to ragindex.arguments.MAX_HITS
query_type = Checked(arguments.query)  # non-blank UTF-8 text (argv bytes that are not UTF-8 are refused, not "a bug")
tenant_option = click.option("--tenant", "-t", required=True, help="Tenant name: a-z, 0-9, '_' and '-', at most 63 characters.")


class RagindexGroup(click.Group):
    """With --json anywhere on the command line, a usage error is a JSON error object too (exit 2)."""

    def main(self, args=None, *a, **kw):
        argv = list(sys.argv[1:] if args is None else args)
        if "--json" not in argv:
            return super().main(args, *a, **kw)
        try:
            return super().main(args, *a, standalone_mode=False, **kw)
        except click.exceptions.Abort:
            fail("aborted", EXIT_ERROR, "aborted", True)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code, "usage", True)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)


@click.group(cls=RagindexGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--home", envvar="RAGINDEX_HOME", help="State directory (default: $RAGINDEX_HOME or ./.ragindex).")
@click.option("--model", envvar="RAGINDEX_MODEL", default=None,
              help="Embedding model: 'default' (bundled all-MiniLM-L6-v2), a local sentence-transformers directory, or "
                   "openai:MODEL for an OpenAI-compatible API ($OPENAI_API_KEY, $OPENAI_BASE_URL). Default: the "
                   "tenant's setting, else 'default'.")
@click.option("--dimensions", envvar="RAGINDEX_DIMENSIONS", type=click.IntRange(min=1), default=None,
              help="Output dimensions for a hosted model that supports them (the API's `dimensions`).")
@click.option("--debug", is_flag=True, envvar="RAGINDEX_DEBUG", help="Show the full traceback of an unexpected error.")
@click.pass_context
def main(ctx, home, model, dimensions, debug):
    """ragindex: a RAG indexing pipeline with versioned chunker schemas and embedding cost control.

    \b
    Typical session:
      ragindex tenants add acme --source ./docs
      ragindex plan --tenant acme          # what would be embedded, and what it costs
      ragindex reindex --tenant acme --max-cost 0.50
      ragindex search --tenant acme "how do I rotate keys?"
    """
    ctx.obj = Ctx(home, model, debug, dimensions)


# ---------------------------------------------------------------- shared renderers


def _usd(value, p: dict) -> str:
    """A plan's money figure: "unknown" when the model's price is (a null in its JSON), never $0.000000."""
    return f"${value:.6f}" if value is not None and p.get("cost_known", True) else "unknown"


def _print_conversions(c: dict) -> None:
    """The conversion lines of a plan or a result (PDF, DOCX, PPTX, HTML); nothing when no file needed one."""
    if not (c.get("files_converted") or c.get("files_from_conversion_cache") or c.get("files_failed")):
        return
    click.echo(f"  converted  {c['files_converted']} files ({c['pages_converted']} pages) in {c['convert_seconds']:.1f} s, "
               f"{c['files_from_conversion_cache']} from the conversion cache, {c['files_failed']} failed (see skipped)")
    if c.get("files_reconverted"):
        click.echo(f"  converter  changed for {c['files_reconverted']} files: {c['files_reconverted_changed']} with new text "
                   f"(chunked again), the rest unchanged ({', '.join(c.get('converters') or {})})")


def _print_plan(p: dict) -> None:
    detail = f" ({p['embedder_detail']})" if p.get("embedder_detail") else ""
    click.echo(f"plan for tenant {p['tenant']} with {p['chunker']} and {p['embedder']}{detail} on {p['device']}")
    if p.get("rebuild"):
        click.echo(f"  REBUILD    {p['rebuild']}")
    click.echo(f"  files      {p['files_seen']} seen, {p['files_read']} read (the rest unchanged since the last run)")
    _print_conversions(p.get("conversions") or {})
    click.echo(f"  documents  new {p['docs_new']}, changed {p['docs_changed']}, deleted {p['docs_deleted']}, "
               f"unchanged {p['docs_unchanged']}, skipped {p['docs_skipped']}"
               + (f", kept (unreadable) {p['docs_kept_unreadable']}" if p.get("docs_kept_unreadable") else ""))
    click.echo(f"  chunks     {p['chunks_total']} total: unchanged {p['chunks_unchanged']}, new {p['chunks_new']}, "
               f"removed {p['chunks_removed']} ({p['docs_chunked']} documents chunked, {p['docs_reused']} reused)")
    click.echo(f"  texts      {p['unique_texts']} new unique: {p['vectors_reused']} cached ({p['reused_pct']}%), "
               f"{p['duplicates_in_run']} duplicate chunks, {p['texts_to_embed']} to embed")
    click.echo(f"  tokens     {p['tokens_to_embed']:,} model tokens ({p['tokens_to_embed_cl100k']:,} cl100k_base)")
    if p.get("chunker_texts_to_embed") or not p.get("exact", True):
        click.echo(f"  chunker    {p['chunker_texts_to_embed']} pieces, {p['chunker_tokens_to_embed']:,} tokens to embed first "
                   f"(the {p['chunker']} chunker clusters on them), ~{p['chunker_est_seconds']:.1f} s, "
                   f"{_usd(p['chunker_cost_usd'], p)}")
    if not p.get("exact", True):
        click.echo("  BOUND      chunk figures are an upper bound (each piece its own chunk) until the pieces are embedded; "
                   "the budget is checked on the bound, then again on the exact chunks")
    hosted = p["device"] == "api"
    if p["truncated_chunks"]:
        fate = "are refused by the API (never truncated): this run would stop" if hosted else "will be truncated"
        click.echo(f"  WARNING    {p['truncated_chunks']} chunks exceed the model's {p['max_input_tokens']}-token input "
                   f"and {fate} ({p['truncated_to_embed']} of them to embed now); use a smaller schema")
    if p.get("eval_texts_to_embed"):
        click.echo(f"  eval set   {p['eval_texts_to_embed']} queries, {p['eval_tokens_to_embed']:,} tokens: the quality gate's, "
                   "embedded once and cached")
    if p.get("probe_tokens"):
        click.echo(f"  probe      {p['probe_tokens']} tokens: the drift probe, embedded again by every paying run")
    if p.get("total_tokens", p["tokens_to_embed"]) != p["tokens_to_embed"]:
        click.echo(f"  total      {p['total_tokens']:,} tokens sent (what --budget-tokens is checked on)")
    click.echo(f"  time       ~{p['est_seconds']:.1f} s at {p['throughput_tokens_per_s']:,.0f} tok/s ({p['throughput_source']})")
    click.echo(f"  cost       {_usd(p['cost_usd'], p)} ({p.get('price_source') or ('self-hosted on ' + p['device'])})")
    for name, usd in p["hosted_usd"].items():
        click.echo(f"             ${usd:.6f} at {name} prices")


def _skipped_summary(skipped) -> None:
    from ragindex.ingest.documents import shown

    if skipped:
        click.echo(f"skipped {len(skipped)} inputs:", err=True)
        for s in skipped[:20]:
            click.echo(f"  {shown(s.where)}: {shown(s.reason)}", err=True)  # names are data: escape control codes
        if len(skipped) > 20:
            click.echo(f"  ... and {len(skipped) - 20} more (see --json)", err=True)
