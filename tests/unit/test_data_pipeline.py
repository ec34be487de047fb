"""Normalisation, augmentation, the VLA dataset/Batch and the resumable sampler (on the bundled dataset)."""
from __future__ import annotations

import colorsys
from itertools import islice

import numpy as np
import pytest
import torch

from rocket_core.data import (
    AugmentSpec,
    DataSpec,
    LeRobotReader,
    Normalizer,
    TrainSampler,
    VLADataset,
    bundled_dataset_path,
    sample_generator,
)
from rocket_core.data.augment import augment, center_crop, hsv_to_rgb, random_resized_crop, rgb_to_hsv
from rocket_core.errors import RocketError
from tests.helpers import build_dataloader

NO_JITTER = {"brightness": 0.0, "contrast": (1.0, 1.0), "saturation": (1.0, 1.0), "hue": 0.0}


@pytest.fixture(scope="module")
def reader() -> LeRobotReader:
    return LeRobotReader(bundled_dataset_path())


pytestmark = pytest.mark.usefixtures("one_thread")


# --- normalisation ---------------------------------------------------------------------------------


def test_quantile_round_trip_with_excluded_gripper(reader: LeRobotReader) -> None:
    norm = Normalizer.from_stats(reader.stats, "action", "quantile", exclude=[-1])
    q01, q99 = (torch.tensor(reader.stats["action"][q], dtype=torch.float32) for q in ("q01", "q99"))
    inside = q01 + torch.rand(64, q01.numel(), generator=torch.Generator().manual_seed(0)) * (q99 - q01)
    y = norm.normalize(inside)
    assert y[:, :-1].abs().max() <= 1
    assert torch.equal(y[:, -1], inside[:, -1])  # the gripper passes through both ways
    torch.testing.assert_close(norm.unnormalize(y), inside, atol=1e-6, rtol=0)
    ends = norm.normalize(torch.stack([q01, q99]))[:, :-1]
    spread = (q99 > q01)[:-1]
    assert spread.any()
    want = torch.tensor([[-1.0], [1.0]]).expand(2, int(spread.sum()))
    torch.testing.assert_close(ends[:, spread], want, atol=1e-6, rtol=0)
    assert ends[:, ~spread].eq(-1).all()  # a constant dimension maps to -1 (OpenVLA-OFT's eps), and back to itself
    assert norm.normalize(q99 + 10)[:-1].eq(1).all()  # out-of-range values are clipped, as in OpenVLA-OFT


def test_mean_std_round_trip_and_serialisation(reader: LeRobotReader) -> None:
    norm = Normalizer.from_stats(reader.stats, "observation.state", "mean_std")
    state = torch.from_numpy(reader.column("observation.state")[:50].copy())
    y = norm.normalize(state)
    mean, std = (torch.tensor(reader.stats["observation.state"][s], dtype=torch.float32) for s in ("mean", "std"))
    torch.testing.assert_close(y, (state - mean) / (std + 1e-8))
    torch.testing.assert_close(norm.unnormalize(y), state, atol=1e-6, rtol=0)
    again = Normalizer.from_dict(norm.to_dict())
    assert torch.equal(again.normalize(state), y)


def test_normaliser_errors(reader: LeRobotReader) -> None:
    with pytest.raises(RocketError, match="statistics have no q01/q99 for 'missing'"):
        Normalizer.from_stats(reader.stats, "missing", "quantile")
    with pytest.raises(RocketError, match="cannot exclude dimension 7 of 'action'"):
        Normalizer.from_stats(reader.stats, "action", "quantile", exclude=[7])


# --- augmentation ----------------------------------------------------------------------------------


