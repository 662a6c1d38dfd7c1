"""A configuration file for the command line: ``rtml.toml`` or ``--config FILE``.

One TOML table per command, named by its words after ``rtml`` (``[precompute]``,
``[simulate]``, ``[data.import]``, ``[evaluate.ope]``, ``[drift.popularity]``); ``[evaluate]``
and ``[drift]`` are the commands ``rtml evaluate`` and ``rtml drift`` themselves. Keys are
option names without the dashes (``warm-start`` or ``warm_start``) or argument names
(``events``); values are what you would type, as TOML strings, numbers, booleans or arrays
(for options you can repeat). Options on the command line win over the file.

The file is turned into Click's ``default_map``, so the command line parses exactly as if the
values had been typed — the same checks, the same errors. A table or key that names no
command or option is an error (exit 78) naming the file and the key, so a typo is never
silently ignored.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from rtml_cli.errors import ConfigError

DEFAULT_NAME = "rtml.toml"
ENV_VAR = "RTML_CONFIG"


def find_config(explicit: Path | None) -> Path | None:
    """The configuration file in force: ``--config FILE``, else ``$RTML_CONFIG``, else
    ``./rtml.toml`` when it exists, else none. A file named explicitly must exist."""
    named = explicit or (Path(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else None)
    if named is not None:
        if not named.is_file():
            how = "--config" if explicit else f"${ENV_VAR}"
            raise ConfigError(f"configuration file {named} ({how}) does not exist or is not a file")
        return named
    local = Path(DEFAULT_NAME)
    return local if local.is_file() else None


def read_config(path: Path) -> dict[str, Any]:
    """The TOML document at ``path`` (a one-line ``ConfigError`` when it does not parse)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[import-not-found, no-redef, unused-ignore]
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc


def default_map(command: Any, doc: dict[str, Any], path: Path) -> dict[str, Any]:
    """Click's ``default_map`` for the group ``command`` from a parsed configuration file."""
    return _group_map(command, doc, path, prefix="")


def _group_map(group: Any, table: dict[str, Any], path: Path, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    default = getattr(group, "default_command", "") or ""
    own: dict[str, Any] = {}
    for key, value in table.items():
        sub = group.commands.get(key)
        if sub is not None and isinstance(value, dict):
            name = f"{prefix}{key}"
            if hasattr(sub, "commands"):
                out[key] = _group_map(sub, value, path, prefix=f"{name}.")
            else:
                out[key] = _command_map(sub, value, path, name)
        elif default and not isinstance(value, dict):
            own[key] = value  # keys of `[evaluate]` belong to `rtml evaluate` itself
        else:
            where = f"[{prefix.rstrip('.')}]" if prefix else "the top level"
            known = ", ".join(sorted(group.commands))
            raise ConfigError(
                f"{path}: {key!r} in {where} is not a command (commands there: {known})"
            )
    if own:
        name = prefix.rstrip(".")
        merged = {**_command_map(group.commands[default], own, path, name)}
        merged.update(out.get(default, {}))
        out[default] = merged
    return out


def _command_map(command: Any, table: dict[str, Any], path: Path, name: str) -> dict[str, Any]:
    names: dict[str, str] = {}
    for param in command.params:
        if param.name is None:
            continue
        names[param.name] = param.name
        names[param.name.replace("_", "-")] = param.name
        for opt in (*param.opts, *param.secondary_opts):
            if opt.startswith("--"):
                names[opt[2:]] = param.name
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            raise ConfigError(f"{path}: [{name}.{key}] is not a command")
        param_name = names.get(key)
        if param_name is None:
            raise ConfigError(
                f"{path}: [{name}] has no option {key!r} (see 'rtml {name.replace('.', ' ')} "
                "--help')"
            )
        out[param_name] = value
    return out
