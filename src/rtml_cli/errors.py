"""One error hierarchy for the library, and the exit codes the CLI maps it to.

Library code raises these; only the CLI boundary (``rtml_cli.cli``) turns them
into a one-line message on stderr and a process exit code. Failures of the
machine rather than of the input — disk full, out of memory, Ctrl-C inside a
DuckDB query — are recognised there by :func:`environment_error`, wherever in
the library they surfaced and whatever they were wrapped in.
"""

from __future__ import annotations

import errno
import os
import re
import resource  # imported now: under a memory limit, importing it later can fail
import sys
from collections.abc import Iterator
from enum import IntEnum


class ExitCode(IntEnum):
    """Every exit code ``rtml`` can return (documented in the README)."""

    OK = 0
    INTERNAL = 1  # unexpected internal error (a bug: rerun with --debug)
    USAGE = 2  # bad command line: unknown option, invalid value
    DRIFT = 10  # `rtml drift`: drift detected (a result, not an error)
    DATA_ERR = 65  # input data is malformed or violates a contract
    NO_INPUT = 66  # an input file or directory does not exist
    UNAVAILABLE = 69  # a service rtml needs (the Ray cluster at --address) cannot be reached
    RESOURCE = 71  # out of memory (or threads): sysexits EX_OSERR
    CANT_CREATE = 73  # an output cannot be written (also: no space left on device)
    TEMP_FAIL = 75  # temporary failure, e.g. another run holds the lock
    STALE_DATA = 76  # the newest event is older than --max-staleness: the feed has stopped
    CONFIG = 78  # the configuration file (rtml.toml, --config) is unreadable or names no option
    INTERRUPTED = 130  # killed by Ctrl-C
    TERMINATED = 143  # stopped by SIGTERM (cron timeout, systemd, kill): cleaned up first


class RtmlError(Exception):
    """Base of every error rtml reports to a user. ``str(err)`` is the one-line message."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


class UsageError(RtmlError):
    """An option value that parses but makes no sense (e.g. shard 3/2, alpha 1.5)."""

    exit_code = ExitCode.USAGE


class ConfigError(RtmlError):
    """The configuration file cannot be read, or names a command or option that does not
    exist (sysexits EX_CONFIG)."""

    exit_code = ExitCode.CONFIG


class StaleData(RtmlError):
    """The input's newest event is older than the staleness the caller allows: the upstream
    feed has stopped, and a run on it would publish yesterday's answer as today's."""

    exit_code = ExitCode.STALE_DATA


class DataError(RtmlError):
    """Input data exists but is malformed; ``problems`` lists every problem found."""

    exit_code = ExitCode.DATA_ERR


class PluginError(DataError):
    """A plug-in (a strategy from an entry point or a --strategy-module file) cannot be
    imported, or fails its contract; the message names the plug-in and what failed."""


class Unavailable(RtmlError):
    """A service the run needs cannot be reached: e.g. no Ray cluster answers at --address
    (sysexits EX_UNAVAILABLE). Nothing was written; retry when it is up."""

    exit_code = ExitCode.UNAVAILABLE


class InputMissing(RtmlError):
    """An input path does not exist or matches no file."""

    exit_code = ExitCode.NO_INPUT


class OutputError(RtmlError):
    """An output cannot be created or written (also: no space left on device)."""

    exit_code = ExitCode.CANT_CREATE


class ResourceError(RtmlError):
    """The machine ran out of memory (or could not start a thread): raise a limit or free memory."""

    exit_code = ExitCode.RESOURCE


class Interrupted(RtmlError):
    """Ctrl-C, also when it arrives inside a DuckDB query."""

    exit_code = ExitCode.INTERRUPTED


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so ``finally`` blocks remove temporaries.

    A ``BaseException`` (not ``KeyboardInterrupt``, which Typer turns into a plain 130) so
    that only the CLI boundary catches it and exits 143."""


class TemporaryFailure(RtmlError):
    """Retry later: e.g. another run holds the lock on an output root."""

    exit_code = ExitCode.TEMP_FAIL


MEMORY_LIMIT_ENV = "RTML_MEMORY_LIMIT"
_NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_NO_SPACE_TEXT = ("No space left on device", "Disk quota exceeded")
# what native libraries say when an allocation, a mapping or a thread fails for memory
_NO_MEMORY_TEXT = (
    "failed to map segment",
    "Cannot allocate memory",
    "could not spawn threads",
    "memory allocation of",
)
_QUOTED_PATH = re.compile(r"[\"'](/[^\"']+)[\"']")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it was raised from or while handling."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _address_space_limit() -> int | None:
    try:
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY else soft


