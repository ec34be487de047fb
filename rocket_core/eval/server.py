"""`rocket serve`: a websocket policy server (websockets + msgpack-numpy), one policy, many clients.

Every connection gets the policy metadata first, then answers each observation with an action chunk
(see `wire`). Malformed observations get `{"kind": "error"}` and the connection stays usable.
`GET /healthz` answers 200 with the policy name. Inference is serialised by a lock (one model).
"""
from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from typing import Any, Callable, Protocol as _Proto

from rocket_core.errors import RocketError
from rocket_core.eval.wire import PROTOCOL_VERSION, packb, unpackb

log = logging.getLogger("rocket.serve")


class _Servable(_Proto):
    def metadata(self) -> dict[str, Any]: ...
    def infer(self, obs: Any) -> dict[str, Any]: ...


class PolicyServer:
    """Serve `policy` on `host:port` (port 0: any free port; see `.port`)."""

    def __init__(self, policy: _Servable, host: str = "127.0.0.1", port: int = 8000) -> None:
        from websockets.sync.server import serve

        self.policy = policy
        self._lock = threading.Lock()
        self.requests = 0
        try:
            self._server = serve(self._handle, host, port, process_request=self._http, max_size=None,
                                 compression=None, ping_interval=None)
        except OSError as exc:
            raise RocketError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
                              "choose another --port or stop the process using it") from None
        self.host = host
        self.port = self._server.socket.getsockname()[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def _http(self, connection: Any, request: Any) -> Any:
        if request.path.rstrip("/") == "/healthz":
            body = json.dumps({"status": "ok", "vla": self.policy.metadata().get("vla"),
                               "requests": self.requests}) + "\n"
            return connection.respond(HTTPStatus.OK, body)
        return None

    def _handle(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        ws.send(packb({"kind": "metadata", "protocol_version": PROTOCOL_VERSION, "policy": self.policy.metadata()}))
        try:
            for raw in ws:
                ws.send(packb(self._answer(raw)))
        except ConnectionClosed:
            pass

    def _answer(self, raw: Any) -> dict[str, Any]:
        try:
            message = unpackb(raw) if isinstance(raw, (bytes, bytearray)) else None
        except Exception as exc:  # noqa: BLE001 - garbage bytes must not kill the connection
            return {"kind": "error", "error": f"undecodable message ({type(exc).__name__}); send msgpack-numpy"}
        if not isinstance(message, dict) or "kind" not in message:
            return {"kind": "error", "error": "messages must be msgpack maps with a 'kind' (infer or ping)"}
        if message["kind"] == "ping":
            return {"kind": "pong"}
        if message["kind"] != "infer":
            return {"kind": "error", "error": f"unknown message kind '{message['kind']}' (infer or ping)"}
        try:
            with self._lock:
                reply = self.policy.infer(message.get("obs"))
                self.requests += 1
            return reply
        except RocketError as exc:
            return {"kind": "error", "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - report, keep serving
            log.exception("inference failed")
            return {"kind": "error", "error": f"inference failed: {type(exc).__name__}: {exc}"}

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def start(self) -> PolicyServer:
        """Serve in a background thread (tests, `rocket eval --serve`)."""
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="rocket-serve")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> PolicyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_callable(metadata: dict[str, Any], fn: Callable[[Any], Any], **kw: Any) -> PolicyServer:
    """A server around a plain function obs -> (chunk, dim) array (tests, scripted policies)."""
    import numpy as np

    class _Fn:
        def metadata(self) -> dict[str, Any]:
            return metadata

        def infer(self, obs: Any) -> dict[str, Any]:
            return {"kind": "actions", "actions": np.asarray(fn(obs), dtype=np.float32), "timing": {}}

    return PolicyServer(_Fn(), **kw)
