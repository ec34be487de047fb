"""`rocket serve`: a websocket policy server (websockets + our msgpack codec), one policy, many clients.

Every connection gets the policy metadata and the server's limits first, then answers each observation with
an action chunk (see `wire`). Malformed observations get `{"kind": "error"}` and the connection stays usable.
`GET /healthz` answers 200 with the policy name.

Hostile clients must not run code (the codec decodes numeric arrays only) nor starve the others, so every
expensive thing is bounded and refused before it costs anything:
* the handshake: a browser `Origin` (403), a missing or wrong shared token when one is set (401), and a
  connection cap (503, enforced before the connection gets its threads);
* each frame: a size limit from the policy's own cameras (a larger frame is cut off after its header);
* each observation: image sides and the task's length (bytes here, tokens in the worker), before queueing;
* time: an idle timeout per connection, a pause after each refused message, and a growing wait before the
  next handshake of a host that keeps offending (`Strikes`);
* inference: one worker thread takes requests from a bounded queue round-robin per connection, so a client
  waits for at most one request of every other client.
"""
from __future__ import annotations

import collections
import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
from dataclasses import asdict, dataclass
from http import HTTPStatus
from typing import Any, Callable, Protocol as _Proto

from rocket_core.errors import RocketError
from rocket_core.eval.wire import PROTOCOL_VERSION, TOKEN_ENV, WireError, packb, unpackb

log = logging.getLogger("rocket.serve")

MIN_TOKEN_CHARS = 16
DEFAULT_IMAGE_SIDE = 224  # the input side of every VLA we ship (OpenVLA, pi0, pi0.5)
FRAME_MARGIN = 64 * 1024  # state, task, msgpack framing
BYTES_PER_TOKEN = 16  # no tokenizer packs more bytes into a token: a cheap bound before tokenizing
ERROR_PAUSE_S = 0.05  # after a refused message, so garbage cannot keep a connection thread busy


@dataclass(frozen=True)
class Limits:
    """What one client may ask of the server (`None`: derived from the policy)."""

    image_side: int | None = None  # longest image side accepted; default 4x the policy's input side
    task_tokens: int = 256
    connections: int = 64
    idle_timeout: float = 120.0  # seconds without a message before the server closes a connection
    queue: int = 64  # requests waiting for inference, all connections together


class _Servable(_Proto):
    def metadata(self) -> dict[str, Any]: ...
    def infer(self, obs: Any) -> dict[str, Any]: ...


def is_loopback(host: str) -> bool:
    """True when `host` names only loopback addresses (a hostname is resolved)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None) if host else []
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def check_bind(host: str, port: int, token: str | None, insecure: bool = False) -> None:
    """Refuse a bad port, a short token or a non-loopback address without a token, before any work starts."""
    if not 0 <= port <= 65535:
        raise RocketError(f"--port {port} is out of range; use 1-65535 (or 0 for any free port)")
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise RocketError(f"the serve token has {len(token)} characters; use at least {MIN_TOKEN_CHARS}, e.g. "
                          "python -c 'import secrets; print(secrets.token_urlsafe())'")
    if not token and not insecure and not is_loopback(host):
        raise RocketError(f"refusing to listen on {host} without a token: anyone who reaches it could drive the "
                          f"policy; set --token (or {TOKEN_ENV}), or pass --insecure on a trusted network")


class FairQueue:
    """A bounded queue served round-robin per key: after a key is served it goes to the back of the line."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lines: collections.OrderedDict[Any, collections.deque[Any]] = collections.OrderedDict()
        self._size = 0
        self._cv = threading.Condition()

    def put(self, key: Any, item: Any) -> bool:
        """Queue `item` for `key`; False (nothing queued) when the queue is full."""
        with self._cv:
            if self._size >= self.capacity:
                return False
            self._lines.setdefault(key, collections.deque()).append(item)
            self._size += 1
            self._cv.notify()
            return True

    def __len__(self) -> int:
        return self._size

    def get(self, timeout: float | None = None) -> Any:
        """The next item of the key at the front (None after `timeout`)."""
        with self._cv:
            if not self._cv.wait_for(lambda: self._size > 0, timeout):
                return None
            key, line = self._lines.popitem(last=False)
            item = line.popleft()
            if line:
                self._lines[key] = line  # back of the line
            self._size -= 1
            return item


