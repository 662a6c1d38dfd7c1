"""The ``rtml`` command line: a thin layer over the library.

Each command module converts options, calls one library function and renders
the result. Errors raised by the library (``rtml_cli.errors``) are turned into
one line on stderr and a named exit code here, in ``RtmlGroup.main`` — the one
place that maps errors to exit codes. Failures of the machine (disk full, out of
memory, Ctrl-C inside DuckDB) are recognised through whatever wrapped them
(``errors.environment_error``). ``--debug`` shows the traceback.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from rtml_cli import __version__
from rtml_cli.errors import ExitCode, RtmlError, Terminated, environment_error

_state = {"debug": False}


def _debug_enabled() -> bool:
    return _state["debug"] or os.environ.get("RTML_DEBUG", "") not in ("", "0")


def _error_line(message: str) -> None:
    print(f"rtml: error: {message}", file=sys.stderr)


def _is_usage_error(exc: BaseException) -> bool:
    """Click's ClickException/UsageError (vendored or not): bad command-line words."""
    return hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)


def _report(error: RtmlError) -> int:
    """Print ``error`` as one line (plus its problems) and return its exit code."""
    if _debug_enabled():
        traceback.print_exc()
    _error_line(str(error))
    for problem in error.problems:
        print(f"  - {problem}", file=sys.stderr)
    return int(error.exit_code)


def _report_usage(exc: Any) -> int:
    """Print a command-line error (click's) as one line, with where to look; its code."""
    if _debug_enabled():
        traceback.print_exc()
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    if exc.format_message():  # empty: a group called alone, its help already printed
        _error_line(f"{exc.format_message()}{hint}")
    return int(exc.exit_code)


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


