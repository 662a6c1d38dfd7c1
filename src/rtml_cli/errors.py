"""One error hierarchy for the library, and the exit codes the CLI maps it to.

Library code raises these; only the CLI boundary (``rtml_cli.cli``) turns them
into a one-line message on stderr and a process exit code.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Every exit code ``rtml`` can return (documented in the README)."""

    OK = 0
    INTERNAL = 1  # unexpected internal error (a bug: rerun with --debug)
    USAGE = 2  # bad command line: unknown option, invalid value
    DRIFT = 10  # `rtml drift`: drift detected (a result, not an error)
    DATA_ERR = 65  # input data is malformed or violates a contract
    NO_INPUT = 66  # an input file or directory does not exist
    CANT_CREATE = 73  # an output cannot be written
    TEMP_FAIL = 75  # temporary failure, e.g. another run holds the lock
    INTERRUPTED = 130  # killed by Ctrl-C


class RtmlError(Exception):
    """Base of every error rtml reports to a user. ``str(err)`` is the one-line message."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


class UsageError(RtmlError):
    """An option value that parses but makes no sense (e.g. shard 3/2, alpha 1.5)."""

    exit_code = ExitCode.USAGE


class DataError(RtmlError):
    """Input data exists but is malformed; ``problems`` lists every problem found."""

    exit_code = ExitCode.DATA_ERR


class InputMissing(RtmlError):
    """An input path does not exist or matches no file."""

    exit_code = ExitCode.NO_INPUT


class OutputError(RtmlError):
    """An output cannot be created or written."""

    exit_code = ExitCode.CANT_CREATE


class TemporaryFailure(RtmlError):
    """Retry later: e.g. another run holds the lock on an output root."""

    exit_code = ExitCode.TEMP_FAIL
