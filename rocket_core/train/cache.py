"""Teacher-feature cache: the frozen teacher's targets, computed once per dataset row and stored on disk.

Keyed by content, never by pixels: one cache namespace per (dataset fingerprint, camera map, image size,
teacher name + plugin version + checkpoint/revision/preset/options + shape facts, stored layer set, store
kind and pooling, storage dtype); inside it one entry per dataset row, filed under its episode and frame
(`<root>/<teacher>-<key16>/ep<episode>/<frame>.safetensors`). Every entry holds the features of the
row's *canonical view* (all cameras, resized, before any crop or colour jitter), so the key does not
depend on augmentation. VGGT attends across the cameras of a sample, so an entry covers the whole
camera set, not one camera.

Two store kinds (docs/cache.md):
  pooled  (L, N, C) pooled targets of the selected layers: what the alignment head consumes, smallest and
          cheapest at hit time (one read, one stack, one host-to-device copy). Used without geometric
          augmentation.
  grid    (L, S, P, C) raw patch grids: a batch's crop boxes are applied to the cached grid (bilinear
          resampling of the box, an approximation of running the teacher on the cropped image), then the
          grid is pooled. Needed for random crops (or random pooling).

An entry is a safetensors file with one tensor and metadata holding the namespace key, its row and the
sha256 of the tensor bytes; it is written to a temporary name and renamed into place. A read checks the
header, shape, dtype, key, row and checksum; an entry failing any check is reported (a warning and the
`corrupt` counter), recomputed and rewritten, never used.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.utils.data import get_worker_info

from rocket_core.align.head import AlignmentHead
from rocket_core.align.pooling import pooled_grid
from rocket_core.contracts import TeacherAdapter, TeacherInfo, TeacherModel
from rocket_core.errors import RocketError
from rocket_core.specs import TeacherSpec

if TYPE_CHECKING:
    from rocket_core.data.dataset import VLADataset
    from rocket_core.engine import AlignPlan

FORMAT = 1
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_ST_DTYPES: dict[str, torch.dtype] = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
_TENSOR = "features"
_FP16_MAX = 65504.0
HEADER_BYTES = 512  # upper bound of an entry's safetensors header (JSON with key, row, sha256, shape)
OnAugment = Literal["crop", "teacher"]
log = logging.getLogger("rocket.cache")


# --- what is stored -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pooling:
    """The alignment head's pooling settings; calling it is `AlignmentHead.pool_targets` with them."""

    num_vision_tokens: int
    teacher_grid: tuple[int, int]
    teacher_image_hw: tuple[int, int]
    pooling: str = "bilinear"
    teacher_pe: bool = True

    def __call__(self, stacked: torch.Tensor) -> torch.Tensor:
        """(L, B, S, P, C) -> (L, B, N, C), exactly as the head pools live teacher features."""
        return AlignmentHead.pool_targets(self, stacked)  # type: ignore[arg-type]

    @classmethod
    def of_head(cls, head: AlignmentHead) -> Pooling:
        return cls(head.num_vision_tokens, tuple(head.teacher_grid), tuple(head.teacher_image_hw),  # type: ignore[arg-type]
                   head.pooling, head.teacher_pe)


@dataclass(frozen=True)
class Layout:
    """Shape and dtype of one entry."""

    kind: Literal["pooled", "grid"]
    layers: tuple[int, ...]  # stored teacher layers: sorted, unique
    frames: int  # cameras per sample (S)
    grid: tuple[int, int]  # the teacher's patch grid (rows, cols)
    dim: int  # feature width C
    dtype: str  # fp32 | fp16 | bf16
    tokens: int = 0  # pooled tokens per sample (N), kind "pooled" only
    pad_frames: int = 0  # kind "pooled": VLA camera slots beyond the dataset's, pooled as zero features

    @property
    def shape(self) -> tuple[int, ...]:
        if self.kind == "pooled":
            return (len(self.layers), self.tokens, self.dim)
        return (len(self.layers), self.frames, self.grid[0] * self.grid[1], self.dim)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def sample_bytes(self) -> int:
        """Bytes of one entry's tensor (the file adds a header of about 0.5 kB)."""
        return math.prod(self.shape) * self.torch_dtype.itemsize


