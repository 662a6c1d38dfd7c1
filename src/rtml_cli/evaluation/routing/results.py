"""Read a replay RESULTS file (``contracts.RESULTS``) as a (requests x arms) reward matrix.

Every strategy in the file is an arm. A request is kept only if every chosen
arm has a reward for it; requests missing an arm (or with a null reward, e.g.
``hit_purchase`` on a request that is not followed by a cart or purchase) are
dropped and counted, because an exact comparison needs every arm's reward on
the same request.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtml_cli.errors import DataError, UsageError
from rtml_cli.fsutil import parquet_files

REWARDS = ("hit", "hit_later", "hit_purchase", "rr", "ndcg")
_NUMERIC = ("BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE")


@dataclass
class LoadedResults:
    arms: list[str]
    rewards: np.ndarray  # (requests, arms) float
    dropped: int  # requests dropped because an arm's reward was missing
    all_arms: list[str]  # every strategy in the file
    # the replay protocol that scored the requests (RESULTS metadata ``rtml.protocol``);
    # None for RESULTS written before rtml recorded it (they used next-unseen)
    protocol: str | None = None


def results_protocol(files: list[str]) -> str | None:
    """The ``rtml.protocol`` the RESULTS files were written under (``DataError`` if they
    disagree: requests scored under two protocols cannot be compared)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    found = set()
    for name in files:
        try:
            meta = pq.read_metadata(name).metadata or {}
        except (OSError, pa.ArrowException):
            continue  # not Parquet: reading it below says so, in one line
        value = meta.get(b"rtml.protocol")
        found.add(value.decode() if value is not None else None)
    known = {v for v in found if v is not None}
    if len(known) > 1 or (known and None in found):
        shown = ", ".join(sorted(v or "unrecorded" for v in found))
        raise DataError(
            f"the results files were scored under different protocols ({shown}); "
            "evaluate files from one protocol at a time"
        )
    return known.pop() if known else None


def load_results(path: str, reward: str = "hit", arms: list[str] | None = None) -> LoadedResults:
    """Pivot RESULTS to one row per request and one column per arm (strategy)."""
    import duckdb

    from rtml_cli.duck import connect

    if reward not in REWARDS:
        raise UsageError(f"--reward must be one of {', '.join(REWARDS)}, got {reward!r}")
    files = [str(f) for f in parquet_files(path, what="results")]
    protocol = results_protocol(files)
    con = connect()
    try:
        con.read_parquet(files, union_by_name=True).create_view("results")
        schema = {row[0]: row[1] for row in con.execute("DESCRIBE results").fetchall()}
    except duckdb.Error as exc:
        raise DataError(f"cannot read results {path}: {str(exc).splitlines()[0]}") from exc
    missing = [c for c in ("request_id", "strategy", reward) if c not in schema]
    if missing:
        raise DataError(
            f"results {path} lack column(s) {', '.join(missing)}; "
            "expected the output of `rtml simulate` (see `rtml data contracts`)"
        )
    if not schema[reward].startswith(_NUMERIC) and not schema[reward].startswith("DECIMAL"):
        raise DataError(f"results column {reward} must be boolean or numeric, not {schema[reward]}")

    all_arms = [
        r[0]
        for r in con.execute(
            "SELECT DISTINCT CAST(strategy AS VARCHAR) s FROM results WHERE strategy IS NOT NULL ORDER BY s"
        ).fetchall()
    ]
    chosen = arms if arms else all_arms
    unknown = [a for a in chosen if a not in all_arms]
    if unknown:
        raise UsageError(
            f"--arms {', '.join(unknown)} not in the results; strategies there: "
            f"{', '.join(all_arms) or '(none)'}"
        )
    if len(chosen) < 2:
        raise DataError(
            f"need at least two arms (strategies) to compare, the results have {len(chosen)}: "
            f"{', '.join(chosen) or '(none)'}"
        )
    if len(set(chosen)) != len(chosen):
        raise UsageError(f"--arms lists an arm twice: {', '.join(chosen)}")

    dupes = con.execute(
        "SELECT count(*) FROM (SELECT request_id, strategy FROM results "
        "WHERE strategy IN (SELECT unnest(?)) GROUP BY ALL HAVING count(*) > 1)",
        [chosen],
    ).fetchone()[0]
    if dupes:
        raise DataError(
            f"results {path} have {dupes} (request_id, strategy) pairs more than once; "
            "each request must be scored once per strategy"
        )
    out_of_range = con.execute(
        f'SELECT count(*) FROM results WHERE CAST("{reward}" AS DOUBLE) NOT BETWEEN 0 AND 1 '
        f'OR isnan(CAST("{reward}" AS DOUBLE))'
    ).fetchone()[0]
    if out_of_range:
        raise DataError(f"results column {reward} has {out_of_range} values outside [0, 1]")

    columns = ", ".join(
        f'max(CAST("{reward}" AS DOUBLE)) FILTER (WHERE strategy = ${i + 2}) AS a{i}'
        for i in range(len(chosen))
    )
    rows = con.execute(
        f"SELECT {columns} FROM results WHERE strategy IN (SELECT unnest($1)) "
        "GROUP BY request_id ORDER BY request_id",
        [chosen, *chosen],
    ).fetchnumpy()
    con.close()
    matrix: np.ndarray = np.column_stack(
        [
            np.ma.filled(np.ma.asarray(rows[f"a{i}"], dtype=float), np.nan)
            for i in range(len(chosen))
        ]
    )
    complete = ~np.isnan(matrix).any(axis=1)
    dropped = int((~complete).sum())
    matrix = matrix[complete]
    if matrix.shape[0] == 0:
        raise DataError(
            f"no request in {path} has a {reward} reward for every arm "
            f"({', '.join(chosen)}): nothing to evaluate"
        )
    return LoadedResults(list(chosen), matrix, dropped, all_arms, protocol)