class Strikes:
    """Recent offences per peer host (oversized frames, refused messages, idle hogging), fading over time.

    A host with strikes waits before its next handshake (a tarpit): a hostile client that reconnects after
    every refusal then sleeps instead of costing the server a handshake each time, while its other
    connections, and every other host's, are unaffected.
    """

    def __init__(self, per_strike_s: float = 0.05, max_wait_s: float = 1.0, fade_per_s: float = 2.0) -> None:
        self.per_strike_s, self.max_wait_s, self.fade_per_s = per_strike_s, max_wait_s, fade_per_s
        self._hosts: dict[str, tuple[float, float]] = {}  # host -> (strikes, when counted)
        self._lock = threading.Lock()

    def _now(self, host: str, now: float) -> float:
        count, then = self._hosts.get(host, (0.0, now))
        return max(0.0, count - (now - then) * self.fade_per_s)

    def add(self, host: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._hosts) > 4096:  # bounded memory: forget the hosts whose strikes have faded
                self._hosts = {h: v for h, v in self._hosts.items() if self._now(h, now) > 0}
            self._hosts[host] = (min(self._now(host, now) + 1, self.max_wait_s / self.per_strike_s), now)

    def wait(self, host: str) -> float:
        """Seconds `host` should wait before its next handshake."""
        with self._lock:
            return min(self.max_wait_s, self._now(host, time.monotonic()) * self.per_strike_s)


def _peer(connection: Any) -> str:
    try:
        address = connection.remote_address
    except OSError:  # already disconnected
        return ""
    return str(address[0]) if isinstance(address, tuple) and address else ""


def _connection_class(on_cut_off: Callable[[str], None]) -> type:
    """websockets' connection, but a peer whose frame is over the limit is cut off at once.

    websockets answers such a frame's header with close code 1009, then reads and discards what the peer
    still sends: about 2 of the 3 ms of server CPU an oversized 6 MB request cost. Shutting the socket down
    skips that (1 ms left, the connection's own set-up).
    """
    from websockets.frames import CloseCode
    from websockets.sync.server import ServerConnection

    class _Connection(ServerConnection):
        cut_off = False

        def send_data(self) -> None:
            super().send_data()
            sent = self.protocol.close_sent
            if not self.cut_off and sent is not None and sent.code == CloseCode.MESSAGE_TOO_BIG:
                self.cut_off = True
                on_cut_off(_peer(self))
                try:
                    self.socket.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    return _Connection


def _refuse_busy(sock: socket.socket) -> None:
    """HTTP 503 on a raw socket: read the request first (bounded), as closing with it unread resets the reply."""
    sock.settimeout(1.0)
    request = b""
    while b"\r\n\r\n" not in request and len(request) < 16384:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:  # a silent client gets the answer anyway
            break
        if not chunk:
            break
        request += chunk
    body = b"too many connections; try again later\n"
    sock.sendall(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: "
                 + str(len(body)).encode() + b"\r\n\r\n" + body)
    sock.shutdown(socket.SHUT_WR)


@dataclass
class _Job:
    obs: Any
    done: threading.Event
    reply: dict[str, Any] | None = None


