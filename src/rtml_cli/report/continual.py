"""Continual learning: retraining schedules (accuracy over time, cost) and drift checks."""

from __future__ import annotations

from typing import Any

from rtml_cli import plotting
from rtml_cli.report.context import Context
from rtml_cli.report.inputs import Document
from rtml_cli.report.model import Claim, Label, Num, Para, Part, Section, Table

HOW_TO_RETRAIN = (
    "No retraining comparison was given. Run `rtml retrain EVENTS --schedules "
    "stateless:1d,stateful:1d,triggered,never --format json > retrain.json` and pass the "
    "document."
)
HOW_TO_DRIFT = (
    "No drift check was given. Run `rtml drift popularity EVENTS --format json > drift.json` "
    "(exit 10 means drift) and pass the document."
)


def _schedule(doc: dict[str, Any], *, kind: str | None = None, name: str | None = None):
    for index, row in enumerate(doc.get("schedules") or []):
        if (kind is None or row.get("kind") == kind) and (name is None or row["schedule"] == name):
            return index
    return None


def _hr_band(ctx: Context, document: Document, index: int) -> list[Part] | None:
    """'0.467–0.494': HR's 95% Wilson interval from the schedule's steps (hits, requests)."""
    doc = document.doc
    name = doc["schedules"][index]["schedule"]
    hits = [
        ctx.num(document, ("steps", i, "hits"), "count")
        for i, s in enumerate(doc.get("steps") or [])
        if s["schedule"] == name
    ]
    requests = ctx.num(document, ("schedules", index, "requests"), "count")
    if not hits or any(h is None for h in hits) or requests is None:
        return None
    total = Num(sum(h.value for h in hits if h), "count", ("sum", *hits))
    band = plotting.wilson(total.value, requests.value)
    if band is None:
        return None
    return [
        Num(band[0], "rate", ("wilson", "low", total, requests)),
        "–",
        Num(band[1], "rate", ("wilson", "high", total, requests)),
    ]


def retrain_claims(ctx: Context, document: Document) -> list[Claim]:
    doc = document.doc
    claims: list[Claim] = []
    k = ctx.num(document, ("k",), "k")
    base = _schedule(doc, name=doc.get("baseline")) if doc.get("baseline") else None
    base = base if base is not None else _schedule(doc, kind="stateless")
    stateful = _schedule(doc, kind="stateful")
    if base is not None and stateful is not None and k is not None:
        s, b = doc["schedules"][stateful], doc["schedules"][base]
        keep = ctx.num(document, ("schedules", stateful, "hr_vs_baseline"), "percent")
        time = ctx.num(document, ("schedules", stateful, "time_ratio_vs_baseline"), "ratio")
        hr_s = ctx.num(document, ("schedules", stateful, "hr"), "rate")
        hr_b = ctx.num(document, ("schedules", base, "hr"), "rate")
        band_s, band_b = _hr_band(ctx, document, stateful), _hr_band(ctx, document, base)
        if keep is not None and hr_s is not None and hr_b is not None:
            parts: list[Part] = [
                "Stateful training (",
                Label(s["schedule"]),
                ") keeps ",
                keep,
                " of stateless retraining's HR@",
                k,
                " (",
                Label(b["schedule"]),
                "; ",
                hr_s,
                " vs ",
                hr_b,
                ")",
            ]
            if time is not None:
                parts += [" at ", time, " its training time"]
            overlap = False
            if band_s and band_b:
                overlap = band_s[0].value <= band_b[2].value and band_b[0].value <= band_s[2].value  # type: ignore[union-attr]
                parts += ["; 95% intervals ", *band_s, " and ", *band_b]
                parts.append(
                    ", unpaired (retrain keeps no per-request results)"
                    + (": they overlap, the data cannot tell the two apart" if overlap else "")
                )
            parts.append(".")
            claims.append(Claim("Continual learning", parts, cannot_tell=overlap))
    never = _schedule(doc, kind="never")
    if never is not None and k is not None:
        before = ctx.num(document, ("schedules", never, "hr_before_shift"), "rate")
        after = ctx.num(document, ("schedules", never, "hr_after_shift"), "rate")
        if before is not None and after is not None and before.value:
            lost = Num(
                1 - after.value / before.value, "percent", ("one_minus_ratio", after, before)
            )
            claims.append(
                Claim(
                    "Continual learning",
                    [
                        "Never retraining loses ",
                        lost,
                        " of HR@",
                        k,
                        " after the known shift (",
                        before,
                        " before, ",
                        after,
                        " after).",
                    ],
                )
            )
    for index, row in enumerate(doc.get("schedules") or []):
        if row.get("kind") != "triggered" or "false_alarms" not in row:
            continue
        delay = ctx.num(document, ("schedules", index, "detection_delay_hours"), "hours")
        alarms = ctx.num(document, ("schedules", index, "false_alarms"), "count")
        updates = ctx.num(document, ("schedules", index, "updates"), "count")
        parts = ["A drift-triggered schedule (", Label(row["schedule"]), ") "]
        parts += ["fired ", delay, " after the shift"] if delay else ["never fired after the shift"]
        if alarms is not None:
            parts += [", with ", alarms, " false alarms before it"]
        if updates is not None:
            parts += [", and updated ", updates, " times"]
        parts.append(".")
        claims.append(Claim("Continual learning", parts))
    return claims


