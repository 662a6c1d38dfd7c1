"""``run_migrate``: the steps of ``rtml migrate``, each resumable and skippable.

Every step writes its outputs under DIR, atomically, and then records in ``DIR/migrate.json``
a fingerprint of what it was run on (its options, the inputs' paths, sizes and modification
times, and the fingerprints of the steps it reads from). A rerun reuses a step whose
fingerprint and outputs are unchanged, so a run killed in the replay resumes at the replay,
and changing ``--holdout`` reruns precompute and everything after it, not the import.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from rtml_cli.errors import InputMissing
from rtml_cli.fsutil import OutputKind, directory_output
from rtml_cli.migrate.plan import (
    STEPS,
    MigrateOptions,
    Split,
    events_span,
    fingerprint,
    input_stamp,
    plan_split,
)

MIGRATE_OUTPUT: OutputKind = directory_output("migrate")
STATE = "migrate.json"
#: Where each step writes, relative to DIR.
LAYOUT = {
    "import": {"events": "events.parquet", "document": "json/import.json"},
    "validate": {"document": "json/validate-events.json"},
    "precompute": {"artifacts": "artifacts", "document": "json/precompute.json"},
    "simulate": {"results": "results.parquet", "document": "json/simulate.json"},
    "drift": {"document": "json/drift-popularity.json"},
    "evaluate": {"document": "json/bandits-results.json"},
    "report": {"html": "report.html", "markdown": "report.md"},
}


@dataclass
class StepRecord:
    """What one step did: ``ran``, ``reused`` (done earlier with the same inputs), ``skipped``
    (--skip) or ``not needed``; its outputs and its fingerprint."""

    step: str
    status: str
    seconds: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)
    fingerprint: str | None = None
    note: str = ""


@dataclass
class MigrateResult:
    out: Path
    split: Split | None
    steps: list[StepRecord]
    verdict: list[dict[str, Any]]
    strategies: list[str]
    control: str | None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def output(self, step: str, key: str) -> str | None:
        for record in self.steps:
            if record.step == step:
                return record.outputs.get(key)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "split": self.split.to_dict() if self.split else None,
            "strategies": self.strategies,
            "control": self.control,
            "steps": [_portable(vars(r), self.out) for r in self.steps],
            "verdict": self.verdict,
            "report": {
                "html": self.output("report", "html"),
                "markdown": self.output("report", "markdown"),
            },
            "warnings": self.warnings,
            "seconds": round(self.seconds, 2),
        }


Log = Callable[[str], None]


class _Run:
    """One ``rtml migrate`` run: the options, DIR's state and the records so far."""

    def __init__(
        self,
        options: MigrateOptions,
        log: Log,
        replay_progress: Callable[[], AbstractContextManager[Any]] | None,
    ) -> None:
        self.opts = options
        self.out = Path(options.out).resolve()  # recorded paths do not depend on the cwd
        self.log = log
        self.replay_progress = replay_progress or (lambda: contextlib.nullcontext(None))
        self.earlier, self.earlier_verdict = _read_state(self.out)
        self.records: list[StepRecord] = []
        self.fps: dict[str, str | None] = {}
        self.warnings: list[str] = []
        self.split: Split | None = None
        self.strategies: list[str] = []
        self.control: str | None = None
        self.verdict: list[dict[str, Any]] = []
        self.started = time.perf_counter()

    # ------------------------------------------------------------------------ plumbing
    def path(self, step: str, key: str) -> Path:
        return self.out / LAYOUT[step][key]

    def step(
        self,
        name: str,
        params: dict[str, Any],
        run: Callable[[], dict[str, str] | None],
        *,
        needed: bool = True,
    ) -> StepRecord:
        """Run ``name`` unless skipped, not ``needed`` or already done with the same
        fingerprint. ``run`` returns the step's outputs, or None when it found nothing to do."""
        number = f"[{STEPS.index(name) + 1}/{len(STEPS)}] {name}"
        fp = fingerprint(name, params)
        before = self.earlier.get(name) or {}
        earlier = {k: v for k, v in (before.get("outputs") or {}).items() if Path(v).exists()}
        if name in self.opts.skip:
            return self._skip(name, number, fp, before, earlier)
        if (
            not self.opts.force
            and before.get("fingerprint") == fp
            and before.get("status") in ("ran", "reused")
            and earlier
            and len(earlier) == len(before.get("outputs") or {})
        ):
            self.log(f"{number}: reused (done earlier with the same inputs)")
            return self._keep(StepRecord(name, "reused", outputs=earlier, fingerprint=fp))
        if needed:
            self.log(f"{number}…")
        started = time.perf_counter()
        outputs = run() if needed else None
        if outputs is None:
            record = StepRecord(name, "not needed", fingerprint=fp)
            _remove_files(before.get("outputs") or {})  # an earlier run's, now out of date
            self.log(f"{number}: not needed")
        else:
            seconds = time.perf_counter() - started
            record = StepRecord(name, "ran", seconds=seconds, outputs=outputs, fingerprint=fp)
            self.log(f"{number}: done in {seconds:.1f}s")
        return self._keep(record)

    def _skip(
        self, name: str, number: str, fp: str, before: dict[str, Any], earlier: dict[str, str]
    ) -> StepRecord:
        """--skip: the earlier outputs stand in for the step's (said when they were made from
        other inputs than this run's)."""
        record = StepRecord(name, "skipped", outputs=earlier, fingerprint=before.get("fingerprint"))
        if not earlier:
            record.note = "no earlier outputs"
        elif before.get("fingerprint") == fp:
            record.note = "earlier outputs used (same inputs)"
        else:
            record.note = "earlier outputs used, made from other inputs than this run's"
            self.warnings.append(
                f"--skip {name}: its outputs in {self.out} were made from "
                "other inputs or options than this run's"
            )
        self.log(f"{number}: skipped (--skip {name}); {record.note}")
        return self._keep(record)

    def _keep(self, record: StepRecord) -> StepRecord:
        self.records.append(record)
        self.fps[record.step] = record.fingerprint
        self.save()
        return record

    def needed(self, step: str, key: str, why: str) -> Path:
        """An output of an earlier step that a later one reads; ``InputMissing`` when the
        step was skipped and never ran in DIR."""
        for record in self.records:
            if record.step == step and key in record.outputs:
                return Path(record.outputs[key])
        raise InputMissing(
            f"{why} needs the {key} of step {step}, which was skipped and never ran in "
            f"{self.out}: run once without --skip {step}"
        )

    def documents(self) -> list[Path]:
        """The JSON documents of this run's steps (ran, reused, or skipped with earlier
        outputs): what the report reads, never a leftover of another run in DIR/json."""
        return [
            Path(r.outputs["document"])
            for r in self.records
            if r.step != "report" and "document" in r.outputs
        ]

    def result(self) -> MigrateResult:
        return MigrateResult(
            self.out,
            self.split,
            list(self.records),
            self.verdict,
            self.strategies,
            self.control,
            self.warnings,
            time.perf_counter() - self.started,
        )

    def save(self) -> None:
        """DIR/migrate.json: this run's steps so far, then the earlier run's records of the
        steps this run has not reached (so a failed run does not make the next one redo
        them; each is reused only if its fingerprint still matches)."""
        from rtml_cli.output import save_document

        doc = self.result().to_dict()
        done = {r.step for r in self.records}
        doc["steps"] += [
            _portable({**record, "note": "recorded by an earlier run"}, self.out)
            for name, record in self.earlier.items()
            if name not in done
        ]
        save_document(self.out / STATE, "migrate", doc)


