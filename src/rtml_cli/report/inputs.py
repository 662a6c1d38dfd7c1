"""What a report is made of: rtml's own outputs, recognised by what they say they are.

An input is a JSON document printed with ``--format json`` (it names its ``kind`` and
``schema``), a RESULTS Parquet file of ``rtml simulate --out`` (its Parquet metadata has
``rtml.protocol`` and ``rtml.k``), a precompute run directory (``manifest.json``) or a
precompute ROOT (its ``latest`` run), or a directory holding any of these. A file named on
the command line that is none of them is refused (``DataError``, exit 65, naming it); inside
a directory such files are skipped, since a directory also holds logs, indexes and plots.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtml_cli.errors import DataError, InputMissing
from rtml_cli.fsutil import is_parquet_file
from rtml_cli.output import SCHEMAS

#: The kinds the report has a section for; other rtml documents are refused by name.
USED_KINDS = (
    "simulate",
    "evaluate bandits",
    "evaluate ope",
    "evaluate contextual",
    "retrain",
    "drift compare",
    "drift popularity",
    "data validate",
    "data import",
    "precompute",
)
#: Kinds a report covers at most once (a second one is a separate report).
SINGLE_KINDS = ("simulate", "retrain", "evaluate contextual")
RESULTS_COLUMNS = ("request_id", "session_id", "segment", "strategy", "hit", "rr", "ndcg")


@dataclass
class InputFile:
    """A file the report read: for the reproducibility appendix."""

    path: Path
    what: str
    bytes: int
    sha256: str
    command: str | None = None


@dataclass
class Document:
    """One JSON document of ``--format json``."""

    kind: str
    path: Path
    doc: dict[str, Any]


@dataclass
class Results:
    """A RESULTS Parquet file: one row per request and strategy."""

    path: Path
    protocol: str
    k: int
    frame: Any  # polars.DataFrame with RESULTS_COLUMNS (+ latency_us)

    @property
    def strategies(self) -> list[str]:
        return list(dict.fromkeys(self.frame["strategy"].to_list()))

    @property
    def requests(self) -> int:
        return int(self.frame["request_id"].n_unique())


@dataclass
class Run:
    """A published precompute run (its manifest)."""

    path: Path
    manifest: dict[str, Any]


@dataclass
class Inputs:
    """Everything given to one report, checked for consistency."""

    files: list[InputFile] = field(default_factory=list)
    documents: list[Document] = field(default_factory=list)
    results: Results | None = None
    runs: list[Run] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)

    def of(self, kind: str) -> list[Document]:
        return [d for d in self.documents if d.kind == kind]

    def one(self, kind: str) -> Document | None:
        docs = self.of(kind)
        return docs[0] if docs else None

    @property
    def simulate(self) -> dict[str, Any] | None:
        doc = self.one("simulate")
        return doc.doc if doc else None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_inputs(paths: list[str | os.PathLike[str]]) -> Inputs:
    """Read and check every input; raises ``InputMissing`` (66) or ``DataError`` (65)."""
    if not paths:
        raise InputMissing("no inputs: give rtml's JSON documents, RESULTS or directories")
    inputs = Inputs()
    seen: set[Path] = set()
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise InputMissing(f"input {path} does not exist")
        if path.is_dir():
            found = _load_directory(path, inputs, seen)
            if not found:
                raise InputMissing(
                    f"input directory {path} holds no rtml output (JSON documents of "
                    "--format json, RESULTS Parquet, precompute runs)"
                )
        elif not _load_file(path, inputs, seen, strict=True):
            raise DataError(f"input {path} is not an rtml output")  # pragma: no cover
    _check(inputs)
    return inputs


def _load_directory(root: Path, inputs: Inputs, seen: set[Path]) -> int:
    run = _run_dir(root)
    if run is not None:
        return int(_add_run(run, inputs, seen))
    found = 0
    for here, dirs, files in os.walk(root, followlinks=False):
        base = Path(here)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        run = _run_dir(base) if base != root else None
        if run is not None:
            # a run directory, or a precompute ROOT: its latest run only (older runs are
            # history, not this report)
            found += int(_add_run(run, inputs, seen))
            dirs[:] = []
            continue
        for name in sorted(files):
            if name.startswith(".") or not name.endswith((".json", ".parquet")):
                continue
            if _load_file(base / name, inputs, seen, strict=False):
                found += 1
            else:
                inputs.skipped.append(base / name)
    return found


def _run_dir(path: Path) -> Path | None:
    """``path`` itself when it is a run directory; ROOT's ``latest`` run; else None."""
    if (path / "manifest.json").is_file():
        return path
    latest = path / "latest"
    if latest.is_symlink() and (latest / "manifest.json").is_file():
        return latest.resolve()
    return None


def _add_run(run: Path, inputs: Inputs, seen: set[Path]) -> bool:
    manifest_path = run / "manifest.json"
    real = manifest_path.resolve()
    if real in seen:
        return True
    seen.add(real)
    manifest = _read_json(manifest_path)
    if not isinstance(manifest, dict) or "as_of" not in manifest:
        raise DataError(f"{manifest_path} is not a precompute manifest (no as_of)")
    manifest.setdefault("run_id", run.name)
    inputs.runs.append(Run(run, manifest))
    inputs.files.append(_file(manifest_path, "precompute manifest"))
    return True


