"""``ragindex eval [run|record|diff]``: retrieval evaluation and the CI regression gate."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ragindex.cli.root import EXIT_CHECK, SEARCH_MODES, _emit, _errors, json_option, main, pass_ctx, tenant_option
from ragindex.project import DATA_ROOT_ENV

data_root_option = click.option("--data-root", envvar=DATA_ROOT_ENV, type=click.Path(file_okay=False, path_type=Path),
                                help="Folder holding the presets scifact/ and chroma_chunking/ (default ../shared/data).")
baselines_option = click.option("--baselines", envvar="RAGINDEX_BASELINES", type=click.Path(file_okay=False, path_type=Path),
                                help="Baselines folder (default benchmarks/baselines in the repository).")


def _progress(msg: str) -> None:
    click.echo(msg, err=True)


mode_option = click.option("--mode", type=click.Choice(list(SEARCH_MODES)),
                           help="Retrieval mode (default: the default configuration's when no --chunker is given, else dense).")


def _run(ctx, dataset, chunker, whole_docs, k, data_root, as_json, markdown, mode=None):
    from ragindex.evaluate import datasets, report
    from ragindex.evaluate.gate import GateConfig, default_configuration
    from ragindex.evaluate.runner import evaluate
    from ragindex.schemas import SchemaRegistry

    if chunker and whole_docs:
        raise click.UsageError("give --chunker or --whole-docs, not both")
    ds = datasets.load(dataset, data_root)
    default_ref, default_mode = default_configuration()
    if mode is None:  # no --mode: the default configuration's mode, unless a chunker was chosen (its baseline is dense)
        mode = default_mode if not chunker else "dense"
    schema = None if whole_docs else SchemaRegistry().get(chunker or default_ref)
    res = evaluate(ds, schema, GateConfig(data_root=data_root, model=ctx.model or "default", progress=_progress).embedder_for(dataset),
                   k, mode=mode)
    if markdown:
        Path(markdown).write_text(report.render_result(res, md=True), encoding="utf-8")
    _emit(res.to_dict(), as_json, lambda _: click.echo(report.render_result(res), nl=False))


@main.group("eval", invoke_without_command=True)
@click.option("--dataset", "-d", help="Preset (scifact, chroma) or a dataset folder; runs `eval run` with these options.")
@click.option("--chunker", "-c", help="Chunker schema NAME@VERSION (default: the default configuration's).")
@click.option("--whole-docs", is_flag=True, help="Embed whole documents instead of chunks.")
@click.option("-k", default=5, show_default=True, type=click.IntRange(1, 1000), help="Chunks retrieved per question (span datasets).")
@mode_option
@data_root_option
@json_option
@pass_ctx
@click.pass_context
@_errors
def eval_group(click_ctx, ctx, dataset, chunker, whole_docs, k, mode, data_root, as_json):
    """Retrieval quality of a chunker on golden sets, and the regression gate CI runs.

    \b
    Example: ragindex eval --dataset chroma --chunker recursive-250@1 --json
    """
    if click_ctx.invoked_subcommand is None:
        if not dataset:
            click.echo(click_ctx.get_help())
            return
        _run(ctx, dataset, chunker, whole_docs, k, data_root, as_json, None, mode)


@eval_group.command("run")
@click.option("--dataset", "-d", required=True, help="Preset (scifact, chroma) or a dataset folder (BEIR or span set).")
@click.option("--chunker", "-c", help="Chunker schema NAME@VERSION (default: the default configuration's).")
@click.option("--whole-docs", is_flag=True, help="Embed whole documents instead of chunks.")
@click.option("-k", default=5, show_default=True, type=click.IntRange(1, 1000), help="Chunks retrieved per question (span datasets).")
@mode_option
@data_root_option
@click.option("--markdown", type=click.Path(dir_okay=False), help="Also write the result as a markdown table to this file.")
@json_option
@pass_ctx
@_errors
def eval_run(ctx, dataset, chunker, whole_docs, k, mode, data_root, markdown, as_json):
    """Evaluate one chunker (or whole documents) in one retrieval mode on one dataset; re-embeds only texts not cached.

    Example: ragindex eval run --dataset scifact --whole-docs --mode hybrid
    """
    _run(ctx, dataset, chunker, whole_docs, k, data_root, as_json, markdown, mode)


@eval_group.command("tenant")
@tenant_option
@click.option("--generation", "-g", help="Generation to score (default: the live one).")
@click.option("-k", default=5, show_default=True, type=click.IntRange(1, 1000), help="Chunks retrieved per question (span sets).")
@json_option
@pass_ctx
@_errors
def eval_tenant(ctx, tenant, generation, k, as_json):
    """Score a tenant's generation on the tenant's own eval set (set with `tenants add --eval-set`).

    This is the score the `quality_not_worse` check compares before each promotion.
    Only the tenant's own index and texts are searched.

    Example: ragindex eval tenant --tenant acme --json
    """
    out = ctx.tenant(tenant).evaluate(generation, k=k)
    gen, eval_set = out["generation"], out["eval_set"]

    def human(o):
        click.echo(f"{tenant} generation {gen} on {eval_set}:")
        for name, value in o["metrics"].items():
            click.echo(f"  {name:<16} {value:.4f}")

    _emit(out, as_json, human)


@eval_group.command("record")
@click.option("--schema", "refs", multiple=True, help="Schema NAME@VERSION to record (repeatable; default: every gated schema).")
@click.option("--dataset", default="chroma", show_default=True, help="Dataset for a new baseline (an existing one keeps its own).")
@click.option("-k", default=5, show_default=True, type=click.IntRange(1, 1000), help="Chunks retrieved per question, for a new baseline.")
@click.option("--accept-regression", metavar="REASON", help="Record a regression on purpose; the reason is kept in the baseline.")
@click.option("--mode", type=click.Choice(list(SEARCH_MODES)), default="dense", show_default=True,
              help="Retrieval mode of the baseline (benchmarks/baselines/NAME@VERSION[+MODE].json).")
@baselines_option
@data_root_option
@json_option
@pass_ctx
@_errors
def eval_record(ctx, refs, dataset, k, accept_regression, mode, baselines, data_root, as_json):
    """Write or refresh a baseline, benchmarks/baselines/<NAME@VERSION>[+MODE].json, keeping the diff against the old one.

    Without --schema: every gated schema (dense) and the default configuration.

    Example: ragindex eval record --schema recursive-250@1 --mode hybrid
    """
    from ragindex.evaluate.gate import GATED, GateConfig, default_configuration, record

    cfg = GateConfig(baselines=baselines, data_root=data_root, model=ctx.model or "default", progress=_progress)
    todo = [(ref, mode) for ref in refs] if refs else list(dict.fromkeys([(ref, "dense") for ref in GATED] + [default_configuration()]))
    out = []
    for ref, m in todo:
        b = record(ref, cfg, dataset, k, accept_regression, mode=m)
        out.append({key: b[key] for key in ("schema", "mode", "dataset", "chunker_fingerprint", "metrics", "tolerances",
                                            "accepted_regression")} | {"regressions": (b["previous"] or {}).get("regressions", [])})

    def human(rows):
        for r in rows:
            ms = "  ".join(f"{m} {100 * v:.2f}" for m, v in r["metrics"].items())
            click.echo(f"recorded {r['schema']} ({r['mode']}) on {r['dataset']}: {ms}")
            if r["regressions"]:
                click.echo(f"  worse than the previous baseline on {', '.join(r['regressions'])}"
                           + (f"; accepted: {r['accepted_regression']}" if r["accepted_regression"] else
                              "; `eval diff` fails until it is re-recorded with --accept-regression REASON"))

    _emit(out, as_json, human)


@eval_group.command("diff")
@click.option("--schema", "refs", multiple=True,
              help="Only these configurations, NAME@VERSION or NAME@VERSION+MODE (default: every baseline).")
@click.option("--mode", type=click.Choice(list(SEARCH_MODES)), help="Only the baselines of this retrieval mode.")
@click.option("--markdown", type=click.Path(dir_okay=False), help="Also write the report as markdown (e.g. a PR comment).")
@click.option("--against", help="Compare the one --schema configuration with this recorded one (NAME@VERSION[+MODE]): "
                                "both means and the difference with 95% bootstrap intervals, and the study's published "
                                "rows; nothing is evaluated and the gate is not run.")
@baselines_option
@data_root_option
@json_option
@pass_ctx
@_errors
def eval_diff(ctx, refs, mode, markdown, against, baselines, data_root, as_json):
    """The CI gate: skip unchanged schemas, evaluate changed ones, fail on regressions (exit 5).

    \b
    Example: ragindex eval diff --markdown gate.md
    Example: ragindex eval diff --schema default@3+hybrid-ctx --against default@2+hybrid
    """
    from ragindex.evaluate import report
    from ragindex.evaluate.gate import GateConfig, diff

    if against:
        from ragindex.evaluate import compare
        from ragindex.evaluate.gate import baseline_path, load_baseline, parse_config

        if len(refs) != 1:
            raise click.UsageError("--against compares one configuration: give exactly one --schema")
        new, old = (load_baseline(baseline_path(parse_config(r)[0], baselines, parse_config(r)[1])) for r in (refs[0], against))
        c = compare.compare(new, old, data_root)  # None: found per data set (project, then ../shared/data)
        if markdown:
            Path(markdown).write_text(compare.render(c, md=True), encoding="utf-8")
        _emit(c, as_json, lambda c: click.echo(compare.render(c), nl=False))
        return

    verdicts = diff(GateConfig(baselines=baselines, data_root=data_root, model=ctx.model or "default", progress=_progress),
                    list(refs) or None, mode=mode)
    if markdown:
        Path(markdown).write_text(report.render(verdicts, md=True), encoding="utf-8")
    _emit(report.verdicts_json(verdicts), as_json, lambda _: click.echo(report.render(verdicts), nl=False))
    if not all(v.ok for v in verdicts):
        sys.exit(EXIT_CHECK)
