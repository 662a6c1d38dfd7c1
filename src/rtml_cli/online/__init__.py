"""Stages 2-3: replaying session logs to measure online prediction (``rtml simulate``).

``simulate()`` is the library entry point (see ``engine.py``); strategies are registered
by name in ``strategies.py``; streaming features live in ``streaming.py``.
"""

from rtml_cli.online.engine import SimulationResult, simulate, write_results

__all__ = ["SimulationResult", "simulate", "write_results"]