def drift_claims(ctx: Context, document: Document) -> list[Claim]:
    doc = document.doc
    claims = []
    features = doc.get("features")
    rows = [(("features", i), f) for i, f in enumerate(features)] if features else [((), doc)]
    for prefix, feature in rows:
        for name, result in (feature.get("detectors") or {}).items():
            if not isinstance(result, dict):
                continue
            value = ctx.num(document, (*prefix, "detectors", name, "value"), "value")
            threshold = ctx.num(document, (*prefix, "detectors", name, "threshold"), "value")
            if value is None or threshold is None:
                continue
            drifted = bool(result.get("drift"))
            parts: list[Part] = [
                Label(str(feature.get("feature"))),
                ": ",
                Label(name.upper()),
                " ",
                value,
                " is ",
                "above" if drifted else "within",
                " its threshold ",
                threshold,
            ]
            ref = ctx.num(document, (*prefix, "reference_rows"), "count")
            cur = ctx.num(document, (*prefix, "current_rows"), "count")
            if ref is not None and cur is not None:
                parts += [" (", cur, " current vs ", ref, " reference rows)"]
            parts.append(": drift detected." if drifted else ": no drift.")
            claims.append(Claim("Drift", parts, weak=drifted))
    return claims


def continual_sections(ctx: Context) -> tuple[list[Claim], list[Section]]:
    claims: list[Claim] = []
    blocks: list[Any] = []
    retrain = ctx.inputs.one("retrain")
    if retrain is not None:
        claims += retrain_claims(ctx, retrain)
        blocks += _retrain_blocks(ctx, retrain)
    else:
        blocks.append(Para(HOW_TO_RETRAIN, "missing"))
    drift_blocks: list[Any] = []
    for document in [*ctx.inputs.of("drift popularity"), *ctx.inputs.of("drift compare")]:
        found = drift_claims(ctx, document)
        claims += found
        drift_blocks += [c for c in found]
    if not drift_blocks:
        drift_blocks.append(Para(HOW_TO_DRIFT, "missing"))
    return claims, [
        Section("continual", "Continual learning", blocks),
        Section("drift", "Drift", drift_blocks),
    ]


def _retrain_blocks(ctx: Context, document: Document) -> list[Any]:
    doc = document.doc
    rows = []
    for index, r in enumerate(doc.get("schedules") or []):
        band = _hr_band(ctx, document, index)
        rows.append(
            [
                r["schedule"],
                f"{r['hr']:.3f}" if r.get("hr") is not None else "–",
                "".join(p if isinstance(p, str) else p.text for p in band) if band else "–",
                f"{r['hr_before_shift']:.3f}" if r.get("hr_before_shift") is not None else "–",
                f"{r['hr_after_shift']:.3f}" if r.get("hr_after_shift") is not None else "–",
                str(r.get("updates", "–")),
                f"{r.get('train_seconds', 0):.3g}",
                f"{r.get('time_ratio_vs_baseline', 0):.2f}x",
                f"{r.get('requests', 0):,}",
            ]
        )
    k = doc.get("k")
    fired = sum(1 for c in doc.get("checks") or [] if c.get("fired"))
    return [
        Para(
            f"`{_name(document.path)}`: {doc.get('start')} to {doc.get('end')}, steps of "
            f"{(doc.get('step_seconds') or 0) / 3600:g} h, known shift at "
            f"{doc.get('shift_time') or 'none'}; each step's HR@{k} replays the next step "
            f"with the model each schedule had then ({(doc.get('params') or {}).get('strategy')}). "
            f"Drift checks: {len(doc.get('checks') or [])}, fired {fired}."
        ),
        Table(
            f"Per schedule (HR@{k} over the requests with a truth)",
            [
                "schedule",
                f"HR@{k}",
                "95% CI (Wilson)",
                "before shift",
                "after shift",
                "updates",
                "training (s)",
                "time vs baseline",
                "requests",
            ],
            rows,
            numeric=[False] + [True] * 8,
        ),
        ctx.chart(
            "retrain",
            "Accuracy over time per schedule",
            f"Line chart of HR@{k} per step for each schedule with 95% bands, the known shift "
            "as a black dashed line and drift-trigger firings as grey dotted lines: "
            + "; ".join(f"{r[0]} {r[1]}" for r in rows),
            lambda: plotting.retrain_figure(doc),
        ),
        ctx.chart(
            "retrain-cost",
            "Cost vs accuracy",
            f"Scatter of training seconds against HR@{k} per schedule: "
            + "; ".join(f"{r[0]} {r[6]} s, {r[1]}" for r in rows),
            lambda: plotting.retrain_cost_figure(doc),
        ),
        *([Para(f"rtml retrain's own summary: {doc['verdict']}")] if doc.get("verdict") else []),
    ]


def _name(path: Any) -> str:
    from pathlib import Path

    return Path(str(path)).name
