"""Issue #10 item 4: every replay figure with a 95% interval from a session bootstrap, paired
for differences; a deterministic hash sample of sessions."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtml_cli.errors import ExitCode, UsageError
from rtml_cli.online import simulate
from rtml_cli.online.intervals import SessionBootstrap, interval, sample_keep
from rtml_cli.online.replay import parse_sample
from tests.online_fixtures import write_shop

FAST = dict(k=8, n_candidates=30, max_train_requests=300, train_window=timedelta(days=1))
NAMES = ("popular", "session-embedding", "session-itemknn")


def _clustered(
    rng: np.random.Generator, n_sessions: int, p: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-session hits and request counts: each session has its own hit rate (mean ``p``),
    so requests of one session are correlated, as in a replay."""
    counts = rng.integers(1, 12, size=n_sessions)
    rates = rng.beta(2 * p / (1 - p), 2, size=n_sessions)  # mean p
    hits = rng.binomial(counts, rates)
    return hits.astype(float), counts.astype(float)


def test_session_intervals_cover_at_the_stated_rate():
    """On data whose true ratio is known, the 95% intervals cover it in 95% of trials, within
    Monte-Carlo error (requests are clustered in sessions: a request-level bootstrap would
    not)."""
    rng = np.random.default_rng(7)
    p, trials, covered = 0.3, 300, 0
    # the true ratio of expected hits to expected requests is p
    for t in range(trials):
        hits, counts = _clustered(rng, 300, p)
        reps = SessionBootstrap(300, n_boot=300, seed=t).ratios(hits[:, None], counts)
        low, high = interval(reps[:, 0])
        covered += low <= p <= high
    rate = covered / trials
    noise = 3 * np.sqrt(0.95 * 0.05 / trials)
    assert abs(rate - 0.95) <= noise + 0.015, rate


def test_replicates_are_deterministic_and_paired():
    rng = np.random.default_rng(1)
    hits, counts = _clustered(rng, 500, 0.4)
    boot = SessionBootstrap(500, n_boot=400, seed=3)
    other = np.clip(hits + rng.integers(-1, 2, size=500), 0, counts)
    first = boot.ratios(np.stack([hits, other], axis=1), counts)
    again = SessionBootstrap(500, n_boot=400, seed=3).ratios(
        np.stack([hits, other], axis=1), counts
    )
    assert np.array_equal(first, again)
    # paired: the difference's interval is much narrower than the figures' own
    width = np.subtract(*interval(first[:, 0])[::-1])
    diff = np.subtract(*interval(first[:, 0] - first[:, 1])[::-1])
    assert diff < width / 2


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 400), st.floats(0.01, 1.0))
def test_samples_are_deterministic_and_sized(n_wanted, share):
    ids = [f"s{i}" for i in range(400)]
    candidates = np.ones(400, dtype=bool)
    by_count = sample_keep(ids, ("sessions", n_wanted), candidates)
    assert by_count.sum() == n_wanted
    assert np.array_equal(by_count, sample_keep(ids, ("sessions", n_wanted), candidates))
    smaller = sample_keep(ids, ("sessions", max(1, n_wanted // 2)), candidates)
    assert not (smaller & ~by_count).any()  # nested: a smaller sample is part of a larger
    by_share = sample_keep(ids, ("share", share), candidates)
    assert not (sample_keep(ids, ("share", share / 2), candidates) & ~by_share).any()


@pytest.mark.parametrize("spec", ["0%", "101%", "0", "-3", "ten", "5x"])
def test_bad_sample_specs(spec):
    with pytest.raises(UsageError, match="--sample"):
        parse_sample(spec)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    base = write_shop(tmp_path_factory.mktemp("intervals"))
    return base, pl.read_parquet(base / "events.parquet")


@pytest.fixture(scope="module")
def full(shop):
    base, events = shop
    return simulate(events, base / "root", strategies=NAMES, **FAST)


def test_every_figure_has_an_interval_around_it(full):
    for row in full.summary + full.slices:
        for key in ("hr", "mrr", "ndcg"):
            if row[key] is None:
                continue
            low, high = row[f"{key}_ci"]
            assert low <= row[key] <= high, (row, key)
    assert full.info["bootstrap"] == 1000 and "Poisson bootstrap" in full.info["intervals"]
    pairs = {(d["a"], d["b"]) for d in full.differences()}
    assert pairs == {(a, b) for i, a in enumerate(NAMES) for b in NAMES[i + 1 :]}


def test_a_sample_interval_contains_the_full_figure(shop, full):
    base, events = shop
    sampled = simulate(events, base / "root", strategies=NAMES, sample="40%", **FAST)
    info = sampled.info
    assert info["sample"] == "40%" and 0 < info["requests"] < info["requests_before_sample"]
    for name in NAMES:
        low, high = sampled.summary_for(name)["hr_ci"]
        assert low <= full.summary_for(name)["hr"] <= high, name
    again = simulate(events, base / "root", strategies=NAMES, sample="40%", **FAST)
    assert again.frame.drop("latency_us").equals(sampled.frame.drop("latency_us"))


def test_no_intervals_with_bootstrap_0(shop):
    base, events = shop
    result = simulate(events, base / "root", strategies=NAMES[:2], bootstrap=0, **FAST)
    assert "hr_ci" not in result.summary[0] and "differences" not in result.to_dict()
    with pytest.raises(UsageError, match="--bootstrap"):
        simulate(events, base / "root", strategies=NAMES[:2], bootstrap=20, **FAST)


def test_cli_json_and_ranking_table(invoke, shop):
    base, _ = shop
    args = ["simulate", base / "events.parquet", "--artifacts", base / "root", "--k", "8"]
    args += ["--strategies", ",".join(NAMES), "--sample", "50"]
    doc = json.loads(invoke(*args, "--format", "json", "--quiet").stdout)
    assert doc["info"]["sample"] == "50 sessions" and doc["info"]["sessions_served"] == 50
    assert all(len(r["hr_ci"]) == 2 for r in doc["summary"] if r["hr"] is not None)
    assert {d["a"] for d in doc["differences"]} == set(NAMES[:2])
    text = " ".join(invoke(*args).stdout.split())
    assert "ranking by HR@8: is each strategy ahead of the next?" in text
    # the caption's leading count is the sampled sessions, and the sample says of how many
    assert "requests from 50 sessions," in text
    assert f"sample: 50 sessions (50 of {doc['info']['sessions_in_window']:,} sessions," in text
    bad = invoke(*args[:-2], "--sample", "0%")
    assert bad.exit_code == ExitCode.USAGE and "--sample" in bad.stderr


@pytest.mark.parametrize("bad", [["--sample", "0%"], ["--k", "0"], ["--nprobe", "0"]])
def test_a_bad_option_is_one_line_before_any_progress(invoke, shop, bad):
    """A bad option is refused before the CLI announces the ranker's training."""
    base, _ = shop
    args = ["simulate", base / "events.parquet", "--artifacts", base / "root"]
    result = invoke(*args, "--strategies", "popular,online-ranker", *bad)
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("rtml: error:")
    assert "training" not in result.stderr and result.stdout == ""
