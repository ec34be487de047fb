"""A content fingerprint of a LeRobot dataset, for caches (e.g. teacher features) keyed on the data."""
from __future__ import annotations

import hashlib
from pathlib import Path

from rocket_core.data.lerobot_files import resolve_dataset_root

_BLOCK = 1 << 20  # bytes hashed at the head, middle and tail of each data/video file


def _sampled_digest(path: Path) -> bytes:
    """Hash of the head, middle and tail blocks: parquet footers hold per-column statistics and every mp4
    has its index at one end, so edits show up there without reading gigabytes of frames."""
    size = path.stat().st_size
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as f:
        for offset in sorted({0, max(0, size // 2 - _BLOCK // 2), max(0, size - _BLOCK)}):
            f.seek(offset)
            digest.update(f.read(_BLOCK))
    return digest.digest()


def dataset_fingerprint(source: str | Path, revision: str | None = None) -> str:
    """Hex digest over meta/ (every file in full) and each data/ and videos/ file's path, size and sampled content.

    Changes to metadata, stats, episode boundaries or any data file's size or ends change the fingerprint;
    it does not depend on where the dataset lives.
    """
    root = resolve_dataset_root(source, revision)
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        top = rel.split("/", 1)[0]
        if top not in ("meta", "data", "videos"):
            continue
        digest.update(rel.encode() + b"\0" + str(path.stat().st_size).encode() + b"\0")
        digest.update(path.read_bytes() if top == "meta" else _sampled_digest(path))
    return digest.hexdigest()
