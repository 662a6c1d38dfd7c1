"""Issue #15: output paths, pruning, planted links and --force never lose a user's data.

Each test reproduces one fault the fault-injection pass found and checks the fix.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtml_cli.batch import publish
from rtml_cli.batch.artifacts import load_artifacts, resolve_run_dir
from rtml_cli.batch.precompute import run_precompute
from rtml_cli.errors import ExitCode, OutputError
from rtml_cli.fsutil import (
    OUTPUT_MARKER,
    PARQUET_OUTPUT,
    PNG_OUTPUT,
    atomic_path,
    check_output,
    directory_output,
)
from tests.conftest import REPO
from tests.test_batch_precompute import FAST, START, catalogue, make_events

RETRAIN_OUT = directory_output("retrain")


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    events = tmp_path / "events.parquet"
    items = tmp_path / "items.parquet"
    make_events().write_parquet(events)
    catalogue().write_parquet(items)
    return events, items


def _tree(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _user_dir(path: Path) -> Path:
    (path / "sub").mkdir(parents=True)
    (path / "a").write_text("x")
    (path / "sub" / "b.txt").write_text("keep me")
    return path


def _one_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("rtml: error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


# --- 1. output options -----------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("simulate", "EVENTS", "--artifacts", "ROOT", "--out", "TARGET"),
        ("retrain", "EVENTS", "--out", "TARGET"),
        ("retrain", "EVENTS", "--plot", "TARGET"),
        ("evaluate", "bandits", "--plot", "TARGET"),
        ("evaluate", "ope", "LOG", "--policy", "uniform", "--plot", "TARGET"),
        ("evaluate", "contextual", "WORLD", "--plot", "TARGET"),
        ("data", "import", "EVENTS", "--format", "parquet", "--out", "TARGET"),
        ("data", "sample", "--size", "tiny", "--out", "TARGET"),
        ("report", "WORLD", "--out", "TARGET"),
        ("report", "WORLD", "--format", "md", "--out", "TARGET"),
        ("--save-json", "TARGET", "data", "contracts"),
    ],
    ids=lambda a: " ".join(a[:2]) + " " + a[-2],
)
def test_an_output_option_never_replaces_a_users_directory(data, tmp_path, invoke, args):
    events, _ = data
    target = _user_dir(tmp_path / "d")
    before = _tree(target)
    values = {
        "EVENTS": events,
        "ROOT": tmp_path / "root",
        "TARGET": target,
        "LOG": Path("sample_data/shop/bandit.parquet"),
        "WORLD": Path("sample_data/shop"),
    }
    result = invoke(*(values.get(a, a) for a in args))
    assert result.exit_code == ExitCode.CANT_CREATE, result.stderr
    assert "nothing was touched" in _one_error(result) or "directory" in _one_error(result)
    assert _tree(target) == before


def test_out_dot_is_refused_and_the_current_directory_kept(data, tmp_path, invoke, monkeypatch):
    events, _ = data
    cwd = _user_dir(tmp_path / "work")
    monkeypatch.chdir(cwd)
    before = _tree(cwd)
    result = invoke("simulate", events, "--artifacts", tmp_path / "root", "--out", ".")
    assert result.exit_code == ExitCode.CANT_CREATE
    assert "current directory" in _one_error(result)
    assert _tree(cwd) == before


def test_a_file_of_another_kind_is_not_overwritten(tmp_path):
    notes = tmp_path / "notes.parquet"
    notes.write_text("my notes, not Parquet")
    with pytest.raises(OutputError, match="not a Parquet file"):
        check_output(notes, PARQUET_OUTPUT, option="--out")
    png = tmp_path / "chart.png"
    png.write_text("not a png")
    with pytest.raises(OutputError, match="not a PNG image"):
        check_output(png, PNG_OUTPUT, option="--plot")
    assert notes.read_text() == "my notes, not Parquet"


def test_a_link_is_never_written_through(tmp_path):
    victim = tmp_path / "victim.parquet"
    victim.write_bytes(b"PAR1 pretend PAR1")
    link = tmp_path / "out.parquet"
    link.symlink_to(victim)
    with pytest.raises(OutputError, match="symbolic link"):
        check_output(link, PARQUET_OUTPUT, option="--out")


def test_rtmls_own_outputs_are_replaced(tmp_path):
    out = tmp_path / "retrain-out"
    for content in ("first", "second"):
        with atomic_path(out, RETRAIN_OUT, option="--out") as tmp:
            tmp.mkdir()
            (tmp / "summary.json").write_text(content)
    assert (out / "summary.json").read_text() == "second"
    assert json.loads((out / OUTPUT_MARKER).read_text())["command"] == "retrain"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["retrain-out"]  # no temporaries
    # another command's directory is not this command's to replace
    with pytest.raises(OutputError, match="rtml retrain"):
        check_output(out, directory_output("data sample"), option="--out")
    # an empty directory holds nothing to lose
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_output(empty, RETRAIN_OUT) == empty


names = st.sampled_from(["a", "b.txt", OUTPUT_MARKER, "sub", "x.parquet"])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    files=st.lists(st.tuples(names, st.binary(max_size=20)), max_size=4),
    marker=st.sampled_from([None, "retrain", "simulate", "not json"]),
)
def test_a_directory_output_either_refuses_untouched_or_replaces_only_rtmls(
    tmp_path_factory, files, marker
):
    target = tmp_path_factory.mktemp("prop") / "out"
    target.mkdir()
    for name, content in files:
        if name != OUTPUT_MARKER:
            (target / name).write_bytes(content)
    if marker is not None:
        text = marker if marker == "not json" else json.dumps({"command": marker})
        (target / OUTPUT_MARKER).write_text(text)
    before = _tree(target)
    ours = marker == "retrain" or not before
    try:
        with atomic_path(target, RETRAIN_OUT) as tmp:
            tmp.mkdir()
            (tmp / "new").write_text("new")
    except OutputError:
        assert not ours
        assert _tree(target) == before
    else:
        assert ours
        assert (target / "new").read_text() == "new"


# --- 2. prune and clean only what rtml made ------------------------------------------


def test_keep_and_cleanup_never_touch_directories_rtml_did_not_create(data, tmp_path):
    events, _ = data
    root = tmp_path / "root"
    runs = root / "runs"
    for name in ("my-backup", "2023-archive", ".tmp-my-notes"):
        _user_dir(runs / name)
    stale = runs / ".tmp-20240301T000000.000000Z-abc123"
    stale.mkdir()
    result = run_precompute(events, root, keep=1, **FAST)
    assert (root / "latest").resolve() == result.run_dir.resolve()
    assert result.run_dir.is_dir() and result.pruned == []
    for name in ("my-backup", "2023-archive", ".tmp-my-notes"):
        assert (runs / name / "sub" / "b.txt").read_text() == "keep me", name
    assert not stale.exists()  # a killed run's temporary is rtml's and is cleaned


def test_a_run_named_like_a_run_id_without_rtmls_manifest_is_not_pruned(data, tmp_path):
    events, _ = data
    root = tmp_path / "root"
    fake = _user_dir(root / "runs" / "20200101T000000.000000Z")
    before = _tree(fake)
    oldest = run_precompute(events, root, as_of=START + timedelta(days=7), **FAST)
    run_precompute(events, root, as_of=START + timedelta(days=8), **FAST)
    result = run_precompute(events, root, keep=1, **FAST)
    assert _tree(fake) == before
    # the oldest rtml run went; the day-8 run latest showed until now stays for its readers
    assert result.pruned == [oldest.run_id]


# --- 3. a future run never holds latest --------------------------------------------------


def test_a_run_from_the_future_does_not_lock_latest_or_get_good_runs_pruned(data, tmp_path):
    events, _ = data
    root = tmp_path / "root"
    good = run_precompute(events, root, as_of=START + timedelta(days=8), **FAST)
    future_id = "22000101T000000.000000Z"
    future = root / "runs" / future_id
    shutil.copytree(good.run_dir, future)
    manifest = json.loads((future / "manifest.json").read_text())
    manifest["run_id"] = future_id
    (future / "manifest.json").write_text(json.dumps(manifest))
    publish.switch_latest(root, future_id)  # as an old rtml would have left it
    new = run_precompute(events, root, keep=1, **FAST)
    assert new.published
    assert (root / "latest").resolve().name == new.run_id
    assert new.run_dir.is_dir() and future.is_dir()
    assert any(future_id in w for w in new.warnings)


# --- 4. planted links --------------------------------------------------------------------


def test_a_lock_link_planted_in_root_is_not_followed(data, tmp_path, invoke):
    events, _ = data
    root = tmp_path / "root"
    root.mkdir()
    victim = tmp_path / "victim.conf"
    victim.write_text("secret config")
    (root / ".lock").symlink_to(victim)
    result = invoke("precompute", events, "--out", root, "--dim", "8", "--trees", "10")
    assert result.exit_code == ExitCode.CANT_CREATE
    assert "symbolic link" in _one_error(result)
    assert victim.read_text() == "secret config"


def test_a_runs_link_planted_in_root_is_refused(data, tmp_path, invoke):
    events, _ = data
    root = tmp_path / "root"
    root.mkdir()
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / ".tmp-precious").mkdir(parents=True)
    (root / "runs").symlink_to(elsewhere)
    result = invoke("precompute", events, "--out", root, "--dim", "8", "--trees", "10")
    assert result.exit_code == ExitCode.CANT_CREATE
    assert "symbolic link" in _one_error(result)
    assert [p.name for p in elsewhere.iterdir()] == [".tmp-precious"]


def test_latest_as_a_directory_is_refused_and_leaves_no_temporary_link(data, tmp_path, invoke):
    events, _ = data
    root = tmp_path / "root"
    _user_dir(root / "latest")
    result = invoke("precompute", events, "--out", root, "--dim", "8", "--trees", "10")
    assert result.exit_code == ExitCode.CANT_CREATE
    assert "latest" in _one_error(result)
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp-")]
    assert (root / "latest" / "sub" / "b.txt").read_text() == "keep me"


# --- 6. --force never rewrites a run a reader may hold ----------------------------------


def test_force_publishes_a_new_run_and_a_reader_keeps_the_one_it_resolved(data, tmp_path):
    events, _ = data
    root = tmp_path / "root"
    first = run_precompute(events, root, **FAST)
    held = resolve_run_dir(root)  # a reader resolved latest…
    before = _tree(held)
    inode = held.stat().st_ino
    forced = run_precompute(events, root, force=True, keep=1, **FAST)  # …then a rebuild
    assert forced.run_id == f"{first.run_id}-r002"
    assert held.stat().st_ino == inode and _tree(held) == before  # never rewritten, kept
    assert load_artifacts(held).manifest["run_id"] == first.run_id
    assert load_artifacts(root).manifest["run_id"] == forced.run_id
    again = run_precompute(events, root, force=True, keep=1, **FAST)
    assert again.run_id == f"{first.run_id}-r003"
    assert first.run_id in again.pruned and forced.run_dir.is_dir()  # previous latest kept
    assert run_precompute(events, root, **FAST).skipped  # the newest rebuild is the no-op key


# --- 8-10. leftovers and permissions -----------------------------------------------------


def test_a_failed_run_removes_its_partial_run_at_once(data, tmp_path, monkeypatch):
    events, _ = data
    root = tmp_path / "root"
    import polars as pl

    def disk_full(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pl.DataFrame, "write_parquet", disk_full)
    with pytest.raises(OSError):
        run_precompute(events, root, **FAST)
    assert [p.name for p in (root / "runs").iterdir()] == []
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp-")]  # no spill left


def test_duckdb_spills_under_root_and_stale_spills_are_cleaned(data, tmp_path, monkeypatch):
    events, _ = data
    root = tmp_path / "root"
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    stale = root / ".tmp-spill-4242-abcdef"
    stale.mkdir(parents=True)
    (stale / "duckdb_temp_block.tmp").write_bytes(b"x" * 100)
    run_precompute(events, root, **FAST)
    assert not stale.exists()
    assert list(tmpdir.iterdir()) == []  # nothing leaks into $TMPDIR


def test_run_directories_follow_the_umask(data, tmp_path):
    events, _ = data
    old = os.umask(0o022)
    try:
        result = run_precompute(events, tmp_path / "root", **FAST)
    finally:
        os.umask(old)
    assert stat.S_IMODE(result.run_dir.stat().st_mode) == 0o755


def test_scratch_left_by_a_killed_process_is_removed_by_the_next_run(tmp_path):
    import subprocess
    import sys

    from rtml_cli.fsutil import scratch_dir

    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from rtml_cli.fsutil import scratch_dir\n"
        "with scratch_dir('spill', Path(sys.argv[1])) as d:\n"
        "    (d / 'block.tmp').write_bytes(b'x' * 1000)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], timeout=60)
    assert proc.returncode == -9
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".rtml-scratch-spill-")
    (tmp_path / "users-file").write_text("not ours")
    with scratch_dir("spill", tmp_path) as mine:
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, "users-file"])
    assert [p.name for p in tmp_path.iterdir()] == ["users-file"]


@pytest.mark.parametrize("step", ["scan", "neighbors", "write"])
def test_sigterm_removes_the_partial_run_and_spill_and_keeps_latest(data, tmp_path, step):
    import subprocess
    import sys

    from rtml_cli.batch.precompute import KILL_AT_ENV

    events, _ = data
    root = tmp_path / "root"
    first = run_precompute(events, root, as_of=START + timedelta(days=8), **FAST)
    env = {**os.environ, KILL_AT_ENV: f"{step}:TERM"}
    args = ["precompute", str(events), "--out", str(root), "--dim", "8", "--trees", "10"]
    proc = subprocess.run(
        [sys.executable, "-m", "rtml_cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == ExitCode.TERMINATED, proc.stderr
    assert "terminated" in proc.stderr and "Traceback" not in proc.stderr
    assert [p.name for p in (root / "runs").iterdir()] == [first.run_id]
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp-")]
    assert load_artifacts(root).manifest["run_id"] == first.run_id


def test_import_out_dot_is_refused_like_every_other_output(tmp_path, invoke, monkeypatch):
    """Fault pass F4: `data import --out .` was an internal error (exit 1)."""
    monkeypatch.chdir(tmp_path)
    result = invoke(
        "data", "import", "--from-format", "parquet", REPO / "sample_data/shop/events.parquet",
        "--out", ".",
    )  # fmt: skip
    assert result.exit_code == ExitCode.CANT_CREATE
    assert "current directory" in _one_error(result)


def test_rebuilds_past_999_stay_rtml_runs(data, tmp_path):
    """Fault pass F6: -r1000 did not match the run-id pattern, so it was never latest."""
    events, _ = data
    root = tmp_path / "root"
    first = run_precompute(events, root, **FAST)
    shutil.copytree(first.run_dir, root / "runs" / f"{first.run_id}-r999")
    manifest = json.loads((root / "runs" / f"{first.run_id}-r999" / "manifest.json").read_text())
    manifest["run_id"] = f"{first.run_id}-r999"
    (root / "runs" / f"{first.run_id}-r999" / "manifest.json").write_text(json.dumps(manifest))
    forced = run_precompute(events, root, force=True, keep=1, **FAST)
    assert forced.run_id == f"{first.run_id}-r1000" and forced.published
    assert (root / "latest").resolve().name == forced.run_id


@pytest.mark.parametrize(
    "args",
    [
        ("retrain", "MISSING", "--plot", "TARGET"),
        ("evaluate", "bandits", "--arm", "a=0.1", "--arm", "b=0.2", "--plot", "TARGET"),
        ("evaluate", "ope", "MISSING", "--policy", "uniform", "--plot", "TARGET"),
        ("evaluate", "contextual", "MISSING", "--plot", "TARGET"),
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_plot_without_matplotlib_is_a_usage_error_before_any_work(
    tmp_path, invoke, monkeypatch, args
):
    """Issue #13 item 6: retrain --plot without matplotlib was exit 1 after the whole replay."""
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    values = {"MISSING": tmp_path / "missing.parquet", "TARGET": tmp_path / "chart.png"}
    result = invoke(*(values.get(a, a) for a in args))
    assert result.exit_code == ExitCode.USAGE, result.stderr  # not 66 for the missing input
    assert "pip install 'rtml[plot]'" in _one_error(result)
    assert not (tmp_path / "chart.png").exists()