def _portable(record: dict[str, Any], out: Path) -> dict[str, Any]:
    """A step's record with its outputs relative to DIR (DIR can be moved or copied and
    resumed; a copy never reuses the original's files)."""
    outputs = {}
    for key, value in (record.get("outputs") or {}).items():
        path = Path(value)
        outputs[key] = str(path.relative_to(out)) if path.is_relative_to(out) else value
    return {**record, "outputs": outputs}


def _remove_files(outputs: dict[str, str]) -> None:
    """Remove the files an earlier run of a step wrote (recorded in DIR's state)."""
    for value in outputs.values():
        path = Path(value)
        if path.is_file() and not path.is_symlink():
            path.unlink()


def _read_state(out: Path) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """The steps an earlier run recorded in ``out`` (name → its record) and its verdict."""
    import json

    try:
        doc = json.loads((out / STATE).read_text())
    except (OSError, ValueError):
        return {}, []
    if not isinstance(doc, dict) or doc.get("kind") != "migrate":
        return {}, []
    steps = {
        s["step"]: {
            **{k: s.get(k) for k in ("step", "status", "seconds", "fingerprint")},
            "outputs": {k: str(out / v) for k, v in s["outputs"].items()},  # relative to DIR
        }
        for s in doc.get("steps") or []
        if isinstance(s, dict) and s.get("step") in STEPS and isinstance(s.get("outputs"), dict)
    }
    return steps, list(doc.get("verdict") or [])


