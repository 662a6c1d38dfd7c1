"""Issue #15: readers never serve a silently wrong answer from damaged artifacts or logs.

A precompute run is checked against its manifest (sizes, sha256, Annoy node count and
dimension, embeddings vs item index) before anything is served; a damaged run is a one-line
``DataError`` (exit 65), never a crash, a signal or plausible nonsense. Readers resolve
``ROOT/latest`` once. Bandit logs with non-finite rewards or propensities are rejected.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import rtml_cli.batch.artifacts as artifacts_mod
import rtml_cli.batch.publish as publish
from rtml_cli.batch.artifacts import (
    VERIFIED_STAMP,
    annoy_node_bytes,
    load_annoy,
    load_artifacts,
    resolve_run_dir,
)
from rtml_cli.batch.precompute import run_precompute
from rtml_cli.batch.publish import checksums, switch_latest
from rtml_cli.errors import DataError, ExitCode, InputMissing
from tests.test_batch_precompute import START, catalogue, make_events

DIM = 8
OTHER_DIM = 4


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """One root with two runs: an older dim-4 run and the latest dim-8 run."""
    base = tmp_path_factory.mktemp("safety")
    events = base / "events.parquet"
    items = base / "items.parquet"
    make_events().write_parquet(events)
    catalogue().write_parquet(items)
    root = base / "root"
    old = run_precompute(
        events, root, items=items, as_of=START + timedelta(days=8), dim=OTHER_DIM, n_trees=10
    )
    new = run_precompute(events, root, items=items, dim=DIM, n_trees=10)
    return {"events": events, "root": root, "old": old.run_id, "new": new.run_id}


@pytest.fixture
def root(built, tmp_path) -> Path:
    """A private copy of the module's root (``latest`` is a relative link, kept as one)."""
    copy = tmp_path / "root"
    shutil.copytree(built["root"], copy, symlinks=True)
    return copy


def latest_run(root: Path) -> Path:
    return resolve_run_dir(root)


def manifest_of(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def rewrite_manifest(run: Path, **changes) -> None:
    manifest = manifest_of(run)
    manifest.update(changes)
    (run / "manifest.json").write_text(json.dumps(manifest))


def restamp_outputs(run: Path) -> None:
    """Make the manifest agree with the files again (a consistent-looking but wrong run)."""
    names = list(manifest_of(run)["outputs"])
    rewrite_manifest(run, outputs=checksums(run, names))


def n_ann_nodes(run: Path, dim: int = DIM) -> int:
    return (run / "items.ann").stat().st_size // annoy_node_bytes(dim)


def rtml_subprocess(*args) -> subprocess.CompletedProcess:
    """A real process, so a segfault or abort shows as a negative return code."""
    return subprocess.run(
        [sys.executable, "-m", "rtml_cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("rtml: error: ")]


def assert_one_line_data_error(code: int, stderr: str, *needles: str) -> None:
    assert code == ExitCode.DATA_ERR, stderr
    errors = error_lines(stderr)
    assert len(errors) == 1, stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert "Traceback" not in stderr


def simulate_args(built, root: Path, out: Path) -> list:
    return [
        "simulate",
        built["events"],
        "--artifacts",
        root,
        "--strategies",
        "popular,session-embedding",
        "--k",
        "5",
        "--candidates",
        "20",
        "--out",
        out,
    ]


# --- 1. every artifact verified against the manifest -----------------------------------------


def test_the_intact_run_loads_and_answers(built, root, invoke):
    art = load_artifacts(root)
    assert art.run_dir.name == built["new"]
    assert art.index.get_n_items() == art.n_items == art.embeddings.shape[0]
    result = invoke("neighbors", "5", "-a", root, "-k", "3", "-f", "json")
    assert result.exit_code == ExitCode.OK, result.stderr
    assert len(json.loads(result.stdout)["neighbors"]) == 3


@pytest.mark.parametrize("where", ["fewer nodes than items", "more nodes than items"])
def test_truncated_ann_is_a_data_error_not_a_signal(root, where):
    """Truncated to a whole number of nodes, Annoy segfaults (fewer) or answers nonsense."""
    run = latest_run(root)
    n_items = load_artifacts(root).n_items
    nodes = n_items // 2 if where.startswith("fewer") else n_items + 5
    assert nodes < n_ann_nodes(run)
    os.truncate(run / "items.ann", nodes * annoy_node_bytes(DIM))
    proc = rtml_subprocess("neighbors", "5", "-a", root)
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}"
    assert_one_line_data_error(proc.returncode, proc.stderr, "items.ann", "--force")


@pytest.mark.parametrize("where", ["fewer nodes than items", "more nodes than items"])
def test_truncated_ann_is_caught_even_when_the_manifest_agrees(root, where):
    """Defence in depth: the node count and item count, not only the manifest, are checked."""
    run = latest_run(root)
    n_items = load_artifacts(root).n_items
    nodes = n_items // 2 if where.startswith("fewer") else n_items + 5
    os.truncate(run / "items.ann", nodes * annoy_node_bytes(DIM))
    restamp_outputs(run)
    with pytest.raises(DataError, match="items.ann"):
        load_artifacts(root)
    proc = rtml_subprocess("neighbors", "5", "-a", root)
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}"
    assert_one_line_data_error(proc.returncode, proc.stderr, "items.ann")


def test_ann_from_a_run_of_another_dim_is_a_data_error(built, root):
    run = latest_run(root)
    shutil.copyfile(root / "runs" / built["old"] / "items.ann", run / "items.ann")
    proc = rtml_subprocess("neighbors", "5", "-a", root)
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}"
    assert_one_line_data_error(proc.returncode, proc.stderr, "items.ann", "bytes")
    # and the Annoy loader alone refuses it before Annoy can abort
    with pytest.raises(DataError, match=f"x {DIM} dims"):
        load_annoy(run / "items.ann", load_artifacts(root / "runs" / built["old"]).n_items, DIM)


