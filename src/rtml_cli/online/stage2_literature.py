"""Stage 2 strategies from the session-based literature: V-SKNN and sequential rules.

Both follow the definitions of session-rec (Ludewig & Jannach, "Evaluation of session-based
recommendation algorithms", 2018; the code at github.com/rn5l/session-rec), serve from the
tables ``rtml precompute`` builds (``batch.sessions``: loaded as ``Artifacts.session_index``
and ``Artifacts.rule_lists``) and are vectorised with numpy (no loop over items or sessions
per request). Where rtml differs from session-rec, and why, is in docs/simulate.md
("V-SKNN and sequential rules: where rtml differs from session-rec").

- ``session-vsknn`` (``algorithms/knn/vsknn.py``, ``VMContextKNN``): the session as an item
  vector with position-decayed weights; candidate neighbours are the ``sample_size`` most
  recent training sessions sharing an item with it; the ``k`` most similar (dot product of
  the weighted session with a neighbour's binary item set, divided by the number of distinct
  session items) vote for their items with their similarity, decayed by how far back the most
  recent shared item lies and boosted by the item's idf.
- ``session-rules`` (``algorithms/baselines/sr.py``, ``SequentialRules``): rules a → b
  counted over training sessions for every b up to ``rule_steps`` events after a, weighted
  ``1 / distance``, pruned to the top ``rule_top`` per a; a request is scored by the rules of
  its last item (more items with ``history``).

Under the ``next-unseen`` protocol neither lists a seen item. Under ``next-item`` V-SKNN's
*remind* step runs: the session's own items keep the score their neighbours give them
(session-rec's ``remind=True``), optionally multiplied by how often the session saw them
plus one (``push_reminders``); sequential rules list whatever the rules give, seen or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from rtml_cli.batch.artifacts import SessionIndex
from rtml_cli.errors import UsageError
from rtml_cli.online.base import STRATEGIES, Env, Request, Strategy
from rtml_cli.online.stage2 import top_by_score

# position weights of the current session's items (1-based position ``i`` of ``n`` events):
# session-rec's ``weighting`` functions, the most recent event weighing 1
POSITION_WEIGHTS = {
    "same": lambda i, n: np.ones_like(i, dtype=np.float64),
    "div": lambda i, n: i / n,
    "quadratic": lambda i, n: (i / n) ** 2,
    "log": lambda i, n: 1.0 / np.log10(n - i + 1.7),
}
# decay of a neighbour's votes by the step back (1 = the last event) of the most recent
# session item it shares: session-rec's ``weighting_score`` functions ("linear" clipped at 0)
STEP_WEIGHTS = {
    "same": lambda s: np.ones_like(s, dtype=np.float64),
    "div": lambda s: 1.0 / s,
    "linear": lambda s: np.maximum(1.0 - 0.1 * s, 0.0),
    "quadratic": lambda s: 1.0 / (s * s),
    "log": lambda s: 1.0 / np.log10(s + 1.7),
}


def csr_positions(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the CSR rows ``rows`` lie in the value arrays of (``indptr``, …), concatenated,
    and each row's length — without a Python loop over the rows."""
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    total = int(lengths.sum())
    # every entry: its row's start plus its offset within the row
    offsets = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + offsets, lengths