def _prepare_out(options: MigrateOptions) -> Path:
    """Check and create DIR before any work: an output rtml may write (exit 73 otherwise)."""
    from rtml_cli.errors import OutputError
    from rtml_cli.fsutil import check_output, writable_dir, write_output_marker

    out = check_output(options.out, MIGRATE_OUTPUT, option="--out")
    writable_dir(out / "json")
    try:
        write_output_marker(out, "migrate")
    except OSError as exc:
        raise OutputError(f"cannot write to --out {out}: {exc.strerror or exc}") from exc
    return out


# ------------------------------------------------------------------------------ the steps
def run_migrate(
    options: MigrateOptions,
    *,
    log: Log = lambda _m: None,
    replay_progress: Callable[[], AbstractContextManager[Any]] | None = None,
) -> MigrateResult:
    """From a team's log to the report: import, validate, precompute as of the holdout's
    start, replay the holdout with every stage's strategies (and the team's baseline), check
    popularity drift, evaluate bandits vs an A/B test, write the report. See the module.

    Options and inputs are checked before DIR is touched; DIR is locked for the run (a
    second run on it exits 75). ``replay_progress()`` gives a context manager around the
    replay that yields its ``progress(done, total)`` callback (or None)."""
    from rtml_cli.fsutil import root_lock

    options.check()
    input_stamp(options.events)  # a missing log: exit 66 before DIR exists
    out = _prepare_out(options)
    with root_lock(out):
        run = _Run(options, log, replay_progress)
        events = _import(run)
        _validate(run, events)
        run.split = _split(run, events)
        artifacts = _precompute(run, events)
        results = _simulate(run, events, artifacts)
        _drift(run, events)
        _evaluate(run, results)
        _report(run, artifacts, results)
        run.save()
        return run.result()


def _import(run: _Run) -> str:
    o = run.opts
    stamp = input_stamp(o.events)
    params = {
        "events": stamp,
        "mapping": o.mapping,
        "event_map": o.event_map,
        "ignore": o.ignore_events,
        "session_gap": o.session_gap,
    }

    def go() -> dict[str, str]:
        from rtml_cli.data.importers import import_log
        from rtml_cli.output import save_document

        target = run.path("import", "events")
        result = import_log(
            "csv" if o.is_csv else "parquet",
            o.events,
            target,
            mapping=o.mapping or None,
            session_gap=o.session_gap,
            event_map=o.event_map or None,
            ignore_events=list(o.ignore_events),
        )
        run.warnings += result.warnings
        doc = save_document(run.path("import", "document"), "data import", result.to_dict)
        return {"events": str(target), "document": str(doc)}

    record = run.step("import", params, go, needed=o.needs_import)
    if "events" in record.outputs:
        return record.outputs["events"]
    if o.needs_import:
        run.needed("import", "events", "a CSV or mapped log")
    if run.fps.get("import") is None:  # skipped: the log as given
        run.fps["import"] = fingerprint(stamp)
    return o.events


def _validate(run: _Run, events: str) -> None:
    def go() -> dict[str, str]:
        from rtml_cli.data.validate import validate
        from rtml_cli.output import save_document

        report = validate(events, kind="events", session_gap=run.opts.session_gap)
        doc = save_document(run.path("validate", "document"), "data validate", report.to_dict)
        if any("unknown events" in p or "event value" in p for p in report.problems):
            report.problems.append(
                "with rtml migrate: give --map-event VALUE=EVENT (or --ignore-events VALUE) "
                "and run it again"
            )
        report.raise_for_problems()  # exit 65, every problem listed; its document is kept
        return {"document": str(doc)}

    run.step("validate", {"events": run.fps["import"], "gap": run.opts.session_gap}, go)


def _split(run: _Run, events: str) -> Split:
    from rtml_cli.fsutil import parquet_files

    first, last, count_before = events_span(parquet_files(events, what="EVENTS"))
    split = plan_split(first, last, count_before, holdout=run.opts.holdout, as_of=run.opts.as_of)
    run.log(
        f"history: {split.history_events:,} events before {split.as_of:%Y-%m-%d %H:%M:%S} UTC; "
        f"holdout ({split.how}): {split.holdout_events:,} events to "
        f"{split.last_event:%Y-%m-%d %H:%M:%S} UTC"
    )
    return split


