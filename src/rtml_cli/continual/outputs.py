"""What ``rtml retrain --out DIR`` writes: the summary and its tables, as one directory."""

from __future__ import annotations

import os
from typing import Any

from rtml_cli.fsutil import atomic_path, directory_output, write_json

RETRAIN_OUTPUT = directory_output("retrain")
TABLES = ("steps", "updates", "checks")


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def write_retrain_outputs(summary: dict[str, Any], out: str | os.PathLike[str]) -> None:
    """``summary.json`` plus ``steps``, ``updates`` and ``checks`` as Parquet tables,
    published atomically as one directory (a failed write leaves ``out`` as it was).

    The JSON files inside need no atomic write of their own: the directory's rename is
    the atomic step (``fsutil.write_json``)."""
    import polars as pl

    with atomic_path(out, RETRAIN_OUTPUT, option="--out") as tmp:
        tmp.mkdir()
        write_json(tmp / "summary.json", summary, default=_iso)
        for name in TABLES:
            rows = summary[name]
            frame = (
                pl.DataFrame(rows)
                if rows
                else pl.DataFrame({"schedule": []}, schema={"schedule": pl.String})
            )
            frame.write_parquet(tmp / f"{name}.parquet")
