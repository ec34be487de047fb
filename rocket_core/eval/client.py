"""Client side of the policy server (import-light: numpy, msgpack, websockets).

Everything the server sends is decoded by our codec (`wire`), which refuses anything but numeric arrays,
so a malicious server can make the client fail with one line, never run code.
"""
from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from rocket_core.errors import RocketError
from rocket_core.eval.wire import PROTOCOL_VERSION, TOKEN_ENV, WireError, packb, unpackb

SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_REPLY_BYTES = 16 * 1024 * 1024  # metadata and action chunks are tiny; a bigger frame is hostile


class PolicyError(RocketError):
    """The server rejected a request (its message says why), cannot be reached or broke the protocol."""


def _token(token: str | None) -> str | None:
    return token or os.environ.get(TOKEN_ENV) or None


def check_url(url: str) -> None:
    """Refuse a policy URL that cannot work (scheme, host, port) before connecting."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise PolicyError(f"bad policy URL '{url}' ({exc}); use ws://HOST:PORT with a port in 1-65535") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname or port == 0:
        raise PolicyError(f"bad policy URL '{url}'; use ws://HOST:PORT (rocket serve prints it)")


def health(url: str, timeout: float = 2.0, token: str | None = None) -> dict[str, Any] | None:
    """`GET /healthz` of a server at `ws://host:port` -> its JSON, or None when it does not answer."""
    http = url.replace("ws://", "http://", 1).replace("wss://", "https://", 1).rstrip("/") + "/healthz"
    request = urllib.request.Request(http)
    if _token(token):
        request.add_header("Authorization", f"Bearer {_token(token)}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 (the user's URL)
            data = json.loads(resp.read(65536).decode() or "{}")
            return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def wait_healthy(url: str, timeout: float = 120.0, token: str | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = health(url, token=token)
        if info is not None:
            return info
        time.sleep(0.25)
    raise PolicyError(f"no policy server answered at {url} within {timeout:.0f} s; start one with `rocket serve`")


class PolicyClient:
    """A websocket connection to `rocket serve`: `metadata` on connect, then `infer(obs)` -> action chunk.

    The token (argument or `ROCKET_SERVE_TOKEN`) is sent as `Authorization: Bearer ...`. A connection the
    server closed (idle timeout, restart) is reopened once per request.
    """

    def __init__(self, url: str, open_timeout: float = 30.0, token: str | None = None) -> None:
        check_url(url)
        self.url, self.open_timeout, self.token = url, open_timeout, _token(token)
        self.metadata: dict[str, Any] = {}
        self.limits: dict[str, Any] = {}
        self._connect()

    def _connect(self) -> None:
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
        from websockets.sync.client import connect

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        try:
            self._ws = connect(self.url, max_size=MAX_REPLY_BYTES, compression=None, open_timeout=self.open_timeout,
                               additional_headers=headers)
        except InvalidStatus as exc:
            code = exc.response.status_code
            why = {401: "it wants a token: give the server's with --token or ROCKET_SERVE_TOKEN",
                   403: "it refused this origin", 503: "it is at its connection cap; retry later"}.get(code, "")
            raise PolicyError(f"the policy server at {self.url} refused the connection (HTTP {code}); {why}") from None
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
            raise PolicyError(f"cannot connect to the policy server at {self.url} ({exc}); "
                              "is `rocket serve` running there?") from None
        try:
            first = self._recv("metadata")
        except ConnectionClosed as exc:
            raise PolicyError(f"the policy server at {self.url} closed the connection before its metadata ({exc})") from None
        policy = first.get("policy")
        if (first.get("kind") != "metadata" or first.get("protocol_version") != PROTOCOL_VERSION
                or not isinstance(policy, dict)):
            self._ws.close()
            raise PolicyError(f"{self.url} is not a rocket policy server of protocol version {PROTOCOL_VERSION}")
        if not isinstance(policy.get("vla", ""), str) or not SAFE_NAME.fullmatch(policy.get("vla") or "x"):
            self._ws.close()  # the name ends up in result paths
            raise PolicyError(f"the policy server at {self.url} names its VLA {str(policy.get('vla'))[:40]!r}; "
                              "expected letters, digits, '.', '_' or '-'")
        self.metadata = policy
        limits = first.get("limits")
        self.limits = limits if isinstance(limits, dict) else {}

    def _recv(self, what: str) -> dict[str, Any]:
        try:
            message = unpackb(self._ws.recv())
        except WireError as exc:
            self._ws.close()
            raise PolicyError(f"refused the policy server's {what} from {self.url}: {exc}") from None
        if not isinstance(message, dict):
            self._ws.close()
            raise PolicyError(f"the policy server at {self.url} sent a {what} that is not a map")
        return message

    def infer(self, obs: dict[str, Any]) -> np.ndarray:
        """(chunk, action_dim) float32 actions in robot units."""
        reply = self.request({"kind": "infer", "obs": obs})
        try:
            return np.asarray(reply["actions"], dtype=np.float32)
        except (KeyError, TypeError, ValueError):
            raise PolicyError(f"the policy server at {self.url} answered without a numeric action array") from None

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        from websockets.exceptions import ConnectionClosed

        data = packb(message)
        frame = self.limits.get("frame_bytes")
        if isinstance(frame, int) and len(data) > frame:
            raise PolicyError(f"this message has {len(data)} bytes, over the server's frame limit of {frame}; "
                              f"send images of at most {self.limits.get('image_side')} px a side")
        for attempt in (0, 1):
            try:
                self._ws.send(data)
                reply = self._recv("reply")
                break
            except ConnectionClosed as exc:
                if attempt:
                    raise PolicyError(f"the policy server at {self.url} closed the connection ({exc})") from None
                self._connect()
        if reply.get("kind") == "error":
            raise PolicyError("policy server: " + " ".join(str(reply.get("error")).split())[:500])
        return reply

    def close(self) -> None:
        self._ws.close()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