class PolicyServer:
    """Serve `policy` on `host:port` (port 0: any free port; see `.port`)."""

    def __init__(self, policy: _Servable, host: str = "127.0.0.1", port: int = 8000, *, token: str | None = None,
                 insecure: bool = False, origins: tuple[str, ...] = (), limits: Limits = Limits()) -> None:
        from websockets.sync.server import serve

        check_bind(host, port, token, insecure)
        self.policy, self.token, self.origins = policy, token or None, frozenset(origins)
        self.meta = policy.metadata()
        side = limits.image_side or 4 * int(self.meta.get("image_size") or DEFAULT_IMAGE_SIDE)
        self.limits = Limits(**{**asdict(limits), "image_side": side})
        self.frame_bytes = max(1, int(self.meta.get("num_images") or 1)) * side * side * 3 + FRAME_MARGIN
        self.requests = 0
        self._queue = FairQueue(self.limits.queue)
        self._open = 0
        self._open_lock = threading.Lock()
        self._count_tokens: Callable[[str], int] | None = None
        self._stopping = threading.Event()
        self._served = False
        self.strikes = Strikes()
        try:
            self._server = serve(self._handle, host, port, process_request=self._http, max_size=self.frame_bytes,
                                 max_queue=1, compression=None, ping_interval=None, close_timeout=2,
                                 open_timeout=10, create_connection=_connection_class(self.strikes.add))
        except OSError as exc:
            raise RocketError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
                              "choose another --port or stop the process using it") from None
        self._server.handler = self._gate(self._server.handler)
        self.host = host
        self.port = self._server.socket.getsockname()[1]
        self._thread: threading.Thread | None = None
        self._worker = threading.Thread(target=self._work, daemon=True, name="rocket-infer")
        self._worker.start()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def info(self) -> dict[str, Any]:
        """The limits clients get with the metadata (a client can size its frames before sending)."""
        return {**asdict(self.limits), "frame_bytes": self.frame_bytes, "auth": self.token is not None}

    # ---- admission: connection cap, origin, token ---------------------------------------------------
    def _gate(self, handler: Callable[[socket.socket, Any], None]) -> Callable[[socket.socket, Any], None]:
        """Refuse connections over the cap right after accept, before websockets starts a reader thread."""

        def gated(sock: socket.socket, addr: Any) -> None:
            with self._open_lock:
                admitted = self._open < self.limits.connections
                if admitted:
                    self._open += 1
            if not admitted:
                try:
                    _refuse_busy(sock)
                except OSError:
                    pass
                finally:
                    sock.close()
                    threads = getattr(self._server, "handler_threads", None)  # websockets waits on it at shutdown
                    if threads is not None:
                        with self._server.lock:
                            threads.discard(threading.current_thread())
                return
            try:
                wait = self.strikes.wait(str(addr[0]) if isinstance(addr, tuple) and addr else "")
                if wait:
                    time.sleep(wait)
                handler(sock, addr)
            finally:
                with self._open_lock:
                    self._open -= 1

        return gated

    def _authorised(self, request: Any) -> bool:
        if self.token is None:
            return True
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode())

    def _http(self, connection: Any, request: Any) -> Any:
        origin = request.headers.get("Origin")
        if origin is not None and origin not in self.origins:
            return connection.respond(HTTPStatus.FORBIDDEN, f"origin {origin[:100]} is not allowed "
                                      "(browsers are refused; rocket serve --allow-origin adds one)\n")
        if not self._authorised(request):
            return connection.respond(HTTPStatus.UNAUTHORIZED, f"missing or wrong token (--token / {TOKEN_ENV})\n")
        if request.path.rstrip("/") == "/healthz":
            body = json.dumps({"status": "ok", "vla": self.meta.get("vla"), "requests": self.requests,
                               "queued": len(self._queue), "connections": self._open}) + "\n"
            return connection.respond(HTTPStatus.OK, body)
        return None

    # ---- one connection -----------------------------------------------------------------------------
    def _handle(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed
        from websockets.frames import CloseCode

        try:
            ws.send(packb({"kind": "metadata", "protocol_version": PROTOCOL_VERSION, "policy": self.meta,
                           "limits": self.info()}))
            while not self._stopping.is_set():
                try:
                    raw = ws.recv(timeout=self.limits.idle_timeout)
                except TimeoutError:
                    self.strikes.add(_peer(ws))
                    ws.close(CloseCode.GOING_AWAY, f"idle for {self.limits.idle_timeout:g} s")
                    return
                reply = self._answer(raw, ws)
                try:
                    data = packb(reply)
                except (TypeError, WireError) as exc:  # a policy reply the wire cannot carry
                    reply = {"kind": "error", "error": f"the policy's reply cannot be sent ({exc})"}
                    data = packb(reply)
                ws.send(data)
                if reply["kind"] == "error":
                    self.strikes.add(_peer(ws))
                    time.sleep(ERROR_PAUSE_S)
        except ConnectionClosed:
            pass

    def _answer(self, raw: Any, key: Any) -> dict[str, Any]:
        try:
            message = unpackb(raw) if isinstance(raw, (bytes, bytearray)) else None
        except WireError as exc:
            return {"kind": "error", "error": str(exc)}
        if not isinstance(message, dict) or "kind" not in message:
            return {"kind": "error", "error": "messages must be msgpack maps with a 'kind' (infer or ping)"}
        if message["kind"] == "ping":
            return {"kind": "pong"}
        if message["kind"] != "infer":
            return {"kind": "error", "error": f"unknown message kind '{str(message['kind'])[:40]}' (infer or ping)"}
        problem = self._oversized(message.get("obs"))
        if problem:
            return {"kind": "error", "error": problem}
        job = _Job(message.get("obs"), threading.Event())
        if not self._queue.put(key, job):
            return {"kind": "error", "error": f"server busy ({self.limits.queue} requests queued); retry later"}
        while not job.done.wait(0.5):
            if self._stopping.is_set():
                return {"kind": "error", "error": "the server is shutting down"}
        assert job.reply is not None
        return job.reply

    def _oversized(self, obs: Any) -> str | None:
        """Cheap size checks before an observation may queue (the policy checks the rest)."""
        if not isinstance(obs, dict):
            return None
        images: Any = obs.get("images")
        if not isinstance(images, (list, tuple)):
            images = list(images) if getattr(images, "ndim", 0) == 4 else [images]  # (cameras, H, W, 3) or one
        for k, im in enumerate(images):
            shape: tuple[int, ...] = getattr(im, "shape", ())
            if len(shape) >= 2 and max(shape[:2]) > self.limits.image_side:  # type: ignore[operator]  # set in __init__
                return (f"image {k} is {shape[0]}x{shape[1]}; this server takes images of at most "
                        f"{self.limits.image_side} px a side (resize before sending)")
        task = obs.get("task")
        if isinstance(task, str) and len(task.encode()) > self.limits.task_tokens * BYTES_PER_TOKEN:
            return f"the task has {len(task)} characters; this server takes at most {self.limits.task_tokens} tokens"
        return None

    # ---- the inference worker -----------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stopping.is_set():
            job = self._queue.get(timeout=0.5)
            if job is not None:
                job.reply = self._infer(job.obs)
                job.done.set()

    def _tokens(self, task: str) -> int:
        """Tokens of `task` by the policy's own tokenizer when it has an `encode`, else its UTF-8 bytes (a bound)."""
        if self._count_tokens is None:
            try:  # a lazily loaded tokenizer may fail here; the byte count stays a safe bound
                encode = getattr(getattr(getattr(self.policy, "model", None), "tokenizer", None), "encode", None)
            except Exception:  # noqa: BLE001
                encode = None
            self._count_tokens = (lambda t: len(encode(t))) if callable(encode) else (lambda t: len(t.encode()))
        return self._count_tokens(task)

    def _infer(self, obs: Any) -> dict[str, Any]:
        task = obs.get("task") if isinstance(obs, dict) else None
        try:
            if isinstance(task, str) and (n := self._tokens(task)) > self.limits.task_tokens:
                return {"kind": "error", "error": f"the task has {n} tokens; this server takes at most "
                                                  f"{self.limits.task_tokens}"}
            reply = self.policy.infer(obs)
            self.requests += 1
            return reply
        except RocketError as exc:
            return {"kind": "error", "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - report, keep serving
            log.exception("inference failed")
            return {"kind": "error", "error": f"inference failed: {type(exc).__name__}: {exc}"}

    # ---- lifecycle ----------------------------------------------------------------------------------
    def serve_forever(self) -> None:
        self._served = True
        self._server.serve_forever()

    def start(self) -> PolicyServer:
        """Serve in a background thread (tests, `rocket eval --serve`)."""
        self._served = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="rocket-serve")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._served:
            self._server.shutdown()
        else:  # websockets' shutdown waits for a serve loop that never ran
            self._server.socket.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._worker.join(timeout=5)

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