def make_layout(kind: str, layers: Iterable[int], frames: int, info: TeacherInfo, dtype: str,
                pooling: Pooling | None = None, pad_frames: int = 0) -> Layout:
    """`pad_frames`: camera slots the VLA has beyond the dataset's; like the trainer, their teacher features
    are zeros, pooled together with the real frames (they only change pooled entries)."""
    if dtype not in DTYPES:
        raise RocketError(f"unknown cache dtype '{dtype}'; use one of: {', '.join(DTYPES)}")
    stored = tuple(sorted({int(k) for k in layers}))
    tokens = 0
    if kind == "pooled":
        if pooling is None or pooling.pooling != "bilinear":
            raise RocketError("a pooled teacher cache needs bilinear pooling; random pooling draws anew every "
                              "step, so cache the raw grids instead (kind 'grid')")
        total = frames + pad_frames
        oh, ow = pooled_grid(total, tuple(info.patch_grid), pooling.num_vision_tokens)  # type: ignore[arg-type]
        tokens = total * oh * ow
    else:
        pad_frames = 0  # grids hold the real frames only; padding happens when they are pooled
    return Layout(kind, stored, frames, tuple(info.patch_grid), info.feature_dim, dtype, tokens,  # type: ignore[arg-type]
                  pad_frames)


def default_cache_dir() -> Path:
    """`$ROCKET_CACHE_DIR`, else `~/.cache/rocket/teacher-features`."""
    env = os.environ.get("ROCKET_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "rocket" / "teacher-features"


def format_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


# --- the key ------------------------------------------------------------------------------------------


def _weights_identity(spec: TeacherSpec, adapter: type[TeacherAdapter]) -> dict[str, Any]:
    """What pins the teacher's weights beyond its name: a local file's size and mtime, or the commit of
    a cached Hub snapshot (so a moving branch such as `main` still keys on what was loaded)."""
    from rocket_core.hub import WEIGHT_SUFFIXES, local_path

    checkpoint = spec.checkpoint or (None if spec.preset else getattr(adapter, "default_checkpoint", None))
    if checkpoint is None:
        return {"weights": "none (preset, seeded random init)"}
    path = local_path(checkpoint)
    if path is not None:
        files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.name.endswith(WEIGHT_SUFFIXES))
        return {"weights": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]}
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(checkpoint, revision=spec.revision, local_files_only=True,
                                   allow_patterns=list(getattr(adapter, "weight_patterns", ())) or None)
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
        "store": {**dataclasses.asdict(layout), "pooling": dataclasses.asdict(pooling) if layout.kind == "pooled" else None},
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


# --- crop on the cached grid --------------------------------------------------------------------------