def _out_of_memory(detail: str, *, duckdb_limit: bool = False) -> ResourceError:
    """``duckdb_limit``: DuckDB hit its own memory_limit (rather than the system refusing)."""
    limit = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    limits = [f"{MEMORY_LIMIT_ENV}={limit}" if limit else f"{MEMORY_LIMIT_ENV} unset"]
    soft = _address_space_limit()
    if soft is not None:
        limits.append(f"ulimit -v {soft // 1024} ({soft / 2**20:,.0f} MiB)")
    if duckdb_limit:
        fix = f"raise {MEMORY_LIMIT_ENV} (e.g. {MEMORY_LIMIT_ENV}=8GB), it caps DuckDB's memory"
    else:
        fix = (
            "free memory or raise the process limit (ulimit -v); "
            f"{MEMORY_LIMIT_ENV} below the memory available makes DuckDB spill to disk instead"
        )
    return ResourceError(
        f"out of memory: {detail} (limits in force: {', '.join(limits)}); {fix}, and rerun"
    )


def _no_space(chain: list[BaseException]) -> OutputError:
    where = next(
        (str(e.filename) for e in chain if isinstance(e, OSError) and e.filename), None
    ) or next(
        (m.group(1) for e in chain if (m := _QUOTED_PATH.search(str(e)))),
        "an output or temporary file",
    )
    return OutputError(f"no space left on device writing {where}: free space there and rerun")


def environment_error(exc: BaseException) -> RtmlError | None:
    """The failure of the machine behind ``exc``, as the error to report; None for any other.

    Disk full (``OSError`` ENOSPC/EDQUOT, or DuckDB's IO error saying so) ->
    ``OutputError`` (73); DuckDB's ``OutOfMemoryException``, ``MemoryError`` and
    native libraries failing to map memory or start threads -> ``ResourceError``
    (71); DuckDB's ``InterruptException`` (Ctrl-C inside a query) -> ``Interrupted``
    (130). Looks through the whole chain, so a library's ``DataError("cannot
    read …") from duckdb_error`` is still reported as what it really was.
    """
    chain = list(_chain(exc))
    duckdb = sys.modules.get("duckdb")
    for cause in chain:
        # DuckDB 2 reports Ctrl-C inside ``execute`` as RuntimeError("Query interrupted")
        # and inside a fetch as InterruptException
        if duckdb is not None and (
            isinstance(cause, duckdb.InterruptException)
            or (isinstance(cause, RuntimeError) and str(cause).startswith("Query interrupted"))
        ):
            return Interrupted("interrupted")
    for cause in chain:
        if isinstance(cause, OSError) and cause.errno in _NO_SPACE_ERRNOS:
            return _no_space(chain)
        if any(text in str(cause) for text in _NO_SPACE_TEXT):
            return _no_space(chain)
    for cause in chain:
        if duckdb is not None and isinstance(cause, duckdb.OutOfMemoryException):
            # "could not allocate block of size … (1.0 GiB/1.0 GiB used)": its own limit;
            # "Allocation failure", "(bad allocation)": the system refused
            own = bool(re.search(r"/[^()]*used\)", str(cause)))
            return _out_of_memory(_first_line(cause), duckdb_limit=own)
        if isinstance(cause, MemoryError):
            text = str(cause).strip()
            detail = f"{type(cause).__name__}: {text}" if text else "Python's MemoryError"
            return _out_of_memory(detail)
        if isinstance(cause, OSError) and cause.errno == errno.ENOMEM:
            return _out_of_memory(_first_line(cause))
        if any(text in str(cause) for text in _NO_MEMORY_TEXT):
            return _out_of_memory(_first_line(cause))
        if "Decompression failure" in str(cause) and _address_space_limit() is not None:
            # under ulimit -v, DuckDB reports a failed decompression buffer this way
            return _out_of_memory(
                f"{_first_line(cause)} (under a process memory limit; if it persists without "
                "the limit, the file is corrupt)"
            )
        if (
            isinstance(cause, RuntimeError)
            and "can't start new thread" in str(cause)
            and _address_space_limit() is not None
        ):
            # under ulimit -v a thread's stack cannot be mapped (e.g. precompute's
            # fingerprint thread): Python says only "can't start new thread"
            return _out_of_memory(f"could not start a thread ({_first_line(cause)})")
        if isinstance(cause, SystemError) and _address_space_limit() is not None:
            # a native library (jemalloc in polars) failed to allocate while loading under
            # ulimit -v and returned NULL without saying why
            return _out_of_memory(f"a native library failed to load ({_first_line(cause)})")
    return None
