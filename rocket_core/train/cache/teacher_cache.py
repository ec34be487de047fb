"""The cache the trainer and `rocket cache build` use: lookups, misses computed and stored, prefetch buffers."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Mapping, Sequence

import torch
import torch.nn.functional as F

from rocket_core.contracts import TeacherAdapter, TeacherModel
from rocket_core.errors import RocketError
from rocket_core.specs import TeacherSpec
from rocket_core.train.cache.crop import TeacherView, crop_grids, is_full_box
from rocket_core.train.cache.key import cache_key, data_identity, episode_frames, teacher_identity
from rocket_core.train.cache.layout import _FP16_MAX, OnAugment, Pooling, make_layout
from rocket_core.train.cache.store import CacheStore, Corrupt, _batch_buffer

if TYPE_CHECKING:
    from rocket_core.data.dataset import VLADataset
    from rocket_core.engine import AlignPlan

log = logging.getLogger("rocket.cache")

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
        pooling = Pooling(plan.vla_info.num_vision_tokens, tuple(plan.teacher_info.patch_grid),  # type: ignore[arg-type] # tuple() of a 2-tuple, or of a plugin's list
                          tuple(plan.teacher_info.image_size), a.pooling, a.teacher_pe)  # type: ignore[arg-type]  # as above
        crops = (dataset.augment and tuple(dataset.spec.augment.crop_scale) != (1.0, 1.0)) or dataset.eval_crop < 1
        kind: Literal["pooled", "grid"] = "grid" if a.pooling != "bilinear" or (crops and on_augment == "crop") else "pooled"
        pad = max(0, plan.vla_info.num_images - len(dataset.slots))
        return cls.create(root, dataset, plan.spec.teacher, plan.teacher, plan.layers.teacher, kind, dtype, pooling,
                          on_augment, order=plan.layers.teacher, pad_frames=pad)

    # the step -------------------------------------------------------------------------------------------

    def uses_cache(self, crop_box: torch.Tensor | None) -> bool:
        """False when a batch with these crops goes to the live teacher instead."""
        return not (crop_box is not None and self.on_augment == "teacher" and not bool(is_full_box(crop_box).all()))

    def targets(self, batch: Mapping[str, Any], teacher: TeacherModel | Callable[[], TeacherModel]) -> torch.Tensor:
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
        x: torch.Tensor = buf.to(device, non_blocking=True)  # (B, U, ...) in the storage dtype: the one host-to-device copy
        if self._pinned is not None and buf.data_ptr() == self._pinned.data_ptr():
            self._copied = torch.cuda.Event()
            self._copied.record()
        if self.layout.kind == "pooled":
            out = x if self.select == list(range(len(self.layout.layers))) else x[:, self.select]
            return out.transpose(0, 1).float()
        if geometric:
            x = crop_grids(x, boxes, self.view)  # type: ignore[arg-type]  # geometric implies boxes
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
            return teacher  # type: ignore[return-value]  # hasattr does not narrow the union
        if self._built is None:
            self._built = teacher()
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
