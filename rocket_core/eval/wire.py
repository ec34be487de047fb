"""The policy server's wire format: msgpack, with numpy arrays in the msgpack-numpy layout, decoded by our own code.

Messages (each a msgpack map):
* server -> client, once on connect: `{"kind": "metadata", "protocol_version": 1, "policy": {...},
  "limits": {...}}` (`limits`: what the server accepts, see `server.Limits`);
* client -> server: `{"kind": "infer", "obs": {"images": [uint8 (H, W, 3), ...], "state": float (D,),
  "task": str}}` (cameras in the policy's slot order), or `{"kind": "ping"}`;
* server -> client: `{"kind": "actions", "actions": float32 (chunk, action_dim) in robot units,
  "timing": {"infer_ms": ...}}`, `{"kind": "pong"}`, or `{"kind": "error", "error": "..."}`
  (a malformed observation; the connection stays open).
HTTP `GET /healthz` on the same port answers `200 OK` (a JSON line with the policy name).

Why our own codec: msgpack-numpy unpickles object arrays, so one message could run code on the receiver.
Here an array is `{b"nd": True, b"type": "<f4", b"kind": b"", b"shape": [...], b"data": <raw bytes>}` (the
msgpack-numpy layout, so its peers still interoperate for numeric arrays), and decoding accepts only bool
and numeric dtypes from a fixed list, shapes within `MAX_NDIM` / `MAX_ELEMENTS` whose size matches the data
exactly. Anything else is refused with a `WireError`; nothing on the wire is ever evaluated or unpickled.
"""
from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np

PROTOCOL_VERSION = 1
TOKEN_ENV = "ROCKET_SERVE_TOKEN"  # the shared secret of `rocket serve --token`, read by both sides
MAX_NDIM = 8
MAX_ELEMENTS = 1 << 28  # per array; the frame size limit is the tighter bound in practice

# Exact dtype strings accepted (both byte orders), so no untrusted string ever reaches `np.dtype` parsing.
_ALLOWED = {"|b1", "|i1", "|u1"} | {f"{order}{kind}{size}" for order in "<>" for kind, sizes in
                                    (("i", (2, 4, 8)), ("u", (2, 4, 8)), ("f", (2, 4, 8)), ("c", (8, 16)))
                                    for size in sizes}


class WireError(ValueError):
    """A message that breaks the wire format or its limits; the message says what was refused."""


def _encode(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)):
        arr = np.asarray(obj)
        if arr.dtype.str not in _ALLOWED:
            raise WireError(f"cannot send an array of dtype {arr.dtype} ({arr.dtype.kind!r}); "
                            "only bool and numeric arrays travel on the wire")
        if isinstance(obj, np.generic):
            return {b"nd": False, b"type": arr.dtype.str, b"kind": b"", b"data": arr.tobytes()}
        return {b"nd": True, b"type": arr.dtype.str, b"kind": b"", b"shape": list(arr.shape), b"data": arr.tobytes()}
    raise TypeError(f"cannot send a {type(obj).__name__} on the wire")


def _field(obj: dict[Any, Any], key: str) -> Any:
    """msgpack-numpy's keys are bytes; str keys are read too, so no spelling slips past the checks."""
    return obj.get(key.encode(), obj.get(key))


def _decode(obj: dict[Any, Any]) -> Any:
    marker = _field(obj, "nd")
    if marker is None:
        return obj
    dtype_str, kind, data = _field(obj, "type"), _field(obj, "kind"), _field(obj, "data")
    if isinstance(dtype_str, bytes):
        dtype_str = dtype_str.decode("ascii", "replace")
    if kind not in (None, "", b"") or not isinstance(dtype_str, str) or dtype_str not in _ALLOWED:
        shown = kind.decode("ascii", "replace") if isinstance(kind, bytes) else kind
        raise WireError(f"refused an array of dtype {str(dtype_str)[:20]!r} (kind {str(shown)[:4]!r}): "
                        "only bool and numeric arrays are accepted")
    if not isinstance(data, bytes):
        raise WireError("refused an array whose data is not raw bytes")
    dtype = np.dtype(dtype_str)
    if marker is False:
        if len(data) != dtype.itemsize:
            raise WireError(f"refused a {dtype_str} scalar of {len(data)} bytes")
        return np.frombuffer(data, dtype=dtype)[0].astype(dtype.newbyteorder("="))
    shape = _field(obj, "shape")
    if (marker is not True or not isinstance(shape, (list, tuple)) or len(shape) > MAX_NDIM
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_ELEMENTS for d in shape)):
        raise WireError(f"refused an array with shape {str(shape)[:60]} (at most {MAX_NDIM} non-negative sizes)")
    count = math.prod(shape)
    if count > MAX_ELEMENTS or count * dtype.itemsize != len(data):
        raise WireError(f"refused a {dtype_str} array of shape {tuple(shape)}: {len(data)} data bytes do not match "
                        f"(or it exceeds {MAX_ELEMENTS} elements)")
    # A writable copy in native byte order: the receiver may hand it to torch (which warns on read-only arrays).
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=True)


def packb(obj: Any) -> bytes:
    packed: bytes = msgpack.packb(obj, default=_encode, use_bin_type=True)
    return packed


def unpackb(data: bytes | bytearray | str) -> Any:  # a str (a text frame) is refused
    """Decode one message; raises `WireError` (one line) for anything outside the format or its limits."""
    try:
        return msgpack.unpackb(data, object_hook=_decode, raw=False)
    except WireError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise WireError(f"undecodable message ({type(exc).__name__}); send msgpack") from None