def test_a_flipped_byte_of_the_same_size_fails_the_checksum(built, root, invoke, tmp_path):
    run = latest_run(root)
    path = run / "item_features.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    for args in (
        ["neighbors", "5", "-a", root],
        simulate_args(built, root, tmp_path / "out.parquet"),
    ):
        result = invoke(*args)
        assert_one_line_data_error(
            result.exit_code, result.stderr, "item_features.parquet", "sha256", "--force"
        )
    assert not (tmp_path / "out.parquet").exists()


def test_a_missing_file_is_a_data_error(built, root, invoke, tmp_path):
    (latest_run(root) / "popular.parquet").unlink()
    for args in (
        ["neighbors", "5", "-a", root],
        simulate_args(built, root, tmp_path / "out.parquet"),
    ):
        result = invoke(*args)
        assert_one_line_data_error(result.exit_code, result.stderr, "popular.parquet is missing")


def test_embeddings_and_item_index_disagree(root, invoke):
    run = latest_run(root)
    index = pl.read_parquet(run / "item_index.parquet")
    index.head(index.height - 1).write_parquet(run / "item_index.parquet")
    restamp_outputs(run)  # checksums agree: only the counts give it away
    result = invoke("neighbors", "5", "-a", root)
    assert_one_line_data_error(result.exit_code, result.stderr, "embeddings", "item_index")


