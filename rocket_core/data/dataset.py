"""The training dataset: LeRobot frames -> per-sample dicts -> the canonical `Batch`.

Every random draw of a sample comes from a generator seeded by (seed, epoch, index), and `TrainSampler`
derives the data order from (seed, epoch), so a run resumed at sample k sees exactly the batches and
augmentations the uninterrupted run would have seen.
"""
from __future__ import annotations

import os
from functools import cached_property
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from rocket_core.contracts import Batch
from rocket_core.data.augment import augment_with_boxes, center_crop, center_crop_box, normalized_box, resize
from rocket_core.data.keymap import ALL, CAMERA_PREFIX, default_cameras, episode_groups, resolve_keys
from rocket_core.data.lerobot import LeRobotReader
from rocket_core.data.normalize import GroupNormalizer, Normalizer
from rocket_core.data.source import bundled_dataset_path
from rocket_core.data.spec import DataSpec
from rocket_core.data.stats import GroupStats, load_group_stats
from rocket_core.errors import RocketError


def _generator(*entropy: int) -> torch.Generator:
    state = np.random.SeedSequence([e % 2**64 for e in entropy]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A generator private to one sample of one epoch (independent of worker count and data order)."""
    return _generator(0, seed, epoch, index)


class VLADataset(Dataset[dict[str, Any]]):
    """Samples for a VLA: `images` (n_cam, 3, H, W), `image_masks`, normalised `state` and `actions`
    (chunk, action_dim), `action_is_pad`, `task`, `index` (the dataset row, int64), `teacher_images` when
    the spec asks for the pre-colour-jitter view, and `crop_box` (n_cam, 4) whenever images are cropped
    (training augmentation or the evaluation centre crop): `(top, left, height, width)` of each camera's
    crop as fractions of the image, `(0, 0, 1, 1)` for an empty slot. Index with an int (uses
    `self.epoch`) or an `(index, epoch)` pair; indices count the rows `spec.episodes` and `spec.max_frames`
    select (all rows by default).

    `train=False` (evaluation) draws nothing: if the spec augments, images get the deterministic centre
    crop of the mean training crop area instead, as OpenVLA-OFT evaluates.

    Keys come from `keymap.resolve_keys` (spec, preset, or the usual names). States and actions are
    normalised with the statistics of the sample's task group (`group_stats`, `group_of(episode_index)`:
    one group per LIBERO suite when the dataset mixes suites, else "all"), computed once and cached when
    the dataset lacks them (`rocket_core.data.stats`)."""

    def __init__(self, spec: DataSpec, seed: int, train: bool = True, reader: LeRobotReader | None = None,
                 progress: bool = True) -> None:
        self.spec, self.seed, self.epoch = spec, seed, 0
        self.reader = reader or LeRobotReader(spec.dataset or bundled_dataset_path(), spec.revision)
        self.keys = resolve_keys(self.reader, spec)
        if not spec.allow_nonfinite:
            self.reader.check_finite([self.keys.state, self.keys.action])
        self.slots, self.camera_keys = self._map_cameras()
        self.image_size = spec.image_size or self._common_size()
        self.augment = train and spec.augment.enabled
        self.eval_crop = sum(spec.augment.crop_scale) / 2 if spec.augment.enabled and not train else 1.0
        reader = self.reader
        self.episode_group = episode_groups([reader.episode_task(e) for e in range(reader.num_episodes)], spec.groups)
        self._groups = {reader.episode_index(e): g for e, g in enumerate(self.episode_group)}
        self._progress = progress and os.environ.get("RANK", "0") == "0"  # one bar, not one per DDP process
        self.group_stats, self.stats_source = load_group_stats(reader, self.episode_group, self._progress)
        self.state_norms = self._normalizers(self.keys.state, spec.state_norm_exclude)
        self.action_norms = self._normalizers(self.keys.action, spec.action_norm_exclude)
        self.action_offsets = np.arange(spec.chunk_size)
        self.rows = self._select_rows()

    def group_of(self, episode_index: int) -> str:
        """The task group (LIBERO suite, or "all") of the episode with this `episode_index`."""
        if episode_index not in self._groups:
            raise RocketError(f"dataset '{self.reader.root}' has no episode {episode_index}")
        return self._groups[episode_index]

    @property
    def state_norm(self) -> Normalizer:
        """The state normaliser of a one-group dataset; with several groups, the pooled one (samples use
        `state_norms[group]`; per-group statistics are in `group_stats`)."""
        return self._single(self.state_norms, self.keys.state, self.spec.state_norm_exclude)

    @property
    def action_norm(self) -> Normalizer:
        """Like `state_norm`, for the action."""
        return self._single(self.action_norms, self.keys.action, self.spec.action_norm_exclude)

    def _single(self, norms: GroupNormalizer, key: str, exclude: Sequence[int]) -> Normalizer:
        if len(norms.groups) == 1:
            return norms[norms.groups[0]]
        return Normalizer.from_stats(self._pooled_stats[ALL], key, self.spec.normalization, exclude)

    @cached_property
    def _pooled_stats(self) -> GroupStats:
        return load_group_stats(self.reader, [ALL] * self.reader.num_episodes, self._progress)[0]

    def __len__(self) -> int:
        return len(self.rows)

    def _select_rows(self) -> np.ndarray:
        """Dataset rows of `spec.episodes` (all when None), in dataset order, the first `spec.max_frames` of them."""
        reader, wanted = self.reader, self.spec.episodes
        rows = np.arange(len(reader))
        if wanted is not None:
            known = [reader.episode_index(e) for e in range(reader.num_episodes)]
            missing = sorted(set(wanted) - set(known))
            if missing:
                raise RocketError(f"dataset '{reader.root}' has no episode {', '.join(map(str, missing))}; it has "
                                  f"episodes {known[0]}..{known[-1]} ({len(known)} in all; see `rocket data inspect`)")
            rows = rows[np.isin(np.asarray(reader.column("episode_index")).reshape(-1), wanted)]
        return rows[: self.spec.max_frames]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """Sample `key` (a position in the selected rows); its `index` is the dataset row."""
        position, epoch = key if isinstance(key, tuple) else (int(key), self.epoch)
        index = int(self.rows[position])
        reader = self.reader
        images = self.canonical_images(index)
        present = torch.tensor([camera is not None for camera in self.camera_keys])
        teacher_images = None
        crop = None
        if self.eval_crop < 1:
            images[present] = center_crop(images[present], self.eval_crop)
            crop = _full_boxes(len(self.slots))
            crop[present] = normalized_box(center_crop_box(*self.image_size, self.eval_crop), *self.image_size)
        if self.augment:
            generator = sample_generator(self.seed, epoch, index)
            jittered, cropped, boxes = augment_with_boxes(images[present], self.spec.augment, generator)
            if self.spec.augment.teacher_view == "pre_color_jitter":
                teacher_images = torch.zeros_like(images)
                teacher_images[present] = cropped
            images[present] = jittered
            crop = _full_boxes(len(self.slots))
            crop[present] = boxes
        rows, pad = reader.window(index, self.action_offsets)
        group = self.episode_group[reader.episode_of(index)]
        sample: dict[str, Any] = {
            "images": images,
            "image_masks": present,
            "state": self.state_norms[group].normalize(torch.tensor(reader.column(self.keys.state)[index])),
            "actions": self.action_norms[group].normalize(torch.from_numpy(reader.column(self.keys.action)[rows])),
            "action_is_pad": torch.from_numpy(pad),
            "task": reader.task(index),
            "index": torch.tensor(index, dtype=torch.int64),
        }
        if teacher_images is not None:
            sample["teacher_images"] = teacher_images
        if crop is not None:
            sample["crop_box"] = crop
        return sample

    def canonical_images(self, index: int) -> torch.Tensor:
        """(n_cam, 3, H, W) frames of row `index` resized to `image_size`, before any crop or colour jitter
        (zeros in empty slots): the view the teacher-feature cache stores features of."""
        images = torch.zeros(len(self.slots), 3, *self.image_size)
        for slot, camera in enumerate(self.camera_keys):
            if camera is not None:
                frame = torch.from_numpy(self.reader.frames(camera, np.array([index]))[0]).permute(2, 0, 1).float() / 255
                images[slot] = resize(frame, self.image_size)
        return images

    def _map_cameras(self) -> tuple[list[str], list[str | None]]:
        available = self.reader.camera_keys
        cameras = self.keys.cameras or None
        if cameras is None:
            if not available:
                raise RocketError(f"dataset '{self.reader.root}' has no camera features; a VLA needs at least one image")
            default = default_cameras(available)
            return list(default), list(default.values())
        keys: list[str | None] = []
        for slot, name in cameras.items():
            if name is None:
                keys.append(None)
            elif name in available or CAMERA_PREFIX + name in available:
                keys.append(name if name in available else CAMERA_PREFIX + name)
            else:
                raise RocketError(
                    f"camera '{name}' (image slot '{slot}') is not in dataset '{self.reader.root}'; "
                    f"available cameras: {', '.join(available)}"
                )
        if all(k is None for k in keys):
            raise RocketError("the camera map leaves every image slot empty; map at least one slot to a dataset camera")
        return list(cameras), keys

    def _common_size(self) -> tuple[int, int]:
        sizes = {self.reader.frame_shape(k)[:2] for k in self.camera_keys if k is not None}
        if len(sizes) > 1:
            raise RocketError(f"the mapped cameras have different sizes {sorted(sizes)}; set data.image_size to resize them")
        return sizes.pop()

    def _normalizers(self, key: str, exclude: Sequence[int]) -> GroupNormalizer:
        dim = int(np.prod(self.reader.column(key).shape[1:]))
        norms = GroupNormalizer.from_group_stats(self.group_stats, key, self.spec.normalization, exclude)
        for group, norm in norms.norms.items():
            if norm.low.numel() != dim:
                raise RocketError(
                    f"the statistics of '{key}' ({self.stats_source}, group {group}) hold {norm.low.numel()} values but "
                    f"the data has {dim}; recompute the stats"
                )
        return norms


def _full_boxes(n_cam: int) -> torch.Tensor:
    return torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(n_cam, 1)


def collate_batch(samples: Sequence[dict[str, Any]]) -> Batch:
    """Stack per-sample dicts into the canonical `Batch`."""
    batch: dict[str, Any] = {key: torch.stack([s[key] for s in samples]) for key in samples[0] if key != "task"}
    batch["task"] = [s["task"] for s in samples]
    return batch  # type: ignore[return-value]  # built key by key: the Batch keys


def to_device(batch: Batch, device: torch.device | str) -> Batch:
    """Move a batch's tensors (non-blocking, for pinned memory) and keep the rest (task strings)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v  # type: ignore[return-value]  # same keys
            for k, v in batch.items()}


class TrainSampler(Sampler[tuple[int, int]]):
    """Endless `(index, epoch)` stream: a fresh (seed, epoch) permutation each epoch, starting at sample `start`.

    Resume after `step` steps of batch size B with `start = step * B`.
    """

    def __init__(self, num_samples: int, seed: int, start: int = 0) -> None:
        self.num_samples, self.seed, self.start = num_samples, seed, start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, position = divmod(self.start, self.num_samples)
        while True:
            order = torch.randperm(self.num_samples, generator=_generator(1, self.seed, epoch))
            for index in order[position:].tolist():
                yield index, epoch
            epoch, position = epoch + 1, 0

