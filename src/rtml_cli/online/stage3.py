"""Stage 3: a small ranker over batch, real-time and streaming features.

Candidates are the union of the two Stage-2 generators (Annoy neighbours of the
session embedding and the session's item-item neighbours; the popularity list for a
session with no known item yet). Each candidate gets three families of features:

- ``batch`` — looked up from ``item_features`` as of the artifacts: log views over 7
  days, conversion rate, log popularity rank;
- ``realtime`` — computed per request from the session: cosine similarity to the
  session embedding (alone and scaled by log session length and log time since the
  session started), the session-kNN score, and the share of session items in the
  candidate's category (alone and scaled by log session length);
- ``streaming`` — views and carts of the item in the last 5 / 30 / 60 minutes and the
  5-minute trend against the hour, as published by the stream ``lag`` ago
  (``streaming.WindowedCounts``).

The model is an L2-regularised logistic regression (scipy L-BFGS on standardised
features) trained on requests replayed from the window before the artifacts' as-of:
the label is whether the candidate is the item the visitor went to next. A linear
model is fast to score (one mat-vec over ~500 candidates), its weights are readable,
and dropping a feature family (the ablation) is dropping columns. Training is the
strategy's ``prepare`` hook (``training_examples`` replays the training window).

Registered here: ``online-ranker`` and its ablations ``online-ranker-no-F`` (without
feature family F); any variant that reads streaming features takes an ``@freshness``.
``online-ranker-vsknn`` (issue #11, optional) adds a third generator, V-SKNN's best
``--candidates`` items (``stage2_literature``), and two features, the V-SKNN score
(scaled by the request's best) and whether V-SKNN proposed the candidate.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import numpy as np

from rtml_cli.online.base import STRATEGIES, Env, Factory, Request, Strategy
from rtml_cli.online.replay import ReplayData, request_at, streams_for, truth_for
from rtml_cli.online.stage2 import knn_scores, session_vector, top_by_score, unseen_mask
from rtml_cli.online.stage2_literature import SessionVSKNN
from rtml_cli.online.stage3_batch import session_block, sorted_unique, streaming_block

FEATURES: dict[str, tuple[str, ...]] = {
    "batch": ("log_views_7d", "conversion_rate", "log_popularity"),
    "realtime": (
        "similarity",
        "similarity_x_log_length",
        "similarity_x_log_elapsed",
        "knn_score",
        "in_knn",
        "category_match",
        "category_match_x_log_length",
    ),
    "streaming": (
        "log_views_5m",
        "log_views_30m",
        "log_views_60m",
        "log_carts_5m",
        "log_carts_30m",
        "log_carts_60m",
        "trend_5m_vs_60m",
    ),
}
FAMILIES = tuple(FEATURES)  # batch, realtime, streaming
ALL_FEATURES = tuple(name for names in FEATURES.values() for name in names)
# what the V-SKNN candidate generator adds (``online-ranker-vsknn``), after the families
VSKNN_FEATURES = ("vsknn_score", "in_vsknn")
NEGATIVES_PER_REQUEST = 24
L2 = 1e-3
# keys of ``Env.cache``: work every ranker variant of a run shares
_BATCH_FEATURES = "ranker-batch-features"  # batch_matrix(artifacts)
_TRAINING_CANDIDATES = "ranker-training-candidates"  # per training request: its candidates


def _first_column(columns: list[str], *patterns: str) -> str | None:
    for pattern in patterns:
        for col in columns:
            if re.search(pattern, col):
                return col
    return None


def batch_matrix(art: Any) -> np.ndarray:
    """(n_items, 3) batch features per item_idx from ``item_features`` (0 where missing)."""
    import polars as pl

    feats = art.item_features
    cols = [c for c, t in feats.schema.items() if t.is_numeric()]
    views = _first_column(cols, r"^views?_7d$", r"view.*7d", r"view.*30d", r"view")
    conversion = _first_column(cols, r"conversion.*30d", r"conversion.*7d", r"conversion")
    purchases = _first_column(cols, r"purchase.*30d", r"purchase")
    views30 = _first_column(cols, r"view.*30d", r"view")
    rank = _first_column(cols, r"popularity_rank", r"rank")
    idx = art.to_idx(feats["item_id"].to_list())
    ok = idx >= 0
    out = np.zeros((art.n_items, 3), dtype=np.float32)

    def column(name: str | None) -> np.ndarray | None:
        if name is None:
            return None
        return feats[name].cast(pl.Float64).fill_null(0).fill_nan(0).to_numpy()[ok]

    if (v := column(views)) is not None:
        out[idx[ok], 0] = np.log1p(np.maximum(v, 0))
    if (c := column(conversion)) is not None:
        out[idx[ok], 1] = c
    elif (p := column(purchases)) is not None and (v30 := column(views30)) is not None:
        out[idx[ok], 1] = (p + 0.1) / (v30 + 10.0)
    if (r := column(rank)) is not None:
        out[idx[ok], 2] = -np.log(np.maximum(r, 1))
    else:
        pos = np.full(art.n_items, art.n_items, dtype=np.float64)
        pop = art.popular_idx
        pos[pop[pop >= 0]] = np.arange(1, (pop >= 0).sum() + 1)
        out[:, 2] = -np.log(pos)
    return out


class OnlineRanker(Strategy):
    """Stage 3 strategy: Stage-2 candidates re-ranked by a logistic regression.

    Built untrained; ``prepare(env)`` trains it on ``env.training`` (or sets the prior
    weights when there is nothing to learn from)."""

    def __init__(
        self,
        env: Env,
        *,
        families: tuple[str, ...],
        lag: timedelta | None,
        vsknn: bool = False,
    ) -> None:
        self.env = env
        self.name = "online-ranker"
        self.families = families
        # a third candidate generator (V-SKNN) and its two features; its candidates are
        # shared under another key than the other variants'
        self.vsknn = SessionVSKNN(env) if vsknn else None
        self._cache_key = "ranker-candidates" + ("+vsknn" if vsknn else "")
        self.lag = lag if "streaming" in families else None
        self.lag_us = None if self.lag is None else round(self.lag.total_seconds() * 1e6)
        if _BATCH_FEATURES not in env.cache:
            env.cache[_BATCH_FEATURES] = batch_matrix(env.artifacts)
        self.batch = env.cache[_BATCH_FEATURES]
        self.coef = np.zeros(len(self.feature_names))
        self.intercept = 0.0
        self.trained_on = 0
        self.borrowed_ns = 0

    def _names(self) -> tuple[str, ...]:
        return tuple(n for f in self.families for n in FEATURES[f])

    @property
    def feature_names(self) -> tuple[str, ...]:
        names = tuple(n for n in ALL_FEATURES if n in self._names())
        return names + (VSKNN_FEATURES if self.vsknn is not None else ())

    # ------------------------------------------------------------------ features

    def candidates(self, request: Request) -> tuple[np.ndarray, np.ndarray | None, tuple]:
        """Candidate item_idx (unseen, ascending) and what the features need.

        Every ranker variant of a run generates the same candidates, so the first one
        computes them per request and the others reuse them, each charged the time it took
        (``borrowed_ns``) so every variant's latency still includes candidate generation.
        """
        cached = request.cache.get(self._cache_key)
        if cached is not None:
            self.borrowed_ns = cached[3]
            return cached[:3]
        t0 = time.perf_counter_ns()
        out = self._generate(request)
        request.cache[self._cache_key] = (*out, time.perf_counter_ns() - t0)
        return out

    def _generate(self, request: Request) -> tuple[np.ndarray, np.ndarray | None, tuple]:
        """Candidates (unseen, ascending), the session vector and the generators' scores:
        (kNN items, kNN scores) and, for the V-SKNN variant, (V-SKNN items, scores)."""
        env = self.env
        items = request.items
        if not len(items):
            pool = env.popular[: env.n_candidates + len(request.seen)]
            cand = pool[unseen_mask(pool, request.seen)][: env.n_candidates]
            empty = (np.zeros(0, np.int64), np.zeros(0, np.float32))
            return np.sort(cand), None, empty + (empty if self.vsknn is not None else ())
        vector = session_vector(env, items, None)
        if env.ann == "ivf":
            from rtml_cli.online.stage3_batch import ivf_items

            found = ivf_items(env, vector)
        else:
            search_k = max(env.search_k, 4 * env.n_candidates)
            found = env.index.get_nns_by_vector(vector.tolist(), env.n_candidates, search_k)
        kc, ks = knn_scores(env, items)
        if len(kc) > env.n_candidates:
            top = np.argpartition(-ks, env.n_candidates - 1)[: env.n_candidates]
            keep = np.sort(top)
            kc, ks = kc[keep], ks[keep]
        cand = sorted_unique(np.concatenate([np.asarray(found, dtype=np.int64), kc]))
        scores: tuple = (kc, ks)
        if self.vsknn is not None:
            vc, vs = self.vsknn.scores(request)
            if len(vc) > env.n_candidates:
                keep = np.sort(np.argpartition(-vs, env.n_candidates - 1)[: env.n_candidates])
                vc, vs = vc[keep], vs[keep]
            cand = sorted_unique(np.concatenate([cand, vc]))
            scores = (kc, ks, vc, vs)
        if len(request.seen):
            cand = cand[unseen_mask(cand, request.seen)]
        return cand, vector, scores

    def features(
        self,
        request: Request,
        cand: np.ndarray,
        vector: np.ndarray | None,
        knn: tuple[np.ndarray, ...],
    ) -> np.ndarray:
        """(len(cand), n_features) for this model's families, in ``feature_names`` order;
        ``knn``: the generators' (items, scores) pairs as ``candidates`` returns them."""
        env = self.env
        blocks = []
        if "batch" in self.families:
            blocks.append(self.batch[cand])
        if "realtime" in self.families:
            n = len(cand)
            log_len = math.log1p(request.n_events)
            log_elapsed = math.log1p(max(request.ts - request.session_start, 0) / 60e6)
            if vector is not None:
                unit = vector / max(float(np.linalg.norm(vector)), 1e-12)
                sim = env.unit[cand] @ unit
            else:
                sim = np.zeros(n, np.float32)
            knn_val, in_knn = _scaled_scores(cand, knn[0], knn[1])
            if len(request.items):
                cats = env.item_category[request.items]
                match = (env.item_category[cand][:, None] == cats[None, :]).mean(axis=1)
                match = np.where(env.item_category[cand] >= 0, match, 0.0)
            else:
                match = np.zeros(n)
            blocks.append(session_block(sim, log_len, log_elapsed, knn_val, in_knn, match))
        if "streaming" in self.families:
            if self.lag_us is None:
                raise ValueError(
                    "online-ranker reads streaming features but was built without a freshness "
                    "lag (strategies.build() passes env.freshness)"
                )
            blocks.append(streaming_block(request.streams[self.lag_us].features(cand)))
        if self.vsknn is not None:
            blocks.append(np.column_stack(_scaled_scores(cand, knn[2], knn[3])))
        return np.concatenate(blocks, axis=1).astype(np.float32, copy=False)

    # ------------------------------------------------------------------ serving

    @property
    def batched(self) -> bool:
        """With ``--ann ivf`` the ranker serves micro-batches (``stage3_batch``); the V-SKNN
        variant asks its third generator per request, so it does not."""
        return self.env.ann == "ivf" and self.vsknn is None

    def recommend_batch(self, requests: Sequence[Request], k: int) -> list[np.ndarray]:
        """A micro-batch at once (``stage3_batch``) when ``batched``; else per request.

        The variants of a run share the batch's candidates, as they share a request's."""
        if not self.batched:
            return [self.recommend(request, k) for request in requests]
        from rtml_cli.online.stage3_batch import batch_candidates, rank_batch

        shared = requests[0].cache
        key = self._cache_key + "/batch"
        cached = shared.get(key)
        if cached is not None and cached[0] == len(requests):
            self.borrowed_ns = cached[2]
            cands = cached[1]
        else:
            t0 = time.perf_counter_ns()
            cands = batch_candidates(self.env, requests)
            shared[key] = (len(requests), cands, time.perf_counter_ns() - t0)
        return rank_batch(self, requests, cands, k)

    def recommend(self, request: Request, k: int) -> np.ndarray:
        if self.batched:
            return self.recommend_batch([request], k)[0]
        cand, vector, knn = self.candidates(request)
        if not len(cand):
            return self.env.fill([], request.seen_set, k)
        scores = self.features(request, cand, vector, knn) @ self.coef
        ranked = top_by_score(cand, scores.astype(np.float64), np.zeros(0, np.int64), k)
        return self.env.fill(ranked.tolist(), request.seen_set, k)

    def report(self) -> dict[str, Any]:
        """Feature families, freshness, training rows and weights (``info["rankers"]``)."""
        return {
            "families": list(self.families),
            "freshness_s": None if self.lag is None else self.lag.total_seconds(),
            "trained_on_rows": self.trained_on,
            "weights": dict(zip(self.feature_names, np.round(self.coef, 4).tolist(), strict=True)),
        }

    # ------------------------------------------------------------------ training

    def prepare(self, env: Env) -> None:
        """Train on the requests replayed before the as-of (``env.training``), or use the prior.

        Every variant of a run trains on the same sample (drawn with ``env.seed``) and
        reuses the candidates the first one generated per training request."""
        if env.ann == "ivf":
            env.ivf()  # built before serving: set-up time, not request latency
        data = env.training() if env.training is not None else None
        if data is None or data.n_requests == 0:
            self.use_prior()
            return
        shared = env.cache.setdefault(_TRAINING_CANDIDATES, {})
        examples = training_examples(self, data, env.max_train_requests, env.seed, shared)
        if examples is None:
            self.use_prior()
            return
        self.fit(*examples)

    def use_prior(self) -> None:
        """Without training data: a documented prior (similarity, kNN, V-SKNN, category, trend)."""
        prior = {
            "log_popularity": 0.2,
            "similarity": 2.0,
            "knn_score": 1.0,
            "category_match": 0.5,
            "log_views_5m": 0.3,
            "trend_5m_vs_60m": 0.2,
            "vsknn_score": 1.0,
        }
        self.coef = np.array([prior.get(n, 0.0) for n in self.feature_names])
        self.intercept = 0.0
        self.trained_on = 0

    def fit(self, X: np.ndarray, y: np.ndarray) -> None:
        """L2 logistic regression on standardised features; stores unstandardised weights."""
        from scipy.optimize import minimize

        if len(y) == 0 or y.min() == y.max():
            self.use_prior()
            return
        X = X.astype(np.float64)
        mu = X.mean(axis=0)
        sd = X.std(axis=0)
        sd[sd < 1e-9] = 1.0
        Z = (X - mu) / sd
        yy = y.astype(np.float64)
        n, d = Z.shape

        def loss(theta: np.ndarray):
            w, b = theta[:d], theta[d]
            margin = Z @ w + b
            # log(1 + e^m) - y m, stable
            value = np.logaddexp(0.0, margin) - yy * margin
            p = 1.0 / (1.0 + np.exp(-margin))
            g = p - yy
            grad = np.r_[Z.T @ g / n + L2 * w, g.mean()]
            return value.mean() + 0.5 * L2 * float(w @ w), grad

        theta0 = np.zeros(d + 1)
        res = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
        w = res.x[:d] / sd
        self.coef = w
        self.intercept = float(res.x[d] - mu @ w)
        self.trained_on = int(n)


