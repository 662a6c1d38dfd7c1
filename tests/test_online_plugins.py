"""Your own model in the replay: plug-in strategies from entry points and --strategy-module.

Every way a plug-in can fail is one line on stderr naming it, exit 65 and no output; the
example plug-in (examples/plugin) is replayed both ways and its own tests run here too.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtml_cli.checks.strategies import check_list
from rtml_cli.errors import ExitCode, PluginError
from rtml_cli.online import plugins
from rtml_cli.online.strategies import REGISTRY
from tests.online_fixtures import AS_OF, write_shop

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "plugin"
EXAMPLE_MODULE = EXAMPLE / "src" / "rtml_category_popular.py"


@pytest.fixture(autouse=True)
def _registry_as_built_in():
    """Each test starts and ends with rtml's own strategies only (plug-ins register globally)."""
    names = set(REGISTRY.names())
    yield
    for name in set(REGISTRY.names()) - names:
        REGISTRY.remove(name)
    for module in [m for m in sys.modules if m.startswith(("rtml_category_popular", "my_"))]:
        del sys.modules[module]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return write_shop(tmp_path_factory.mktemp("shop"))


def _simulate(invoke, shop, *args):
    return invoke("simulate", shop / "events.parquet", "-a", shop / "root", "-k", "8", *args)


def _one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("rtml: error: "), lines[0]
    return lines[0]


def _entry_point(tmp_path: Path, monkeypatch, *lines: str) -> None:
    """An installed distribution declaring ``lines`` in ``rtml.strategies``, without pip: a
    ``*.dist-info`` directory on sys.path is what importlib.metadata reads."""
    info = tmp_path / "site" / "my_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[rtml.strategies]\n" + "\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))


# --- the example plug-in, both ways in --------------------------------------------------------


def test_strategy_module_replays_the_example_next_to_rtml_strategies(invoke, shop, tmp_path):
    out = tmp_path / "results.parquet"
    result = _simulate(
        invoke,
        shop,
        "--strategies",
        "popular,category-popular",
        "--strategy-module",
        EXAMPLE_MODULE,
        "--out",
        out,
        "--format",
        "json",
    )
    assert result.exit_code == ExitCode.OK, result.stderr
    doc = json.loads(result.stdout)
    hr = {r["strategy"]: r["hr"] for r in doc["summary"] if r["segment"] == "all"}
    assert set(hr) == {"popular", "category-popular"}
    assert hr["category-popular"] > hr["popular"]  # the session's category beats the crowd
    frame = pl.read_parquet(out)
    assert frame.filter(pl.col("strategy") == "category-popular").height == doc["info"]["requests"]


def test_an_installed_entry_point_is_found_by_name(invoke, shop, tmp_path, monkeypatch):
    _entry_point(tmp_path, monkeypatch, "category-popular = rtml_category_popular")
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    result = _simulate(invoke, shop, "--strategies", "category-popular", "--format", "json")
    assert result.exit_code == ExitCode.OK, result.stderr
    assert json.loads(result.stdout)["summary"][0]["strategy"] == "category-popular"
    entry = REGISTRY.entry("category-popular")
    assert entry.meta["plugin"] == "entry point category-popular = rtml_category_popular"
    # loaded again in the same process (its module is imported already): still there
    assert [e.name for e in plugins.load_entry_points()] == ["category-popular"]


def test_an_entry_point_may_name_a_registration_function(tmp_path, monkeypatch):
    (tmp_path / "my_registration.py").write_text(
        textwrap.dedent(
            """
            from rtml_cli.online.plugins import Strategy, register_strategy

            class Popular(Strategy):
                def __init__(self, env, lag=None):
                    self.env = env

                def recommend(self, request, k):
                    return self.env.fill([], request.seen_set, k)

            def register():
                register_strategy("my-popular", Popular, description="popular, once more")
            """
        )
    )
    _entry_point(tmp_path, monkeypatch, "mine = my_registration:register")
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = plugins.load_strategies(["popular", "my-popular"])
    assert [e.name for e in loaded] == ["my-popular"]
    # called again, the function registers again: it replaces its own strategy
    again = plugins.load_entry_points()
    assert [e.name for e in again] == ["my-popular"] and again[0] is not loaded[0]
    assert plugins.load_strategies(["my-popular"]) == []  # known now: no entry point loaded


