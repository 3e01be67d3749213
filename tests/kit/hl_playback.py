"""A local Hyperliquid: WebSocket + REST ``info`` on 127.0.0.1 that plays back real recordings.

Session 1 plays the first ``disconnect_after`` recorded frames, then drops the connection.
Session 2 (after the client resubscribes) re-sends the last trades frame it already sent (as the
exchange does after a reconnect), then the ``malformed`` frames, then the rest of the recording,
and sets ``done``. Pings get pongs. REST serves recorded cassettes.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from contextlib import suppress
from pathlib import Path
from typing import Any

import websockets
from aiohttp import web

from topology.settings import REPO_ROOT

SAMPLES = REPO_ROOT / "data" / "samples"
CAPTURE = SAMPLES / "hyperliquid-ws-raw-hftbacktest" / "btcusd_20250126.gz"
CASSETTES = SAMPLES / "hyperliquid-rest-python-sdk-cassettes"
CTXS = SAMPLES / "hyperliquid-ws-asset-ctxs-nautilus" / "ws_all_dexs_asset_ctxs.json"

MALFORMED = (
    "{not json",
    json.dumps(
        {
            "channel": "trades",
            "data": [{"coin": "BTC", "side": "B", "px": "abc", "sz": "1", "time": 1, "tid": 9}],
        }
    ),
    json.dumps({"channel": "l2Book", "data": {"coin": "BTC", "time": 5}}),
    json.dumps({"channel": "bbo", "data": {"coin": "BTC", "time": "soon", "bbo": [None, None]}}),
)


def recorded_frames(path: Path = CAPTURE) -> list[str]:
    """Return the recorded frames, in order, exactly as received."""
    with gzip.open(path, "rt") as fh:
        return [line.split(" ", 1)[1].rstrip("\n") for line in fh if line.strip()]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PlaybackExchange:
    """The local exchange.

    Args:
        frames: Recorded WS frames to play.
        disconnect_after: Frames sent before the forced disconnect.
        malformed: Bad frames sent in the second session.
        subscriptions_per_session: Subscribe messages expected before playing.
    """

    def __init__(
        self,
        frames: list[str],
        *,
        disconnect_after: int,
        malformed: tuple[str, ...] = MALFORMED,
        subscriptions_per_session: int,
    ) -> None:
        self.frames = frames
        self.disconnect_after = disconnect_after
        self.malformed = malformed
        self.expected_subs = subscriptions_per_session
        self.sessions = 0
        self.sent: list[str] = []
        self.resent: list[str] = []
        self.subscriptions: list[list[dict[str, Any]]] = []
        self.pings = 0
        self.total_sent = 0
        self.throttle_first_ctx = True
        self.done = asyncio.Event()
        self.ws_port = _free_port()
        self.http_port = _free_port()
        self._ws: Any = None
        self._runner: web.AppRunner | None = None

    @property
    def ws_url(self) -> str:
        """WebSocket endpoint."""
        return f"ws://127.0.0.1:{self.ws_port}/ws"

    @property
    def rest_url(self) -> str:
        """REST info endpoint."""
        return f"http://127.0.0.1:{self.http_port}/info"

    async def start(self) -> None:
        """Listen on both ports."""
        self._ws = await websockets.serve(self._session, "127.0.0.1", self.ws_port)
        app = web.Application()
        app.router.add_post("/info", self._info)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.http_port).start()

    async def stop(self) -> None:
        """Close both servers."""
        if self._ws is not None:
            self._ws.close()
            await self._ws.wait_closed()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _session(self, ws: Any) -> None:
        self.sessions += 1
        session = self.sessions
        subs: list[dict[str, Any]] = []
        self.subscriptions.append(subs)
        await self._send(ws, "Websocket connection established.")
        with suppress(websockets.ConnectionClosed):
            while len(subs) < self.expected_subs:
                await self._answer(ws, json.loads(await ws.recv()), subs)
            if session == 1:
                for frame in self.frames[: self.disconnect_after]:
                    await self._send(ws, frame)
                    self.sent.append(frame)
                await ws.close(code=1012, reason="playback: forced disconnect")
                return
            last_trades = [f for f in self.sent if '"channel":"trades"' in f][-1:]
            for frame in [*last_trades, *self.malformed, *self.frames[self.disconnect_after :]]:
                await self._send(ws, frame)
                self.sent.append(frame)
            self.resent = last_trades
            self.done.set()
            async for message in ws:
                await self._answer(ws, json.loads(message), subs)

    async def _send(self, ws: Any, frame: str) -> None:
        await ws.send(frame)
        self.total_sent += 1

    async def _answer(self, ws: Any, message: dict[str, Any], subs: list[dict[str, Any]]) -> None:
        if message.get("method") == "ping":
            self.pings += 1
            await self._send(ws, json.dumps({"channel": "pong"}))
        elif message.get("method") == "subscribe":
            subs.append(message["subscription"])
            await self._send(ws, json.dumps({"channel": "subscriptionResponse", "data": message}))

    async def _info(self, request: web.Request) -> web.Response:
        body = await request.json()
        kind = body.get("type")
        meta = json.loads((CASSETTES / "meta_response.json").read_text())
        if kind == "meta":
            return web.json_response(meta)
        if kind == "metaAndAssetCtxs" and self.throttle_first_ctx:
            self.throttle_first_ctx = False  # the exchange's rate limiter, once
            return web.json_response({"error": "rate limited"}, status=429)
        if kind == "metaAndAssetCtxs":
            ctxs = json.loads(CTXS.read_text())["data"]["ctxs"][0][1]
            return web.json_response([meta, ctxs[: len(meta["universe"])]])
        if kind == "candleSnapshot":
            coin = body["req"]["coin"]
            path = CASSETTES / f"candleSnapshot_{coin}_1h_response.json"
            return web.json_response(json.loads(path.read_text()) if path.exists() else [])
        if kind == "predictedFundings":
            # Shape from the protocol fact sheet (no recording exists).
            hl = {"fundingRate": "0.0000125", "nextFundingTime": 1737921600000}
            return web.json_response([["BTC", [["HlPerp", hl], ["BinPerp", None]]]])
        return web.json_response({"error": f"unknown type {kind}"}, status=422)
