"""Issue #15, inputs: never serve a silently wrong answer, never hide why a run failed.

Precompute applies `rtml data validate`'s row checks to what it reads; environmental
failures (disk full, Ctrl-C inside DuckDB, out of memory) and corrupt warm-start state
get their own exit codes and one line; literal brackets in paths, duplicate CSV
headers and output determinism.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from rtml_cli.errors import ExitCode
from tests.conftest import SAMPLE_DATA
from tests.test_batch_precompute import FAST, make_events

RTML = str(Path(sys.executable).with_name("rtml"))


def _write(path: Path, frame: pl.DataFrame) -> Path:
    frame.write_parquet(path)
    return path


def _errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("rtml: error:")]


def _assert_nothing_published(root: Path) -> None:
    assert not (root / "latest").exists() and not (root / "latest").is_symlink()
    runs = root / "runs"
    assert not runs.exists() or [p.name for p in runs.iterdir()] == []


# --- 1. precompute checks what it reads --------------------------------------------------


def test_precompute_refuses_timestamps_in_the_future(invoke, tmp_path):
    frame = make_events()
    far = datetime(2200, 1, 1, tzinfo=timezone.utc)
    frame = frame.with_columns(
        ts=pl.when(pl.int_range(pl.len()) < 3).then(pl.lit(far)).otherwise("ts")
    )
    events = _write(tmp_path / "e.parquet", frame)
    root = tmp_path / "root"
    result = invoke("precompute", events, "--out", root, "--dim", "8", "--trees", "5")
    assert result.exit_code == ExitCode.DATA_ERR, result.stderr
    assert len(_errors(result)) == 1 and "events contract" in _errors(result)[0]
    assert "  - 3 timestamps lie in the future" in result.stderr
    assert "2200-01-01" in result.stderr
    assert "Traceback" not in result.stderr
    _assert_nothing_published(root)


def test_precompute_allows_small_clock_skew(tmp_path):
    from rtml_cli.batch.source import connect, open_events
    from rtml_cli.timeutil import CLOCK_SKEW

    now = datetime(2024, 3, 11, tzinfo=timezone.utc)
    frame = make_events().with_columns(  # make_events spans 2024-03-01 .. 2024-03-11
        ts=pl.when(pl.int_range(pl.len()) == 0).then(pl.lit(now + CLOCK_SKEW / 2)).otherwise("ts")
    )
    events = _write(tmp_path / "e.parquet", frame)
    con = connect(tmp_path)
    try:
        src = open_events(con, [events], None, now=now)
    finally:
        con.close()
    assert src.last_ts == now + CLOCK_SKEW / 2


def test_precompute_refuses_nan_item_ids(invoke, tmp_path):
    frame = make_events().with_columns(pl.col("item_id").cast(pl.Float64))
    frame = frame.with_columns(
        item_id=pl.when(pl.int_range(pl.len()) < 2)
        .then(float("nan"))
        .when(pl.int_range(pl.len()) == 2)
        .then(float("inf"))
        .otherwise("item_id")
    )
    events = _write(tmp_path / "e.parquet", frame)
    root = tmp_path / "root"
    result = invoke("precompute", events, "--out", root, "--dim", "8", "--trees", "5")
    assert result.exit_code == ExitCode.DATA_ERR, result.stderr
    assert "  - 3 rows have a null, NaN or infinite item_id" in result.stderr
    _assert_nothing_published(root)


def test_precompute_refuses_empty_ids_and_lists_every_problem(invoke, tmp_path):
    n = pl.int_range(pl.len())
    frame = make_events().with_columns(
        session_id=pl.when(n < 2).then(pl.lit("")).otherwise("session_id"),
        user_id=pl.when(n == 5).then(pl.lit(" ")).otherwise("user_id"),
        event=pl.when(n == 6).then(pl.lit("")).otherwise("event"),
    )
    events = _write(tmp_path / "e.parquet", frame)
    root = tmp_path / "root"
    result = invoke("precompute", events, "--out", root, "--dim", "8", "--trees", "5")
    assert result.exit_code == ExitCode.DATA_ERR, result.stderr
    assert "  - 2 rows have a null or empty session_id" in result.stderr
    assert "  - 1 rows have a null or empty event" in result.stderr
    assert "  - 1 rows have an empty user_id: use null for anonymous visitors" in result.stderr
    assert "3 problem(s)" in _errors(result)[0]
    _assert_nothing_published(root)


def test_validate_and_precompute_word_problems_alike(invoke, tmp_path):
    frame = make_events().with_columns(
        session_id=pl.when(pl.int_range(pl.len()) < 2).then(pl.lit("")).otherwise("session_id")
    )
    events = _write(tmp_path / "e.parquet", frame)
    validated = invoke("data", "validate", events, "--session-gap", "none")
    precomputed = invoke("precompute", events, "--out", tmp_path / "root", "--dim", "8")
    assert validated.exit_code == precomputed.exit_code == ExitCode.DATA_ERR
    line = "  - 2 rows have a null or empty session_id"
    assert line in validated.stderr and line in precomputed.stderr


# --- 2. exit codes for failures of the machine --------------------------------------------


def _duckdb_error(cls_name: str, message: str) -> Exception:
    import duckdb

    return getattr(duckdb, cls_name)(message)


def _wrapped(inner: Exception) -> Exception:
    """What the library does with a DuckDB error: re-raise it as 'bad data'."""
    from rtml_cli.errors import DataError

    try:
        raise inner
    except Exception as exc:
        try:
            raise DataError("events are unreadable: " + str(exc).splitlines()[0]) from None
        except DataError as wrapped:
            return wrapped


ENOSPC_PATH = "/srv/rtml/runs/x/items.ann"
SPILL = "/tmp/rtml-duckdb-x/duckdb_temp_block-1.block"


@pytest.mark.parametrize(
    ("make", "code", "message"),
    [
        (
            lambda: OSError(errno.ENOSPC, "No space left on device", ENOSPC_PATH),
            ExitCode.CANT_CREATE,
            f"no space left on device writing {ENOSPC_PATH}",
        ),
        (
            lambda: OSError(errno.EDQUOT, "Disk quota exceeded"),
            ExitCode.CANT_CREATE,
            "no space left on device writing",
        ),
        (
            lambda: _wrapped(
                _duckdb_error(
                    "IOException",
                    f'IO Error: Could not write file "{SPILL}": No space left on device',
                )
            ),
            ExitCode.CANT_CREATE,
            f"no space left on device writing {SPILL}",
        ),
        (
            lambda: _duckdb_error("InterruptException", "INTERRUPT Error: Interrupted!"),
            ExitCode.INTERRUPTED,
            "interrupted",
        ),
        (lambda: RuntimeError("Query interrupted"), ExitCode.INTERRUPTED, "interrupted"),
        (
            lambda: _wrapped(
                _duckdb_error(
                    "OutOfMemoryException",
                    "Out of Memory Error: failed to allocate data of size 16.0 MiB "
                    "(16.0 MiB/19.0 MiB used)\n\nPossible solutions: ...",
                )
            ),
            ExitCode.RESOURCE,
            "(16.0 MiB/19.0 MiB used) (limits in force: RTML_MEMORY_LIMIT=20MB",
        ),
        (lambda: MemoryError(), ExitCode.RESOURCE, "out of memory: Python's MemoryError"),
        (lambda: ValueError("a bug"), ExitCode.INTERNAL, "internal error: ValueError: a bug"),
    ],
    ids=[
        "enospc",
        "edquot",
        "duckdb-disk-full",
        "duckdb-interrupt",
        "query-interrupted",
        "duckdb-oom",
        "memoryerror",
        "a-bug-stays-internal",
    ],
)
def test_failures_of_the_machine_get_their_exit_code(
    invoke, tmp_path, monkeypatch, make, code, message
):
    import rtml_cli.batch.precompute as precompute

    def fail(*args, **kwargs):
        raise make()

    monkeypatch.setattr(precompute, "run_precompute", fail)
    monkeypatch.setenv("RTML_MEMORY_LIMIT", "20MB")
    result = invoke("precompute", tmp_path / "e.parquet", "--out", tmp_path / "root")
    assert result.exit_code == code, result.stderr
    errors = _errors(result)
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    if code == ExitCode.RESOURCE:
        assert "and rerun" in errors[0]
    if message.startswith("(16.0"):
        assert "raise RTML_MEMORY_LIMIT" in errors[0]


def test_memory_error_advice_names_the_process_limit(invoke, tmp_path, monkeypatch):
    import rtml_cli.batch.precompute as precompute

    def fail(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(precompute, "run_precompute", fail)
    monkeypatch.delenv("RTML_MEMORY_LIMIT", raising=False)
    result = invoke("precompute", tmp_path / "e.parquet", "--out", tmp_path / "root")
    assert result.exit_code == ExitCode.RESOURCE
    assert "RTML_MEMORY_LIMIT unset" in result.stderr
    assert "ulimit -v" in result.stderr


def _no_sigint_ignore() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background shell may have ignored it


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_ctrl_c_inside_a_duckdb_query_exits_130(tmp_path):
    import duckdb

    big = tmp_path / "big.parquet"
    duckdb.sql(
        "COPY (SELECT TIMESTAMP '2024-01-01' + to_microseconds(i * 1000) AS ts, "
        "'u' || (i % 1000) AS user_id, 's' || (i // 5) AS session_id, i % 5000 AS item_id, "
        f"'view' AS event FROM range(1500000) t(i)) TO '{big}' (FORMAT parquet)"
    )
    lines = []
    # on a loaded machine the signal can land between two queries (Python code): that is a
    # silent Exit(130) from Typer, reported with the longer line; try again, up to 3 times
    for _ in range(3):
        code, line = _interrupt_validate(big)
        assert code == ExitCode.INTERRUPTED, line
        lines.append(line)
        if line == "rtml: error: interrupted":
            break
    # this line proves the signal interrupted a DuckDB query and was mapped at the boundary
    assert lines[-1] == "rtml: error: interrupted", lines
    assert all(
        line.startswith("rtml: error: interrupted") and "\n" not in line for line in lines
    ), lines


def _interrupt_validate(big: Path) -> tuple[int, str]:
    """SIGINT to `rtml data validate BIG` once DuckDB reads the file: (exit code, stderr)."""
    proc = subprocess.Popen(
        [RTML, "data", "validate", str(big)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_no_sigint_ignore,
    )
    fds = Path(f"/proc/{proc.pid}/fd")
    deadline = time.monotonic() + 60
    # wait until DuckDB reads the file, so the signal lands inside a query, not in imports
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) == str(big) for fd in fds.iterdir()):
                break
        time.sleep(0.02)
    time.sleep(0.3)
    assert proc.poll() is None, "validate finished before the signal: make the file larger"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr.strip()


# glibc ("cannot allocate memory for thread-local data") and Rust ("memory allocation of N
# bytes failed") abort the process themselves when a native thread cannot get memory: no
# Python code runs, so those runs can only be checked for having printed no traceback.
NATIVE_ABORTS = {127, 134, -signal.SIGABRT}


@pytest.mark.slow
def test_out_of_memory_under_ulimit_is_one_line(tmp_path):
    events = SAMPLE_DATA / "shop" / "events.parquet"
    outcomes = []
    for limit in (350000, 400000, 500000):
        for command in (
            f"data validate {events}",
            f"precompute {events} --out {tmp_path / str(limit)} --dim 8 --trees 5",
        ):
            proc = subprocess.run(
                ["bash", "-c", f"ulimit -v {limit}; exec {RTML} {command}"],
                capture_output=True,
                text=True,
                timeout=300,
            )
            outcomes.append((limit, command, proc.returncode, proc.stderr))
    for limit, command, code, stderr in outcomes:
        assert "Traceback" not in stderr, (limit, command, stderr)
        if code in NATIVE_ABORTS or code == ExitCode.OK:  # an abort, or enough memory
            continue
        errors = [line for line in stderr.splitlines() if line.startswith("rtml: error:")]
        assert code == ExitCode.RESOURCE, (limit, command, code, stderr)
        assert len(errors) == 1 and "out of memory" in errors[0], (limit, command, stderr)
        assert f"ulimit -v {limit}" in errors[0] and "and rerun" in errors[0]
    # where a ulimit lands (native abort, 71 or enough memory) depends on the machine and
    # the wheels; a limit set just above the process's size once the libraries are loaded
    # makes the failure land in rtml's own work, where it must be 71
    resource_errors = [o for o in outcomes if o[2] == ExitCode.RESOURCE]
    for margin_mb in (10, 20, 30):
        proc = subprocess.run(
            [sys.executable, "-c", _OOM_AFTER_IMPORT, str(margin_mb), "precompute", str(events),
             "--out", str(tmp_path / f"m{margin_mb}"), "--dim", "8", "--trees", "5", "-q"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode in (ExitCode.RESOURCE, *NATIVE_ABORTS), proc.stderr
        if proc.returncode == ExitCode.RESOURCE:
            resource_errors.append((margin_mb, "precompute", proc.returncode, proc.stderr))
            assert "out of memory" in proc.stderr and "and rerun" in proc.stderr
    assert resource_errors, [(o[0], o[1][:12], o[2]) for o in outcomes]


_OOM_AFTER_IMPORT = """
import resource, sys
import annoy, duckdb, numpy, polars, scipy.sparse  # the native libraries, loaded first
import typer
from rtml_cli.cli import app
# and the modules precompute imports lazily: the limit must land in its work, not in Python
# compiling a module (CPython reports that as odd ValueErrors, not MemoryError)
import rtml_cli.batch.precompute, rtml_cli.batch.artifacts, rtml_cli.batch.publish
size = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status")
            if line.startswith("VmSize:"))
