"""The policy server's wire format: msgpack with numpy arrays (the `msgpack-numpy` extension).

Messages (each a msgpack map):
* server -> client, once on connect: `{"kind": "metadata", "protocol_version": 1, "policy": {...}}`;
* client -> server: `{"kind": "infer", "obs": {"images": [uint8 (H, W, 3), ...], "state": float (D,),
  "task": str}}` (cameras in the policy's slot order), or `{"kind": "ping"}`;
* server -> client: `{"kind": "actions", "actions": float32 (chunk, action_dim) in robot units,
  "timing": {"infer_ms": ...}}`, `{"kind": "pong"}`, or `{"kind": "error", "error": "..."}`
  (a malformed observation; the connection stays open).
HTTP `GET /healthz` on the same port answers `200 OK` (a JSON line with the policy name).
"""
from __future__ import annotations

from typing import Any

import msgpack
import msgpack_numpy

PROTOCOL_VERSION = 1


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, default=msgpack_numpy.encode, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, object_hook=msgpack_numpy.decode, raw=False)