def _file(path: Path, what: str, command: Any = None) -> InputFile:
    return InputFile(
        path,
        what,
        path.stat().st_size,
        sha256(path),
        command if isinstance(command, str) else None,
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"input {path} is not a JSON document (not UTF-8 text)") from None
    except ValueError as exc:
        raise DataError(f"input {path} is not a JSON document ({exc})") from None
    except OSError as exc:
        raise DataError(f"cannot read input {path}: {exc.strerror}") from None


def _load_file(path: Path, inputs: Inputs, seen: set[Path], *, strict: bool) -> bool:
    """Add ``path``; False (inside a directory) or ``DataError`` (named) when it is not rtml's."""
    real = path.resolve()
    if real in seen:
        return True
    if path.name == "manifest.json":
        return _add_run(path.parent, inputs, seen)
    if path.suffix == ".parquet" or (strict and is_parquet_file(path)):
        results = _read_results(path, strict=strict)
        if results is None:
            return False
        if inputs.results is not None:
            raise DataError(
                f"input {path} is a second RESULTS file (first: {inputs.results.path}): a "
                "report covers one replay; make one report per replay"
            )
        seen.add(real)
        inputs.results = results
        inputs.files.append(_file(path, "RESULTS"))
        return True
    if not strict and path.suffix != ".json":
        return False
    try:
        doc = _read_json(path)
    except DataError:
        if strict:
            raise
        return False
    document = _document(path, doc, strict=strict)
    if document is None:
        return False
    seen.add(real)
    if document.kind in SINGLE_KINDS:
        first = inputs.one(document.kind)
        if first is not None:
            raise DataError(
                f"input {path} is a second `{document.kind}` document (first: {first.path}): "
                "a report covers one of each; make one report per run"
            )
    inputs.documents.append(document)
    inputs.files.append(_file(path, f"{document.kind} document", doc.get("command")))
    return True


def _document(path: Path, doc: Any, *, strict: bool) -> Document | None:
    kind = doc.get("kind") if isinstance(doc, dict) else None
    if not isinstance(kind, str) or kind not in SCHEMAS or "schema" not in doc:
        if strict:
            raise DataError(
                f'input {path} is not an rtml document (no known "kind" and "schema"): '
                "give the output of an rtml command's --format json"
            )
        return None
    if doc["schema"] != SCHEMAS[kind]:
        raise DataError(
            f"input {path} is a `{kind}` document of schema {doc['schema']!r}; this rtml reads "
            f"schema {SCHEMAS[kind]}: rerun the command with this version"
        )
    if kind not in USED_KINDS:
        if strict:
            raise DataError(
                f"input {path} is a `{kind}` document, which the report does not use (it reads: "
                f"{', '.join(USED_KINDS)})"
            )
        return None
    return Document(kind, path, doc)


def _read_results(path: Path, *, strict: bool) -> Results | None:
    import pyarrow.parquet as pq

    if not is_parquet_file(path):
        if strict:
            raise DataError(f"input {path} is not a Parquet file")
        return None
    try:
        meta = pq.read_metadata(path).metadata or {}
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad footer
        if strict:
            raise DataError(f"cannot read input {path}: {exc}") from None
        return None
    protocol = meta.get(b"rtml.protocol")
    if protocol is None:
        if strict:
            raise DataError(
                f"input {path} is a Parquet file but not RESULTS of `rtml simulate --out` (no "
                "rtml.protocol in its metadata)"
            )
        return None
    import polars as pl

    columns = pq.read_schema(path).names
    missing = [c for c in RESULTS_COLUMNS if c not in columns]
    if missing:
        raise DataError(f"RESULTS {path} lacks the column(s) {', '.join(missing)}")
    wanted = [*RESULTS_COLUMNS, *(["latency_us"] if "latency_us" in columns else [])]
    try:
        frame = pl.read_parquet(path, columns=wanted)
        k = int(meta.get(b"rtml.k", b"0").decode() or 0)
    except Exception as exc:  # noqa: BLE001 - a damaged file: one line naming it
        raise DataError(f"cannot read RESULTS {path}: {exc}") from None
    return Results(path, protocol.decode(), k, frame)


def _check(inputs: Inputs) -> None:
    """A simulate document and RESULTS must describe the same replay."""
    sim = inputs.one("simulate")
    results = inputs.results
    if sim is None or results is None:
        return
    info = sim.doc.get("info") or {}
    doc_strategies = list(dict.fromkeys(r["strategy"] for r in sim.doc.get("summary") or []))
    problems = []
    if set(doc_strategies) != set(results.strategies):
        problems.append(
            f"strategies {', '.join(results.strategies)} vs {', '.join(doc_strategies)}"
        )
    if info.get("protocol") and info["protocol"] != results.protocol:
        problems.append(f"protocol {results.protocol} vs {info['protocol']}")
    if info.get("k") and results.k and int(info["k"]) != results.k:
        problems.append(f"K {results.k} vs {info['k']}")
    if info.get("requests") is not None and int(info["requests"]) != results.requests:
        problems.append(f"{results.requests:,} requests vs {int(info['requests']):,}")
    if problems:
        raise DataError(
            f"RESULTS {results.path} does not match the simulate document {sim.path}: "
            f"{'; '.join(problems)}; give the RESULTS that run wrote (its --out)"
        )
