"""The data section (what was replayed and validated) and the reproducibility appendix."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

from rtml_cli.report.context import Context
from rtml_cli.report.model import Para, Section, Table
from rtml_cli.report.replay import replay_data

LIBRARIES = (
    "typer",
    "rich",
    "polars",
    "duckdb",
    "numpy",
    "scipy",
    "pyarrow",
    "annoy",
    "jinja2",
    "matplotlib",
)


def data_section(ctx: Context) -> Section:
    blocks: list[Any] = list(replay_data(ctx))
    for document in ctx.inputs.of("data validate"):
        doc = document.doc
        summary = doc.get("summary") or {}
        span = summary.get("time_range") or ["?", "?"]
        blocks.append(
            Para(
                f"`{doc.get('path')}` ({doc.get('contract')} contract): "
                f"{'valid' if doc.get('valid') else 'INVALID'}, {doc.get('rows', 0):,} rows"
                + (
                    f", {summary.get('sessions', 0):,} sessions, {summary.get('users', 0):,} "
                    f"users, {summary.get('items', 0):,} items, from {span[0]} to {span[1]}"
                    if summary.get("sessions") is not None
                    else ""
                )
                + f"; {len(doc.get('problems') or [])} problems."
            )
        )
        for problem in doc.get("problems") or []:
            text = problem if isinstance(problem, str) else problem.get("message", str(problem))
            blocks.append(Para(f"validation: {text}", "warning"))
    for document in ctx.inputs.of("data import"):
        doc = document.doc
        blocks.append(
            Para(
                f"Imported `{doc.get('source')}` ({doc.get('format')}) as the "
                f"{doc.get('contract')} contract: {doc.get('rows', 0):,} rows from "
                f"{doc.get('ts_min')} to {doc.get('ts_max')}."
            )
        )
        for warning in doc.get("warnings") or []:
            blocks.append(Para(f"import: {warning}", "warning"))
    for document in ctx.inputs.of("precompute"):
        for warning in document.doc.get("warnings") or []:
            blocks.append(Para(f"precompute: {warning}", "warning"))
    runs = _runs(ctx)
    if runs:
        blocks.append(
            Table(
                "Batch runs (Stage 1)",
                ["run", "as-of", "mode", "events used", "items", "users", "index recall@10"],
                runs,
                numeric=[False, False, False, True, True, True, True],
            )
        )
    if not blocks:
        blocks.append(
            Para(
                "No data summary: pass `rtml data validate EVENTS --format json`, the simulate "
                "document or a precompute run.",
                "missing",
            )
        )
    return Section("data", "Data", blocks)


def _runs(ctx: Context) -> list[list[str]]:
    rows = []
    seen = set()
    manifests = [(r.manifest, str(r.path)) for r in ctx.inputs.runs]
    manifests += [(d.doc, str(d.path)) for d in ctx.inputs.of("precompute")]
    for manifest, _ in manifests:
        run_id = manifest.get("run_id")
        if run_id in seen:
            continue
        seen.add(run_id)
        counts = manifest.get("rows") or {}
        rows.append(
            [
                str(run_id),
                str(manifest.get("as_of")),
                str(manifest.get("mode")),
                f"{counts.get('events_read_for_model', 0):,}",
                f"{counts.get('items', 0):,}",
                f"{counts.get('users', 0):,}",
                str((manifest.get("index") or {}).get("recall_at_10", "–")),
            ]
        )
    return rows


def versions() -> list[list[str]]:
    from rtml_cli import __version__

    rows = [["rtml", __version__], ["python", platform.python_version()]]
    for name in LIBRARIES:
        try:
            rows.append([name, metadata.version(name)])
        except metadata.PackageNotFoundError:
            rows.append([name, "not installed"])
    return rows


def _seeds(ctx: Context) -> list[list[str]]:
    rows = [["rtml report (bootstrap)", str(ctx.options.seed)]]
    for document in ctx.inputs.documents:
        doc = document.doc
        seed = doc.get("seed")
        if seed is None:
            seed = (doc.get("info") or {}).get("seed")
        if seed is None:
            seed = (doc.get("params") or {}).get("seed")
        if seed is not None:
            rows.append([f"{document.kind} ({document.path.name})", str(seed)])
    for run in ctx.inputs.runs:
        seed = (run.manifest.get("params") or {}).get("seed")
        if seed is not None:
            rows.append([f"precompute run {run.manifest.get('run_id')}", str(seed)])
    return rows


def _as_of(ctx: Context) -> list[list[str]]:
    rows = []
    sim = ctx.inputs.simulate
    if sim is not None:
        info = sim.get("info") or {}
        rows.append(["replay (simulate)", f"{info.get('as_of')}"])
    for run in ctx.inputs.runs:
        rows.append(
            [f"precompute run {run.manifest.get('run_id')}", str(run.manifest.get("as_of"))]
        )
    for document in ctx.inputs.of("precompute"):
        rows.append([f"precompute ({document.path.name})", str(document.doc.get("as_of"))])
    return rows


def appendix_section(ctx: Context) -> Section:
    files = [
        [str(f.path), f.what, f"{f.bytes:,}", f.command or "not recorded", f.sha256]
        for f in ctx.inputs.files
    ]
    blocks: list[Any] = []
    if ctx.options.command:
        blocks.append(Para(f"This report: `{ctx.options.command}`"))
    blocks += [
        Table(
            "Inputs",
            ["file", "what", "bytes", "command line", "SHA-256"],
            files,
            note="Command lines are recorded in the JSON documents of rtml 0.1.0 and later "
            "(`command`); older documents say 'not recorded'.",
            numeric=[False, False, True, False, False],
        ),
        Table("Versions (this report)", ["package", "version"], versions()),
    ]
    recorded: dict[str, set[str]] = {}
    for run in ctx.inputs.runs:
        for name, version in (run.manifest.get("versions") or {}).items():
            recorded.setdefault(name, set()).add(str(version))
    if recorded:
        blocks.append(
            Table(
                "Versions recorded by the precompute runs",
                ["package", "version"],
                [[name, ", ".join(sorted(v))] for name, v in sorted(recorded.items())],
            )
        )
    as_of = _as_of(ctx)
    if as_of:
        blocks.append(Table("As-of", ["what", "as-of (UTC)"], as_of))
    blocks.append(Table("Seeds", ["what", "seed"], _seeds(ctx)))
    if ctx.inputs.skipped:
        blocks.append(
            Para(
                f"{len(ctx.inputs.skipped)} file(s) in the input directories are not rtml "
                "documents and were skipped: "
                + ", ".join(f"`{p}`" for p in ctx.inputs.skipped[:20])
                + (" …" if len(ctx.inputs.skipped) > 20 else "")
            )
        )
    return Section("appendix", "Reproducibility", blocks)
