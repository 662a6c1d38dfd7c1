"""Small hand-written inputs for `rtml report`: a RESULTS file, the simulate document that
matches it, and one document of every other kind the report reads."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from rtml_cli.output import document


def results_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """RESULTS rows: request_id, session_id, segment, strategy, hit (None: no truth), latency_us."""
    frame = pl.DataFrame(rows)
    return frame.with_columns(
        pl.col("hit").cast(pl.Boolean),
        pl.when(pl.col("hit")).then(1.0).otherwise(0.0).alias("rr").cast(pl.Float64),
    ).with_columns(
        pl.when(pl.col("hit").is_null()).then(None).otherwise(pl.col("rr")).alias("rr"),
        pl.when(pl.col("hit").is_null()).then(None).otherwise(pl.col("rr")).alias("ndcg"),
    )


def write_results(path: Path, frame: pl.DataFrame, *, protocol: str = "next-unseen", k: int = 20):
    table = frame.to_arrow()
    meta = {b"rtml.protocol": protocol.encode(), b"rtml.k": str(k).encode()}
    pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), **meta}), path)
    return path


def _summary_row(rows: pl.DataFrame, strategy: str, segment: str) -> dict[str, Any]:
    truth = rows.filter(pl.col("hit").is_not_null())
    lat = rows["latency_us"].cast(float)
    return {
        "strategy": strategy,
        "segment": segment,
        "requests": rows.height,
        "requests_with_truth": truth.height,
        "requests_without_truth": rows.height - truth.height,
        "hr": float(truth["hit"].cast(float).mean()) if truth.height else None,
        "mrr": float(truth["rr"].mean()) if truth.height else None,
        "ndcg": float(truth["ndcg"].mean()) if truth.height else None,
        "latency_p50_ms": float(lat.quantile(0.5, "linear")) / 1000,
        "latency_p95_ms": float(lat.quantile(0.95, "linear")) / 1000,
        "latency_p99_ms": float(lat.quantile(0.99, "linear")) / 1000,
    }


def _with_intervals(doc: dict[str, Any], frame: pl.DataFrame) -> None:
    """Add ``hr_ci`` per row and paired ``differences``, as rtml simulate --bootstrap does."""
    from rtml_cli.report.stats import SessionBootstrap

    boot = SessionBootstrap(frame, n=40, seed=3)
    for row in doc["summary"]:
        estimate = boot.rate(row["strategy"], "hit", row["segment"])
        row["hr_ci"] = None if estimate.low is None else [estimate.low, estimate.high]
    names = list(dict.fromkeys(frame["strategy"].to_list()))
    doc["differences"] = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            estimate = boot.difference(a, b)
            doc["differences"].append(
                {
                    "a": a,
                    "b": b,
                    "hr_delta": estimate.value,
                    "hr_delta_ci": None if estimate.low is None else [estimate.low, estimate.high],
                }
            )
    doc["info"]["intervals"] = "95% percentile intervals (test)"


def simulate_doc(
    frame: pl.DataFrame,
    results: Path,
    *,
    protocol: str = "next-unseen",
    k: int = 20,
    intervals: bool = False,
) -> dict[str, Any]:
    """The simulate document whose figures are those of ``frame`` (as rtml would print it)."""
    summary = []
    for strategy in dict.fromkeys(frame["strategy"].to_list()):
        rows = frame.filter(pl.col("strategy") == strategy)
        summary.append(_summary_row(rows, strategy, "all"))
        for segment in ("anonymous", "new", "returning"):
            part = rows.filter(pl.col("segment") == segment)
            if part.height:
                summary.append(_summary_row(part, strategy, segment))
    requests = int(frame["request_id"].n_unique())
    doc = document(
        "simulate",
        {
            "info": {
                "as_of": "2024-03-22T16:00:00+00:00",
                "window_start": "2024-03-22T16:00:00+00:00",
                "window_end": "2024-03-23T16:00:00+00:00",
                "protocol": protocol,
                "k": k,
                "freshness_s": 60.0,
                "seed": 0,
                "requests": requests,
                "sessions_in_window": int(frame["session_id"].n_unique()),
                "events_in_window": requests + 5,
                "unknown_items": 1,
                "unknown_item_events": 2,
                "requests_with_unknown_truth": 0,
                "requests_without_truth": int(
                    frame.filter(pl.col("strategy") == summary[0]["strategy"])["hit"].null_count()
                ),
                "warnings": [],
                "rankers": {},
            },
            "summary": summary,
            "slices": [],
            "ablation": [],
            "freshness": [],
            "results": str(results),
        },
    )
    if intervals:
        _with_intervals(doc, frame)
    return doc


def tiny_frame() -> pl.DataFrame:
    """Four strategies over 40 requests in 10 sessions; 4 requests have no truth."""
    rows = []
    for request in range(40):
        session = f"s{request // 4}"
        segment = ("anonymous", "new", "returning")[request // 4 % 3]
        truth = request % 10 != 3
        for index, strategy in enumerate(
            ("batch", "session-embedding", "online-ranker", "online-ranker-no-streaming")
        ):
            hit = (request * (index + 1)) % (5 - index) == 0 if truth else None
            rows.append(
                {
                    "request_id": request,
                    "session_id": session,
                    "segment": segment,
                    "strategy": strategy,
                    "hit": hit,
                    "latency_us": 10.0 * (index + 1) + request % 7,
                }
            )
    return results_frame(rows)


BANDITS = document(
    "evaluate bandits",
    {
        "mode": "planning",
        "arms": [
            {"arm": "control", "mean_reward": 0.04, "best": False, "control": True},
            {"arm": "new", "mean_reward": 0.045, "best": True, "control": False},
        ],
        "horizon": 102300,
        "seeds": 100,
        "seed": 0,
        "policies": [
            {
                "policy": "ab",
                "kind": "ab",
                "decided_share": 1.0,
                "requests_to_decision": {"median": 51200.0, "p5": 51200.0, "p95": 51200.0},
                "picked_best_share": 0.83,
                "regret_mean": 171.5,
                "regret_p95": 383.8,
                "clicks_lost_mean": 128.1,
                "curve": {
                    "requests": [100, 200],
                    "regret_mean": [0.2, 0.5],
                    "best_arm_share": [0.5, 0.5],
                },
            },
            {
                "policy": "thompson",
                "kind": "bandit",
                "decided_share": 0.99,
                "requests_to_decision": {"median": 3700.0, "p5": 400.0, "p95": 48250.0},
                "picked_best_share": 0.87,
                "regret_mean": 77.1,
                "regret_p95": 150.0,
                "clicks_lost_mean": 16.7,
                "curve": {
                    "requests": [100, 200],
                    "regret_mean": [0.2, 0.3],
                    "best_arm_share": [0.5, 0.7],
                },
            },
        ],
        "reward": "bernoulli",
        "caveats": ["A bandit's per-arm estimates are biased by its own routing."],
    },
)

OPE = document(
    "evaluate ope",
    {
        "log": "random.parquet",
        "n_events": 10000,
        "n_actions": 34,
        "n_positions": 3,
        "policy": {"spec": "linear:0.1", "description": "greedy ridge", "n_fit_events": 0},
        "reward_model": "mean",
        "logged_value": 0.1175,
        "estimates": [
            {"estimator": "ips", "value": 0.1712, "ci_low": 0.1443, "ci_high": 0.2007},
            {"estimator": "snips", "value": 0.1546, "ci_low": 0.1273, "ci_high": 0.1849},
        ],
        "diagnostics": {
            "effective_sample_size": 229.3,
            "ess_share": 0.0229,
            "max_weight": 244.18,
            "mean_weight": 1.1,
            "target_share_never_logged": 0.0,
        },
        "ground_truth": None,
        "warnings": ["largest importance weight is 244.2 (> 100)"],
        "bootstrap": 500,
        "seed": 0,
    },
)

CONTEXTUAL = document(
    "evaluate contextual",
    {
        "world": "shop",
        "n_users": 2000,
        "n_items": 64,
        "k": 3,
        "seed": 0,
        "params": {"requests": 20000},
        "online": [
            {
                "policy": "greedy",
                "requests": 20000,
                "impressions": 60000,
                "clicks": 7233,
                "ctr": 0.12055,
                "cumulative_regret": 6601.6,
                "tail_impression_share": 0.06,
                "tail_click_share": 0.025,
                "regret_curve": [100.0, 200.0],
            },
            {
                "policy": "linucb",
                "requests": 20000,
                "impressions": 60000,
                "clicks": 11040,
                "ctr": 0.184,
                "cumulative_regret": 2800.0,
                "tail_impression_share": 0.3,
                "tail_click_share": 0.23,
                "regret_curve": [60.0, 90.0],
            },
        ],
        "offline": [],
    },
)


def _steps() -> list[dict[str, Any]]:
    steps = []
    for name, hits in (
        ("stateless:1d", (50, 60, 40)),
        ("stateful:1d", (51, 59, 41)),
        ("triggered:ks", (50, 58, 42)),
        ("never", (50, 55, 30)),
    ):
        for step, h in enumerate(hits):
            steps.append(
                {
                    "step": step,
                    "start": f"2024-03-2{1 + step}T00:00:00+00:00",
                    "schedule": name,
                    "requests": 100,
                    "hits": h,
                    "hr": h / 100,
                }
            )
    return steps


RETRAIN = document(
    "retrain",
    {
        "start": "2024-03-21T00:00:00+00:00",
        "end": "2024-03-24T00:00:00+00:00",
        "step_seconds": 86400.0,
        "k": 20,
        "shift_time": "2024-03-23T00:00:00+00:00",
        "baseline": "stateless:1d",
        "schedules": [
            {
                "schedule": "stateless:1d",
                "kind": "stateless",
                "requests": 300,
                "hr": 0.5,
                "updates": 2,
                "train_seconds": 4.0,
                "time_ratio_vs_baseline": 1.0,
                "hr_vs_baseline": 1.0,
                "hr_before_shift": 0.55,
                "hr_after_shift": 0.4,
            },
            {
                "schedule": "stateful:1d",
                "kind": "stateful",
                "requests": 300,
                "hr": 0.5033,
                "updates": 2,
                "train_seconds": 2.4,
                "time_ratio_vs_baseline": 0.6,
                "hr_vs_baseline": 1.0066,
                "hr_before_shift": 0.55,
                "hr_after_shift": 0.41,
            },
            {
                "schedule": "triggered:ks",
                "kind": "triggered",
                "requests": 300,
                "hr": 0.5,
                "updates": 1,
                "train_seconds": 1.0,
                "time_ratio_vs_baseline": 0.25,
                "hr_vs_baseline": 1.0,
                "hr_before_shift": 0.54,
                "hr_after_shift": 0.42,
                "checks": 2,
                "fired": 1,
                "false_alarms": 0,
                "detection_delay_hours": 24.0,
            },
            {
                "schedule": "never",
                "kind": "never",
                "requests": 300,
                "hr": 0.45,
                "updates": 0,
                "train_seconds": 0,
                "time_ratio_vs_baseline": 0.0,
                "hr_vs_baseline": 0.9,
                "hr_before_shift": 0.525,
                "hr_after_shift": 0.3,
            },
        ],
        "steps": _steps(),
        "updates": [],
        "checks": [
            {
                "schedule": "triggered:ks",
                "time": "2024-03-23T00:00:00+00:00",
                "detector": "ks",
                "value": 0.2,
                "threshold": 0.1,
                "fired": True,
            },
        ],
        "params": {"strategy": "session-embedding", "seed": 0},
    },
)

DRIFT = document(
    "drift popularity",
    {
        "feature": "item_id share",
        "reference_rows": 34211,
        "current_rows": 5275,
        "drift": True,
        "detectors": {"psi": {"test": "psi", "value": 0.3796, "threshold": 0.2, "drift": True}},
    },
)

VALIDATE = document(
    "data validate",
    {
        "valid": True,
        "path": "events.parquet",
        "contract": "events",
        "rows": 149399,
        "summary": {
            "rows": 149399,
            "users": 4060,
            "sessions": 25550,
            "items": 1999,
            "time_range": ["2024-03-04T00:02:02+00:00", "2024-03-31T23:59:41+00:00"],
        },
        "problems": [],
    },
)


def write_json(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc, indent=2))
    return path


def write_all(root: Path) -> dict[str, Path]:
    """Every kind of input in ``root``: RESULTS, simulate and the hand-written documents."""
    root.mkdir(parents=True, exist_ok=True)
    frame = tiny_frame()
    results = write_results(root / "results.parquet", frame)
    files = {
        "results": results,
        "simulate": write_json(root / "simulate.json", simulate_doc(frame, results)),
    }
    for name, doc in (
        ("bandits", BANDITS),
        ("ope", OPE),
        ("contextual", CONTEXTUAL),
        ("retrain", RETRAIN),
        ("drift", DRIFT),
        ("validate", VALIDATE),
    ):
        files[name] = write_json(root / f"{name}.json", doc)
    return files


__all__ = ["pa", "write_all", "write_results", "simulate_doc", "tiny_frame", "results_frame"]


# ------------------------------------------------------------------ where a number comes from
def _from_input(args, inputs) -> float:
    index, *keys = args
    path = inputs.files[index].path
    value: Any = next(d.doc for d in inputs.documents if d.path == path)
    for key in keys:
        value = value[key]
    return float(value)


def _from_results(args, inputs) -> float:
    if args == ["k"]:
        return float(inputs.results.k)
    metric, strategy, segment = args
    rows = inputs.results.frame.filter(pl.col("strategy") == strategy)
    if segment != "all":
        rows = rows.filter(pl.col("segment") == segment)
    column = {"hr": "hit", "mrr": "rr", "ndcg": "ndcg"}.get(metric)
    if column is not None:
        return float(rows[column].drop_nulls().cast(float).mean())
    if metric == "requests":
        return float(rows.height)
    if metric == "requests_with_truth":
        return float(rows["hit"].drop_nulls().len())
    q = int(metric.removeprefix("latency_p")) / 100
    return float(rows["latency_us"].quantile(q, "linear"))


def _from_bootstrap(args, inputs, options) -> float:
    from rtml_cli.report.stats import SessionBootstrap

    side, what, *spec = args
    boot = SessionBootstrap(inputs.results.frame, n=options.bootstrap, seed=options.seed)
    if what == "rate":
        estimate = boot.rate(*spec)
    elif what == "diff":
        estimate = boot.difference(*spec)
    else:
        strategy, q = spec
        estimate = boot.quantile(strategy, q / 100)
    return float(estimate.low if side == "low" else estimate.high)


def _wilson(side, successes, trials) -> float:
    from rtml_cli.plotting import wilson

    low, high = wilson(successes, trials)
    return low if side == "low" else high


_OPS = {
    "diff": lambda args, v: v[0] - v[1],
    "ratio": lambda args, v: v[0] / v[1],
    "one_minus_ratio": lambda args, v: 1 - v[0] / v[1],
    "scale": lambda args, v: v[0] * args[1],
    "abs": lambda args, v: abs(v[0]),
    "neg": lambda args, v: -v[0],
    "sum": lambda args, v: math.fsum(v),
    "wilson": lambda args, v: _wilson(args[0], v[0], v[1]),
}


def resolve(num, inputs, options) -> float:
    """Recompute a report number from its origin, independently of how the report did."""
    kind, *args = num.origin
    if kind == "input":
        return _from_input(args, inputs)
    if kind == "option":
        return float(getattr(options, args[0]))
    if kind == "results":
        return _from_results(args, inputs)
    if kind == "bootstrap":
        return _from_bootstrap(args, inputs, options)
    values = [resolve(a, inputs, options) for a in args if hasattr(a, "origin")]
    return _OPS[kind](args, values)


# Literal words of a claim that hold a digit but are not figures.
ALLOWED_LITERALS = (
    "Stage 1",
    "Stage 2",
    "Stage 3",
    "95% CI",
    "95% intervals",
    "90% of ",
    "99% of requests",
    "per 1,000 requests",
)


def check_claim(claim, inputs, options) -> None:
    """Every number of ``claim`` is recomputed from its origin and printed as recomputed;
    its literal text holds no other figure."""
    import re

    from rtml_cli.report.model import Num, fmt_number

    for part in claim.parts:
        if isinstance(part, Num):
            again = resolve(part, inputs, options)
            assert fmt_number(again, part.fmt) == part.text, (claim.text, part.origin)
        elif isinstance(part, str):
            text = part
            for literal in ALLOWED_LITERALS:
                text = text.replace(literal, "")
            assert not re.search(r"\d", text), (claim.text, part)
