"""The tiny shop the online tests replay (it lives in ``rtml_cli.checks.tiny_shop``, where
the strategy contract runs on it too)."""

from rtml_cli.checks.tiny_shop import AS_OF, T0, tiny_events, write_run

__all__ = ["AS_OF", "T0", "tiny_events", "write_run"]
