"""The downstream stage's state in its store (``trade.state.v1``) and the minute buffer.

Three kinds of values, each written only when it changed (once per commit in the worker):

- ``core``: the risk state, the paper book, the day's HRP budget, the last quote of every asset,
  pending alerts, and how far each partition is done;
- ``m:<minute>``: a minute still waiting for a partition, with what the partitions reported of
  it (its own value: a full-speed replay can leave hundreds pending behind a slow partition,
  which as one value outgrew Kafka's 1 MB record limit in the changelog);
- ``co:<symbol>|<tf>`` and ``cc:<cluster>|<side>``: the CVaR book's outcome samples, one value
  per key (up to ``max_samples`` each; written when a trade of that key closes);
- ``h:<symbol>``: the symbol's hourly closes, ``[hour_ms, close]`` pairs, at most
  ``lookback_d x 24 + 1`` of them (written at hour boundaries).

A processor rebuilt from the store continues bit-identically (tests/unit/test_trader.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from packs.risk import HrpOverlay, RiskPolicy
from processors.downstream import cvar
from processors.downstream.hrp import HrpBudget, cluster_of
from processors.downstream.paper_state import PaperBook, PaperOutputs
from processors.downstream.risk import RiskState
from processors.downstream.types import ClosedTrade, Quote
from schemas.errors import AlphaError
from state.store import KeyValueStore

STORE = "trade.state.v1"
VERSION = 1
HOUR_MS = 3_600_000
TOPIC_ORDERS = "orders.v0"
TOPIC_FILLS = "fills.v0"
_CORE = b"core"
_MINUTE = b"m:"
_CVAR_OWN = b"co:"
_CVAR_CLASS = b"cc:"
_HOUR = b"h:"


@dataclass(frozen=True, slots=True)
class Output:
    """One record to send: topic, key, partition (-1: by key, like the asset topics), value."""

    topic: str
    key: bytes | None
    partition: int
    value: dict[str, Any]


def _dumps(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def outputs_of_paper(po: PaperOutputs) -> list[Output]:
    """Orders that changed status and fills, keyed by asset, in the order they happened."""
    out = [Output(TOPIC_ORDERS, str(o.asset_uid).encode(), -1, o.to_json()) for o in po.orders]
    out += [Output(TOPIC_FILLS, str(f.asset_uid).encode(), -1, f.to_json()) for f in po.fills]
    return out


def hourly_window(hours: Mapping[str, Sequence[Sequence[float]]], n: int) -> dict[str, list[float]]:
    """Return each symbol's last ``n`` consecutive hourly closes ending at the newest hour.

    Symbols whose newest close is older than the newest hour of all are left out, and a series
    stops at its first missing hour going back: ``hrp.compute_budget`` wants series that end at
    the same hour with no holes.
    """
    newest = max((int(h[-1][0]) for h in hours.values() if h), default=None)
    out: dict[str, list[float]] = {}
    if newest is None:
        return out
    for symbol in sorted(hours):
        series = hours[symbol]
        if not series or int(series[-1][0]) != newest:
            continue
        run: list[float] = []
        expect = newest
        for hour, close in reversed(series):
            if int(hour) != expect or len(run) == n:
                break
            run.append(float(close))
            expect -= HOUR_MS
        out[symbol] = run[::-1]
    return out


class TraderState:
    """The stage's state, cached, with the writes it owes the store."""

    def __init__(self, store: KeyValueStore, policy: RiskPolicy, partitions: int) -> None:
        self.store = store
        self.policy = policy
        self.partitions = partitions
        self.core: dict[str, Any] = {}
        self.risk = RiskState.initial(policy)
        self.book = PaperBook.new(policy.sizing.starting_equity_usd)
        self.cvar = cvar.CvarBook()
        self.budget: HrpBudget | None = None
        self._hours: dict[str, list[list[float]]] = {}
        self._dirty: set[bytes] = set()

    @classmethod
    def load(cls, store: KeyValueStore, policy: RiskPolicy, partitions: int) -> TraderState:
        """Return the state saved in ``store``, or a fresh one.

        Raises:
            AlphaError: Unknown version, or state built for another partition count.
        """
        st = cls(store, policy, partitions)
        data = store.get(_CORE)
        if data is None:
            st.core = {
                "v": VERSION,
                "partitions": partitions,
                "last_minute": 0,
                "seen": {},
                "finals": {},
                "pending": {},
                "alerts": [],
                "quotes": {},
            }
            return st
        core = json.loads(data)
        if core.get("v") != VERSION:
            raise AlphaError(f"{STORE}: state version {core.get('v')!r} unknown")
        if int(core["partitions"]) != partitions:
            raise AlphaError(
                f"{STORE}: state was built for {core['partitions']} lattice partitions, not"
                f" {partitions}; reset the trader (new app id) after repartitioning"
            )
        st.risk = RiskState.from_json(core.pop("risk"))
        st.book = PaperBook.from_json(core.pop("book"))
        budget = core.pop("budget")
        st.budget = None if budget is None else HrpBudget.from_json(budget)
        st.core = core
        own = {k[len(_CVAR_OWN) :].decode(): json.loads(v) for k, v in store.scan(_CVAR_OWN)}
        classes = {
            k[len(_CVAR_CLASS) :].decode(): json.loads(v) for k, v in store.scan(_CVAR_CLASS)
        }
        st.cvar = cvar.CvarBook.from_json(
            {"own": own, "classes": classes, "version": cvar.CvarBook().version}
        )
        for key, value in store.scan(_HOUR):
            st._hours[key[len(_HOUR) :].decode()] = json.loads(value)
        for key, value in store.scan(_MINUTE):
            st.core["pending"][key[len(_MINUTE) :].decode()] = json.loads(value)
        return st

    def touch(self) -> None:
        """Mark the core value changed."""
        self._dirty.add(_CORE)

    def flush(self) -> int:
        """Write every changed value; return how many were written."""
        if not self._dirty:
            return 0
        batch: dict[bytes, bytes | None] = {}
        for key in sorted(self._dirty):
            if key.startswith(_MINUTE):
                entry = self.core["pending"].get(key[len(_MINUTE) :].decode())
                batch[key] = None if entry is None else _dumps(entry)
            elif key == _CORE:
                core = dict(self.core)
                core["pending"] = {}
                core["risk"] = self.risk.to_json()
                core["book"] = self.book.to_json()
                core["budget"] = None if self.budget is None else self.budget.to_json()
                batch[key] = _dumps(core)
            elif key.startswith(_CVAR_OWN):
                batch[key] = _dumps(self.cvar.own[key[len(_CVAR_OWN) :].decode()].to_json())
            elif key.startswith(_CVAR_CLASS):
                name = key[len(_CVAR_CLASS) :].decode()
                batch[key] = _dumps(self.cvar.classes[name].to_json())
            else:
                batch[key] = _dumps(self._hours[key[len(_HOUR) :].decode()])
        self.store.apply(batch)
        self._dirty.clear()
        return len(batch)

    # ----------------------------------------------------------------- minutes
    def add_report(
        self,
        partition: int,
        minute: int,
        final: bool,
        quotes: list[dict[str, Any]],
        signals: list[dict[str, Any]],
    ) -> None:
        """Buffer one partition's report of ``minute``."""
        core = self.core
        p = str(partition)
        core["seen"][p] = max(int(core["seen"].get(p, 0)), minute)
        if final:
            core["finals"][p] = max(int(core["finals"].get(p, 0)), minute)
        entry = core["pending"].setdefault(str(minute), {"quotes": [], "signals": []})
        entry["quotes"] += quotes
        entry["signals"] += signals
        self._dirty.add(_MINUTE + str(minute).encode())
        self.touch()

    def _done_through(self, partition: int, minute: int) -> bool:
        p = str(partition)
        seen = int(self.core["seen"].get(p, 0))
        return seen > minute or int(self.core["finals"].get(p, 0)) >= minute

    def ready_minutes(self) -> list[int]:
        """Buffered minutes every partition is done with, oldest first (stops at the first not)."""
        ready = []
        for minute in sorted(int(m) for m in self.core["pending"]):
            if not all(self._done_through(p, minute) for p in range(self.partitions)):
                break
            ready.append(minute)
        return ready

    def pop_minute(self, minute: int) -> dict[str, Any]:
        """Take a ready minute out of the buffer."""
        self.touch()
        self._dirty.add(_MINUTE + str(minute).encode())  # deleted at the next flush
        entry: dict[str, Any] = self.core["pending"].pop(str(minute))
        return entry

    # ----------------------------------------------------------------- market memory
    def remember_quotes(self, quotes: Iterable[Quote]) -> None:
        """Keep each asset's newest quote (the end-of-day close when an asset skips a minute)."""
        for q in quotes:
            data = q.to_json()
            data.pop("minute_ms")
            self.core["quotes"][str(q.asset_uid)] = data

    def last_quotes(self) -> list[dict[str, Any]]:
        """The remembered quotes, by asset id."""
        return [self.core["quotes"][k] for k in sorted(self.core["quotes"], key=int)]

    def add_hour(self, hour_ms: int, quotes: Iterable[Quote]) -> None:
        """Append the closes of the minute that ends an hour (kept: ``lookback_d x 24 + 1``)."""
        keep = self.policy.hrp.lookback_d * 24 + 1
        for q in quotes:
            series = self._hours.setdefault(q.symbol, [])
            if series and series[-1][0] >= hour_ms:
                continue
            series.append([hour_ms, q.close])
            del series[:-keep]
            self._dirty.add(_HOUR + q.symbol.encode())

    def hours(self) -> dict[str, list[list[float]]]:
        """Each symbol's kept hourly closes."""
        return self._hours

    def set_budget(self, budget: HrpBudget) -> None:
        """Adopt the day's HRP budget."""
        self.budget = budget
        self.touch()

    def set_cvar(self, book: cvar.CvarBook, closed: ClosedTrade) -> None:
        """Adopt the CVaR book after ``closed`` was added (its own and class keys changed)."""
        self.cvar = book
        t = closed.trade
        if cvar.own_key(t.symbol, t.tf) in book.own:
            self._dirty.add(_CVAR_OWN + cvar.own_key(t.symbol, t.tf).encode())
        if cvar.class_key(t.cluster, t.side) in book.classes:
            self._dirty.add(_CVAR_CLASS + cvar.class_key(t.cluster, t.side).encode())

    # ----------------------------------------------------------------- portfolio views
    def open_risk_by_cluster(self, params: HrpOverlay) -> dict[str, float]:
        """Sum of ``risk_pct`` of open trades and working entries, per cluster."""
        out: dict[str, float] = {}
        for t in self.book.trades:
            out[t.cluster] = out.get(t.cluster, 0.0) + t.risk_pct
        for e in self.book.entries:
            c = cluster_of(e.request.symbol, params)
            out[c] = out.get(c, 0.0) + e.request.risk_pct
        return dict(sorted(out.items()))

    def open_symbols(self) -> frozenset[str]:
        """Symbols with an open trade or a working entry."""
        return frozenset(
            [t.symbol for t in self.book.trades] + [e.request.symbol for e in self.book.entries]
        )

    def free_balance(self) -> float:
        """Cash minus the initial margin of open trades and working entries.

        Margin is notional / the account leverage (``sizing.leverage``): a trade's own
        ``leverage`` is the most its size was allowed (the CVaR cap), not what it posts.
        """
        lev = max(self.policy.sizing.leverage, 1.0)
        used = math.fsum(t.qty * t.entry_price for t in self.book.trades)
        used += math.fsum(e.request.qty * e.request.price for e in self.book.entries)
        return self.book.cash_usd - used / lev