def test_embeddings_of_another_dim_than_the_manifest(root, invoke):
    run = latest_run(root)
    emb = np.load(run / "item_embeddings.npy")
    np.save(run / "item_embeddings.npy", emb[:, : DIM // 2])
    restamp_outputs(run)
    result = invoke("neighbors", "5", "-a", root)
    assert_one_line_data_error(result.exit_code, result.stderr, "dims", "manifest")


def test_simulate_on_a_truncated_ann_exits_65(built, root, tmp_path):
    run = latest_run(root)
    os.truncate(run / "items.ann", (n_ann_nodes(run) - 3) * annoy_node_bytes(DIM))
    proc = rtml_subprocess(*simulate_args(built, root, tmp_path / "out.parquet"))
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}"
    assert_one_line_data_error(proc.returncode, proc.stderr, "items.ann")
    assert not (tmp_path / "out.parquet").exists()


def test_verification_is_recorded_once_and_redone_when_a_file_changes(built, root, monkeypatch):
    hashed = []
    original = publish.sha256_file

    def counting(path):
        hashed.append(Path(path).name)
        return original(path)

    monkeypatch.setattr(publish, "sha256_file", counting)
    # precompute recorded the files it hashed itself when it published them
    load_artifacts(built["root"])
    assert hashed == []
    # a copy has new inodes and times: the stamp no longer vouches for them, all are hashed
    run = latest_run(root)
    load_artifacts(root)
    stamp = json.loads((run / VERIFIED_STAMP).read_text())
    assert set(stamp) == set(manifest_of(run)["outputs"])
    assert sorted(hashed) == sorted(Path(n).name for n in stamp)
    hashed.clear()
    load_artifacts(root)
    assert hashed == []  # the stamp matched: nothing re-hashed
    # rewrite one file with the same bytes but one flipped: new ctime/mtime, same size
    path = run / "batch_recs.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="batch_recs.parquet does not match its sha256"):
        load_artifacts(root)
    assert hashed == ["batch_recs.parquet"]


def test_a_stale_or_garbled_stamp_is_ignored(root):
    run = latest_run(root)
    (run / VERIFIED_STAMP).write_text("{not json")
    load_artifacts(root)  # verifies and rewrites it
    assert json.loads((run / VERIFIED_STAMP).read_text())
    path = run / "popular.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="popular.parquet does not match"):
        load_artifacts(root)


# --- 2. manifest validation ------------------------------------------------------------------


def _drop(key):
    def change(m):
        del m[key]

    return change


def _set(key, value):
    def change(m):
        m[key] = value

    return change


def _dim(value):
    def change(m):
        m["params"]["dim"] = value

    return change


def _digest(value):
    def change(m):
        m["outputs"]["items.ann"]["sha256"] = value

    return change


def _drop_output(m):
    del m["outputs"]["batch_recs.parquet"]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (_drop("outputs"), "'outputs' is missing"),
        (_set("outputs", ["items.ann"]), "'outputs' must be an object"),
        (_set("as_of", "yesterday"), "'as_of' must be an ISO 8601 time"),
        (_set("as_of", "2024-03-10T00:00:00"), "'as_of' must be an ISO 8601 time with a zone"),
        (_set("as_of", 20240310), "'as_of'"),
        (_drop("as_of"), "'as_of' is missing"),
        (_dim("64"), "'params.dim' must be a positive integer"),
        (_dim(True), "'params.dim'"),
        (_drop("params"), "'params' is missing"),
        (_set("params", [64]), "'params' must be an object"),
        (_digest(5), "'outputs.items.ann.sha256'"),
        (_drop_output, "'outputs.batch_recs.parquet' is missing"),
    ],
)
def test_a_damaged_manifest_is_a_data_error_naming_the_key(root, invoke, change, needle):
    run = latest_run(root)
    manifest = manifest_of(run)
    change(manifest)
    (run / "manifest.json").write_text(json.dumps(manifest))
    result = invoke("neighbors", "5", "-a", root)
    assert_one_line_data_error(result.exit_code, result.stderr, "manifest.json", needle)


def test_a_manifest_that_is_not_an_object(root, invoke):
    (latest_run(root) / "manifest.json").write_text("[1, 2]")
    result = invoke("neighbors", "5", "-a", root)
    assert_one_line_data_error(result.exit_code, result.stderr, "incompatible")


# --- 3. readers see one run ------------------------------------------------------------------


def test_latest_switched_between_resolve_and_load_keeps_the_resolved_run(built, root, monkeypatch):
    real_resolve = artifacts_mod.resolve_run_dir

    def resolve_then_switch(path):
        run_dir = real_resolve(path)
        switch_latest(root, built["old"])  # a concurrent publish flips latest right now
        return run_dir

    monkeypatch.setattr(artifacts_mod, "resolve_run_dir", resolve_then_switch)
    art = load_artifacts(root)
    first = root / "runs" / built["new"]
    assert os.readlink(root / "latest") == f"runs/{built['old']}"
    assert art.run_dir == first.resolve()
    assert art.manifest["run_id"] == built["new"]
    assert art.as_of.isoformat() == manifest_of(first)["as_of"]
    assert art.dim == DIM and art.index.f == DIM
    np.testing.assert_array_equal(art.embeddings, np.load(first / "item_embeddings.npy"))
    assert art.index.get_n_items() == art.n_items
    assert art.batch_recs.equals(pl.read_parquet(first / "batch_recs.parquet"))


def test_latest_given_directly_is_resolved_once_to_the_run(built, root):
    run_dir = resolve_run_dir(root / "latest")
    assert run_dir == (root / "runs" / built["new"]).resolve()
    assert not run_dir.is_symlink() and run_dir.name == built["new"]
    assert load_artifacts(root / "latest").run_dir.name == built["new"]


def test_a_dangling_latest_is_input_missing(built, root):
    shutil.rmtree(root / "runs" / built["new"])
    with pytest.raises(InputMissing, match="latest points to a run that no longer exists"):
        load_artifacts(root)


def test_the_index_is_mapped_at_load_and_survives_a_prune(built, root):
    art = load_artifacts(root)
    before = art.index.get_nns_by_item(5, 5)
    shutil.rmtree(art.run_dir)  # pruned by a later `rtml precompute --keep 1`
    assert art.index.get_nns_by_item(5, 5) == before


# --- 4. OPE logs with non-finite rewards or propensities ------------------------------------


