"""`rtml data import`: every format, the real OBD sample, bad inputs, round trips."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtml_cli.data.importers import import_log, obd_policy_name
from rtml_cli.data.validate import validate
from rtml_cli.errors import ExitCode

OBD = Path(__file__).resolve().parent.parent / "sample_data" / "obd"


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# ------------------------------------------------- --from-format, and 0.1's --format/--json


def test_old_format_spelling_still_imports_with_a_warning(invoke, tmp_path):
    src = OBD / "bts" / "men" / "men.csv.gz"
    result = invoke("data", "import", "--format", "obd", src, "--out", tmp_path / "o.parquet")
    assert result.exit_code == ExitCode.OK, result.stderr
    assert "write --from-format obd" in result.stderr and "bandit contract" in result.stdout
    assert pl.read_parquet(tmp_path / "o.parquet").height == 10_000


def test_old_json_flag_prints_the_document_with_a_warning(invoke, tmp_path):
    src = OBD / "bts" / "men" / "men.csv.gz"
    args = ("data", "import", "--from-format", "obd", src, "--out", tmp_path / "o.parquet")
    result = invoke(*args, "--json")
    assert result.exit_code == ExitCode.OK, result.stderr
    assert "--json is deprecated" in result.stderr
    doc = json.loads(result.stdout)
    assert doc["kind"] == "data import" and doc["contract"] == "bandit" and doc["rows"] == 10_000


def test_format_is_the_output_format_beside_from_format(invoke, tmp_path):
    """`--format csv` with --from-format is the output (not the csv source format)."""
    src = OBD / "bts" / "men" / "men.csv.gz"
    args = ("data", "import", "--from-format", "obd", src, "--out", tmp_path / "o.parquet")
    result = invoke(*args, "--format", "csv", "--quiet")
    assert result.exit_code == ExitCode.OK, result.stderr
    header, row = result.stdout.splitlines()
    assert header.startswith("format,source,out,contract,rows,") and row.startswith("obd,")
    assert not result.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "give the source format with --from-format obd|"),
        (("--format", "xml"), "not an output"),
    ],
)
def test_missing_or_unknown_format_is_a_usage_error(invoke, tmp_path, extra, message):
    src = OBD / "bts" / "men" / "men.csv.gz"
    result = invoke("data", "import", src, "--out", tmp_path / "o.parquet", *extra)
    assert result.exit_code == ExitCode.USAGE and message in result.stderr
    assert not (tmp_path / "o.parquet").exists()


# --------------------------------------------------------------------------- OBD


@pytest.mark.parametrize("policy", ["random", "bts"])
def test_obd_sample_imports_as_bandit_log(invoke, tmp_path, policy):
    src = OBD / policy / "men" / "men.csv.gz"
    out = tmp_path / f"{policy}.parquet"
    result = invoke("data", "import", "--from-format", "obd", src, "--out", out, "--format", "json")
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
    result = invoke("data", "import", "--from-format", "obd", src, "--out", out)
    assert result.exit_code == ExitCode.DATA_ERR
    assert "3 problem(s)" in result.stderr
    assert "2 rows have a propensity_score missing or outside (0, 1]" in result.stderr
    assert "1 rows have a missing or non-numeric click" in result.stderr
    assert "'not a time'" in result.stderr
    assert not out.exists() and _leftovers(out.parent) == []


def test_obd_missing_columns(invoke, tmp_path):
    src = tmp_path / "x.csv"
    src.write_text("a,b\n1,2\n")
    result = invoke("data", "import", "--from-format", "obd", src, "--out", tmp_path / "o.parquet")
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
        "data",
        "import",
        "--from-format",
        "obd",
        tmp_path / "nope.csv",
        "--out",
        tmp_path / "o.parquet",
    )
    assert result.exit_code == ExitCode.NO_INPUT
    assert "nope.csv does not exist" in result.stderr
    assert not (tmp_path / "o.parquet").exists()


def test_import_empty_source(invoke, tmp_path):
    src = tmp_path / "empty.csv"
    src.write_text("")
    result = invoke("data", "import", "--from-format", "obd", src, "--out", tmp_path / "o.parquet")
    assert result.exit_code == ExitCode.DATA_ERR
    assert "is empty (0 bytes)" in result.stderr
    assert not (tmp_path / "o.parquet").exists()


# --------------------------------------------------------------------------- event formats


def _recbole(tmp_path: Path, with_items: bool = True) -> Path:
    inter = tmp_path / "ml.inter"
    inter.write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "1\t10\t4.0\t1700000000\n"
        "1\t11\t3.0\t1700000600\n"
        "1\t12\t5\t1700009000\n"
        "2\t10\t4\t1700000000\n"
    )
    if with_items:
        (tmp_path / "ml.item").write_text(
            "item_id:token\tmovie_title:token_seq\tclass:token_seq\n"
            "10\tToy Story\tAnimation Comedy\n"
            "11\tHeat\tAction\n"
            "12\tCasino\tCrime Drama\n"
        )
    return inter


def test_recbole_inter_and_item(invoke, tmp_path):
    inter = _recbole(tmp_path)
    out = tmp_path / "out" / "ml.parquet"
    result = invoke(
        "data", "import", "--from-format", "recbole", inter, "--out", out, "--format", "json"
    )
    assert result.exit_code == ExitCode.OK, result.stderr
    summary = json.loads(result.stdout)
    assert summary["sessions"] == 3 and summary["users"] == 2 and summary["sessionized"]
    ev = pl.read_parquet(out)
    assert ev.columns == ["ts", "user_id", "session_id", "item_id", "event", "rating"]
    assert ev["user_id"].to_list() == ["1", "2", "1", "1"]  # time order, ties in file order
    assert ev["session_id"].to_list() == ["1:0", "2:0", "1:0", "1:1"]  # 10m apart, then 2h20m
    assert ev["item_id"].dtype == pl.Int64 and ev["event"].unique().to_list() == ["view"]
    assert ev["rating"].to_list() == [4.0, 4.0, 3.0, 5.0]
    items = pl.read_parquet(tmp_path / "out" / "ml.items.parquet")
    assert items.columns == ["item_id", "title", "category"]
    assert items["item_id"].dtype == pl.Int64  # same id type as the events, so they join
    assert items.filter(pl.col("item_id") == 11)["title"].item() == "Heat"
    assert summary["items_out"].endswith("ml.items.parquet") and summary["items_rows"] == 3


def test_recbole_session_gap_and_items_out(tmp_path):
    inter = _recbole(tmp_path)
    res = import_log(
        "recbole",
        inter,
        tmp_path / "a.parquet",
        session_gap=timedelta(hours=3),
        items_out=tmp_path / "cat.parquet",
        event="purchase",
    )
    assert res.sessions == 2 and res.items_out == str(tmp_path / "cat.parquet")
    assert pl.read_parquet(tmp_path / "a.parquet")["event"].unique().to_list() == ["purchase"]
    assert not (tmp_path / "a.items.parquet").exists()


def test_recbole_bad_header(invoke, tmp_path):
    inter = tmp_path / "x.inter"
    inter.write_text("user_id\titem_id\ttimestamp\n1\t2\t3\n")
    result = invoke(
        "data", "import", "--from-format", "recbole", inter, "--out", tmp_path / "o.parquet"
    )
    assert result.exit_code == ExitCode.DATA_ERR
    assert "not a RecBole atomic file: header field 'user_id'" in result.stderr
    assert not (tmp_path / "o.parquet").exists()


def test_session_rec(invoke, tmp_path):
    src = tmp_path / "train.tsv"
    src.write_text(
        "SessionId\tItemId\tTime\n1\t214\t1396821600.5\n1\t215\t1396821700\n2\t007\t1396821800\n"
    )
    out = tmp_path / "s.parquet"
    result = invoke("data", "import", "--from-format", "session-rec", src, "--out", out)
    assert result.exit_code == ExitCode.OK, result.stderr
    assert "given by the source" in result.stdout
    ev = pl.read_parquet(out)
    assert ev["session_id"].to_list() == ["1", "1", "2"]
    assert ev["user_id"].null_count() == 3
    assert ev["item_id"].to_list() == [
        "214",
        "215",
        "007",
    ]  # "007" is not an integer: ids stay text
    assert ev["ts"][0] == datetime(2014, 4, 6, 22, 0, 0, 500000, tzinfo=timezone.utc)


def test_session_rec_wrong_columns(invoke, tmp_path):
    src = tmp_path / "x.tsv"
    src.write_text("Session\tItem\tTime\n1\t2\t3\n")
    result = invoke(
        "data", "import", "--from-format", "session-rec", src, "--out", tmp_path / "o.parquet"
    )
    assert result.exit_code == ExitCode.DATA_ERR
    assert "missing column(s) SessionId, ItemId" in result.stderr


CSV_TIMES = {
    "s": "1709294400",
    "ms": "1709294400000",
    "us": "1709294400000000",
    "iso": "2024-03-01T12:00:00Z",
}


@pytest.mark.parametrize("unit", ["s", "ms", "us", "iso"])
def test_csv_with_map_and_each_ts_unit(invoke, tmp_path, unit):
    src = tmp_path / "log.csv"
    src.write_text(f"event_time,uid,sku,kind\n{CSV_TIMES[unit]},u1,A,cart\n")
    out = tmp_path / "e.parquet"
    result = invoke(
        "data", "import", "--from-format", "csv", src, "--out", out,
        "--map", "ts=event_time,user_id=uid", "--map", "item_id=sku,event=kind",
        "--ts-unit", unit,
    )  # fmt: skip
    assert result.exit_code == ExitCode.OK, result.stderr
    ev = pl.read_parquet(out)
    assert ev.row(0, named=True) == {
        "ts": datetime(2024, 3, 1, 12, tzinfo=timezone.utc),
        "user_id": "u1",
        "session_id": "u1:0",
        "item_id": "A",
        "event": "cart",
    }


def test_csv_wrong_unit_is_caught(invoke, tmp_path):
    src = tmp_path / "log.csv"
    src.write_text("ts,user_id,item_id\n1709294400000,u1,1\n")
    out = tmp_path / "e.parquet"
    result = invoke("data", "import", "--from-format", "csv", src, "--out", out, "--ts-unit", "s")
    assert result.exit_code == ExitCode.DATA_ERR
    assert "1 timestamps lie in the future (up to 56135-05-2" in result.stderr
    assert "is --ts-unit s right?" in result.stderr
    assert not out.exists()


def test_csv_unparseable_times_and_null_ids_all_listed(invoke, tmp_path):
    src = tmp_path / "log.csv"
    src.write_text("ts,user_id,item_id\n2024-03-01,u1,1\nsoon,u1,2\n2024-03-02,u2,\n")
    out = tmp_path / "e.parquet"
    result = invoke("data", "import", "--from-format", "csv", src, "--out", out)
    assert result.exit_code == ExitCode.DATA_ERR
    assert "2 problem(s)" in result.stderr
    assert (
        "1 timestamps cannot be parsed as epoch seconds or ISO 8601 (e.g. 'soon')" in result.stderr
    )
    assert "1 rows have a null or empty item id" in result.stderr
    assert _leftovers(tmp_path) == ["log.csv"]


def test_csv_needs_a_session_or_user_key(invoke, tmp_path):
    src = tmp_path / "log.csv"
    src.write_text("ts,item_id\n2024-03-01,1\n")
    result = invoke("data", "import", "--from-format", "csv", src, "--out", tmp_path / "e.parquet")
    assert result.exit_code == ExitCode.USAGE
    assert "--map session_id=COLUMN or --map user_id=COLUMN" in result.stderr


def test_csv_map_names_a_missing_column(invoke, tmp_path):
    src = tmp_path / "log.csv"
    src.write_text("t,user_id,item_id\n2024-03-01,u,1\n")
    result = invoke(
        "data",
        "import",
        "--from-format",
        "csv",
        src,
        "--out",
        tmp_path / "e.parquet",
        "--map",
        "ts=time",
    )
    assert result.exit_code == ExitCode.DATA_ERR
    assert "no column(s) named in --map: ts=time" in result.stderr


@pytest.mark.parametrize("spec", ["ts", "when=t", "ts="])
def test_bad_map_syntax_is_usage_error(invoke, tmp_path, spec):
    src = tmp_path / "log.csv"
    src.write_text("t,user_id,item_id\n2024-03-01,u,1\n")
    result = invoke(
        "data",
        "import",
        "--from-format",
        "csv",
        src,
        "--out",
        tmp_path / "e.parquet",
        "--map",
        spec,
    )
    assert result.exit_code == ExitCode.USAGE
    assert "--map" in result.stderr


def test_csv_header_only_has_no_rows(invoke, tmp_path):
    src = tmp_path / "log.csv"
    src.write_text("ts,user_id,item_id\n")
    result = invoke("data", "import", "--from-format", "csv", src, "--out", tmp_path / "e.parquet")
    assert result.exit_code == ExitCode.DATA_ERR and "has no rows" in result.stderr
    assert not (tmp_path / "e.parquet").exists()


def test_failed_import_keeps_previous_output(invoke, tmp_path):
    out = tmp_path / "e.parquet"
    good = tmp_path / "good.csv"
    good.write_text("ts,user_id,item_id\n2024-03-01,u,1\n")
    assert invoke("data", "import", "--from-format", "csv", good, "--out", out).exit_code == 0
    before = out.read_bytes()
    bad = tmp_path / "bad.csv"
    bad.write_text("ts,user_id,item_id\nnever,u,1\n")
    assert invoke("data", "import", "--from-format", "csv", bad, "--out", out).exit_code == 65
    assert out.read_bytes() == before
    assert _leftovers(tmp_path) == ["bad.csv", "e.parquet", "good.csv"]


def test_parquet_with_epoch_ms_and_determinism(invoke, tmp_path):
    df = pl.DataFrame(
        {
            "when": [1709294400000 + 60_000 * i for i in range(200)],
            "visitor": [f"v{i % 7}" for i in range(200)],
            "sku": [i % 13 for i in range(200)],
            "extra": list(range(200)),
        }
    )
    src = tmp_path / "src.parquet"
    df.write_parquet(src)
    args = ["--map", "ts=when,user_id=visitor,item_id=sku", "--ts-unit", "ms"]
    for name in ("a.parquet", "b.parquet"):
        result = invoke(
            "data", "import", "--from-format", "parquet", src, "--out", tmp_path / name, *args
        )
        assert result.exit_code == ExitCode.OK, result.stderr
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    ev = pl.read_parquet(tmp_path / "a.parquet")
    assert ev["item_id"].dtype == pl.Int64 and ev["extra"].sort().to_list() == list(range(200))
    # each visitor returns every 7 minutes: one session per visitor at 30m
    assert ev["session_id"].n_unique() == 7
    assert ev.height == 200


def test_unknown_format_is_usage_error(invoke, tmp_path):
    result = invoke("data", "import", "--from-format", "xml", "x", "--out", tmp_path / "o.parquet")
    assert result.exit_code == ExitCode.USAGE


# --------------------------------------------------------------------------- round trips

_ids = st.text(alphabet="0123ab", min_size=1, max_size=3)
_event_rows = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "7", "x y"]),
        _ids,
        st.integers(min_value=1_500_000_000_000_000, max_value=1_700_000_000_000_000),
    ),
    min_size=1,
    max_size=25,
)


def _expected(rows, unit: str) -> list[tuple]:
    step = {"s": 1_000_000, "ms": 1_000, "us": 1, "iso": 1}[unit]
    return sorted((u, i, us - us % step) for u, i, us in rows)


def _imported(path: Path) -> list[tuple]:
    ev = pl.read_parquet(path).select(
        "user_id", pl.col("item_id").cast(pl.String), pl.col("ts").dt.epoch("us")
    )
    return sorted(ev.iter_rows())


def _item_ok(items: list[str]) -> bool:
    return all(i.isdigit() and (i == "0" or not i.startswith("0")) for i in items)


@settings(max_examples=25, deadline=None)
@given(rows=_event_rows, unit=st.sampled_from(["s", "ms", "us", "iso"]))
def test_csv_round_trip(tmp_path_factory, rows, unit):
    tmp = tmp_path_factory.mktemp("rt")
    lines = ["uid,sku,t"]
    for u, i, us in rows:
        if unit == "iso":
            stamp = (
                datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=us)
            ).isoformat()
        else:
            stamp = str(us // {"s": 1_000_000, "ms": 1_000, "us": 1}[unit])
        lines.append(f"{u},{i},{stamp}")
    (tmp / "in.csv").write_text("\n".join(lines) + "\n")
    res = import_log(
        "csv", tmp / "in.csv", tmp / "out.parquet",
        mapping={"ts": "t", "user_id": "uid", "item_id": "sku"}, ts_unit=unit,
    )  # fmt: skip
    assert res.rows == len(rows)
    assert _imported(tmp / "out.parquet") == _expected(rows, unit)
    ev = pl.read_parquet(tmp / "out.parquet")
    assert (ev["item_id"].dtype == pl.Int64) == _item_ok([i for _, i, _ in rows])
    assert res.users == len({u for u, _, _ in rows})
    # what the importer writes satisfies the events contract (exact repeats are reported)
    expected = _expected(rows, unit)
    report = validate(tmp / "out.parquet", kind="events")
    if len(set(expected)) == len(expected):
        assert report.ok, report.problems
    else:
        assert len(report.problems) == 1 and "exact duplicates" in report.problems[0]


@settings(max_examples=15, deadline=None)
@given(rows=_event_rows)
def test_session_rec_round_trip(tmp_path_factory, rows):
    tmp = tmp_path_factory.mktemp("sr")
    lines = ["SessionId\tItemId\tTime"] + [f"{u}\t{i}\t{us / 1e6:.6f}" for u, i, us in rows]
    (tmp / "in.tsv").write_text("\n".join(lines) + "\n")
    res = import_log("session-rec", tmp / "in.tsv", tmp / "out.parquet")
    ev = pl.read_parquet(tmp / "out.parquet").with_columns(pl.col("item_id").cast(pl.String))
    got = sorted(zip(ev["session_id"], ev["item_id"], ev["ts"].dt.epoch("us"), strict=True))
    assert got == sorted(rows)  # microseconds survive a seconds column with 6 decimals
    assert res.sessions == len({u for u, _, _ in rows}) and res.users == 0


@settings(max_examples=15, deadline=None)
@given(rows=_event_rows)
def test_recbole_round_trip(tmp_path_factory, rows):
    tmp = tmp_path_factory.mktemp("rb")
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    lines += [f"{u}\t{i}\t{us // 1_000_000}" for u, i, us in rows]
    (tmp / "x.inter").write_text("\n".join(lines) + "\n")
    res = import_log("recbole", tmp / "x.inter", tmp / "out.parquet")
    assert res.rows == len(rows) and res.items_out is None
    assert _imported(tmp / "out.parquet") == _expected(rows, "s")


def test_out_directory_is_refused_and_left_alone(invoke, tmp_path):
    keep = tmp_path / "results"
    keep.mkdir()
    (keep / "precious.txt").write_text("x")
    src = tmp_path / "log.csv"
    src.write_text("ts,user_id,item_id\n2024-03-01,u,1\n")
    result = invoke("data", "import", "--from-format", "csv", src, "--out", keep)
    assert result.exit_code == ExitCode.CANT_CREATE and "is a directory" in result.stderr
    assert (keep / "precious.txt").read_text() == "x"


def test_csv_glob(invoke, tmp_path):
    for day in (1, 2):
        (tmp_path / f"d{day}.csv").write_text(f"ts,user_id,item_id\n2024-03-0{day},u,{day}\n")
    out = tmp_path / "out.parquet"
    result = invoke("data", "import", "--from-format", "csv", f"{tmp_path}/d*.csv", "--out", out)
    assert result.exit_code == ExitCode.OK, result.stderr
    assert pl.read_parquet(out)["item_id"].to_list() == [1, 2]
    result = invoke("data", "import", "--from-format", "csv", f"{tmp_path}/x*.csv", "--out", out)
    assert result.exit_code == ExitCode.NO_INPUT and "matches no file" in result.stderr


def test_unwritable_output_is_cant_create(invoke, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    src = tmp_path / "log.csv"
    src.write_text("ts,user_id,item_id\n2024-03-01,u,1\n")
    result = invoke("data", "import", "--from-format", "csv", src, "--out", blocker / "e.parquet")
    assert result.exit_code == ExitCode.CANT_CREATE
    assert "cannot create directory" in result.stderr


def test_csv_text_times_without_unit_are_seconds_or_iso(tmp_path):
    src = tmp_path / "log.csv"
    src.write_text("ts,user_id,item_id\n1709294400.25,u,1\n2024-03-01T12:00:01Z,u,2\n")
    import_log("csv", src, tmp_path / "e.parquet")
    assert pl.read_parquet(tmp_path / "e.parquet")["ts"].to_list() == [
        datetime(2024, 3, 1, 12, 0, 0, 250000, tzinfo=timezone.utc),
        datetime(2024, 3, 1, 12, 0, 1, tzinfo=timezone.utc),
    ]


@pytest.mark.parametrize("command", ["import", "validate"])
def test_command_has_help_and_a_readme_section(invoke, command):
    result = invoke("data", command, "--help")
    assert result.exit_code == ExitCode.OK and "Usage" in result.stdout
    readme = (Path(__file__).resolve().parent.parent / "docs" / "data.md").read_text()
    assert f"## `rtml data {command}`" in readme


# ----------------------------------------------------------------- event values (issue #17)


def _persona_csv(path: Path) -> Path:
    """A team's clickstream: +01:00 offsets, empty visitor ids when logged out, text skus,
    view / add_to_cart / purchase actions, and a few remove_from_cart rows."""
    t0 = datetime(2024, 3, 4, 9, 0, tzinfo=timezone(timedelta(hours=1)))
    rows = ["event_time,visitor_id,sku,action,page_session"]
    actions = ["view", "view", "add_to_cart", "purchase", "remove_from_cart", "view"]
    for i in range(60):
        ts = (t0 + timedelta(minutes=i)).isoformat()
        visitor = "" if (i // 6) % 4 == 0 else f"v{i // 6}"  # logged out: every 4th session
        rows.append(f"{ts},{visitor},SKU-{i % 9},{actions[i % 6]},p{i // 6}")
    path.write_text("\n".join(rows) + "\n")
    return path


PERSONA_MAP = "ts=event_time,user_id=visitor_id,item_id=sku,event=action,session_id=page_session"


def test_unmapped_event_values_are_an_error_listing_them(invoke, tmp_path):
    src = _persona_csv(tmp_path / "clicks.csv")
    out = tmp_path / "e.parquet"
    result = invoke(
        "data", "import", src, "--from-format", "csv", "--map", PERSONA_MAP, "--out", out
    )
    assert result.exit_code == ExitCode.DATA_ERR
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "add_to_cart (10 rows)" in line
    assert "remove_from_cart (10 rows)" in line and "--map-event add_to_cart=cart" in line
    assert not out.exists()


def test_map_event_keeps_carts_and_ignore_events_drops_rows(invoke, tmp_path):
    src = _persona_csv(tmp_path / "clicks.csv")
    out = tmp_path / "e.parquet"
    result = invoke(
        "data", "import", src, "--from-format", "csv", "--map", PERSONA_MAP, "--out", out,
        "--map-event", "add_to_cart=cart", "--ignore-events", "remove_from_cart",
        "--format", "json", "--quiet",
    )  # fmt: skip
    assert result.exit_code == ExitCode.OK, result.stderr
    doc = json.loads(result.stdout)
    assert doc["events_mapped"] == {"add_to_cart": {"to": "cart", "rows": 10}}
    assert doc["events_ignored"] == {"remove_from_cart": 10}
    assert "dropped 10 rows with event remove_from_cart" in result.stderr
    log = pl.read_parquet(out)
    assert log.height == 50
    assert log["event"].value_counts().sort("event").rows() == [
        ("cart", 10),
        ("purchase", 10),
        ("view", 30),
    ]
    assert log["user_id"].null_count() == 15  # empty visitor ids are anonymous (18 - 3 dropped)
    assert validate(out).ok


def test_map_event_from_the_config_file(invoke, tmp_path):
    src = _persona_csv(tmp_path / "clicks.csv")
    config = tmp_path / "rtml.toml"
    config.write_text(
        f'[data.import]\nfrom-format = "csv"\nmap = ["{PERSONA_MAP}"]\n'
        'map-event = ["add_to_cart=cart"]\nignore-events = "remove_from_cart"\n'
    )
    out = tmp_path / "e.parquet"
    result = invoke("--config", config, "data", "import", src, "--out", out, "--quiet")
    assert result.exit_code == ExitCode.OK, result.stderr
    assert pl.read_parquet(out).filter(pl.col("event") == "cart").height == 10


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("add_to_cart=basket", "map to one of view, cart, purchase"),
        ("add_to_cart", "use SOURCE_VALUE=EVENT"),
        ("a=cart,a=view", "maps 'a' twice"),
    ],
)
def test_bad_map_event_is_a_usage_error(invoke, tmp_path, option, message):
    src = _persona_csv(tmp_path / "clicks.csv")
    args = ("data", "import", src, "--from-format", "csv", "--map", PERSONA_MAP)
    result = invoke(*args, "--out", tmp_path / "e.parquet", "--map-event", option)
    assert result.exit_code == ExitCode.USAGE and message in result.stderr


def test_validate_and_precompute_refuse_event_values_outside_the_contract(invoke, tmp_path):
    log = pl.DataFrame(
        {
            "ts": [datetime(2024, 3, 1, 10, m, tzinfo=timezone.utc) for m in range(6)],
            "user_id": ["u1"] * 6,
            "session_id": ["s1"] * 3 + ["s2"] * 3,
            "item_id": [1, 2, 3, 1, 2, 3],
            "event": ["view", "add_to_cart", "view", "view", "view", "purchase"],
        }
    )
    path = tmp_path / "events.parquet"
    log.write_parquet(path)
    checked = invoke("data", "validate", path)
    assert checked.exit_code == ExitCode.DATA_ERR
    assert "1 rows have event values outside the contract" in checked.stderr
    assert "--map-event add_to_cart=cart" in checked.stderr
    root = tmp_path / "root"
    built = invoke("precompute", path, "--out", root, "--dim", "4", "--trees", "2")
    assert built.exit_code == ExitCode.DATA_ERR
    assert "add_to_cart" in built.stderr and not (root / "latest").exists()
