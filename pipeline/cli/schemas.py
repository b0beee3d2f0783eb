"""``ragindex schemas ...`` and ``ragindex chunk``: versioned chunker schemas, their lock file, a preview."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ragindex.cli.root import EXIT_CHECK, _emit, _errors, fail, json_option, main, pass_ctx
from ragindex.schemas.registry import DEFAULT_SCHEMA


@main.group()
def schemas():
    """Versioned chunker schemas (schemas/chunkers/NAME.vVERSION.toml) and their lock file.

    \b
    The project's ./schemas/ (or $RAGINDEX_SCHEMAS) is used when it has a chunkers.lock;
    otherwise the schemas shipped with ragindex, read-only (`schemas init` copies them).
    """


@schemas.command("init")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@json_option
@_errors
def schemas_init(directory, as_json):
    """Copy the shipped schemas and their lock into DIRECTORY (default ./schemas) to add your own versions.

    Example: ragindex schemas init && ragindex schemas list
    """
    import shutil
    from importlib import resources

    from ragindex.project import project_dir

    dest = Path(directory) if directory else project_dir() / "schemas"
    if (dest / "chunkers.lock").exists():
        raise FileExistsError(f"{dest} already holds a chunkers.lock; nothing copied")
    shipped = Path(str(resources.files("ragindex.schemas")))
    (dest / "chunkers").mkdir(parents=True, exist_ok=True)
    for f in sorted((shipped / "chunkers").glob("*.toml")):
        shutil.copy2(f, dest / "chunkers" / f.name)
    shutil.copy2(shipped / "chunkers.lock", dest / "chunkers.lock")
    out = {"directory": str(dest), "schemas": sorted(f.name for f in (dest / "chunkers").glob("*.toml")),
           "lock": str(dest / "chunkers.lock")}
    _emit(out, as_json, lambda o: click.echo(f"copied {len(o['schemas'])} schemas and chunkers.lock into {dest}"))


@schemas.command("list")
@json_option
@_errors
def schemas_list(as_json):
    """List schemas with kind, size, overlap, fingerprint, whether they are published, and the default.

    Example: ragindex schemas list --json
    """
    from ragindex.schemas import SchemaRegistry

    reg = SchemaRegistry()
    locked = reg.lock()
    rows = [
        {"ref": ref, "kind": sf.spec.kind, "tokenizer": sf.spec.tokenizer, "size": sf.spec.size, "overlap": sf.spec.overlap,
         "fingerprint": sf.fingerprint(), "published": ref in locked, "default": ref == DEFAULT_SCHEMA,
         "description": sf.spec.description}
        for ref, sf in reg.files().items()
    ]

    def human(rows):
        for r in rows:
            click.echo(f"{r['ref']:<20} {r['kind']:<10} {r['tokenizer']:<17} {r['size']:>5}/{r['overlap']:<4} "
                       f"{r['fingerprint'][:12]} {'published' if r['published'] else 'NOT LOCKED'}"
                       + ("  (default for new tenants)" if r["default"] else ""))

    _emit(rows, as_json, human)


@schemas.command("lock")
@json_option
@_errors
def schemas_lock(as_json):
    """Publish new schema versions into chunkers.lock; refuses if a published one changed.

    Example: ragindex schemas lock
    """
    from ragindex.schemas import SchemaRegistry

    new = SchemaRegistry().publish()
    _emit({"published": list(new)}, as_json,
          lambda o: click.echo("published: " + ", ".join(new) if new else "nothing new to publish"))


@schemas.command("check")
@json_option
@_errors
def schemas_check(as_json):
    """CI check: published schemas unchanged (file and implementation), all schemas published.

    Exits 5 naming each offending schema.

    Example: ragindex schemas check
    """
    from ragindex.schemas import SchemaRegistry

    problems = SchemaRegistry().check()
    _emit([p.__dict__ for p in problems], as_json,
          lambda ps: click.echo("\n".join(f"FAIL {p['ref']}: {p['problem']}\n     fix: {p['fix']}" for p in ps) or "ok: all schemas published and unchanged"))
    if problems:
        sys.exit(EXIT_CHECK)


@main.command()
@click.option("--schema", "schema_ref", default=DEFAULT_SCHEMA, show_default=True, help="Schema NAME@VERSION.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@pass_ctx
@_errors
def chunk(ctx, schema_ref, file, as_json):
    """Preview what a schema does to FILE: each chunk with offsets and token count.

    A schema that cuts on embeddings (kind cluster) embeds FILE's pieces with --model,
    else the bundled default model; nothing is cached or written.

    FILE may be a PDF, DOCX, PPTX or HTML file: it is converted first, and each
    chunk shows its page and heading path.

    Example: ragindex chunk --schema markdown@1 README.md
    """
    from ragindex.api import cut_document  # the CLI reaches the library through ragindex.api
    from ragindex.chunkers import build_chunker, needs_embeddings
    from ragindex.ingest.convert import is_converted
    from ragindex.ingest.documents import normalise
    from ragindex.ingest.sources import read_converted_file
    from ragindex.schemas import SchemaRegistry

    sf = SchemaRegistry().get(schema_ref)
    layout = None
    if is_converted(file.suffix):  # a PDF, DOCX, PPTX or HTML file: what its converter makes of it
        skipped: list = []
        doc = read_converted_file(file, file.name, skipped)
        if doc is None:
            fail(f"{file}: {skipped[0].reason}", 1, "input", as_json)
        text, layout = doc.text, doc.layout
    else:
        text = normalise(file.read_text(encoding="utf-8"))
    embedder = ctx.embedder_for(None) if needs_embeddings(sf.spec) else None  # --model, else the bundled default
    spans = cut_document(build_chunker(sf.spec, embed=embedder.embed if embedder else None), text, layout)
    rows = [{"i": i, "start": s.start, "end": s.end, "tokens": s.token_count, "heading_path": list(s.heading_path),
             "page": layout.page_at(s.start) if layout and layout.pages else None,
             "text": text[s.start : s.end]} for i, s in enumerate(spans)]

    def human(rows):
        click.echo(f"{sf.ref} ({sf.spec.kind}, {sf.spec.size}/{sf.spec.overlap} {sf.spec.tokenizer} tokens): {len(rows)} chunks"
                   + (f" (pieces embedded with {embedder.name})" if embedder else ""))
        for r in rows:
            preview = r["text"][:70].replace("\n", "⏎")
            page = f" p.{r['page']}" if r["page"] is not None else ""
            click.echo(f"#{r['i']:<4} [{r['start']:>7}:{r['end']:<7}] {r['tokens']:>4} tok{page}  {preview}")

    out = {"schema": sf.ref, "fingerprint": sf.fingerprint(), "chunks": rows}
    if embedder:
        out["embedder"] = embedder.name
    _emit(out if as_json else rows, as_json, human)