limit = size + int(sys.argv[1]) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
typer.main.get_command(app).main(args=sys.argv[2:], prog_name="rtml")
"""


# --- corrupt warm-start state ---------------------------------------------------------------


@pytest.fixture(scope="module")
def published_run(tmp_path_factory) -> tuple[Path, Path]:
    from rtml_cli.batch.precompute import run_precompute

    base = tmp_path_factory.mktemp("warm")
    events = _write(base / "e.parquet", make_events())
    result = run_precompute(
        events, base / "root", as_of=datetime(2024, 3, 8, tzinfo=timezone.utc), **FAST
    )
    return events, result.run_dir


def _corrupt(run_dir: Path, case: str) -> None:
    state = run_dir / "state"
    if case == "cooc-truncated":
        data = (state / "cooc.npz").read_bytes()
        (state / "cooc.npz").write_bytes(data[: len(data) // 2])
    elif case == "cooc-garbage":
        (state / "cooc.npz").write_bytes(b"PK\x03\x04 not really a zip")
    elif case == "state-not-json":
        (state / "state.json").write_text('{"as_of": "2024-03-08", "params": {')
    elif case == "state-no-params":
        (state / "state.json").write_text('{"as_of": "2024-03-08T00:00:00+00:00"}\n')
    elif case == "state-params-incomplete":
        (state / "state.json").write_text('{"params": {"dim": 8}}\n')
    elif case == "user-items-truncated":
        data = (state / "user_items.parquet").read_bytes()
        (state / "user_items.parquet").write_bytes(data[:100])


@pytest.mark.parametrize(
    "case",
    [
        "cooc-truncated",
        "cooc-garbage",
        "state-not-json",
        "state-no-params",
        "state-params-incomplete",
        "user-items-truncated",
    ],
)
def test_corrupt_warm_start_state_is_bad_data(invoke, tmp_path, published_run, case):
    events, run_dir = published_run
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    _corrupt(copy, case)
    root = tmp_path / "root"
    result = invoke("precompute", events, "--out", root, "--warm-start", copy, "--dim", "8")
    assert result.exit_code == ExitCode.DATA_ERR, result.stderr
    errors = _errors(result)
    assert len(errors) == 1 and f"cannot warm-start from {copy}" in errors[0], result.stderr
    assert "rerun without --warm-start" in errors[0]
    assert "Traceback" not in result.stderr
    _assert_nothing_published(root)


# --- 3. minor items ---------------------------------------------------------------------------


def test_a_file_name_with_brackets_is_a_path_not_a_glob(invoke, tmp_path):
    from rtml_cli.fsutil import parquet_files

    events = _write(tmp_path / "log[1].parquet", make_events())
    assert parquet_files(events) == [events]
    result = invoke("data", "validate", events, "--session-gap", "none")
    assert result.exit_code == ExitCode.OK, result.stderr
    root = tmp_path / "root"
    result = invoke("precompute", events, "--out", root, "--dim", "8", "--trees", "5")
    assert result.exit_code == ExitCode.OK, result.stderr
    assert (root / "latest").is_dir()
    # a real glob still works, and a missing one is still 66
    assert parquet_files(tmp_path / "log*.parquet") == [events]
    result = invoke("data", "validate", tmp_path / "log[2-9].parquet")
    assert result.exit_code == ExitCode.NO_INPUT
    assert "matches no file" in _errors(result)[0]


@pytest.mark.parametrize(
    ("header", "delim", "named"),
    [
        ("ts,user_id,item_id,item_id", ",", "'item_id'"),
        ("ts;user_id;Item_ID;item_id;user_id", ";", "'user_id', 'Item_ID'"),
    ],
)
def test_csv_import_refuses_duplicate_column_names(invoke, tmp_path, header, delim, named):
    names = header.split(delim)
    rows = [
        delim.join(
            "2024-03-01T10:00:0" + str(i) if n == "ts" else f"{n.lower()}-{i}" for n in names
        )
        for i in range(5)
    ]
    src = tmp_path / "log.csv"
    src.write_text("\n".join([header, *rows]) + "\n")
    out = tmp_path / "out.parquet"
    result = invoke("data", "import", "--from-format", "csv", src, "--out", out, "--ts-unit", "iso")
    assert result.exit_code == ExitCode.DATA_ERR, result.stderr
    errors = _errors(result)
    assert len(errors) == 1 and "names a column more than once" in errors[0]
    assert f"({named})" in errors[0]
    assert not out.exists()


def test_csv_import_with_distinct_names_still_works(invoke, tmp_path):
    src = tmp_path / "log.csv"
    src.write_text(
        "ts,user_id,item_id\n" + "".join(f"2024-03-01T10:00:0{i},u{i % 2},i{i}\n" for i in range(6))
    )
    out = tmp_path / "out.parquet"
    result = invoke("data", "import", "--from-format", "csv", src, "--out", out, "--ts-unit", "iso")
    assert result.exit_code == ExitCode.OK, result.stderr
    assert pl.read_parquet(out).height == 6


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_identical_precompute_runs_write_identical_bytes(tmp_path):
    from rtml_cli.batch.precompute import run_precompute

    # the sample shop (149k events, more than one Parquet row group) is large enough for
    # DuckDB to aggregate in parallel: an unordered float sum differed in its last bit between
    # identical runs (state/user_items.parquet, every run on the sample shop)
    events = SAMPLE_DATA / "shop" / "events.parquet"
    dirs = [
        run_precompute(events, tmp_path / f"root{k}", **FAST, n_neighbors=10).run_dir
        for k in (1, 2)
    ]
    files = sorted(p.relative_to(dirs[0]) for p in dirs[0].rglob("*") if p.is_file())
    assert Path("state/user_items.parquet") in files
    # manifest.json holds the run's times; .verified.json records each file's size, mtime
    # and inode (the hash cache), which no two runs share
    differ = [
        str(f)
        for f in files
        if f.name not in ("manifest.json", ".verified.json")
        and _sha256(dirs[0] / f) != _sha256(dirs[1] / f)
    ]
    assert differ == []
    # byte-identity above depends on thread scheduling; the order that guarantees it does not
    for name in ("user_totals", "user_items"):
        frame = pl.read_parquet(dirs[0] / "state" / f"{name}.parquet")
        assert frame["user_id"].is_sorted(), name
    small = _write(tmp_path / "e.parquet", make_events(n_sessions=800, n_users=200))
    first = run_precompute(small, tmp_path / "root3", **FAST, n_neighbors=10).run_dir
    warm = run_precompute(small, tmp_path / "root3", **FAST, warm_start=first, force=True)
    assert pl.read_parquet(warm.run_dir / "state" / "user_totals.parquet")["user_id"].is_sorted()


def test_a_thread_that_cannot_start_under_a_memory_limit_is_out_of_memory(monkeypatch):
    """Under ulimit -v, precompute's fingerprint thread may fail to map its stack: Python
    raises RuntimeError("can't start new thread"), which must read as out of memory (71),
    not as an internal error; without a memory limit it is not a memory problem."""
    from rtml_cli import errors

    exc = RuntimeError("can't start new thread")
    monkeypatch.setattr(errors, "_address_space_limit", lambda: 400_000 * 1024)
    error = errors.environment_error(exc)
    assert isinstance(error, errors.ResourceError) and error.exit_code == ExitCode.RESOURCE
    assert "out of memory" in str(error) and "ulimit -v 400000" in str(error)
    monkeypatch.setattr(errors, "_address_space_limit", lambda: None)
    assert errors.environment_error(exc) is None
