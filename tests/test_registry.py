"""The one registry type and the contract suites run over every registered plug-in."""

from __future__ import annotations

import pytest

from rtml_cli.checks import suites
from rtml_cli.errors import UsageError
from rtml_cli.registry import Registry


def test_registry_lists_gets_and_refuses_unknown_and_duplicate_names():
    reg: Registry[type] = Registry("widget")

    @reg.register("a", description="the first")
    class A:
        pass

    reg.add("b", int, description="the second", stage=2)
    assert reg.names() == ["a", "b"] and list(reg) == ["a", "b"] and len(reg) == 2
    assert reg.get("a") is A and reg.entry("b").meta == {"stage": 2}
    with pytest.raises(UsageError, match="unknown widget 'c': choose from a, b"):
        reg.get("c")
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("a", str)


_CASES = [(s, e) for s in suites() for e in s.registry.entries()]


@pytest.mark.parametrize(
    ("suite", "entry"), _CASES, ids=[f"{s.registry.kind}:{e.name}" for s, e in _CASES]
)
def test_every_registered_plugin_passes_its_contract(suite, entry):
    for check in suite.checks:
        check(entry)
