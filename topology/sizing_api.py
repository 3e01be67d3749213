"""``alpha trader sizing-api``: the CVaR guard's ``POST /sizing`` over HTTP (spec 000 §18 "API").

A small HTTP server for tools outside the stream (a desk's order ticket, a notebook):

- ``POST /sizing`` with ``{equity, price, sl_kATR, atr, alpha}`` (optionally ``symbol``, ``tf``,
  ``cluster``, ``side``, ``cvar_r``) answers ``{max_size, max_lev, cvar_r, alpha, source,
  n_samples}`` (:func:`processors.downstream.cvar_sizing.sizing_request`). With ``symbol`` and
  ``tf`` and no ``cvar_r``, the tail is the trader's latest cap of that key on ``cvar.caps.v0``
  (``source: cvar.caps.v0``), else the pack's prior. A bad body is a 400 with every problem in
  one line.
- ``GET /caps``: the latest cap per ``symbol|tf`` as JSON; ``GET /health``: ``ok``.

The caps come from a background consumer of ``cvar.caps.v0`` (read_committed, from the
beginning: the topic is compacted), so the answers follow the trader within a poll.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from packs.risk import RiskPolicy
from processors.downstream.cvar_sizing import SizingRequestError, sizing_request
from topology import spec
from topology.events_cli import RegistryDecoder
from topology.settings import StackSettings

log = logging.getLogger(__name__)
CAPS_TOPIC = "cvar.caps.v0"


def answer(
    body: bytes, caps: Mapping[str, Mapping[str, Any]], policy: RiskPolicy
) -> tuple[int, Any]:
    """Answer one ``POST /sizing`` body: ``(HTTP status, JSON value)``."""
    try:
        payload = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return 400, {"error": f"POST /sizing: the body is not JSON ({exc})"}
    cap = None
    if isinstance(payload, dict) and "cvar_r" not in payload:
        cap = caps.get(f"{payload.get('symbol')}|{payload.get('tf')}")
        if cap is not None:
            payload = {**payload, "cvar_r": cap["cvar_r"]}
    try:
        result = sizing_request(
            payload, cfg=policy.cvar, leverage_cap=policy.sizing.leverage, book=None
        )
    except SizingRequestError as exc:
        return 400, {"error": str(exc)}
    if cap is not None:
        result = {**result, "source": CAPS_TOPIC, "n_samples": cap["n_samples"]}
    return 200, result


class CapsFollower(threading.Thread):
    """Keep the latest ``cvar.caps.v0`` value per ``symbol|tf`` (a daemon thread)."""

    def __init__(self, settings: StackSettings) -> None:
        super().__init__(name="cvar-caps", daemon=True)
        self.settings = settings
        self.caps: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self._stop = threading.Event()

    def run(self) -> None:
        """Follow the topic from its beginning until :meth:`stop`."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.bootstrap_servers,
                "group.id": "alpha-sizing-api",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        decoder = RegistryDecoder(self.settings.registry_url)
        parts = spec.topic(CAPS_TOPIC).partitions
        consumer.assign([TopicPartition(CAPS_TOPIC, p, OFFSET_BEGINNING) for p in range(parts)])
        try:
            while not self._stop.is_set():
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                if msg.error():
                    log.warning("sizing-api: %s", msg.error())
                    continue
                value = decoder.decode(msg.value() or b"")
                with self.lock:
                    self.caps[f"{value['symbol']}|{value['tf']}"] = value
        finally:
            consumer.close()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """A copy of the caps (for a request)."""
        with self.lock:
            return dict(self.caps)

    def stop(self) -> None:
        """Ask the thread to end after its current poll."""
        self._stop.set()


def serve(settings: StackSettings, policy: RiskPolicy, host: str, port: int) -> None:
    """Serve until interrupted; print the bound address first (``--port 0`` picks a free one)."""
    follower = CapsFollower(settings)
    follower.start()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug("sizing-api: %s", format % args)

        def _reply(self, code: int, value: Any) -> None:
            body = json.dumps(value, sort_keys=True).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/caps":
                self._reply(200, follower.snapshot())
            elif self.path.rstrip("/") == "/health":
                self._reply(200, "ok")
            else:
                self._reply(404, {"error": f"no such path {self.path}: POST /sizing, GET /caps"})

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/sizing":
                self._reply(404, {"error": f"no such path {self.path}: POST /sizing"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            self._reply(*answer(self.rfile.read(length), follower.snapshot(), policy))

    server = ThreadingHTTPServer((host, port), Handler)
    print(f"sizing api on http://{host}:{server.server_address[1]}", flush=True)  # noqa: T201
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        follower.stop()