def _log(tmp_path: Path, name: str = "log.parquet", **cols) -> Path:
    n = 200
    rng = np.random.default_rng(0)
    base = {
        "action": rng.integers(0, 3, n),
        "reward": rng.integers(0, 2, n).astype(float),
        "propensity": np.full(n, 1 / 3),
    }
    for name, (row, value) in cols.items():
        base[name] = base[name].copy()
        base[name][row] = value
    path = tmp_path / name
    pl.DataFrame(base).write_parquet(path)
    return path


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("reward", float("inf")),
        ("reward", float("-inf")),
        ("reward", float("nan")),
        ("propensity", float("inf")),
        ("propensity", float("nan")),
        ("propensity", float("-inf")),
    ],
)
def test_ope_rejects_non_finite_values(invoke, tmp_path, column, value):
    path = _log(tmp_path, **{column: (7, value)})
    result = invoke("evaluate", "ope", path, "--policy", "uniform", "-b", "20")
    assert_one_line_data_error(
        result.exit_code, result.stderr, f"NaN or infinite {column}", "first at row 7"
    )
    assert "RuntimeWarning" not in result.stderr


def test_ope_ground_truth_log_with_infinite_reward_is_rejected(invoke, tmp_path):
    good = _log(tmp_path)
    bad = _log(tmp_path, "truth.parquet", reward=(3, float("inf")))
    result = invoke("evaluate", "ope", good, "--policy", "uniform", "--ground-truth", bad)
    assert_one_line_data_error(result.exit_code, result.stderr, "ground-truth log", "infinite")


def test_ope_rewards_outside_0_1_warn_on_stderr_and_in_json(invoke, tmp_path):
    path = _log(tmp_path, reward=(4, 5.0))
    result = invoke("evaluate", "ope", path, "--policy", "uniform", "-b", "20", "-f", "json")
    assert result.exit_code == ExitCode.OK, result.stderr
    doc = json.loads(result.stdout)
    outside = [w for w in doc["warnings"] if "outside [0, 1]" in w]
    assert len(outside) == 1 and "max 5" in outside[0]
    assert "rtml: warning:" in result.stderr and "outside [0, 1]" in result.stderr
    inside = invoke(
        "evaluate", "ope", _log(tmp_path), "--policy", "uniform", "-b", "20", "-f", "json"
    )
    assert not [w for w in json.loads(inside.stdout)["warnings"] if "outside" in w]


def test_contextual_offline_log_with_infinite_reward_is_rejected(invoke, tmp_path):
    from tests.conftest import SAMPLE_DATA

    frame = pl.read_parquet(SAMPLE_DATA / "shop" / "bandit.parquet").head(2000)
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 11)
        .then(float("inf"))
        .otherwise(pl.col("reward").cast(pl.Float64))
        .alias("reward")
    )
    path = tmp_path / "bandit.parquet"
    frame.write_parquet(path)
    result = invoke(
        "evaluate",
        "contextual",
        SAMPLE_DATA / "shop",
        "--mode",
        "offline",
        "--requests",
        "200",
        "--log",
        path,
        "-b",
        "10",
    )
    assert_one_line_data_error(result.exit_code, result.stderr, "NaN or infinite reward", "row 11")


# --- found by the fault pass (docs/fault-pass.md) ---------------------------------------


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damaged", ["batch_recs.parquet", "state/user_items.parquet", "state/item_totals.parquet"]
)
def test_warm_start_refuses_a_damaged_run_instead_of_publishing_from_it(built, root, damaged):
    """F1: a flipped byte in the run (or its state) used to flow into a valid-looking run."""
    run = latest_run(root)
    assert damaged in manifest_of(run)["outputs"]  # the state is checksummed too
    _flip_middle_byte(run / damaged)
    with pytest.raises(DataError, match="cannot warm-start") as err:
        run_precompute(built["events"], root, warm_start=root, as_of=START + timedelta(days=11))
    assert damaged in str(err.value)
    runs = sorted(p.name for p in (root / "runs").iterdir() if not p.name.startswith("."))
    assert runs == sorted([built["old"], built["new"]])  # nothing published


def test_a_run_that_lost_its_manifest_is_damaged_not_missing(root, invoke):
    """F3: readers said 66 'has no manifest.json' for a damaged run; it is 65 like the rest."""
    (latest_run(root) / "manifest.json").unlink()
    result = invoke("neighbors", "1", "--artifacts", root)
    assert result.exit_code == ExitCode.DATA_ERR, result.stderr
    assert "manifest.json is missing" in result.stderr and "--force" in result.stderr
