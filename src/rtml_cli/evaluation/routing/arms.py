"""Where rewards come from: Bernoulli arms of given rates, or a replay reward matrix.

Both sources answer one question per batch: given how many of this batch's
requests each seed routed to each arm, what reward did each arm earn?

* ``BernoulliArms``: planning mode; the reward of n requests on arm k is
  Binomial(n, rate_k).
* ``RewardMatrix``: replay mode; row i holds the reward every arm (strategy)
  earned on request i, so any routing can be scored exactly. Each seed sees the
  requests in its own random order (``permute``: every request once) or drawn
  with replacement (``bootstrap``: any horizon). The policies are not
  contextual, so inside a batch — whose requests are already in random order —
  giving the first n_0 requests to arm 0, the next n_1 to arm 1, … is the same
  in distribution as routing each request at random.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rtml_cli.errors import DataError, UsageError


@dataclass
class BernoulliArms:
    names: list[str]
    rates: np.ndarray

    def __post_init__(self) -> None:
        self.rates = np.asarray(self.rates, dtype=float)
        check_arms(self.names)
        bad = [
            f"{n}={r}" for n, r in zip(self.names, self.rates, strict=True) if not (0.0 <= r <= 1.0)
        ]
        if bad:
            raise UsageError(f"arm rates must lie in [0, 1]: {', '.join(bad)}")

    @property
    def means(self) -> np.ndarray:
        return self.rates

    def start(self, n_seeds: int, horizon: int, rng: np.random.Generator) -> None:
        self._rng = rng

    def pull(self, counts: np.ndarray, start: int) -> np.ndarray:
        return self._rng.binomial(counts, self.rates).astype(float)

    def route(self, size: int, probs: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
        """Route ``size`` requests per seed by ``probs``: (counts, rewards) per arm.

        One multinomial over (arm, clicked) cells — P = probs_k rate_k and
        probs_k (1 - rate_k) — draws both at once: the same joint distribution as
        a multinomial for the counts and then a binomial for each arm's clicks.
        """
        cells = np.empty((probs.shape[0], 2 * probs.shape[1]))
        cells[:, 0::2] = probs * self.rates
        cells[:, 1::2] = probs * (1.0 - self.rates)
        drawn = self._rng.multinomial(size, cells)
        hits = drawn[:, 0::2]
        return hits + drawn[:, 1::2], hits.astype(float)


@dataclass
class RewardMatrix:
    names: list[str]
    rewards: np.ndarray  # (requests, arms), values in [0, 1]
    resample: str = "permute"
    _order: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_arms(self.names)
        self.rewards = np.ascontiguousarray(self.rewards, dtype=float)
        if self.rewards.shape[0] == 0:
            raise DataError("the results contain no requests: nothing to evaluate")
        if self.resample not in ("permute", "bootstrap"):
            raise UsageError(f"--resample must be permute or bootstrap, got {self.resample!r}")

    @property
    def means(self) -> np.ndarray:
        return self.rewards.mean(axis=0)

    @property
    def n_requests(self) -> int:
        return int(self.rewards.shape[0])

    def start(self, n_seeds: int, horizon: int, rng: np.random.Generator) -> None:
        self._rng = rng
        n = self.n_requests
        if self.resample == "permute":
            if horizon > n:
                raise UsageError(
                    f"--requests {horizon} is more than the {n} requests in the results; "
                    "use --resample bootstrap for a longer stream"
                )
            self._order = rng.permuted(
                np.broadcast_to(np.arange(n, dtype=np.int32), (n_seeds, n)), axis=1
            )[:, :horizon]
        else:
            self._order = rng.integers(0, n, size=(n_seeds, horizon), dtype=np.int32)

    def route(self, size: int, probs: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
        """Route ``size`` requests per seed by ``probs``: (counts, rewards) per arm."""
        counts = self._rng.multinomial(size, probs)
        return counts, self.pull(counts, start)

    def pull(self, counts: np.ndarray, start: int) -> np.ndarray:
        if self._order is None:
            raise ValueError("RewardMatrix.pull() before start(): no request order drawn yet")
        order = self._order
        n_seeds, k = counts.shape
        size = int(counts[0].sum())
        ends = np.cumsum(counts, axis=1)  # arm k serves positions [ends[k-1], ends[k])
        out = np.zeros((n_seeds, k))
        chunk = max(1, _CHUNK_CELLS // (n_seeds * k))  # bounds memory when serving long spans
        for lo in range(0, size, chunk):
            hi = min(size, lo + chunk)
            rows = order[:, start + lo : start + hi]  # (seeds, positions)
            position = np.arange(lo, hi)
            arm = (position[None, :, None] >= ends[:, None, :]).sum(axis=2)
            earned = self.rewards[rows, arm]
            flat = (np.arange(n_seeds)[:, None] * k + arm).ravel()
            out += np.bincount(flat, weights=earned.ravel(), minlength=n_seeds * k).reshape(
                n_seeds, k
            )
        return out


_CHUNK_CELLS = 4_000_000


def check_arms(names: list[str]) -> None:
    if len(names) < 2:
        raise UsageError(f"need at least two arms to compare, got {len(names)}: {names}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UsageError(f"arm names must be unique; repeated: {', '.join(dupes)}")


def parse_arm_specs(specs: list[str]) -> BernoulliArms:
    """``["control=0.040", "new=0.045"]`` -> BernoulliArms."""
    names, rates = [], []
    for spec in specs:
        name, sep, value = spec.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--arm must look like NAME=RATE (e.g. control=0.040), got {spec!r}")
        try:
            rate = float(value)
        except ValueError:
            raise UsageError(f"--arm {spec!r}: rate {value!r} is not a number") from None
        if not np.isfinite(rate):
            raise UsageError(f"--arm {spec!r}: rate must be a finite number in [0, 1]")
        names.append(name)
        rates.append(rate)
    return BernoulliArms(names, np.array(rates))
