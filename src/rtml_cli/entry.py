"""The console-script entry point: starts the CLI, and reports a failed start in one line.

Importing the CLI loads numpy (the registries that give the command defaults). Under a low
``ulimit -v`` that import itself can fail, before the CLI's own error mapping exists; this
tiny module (standard library only) turns that into one line and exit 71 instead of a
Python traceback. ``RTML_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    try:
        from rtml_cli.cli import main as cli_main
    except (MemoryError, ImportError, SystemError) as exc:
        if os.environ.get("RTML_DEBUG", "") not in ("", "0"):
            raise
        text = str(exc).strip().splitlines()
        detail = f"{type(exc).__name__}: {text[0] if text else ''}"
        if isinstance(exc, MemoryError) or "map" in detail or "memory" in detail.lower():
            print(
                f"rtml: error: out of memory while starting ({detail}); free memory or raise "
                "the process limit (ulimit -v), and rerun",
                file=sys.stderr,
            )
            sys.exit(71)  # ExitCode.RESOURCE (errors.py may be what failed to load)
        print(
            f"rtml: error: cannot start ({detail}): reinstall rtml (pip install -e .)",
            file=sys.stderr,
        )
        sys.exit(1)
    cli_main()
