"""``alpha ingest hyperliquid``: the live connector wired to the raw sink and asset registry."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

from prometheus_client import start_http_server

from connectors.hyperliquid.live import HyperliquidConnector, HyperliquidSettings
from topology.ingest import ingest_context
from topology.settings import StackSettings


def run_hyperliquid(
    settings: StackSettings,
    hl: HyperliquidSettings,
    coins: tuple[str, ...],
    *,
    report: Callable[[str], None],
    max_seconds: float | None = None,
    metrics_port: int | None = None,
) -> None:
    """Run the live connector until ^C/SIGTERM (or ``max_seconds``), then flush."""
    if metrics_port:
        start_http_server(metrics_port, addr=settings.host)
    with ingest_context(settings) as ctx:

        def resolve(coin: str) -> int:
            return ctx.assets.resolve("hyperliquid", "perp", coin)

        def on_meta(listed: list[str], delisted: list[str]) -> None:
            ctx.assets.sync_listing("hyperliquid", "perp", listed, delisted)

        connector = HyperliquidConnector(hl, coins, resolve, ctx.sink, on_meta=on_meta)

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            if max_seconds is not None:
                loop.call_later(max_seconds, stop.set)
            report(f"hyperliquid: {', '.join(connector.coins)} from {hl.ws_url}; ^C to stop")
            await connector.run(stop)

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main())
        report(
            f"hyperliquid: stopped after {connector.state.sessions} session(s);"
            f" parser {dict(sorted(connector.parser.stats.items()))}"
        )
