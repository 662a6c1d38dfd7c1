"""``generate_world``: every part of the sample world written into one directory, atomically."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rtml_cli.data.world.bandit import _bandit_table, _build_click_model, _write_click_users
from rtml_cli.data.world.catalogue import _build_catalogue, _draw_bursts, _write_items
from rtml_cli.data.world.common import DAY_US, HISTORY_CUTOFF, SIZES
from rtml_cli.data.world.sessions import _segments, _write_events, _write_ground_truth
from rtml_cli.data.world.summary import _readme, _summary
from rtml_cli.data.world.users import _build_users
from rtml_cli.errors import UsageError
from rtml_cli.fsutil import atomic_path, check_output, directory_output, write_json

# the committed sample world predates the output marker: its world.json identifies it
SAMPLE_WORLD_OUTPUT = directory_output("data sample", legacy_marker="world.json")


def generate_world(
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    size: str = "small",
    on_progress: Callable[[int, int], None] | None = None,
    scale: int = 1,
) -> dict:
    """Generate the sample world into ``out_dir`` (replaced atomically); return its summary.

    The summary is what ``world.json`` holds, plus ``elapsed_s``. ``on_progress(done,
    total)`` is called after each generated day and at the end. ``scale`` > 1 writes the
    event log ``scale`` times over (copies of the users and sessions under new ids, a day at
    a time: memory stays that of one day), a load for benchmarks; the ground truth files
    (sessions, users, bandit logs) describe the first copy.
    """
    import pyarrow.parquet as pq

    if size not in SIZES:
        raise UsageError(f"unknown world size {size!r}: use one of {', '.join(SIZES)}")
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    if scale < 1:
        raise UsageError(f"--scale must be >= 1, got {scale}")
    cfg = SIZES[size]
    out = Path(out_dir)
    check_output(out, SAMPLE_WORLD_OUTPUT, option="--out")
    t0 = time.perf_counter()
    shift_us = int(cfg.shift_day * DAY_US)
    cutoff_us = int(HISTORY_CUTOFF * cfg.days * DAY_US)

    cat = _build_catalogue(cfg, seed)
    users = _build_users(cfg, cat, seed)
    bursts = _draw_bursts(cfg, cat, seed)
    item_ids = 100_000 + np.arange(len(cat.item_cat), dtype=np.int64)

    with atomic_path(out, SAMPLE_WORLD_OUTPUT, option="--out") as tmp:
        tmp.mkdir()
        stats = _write_events(
            tmp / "events.parquet", cfg, cat, users, bursts, seed, item_ids, on_progress, scale
        )
        segment = _segments(stats, cutoff_us)
        n_users = _write_ground_truth(tmp, cat, users, stats, segment)
        _write_items(tmp / "items.parquet", cat, item_ids, seed, shift_us)

        # bandit logs over the stationary period before the shift
        model, arms, user_weights = _build_click_model(cfg, cat, users, seed)
        model.save(tmp / "click_model.npz")
        _write_click_users(tmp / "click_users.parquet", user_weights)
        for name, stream, uniform in (
            ("bandit.parquet", 6, False),
            ("bandit_random.parquet", 7, True),
        ):
            table = _bandit_table(
                model, item_ids[arms], user_weights, seed, stream, cfg.n_bandit, shift_us, uniform
            )
            pq.write_table(table, tmp / name, compression="zstd")
        if on_progress:
            on_progress(cfg.days + 1, cfg.days + 2)

        summary = _summary(
            cfg, size, seed, cat, users, bursts, item_ids, stats, segment, n_users,
            (model, arms, user_weights),
        )  # fmt: skip
        if scale > 1:  # a scale-1 world.json stays as it was
            summary.update(
                scale=scale,
                n_events=summary["n_events"] * scale,
                event_counts={k: v * scale for k, v in summary["event_counts"].items()},
                n_sessions=summary["n_sessions"] * scale,
                n_users=summary["n_users"] * scale,
            )
        (tmp / "README.md").write_text(_readme(out, summary))
        # world.json last: a directory with it is a complete world
        write_json(tmp / "world.json", summary)
        if on_progress:
            on_progress(cfg.days + 2, cfg.days + 2)
    summary["elapsed_s"] = round(time.perf_counter() - t0, 2)
    return summary
