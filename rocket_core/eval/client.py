"""Client side of the policy server (import-light: numpy, msgpack, websockets)."""
from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import numpy as np

from rocket_core.eval.wire import PROTOCOL_VERSION, packb, unpackb


class PolicyError(RuntimeError):
    """The server rejected a request (its message says why) or cannot be reached."""


def health(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """`GET /healthz` of a server at `ws://host:port` -> its JSON, or None when it does not answer."""
    http = url.replace("ws://", "http://", 1).rstrip("/") + "/healthz"
    try:
        with urllib.request.urlopen(http, timeout=timeout) as resp:  # noqa: S310 (local URL)
            return json.loads(resp.read().decode() or "{}")
    except (OSError, ValueError):
        return None


def wait_healthy(url: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = health(url)
        if info is not None:
            return info
        time.sleep(0.25)
    raise PolicyError(f"no policy server answered at {url} within {timeout:.0f} s; start one with `rocket serve`")


class PolicyClient:
    """A websocket connection to `rocket serve`: `metadata` on connect, then `infer(obs)` -> action chunk."""

    def __init__(self, url: str, open_timeout: float = 30.0) -> None:
        from websockets.sync.client import connect

        self.url = url
        try:
            self._ws = connect(url, max_size=None, compression=None, open_timeout=open_timeout)
        except (OSError, TimeoutError) as exc:
            raise PolicyError(f"cannot connect to the policy server at {url} ({exc}); is `rocket serve` running?") from None
        first = unpackb(self._ws.recv())
        if first.get("kind") != "metadata" or first.get("protocol_version") != PROTOCOL_VERSION:
            raise PolicyError(f"{url} is not a rocket policy server of protocol version {PROTOCOL_VERSION}")
        self.metadata: dict[str, Any] = first["policy"]

    def infer(self, obs: dict[str, Any]) -> np.ndarray:
        """(chunk, action_dim) float32 actions in robot units."""
        reply = self.request({"kind": "infer", "obs": obs})
        return np.asarray(reply["actions"], dtype=np.float32)

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        self._ws.send(packb(message))
        reply = unpackb(self._ws.recv())
        if reply.get("kind") == "error":
            raise PolicyError(f"policy server: {reply['error']}")
        return reply

    def close(self) -> None:
        self._ws.close()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