@contextlib.contextmanager
def _sigterm_cleans_up():
    """Turn SIGTERM into an exception while a command runs, so its temporaries are removed
    (a plain SIGTERM would end Python without running ``finally`` blocks)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _no_metavar(param: Any) -> Any:
    if param is not None and getattr(param, "is_flag", False) and param.metavar is None:
        param.metavar = ""
    return param


def reflow(text: str) -> str:
    """A docstring's paragraphs as single lines, so help wraps at the terminal's width
    (Typer keeps the source's line breaks after the first paragraph: ragged at 80 columns).
    Lines that start a list item (``- ``, ``* ``) or are indented keep their break."""
    paragraphs = []
    for paragraph in text.split("\n\n"):
        lines = paragraph.splitlines()
        out = lines[:1]
        for line in lines[1:]:
            if line.startswith(("- ", "* ", "  ")):
                out.append("\n" + line)
            else:
                out.append(" " + line.strip())
        paragraphs.append("".join(out))
    return "\n\n".join(paragraphs)


def _flags_without_metavar(command: Any) -> None:
    """Help shows ``--quiet``, not ``--quiet <bool>``: a flag takes no value (recent Typer's
    rich help prints every option's type, flags and ``--help`` included). Also reflows the
    command's help text (see :func:`reflow`)."""
    if getattr(command, "help", None):
        command.help = reflow(inspect.cleandoc(command.help))
    for param in getattr(command, "params", []):
        _no_metavar(param)
    if not hasattr(command, "_rtml_help_option"):
        command._rtml_help_option = command.get_help_option
        command.get_help_option = lambda ctx: _no_metavar(command._rtml_help_option(ctx))
    for sub in getattr(command, "commands", {}).values():
        _flags_without_metavar(sub)


def _warn_unsaved(code: int) -> None:
    """``--save-json`` given to a command that prints no document: say so (nothing written)."""
    from rtml_cli.output import end_run

    saved_to, saved = end_run()
    if saved_to is not None and not saved and code == ExitCode.OK:
        print(
            f"rtml: warning: --save-json {saved_to}: this command prints no JSON document; "
            "nothing was written",
            file=sys.stderr,
        )


class RtmlGroup(TyperGroup):
    """Top-level group: runs the command and maps every failure to an exit code."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        _state["debug"] = False
        _flags_without_metavar(self)
        from rtml_cli.output import end_run, start_run

        start_run(args if args is not None else sys.argv[1:])
        try:
            with _sigterm_cleans_up():
                code = super().main(
                    args=args,
                    prog_name=prog_name or "rtml",
                    complete_var=complete_var,
                    standalone_mode=False,
                    **extra,
                )
            code = code if isinstance(code, int) else ExitCode.OK
            _warn_unsaved(code)
            if code == ExitCode.INTERRUPTED:  # Typer turns Ctrl-C into a silent Exit(130)
                _error_line("interrupted; temporaries removed, previous outputs intact")
        except Terminated:
            _error_line("terminated (SIGTERM); temporaries removed, previous outputs intact")
            code = ExitCode.TERMINATED
        except RtmlError as exc:
            code = _report(environment_error(exc) or exc)
        except typer.Abort:
            _error_line("aborted")
            code = ExitCode.INTERRUPTED
        except KeyboardInterrupt:
            _error_line("interrupted")
            code = ExitCode.INTERRUPTED
        except BrokenPipeError:
            code = ExitCode.INTERRUPTED
        except (SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - the one catch-all, at the boundary
            # BaseException: a Rust panic in polars (pyo3 PanicException) is not an Exception
            known = environment_error(exc)
            if known is not None:
                code = _report(known)
            elif _is_usage_error(exc):
                code = _report_usage(exc)
            else:
                if _debug_enabled():
                    traceback.print_exc()
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                _error_line(
                    f"internal error: {type(exc).__name__}: {first} "
                    "(rerun with --debug for the traceback)"
                )
                code = ExitCode.INTERNAL
        finally:
            end_run()
        if standalone_mode:
            sys.exit(int(code))
        return int(code)


class DefaultCommandGroup(TyperGroup):
    """A group that runs its ``default_command`` when the first word is not a subcommand.

    Lets ``rtml evaluate RESULTS …`` and ``rtml evaluate ope LOG …`` coexist.
    """

    default_command = ""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if (
            self.default_command
            and args
            and args[0] not in self.commands
            and args[0] not in ("--help", "-h")
        ):
            args = [self.default_command, *args]
        elif self.default_command and not args and self.default_command in (ctx.default_map or {}):
            # `rtml evaluate` alone, with its options in the configuration file
            args = [self.default_command]
        return super().parse_args(ctx, args)


def default_command_group(name: str) -> type[DefaultCommandGroup]:
    """A ``DefaultCommandGroup`` subclass whose default subcommand is ``name``."""
    return type(f"Default_{name}_Group", (DefaultCommandGroup,), {"default_command": name})


app = typer.Typer(
    cls=RtmlGroup,
    name="rtml",
    help=(
        "Measure, on your own logs, what online prediction, bandit evaluation and "
        "continual learning would buy over batch ML — before you build anything."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"rtml {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback when a command fails.")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Option values per command from a TOML file (default: $RTML_CONFIG, else "
            "./rtml.toml when it exists); the command line wins. See docs/cron.md.",
        ),
    ] = None,
    save_json: Annotated[
        Path | None,
        typer.Option(
            "--save-json",
            help="Also write the command's JSON document to this file (atomically), whatever "
            "--format prints: the table for people and the document for `rtml report` from "
            "one run.",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Global options."""
    _state["debug"] = debug
    if save_json is not None:
        from rtml_cli.fsutil import JSON_OUTPUT, check_output
        from rtml_cli.output import save_json_to

        check_output(save_json, JSON_OUTPUT, option="--save-json")
        save_json_to(save_json)
    from rtml_cli.config import default_map, find_config, read_config

    path = find_config(config)
    if path is not None:
        ctx.default_map = default_map(ctx.command, read_config(path), path)


def _register() -> None:
    # One module per command group; each exposes ``register(app)``.
    from rtml_cli.cli import (
        data,
        drift,
        evaluate,
        migrate,
        precompute,
        report,
        retrain,
        simulate,
    )

    for module in (data, precompute, simulate, evaluate, retrain, drift, report, migrate):
        module.register(app)


_register()


def main() -> None:
    """Console-script entry point."""
    try:
        command = typer.main.get_command(app)
    except MemoryError as exc:  # the group's own mapping is not in place yet
        error = environment_error(exc)
        # a MemoryError is always recognised (as out of memory, or as no space left)
        assert error is not None, "environment_error() returned None for a MemoryError"
        _error_line(str(error))
        sys.exit(int(error.exit_code))
    try:
        command.main(prog_name="rtml")
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - the error report itself failed (out of memory)
        # last resort: one line, no traceback; the failure is almost always memory here
        if _debug_enabled():
            traceback.print_exc()
        kind = "out of memory" if isinstance(exc, MemoryError | ImportError) else "internal error"
        _error_line(f"{kind} while reporting an error: {type(exc).__name__} (rerun with --debug)")
        sys.exit(int(ExitCode.RESOURCE if kind == "out of memory" else ExitCode.INTERNAL))