def _scaled_scores(
    cand: np.ndarray, items: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A generator's score of each candidate scaled by its best (0 when it did not propose
    the candidate), and whether it proposed it; ``items`` ascending."""
    value = np.zeros(len(cand), np.float32)
    proposed = np.zeros(len(cand), np.float32)
    if len(items):
        pos = np.minimum(np.searchsorted(items, cand), len(items) - 1)
        hit = items[pos] == cand
        value[hit] = scores[pos[hit]] / max(float(scores.max()), 1e-12)
        proposed[hit] = 1.0
    return value, proposed


def training_examples(
    ranker: OnlineRanker,
    data: ReplayData,
    max_requests: int,
    seed: int,
    shared: dict[int, dict[str, Any]],
) -> tuple[np.ndarray, np.ndarray] | None:
    """Feature rows and labels from up to ``max_requests`` replayed requests of ``data``.

    Per request with a known next item among the candidates: the positive (that item)
    and up to ``NEGATIVES_PER_REQUEST`` other candidates (label 0), sampled with ``seed``.
    ``shared`` holds per-request work (candidates) the variants of one run reuse.
    Returns None when no request yields an example."""
    rng = np.random.default_rng(seed)
    pick = np.arange(data.n_requests)
    if len(pick) > max_requests:
        pick = np.sort(rng.choice(pick, size=max_requests, replace=False))
    sub = dataclasses.replace(
        data,
        req_row=data.req_row[pick],
        req_sess=data.req_sess[pick],
        request_id=data.request_id[pick],
    )
    truth = truth_for(sub, ranker.env.protocol)
    streams = streams_for(sub, {ranker.lag} if ranker.lag is not None else set())
    rows, sesses = sub.req_row.tolist(), sub.req_sess.tolist()
    xs, ys = [], []
    for j in range(sub.n_requests):
        target = truth.next_code[j]
        if target < 0 or target >= sub.n_items:
            continue
        req = request_at(sub, j, rows, sesses, streams, ranker.env.protocol)
        req.cache = shared.setdefault(j, {})
        for stream in streams.values():
            stream.advance(req.ts)
        cand, vector, knn = ranker.candidates(req)
        positive = np.flatnonzero(cand == target)
        if not len(positive):
            continue
        negatives = np.flatnonzero(cand != target)
        if len(negatives) > NEGATIVES_PER_REQUEST:
            negatives = rng.choice(negatives, NEGATIVES_PER_REQUEST, replace=False)
        keep = np.concatenate([positive, np.sort(negatives)])
        xs.append(ranker.features(req, cand[keep], vector, knn))
        ys.append(np.r_[1.0, np.zeros(len(keep) - 1)])
    if not xs:
        return None
    return np.concatenate(xs), np.concatenate(ys)


def _ranker(families: tuple[str, ...], *, vsknn: bool = False) -> Factory:
    def factory(env: Env, lag: timedelta | None) -> Strategy:
        return OnlineRanker(env, families=families, lag=lag, vsknn=vsknn)

    return factory


STRATEGIES.add(
    "online-ranker",
    _ranker(FAMILIES),
    description="logistic regression over batch, real-time and streaming features",
    stage=3,
    streaming=True,
    default=True,
    trains=True,
)
for _family in FAMILIES:
    STRATEGIES.add(
        f"online-ranker-no-{_family}",
        _ranker(tuple(f for f in FAMILIES if f != _family)),
        description=f"ablation: online-ranker without {_family} features",
        stage=3,
        streaming=_family != "streaming",
        default=False,
        trains=True,
        ablates=_family,
    )
STRATEGIES.add(
    "online-ranker-vsknn",
    _ranker(FAMILIES, vsknn=True),
    description="online-ranker with V-SKNN as a third candidate generator (and its score)",
    stage=3,
    streaming=True,
    default=False,
    trains=True,
)