@dataclass(frozen=True)
class TeacherView:
    """Where a dataset image lands on the teacher's patch grid (`rocket_core.vision.resize_for_teacher`).

    Per axis, a normalised image coordinate v maps to teacher pixel `v * new + offset`.
    """

    image_hw: tuple[int, int]
    size: int
    patch: int
    mode: str = "crop"

    @classmethod
    def of(cls, image_hw: Sequence[int], info: TeacherInfo, spec: TeacherSpec) -> TeacherView:
        size = info.image_size[1]
        return cls((int(image_hw[0]), int(image_hw[1])), size, size // info.patch_grid[1],
                   str(spec.options.get("resize", "crop")))

    def axes(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """((new_h, offset_h, rows), (new_w, offset_w, cols)) of the teacher input."""
        h, w = self.image_hw
        size, patch = self.size, self.patch

        def round_to(value: float) -> int:
            return max(patch, round(value / patch) * patch)

        if self.mode == "crop" or w >= h:
            new_w, new_h = size, round_to(h * size / w)
        else:
            new_w, new_h = round_to(w * size / h), size
        if self.mode == "crop":
            top = (new_h - size) // 2 if new_h > size else 0
            return (new_h, -top, min(new_h, size) // patch), (new_w, 0, new_w // patch)
        dh, dw = size - new_h, size - new_w
        return (new_h, dh // 2, size // patch), (new_w, dw // 2, size // patch)


def is_full_box(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) -> (...) bool: the box is the whole image."""
    full = torch.tensor([0.0, 0.0, 1.0, 1.0], device=boxes.device, dtype=boxes.dtype)
    return (boxes == full).all(-1)


def crop_grids(grids: torch.Tensor, boxes: torch.Tensor, view: TeacherView) -> torch.Tensor:
    """(B, L, S, P, C) cached canonical-view grids + (B, S, 4) crop boxes -> the grids of the cropped views.

    The approximation: the teacher's features of a crop (resized back to full size) are taken to be the
    canonical view's features inside the box, bilinearly resampled to the full grid (patch centres of the
    cropped view mapped back through the box; edges clamp). Exact for full boxes, which are passed through
    untouched; for a 90 % crop on VGGT's 37x37 grid each output patch lies within ~0.5 patch of the source
    patches it interpolates, but the teacher never saw the crop, so its context (and global attention) is
    that of the full frame. Returns float32.
    """
    b, layers, frames, p, c = grids.shape
    (new_h, off_h, rows), (new_w, off_w, cols) = view.axes()
    if rows * cols != p:
        raise RocketError(f"cached grids have {p} patches but the teacher view gives {rows}x{cols}; rebuild the cache")
    grids = grids.float()
    boxes = boxes.to(grids.device, torch.float32).reshape(b * frames, 4)
    todo = (~is_full_box(boxes)).nonzero().flatten()
    if todo.numel() == 0:
        return grids
    x = grids.permute(0, 2, 1, 4, 3).reshape(b * frames, layers * c, rows, cols)  # a copy
    sel = boxes[todo]
    patch = view.patch
    i = (torch.arange(rows, device=grids.device, dtype=torch.float32) + 0.5) * patch
    j = (torch.arange(cols, device=grids.device, dtype=torch.float32) + 0.5) * patch
    # output teacher pixel p -> normalised coordinate in the crop -> in the full image -> cached teacher pixel
    ys = sel[:, 0:1] * new_h + sel[:, 2:3] * (i[None] - off_h) + off_h  # (n, rows)
    xs = sel[:, 1:2] * new_w + sel[:, 3:4] * (j[None] - off_w) + off_w  # (n, cols)
    gy = 2 * ys / (rows * patch) - 1
    gx = 2 * xs / (cols * patch) - 1
    sample_at = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), -1)  # (n, rows, cols, 2)
    x[todo] = F.grid_sample(x[todo], sample_at, mode="bilinear", padding_mode="border", align_corners=False)
    return x.reshape(b, frames, layers, c, p).permute(0, 2, 1, 4, 3)


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
        return out if status is True else status  # type: ignore[return-value]

    def read_into(self, row: int, out: torch.Tensor) -> bool | Corrupt | None:
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
                if f.readinto(memoryview(data)) != data.nbytes:
                    raise ValueError("truncated data")
                if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
                    raise ValueError("checksum mismatch")
            except (ValueError, KeyError, TypeError, OSError) as exc:  # json.JSONDecodeError is a ValueError
                return Corrupt(str(path), str(exc) or type(exc).__name__)
        return True

    def write(self, row: int, tensor: torch.Tensor) -> int:
        """Store `row`'s entry atomically (temporary file, then rename); returns the file size."""
        t = tensor.detach().to("cpu", self.layout.torch_dtype).contiguous()
        if tuple(t.shape) != self.layout.shape:
            raise ValueError(f"entry shape {tuple(t.shape)} != layout {self.layout.shape}")
        digest = hashlib.sha256(t.view(torch.uint8).numpy()).hexdigest()
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


# --- the cache the trainer uses -----------------------------------------------------------------------


@dataclass
class CacheStats:
    hits: int = 0  # samples served from disk
    misses: int = 0  # samples computed by the teacher and stored (fill on the fly)
    corrupt: int = 0  # entries that failed verification (recomputed and rewritten; counted in misses too)
    bypassed: int = 0  # samples sent to the live teacher (geometric augmentation with on_augment="teacher")
    written_bytes: int = 0
    corrupt_paths: list[str] = field(default_factory=list)

    def as_record(self) -> dict[str, int]:
        return {f"cache/{k}": getattr(self, k) for k in ("hits", "misses", "corrupt", "bypassed")}


class TeacherCache:
    """Teacher targets for a batch: from disk where stored, else from the teacher (then stored).

    `targets(batch, teacher)` returns what the trainer's live path returns, `(L, B, N, C)` float32 targets
    in pair order, using `batch["index"]` (rows) and `batch["crop_box"]`; it calls the teacher only for
    the rows that are missing or corrupt. With `collate` as the DataLoader's collate_fn, the workers read
    and verify the entries ahead of the step.
    """

    def __init__(self, store: CacheStore, order: Sequence[int], view: TeacherView, pooling: Pooling | None,
                 canonical_images: Callable[[int], torch.Tensor] | None = None, on_augment: OnAugment = "crop",
                 pad_frames: int = 0) -> None:
        if on_augment not in ("crop", "teacher"):
            raise RocketError(f"unknown cache on_augment '{on_augment}'; use 'crop' or 'teacher'")
        layout = store.layout
        missing = sorted(set(order) - set(layout.layers))
        if missing:
            raise RocketError(f"teacher layers {missing} are not in the cache (it stores {list(layout.layers)})")
        if layout.kind == "pooled" and pooling is None:
            raise RocketError("a pooled cache needs the head's pooling settings")
        self.store, self.layout, self.view, self.pooling = store, layout, view, pooling
        self.order = list(order)
        self.select = [layout.layers.index(k) for k in self.order]
        self.canonical_images = canonical_images
        self.on_augment = on_augment
        self.pad_frames = pad_frames  # zero-feature frames appended before pooling (VLA slots the data leaves empty)
        self.stats = CacheStats()
        self._dir_ready = False
        self._built: TeacherModel | None = None
        self._pinned: torch.Tensor | None = None
        self._copied: torch.cuda.Event | None = None

    # construction ----------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        root: str | Path,
        dataset: VLADataset,
        teacher_spec: TeacherSpec,
        adapter: type[TeacherAdapter],
        layers: Sequence[int],
        kind: Literal["pooled", "grid"],
        dtype: str = "fp16",
        pooling: Pooling | None = None,
        on_augment: OnAugment = "crop",
        order: Sequence[int] | None = None,
        pad_frames: int = 0,
    ) -> TeacherCache:
        """The cache of `layers` (resolved, >= 0) of one teacher over one dataset's canonical view.

        `pad_frames`: VLA camera slots beyond the dataset's cameras (zero teacher features, as the trainer)."""
        info = adapter.info(teacher_spec)
        layout = make_layout(kind, layers, len(dataset.slots), info, dtype, pooling, pad_frames)
        key, parts = cache_key(teacher_identity(teacher_spec, adapter, info), data_identity(dataset), layout, pooling)
        episodes, frames = episode_frames(dataset)
        store = CacheStore(Path(root), key, parts, layout, adapter.name, episodes, frames)
        view = TeacherView.of(dataset.image_size, info, teacher_spec)
        return cls(store, list(order if order is not None else layout.layers), view, pooling,
                   dataset.canonical_images, on_augment, pad_frames)

    @classmethod
    def for_run(cls, plan: AlignPlan, dataset: VLADataset, root: str | Path, dtype: str = "fp16",
                on_augment: OnAugment = "crop") -> TeacherCache:
        """The cache a `rocket align` run looks up: the plan's teacher, layers and head pooling.

        Pooled entries unless the run needs grids: random pooling, or random crops handled on the grid.
        """
        a = plan.spec.alignment
        pooling = Pooling(plan.vla_info.num_vision_tokens, tuple(plan.teacher_info.patch_grid),  # type: ignore[arg-type]
                          tuple(plan.teacher_info.image_size), a.pooling, a.teacher_pe)  # type: ignore[arg-type]
        crops = (dataset.augment and tuple(dataset.spec.augment.crop_scale) != (1.0, 1.0)) or dataset.eval_crop < 1
        kind: Literal["pooled", "grid"] = "grid" if a.pooling != "bilinear" or (crops and on_augment == "crop") else "pooled"
        pad = max(0, plan.vla_info.num_images - len(dataset.slots))
        return cls.create(root, dataset, plan.spec.teacher, plan.teacher, plan.layers.teacher, kind, dtype, pooling,
                          on_augment, order=plan.layers.teacher, pad_frames=pad)

    # the step -------------------------------------------------------------------------------------------

    def uses_cache(self, crop_box: torch.Tensor | None) -> bool:
        """False when a batch with these crops goes to the live teacher instead."""
        return not (crop_box is not None and self.on_augment == "teacher" and not bool(is_full_box(crop_box).all()))

    def targets(self, batch: dict[str, Any], teacher: TeacherModel | Callable[[], TeacherModel]) -> torch.Tensor:
        """(L, B, N, C) float32 targets for `batch` (pair order), computing and storing only the misses.

        `teacher` may be a zero-argument factory: it is called (once) only when a row is missing, so a
        fully cached run never builds the teacher (VGGT-1B: ~5 GB of weights not loaded).
        """
        images = batch.get("teacher_images", batch["images"])
        device = images.device
        boxes = batch.get("crop_box")
        geometric = boxes is not None and not bool(is_full_box(boxes).all())
        if geometric and self.on_augment == "teacher":
            self.stats.bypassed += images.shape[0]
            teacher = self._teacher(teacher)
            feats = teacher.extract(images, sorted(set(self.order)))
            return self._pool(torch.stack([feats[k] for k in self.order]).float())
        if geometric and self.layout.kind == "pooled":
            raise RocketError("this batch is randomly cropped but the teacher cache holds pooled targets; "
                              "use a grid cache (on_augment='crop') or on_augment='teacher'")
        if "index" not in batch:
            raise RocketError("the teacher cache needs the dataset row of each sample (batch['index']); "
                              "use rocket_core.data.VLADataset")
        rows = [int(r) for r in batch["index"].tolist()]
        if "teacher_cached" in batch:  # read by `collate` (in a DataLoader worker)
            buf, status = batch["teacher_cached"], list(batch["teacher_cache_status"])
        else:
            buf = self._host_buffer(len(rows), device)
            status = [self.store.read_into(r, buf[j]) for j, r in enumerate(rows)]
        missing = []
        for j, state in enumerate(status):
            if isinstance(state, Corrupt):
                self._report(state)
            if state is not True:
                missing.append(j)
        self.stats.hits += len(rows) - len(missing)
        self.stats.misses += len(missing)
        if missing:
            if "crop_box" in batch:  # augmented batch (colour jitter at least): the canonical view is not in it
                if self.canonical_images is None:
                    raise RocketError("the teacher cache cannot fill misses of an augmented batch without the dataset")
                subset = torch.stack([self.canonical_images(rows[j]) for j in missing])
            else:
                subset = images[missing]
            computed = self.compute(subset, self._teacher(teacher))
            self._ready()
            for k, j in enumerate(missing):
                self.stats.written_bytes += self.store.write(rows[j], computed[k])
            buf[missing] = computed.to(buf.device)
        x = buf.to(device, non_blocking=True)  # (B, U, ...) in the storage dtype: the one host-to-device copy
        if self._pinned is not None and buf.data_ptr() == self._pinned.data_ptr():
            self._copied = torch.cuda.Event()
            self._copied.record()
        if self.layout.kind == "pooled":
            out = x if self.select == list(range(len(self.layout.layers))) else x[:, self.select]
            return out.transpose(0, 1).float()
        if geometric:
            x = crop_grids(x, boxes, self.view)  # type: ignore[arg-type]
        return self._pool(x[:, self.select].transpose(0, 1).float())

    def _host_buffer(self, batch: int, device: torch.device) -> torch.Tensor:
        """Where a batch's entries are read to: fresh on the CPU; on CUDA one pinned buffer, reused once the
        previous step's copy has finished."""
        shape, dtype = (batch, *self.layout.shape), self.layout.torch_dtype
        if device.type != "cuda":
            return torch.empty(shape, dtype=dtype)
        if self._pinned is None or self._pinned.shape[0] < batch:
            self._pinned, self._copied = torch.empty(shape, dtype=dtype, pin_memory=True), None
        if self._copied is not None:
            self._copied.synchronize()
        return self._pinned[:batch]

    def compute(self, images: torch.Tensor, teacher: TeacherModel) -> torch.Tensor:
        """(b, S, 3, H, W) canonical images -> (b, *layout.shape) entries in the storage dtype, on the CPU."""
        feats = teacher.extract(images, list(self.layout.layers))
        stacked = torch.stack([feats[k] for k in self.layout.layers]).float()  # (U, b, S, P, C)
        if self.layout.kind == "pooled":
            stacked = self._pool(stacked)
        out = stacked.transpose(0, 1)
        if self.layout.dtype == "fp16":
            peak = float(out.abs().max())
            if not peak <= _FP16_MAX:
                raise RocketError(f"teacher features reach |x| = {peak:.4g}, beyond float16's range; "
                                  "store the cache as bf16 or fp32")
        return out.to(self.layout.torch_dtype).cpu()

    def _teacher(self, teacher: TeacherModel | Callable[[], TeacherModel]) -> TeacherModel:
        if hasattr(teacher, "extract"):
            return teacher  # type: ignore[return-value]
        if self._built is None:
            self._built = teacher()  # type: ignore[operator]
        return self._built

    def _ready(self) -> None:
        if not self._dir_ready:
            self.store.init_dir()
            self._dir_ready = True

    def _pool(self, stacked: torch.Tensor) -> torch.Tensor:
        """(L, B, S, P, C) -> (L, B, N, C) with the head's pooling, after appending the zero frames."""
        if self.pooling is None:
            raise RocketError("this cache has no pooling settings; build it with TeacherCache.for_run")
        if self.pad_frames:
            stacked = F.pad(stacked, (0, 0, 0, 0, 0, self.pad_frames))
        return self.pooling(stacked)

    def _report(self, entry: Corrupt) -> None:
        self.stats.corrupt += 1
        self.stats.corrupt_paths.append(entry.path)
        log.warning("teacher cache: %s is corrupt (%s); recomputing and rewriting it", entry.path, entry.reason)

    # prefetch in DataLoader workers ------------------------------------------------------------------

    def collate(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """`collate_batch` that also reads the batch's entries (in the loader's workers, ahead of the step)
        straight into one (B, ...) tensor: `teacher_cached`, with `teacher_cache_status` per sample
        (True, None = missing, or Corrupt). `targets` then only copies it to the device."""
        from rocket_core.data.dataset import collate_batch

        batch: dict[str, Any] = dict(collate_batch(samples))
        boxes = batch.get("crop_box")
        if "index" not in batch or not self.uses_cache(boxes):
            return batch
        rows = batch["index"].tolist()
        buf = _batch_buffer((len(rows), *self.layout.shape), self.layout.torch_dtype)
        batch["teacher_cache_status"] = [self.store.read_into(int(r), buf[j]) for j, r in enumerate(rows)]
        batch["teacher_cached"] = buf
        return batch

    # building ahead of training ----------------------------------------------------------------------

    def pending(self, rows: Iterable[int]) -> list[int]:
        """Rows without an entry file (not verified)."""
        return [r for r in rows if not self.store.exists(r)]

    def build(self, teacher: TeacherModel, rows: Sequence[int], batch_size: int = 8,
              progress: Callable[[int], None] | None = None) -> CacheStats:
        """Fill the entries of `rows` (verifying existing ones, recomputing corrupt ones)."""
        if self.canonical_images is None:
            raise RocketError("building a teacher cache needs the dataset")
        self._ready()
        for start in range(0, len(rows), batch_size):
            chunk = list(rows[start : start + batch_size])
            todo = []
            for r in chunk:
                entry = self.store.load(r)
                if isinstance(entry, Corrupt):
                    self._report(entry)
                if isinstance(entry, torch.Tensor):
                    self.stats.hits += 1
                else:
                    todo.append(r)
            if todo:
                computed = self.compute(torch.stack([self.canonical_images(r) for r in todo]), teacher)
                for k, r in enumerate(todo):
                    self.stats.written_bytes += self.store.write(r, computed[k])
                self.stats.misses += len(todo)
            if progress is not None:
                progress(len(chunk))
        return self.stats


def check_disk(root: Path, needed: int, dtype: str = "fp32") -> tuple[int, int]:
    """(needed, free) bytes; RocketError when `needed` exceeds the free space where `root` is (or would be)."""
    probe = Path(root)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        smaller = "use --dtype fp16/bf16, " if dtype == "fp32" else ""  # only suggest what was not given already
        raise RocketError(
            f"the teacher cache needs {format_bytes(needed)} but only {format_bytes(free)} is free at '{probe}'; "
            f"store fewer layers, {smaller}pool (--tokens / --config), or pick another --cache-dir"
        )
    return needed, free
