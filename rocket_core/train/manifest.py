"""Checkpoint manifests and tensor-file checks: a folder is trusted only when every byte is accounted for.

`manifest.json` lists every file of a checkpoint folder with its size and sha256, the tensors of every
tensor file (name, shape, dtype, and for safetensors the sha256 of each tensor's bytes, so a flipped byte
is reported with the tensor it hit) and the step. `verify_folder` checks a folder against it.

Folders rocket did not write (e.g. OpenVLA-OFT checkpoints) have no manifest: `check_tensors` checks such
a file by tensor names and shapes alone. Every failure is one `RocketError` line naming the file and key.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from rocket_core.errors import RocketError

MANIFEST = "manifest.json"
FORMAT = 1
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
                "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}
_MAX_HEADER = 100 * 2**20  # safetensors' own limit
_CHUNK = 2**20
TensorSpecs = dict[str, dict[str, Any]]  # name -> {"shape": [...], "dtype": str}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _corrupt(path: Path, why: str) -> RocketError:
    return RocketError(f"'{path}' is not a readable tensor file ({why}); restore it or use another checkpoint")


def safetensors_header(path: Path) -> tuple[int, TensorSpecs]:
    """(data start, name -> {shape, dtype, data_offsets}) read and checked without loading a tensor.

    Catches zero-byte, truncated and header-corrupt files before safetensors (or torch) sees them.
    """
    size = path.stat().st_size
    if size < 8:
        raise _corrupt(path, f"{size} bytes: empty or truncated")
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > min(size - 8, _MAX_HEADER):
            raise _corrupt(path, f"header length {length} exceeds the file's {size} bytes: truncated or corrupt")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, ValueError):
            raise _corrupt(path, "header is not JSON: corrupt") from None
    if not isinstance(header, dict):
        raise _corrupt(path, "header is not a mapping")
    header.pop("__metadata__", None)
    data = size - 8 - length
    for name, entry in header.items():
        try:
            dtype, shape, (lo, hi) = entry["dtype"], entry["shape"], entry["data_offsets"]
            numel = math.prod(shape)
            ok = (dtype in _DTYPE_BYTES and all(isinstance(d, int) and d >= 0 for d in shape)
                  and 0 <= lo <= hi <= data and hi - lo == numel * _DTYPE_BYTES[dtype])
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise _corrupt(path, f"tensor '{name}' has a bad header entry or lies past the end: truncated or corrupt")
    return 8 + length, header


def _flatten(obj: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """(dotted key, tensor) for every tensor in nested dicts/lists (optimizer and torch state dicts)."""
    import torch

    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _flatten(v, f"{prefix}.{i}" if prefix else str(i))


def torch_specs(obj: Any) -> TensorSpecs:
    """name -> {shape, dtype} of every tensor in a (nested) torch object, e.g. an optimizer state."""
    return {k: {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")} for k, t in _flatten(obj)}


def load_torch_file(path: Path) -> Any:
    """`torch.load(weights_only=True)` with one-line errors (empty, truncated, pickled code...)."""
    import torch

    if path.stat().st_size == 0:
        raise _corrupt(path, "0 bytes: empty")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - zip, pickle and unpickler errors all mean "not loadable"
        raise _corrupt(path, f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}") from None


def tensor_specs(path: Path) -> TensorSpecs:
    """name -> {shape, dtype} of a .safetensors file (header only) or a torch .pt/.bin/.pth file."""
    if not path.is_file():
        raise RocketError(f"'{path}' does not exist; the checkpoint is incomplete")
    if path.suffix == ".safetensors":
        return {k: {"shape": v["shape"], "dtype": v["dtype"]} for k, v in safetensors_header(path)[1].items()}
    return torch_specs(load_torch_file(path))


def check_tensors(path: Path, expected: Mapping[str, Sequence[int]], *, exact: bool = True) -> None:
    """Every expected tensor present with its shape, and (when `exact`) no other one; for foreign folders.

    A broadcastable wrong shape (e.g. (1, 8) for (4, 8)) is refused like any other: shapes must be equal.
    """
    got = tensor_specs(Path(path))
    mismatch(path, {k: list(v) for k, v in expected.items()}, {k: v["shape"] for k, v in got.items()}, exact)


def mismatch(path: Path | str, expected: Mapping[str, list[int]], got: Mapping[str, list[int]],
             exact: bool = True) -> None:
    """One line for the first missing, reshaped or (when `exact`) unexpected tensor of `path`."""
    for key, shape in expected.items():
        if key not in got:
            raise RocketError(f"'{path}' lacks tensor '{key}' ({len(expected)} expected, {len(got)} present); "
                              "the file is incomplete or from another model")
        if list(got[key]) != list(shape):
            raise RocketError(f"'{path}' tensor '{key}' has shape {list(got[key])}, expected {list(shape)}; "
                              "the file is from another model or configuration")
    extra = [k for k in got if k not in expected]
    if exact and extra:
        raise RocketError(f"'{path}' holds unexpected tensor '{extra[0]}' ({len(extra)} unexpected); "
                          "the file is from another model or configuration")


def _tensor_hashes(path: Path) -> TensorSpecs:
    start, header = safetensors_header(path)
    out: TensorSpecs = {}
    with open(path, "rb") as f:
        for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            lo, hi = e["data_offsets"]
            f.seek(start + lo)
            out[name] = {"shape": e["shape"], "dtype": e["dtype"], "sha256": hashlib.sha256(f.read(hi - lo)).hexdigest()}
    return out


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(folder: Path, step: int, torch_files: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Hash every file in `folder` into `manifest.json` (fsynced with the files, so a crash cannot leave a
    manifest that describes bytes not yet on disk). `torch_files`: file name -> the object saved in it."""
    files: dict[str, Any] = {}
    for path in sorted(p for p in folder.iterdir() if p.name != MANIFEST):
        if not path.is_file():
            raise RocketError(f"'{path}' is not a file; a checkpoint folder holds files only")
        _fsync(path)
        entry: dict[str, Any] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
        if path.suffix == ".safetensors":
            entry["tensors"] = _tensor_hashes(path)
        elif torch_files and path.name in torch_files:
            entry["tensors"] = torch_specs(torch_files[path.name])
        files[path.name] = entry
    doc = {"format": FORMAT, "step": step, "files": files}
    (folder / MANIFEST).write_text(json.dumps(doc, indent=1))
    _fsync(folder / MANIFEST)
    _fsync(folder)
    return doc


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise RocketError(f"checkpoint '{folder}' has no {MANIFEST}: it was not completely written or not by rocket; "
                          "resume from another checkpoint")
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
        step, files = doc["step"], doc["files"]
        ok = (doc.get("format") == FORMAT and type(step) is int and step >= 0 and isinstance(files, dict)
              and all(isinstance(e, dict) and isinstance(e.get("sha256"), str) and isinstance(e.get("bytes"), int)
                      for e in files.values()))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise RocketError(f"'{path}' is corrupt (expected format {FORMAT} with a step >= 0 and one sha256 per file); "
                          "resume from another checkpoint")
    return doc


