"""``alpha worker trader``: the downstream stage as a Faust agent around :class:`TraderProcessor`.

``trade.in.v0`` (one partition: every detector partition's quotes and events per minute) ->
``sizing.decisions.v0``, ``orders.v0``, ``fills.v0``, ``trade.adjust.v0``, ``cvar.caps.v0``,
``hrp.budget.v0``, ``risk.state.v0``, ``control.v0``; state ``trade.state.v1`` in a RocksDB
table with a changelog. Like every stage (:mod:`topology.stage_workers`) the agent is thin and
exactly-once: each output, changelog record and dead letter goes in the source partition's
transaction (:class:`topology.faust_eos.EosStage`), so a kill -9 leaves no duplicate order and
no lost fill. A malformed record goes to ``trade.in.dlq`` with the reason.

Metrics carry the spec 001 names (``daily_cap_trigger_total``, ``streak_halt_total``,
``trades_opened_total{route}``, ``fail_safe_trigger_total{reason}``, ``mode_switch_total``, ...)
with the ``alpha_`` prefix every metric of ours has.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge

from packs.risk import RiskPolicy, load_risk_policy
from processors.downstream import risk
from processors.downstream.trader import BadTradeIn, TraderProcessor
from processors.downstream.trader_state import STORE
from topology import spec
from topology.lattice_worker import WorkerOptions
from topology.stage_workers import StageWorker, codecs_for
from topology.trader_driver import OUTPUT_TOPICS, resolve_partition

log = logging.getLogger(__name__)

TRADE_IN = "trade.in.v0"

#: Counters of the processor and the book, exported under their spec names (label sets vary).
_SPEC_COUNTERS: dict[str, tuple[str, ...]] = {
    "daily_cap_trigger_total": (),
    "streak_halt_total": (),
    "kill_switch_total": ("reason",),
    "fail_safe_trigger_total": ("reason",),
    "mode_switch_total": ("from", "to"),
    "warmup_drop_total": ("symbol",),
    "backpressure_total": ("mode",),
    "risk_drop_total": ("reason",),
    "trades_opened_total": ("route",),
    "trades_closed_total": ("reason",),
    "orders_cancelled_total": ("reason",),
}
METRICS = {
    name: Counter(f"alpha_{name.removesuffix('_total')}", f"spec 001 {name}", list(labels))
    for name, labels in _SPEC_COUNTERS.items()
}
#: The paper book's own counters exported (its kill_switch_total repeats the risk state's).
_BOOK_COUNTERS = frozenset({"trades_opened_total", "trades_closed_total", "orders_cancelled_total"})
OUTCOMES = Counter("alpha_trader_records_total", "trade.in.v0 records by outcome.", ["outcome"])
EQUITY = Gauge("alpha_trader_equity_usd", "Paper equity after the last minute.")
OPEN_TRADES = Gauge("alpha_trader_open_trades", "Open paper trades.")
DLQ = Counter("alpha_trader_dlq_total", "trade.in.v0 records sent to its DLQ.", ["reason"])


def export(counts: dict[str, int]) -> None:
    """Add metric increments keyed like ``name{label="v"}`` to the Prometheus counters."""
    for key, n in sorted(counts.items()):
        name, labels = risk.parse_metric_key(key)
        metric = METRICS.get(name)
        if metric is None:
            OUTCOMES.labels(name).inc(n)
        elif labels:
            metric.labels(*(labels.get(k, "") for k in _SPEC_COUNTERS[name])).inc(n)
        else:
            metric.inc(n)


class TraderWorker(StageWorker):
    """``alpha worker trader`` (see module docstring)."""

    def __init__(self, options: WorkerOptions, policy: RiskPolicy | None = None) -> None:
        super().__init__(options, TRADE_IN, STORE, 1, "trader")
        self.policy = policy or load_risk_policy()
        self.partitions = spec.topic("lattice.v0").partitions
        self.codecs = codecs_for(options.registry_url, (TRADE_IN, *OUTPUT_TOPICS))
        self.proc: TraderProcessor | None = None
        self._book_counters: dict[str, int] = {}

    def _forget(self) -> None:
        super()._forget()
        self.proc = None

    def _processor(self) -> TraderProcessor:
        if self.proc is None:
            self.proc = TraderProcessor(self.policy, self._store(0), self.partitions)
            st = self.proc.state
            self._book_counters = {
                k: n for k, n in st.book.counters if k.split("{")[0] in _BOOK_COUNTERS
            }
            log.info(
                "trader: restored state at minute %d, %d open trades, %d working entries",
                st.core["last_minute"],
                len(st.book.positions),
                len(st.book.entries),
            )
        return self.proc

    def _save(self, partition: int) -> None:
        if self.proc is not None:
            self.proc.flush()

    async def _handle(self, partition: int, offset: int, key: bytes | None, data: bytes) -> None:
        proc = self._processor()
        outs = await self._step(partition, offset, key, data, proc.step, (BadTradeIn,), DLQ)
        if outs is None:
            return
        for o in outs:
            await self._send(partition, o.topic, o.key, resolve_partition(o), o.value)
        export(proc.counters)
        proc.counters.clear()
        book = proc.state.book
        counts = {k: n for k, n in book.counters if k.split("{")[0] in _BOOK_COUNTERS}
        export({k: n - self._book_counters.get(k, 0) for k, n in counts.items()})
        self._book_counters = counts
        EQUITY.set(proc.state.risk.equity_usd)
        OPEN_TRADES.set(len(book.positions))
