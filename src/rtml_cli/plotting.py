"""The one way rtml draws a ``--plot`` PNG: matplotlib loaded headless, one style, atomic save.

matplotlib is optional (``pip install 'rtml[plot]'``): :func:`pyplot` loads it with the Agg
backend (no display needed, same pixels everywhere) and turns its absence into the one
``UsageError`` every ``--plot`` shows. :func:`save_png` writes through
``fsutil.atomic_path`` so a failed plot never leaves a half-written file under the name.
"""

from __future__ import annotations

import os
from typing import Any

from rtml_cli.errors import UsageError
from rtml_cli.fsutil import PNG_OUTPUT, atomic_path, check_output

# The shared style: the resolution of every rtml chart (a figure may keep its own dpi).
DPI = 110
INSTALL_HINT = "--plot needs matplotlib, which is not installed; run: pip install 'rtml[plot]'"


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend; a ``UsageError`` when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    return plt


def check_png_target(path: str | os.PathLike[str], *, option: str = "--plot") -> None:
    """Before any work: matplotlib must be installed (else the install hint, exit 2) and the
    ``--plot`` path must be one rtml may replace (else exit 73)."""
    pyplot()
    check_output(path, PNG_OUTPUT, option=option)


def save_png(
    fig: Any,
    path: str | os.PathLike[str],
    *,
    dpi: float | str = DPI,
    option: str = "--plot",
) -> None:
    """Write ``fig`` as a PNG at ``path`` atomically, then close it (also on failure).

    ``dpi="figure"`` keeps the figure's own resolution.
    """
    plt = pyplot()
    try:
        with atomic_path(path, PNG_OUTPUT, option=option) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)
