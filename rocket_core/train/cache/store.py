"""Entry files: safetensors with the namespace key, row and checksum; atomic writes, checked reads."""
from __future__ import annotations

import hashlib
import json
import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from safetensors.torch import save_file
from torch.utils.data import get_worker_info

from rocket_core.train.cache.layout import _ST_DTYPES, _TENSOR, Layout

# --- the store: files, checksums ----------------------------------------------------------------------


@dataclass(frozen=True)
class Corrupt:
    """A cache entry that failed verification (picklable, so DataLoader workers can report it)."""

    path: str
    reason: str


Entry = torch.Tensor | Corrupt | None  # loaded, corrupt, missing


def _batch_buffer(shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor; in a DataLoader worker directly in shared memory (as default_collate does),
    so the batch reaches the main process without another copy."""
    if get_worker_info() is not None:
        proto = torch.empty(0, dtype=dtype)
        storage = proto._typed_storage()._new_shared(math.prod(shape), device="cpu")
        return proto.new(storage).resize_(*shape)
    return torch.empty(tuple(shape), dtype=dtype)


class CacheStore:
    """One namespace's files: path of a row, verified read, atomic write. Small and picklable."""

    def __init__(self, root: Path, key: str, parts: dict[str, Any], layout: Layout, teacher_name: str,
                 episodes: np.ndarray, frames: np.ndarray) -> None:
        self.root = Path(root)
        self.key, self.parts, self.layout = key, parts, layout
        self.dir = self.root / f"{teacher_name}-{key[:16]}"
        self.episodes, self.frames = episodes, frames

    def path(self, row: int) -> Path:
        return self.dir / f"ep{int(self.episodes[row]):06d}" / f"{int(self.frames[row]):06d}.safetensors"

    def exists(self, row: int) -> bool:
        return self.path(row).is_file()

    def init_dir(self) -> None:
        """Create the namespace folder with `key.json` (what the key hashes, for humans and `rocket cache`)."""
        meta = self.dir / "key.json"
        if meta.is_file():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(meta, json.dumps({"key": self.key, **self.parts}, indent=2, sort_keys=True, default=list))

    def load(self, row: int) -> Entry:
        """The verified tensor of `row`, Corrupt, or None (missing)."""
        out = torch.empty(self.layout.shape, dtype=self.layout.torch_dtype)
        status = self.read_into(row, out)
        return out if status is True else status

    def read_into(self, row: int, out: torch.Tensor) -> Literal[True] | Corrupt | None:
        """Read `row`'s entry straight into `out` (contiguous, the layout's shape and dtype) and verify it:
        True, None when there is no entry, or Corrupt (then `out` holds garbage)."""
        path = self.path(row)
        try:
            f = path.open("rb")
        except FileNotFoundError:
            return None
        except OSError as exc:
            return Corrupt(str(path), f"unreadable: {exc}")
        with f:
            try:
                size = os.fstat(f.fileno()).st_size
                n = int.from_bytes(f.read(8), "little")
                if size < 8 or not 0 < n <= size - 8:
                    raise ValueError("truncated file or bad header length")
                header = json.loads(f.read(n))
                meta = header.get("__metadata__") or {}
                entry = header.get(_TENSOR)
                if entry is None:
                    raise ValueError(f"no '{_TENSOR}' tensor")
                if meta.get("key") != self.key:
                    raise ValueError("written for another cache key")
                if meta.get("row") != str(row):
                    raise ValueError(f"holds row {meta.get('row')}, not {row}")
                if _ST_DTYPES.get(entry["dtype"]) != self.layout.torch_dtype or tuple(entry["shape"]) != self.layout.shape:
                    raise ValueError(f"{entry['dtype']} {entry['shape']} instead of {self.layout.dtype} {list(self.layout.shape)}")
                start, end = (int(o) for o in entry["data_offsets"])
                if 8 + n + end != size or end - start != self.layout.sample_bytes:
                    raise ValueError("data size does not match the header")
                f.seek(8 + n + start)
                data = out.view(torch.uint8).reshape(-1).numpy()
                if f.readinto(data.data) != data.nbytes:
                    raise ValueError("truncated data")
                if hashlib.sha256(data.data).hexdigest() != meta.get("sha256"):
                    raise ValueError("checksum mismatch")
            except (ValueError, KeyError, TypeError, OSError) as exc:  # json.JSONDecodeError is a ValueError
                return Corrupt(str(path), str(exc) or type(exc).__name__)
        return True

    def write(self, row: int, tensor: torch.Tensor) -> int:
        """Store `row`'s entry atomically (temporary file, then rename); returns the file size."""
        t = tensor.detach().to("cpu", self.layout.torch_dtype).contiguous()
        if tuple(t.shape) != self.layout.shape:
            raise ValueError(f"entry shape {tuple(t.shape)} != layout {self.layout.shape}")
        digest = hashlib.sha256(t.view(torch.uint8).numpy().data).hexdigest()
        path = self.path(row)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
        meta = {"key": self.key, "row": str(row), "episode": str(int(self.episodes[row])),
                "frame": str(int(self.frames[row])), "layers": ",".join(map(str, self.layout.layers)),
                "kind": self.layout.kind, "sha256": digest}
        try:
            save_file({_TENSOR: t}, str(tmp), metadata=meta)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path.stat().st_size


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
