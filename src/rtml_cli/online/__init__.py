"""Stages 2-3: replaying session logs to measure online prediction (``rtml simulate``).

``simulate()`` is the library entry point (``engine.py``: validate → prepare → build →
serve → summarise over ``replay.py``'s arrays). The strategy interface (``Strategy``,
``Request``, ``Env``) is in ``base.py``, the strategies by stage in ``stage1.py``,
``stage2.py`` and ``stage3.py`` (the online ranker and its training), the registry and
name handling in ``strategies.py``; streaming features live in ``streaming.py``.
"""

from rtml_cli.online.engine import SimulationResult, simulate, write_results

__all__ = ["SimulationResult", "simulate", "write_results"]