def test_hsv_matches_colorsys_and_inverts() -> None:
    rgb = torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(1))
    rgb[:, 0, 0] = 0.5  # grey: hue and saturation 0
    hsv = rgb_to_hsv(rgb)
    ref = torch.tensor([colorsys.rgb_to_hsv(*rgb[:, i, j].tolist()) for i in range(6) for j in range(6)])
    torch.testing.assert_close(hsv.permute(1, 2, 0).reshape(-1, 3), ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(hsv_to_rgb(hsv), rgb, atol=1e-6, rtol=0)


def test_full_crop_is_identity_and_small_crop_zooms() -> None:
    ramp = torch.linspace(0, 1, 16).expand(3, 16, 16).contiguous()
    g = torch.Generator().manual_seed(0)
    assert torch.equal(random_resized_crop(ramp, (1.0, 1.0), (1.0, 1.0), g), ramp)
    zoomed = random_resized_crop(ramp, (0.25, 0.25), (1.0, 1.0), g)
    assert zoomed.shape == ramp.shape
    assert zoomed[0, 0, -1] - zoomed[0, 0, 0] < 0.6  # an 8-px crop spans about half the ramp


def test_augmentation_is_seeded_per_sample_and_epoch() -> None:
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    spec = AugmentSpec()
    a1, c1 = augment(images, spec, sample_generator(7, 0, 5))
    a2, c2 = augment(images, spec, sample_generator(7, 0, 5))
    assert torch.equal(a1, a2) and torch.equal(c1, c2)
    for other in (sample_generator(7, 1, 5), sample_generator(7, 0, 6), sample_generator(8, 0, 5)):
        assert not torch.equal(augment(images, spec, other)[0], a1)
    assert 0 <= a1.min() and a1.max() <= 1
    jitter_free, crop = augment(images, AugmentSpec(**NO_JITTER), sample_generator(7, 0, 5))
    assert torch.equal(crop, c1)  # colour jitter draws after every crop, so geometry does not depend on it
    torch.testing.assert_close(jitter_free, crop, atol=1e-6, rtol=0)


# --- dataset and Batch -----------------------------------------------------------------------------


def test_batch_contract(reader: LeRobotReader) -> None:
    spec = DataSpec(chunk_size=5, action_norm_exclude=[-1], augment=AugmentSpec(teacher_view="pre_color_jitter"))
    dataset = VLADataset(spec, seed=3, reader=reader)
    batch = next(iter(build_dataloader(dataset, batch_size=3, seed=3)))
    height, width, _ = reader.frame_shape(reader.camera_keys[0])
    n_cam = len(reader.camera_keys)
    state_dim, action_dim = reader.column("observation.state").shape[1], reader.column("action").shape[1]
    assert batch["images"].shape == batch["teacher_images"].shape == (3, n_cam, 3, height, width)
    assert batch["images"].dtype == torch.float32 and 0 <= batch["images"].min() and batch["images"].max() <= 1
    assert batch["image_masks"].dtype == torch.bool and batch["image_masks"].all()
    assert batch["state"].shape == (3, state_dim) and batch["state"].abs().max() <= 1
    assert batch["actions"].shape == (3, 5, action_dim) and batch["action_is_pad"].shape == (3, 5)
    assert set(batch["actions"][..., -1].unique().tolist()) <= {-1.0, 1.0}  # raw gripper command kept
    assert all(task in reader.tasks for task in batch["task"]) and len(batch["task"]) == 3
    assert not torch.equal(batch["images"], batch["teacher_images"])


def test_camera_slots_and_unaugmented_values(reader: LeRobotReader) -> None:
    """Slots follow the spec (short or full keys, empty slots masked); without augmentation pixels and
    normalised values are exactly the dataset's."""
    spec = DataSpec(
        cameras={"wrist": "wrist_image", "primary": "observation.images.image", "extra": None},
        chunk_size=4,
        augment=AugmentSpec(enabled=False, teacher_view="pre_color_jitter"),
    )
    dataset = VLADataset(spec, seed=0, reader=reader)
    _, last = reader.episode_bounds(0)
    sample = dataset[last - 2]
    assert dataset.slots == ["wrist", "primary", "extra"]
    assert sample["image_masks"].tolist() == [True, True, False]
    for slot, key in enumerate(["observation.images.wrist_image", "observation.images.image"]):
        frame = torch.from_numpy(reader.frames(key, np.array([last - 2]))[0]).permute(2, 0, 1).float() / 255
        assert torch.equal(sample["images"][slot], frame)
    assert sample["images"][2].abs().sum() == 0
    assert "teacher_images" not in sample  # no augmentation: the teacher sees `images`
    rows = [last - 2, last - 1, last - 1, last - 1]
    assert sample["action_is_pad"].tolist() == [False, False, True, True]
    assert torch.equal(sample["actions"], dataset.action_norm.normalize(torch.from_numpy(reader.column("action")[rows])))


def test_evaluation_view_is_the_centre_crop(reader: LeRobotReader) -> None:
    """train=False draws nothing and shows the centre crop of the mean training crop area (OpenVLA-OFT eval)."""
    spec = DataSpec(augment=AugmentSpec(crop_scale=(0.8, 0.9), teacher_view="pre_color_jitter"))
    evaluation = VLADataset(spec, seed=0, train=False, reader=reader)
    raw = VLADataset(spec.model_copy(update={"augment": AugmentSpec(enabled=False)}), seed=0, reader=reader)[7]["images"]
    sample = evaluation[(7, 0)]
    assert torch.equal(sample["images"], center_crop(raw, 0.85)) and "teacher_images" not in sample
    assert torch.equal(evaluation[(7, 1)]["images"], sample["images"])
    assert not torch.equal(sample["images"], raw)


def test_dataset_samples_are_reproducible(reader: LeRobotReader) -> None:
    spec = DataSpec(chunk_size=2)
    first, second = VLADataset(spec, seed=11, reader=reader), VLADataset(spec, seed=11, reader=reader)
    assert torch.equal(first[(10, 2)]["images"], second[(10, 2)]["images"])
    assert not torch.equal(first[(10, 2)]["images"], first[(10, 3)]["images"])
    second.epoch = 2
    assert torch.equal(second[10]["images"], first[(10, 2)]["images"])


def test_sampler_resumes_mid_stream() -> None:
    stream = list(islice(TrainSampler(10, seed=4), 30))
    for epoch in range(3):
        part = stream[epoch * 10 : (epoch + 1) * 10]
        assert sorted(i for i, _ in part) == list(range(10)) and {e for _, e in part} == {epoch}
    assert [i for i, _ in stream[:10]] != [i for i, _ in stream[10:20]]
    assert list(islice(TrainSampler(10, seed=4, start=13), 17)) == stream[13:]


def test_resumed_loader_yields_the_same_batches(reader: LeRobotReader) -> None:
    dataset = VLADataset(DataSpec(chunk_size=2), seed=5, reader=reader)
    full = list(islice(build_dataloader(dataset, batch_size=2, seed=5), 3))
    resumed = next(iter(build_dataloader(dataset, batch_size=2, seed=5, start=4)))
    assert torch.equal(resumed["images"], full[2]["images"]) and resumed["task"] == full[2]["task"]


def test_mismatched_camera_sizes_need_image_size(reader: LeRobotReader) -> None:
    dataset = VLADataset(DataSpec(image_size=(32, 48), augment=AugmentSpec(enabled=False)), seed=0, reader=reader)
    assert dataset[0]["images"].shape[-2:] == (32, 48)
    with pytest.raises(RocketError, match="leaves every image slot empty"):
        VLADataset(DataSpec(cameras={"a": None}), seed=0, reader=reader)
