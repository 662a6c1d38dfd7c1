"""The data contracts every rtml command reads and writes (documented in the README).

Each contract names its required columns and the logical type each must have.
Extra columns are always allowed and kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "timestamp" | "string" | "id" (string or integer) | "numeric" | "integer" | "bool"
    nullable: bool = False
    doc: str = ""


@dataclass(frozen=True)
class Contract:
    name: str
    required: tuple[Column, ...]
    optional: tuple[Column, ...] = field(default=())

    def column(self, name: str) -> Column:
        for col in (*self.required, *self.optional):
            if col.name == name:
                return col
        raise KeyError(name)


KNOWN_EVENTS = ("view", "cart", "purchase")

EVENTS = Contract(
    "events",
    required=(
        Column("ts", "timestamp", doc="event time, UTC"),
        Column("user_id", "string", nullable=True, doc="null for anonymous visitors"),
        Column("session_id", "string", doc="session identifier"),
        Column("item_id", "id", doc="item identifier (string or integer)"),
        Column("event", "string", doc="view | cart | purchase (unknown names are kept)"),
    ),
)

ITEMS = Contract(
    "items",
    required=(Column("item_id", "id"),),
    optional=(
        Column("category", "string", nullable=True),
        Column("price", "numeric", nullable=True),
        Column("title", "string", nullable=True, doc="used in reports when present"),
    ),
)

BANDIT = Contract(
    "bandit",
    required=(
        Column("ts", "timestamp"),
        Column("action", "id", doc="item or arm chosen by the logging policy"),
        Column("reward", "numeric", doc="observed reward, usually 0/1"),
        Column("propensity", "numeric", doc="P(logging policy chose action), in (0, 1]"),
    ),
    optional=(
        Column("position", "integer", nullable=True),
        Column("policy", "string", nullable=True),
    ),
)

# Per-request replay output of `rtml simulate`, read by `rtml evaluate`.
RESULTS = Contract(
    "results",
    required=(
        Column("request_id", "integer", doc="request number, shared by all strategies"),
        Column("ts", "timestamp"),
        Column("session_id", "string"),
        Column("segment", "string", doc="anonymous | new | returning"),
        Column("position", "integer", doc="1-based index of the request's event in its session"),
        Column("strategy", "string"),
        Column(
            "rank", "integer", nullable=True, doc="1-based rank of the next item, null if absent"
        ),
        Column("hit", "bool", nullable=True, doc="next item in the top K; null: no truth"),
        Column(
            "rr", "numeric", nullable=True, doc="reciprocal rank of the next item (0 if absent)"
        ),
        Column("ndcg", "numeric", nullable=True, doc="NDCG@K of the next item"),
        Column(
            "hit_later", "bool", nullable=True, doc="any later item of the session in the top K"
        ),
        Column("hit_purchase", "bool", nullable=True, doc="next cart/purchase item in top K"),
        Column("latency_us", "numeric", doc="in-process latency of the request"),
    ),
)