def _precompute(run: _Run, events: str) -> Path:
    assert run.split is not None
    o, split = run.opts, run.split
    params = {
        "events": run.fps["import"],
        "items": input_stamp(o.items),
        "as_of": split.as_of,
        "seed": o.seed,
    }

    def go() -> dict[str, str]:
        from rtml_cli.batch.precompute import run_precompute
        from rtml_cli.output import save_document

        result = run_precompute(
            events,
            run.path("precompute", "artifacts"),
            items=o.items,
            as_of=split.as_of,
            seed=o.seed,
            # migrate owns this ROOT and its fingerprint says the run must be made: a run of
            # the same as-of made from other inputs (--items, --seed) is rebuilt, not refused
            force=True,
            keep=3,  # other holdouts tried in DIR: the three newest runs are kept
        )
        run.warnings += result.warnings
        doc = save_document(run.path("precompute", "document"), "precompute", result.summary)
        return {"artifacts": str(result.run_dir), "document": str(doc)}

    run.step("precompute", params, go)
    return run.needed("precompute", "artifacts", "the replay")


def _strategy_names(run: _Run) -> list[str]:
    from rtml_cli.online.engine import served_names
    from rtml_cli.online.strategies import DEFAULT_STRATEGIES, expand_names

    given = ",".join(run.opts.strategies) if run.opts.strategies else ",".join(DEFAULT_STRATEGIES)
    return served_names(expand_names(given), run.opts.baseline_recs)


def _simulate(run: _Run, events: str, artifacts: Path) -> Path | None:
    assert run.split is not None
    o = run.opts
    run.strategies = _strategy_names(run)
    # the comparator of every verdict: the team's own lists, else rtml's nightly batch list
    run.control = next((s for s in ("baseline", "batch") if s in run.strategies), None)
    params = {
        "events": run.fps["import"],
        "artifacts": run.fps["precompute"],
        "strategies": run.strategies,
        "k": o.k,
        "sample": o.sample,
        "baseline": input_stamp(o.baseline_recs),
        "seed": o.seed,
        "bootstrap": o.bootstrap,
        "window": [run.split.as_of, run.split.end],
    }

    def go() -> dict[str, str]:
        from rtml_cli.data.world import find_world
        from rtml_cli.online import simulate, write_results
        from rtml_cli.output import save_document

        assert run.split is not None
        with run.replay_progress() as progress:  # a progress bar only while replaying
            result = simulate(
                events,
                artifacts,
                strategies=run.strategies,
                k=o.k,
                start=run.split.as_of,
                end=run.split.end,
                seed=o.seed,
                sample=o.sample,
                bootstrap=o.bootstrap,
                baseline_recs=o.baseline_recs,
                world=find_world(o.events) if not o.needs_import else None,
                progress=progress,
            )
        run.warnings += result.info["warnings"]
        target = write_results(result.frame, run.path("simulate", "results"), result.info)
        doc = result.to_dict()
        doc["results"] = str(target)
        saved = save_document(run.path("simulate", "document"), "simulate", doc)
        return {"results": str(target), "document": str(saved)}

    record = run.step("simulate", params, go)
    return Path(record.outputs["results"]) if "results" in record.outputs else None


def _drift(run: _Run, events: str) -> None:
    """Has popularity moved between the history and the holdout? (Whether a model trained
    on the history goes stale during the holdout: the continual-learning question.)"""
    assert run.split is not None
    split = run.split
    holdout = split.end - split.as_of
    history = split.as_of - split.first_event
    params = {"events": run.fps["import"], "split": split.as_of, "end": split.end}

    def go() -> dict[str, str] | None:
        from rtml_cli.continual.drift import DETECTORS, parse_detectors, popularity_report
        from rtml_cli.output import save_document

        reference = min(holdout, history)
        if reference < timedelta(hours=1):
            return None
        psi = DETECTORS.get("psi").default_threshold
        report = popularity_report(
            events,
            current=holdout,
            reference=reference,
            detectors=parse_detectors("psi", {"psi": psi, "ks": None, "js": None}),
            end=split.end,
        )
        doc = save_document(run.path("drift", "document"), "drift popularity", report.to_dict())
        return {"document": str(doc)}

    run.step("drift", params, go)