def _which_tensor(path: Path, listed: TensorSpecs) -> str:
    """The first tensor (or the header) of a safetensors file that differs from its manifest entry."""
    got = _tensor_hashes(path)
    mismatch(path, {k: v["shape"] for k, v in listed.items()}, {k: v["shape"] for k, v in got.items()})
    for name, entry in listed.items():
        if got[name]["dtype"] != entry["dtype"]:
            return f"tensor '{name}' is {got[name]['dtype']}, the manifest says {entry['dtype']}"
        if got[name]["sha256"] != entry.get("sha256"):
            return f"tensor '{name}' fails its checksum"
    return "its header fails the checksum"


def verify_folder(folder: Path) -> dict[str, Any]:
    """Check every file against `manifest.json` (size, sha256, tensor names/shapes/dtypes); the manifest."""
    doc = read_manifest(folder)
    for name, entry in doc["files"].items():
        path = folder / name
        if not path.is_file():
            raise RocketError(f"checkpoint '{folder}' lacks {name}, which its manifest lists; "
                              "resume from another checkpoint")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise RocketError(f"'{path}' has {size} bytes, its manifest says {entry['bytes']}: truncated or altered; "
                              "resume from another checkpoint")
        if sha256_file(path) != entry["sha256"]:
            detail = _which_tensor(path, entry["tensors"]) if path.suffix == ".safetensors" and "tensors" in entry \
                else "its checksum does not match the manifest"
            raise RocketError(f"'{path}': {detail}; the file was altered or corrupted, resume from another checkpoint")
    return doc


def check_listed(folder: Path, doc: Mapping[str, Any], names: Iterable[str]) -> None:
    """Files rocket would read must be in the manifest: an unlisted one was not verified."""
    for name in names:
        if (folder / name).exists() and name not in doc["files"]:
            raise RocketError(f"'{folder / name}' is not in the checkpoint's {MANIFEST}: it was added afterwards; "
                              "remove it or use another checkpoint")
