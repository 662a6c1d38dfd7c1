"""Reading a published precompute run: the batch inputs Stages 1-3 serve from.

Layout (written by ``rtml precompute``; see CONTRIBUTING.md)::

    ROOT/latest -> runs/<run-id>/
      manifest.json, item_index.parquet, item_features.parquet, user_features.parquet,
      item_embeddings.npy, items.ann, item_neighbors.parquet, batch_recs.parquet,
      popular.parquet, state/
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from rtml_cli.errors import DataError, InputMissing

FORMAT_VERSION = 1
RUN_FILES = (
    "manifest.json",
    "item_index.parquet",
    "item_features.parquet",
    "user_features.parquet",
    "item_embeddings.npy",
    "items.ann",
    "item_neighbors.parquet",
    "batch_recs.parquet",
    "popular.parquet",
)


def run_id_for(as_of: datetime) -> str:
    """Directory name of the run for an as-of time (UTC, microsecond resolution)."""
    return as_of.strftime("%Y%m%dT%H%M%S.%fZ")


def resolve_run_dir(path: str | Path) -> Path:
    """ROOT (follows ``latest``) or a run directory → the run directory."""
    path = Path(path)
    if not path.exists():
        raise InputMissing(f"artifacts {path} do not exist: run `rtml precompute` first")
    if (path / "manifest.json").exists():
        return path
    latest = path / "latest"
    if latest.exists():
        return latest.resolve()
    raise InputMissing(
        f"{path} holds no published precompute run (no latest/ and no manifest.json): "
        "run `rtml precompute EVENTS --out ROOT` first"
    )


def read_manifest(run_dir: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except FileNotFoundError:
        raise InputMissing(f"{run_dir} has no manifest.json") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{run_dir}/manifest.json is unreadable: {exc}") from None
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise DataError(
            f"{run_dir} was written by an incompatible rtml (artifacts format {version!r}, "
            f"this rtml reads {FORMAT_VERSION}): rerun `rtml precompute`"
        )
    return manifest


@dataclass
class Artifacts:
    """A loaded precompute run. Item rows are addressed by dense ``item_idx``."""

    run_dir: Path
    manifest: dict[str, Any]
    item_ids: np.ndarray  # original item ids; position = item_idx
    embeddings: np.ndarray  # float32 (n_items, dim)
    item_features: Any  # polars.DataFrame
    user_features: Any
    neighbors: Any  # polars.DataFrame: item_id, neighbor_id, score, rank
    batch_recs: Any  # polars.DataFrame: user_id, item_id, rank, score
    popular: Any  # polars.DataFrame: item_id, rank, score
    _index: Any = field(default=None, repr=False)

    @property
    def as_of(self) -> datetime:
        return datetime.fromisoformat(self.manifest["as_of"])

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def n_items(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def index(self):
        """The Annoy index (memory-mapped from ``items.ann``)."""
        if self._index is None:
            from annoy import AnnoyIndex

            index = AnnoyIndex(self.dim, "angular")
            try:
                index.load(str(self.run_dir / "items.ann"))
            except OSError as exc:
                raise DataError(f"{self.run_dir}/items.ann is unreadable: {exc}") from None
            self._index = index
        return self._index

    @cached_property
    def id_to_idx(self) -> dict[Any, int]:
        return {item_id: idx for idx, item_id in enumerate(self.item_ids.tolist())}

    def to_idx(self, item_ids) -> np.ndarray:
        """Map original ids to item_idx; unknown ids become -1."""
        lookup = self.id_to_idx
        return np.fromiter((lookup.get(i, -1) for i in item_ids), dtype=np.int64)

    @cached_property
    def popular_idx(self) -> np.ndarray:
        ordered = self.popular.sort("rank")["item_id"].to_list()
        return self.to_idx(ordered)

    @cached_property
    def neighbor_lists(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR arrays (indptr, neighbor item_idx, score) of item-item neighbours by item_idx."""
        import polars as pl

        frame = self.neighbors.with_columns(
            pl.Series("src", self.to_idx(self.neighbors["item_id"].to_list())),
            pl.Series("dst", self.to_idx(self.neighbors["neighbor_id"].to_list())),
        ).filter((pl.col("src") >= 0) & (pl.col("dst") >= 0))
        frame = frame.sort(["src", "rank"])
        src = frame["src"].to_numpy()
        indptr = np.zeros(self.n_items + 1, dtype=np.int64)
        np.add.at(indptr, src + 1, 1)
        return (
            np.cumsum(indptr),
            frame["dst"].to_numpy().astype(np.int64),
            frame["score"].to_numpy().astype(np.float32),
        )

    @cached_property
    def user_recs(self) -> dict[Any, np.ndarray]:
        """user_id → item_idx of the Stage-1 list, best first."""
        frame = self.batch_recs.sort(["user_id", "rank"])
        out: dict[Any, np.ndarray] = {}
        for user_id, items in (
            frame.group_by("user_id", maintain_order=True).agg("item_id").iter_rows()
        ):
            out[user_id] = self.to_idx(items)
        return out


def load_artifacts(path: str | Path) -> Artifacts:
    """Load ROOT (its ``latest`` run) or one run directory; errors say what to rerun."""
    import polars as pl

    run_dir = resolve_run_dir(path)
    manifest = read_manifest(run_dir)
    missing = [name for name in RUN_FILES if not (run_dir / name).exists()]
    if missing:
        raise DataError(f"precompute run {run_dir} is incomplete: missing {', '.join(missing)}")
    try:
        index_frame = pl.read_parquet(run_dir / "item_index.parquet").sort("item_idx")
        embeddings = np.load(run_dir / "item_embeddings.npy")
        frames = {
            name: pl.read_parquet(run_dir / f"{name}.parquet")
            for name in (
                "item_features",
                "user_features",
                "item_neighbors",
                "batch_recs",
                "popular",
            )
        }
    except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
        raise DataError(f"precompute run {run_dir} is unreadable: {exc}") from None
    if embeddings.shape[0] != index_frame.height:
        raise DataError(
            f"precompute run {run_dir} is inconsistent: {embeddings.shape[0]} embeddings "
            f"for {index_frame.height} items"
        )
    return Artifacts(
        run_dir=run_dir,
        manifest=manifest,
        item_ids=index_frame["item_id"].to_numpy(),
        embeddings=embeddings.astype(np.float32, copy=False),
        item_features=frames["item_features"],
        user_features=frames["user_features"],
        neighbors=frames["item_neighbors"],
        batch_recs=frames["batch_recs"],
        popular=frames["popular"],
    )
