"""`rtml data import`: every format, the real OBD sample, bad inputs, round trips."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from rtml_cli.data.importers import import_log, obd_policy_name
from rtml_cli.errors import ExitCode

OBD = Path(__file__).resolve().parent.parent / "sample_data" / "obd"


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# --------------------------------------------------------------------------- OBD


@pytest.mark.parametrize("policy", ["random", "bts"])
def test_obd_sample_imports_as_bandit_log(invoke, tmp_path, policy):
    src = OBD / policy / "men" / "men.csv.gz"
    out = tmp_path / f"{policy}.parquet"
    result = invoke("data", "import", "--format", "obd", src, "--out", out, "--json")
    assert result.exit_code == ExitCode.OK, result.stderr
    summary = json.loads(result.stdout)
    log = pl.read_parquet(out)
    with gzip.open(src, "rt") as handle:
        raw = pl.read_csv(handle.read().encode())
    assert log.height == summary["rows"] == 10_000
    assert log.columns[:6] == ["ts", "action", "position", "reward", "propensity", "policy"]
    assert log.schema["ts"] == pl.Datetime("us", "UTC")
    assert log["policy"].unique().to_list() == [policy] == [summary["policy"]]
    assert log["propensity"].min() > 0 and log["propensity"].max() <= 1
    assert log["reward"].mean() == pytest.approx(raw["click"].mean(), abs=1e-12)
    assert summary["reward_mean"] == pytest.approx(raw["click"].mean(), abs=1e-12)
    assert sorted(log["action"].unique()) == list(range(34))
    assert set(log["position"].unique()) == {1, 2, 3}
    # context columns kept, the unnamed index column dropped
    assert "user_feature_0" in log.columns and "user-item_affinity_33" in log.columns
    assert not any(c.startswith("column") or c == "" for c in log.columns)
    assert log["ts"].is_sorted()
    items = pl.read_parquet(tmp_path / f"{policy}.items.parquet")
    assert items.height == 34 and items.columns[0] == "item_id"


def test_obd_propensities_match_the_csv(tmp_path):
    src = OBD / "bts" / "men" / "men.csv.gz"
    res = import_log("obd", src, tmp_path / "bts.parquet", policy="thompson")
    with gzip.open(src, "rt") as handle:
        raw = pl.read_csv(handle.read().encode())
    assert res.policy == "thompson"
    assert res.propensity_min == pytest.approx(raw["propensity_score"].min())
    assert res.propensity_max == pytest.approx(raw["propensity_score"].max())
    log = pl.read_parquet(tmp_path / "bts.parquet")
    assert log["propensity"].sum() == pytest.approx(raw["propensity_score"].sum())


def test_obd_policy_name_from_path():
    assert obd_policy_name(Path("x/bts/men/men.csv.gz")) == "bts"
    assert obd_policy_name(Path("x/random/all/all.csv")) == "random"
    assert obd_policy_name(Path("logs/today.csv")) == "today"


def _obd_csv(path: Path, rows: list[str]) -> Path:
    header = ",timestamp,item_id,position,click,propensity_score,user_feature_0"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_obd_bad_propensity_and_reward_listed_and_nothing_written(invoke, tmp_path):
    src = _obd_csv(
        tmp_path / "bad.csv",
        [
            "0,2019-11-24 00:00:01+00:00,1,1,0,0.5,a",
            "1,2019-11-24 00:00:02+00:00,2,1,x,0.5,a",
            "2,2019-11-24 00:00:03+00:00,3,2,1,0,b",
            "3,2019-11-24 00:00:04+00:00,3,2,1,1.5,b",
            "4,not a time,3,2,1,0.2,b",
        ],
    )
    out = tmp_path / "out" / "log.parquet"
    result = invoke("data", "import", "--format", "obd", src, "--out", out)
    assert result.exit_code == ExitCode.DATA_ERR
    assert "3 problem(s)" in result.stderr
    assert "2 rows have a propensity_score missing or outside (0, 1]" in result.stderr
    assert "1 rows have a missing or non-numeric click" in result.stderr
    assert "'not a time'" in result.stderr
    assert not out.exists() and _leftovers(out.parent) == []


def test_obd_missing_columns(invoke, tmp_path):
    src = tmp_path / "x.csv"
    src.write_text("a,b\n1,2\n")
    result = invoke("data", "import", "--format", "obd", src, "--out", tmp_path / "o.parquet")
    assert result.exit_code == ExitCode.DATA_ERR
    assert "not an Open Bandit Dataset log: missing column(s) timestamp" in result.stderr
    assert _leftovers(tmp_path) == ["x.csv"]


def test_obd_plain_csv_reads_like_gzip(tmp_path):
    plain = tmp_path / "bts" / "men" / "men.csv"
    plain.parent.mkdir(parents=True)
    with gzip.open(OBD / "bts" / "men" / "men.csv.gz", "rb") as handle:
        plain.write_bytes(handle.read())
    a = import_log("obd", plain, tmp_path / "a.parquet")
    b = import_log("obd", OBD / "bts" / "men" / "men.csv.gz", tmp_path / "b.parquet")
    assert a.policy == b.policy == "bts"
    assert pl.read_parquet(tmp_path / "a.parquet").equals(pl.read_parquet(tmp_path / "b.parquet"))


def test_import_missing_source_is_no_input(invoke, tmp_path):
    result = invoke(
        "data", "import", "--format", "obd", tmp_path / "nope.csv", "--out", tmp_path / "o.parquet"
    )
    assert result.exit_code == ExitCode.NO_INPUT
    assert "nope.csv does not exist" in result.stderr
    assert not (tmp_path / "o.parquet").exists()


def test_import_empty_source(invoke, tmp_path):
    src = tmp_path / "empty.csv"
    src.write_text("")
    result = invoke("data", "import", "--format", "obd", src, "--out", tmp_path / "o.parquet")
    assert result.exit_code == ExitCode.DATA_ERR
    assert "is empty (0 bytes)" in result.stderr
    assert not (tmp_path / "o.parquet").exists()