def gather(
    indptr: np.ndarray, values: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The concatenated CSR rows ``rows`` of (``indptr``, ``values``) and each row's length."""
    positions, lengths = csr_positions(indptr, rows)
    return values[positions], lengths


def distinct(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` by a sort and a mask: 3-4x faster on the few thousand ids a
    request gathers (numpy's ``unique`` carries overhead this hot path does not need)."""
    ordered = np.sort(values)
    if len(ordered) < 2:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def sum_by_item(items: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct items ascending, the sum of ``weights`` per item)."""
    if not len(items):
        return np.zeros(0, np.int64), np.zeros(0)
    order = np.argsort(items, kind="stable")
    ordered = items[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    return ordered[starts], np.add.reduceat(np.asarray(weights, np.float64)[order], starts)


@dataclass(frozen=True)
class VSKNNOptions:
    """V-SKNN's parameters; defaults from session-rec's published e-commerce configuration
    ``conf/save/diginetica/retrain/baselines/retrain_digi_baselines_*.yml`` (DIGINETICA, the
    e-commerce log of the benchmark: ``k: 50, weighting: div, weighting_score: linear,
    idf_weighting: 10`` and a sample of 2500 — spelt ``sampling: 2500`` there) and, for what
    that file does not set, ``VMContextKNN``'s own defaults (``sampling='recent'``,
    ``remind=True``, ``push_reminders=False``, ``similarity`` = its ``vec`` dot product).

    - ``k``: neighbour sessions that vote;
    - ``sample_size``: candidate neighbours, the most recent sessions sharing an item with the
      session (at most the run's ``session_sample``, 2500 by default);
    - ``weighting``: position weight of the session's items (:data:`POSITION_WEIGHTS`; ``div``:
      the i-th of n events weighs i / n, a re-viewed item its last position's weight);
    - ``weighting_score``: decay of a neighbour's votes by the step back of the most recent
      session item it shares (:data:`STEP_WEIGHTS`; ``linear``: 1 - 0.1 × step, 0 from step
      10 on);
    - ``idf_weighting``: a vote for item j counts ``1 + idf_weighting × idf(j)``
      (0: no idf);
    - ``remind`` / ``push_reminders``: under ``next-item`` only, the session's own items keep
      their votes / are multiplied by (times seen + 1).
    """

    k: int = 50
    sample_size: int = 2500
    weighting: str = "div"
    weighting_score: str = "linear"
    idf_weighting: float = 10.0
    remind: bool = True
    push_reminders: bool = False

    def __post_init__(self) -> None:
        if self.k < 1 or self.sample_size < 1:
            raise UsageError("V-SKNN needs k >= 1 and sample_size >= 1")
        if self.weighting not in POSITION_WEIGHTS:
            raise UsageError(f"V-SKNN weighting must be one of {', '.join(POSITION_WEIGHTS)}")
        if self.weighting_score not in STEP_WEIGHTS:
            raise UsageError(f"V-SKNN weighting_score must be one of {', '.join(STEP_WEIGHTS)}")
        if self.idf_weighting < 0:
            raise UsageError("V-SKNN idf_weighting must be >= 0")


def vsknn_scores(
    tables: SessionIndex,
    items: np.ndarray,
    opt: VSKNNOptions,
    sample_size: int,
    before_us: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """V-SKNN's votes for a session that saw ``items`` (item_idx, in order, repeats kept):
    (items ascending, score), the session's own items included.

    ``before_us``: only sessions whose last event came before this time are neighbours (a
    request before the as-of, as in the ranker's training, must not see its own session or
    later ones; for requests after the as-of every stored session qualifies)."""
    n = len(items)
    if not n:
        return np.zeros(0, np.int64), np.zeros(0)
    # distinct session items and the last position of each (1-based; step 1 = last event)
    session, last_back = np.unique(items[::-1], return_index=True)
    weight = POSITION_WEIGHTS[opt.weighting](n - last_back, n)
    step = last_back + 1
    # candidate neighbours: the most recent sessions holding any session item
    holding, _ = gather(tables.item_indptr, tables.item_sessions, session)
    if not len(holding):
        return np.zeros(0, np.int64), np.zeros(0)
    candidates = distinct(holding)  # session_idx 0 = most recent
    if before_us is not None:
        # sessions are stored most recent first: those ending at or after the time lead
        candidates = candidates[np.searchsorted(candidates, tables.ended_since(before_us)) :]
    candidates = candidates[:sample_size]
    if not len(candidates):
        return np.zeros(0, np.int64), np.zeros(0)
    their_items, lengths = gather(tables.session_indptr, tables.session_items, candidates)
    where = np.minimum(np.searchsorted(session, their_items), len(session) - 1)
    shared = session[where] == their_items
    starts = np.cumsum(lengths) - lengths
    similarity = np.add.reduceat(np.where(shared, weight[where], 0.0), starts) / len(session)
    nearest = np.minimum.reduceat(np.where(shared, step[where], n + 1), starts)
    # the k most similar; ties go to the more recent session
    best = np.lexsort((candidates, -similarity))[: opt.k]
    voters, vote_lengths = gather(tables.session_indptr, tables.session_items, candidates[best])
    vote = similarity[best] * STEP_WEIGHTS[opt.weighting_score](nearest[best])
    votes = np.repeat(vote, vote_lengths)
    if opt.idf_weighting:
        votes = votes * (1.0 + opt.idf_weighting * tables.idf[voters])
    return sum_by_item(voters, votes)


def rule_scores(
    rules: tuple[np.ndarray, np.ndarray, np.ndarray], items: np.ndarray, history: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sequential rules' scores for a session that saw ``items``: the rules of its last
    ``history`` items, the i-th from the end weighted ``1 / i``; (items ascending, score)."""
    indptr, next_item, rule_score = rules
    recent = items[::-1][:history]  # the last item first
    positions, lengths = csr_positions(indptr, recent)
    if not len(positions):
        return np.zeros(0, np.int64), np.zeros(0)
    weight = np.repeat(1.0 / np.arange(1, len(recent) + 1), lengths)
    return sum_by_item(next_item[positions], rule_score[positions] * weight)


class SessionVSKNN(Strategy):
    """Stage 2: vector-multiplication session kNN (V-SKNN) over the precomputed sessions."""

    def __init__(self, env: Env, options: VSKNNOptions | None = None) -> None:
        self.env = env
        self.options = options or VSKNNOptions()
        self.name = "session-vsknn"
        self.tables = env.artifacts.session_index  # DataError for runs without session tables
        cap = self.tables.sample or self.options.sample_size
        self.sample_size = min(self.options.sample_size, cap)

    def scores(self, request: Request) -> tuple[np.ndarray, np.ndarray]:
        """(items ascending, score) of every item a neighbour votes for, the session's own
        items included (``recommend`` drops them where the protocol says so)."""
        return vsknn_scores(
            self.tables, request.items, self.options, self.sample_size, before_us=request.ts
        )

    def recommend(self, request: Request, k: int) -> np.ndarray:
        env = self.env
        if not len(request.items):
            return env.fill([], request.seen_set, k)
        cand, score = self.scores(request)
        if request.protocol == "next-item" and len(cand):
            cand, score = self._remind(request, cand, score)
        ranked = top_by_score(cand, score, request.seen, k)
        return env.fill(ranked.tolist(), request.seen_set, k)

    def _remind(
        self, request: Request, cand: np.ndarray, score: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The remind step (``next-item`` only): keep, push or drop the session's own items."""
        own, counts = np.unique(request.items, return_counts=True)
        pos = np.minimum(np.searchsorted(own, cand), len(own) - 1)
        mine = own[pos] == cand
        if not self.options.remind:
            return cand[~mine], score[~mine]
        if self.options.push_reminders:
            score = score.copy()
            score[mine] *= counts[pos[mine]] + 1
        return cand, score

    def report(self) -> dict[str, object]:
        opt = self.options
        return {
            "k": opt.k,
            "sample_size": self.sample_size,
            "weighting": opt.weighting,
            "weighting_score": opt.weighting_score,
            "idf_weighting": opt.idf_weighting,
            "remind": opt.remind,
            "push_reminders": opt.push_reminders,
            "sessions": self.tables.n_sessions,
        }


@dataclass(frozen=True)
class RulesOptions:
    """Sequential rules at serving time. ``history``: how many of the session's last items
    vote, the i-th from the end weighted ``1 / i``. Default 1, as published: session-rec's
    ``SequentialRules.predict_next`` scores by the rules of the last item only (summing the
    items before it, 1/i-weighted, is an experiment left commented out there). The counting
    parameters (``rule_steps`` 10, ``1 / distance`` weights, ``rule_top`` 20: the class
    defaults ``steps=10, weighting='div', pruning=20``) are the precompute run's."""

    history: int = 1

    def __post_init__(self) -> None:
        if self.history < 1:
            raise UsageError("sequential rules need history >= 1")


class SessionRules(Strategy):
    """Stage 2: sequential rules (SR) of the session's last item(s), as precomputed."""

    def __init__(self, env: Env, options: RulesOptions | None = None) -> None:
        self.env = env
        self.options = options or RulesOptions()
        self.name = "session-rules"
        self.rules = env.artifacts.rule_lists  # DataError for runs without session tables

    def scores(self, request: Request) -> tuple[np.ndarray, np.ndarray]:
        """(items ascending, summed rule score) from the session's last ``history`` items."""
        return rule_scores(self.rules, request.items, self.options.history)

    def recommend(self, request: Request, k: int) -> np.ndarray:
        env = self.env
        if not len(request.items):
            return env.fill([], request.seen_set, k)
        cand, score = self.scores(request)
        ranked = top_by_score(cand, score, request.seen, k)
        return env.fill(ranked.tolist(), request.seen_set, k)


def _session_vsknn(env: Env, lag: timedelta | None) -> Strategy:
    return SessionVSKNN(env)


def _session_rules(env: Env, lag: timedelta | None) -> Strategy:
    return SessionRules(env)


STRATEGIES.add(
    "session-vsknn",
    _session_vsknn,
    description="V-SKNN (session-rec): votes of the 50 most similar recent sessions, "
    "position-decayed, idf-weighted; reminds of seen items under next-item",
    stage=2,
    streaming=False,
    default=False,
)
STRATEGIES.add(
    "session-rules",
    _session_rules,
    description="sequential rules (session-rec): 1/distance-weighted rules of the last item, "
    "top 20 per item",
    stage=2,
    streaming=False,
    default=False,
)