def _horizon(frame: Any, arms: list[str], control_rate: float, mde: float | None) -> int | None:
    """Requests per bandit-vs-A/B run: twice what the fixed A/B test needs (so that it can
    finish, as in planning mode) when the replay holds fewer; None: every request once."""
    import math

    import polars as pl

    from rtml_cli.evaluation.routing.abtest import sample_size_two_proportions

    if mde is None:
        return None
    stream = frame.filter(pl.col("strategy") == arms[0])["hit"].drop_nulls().len()
    n_control, _ = sample_size_two_proportions(
        control_rate, min(control_rate + mde, 1.0), alpha=0.05 / max(len(arms) - 1, 1)
    )
    needed = 2 * math.ceil(n_control * len(arms))
    return needed if needed > stream else None


def _arms(run: _Run, results: Path) -> tuple[list[str], float | None, int | None]:
    """The control (the team's baseline, else rtml's batch list) and the best strategy of
    each later stage, by HR over the replay; and the A/B test's minimum detectable effect:
    the HR gap between the best arm and the runner-up, the decision that is hard to make
    (the gap to the control alone would power the test for the easy one)."""
    import polars as pl

    from rtml_cli.report.replay import is_variant, stage_of

    frame = pl.read_parquet(results, columns=["strategy", "hit"])
    hr = dict(frame.group_by("strategy").agg(pl.col("hit").mean()).iter_rows())
    names = [s for s in run.strategies if s in hr and not is_variant(s)]
    control = run.control if run.control in names else None
    arms = [control] if control else []
    for stage in (2, 3):
        staged = [s for s in names if stage_of(s) == stage]
        if staged:
            arms.append(max(staged, key=lambda s: hr[s] or 0.0))
    arms = [a for a in dict.fromkeys(arms) if a]
    rates = sorted((hr[a] or 0.0 for a in arms), reverse=True)
    gap = rates[0] - rates[1] if len(rates) > 1 else 0.0
    mde = gap if gap > 0 else None
    horizon = _horizon(frame, arms, hr[arms[0]] or 0.0, mde) if len(arms) > 1 else None
    return arms, mde, horizon


def _evaluate(run: _Run, results: Path | None) -> None:
    o = run.opts
    params = {"simulate": run.fps.get("simulate"), "seeds": o.seeds, "seed": o.seed, "v": 2}

    def go() -> dict[str, str] | None:
        from rtml_cli.evaluation.routing import evaluate_routing
        from rtml_cli.output import save_document

        if results is None:
            return None
        arms, mde, horizon = _arms(run, results)
        if len(arms) < 2:
            run.log("evaluate: fewer than two strategies to compare; no bandit evaluation")
            return None
        report, _runs = evaluate_routing(
            results=str(results),
            arms=arms,
            reward="hit",
            control=arms[0],
            mde=mde,
            requests=horizon,
            resample="bootstrap" if horizon else "permute",
            seeds=o.seeds,
            seed=o.seed,
            log=run.log,
        )
        doc = save_document(run.path("evaluate", "document"), "evaluate bandits", report)
        return {"document": str(doc)}

    run.step("evaluate", params, go)


def _report(run: _Run, artifacts: Path, results: Path | None) -> None:
    """The report from this run's outputs; the verdict only when the report is this run's
    (ran, or reused with the same inputs), never an earlier run's."""
    o = run.opts
    params = {
        "inputs": [run.fps.get(s) for s in STEPS if s != "report"],
        "hit_to_click": o.hit_to_click,
        "bootstrap": o.bootstrap,
        "seed": o.seed,
    }
    made: dict[str, list[dict[str, Any]]] = {}

    def go() -> dict[str, str]:
        from rtml_cli.output import command_line
        from rtml_cli.plotting import available
        from rtml_cli.report import Options, build_report, load_inputs, write_report

        inputs: list[Any] = [*run.documents(), artifacts]
        if results is not None:
            inputs.append(results)
        loaded = load_inputs(inputs)
        report = build_report(
            loaded,
            Options(
                bootstrap=o.bootstrap,
                seed=o.seed,
                charts=available(),
                command=command_line(),
                hit_to_click=o.hit_to_click,
            ),
        )
        # Markdown first: if it cannot be written, the HTML is not replaced either
        markdown = write_report(report, run.path("report", "markdown"), "md")[0]
        html = write_report(report, run.path("report", "html"), "html")[0]
        made["verdict"] = [
            {"topic": c.topic, "text": c.text, "cannot_tell": c.cannot_tell} for c in report.verdict
        ]
        return {"html": str(html), "markdown": str(markdown)}

    record = run.step("report", params, go)
    if record.status == "ran":
        run.verdict = made["verdict"]
    elif record.status == "reused":
        run.verdict = run.earlier_verdict
