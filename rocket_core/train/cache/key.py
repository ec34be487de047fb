"""The namespace key: everything that changes a teacher's features, and nothing that does not."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rocket_core.contracts import TeacherAdapter, TeacherInfo
from rocket_core.errors import RocketError
from rocket_core.specs import TeacherSpec
from rocket_core.train.cache.layout import FORMAT, Layout, Pooling

if TYPE_CHECKING:
    from rocket_core.data.dataset import VLADataset

# --- the key ------------------------------------------------------------------------------------------


def _weights_identity(spec: TeacherSpec, adapter: type[TeacherAdapter]) -> dict[str, Any]:
    """What pins the teacher's weights beyond its name: a local file's size and mtime, or the commit of
    a cached Hub snapshot (so a moving branch such as `main` still keys on what was loaded)."""
    from rocket_core.hub import WEIGHT_SUFFIXES, local_path

    checkpoint = spec.checkpoint or (None if spec.preset else adapter.default_checkpoint)
    if checkpoint is None:
        return {"weights": "none (preset, seeded random init)"}
    path = local_path(checkpoint)
    if path is not None:
        files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.name.endswith(WEIGHT_SUFFIXES))
        return {"weights": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]}
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(checkpoint, revision=spec.revision, local_files_only=True,
                                   allow_patterns=list(adapter.weight_patterns) or None)
        return {"weights": f"{checkpoint}@{Path(folder).name}"}
    except Exception:  # not cached: the name and revision are all there is
        return {"weights": f"{checkpoint}@{spec.revision or 'default'}"}


def teacher_identity(spec: TeacherSpec, adapter: type[TeacherAdapter], info: TeacherInfo | None = None) -> dict[str, Any]:
    """The teacher part of the key: plugin, version, checkpoint/revision/preset/options, weights, shapes."""
    info = info or adapter.info(spec)
    return {
        "name": adapter.name,
        "plugin_version": adapter.version,
        "checkpoint": spec.checkpoint,
        "revision": spec.revision,
        "preset": spec.preset,
        "options": dict(sorted(spec.options.items())),
        **_weights_identity(spec, adapter),
        "info": dataclasses.asdict(info),
    }


def data_identity(dataset: VLADataset) -> dict[str, Any]:
    """The data part of the key: content fingerprint, camera map and the canonical view's size."""
    from rocket_core.data.fingerprint import dataset_fingerprint

    return {
        "fingerprint": dataset_fingerprint(dataset.reader.root),
        "cameras": list(dataset.camera_keys),
        "image_size": list(dataset.image_size),
        "view": "canonical: resized to image_size, no crop, no colour jitter",
    }


def cache_key(teacher: dict[str, Any], data: dict[str, Any], layout: Layout, pooling: Pooling | None) -> tuple[str, dict[str, Any]]:
    """(hex digest, the parts it hashes). Independent of augmentation, batch order and pair order."""
    parts = {
        "format": FORMAT,
        "teacher": teacher,
        "data": data,
        "store": {**dataclasses.asdict(layout), "pooling": dataclasses.asdict(pooling) if layout.kind == "pooled" else None},  # type: ignore[arg-type]  # pooled: set
    }
    blob = json.dumps(parts, sort_keys=True, default=list).encode()
    return hashlib.sha256(blob).hexdigest(), parts


def episode_frames(dataset: VLADataset) -> tuple[np.ndarray, np.ndarray]:
    """(episode_index, frame_index) of every dataset row: the names entries are filed under."""
    reader = dataset.reader
    episodes = np.asarray(reader.column("episode_index")).reshape(-1)
    try:
        frames = np.asarray(reader.column("frame_index")).reshape(-1)
    except RocketError:  # position within the episode's run of rows
        starts = np.r_[0, np.flatnonzero(episodes[1:] != episodes[:-1]) + 1]
        frames = np.arange(len(episodes)) - np.repeat(starts, np.diff(np.r_[starts, len(episodes)]))
    return episodes, frames
