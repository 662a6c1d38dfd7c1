"""Your own model in the replay: strategies from outside rtml (plug-ins).

Everything a plug-in author needs is importable from here: the interface (``Strategy``,
``Request``, ``Env``, ``take_unseen``), :func:`register_strategy` and :func:`check_strategy`
(the contract rtml checks a plug-in against, for the plug-in's own tests).

A plug-in is Python code that calls :func:`register_strategy` when it is imported, like
rtml's own stage modules do. rtml finds it in one of two ways:

- ``rtml simulate --strategy-module my_model.py`` (and ``rtml retrain``) imports that file,
  afresh on every load;
- an installed package declares an entry point in the group ``rtml.strategies``
  (``[project.entry-points."rtml.strategies"] my-model = "my_package"``): its value names
  a module, imported, or a function, called with no arguments. Entry points are loaded only
  when a run names a strategy that is neither built in nor from ``--strategy-module``.

Every strategy a plug-in registers goes through the strategy contract
(``rtml_cli.checks.strategies``) when it is loaded, before any replay work or output; a
plug-in that cannot be imported, registers nothing or fails a check is a ``PluginError``
(exit 65) whose one line names the plug-in, the strategy and what failed.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import re
import sys
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rtml_cli.checks.strategies import check_strategy, run_checks
from rtml_cli.errors import InputMissing, PluginError
from rtml_cli.online.base import STRATEGIES, Env, Factory, Request, Strategy, take_unseen
from rtml_cli.online.strategies import parse_name
from rtml_cli.registry import Entry

__all__ = [
    "ENTRY_POINT_GROUP",
    "Env",
    "Factory",
    "PluginError",
    "Request",
    "Strategy",
    "check_strategy",
    "load_entry_points",
    "load_module",
    "load_strategies",
    "register_strategy",
    "take_unseen",
]

#: The entry-point group installed packages declare their strategies in.
ENTRY_POINT_GROUP = "rtml.strategies"
# a name --strategies can list: no commas, no '@' (the freshness suffix), no spaces
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_loading: list[str] = []  # the plug-in being loaded: who calls register_strategy


def _registration_problem(
    name: Any, factory: Any, description: Any, stage: Any, streaming: Any, trains: Any
) -> str | None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return "is not a name --strategies can list (letters, digits, '.', '_', '-')"
    if not callable(factory):
        return f"has no factory: {type(factory).__name__} is not callable as factory(env, lag)"
    if not isinstance(description, str) or not description.strip() or "\n" in description:
        return "needs a one-line description (it is listed in --help and in errors)"
    if stage not in (1, 2, 3) or isinstance(stage, bool):
        return f"has stage {stage!r}: 1 (batch lists), 2 (session-based) or 3 (online features)"
    if not isinstance(streaming, bool) or not isinstance(trains, bool):
        return "needs streaming and trains as True or False"
    return None


def register_strategy(
    name: str,
    factory: Factory,
    *,
    description: str,
    stage: int = 2,
    streaming: bool = False,
    trains: bool = False,
) -> Factory:
    """Make ``factory(env, lag) -> Strategy`` servable as ``--strategies NAME``; returns it.

    ``description``: one line for ``--help`` and errors; ``stage``: 1, 2 or 3 (how it is
    reported); ``streaming``: it reads ``request.streams`` and takes ``NAME@5m`` (its
    factory gets the lag and keeps it as ``self.lag``); ``trains``: its ``prepare(env)``
    learns from ``env.training`` (the requests before the as-of). A name may not be a
    built-in's or another plug-in's; registering again from the same plug-in replaces.
    """
    source = _loading[-1] if _loading else f"module {getattr(factory, '__module__', '?')}"
    problem = _registration_problem(name, factory, description, stage, streaming, trains)
    if problem:
        raise PluginError(f"strategy {name!r} from {source} {problem}")
    if name in STRATEGIES:
        owner = STRATEGIES.entry(name).meta.get("plugin")
        if owner is None:
            raise PluginError(
                f"{source} registers {name!r}, the name of a built-in strategy: choose another"
            )
        if owner != source:
            raise PluginError(
                f"{source} registers {name!r}, already registered by {owner}: rename one"
            )
        STRATEGIES.remove(name)
    return STRATEGIES.add(
        name,
        factory,
        description=description.strip(),
        stage=stage,
        streaming=streaming,
        trains=trains,
        default=False,
        plugin=source,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _load(label: str, run: Callable[[], None]) -> list[Entry[Factory]]:
    """Run ``run`` (an import) as the plug-in ``label``; the strategies it registered."""
    _loading.append(label)
    try:
        run()
    except PluginError:
        raise
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - whatever the plug-in's code raised
        raise PluginError(f"{label} cannot be imported: {_first_line(exc)}") from exc
    finally:
        _loading.pop()
    mine = [e for e in STRATEGIES.entries() if e.meta.get("plugin") == label]
    if not mine:
        raise PluginError(
            f"{label} registers no strategy: call "
            "rtml_cli.online.plugins.register_strategy(name, factory, description=...) in it"
        )
    return mine


def load_module(path: str | Path) -> list[Entry[Factory]]:
    """Import the Python file ``path`` (again, if it was) and return what it registered."""
    path = Path(path)
    if not path.is_file():
        raise InputMissing(f"--strategy-module {path}: no such file")
    label = f"--strategy-module {path}"
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
    stem = re.sub(r"\W", "_", path.stem)
    module_name = f"rtml_strategy_module_{stem}_{digest}"
    for entry in STRATEGIES.entries():  # what the file registered before: it says it again
        if entry.meta.get("plugin") == label:
            STRATEGIES.remove(entry.name)

    def run() -> None:
        loader = importlib.machinery.SourceFileLoader(module_name, str(resolved))
        module = types.ModuleType(module_name)
        module.__file__ = str(resolved)
        module.__loader__ = loader
        sys.modules[module_name] = module  # dataclasses and pickle look modules up there
        try:
            loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise

    return _load(label, run)


def load_entry_points() -> list[Entry[Factory]]:
    """Load every installed ``rtml.strategies`` entry point; the strategies they register."""
    from importlib.metadata import EntryPoint, entry_points

    def loader(point: EntryPoint) -> Callable[[], None]:
        def run() -> None:
            obj = point.load()
            if not isinstance(obj, types.ModuleType):
                obj()  # a registration function

        return run

    loaded: list[Entry[Factory]] = []
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        label = f"entry point {point.name} = {point.value}"
        loaded += _load(label, loader(point))
    return loaded


def check_loaded(entry: Entry[Factory]) -> None:
    """The strategy contract on a loaded plug-in strategy, as a one-line ``PluginError``."""
    try:
        run_checks(entry)
    except AssertionError as exc:
        raise PluginError(
            f"plug-in strategy {entry.name!r} from {entry.meta.get('plugin')} {exc}"
        ) from (exc.__cause__ or exc)


def load_strategies(names: Sequence[str], modules: Sequence[str | Path] = ()) -> list[Entry[Any]]:
    """Make the strategies ``names`` asks for servable, before any replay work.

    Imports each ``--strategy-module`` file; if a name is still unknown, every installed
    ``rtml.strategies`` entry point; checks every plug-in strategy so loaded against the
    contract (``PluginError``, exit 65); then parses every name (an unknown one is a
    ``UsageError`` listing the choices). Returns the plug-in strategies loaded.
    """
    loaded = [entry for path in modules for entry in load_module(path)]
    if any(name.strip().partition("@")[0] not in STRATEGIES for name in names):
        loaded += load_entry_points()
    for entry in loaded:
        check_loaded(entry)
    for name in names:
        parse_name(name)
    return loaded
