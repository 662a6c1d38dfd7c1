"""Property: every number in the report's verdict is read from an input or computed from
the inputs, and printed as recomputed; no other figure appears in a claim's words.

Hypothesis draws a replay (sessions, segments, requests without a truth, several
strategies and their hits) and the documents of an evaluation; each claim's numbers are
recomputed from their origin by ``tests.report_fixtures.resolve``, independently of the
report's own code for the simple operations.
"""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtml_cli.report import Options, build_report, load_inputs
from tests.report_fixtures import (
    BANDITS,
    OPE,
    RETRAIN,
    check_claim,
    results_frame,
    simulate_doc,
    write_json,
    write_results,
)

STRATEGIES = (
    "popular",
    "batch",
    "session-embedding",
    "session-itemknn",
    "online-ranker",
    "online-ranker-no-streaming",
    "online-ranker@0s",
)


@st.composite
def replays(draw):
    n_requests = draw(st.integers(3, 30))
    names = draw(st.lists(st.sampled_from(STRATEGIES), min_size=2, max_size=5, unique=True))
    sessions = draw(st.lists(st.integers(0, 6), min_size=n_requests, max_size=n_requests))
    segments = draw(
        st.lists(st.sampled_from(("anonymous", "new", "returning")), min_size=7, max_size=7)
    )
    truth = draw(st.lists(st.booleans(), min_size=n_requests, max_size=n_requests))
    if not any(truth):
        truth[0] = True
    rows = []
    for name in names:
        hits = draw(st.lists(st.booleans(), min_size=n_requests, max_size=n_requests))
        lat = draw(st.floats(1.0, 5e5))
        for request in range(n_requests):
            rows.append(
                {
                    "request_id": request,
                    "session_id": f"s{sessions[request]}",
                    "segment": segments[sessions[request]],
                    "strategy": name,
                    "hit": hits[request] if truth[request] else None,
                    "latency_us": lat * (1 + request % 3),
                }
            )
    protocol = draw(st.sampled_from(("next-unseen", "next-item")))
    k = draw(st.integers(1, 50))
    return results_frame(rows), protocol, k


@st.composite
def evaluations(draw):
    bandits = json.loads(json.dumps(BANDITS))
    med = draw(st.floats(10, 1e5))
    bandits["policies"][1]["requests_to_decision"] = {
        "median": med,
        "p5": med / draw(st.floats(1, 10)),
        "p95": med * draw(st.floats(1, 10)),
    }
    bandits["policies"][1]["clicks_lost_mean"] = draw(st.floats(0, 500))
    ope = json.loads(json.dumps(OPE))
    value = draw(st.floats(0, 1))
    ope["estimates"][0].update(value=value, ci_low=value * 0.8, ci_high=min(1.0, value * 1.2))
    ope["diagnostics"]["ess_share"] = draw(st.floats(0, 1))
    ope["diagnostics"]["max_weight"] = draw(st.floats(1, 1000))
    retrain = json.loads(json.dumps(RETRAIN))
    for step in retrain["steps"]:
        step["hits"] = draw(st.integers(0, 100))
    return bandits, ope, retrain


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    replay=replays(),
    docs=evaluations(),
    seed=st.integers(0, 2**16),
    with_intervals=st.booleans(),
)
def test_every_verdict_number_comes_from_the_inputs(
    tmp_path_factory, replay, docs, seed, with_intervals
):
    frame, protocol, k = replay
    root: Path = tmp_path_factory.mktemp("prop")
    results = write_results(root / "results.parquet", frame, protocol=protocol, k=k)
    doc = simulate_doc(frame, results, protocol=protocol, k=k, intervals=with_intervals)
    sim = write_json(root / "simulate.json", doc)
    paths = [results, sim]
    for name, doc in zip(("bandits", "ope", "retrain"), docs, strict=True):
        paths.append(write_json(root / f"{name}.json", doc))
    inputs = load_inputs(paths)
    options = Options(bootstrap=30, seed=seed, charts=False)
    report = build_report(inputs, options)
    assert report.verdict
    for claim in report.verdict:
        check_claim(claim, inputs, options)
        if claim.cannot_tell:
            assert "cannot tell" in claim.text


def test_the_check_catches_a_number_from_nowhere(tmp_path) -> None:
    import pytest

    from rtml_cli.report.model import Claim, Num

    inputs = load_inputs([write_json(tmp_path / "b.json", BANDITS)])
    invented = Claim("x", ["a median ", Num(1234.0, "count", ("option", "budget_ms"))])
    with pytest.raises(AssertionError):
        check_claim(invented, inputs, Options())
    smuggled = Claim("x", ["decides after 3,700 requests"])
    with pytest.raises(AssertionError):
        check_claim(smuggled, inputs, Options())
