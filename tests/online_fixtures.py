"""The tiny shop the online tests replay (it lives in ``rtml_cli.checks.tiny_shop``, where
the strategy contract runs on it too)."""

from pathlib import Path

from rtml_cli.checks.tiny_shop import AS_OF, T0, tiny_events, write_run

__all__ = ["AS_OF", "T0", "tiny_events", "write_run", "write_shop"]


def write_shop(base: Path) -> Path:
    """The tiny shop's ``events.parquet`` and precompute ``root`` (as of ``AS_OF``) in ``base``."""
    events = tiny_events()
    events.write_parquet(base / "events.parquet")
    write_run(base / "root", events)
    return base
