"""The teacher-feature cache: hits never call the teacher, fill-on-the-fly equals live targets, corrupt
entries are caught, keys follow content, crop on the cached grid, and the samples that feed it."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Sequence

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import tests.toy_plugins as toy
from rocket_core.contracts import TeacherAdapter, TeacherInfo, TeacherModel
from rocket_core.data import AugmentSpec, DataSpec, TrainSampler, VLADataset, bundled_dataset_path, collate_batch
from rocket_core.data.augment import resize
from rocket_core.errors import RocketError
from rocket_core.specs import TeacherSpec
from rocket_core.train.cache import (
    CacheStore,
    Corrupt,
    Pooling,
    TeacherCache,
    TeacherView,
    crop_grids,
)

TOY = TeacherSpec(name="toy-teacher")
TOY_INFO = toy.ToyTeacher.info(TOY)
POOL = Pooling(32, TOY_INFO.patch_grid, TOY_INFO.image_size)  # the toy VLA's 32 vision tokens
ROWS = 12
NO_AUG = DataSpec(augment=AugmentSpec(enabled=False))
CROPS = DataSpec(augment=AugmentSpec(teacher_view="pre_color_jitter"))


class FirstRows(VLADataset):
    """The bundled dataset cut to its first rows, so an epoch is quick."""

    def __len__(self) -> int:
        return ROWS


class RaisingTeacher:
    """A teacher that must never be called."""

    info = TOY_INFO

    def extract(self, images: torch.Tensor, layers: Sequence[int]) -> dict[int, torch.Tensor]:
        raise AssertionError("the teacher was called")


class CountingTeacher:
    def __init__(self, inner: TeacherModel) -> None:
        self.inner, self.info, self.rows = inner, inner.info, 0

    def extract(self, images: torch.Tensor, layers: Sequence[int]) -> dict[int, torch.Tensor]:
        self.rows += images.shape[0]
        return self.inner.extract(images, layers)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher() -> TeacherModel:
    return toy.ToyTeacher.build(TOY)


def _cache(root: Path, dataset: VLADataset, kind: str = "pooled", dtype: str = "fp32", layers: Sequence[int] = (0, 2),
           order: Sequence[int] | None = (2, 0, 2), pooling: Pooling = POOL, on_augment: str = "crop",
           spec: TeacherSpec = TOY, adapter: type[TeacherAdapter] = toy.ToyTeacher, pad_frames: int = 0) -> TeacherCache:
    return TeacherCache.create(root, dataset, spec, adapter, layers, kind, dtype, pooling, on_augment,  # type: ignore[arg-type]
                               order=order, pad_frames=pad_frames)


def _live(teacher: TeacherModel, batch: dict[str, Any], order: Sequence[int], pooling: Pooling = POOL,
          pad_frames: int = 0) -> torch.Tensor:
    """What Trainer._targets computes today (zero features for VLA camera slots beyond the dataset's)."""
    images = batch.get("teacher_images", batch["images"])
    feats = teacher.extract(images, sorted(set(order)))
    feats = {k: F.pad(v, (0, 0, 0, 0, 0, pad_frames)) for k, v in feats.items()}
    return pooling(torch.stack([feats[k] for k in order]))


def _epoch(dataset: VLADataset, batch_size: int, epoch: int = 0, seed: int = 7) -> list[dict[str, Any]]:
    stream = iter(TrainSampler(len(dataset), seed, start=epoch * len(dataset)))
    keys = [next(stream) for _ in range(len(dataset))]
    return [collate_batch([dataset[k] for k in keys[i : i + batch_size]]) for i in range(0, len(keys), batch_size)]


# --- data: the sample index and crop box ------------------------------------------------------------


def test_samples_carry_index_and_the_crop_box_they_were_cut_with() -> None:
    dataset = FirstRows(CROPS, seed=3)
    sample = dataset[(5, 2)]
    assert sample["index"].dtype == torch.int64 and int(sample["index"]) == 5
    box = sample["crop_box"]
    assert box.shape == (2, 4) and torch.equal(box, dataset[(5, 2)]["crop_box"])  # deterministic per (seed, epoch, index)
    assert not torch.equal(box, dataset[(5, 3)]["crop_box"])
    canonical = dataset.canonical_images(5)
    height, width = dataset.image_size
    for cam in range(2):
        top, left, h, w = (round(float(v) * s) for v, s in zip(box[cam], (height, width, height, width)))
        recut = resize(canonical[cam, :, top : top + h, left : left + w], (height, width))
        assert torch.equal(recut, sample["teacher_images"][cam])  # the box is exactly the crop that was applied
    plain = FirstRows(NO_AUG, seed=3)[5]
    assert "crop_box" not in plain and torch.equal(plain["images"], canonical)
    batch = collate_batch([dataset[i] for i in range(3)])
    assert batch["index"].tolist() == [0, 1, 2] and batch["crop_box"].shape == (3, 2, 4)


# --- hits, fill on the fly, exactness --------------------------------------------------------------


def test_fully_cached_epoch_never_calls_the_teacher(tmp_path: Path, teacher: TeacherModel) -> None:
    dataset = FirstRows(NO_AUG, seed=7)
    cache = _cache(tmp_path, dataset)
    stats = cache.build(teacher, list(range(ROWS)), batch_size=5)
    assert (stats.misses, stats.hits) == (ROWS, 0)
    assert len(list(cache.store.dir.rglob("*.safetensors"))) == ROWS

    fresh = _cache(tmp_path, dataset)  # a new run: same key, same folder
    for batch in _epoch(dataset, 4, epoch=1):
        got = fresh.targets(batch, RaisingTeacher())  # type: ignore[arg-type]
        assert torch.equal(got, _live(teacher, batch, (2, 0, 2)))
    assert (fresh.stats.hits, fresh.stats.misses, fresh.stats.corrupt) == (ROWS, 0, 0)


def test_fully_cached_epoch_with_random_crops_and_prefetching_workers(tmp_path: Path, teacher: TeacherModel) -> None:
    dataset = FirstRows(CROPS, seed=7)
    _cache(tmp_path, dataset, kind="grid", dtype="bf16").build(teacher, list(range(ROWS)))
    cache = _cache(tmp_path, dataset, kind="grid", dtype="bf16")
    loader = DataLoader(dataset, batch_size=6, sampler=TrainSampler(ROWS, 7), collate_fn=cache.collate, num_workers=1)
    batches = iter(loader)
    for _ in range(ROWS // 6):
        batch = next(batches)
        assert batch["teacher_cache_status"] == [True] * 6  # read and verified by the worker
        assert batch["teacher_cached"].is_shared() and batch["teacher_cached"].shape == (6, 2, 2, 36, 16)
        got = cache.targets(batch, RaisingTeacher())  # type: ignore[arg-type]
        assert got.shape == (3, 6, 32, 16) and got.dtype == torch.float32
    assert (cache.stats.hits, cache.stats.misses) == (ROWS, 0)


@pytest.mark.parametrize("kind", ["pooled", "grid"])
def test_fill_then_hit_equals_live_in_fp32(tmp_path: Path, teacher: TeacherModel, kind: str) -> None:
    dataset = FirstRows(NO_AUG, seed=7)
    cache = _cache(tmp_path, dataset, kind=kind)
    counting = CountingTeacher(teacher)
    batches = _epoch(dataset, 4)
    for batch in batches[:2]:  # half the rows: filled on the fly
        assert torch.equal(cache.targets(batch, counting), _live(teacher, batch, (2, 0, 2)))  # type: ignore[arg-type]
    assert counting.rows == 8 and cache.stats.misses == 8
    for batch in _epoch(dataset, 5, epoch=1):  # mixed batches: only the missing rows reach the teacher
        assert torch.equal(cache.targets(batch, counting), _live(teacher, batch, (2, 0, 2)))  # type: ignore[arg-type]
    assert counting.rows == ROWS and (cache.stats.hits, cache.stats.misses) == (8, ROWS)


@pytest.mark.parametrize("kind", ["pooled", "grid"])
def test_vla_camera_slots_beyond_the_dataset_pool_zero_features(tmp_path: Path, teacher: TeacherModel, kind: str) -> None:
    dataset = FirstRows(NO_AUG, seed=7)
    pooling = Pooling(48, TOY_INFO.patch_grid, TOY_INFO.image_size)  # a 3-camera VLA, 16 tokens each
    cache = _cache(tmp_path, dataset, kind=kind, pooling=pooling, pad_frames=1)
    batch = _epoch(dataset, 4)[0]
    filled = cache.targets(batch, teacher)
    assert torch.equal(filled, _live(teacher, batch, (2, 0, 2), pooling, pad_frames=1)) and filled.shape == (3, 4, 48, 16)
    assert torch.equal(cache.targets(batch, RaisingTeacher()), filled)  # type: ignore[arg-type]
    assert cache.layout.shape == ((2, 48, 16) if kind == "pooled" else (2, 2, 36, 16))


@pytest.mark.parametrize("dtype, tol", [("fp16", 1e-3), ("bf16", 8e-3)])
def test_half_precision_storage_within_tolerance(tmp_path: Path, teacher: TeacherModel, dtype: str, tol: float) -> None:
    dataset = FirstRows(NO_AUG, seed=7)
    cache = _cache(tmp_path, dataset, dtype=dtype)
    batch = _epoch(dataset, ROWS)[0]
    filled = cache.targets(batch, teacher)
    hit = cache.targets(batch, RaisingTeacher())  # type: ignore[arg-type]
    assert torch.equal(filled, hit)  # a miss returns the stored (rounded) value: same target either way
    live = _live(teacher, batch, (2, 0, 2))
    torch.testing.assert_close(hit, live, rtol=tol, atol=tol * live.abs().max().item())
    assert cache.layout.sample_bytes == 2 * 32 * 16 * 2


def test_fp16_overflow_is_refused(tmp_path: Path) -> None:
    class Loud:
        info = TOY_INFO

        def extract(self, images: torch.Tensor, layers: Sequence[int]) -> dict[int, torch.Tensor]:
            return {k: torch.full((images.shape[0], 2, 36, 16), 1e5) for k in layers}

    dataset = FirstRows(NO_AUG, seed=7)
    with pytest.raises(RocketError, match="beyond float16's range; store the cache as bf16 or fp32"):
        _cache(tmp_path, dataset, dtype="fp16").targets(_epoch(dataset, 2)[0], Loud())  # type: ignore[arg-type]


# --- corrupt entries --------------------------------------------------------------------------------


def _damage(path: Path, how: str) -> None:
    raw = bytearray(path.read_bytes())
    if how == "flip":
        raw[-3] ^= 0x10
    elif how == "truncate":
        raw = raw[: len(raw) // 2]
    elif how == "header":
        raw[10:20] = b"!" * 10
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("how", ["flip", "truncate", "header", "other_row", "empty"])
def test_corrupt_entry_is_detected_recomputed_and_reported(tmp_path: Path, teacher: TeacherModel, how: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    dataset = FirstRows(NO_AUG, seed=7)
    cache = _cache(tmp_path, dataset)
    batch = collate_batch([dataset[i] for i in (3, 4, 5)])
    clean = cache.targets(batch, teacher)
    victim = cache.store.path(4)
    if how == "other_row":
        shutil.copyfile(cache.store.path(3), victim)  # a valid file under the wrong name
    elif how == "empty":
        victim.write_bytes(b"")
    else:
        _damage(victim, how)
    assert isinstance(cache.store.load(4), Corrupt)

    counting = CountingTeacher(teacher)
    with caplog.at_level(logging.WARNING, logger="rocket.cache"):
        again = cache.targets(batch, counting)  # type: ignore[arg-type]
    assert torch.equal(again, clean)  # recomputed, never the damaged bytes
    assert counting.rows == 1 and cache.stats.corrupt == 1 and cache.stats.corrupt_paths == [str(victim)]
    assert any("corrupt" in r.message and str(victim) in r.message for r in caplog.records)
    assert isinstance(cache.store.load(4), torch.Tensor)  # rewritten
    cache.targets(batch, RaisingTeacher())  # type: ignore[arg-type]


def test_corrupt_entry_found_by_a_worker_is_reported_by_the_step(tmp_path: Path, teacher: TeacherModel) -> None:
    dataset = FirstRows(NO_AUG, seed=7)
    _cache(tmp_path, dataset).build(teacher, [0, 1])
    cache = _cache(tmp_path, dataset)
    _damage(cache.store.path(1), "flip")
    batch = cache.collate([dataset[i] for i in (0, 1)])
    assert batch["teacher_cache_status"][0] is True and isinstance(batch["teacher_cache_status"][1], Corrupt)
    cache.targets(batch, teacher)
    assert (cache.stats.hits, cache.stats.misses, cache.stats.corrupt) == (1, 1, 1)


# --- keys ---------------------------------------------------------------------------------------------


def test_keys_follow_content_not_augmentation(tmp_path: Path) -> None:
    dataset = FirstRows(NO_AUG, seed=7)
    base = _cache(tmp_path, dataset).store.key

    def key(**kw: Any) -> str:
        return _cache(tmp_path, kw.pop("dataset", dataset), **kw).store.key

    changed = {
        "preset": key(spec=TeacherSpec(name="toy-teacher", preset="other")),
        "revision": key(spec=TeacherSpec(name="toy-teacher", revision="abc123")),
        "checkpoint": key(spec=TeacherSpec(name="toy-teacher", checkpoint="org/other-weights")),
        "options": key(spec=TeacherSpec(name="toy-teacher", options={"resize": "pad"})),
        "layers": key(layers=(0, 1), order=(0, 1)),
        "dtype": key(dtype="fp16"),
        "kind": key(kind="grid"),
        "tokens": key(pooling=Pooling(64, TOY_INFO.patch_grid, TOY_INFO.image_size)),
        "pad_frames": key(pad_frames=1),
        "teacher_pe": key(pooling=Pooling(32, TOY_INFO.patch_grid, TOY_INFO.image_size, teacher_pe=False)),
        "image_size": key(dataset=FirstRows(DataSpec(augment=AugmentSpec(enabled=False), image_size=(96, 96)), seed=7)),
        "cameras": key(dataset=FirstRows(DataSpec(augment=AugmentSpec(enabled=False), cameras={"a": "image"}), seed=7)),
    }
    copy = tmp_path / "data"
    shutil.copytree(bundled_dataset_path(), copy)
    stats = copy / "meta" / "stats.json"
    stats.write_text(stats.read_text() + "\n")  # same data, different bytes: another fingerprint
    changed["fingerprint"] = key(dataset=FirstRows(DataSpec(dataset=str(copy), augment=AugmentSpec(enabled=False)), seed=7))
    assert base not in changed.values() and len(set(changed.values())) == len(changed)

    same = [
        key(order=(0, 2)),  # pair order (and duplicates) are the trainer's business, not the stored content
        key(layers=(2, 0, 2)),
        key(on_augment="teacher"),
        key(dataset=FirstRows(CROPS, seed=99)),  # augmentation and seed
        key(dataset=FirstRows(DataSpec(dataset=str(bundled_dataset_path()), augment=AugmentSpec(enabled=False)), seed=7)),
    ]
    assert set(same) == {base}
    assert key(kind="grid", pad_frames=1) == key(kind="grid")  # grids hold the real frames only
    assert not any(tmp_path.glob("toy-teacher-*"))  # nothing is written until something is stored


def test_the_dataset_path_is_episode_and_frame(tmp_path: Path, teacher: TeacherModel) -> None:
    dataset = FirstRows(NO_AUG, seed=7)
    cache = _cache(tmp_path, dataset)
    cache.build(teacher, [0, 1])
    assert cache.store.path(1).relative_to(cache.store.dir).as_posix() == "ep000000/000001.safetensors"
    meta = json.loads((cache.store.dir / "key.json").read_text())
    assert meta["key"] == cache.store.key and meta["data"]["cameras"] == list(dataset.camera_keys)


# --- crop on the cached grid --------------------------------------------------------------------------


def test_crop_on_grid_follows_the_box_geometry() -> None:
    view = TeacherView((128, 128), 24, 4)  # a 6x6 grid
    rows, cols = torch.meshgrid(torch.arange(6.0), torch.arange(6.0), indexing="ij")
    ramp = torch.stack([rows, cols], -1).reshape(1, 1, 1, 36, 2)  # feature = (row, col) of the patch
    box = torch.tensor([[[0.1, 0.05, 0.8, 0.7]]])
    out = crop_grids(ramp, box, view).reshape(6, 6, 2)
    i = torch.arange(6.0)
    torch.testing.assert_close(out[:, 0, 0], 0.1 * 6 + 0.8 * (i + 0.5) - 0.5)  # patch centres mapped through the box
    torch.testing.assert_close(out[0, :, 1], 0.05 * 6 + 0.7 * (i + 0.5) - 0.5)
    assert torch.equal(crop_grids(ramp, torch.tensor([[[0.0, 0.0, 1.0, 1.0]]]), view), ramp)
    # a wide image in crop mode: rows are cut from the middle; the full box is still the identity
    wide = TeacherView((100, 200), 28, 4, "crop")
    (new_h, off_h, rows_n), (new_w, off_w, cols_n) = wide.axes()
    assert (new_h, off_h, rows_n, new_w, off_w, cols_n) == (16, 0, 4, 28, 0, 7)
    tall = TeacherView((200, 100), 28, 4, "pad")
    assert tall.axes() == ((28, 0, 7), (16, 6, 7))


class PatchMeanTeacher(torch.nn.Module):
    """A purely local teacher: each patch's feature is its mean colour (and the colour's square)."""

    info = TeacherInfo(num_layers=1, feature_dim=6, patch_grid=(16, 16), image_size=(128, 128))

    def extract(self, images: torch.Tensor, layers: Sequence[int]) -> dict[int, torch.Tensor]:
        b, s = images.shape[:2]
        x = F.interpolate(images.flatten(0, 1), size=(128, 128), mode="bilinear", align_corners=False)
        mean = F.avg_pool2d(torch.cat([x, x * x], 1), 8).flatten(2).transpose(1, 2)
        return {k: mean.reshape(b, s, 256, 6) for k in layers}


class PatchMean(TeacherAdapter):
    name = "patch-mean"

    @classmethod
    def info(cls, spec: TeacherSpec) -> TeacherInfo:
        return PatchMeanTeacher.info

    @classmethod
    def build(cls, spec: TeacherSpec) -> TeacherModel:
        return PatchMeanTeacher()  # type: ignore[return-value]


def test_crop_on_grid_matches_a_local_teacher_on_the_cropped_image(tmp_path: Path) -> None:
    """Shapes, exactness for the full box, and that the approximation beats ignoring the crop."""
    dataset = FirstRows(DataSpec(augment=AugmentSpec(crop_scale=(0.6, 0.6), teacher_view="pre_color_jitter")), seed=7)
    pooling = Pooling(2 * 16 * 16, (16, 16), (128, 128), teacher_pe=False)
    cache = _cache(tmp_path, dataset, kind="grid", layers=(0,), order=(0,), pooling=pooling,
                   spec=TeacherSpec(name="patch-mean"), adapter=PatchMean)
    model = PatchMeanTeacher()
    batch = _epoch(dataset, ROWS)[0]
    approx = cache.targets(batch, model)  # type: ignore[arg-type]
    live = _live(model, batch, (0,), pooling)  # type: ignore[arg-type]
    assert approx.shape == live.shape == (1, ROWS, 512, 6)
    uncropped = cache.targets({**batch, "crop_box": torch.tensor([0.0, 0.0, 1.0, 1.0]).expand_as(batch["crop_box"])},
                              RaisingTeacher())  # type: ignore[arg-type]
    err, err_ignoring_crop = (approx - live).abs().mean(), (uncropped - live).abs().mean()
    assert err < 0.5 * err_ignoring_crop, (err, err_ignoring_crop)

    full = {**batch, "teacher_images": torch.stack([dataset.canonical_images(int(r)) for r in batch["index"]]),
            "crop_box": torch.tensor([0.0, 0.0, 1.0, 1.0]).expand_as(batch["crop_box"])}
    assert torch.equal(cache.targets(full, RaisingTeacher()), _live(model, full, (0,), pooling))  # type: ignore[arg-type]


def test_on_augment_teacher_falls_back_to_the_live_teacher(tmp_path: Path, teacher: TeacherModel) -> None:
    dataset = FirstRows(CROPS, seed=7)
    cache = _cache(tmp_path, dataset, on_augment="teacher")
    batch = _epoch(dataset, 4)[0]
    assert torch.equal(cache.targets(batch, teacher), _live(teacher, batch, (2, 0, 2)))
    assert (cache.stats.bypassed, cache.stats.hits, cache.stats.misses) == (4, 0, 0)
    assert not cache.store.dir.exists()
    assert "teacher_cached" not in cache.collate([dataset[0], dataset[1]])  # workers skip the read too
    with pytest.raises(RocketError, match="randomly cropped but the teacher cache holds pooled targets"):
        _cache(tmp_path, dataset).targets(batch, teacher)


def test_vggt_tiny_fill_then_hit(tmp_path: Path) -> None:
    from rocket_plugins.teachers.vggt import VGGTTeacher

    spec = TeacherSpec(name="vggt", preset="tiny")
    info = VGGTTeacher.info(spec)
    pooling = Pooling(32, info.patch_grid, info.image_size)
    dataset = FirstRows(NO_AUG, seed=7)
    cache = _cache(tmp_path, dataset, dtype="fp16", layers=(1, 3), order=(1, 3), pooling=pooling, spec=spec,
                   adapter=VGGTTeacher)
    model = VGGTTeacher.build(spec)
    batch = _epoch(dataset, 4)[0]
    filled = cache.targets(batch, model)
    hit = cache.targets(batch, RaisingTeacher())  # type: ignore[arg-type]
    live = _live(model, batch, (1, 3), pooling)
    assert torch.equal(filled, hit) and hit.shape == (2, 4, 32, 128)
    torch.testing.assert_close(hit, live, rtol=1e-3, atol=1e-3 * live.abs().max().item())
    assert cache.store.key != _cache(tmp_path, dataset, dtype="fp16", layers=(1, 3), order=(1, 3), pooling=pooling,
                                     spec=TeacherSpec(name="vggt", preset="tiny", options={"resize": "pad"}),
                                     adapter=VGGTTeacher).store.key


def test_store_refuses_a_wrong_shape(tmp_path: Path, teacher: TeacherModel) -> None:
    store: CacheStore = _cache(tmp_path, FirstRows(NO_AUG, seed=7)).store
    with pytest.raises(ValueError, match="entry shape"):
        store.write(0, torch.zeros(3, 3))
    with pytest.raises(RocketError, match=r"teacher layers \[1\] are not in the cache"):
        _cache(tmp_path, FirstRows(NO_AUG, seed=7), order=(0, 1))
