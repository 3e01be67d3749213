"""Hyperliquid REST ``info`` polling: discovery, contexts (OI, mark, funding), bootstrap candles.

Rate-limit aware: every request spends its documented weight from a per-minute budget
(1200 by default) and waits when the budget is spent; HTTP 429 and 5xx back off with jitter.
A response that does not parse goes to the dead-letter topic; the poller keeps going.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx

from connectors import metrics
from connectors.hyperliquid.ws_parse import FrameError, candle_value, ctx_value
from schemas import raw
from schemas.errors import AlphaError
from schemas.raw import RawValue

if TYPE_CHECKING:
    from connectors.hyperliquid.live import HyperliquidSettings

log = logging.getLogger(__name__)
WEIGHTS = {"meta": 20, "metaAndAssetCtxs": 20, "predictedFundings": 20, "candleSnapshot": 20}
_INTERVAL_MS = {"1m": 60_000}

Emit = Callable[[RawValue], Awaitable[None]]
EmitDead = Callable[[bytes, str], Awaitable[None]]


class HyperliquidError(AlphaError):
    """The exchange refused our request or the configuration names an unknown coin."""


class RestPoller:
    """Poll ``info`` for the connector's coins.

    Args:
        settings: URLs and periods.
        coins: Coins to poll for.
        resolve: Coin -> asset_uid.
        emit: Receives raw values (contexts, bootstrap candles).
        rng: Jitter source.
        emit_dead: Receives unparsable responses with a reason.
        on_meta: Receives ``(listed, delisted)`` symbols from discovery.
    """

    def __init__(
        self,
        settings: HyperliquidSettings,
        coins: tuple[str, ...],
        resolve: Callable[[str], int],
        emit: Emit,
        rng: random.Random,
        emit_dead: EmitDead | None = None,
        on_meta: Callable[[list[str], list[str]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.coins = coins
        self.resolve = resolve
        self.emit = emit
        self.emit_dead = emit_dead
        self.on_meta = on_meta
        self.rng = rng
        self._spent: list[tuple[float, int]] = []

    async def discover(self) -> None:
        """Fetch ``meta``, check the coins exist, and bootstrap recent candles.

        Raises:
            HyperliquidError: A coin is not listed, or ``meta`` cannot be fetched.
        """
        async with httpx.AsyncClient(timeout=15) as client:
            meta = await self._post(client, {"type": "meta"})
            universe = meta["universe"] if isinstance(meta, dict) else []
            listed = [a["name"] for a in universe if not a.get("isDelisted")]
            delisted = [a["name"] for a in universe if a.get("isDelisted")]
            if self.on_meta is not None:
                self.on_meta(listed, delisted)
            unknown = sorted(set(self.coins) - set(listed))
            if unknown:
                raise HyperliquidError(f"unknown coins {unknown}: not listed in Hyperliquid meta")
            for coin in self.coins:
                await self._bootstrap(client, coin)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll contexts and predicted fundings until ``stop``."""
        next_pred = 0.0
        async with httpx.AsyncClient(timeout=15) as client:
            while not stop.is_set():
                await self._guarded(self._contexts(client), "metaAndAssetCtxs")
                if time.monotonic() >= next_pred:
                    await self._guarded(self._predicted(client), "predictedFundings")
                    next_pred = time.monotonic() + self.settings.predicted_poll_s
                delay = self.settings.ctx_poll_s * (0.8 + 0.4 * self.rng.random())
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except TimeoutError:
                    continue

    async def _guarded(self, job: Awaitable[None], what: str) -> None:
        try:
            await job
        except HyperliquidError as exc:
            log.warning("%s failed: %s", what, exc)

    async def _bootstrap(self, client: httpx.AsyncClient, coin: str) -> None:
        if self.settings.bootstrap_minutes <= 0:
            return
        now = _now_ms()
        step = _INTERVAL_MS[self.settings.candle_interval]
        req = {
            "coin": coin,
            "interval": self.settings.candle_interval,
            "startTime": now - self.settings.bootstrap_minutes * step,
            "endTime": now,
        }
        body = await self._post(client, {"type": "candleSnapshot", "req": req})
        for c in body if isinstance(body, list) else []:
            uid = self.resolve(coin)
            await self._value(partial(candle_value, uid, coin, "candle_snapshot", now, c), c)

    async def _contexts(self, client: httpx.AsyncClient) -> None:
        body = await self._post(client, {"type": "metaAndAssetCtxs"})
        now = _now_ms()
        try:
            universe, ctxs = body[0]["universe"], body[1]
        except (KeyError, IndexError, TypeError):
            await self._dead(body, "metaAndAssetCtxs: not [meta, ctxs]")
            return
        for asset, ctx in zip(universe, ctxs, strict=False):
            coin = asset.get("name")
            if coin in self.coins:
                uid = self.resolve(coin)
                await self._value(partial(ctx_value, uid, coin, "rest", now, now, ctx), ctx)

    async def _predicted(self, client: httpx.AsyncClient) -> None:
        body = await self._post(client, {"type": "predictedFundings"})
        now = _now_ms()
        for entry in body if isinstance(body, list) else []:
            try:
                coin, venues = entry
                hl = dict(venues).get("HlPerp")
            except (TypeError, ValueError):
                await self._dead(entry, "predictedFundings: entry is not [coin, venues]")
                continue
            if coin not in self.coins or not hl:
                continue

            def build(coin: str = coin, hl: Any = hl) -> RawValue:
                return raw.asset_ctx(
                    self.resolve(coin), "hyperliquid", coin, "rest", now, now,
                    funding=str(hl["fundingRate"]), funding_interval_ms=3_600_000,
                    next_funding_ts=int(hl["nextFundingTime"]),
                )  # fmt: skip

            await self._value(build, entry)

    async def _value(self, build: Callable[[], RawValue], original: object) -> None:
        try:
            value = build()
        except (FrameError, KeyError, TypeError, ValueError) as exc:
            await self._dead(original, f"rest: {exc}")
            return
        await self.emit(value)

    async def _dead(self, original: object, reason: str) -> None:
        metrics.INGEST_TICKS.labels("hyperliquid", "malformed").inc()
        if self.emit_dead is not None:
            await self.emit_dead(json.dumps(original, default=str).encode(), reason)

    async def _post(self, client: httpx.AsyncClient, body: dict[str, Any]) -> Any:
        kind = str(body["type"])
        await self._spend(WEIGHTS.get(kind, 20))
        delay = self.settings.backoff_initial_s
        for _ in range(6):
            try:
                reply = await client.post(self.settings.rest_url, json=body)
            except httpx.HTTPError as exc:
                metrics.REST_REQUESTS.labels(kind, "error").inc()
                log.warning("%s: %s", kind, exc)
            else:
                if reply.status_code == httpx.codes.OK:
                    metrics.REST_REQUESTS.labels(kind, "ok").inc()
                    try:
                        return reply.json()
                    except ValueError:
                        await self._dead(reply.text, f"{kind}: response is not JSON")
                        raise HyperliquidError(f"{kind}: response is not JSON") from None
                metrics.REST_REQUESTS.labels(kind, str(reply.status_code)).inc()
                if reply.status_code != httpx.codes.TOO_MANY_REQUESTS and reply.status_code < 500:
                    raise HyperliquidError(f"{kind}: HTTP {reply.status_code} {reply.text[:200]}")
            await asyncio.sleep(delay * (0.5 + self.rng.random()))
            delay = min(self.settings.backoff_max_s, delay * 2)
        raise HyperliquidError(f"{kind}: gave up after retries")

    async def _spend(self, weight: int) -> None:
        # Sliding one-minute window of spent weight.
        while True:
            now = time.monotonic()
            self._spent = [(t, w) for t, w in self._spent if now - t < 60]
            if sum(w for _, w in self._spent) + weight <= self.settings.rest_weight_per_min:
                self._spent.append((now, weight))
                return
            await asyncio.sleep(60 - (now - self._spent[0][0]) + 0.01)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
