"""Parsing of durations (``30m``, ``1d``) and timestamps given on the command line."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from rtml_cli.errors import UsageError

_UNITS = {
    "us": timedelta(microseconds=1),
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h|d|w)\s*$")


def parse_duration(text: str) -> timedelta:
    """Parse ``90s``, ``30m``, ``1h``, ``1d``, ``2w``, ``0s`` into a timedelta."""
    match = _DURATION.match(str(text))
    if not match:
        raise UsageError(
            f"invalid duration {text!r}: use a number and a unit (us, ms, s, m, h, d, w), e.g. 30m"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def format_duration(delta: timedelta) -> str:
    """The shortest exact spelling of a duration in the units ``parse_duration`` reads."""
    micros = round(delta.total_seconds() * 1_000_000)
    for unit in ("w", "d", "h", "m", "s", "ms"):
        size = round(_UNITS[unit].total_seconds() * 1_000_000)
        if micros and micros % size == 0:
            return f"{micros // size}{unit}"
    return f"{micros}us"


def parse_timestamp(text: str) -> datetime:
    """Parse an ISO-8601 date or timestamp; naive values are taken as UTC."""
    try:
        value = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"invalid timestamp {text!r}: use ISO 8601, e.g. 2024-03-01 or 2024-03-01T12:00:00Z"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


# How far past "now" an event's timestamp may lie (clocks of the machines that logged it
# drift) before `rtml data validate` and `rtml precompute` call it a timestamp in the
# future: a wrong epoch unit or time zone, which would otherwise set a run's as-of.
CLOCK_SKEW = timedelta(minutes=5)


def future_limit(now: datetime | None = None) -> datetime:
    """The latest timestamp an input may hold: ``now`` (default: the clock) plus ``CLOCK_SKEW``."""
    return (now or utc_now()) + CLOCK_SKEW