def test_entry_points_load_only_when_a_name_is_not_built_in(tmp_path, monkeypatch):
    _entry_point(tmp_path, monkeypatch, "broken = my_no_such_module")
    assert plugins.load_strategies(["popular", "online-ranker@5m"]) == []
    with pytest.raises(PluginError, match="entry point broken = my_no_such_module cannot be"):
        plugins.load_strategies(["popular", "mine"])


def test_the_example_in_the_docs_registers_and_passes_the_contract(tmp_path):
    page = (REPO / "docs" / "simulate.md").read_text()
    section = page[page.index("## Your own model: plug-in strategies") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    (tmp_path / "my_model.py").write_text(code.group(1))
    loaded = plugins.load_strategies(["last-item-neighbours"], [tmp_path / "my_model.py"])
    assert [e.name for e in loaded] == ["last-item-neighbours"]


def test_the_example_plugin_passes_its_own_tests():
    """examples/plugin's tests run rtml's shipped checks: run them so they cannot rot."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "tests"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout


def test_retrain_replays_a_plugin_strategy(shop):
    from rtml_cli.continual.retrain import ReplayEvaluator

    plugins.load_strategies(["category-popular"], [EXAMPLE_MODULE])
    events = pl.read_parquet(shop / "events.parquet")
    evaluator = ReplayEvaluator(events, "category-popular", k=8)
    score = evaluator.evaluate(shop / "root", AS_OF, AS_OF + timedelta(days=1))
    assert score.requests > 100 and 0 < score.hits <= score.requests


# --- every way a plug-in can fail: one line naming it, exit 65, nothing written ----------------

_PLUGIN = """
import numpy as np
from rtml_cli.online.plugins import Strategy, register_strategy

BUILDS = [0]


class Mine(Strategy):
    def __init__(self, env, lag=None):
        {init}
        self.env = env
        BUILDS[0] += 1
        self.build = BUILDS[0]

    def recommend(self, request, k):
        good = self.env.fill([], request.seen_set, k)
        {body}


register_strategy({name!r}, Mine, description="a test plug-in")
"""

_FAILURES = {
    # case: (what __init__ does, what recommend does, name, what the line says)
    "raises": (
        "pass",
        "raise ValueError('my model is broken')",
        "mine",
        "raised ValueError: my model is broken",
    ),
    "factory-raises": (
        "raise RuntimeError('no weights')",
        "return good",
        "mine",
        "raised RuntimeError: no weights",
    ),
    "fewer-than-k": ("pass", "return good[:-1]", "mine", "returned 7 items, fewer than K=8"),
    "duplicates": ("pass", "return np.r_[good[:-1], good[:1]]", "mine", "returned duplicate items"),
    "unknown-items": (
        "pass",
        "return np.r_[good[:-1], [10_000]]",
        "mine",
        "unknown item indexes [10000]",
    ),
    "seen-items": (
        "pass",
        "return np.r_[request.items[:1], good][:k]",
        "mine",
        "returned [3], already seen, for the session [3]",
    ),
    "not-an-array": (
        "pass",
        "return good.tolist()",
        "mine",
        "returned a list, not a 1-d integer numpy array",
    ),
    "not-deterministic": (
        "pass",
        "return np.roll(good, self.build)",
        "mine",
        "is not deterministic",
    ),
    "peeks": (
        "pass",
        "s = request.streams[0]; ahead = np.bincount(s.key[s.ts >= request.ts] // 2, minlength=self.env.n_items); "
        "return np.asarray([i for i in np.argsort(-ahead, kind='stable').tolist() if i not in request.seen_set][:k])",
        "mine",
        "reads the future",
    ),
    "batch-differs": (
        "self.recommend_batch = lambda rs, k: [np.roll(self.recommend(r, k), 1) for r in rs]",
        "return good",
        "mine",
        "answers differently in a batch",
    ),
    "built-in-name": (
        "pass",
        "return good",
        "popular",
        "registers 'popular', the name of a built-in strategy",
    ),
    "bad-name": ("pass", "return good", "my model", "is not a name --strategies can list"),
}


def _plugin_file(path: Path, case: str) -> Path:
    init, body, name, _ = _FAILURES[case]
    path.write_text(_PLUGIN.format(init=init, body=body, name=name))
    return path


@pytest.mark.parametrize("case", list(_FAILURES))
def test_a_failing_strategy_module_is_one_line_and_nothing_is_written(invoke, shop, tmp_path, case):
    plugin = _plugin_file(tmp_path / "my_model.py", case)
    out = tmp_path / "out" / "results.parquet"
    out.parent.mkdir()
    result = _simulate(
        invoke, shop, "--strategies", "popular,mine", "--strategy-module", plugin, "--out", out
    )
    assert result.exit_code == ExitCode.DATA_ERR, (result.stdout, result.stderr)
    line = _one_line(result)
    assert f"--strategy-module {plugin}" in line and _FAILURES[case][3] in line, line
    if case not in ("built-in-name", "bad-name"):
        assert "plug-in strategy 'mine'" in line, line
    assert result.stdout == "" and list(out.parent.iterdir()) == []


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("def broken(:\n", "cannot be imported: SyntaxError"),
        ("import my_no_such_module\n", "cannot be imported: ModuleNotFoundError"),
        ("raise SystemExit(3)\n", "cannot be imported: SystemExit: 3"),
        ("x = 1\n", "registers no strategy: call rtml_cli.online.plugins.register_strategy"),
    ],
)
def test_a_strategy_module_that_cannot_be_imported(invoke, shop, tmp_path, source, says):
    plugin = tmp_path / "my_model.py"
    plugin.write_text(source)
    result = _simulate(invoke, shop, "--strategies", "mine", "--strategy-module", plugin)
    assert result.exit_code == ExitCode.DATA_ERR
    line = _one_line(result)
    assert f"--strategy-module {plugin} {says}" in line, line


def test_a_missing_strategy_module_is_no_input(invoke, shop, tmp_path):
    result = _simulate(invoke, shop, "--strategy-module", tmp_path / "nope.py")
    assert result.exit_code == ExitCode.NO_INPUT
    assert (
        _one_line(result) == f"rtml: error: --strategy-module {tmp_path / 'nope.py'}: no such file"
    )


def test_a_failing_entry_point_names_the_entry_point(invoke, shop, tmp_path, monkeypatch):
    _plugin_file(tmp_path / "my_model.py", "duplicates")
    _entry_point(tmp_path, monkeypatch, "mine = my_model")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = _simulate(invoke, shop, "--strategies", "mine", "--out", tmp_path / "r.parquet")
    assert result.exit_code == ExitCode.DATA_ERR
    line = _one_line(result)
    assert "plug-in strategy 'mine' from entry point mine = my_model returned duplicate" in line
    assert not (tmp_path / "r.parquet").exists()


def test_two_plugins_may_not_share_a_name(invoke, shop, tmp_path):
    first = _plugin_file(tmp_path / "my_first.py", "fewer-than-k")
    (tmp_path / "other").mkdir()
    second = _plugin_file(tmp_path / "other" / "my_first.py", "fewer-than-k")
    result = _simulate(
        invoke, shop, "--strategy-module", first, "--strategy-module", second, "-s", "mine"
    )
    assert result.exit_code == ExitCode.DATA_ERR
    assert f"registers 'mine', already registered by --strategy-module {first}" in _one_line(result)


def test_debug_shows_the_plugins_traceback(invoke, shop, tmp_path):
    plugin = _plugin_file(tmp_path / "my_model.py", "raises")
    result = invoke(
        "--debug", "simulate", shop / "events.parquet", "-a", shop / "root",
        "-s", "mine", "--strategy-module", plugin,
    )  # fmt: skip
    assert result.exit_code == ExitCode.DATA_ERR
    assert "Traceback" in result.stderr and "my model is broken" in result.stderr
    assert str(plugin) in result.stderr  # the plug-in's own frame


def test_retrain_checks_its_plugin_before_any_work(invoke, tmp_path):
    plugin = _plugin_file(tmp_path / "my_model.py", "seen-items")
    out = tmp_path / "out"
    result = invoke(
        "retrain", tmp_path / "not-read.parquet", "--strategy", "mine",
        "--strategy-module", plugin, "--out", out,
    )  # fmt: skip
    assert result.exit_code == ExitCode.DATA_ERR
    assert "plug-in strategy 'mine'" in _one_line(result) and not out.exists()
    unknown = invoke("retrain", tmp_path / "not-read.parquet", "--strategy", "nope")
    assert unknown.exit_code == ExitCode.USAGE and "unknown strategy 'nope'" in unknown.stderr


# --- the library: registering, re-loading, the shipped checks ------------------------------------


def test_loading_a_file_again_replaces_its_strategies(tmp_path):
    plugin = tmp_path / "my_model.py"
    plugin.write_text(EXAMPLE_MODULE.read_text())
    first = plugins.load_module(plugin)
    again = plugins.load_module(plugin)
    assert [e.name for e in first] == [e.name for e in again] == ["category-popular"]
    assert REGISTRY.entry("category-popular") is again[0] and again[0].obj is not first[0].obj


def _example_factory():
    sys.path.insert(0, str(EXAMPLE / "src"))
    try:
        from rtml_category_popular import CategoryPopular
    finally:
        sys.path.remove(str(EXAMPLE / "src"))
    return CategoryPopular


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        (dict(name="popular"), "the name of a built-in strategy: choose another"),
        (dict(name="a,b"), "is not a name --strategies can list"),
        (dict(name="x@5m"), "is not a name --strategies can list"),
        (dict(description=""), "needs a one-line description"),
        (dict(stage=4), "has stage 4: 1 (batch lists)"),
        (dict(streaming="yes"), "needs streaming and trains as True or False"),
        (dict(factory=42), "int is not callable"),
    ],
)
def test_register_strategy_refuses_what_cannot_be_served(kwargs, says):
    args = dict(name="my-model", factory=_example_factory(), description="mine", stage=2)
    args.update(kwargs)
    with pytest.raises(PluginError, match=re.escape(says)):
        plugins.register_strategy(args.pop("name"), args.pop("factory"), **args)


def test_check_strategy_is_what_a_plugins_own_tests_call():
    factory = _example_factory()
    plugins.check_strategy(factory, name="my-model")  # a factory, not registered
    plugins.register_strategy("my-model", factory, description="the example")
    plugins.check_strategy("my-model")  # or a registered name

    class Short(factory):
        def recommend(self, request, k):
            return super().recommend(request, k)[:-2]

    with pytest.raises(AssertionError, match=r"^strategy 'Short' returned 6 items, fewer than K=8"):
        plugins.check_strategy(Short)

    class Broken(factory):
        def recommend(self, request, k):
            raise KeyError("user")

    with pytest.raises(
        AssertionError, match=r"raised KeyError: 'user' \(while checking it"
    ) as info:
        plugins.check_strategy(Broken)
    assert isinstance(info.value.__cause__, KeyError)  # the traceback leads to the plug-in


_ITEMS = st.lists(st.integers(-2, 12), max_size=6)


@given(items=_ITEMS, seen=_ITEMS, k=st.integers(1, 5))
def test_check_list_accepts_exactly_the_lists_the_contract_allows(items, seen, k):
    n_items = 10
    allowed = (
        len(items) == k
        and len(set(items)) == k
        and all(0 <= i < n_items for i in items)
        and not set(items) & set(seen)
    )
    try:
        check_list(np.asarray(items, dtype=np.int64), k, n_items, seen=seen, where="here")
    except AssertionError as exc:
        assert not allowed, exc
        assert " here" in str(exc) and "\n" not in str(exc)
    else:
        assert allowed
