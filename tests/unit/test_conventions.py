"""rocket_core.conventions: gripper detection, per-group normalisation, the suite's group, the protocol it yields."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rocket_core.conventions import Conventions, GroupNorm, Normalization, detect_gripper, from_dataset
from rocket_core.data import DataSpec, VLADataset
from rocket_core.data.normalize import GroupNormalizer, Normalizer
from rocket_core.errors import RocketError
from rocket_core.eval.protocol import GripperMap, apply_conventions
from rocket_plugins.benchmarks.libero import LiberoBenchmark
from rocket_plugins.benchmarks.libero_protocol import libero_preset
from rocket_plugins.vla.openvla.oft import oft_folder


def test_detect_gripper() -> None:
    assert detect_gripper(-1.0, 1.0).kind == "libero_raw"
    rlds = detect_gripper(0.0, 1.0)
    assert (rlds.kind, rlds.open, rlds.close) == ("oft_rlds", 1.0, 0.0)
    assert detect_gripper(-3.0, 5.0).kind == "none" and detect_gripper(0.0, 0.0).kind == "none"


def _conv(*groups: str) -> Conventions:
    return Conventions(source="test", normalization=Normalization(groups={g: GroupNorm() for g in groups},
                                                                  default=groups[0] if groups else None))


def test_suite_group_matching() -> None:
    many = _conv("libero_spatial_no_noops", "libero_goal_no_noops", "libero_10_no_noops")
    assert many.group_for("goal") == "libero_goal_no_noops" and many.group_for("10") == "libero_10_no_noops"
    assert _conv("libero_spatial", "libero_object").group_for("object") == "libero_object"
    assert _conv("all").group_for("goal") == "all" and _conv().group_for("goal") is None
    mixed = Conventions(source="t", normalization=Normalization(groups={"a": GroupNorm(), "b": GroupNorm()}))
    with pytest.raises(RocketError, match="--unnorm-key"):
        mixed.group_for("goal")


def test_protocol_from_conventions_lists_each_change_with_its_reason() -> None:
    preset = libero_preset("goal", "openvla-oft")
    raw = _conv("libero_spatial", "libero_goal").model_copy(update={"gripper": detect_gripper(-1, 1)})
    sim = LiberoBenchmark.checkpoint_conventions
    proto, reasons = apply_conventions(preset, raw.model_dump(mode="json"), sim_conventions=sim)
    assert proto.gripper == GripperMap(binarize=True) and proto.center_crop == 1.0 and proto.unnorm_key == "libero_goal"
    assert set(proto.deviations(preset)) == set(reasons) == {"gripper", "center_crop", "unnorm_key"}
    assert "libero_raw" in reasons["gripper"]
    same, none = apply_conventions(preset, oft_folder({"libero_goal_no_noops": {
        "action": {"q01": [0.0] * 7, "q99": [1.0] * 7}}}).model_dump(mode="json"), sim_conventions=sim)
    assert same == preset and none == {}  # a single-suite OFT folder is what the OFT preset assumes
    assert apply_conventions(preset, None) == (preset, {})
    from rocket_plugins.benchmarks.robotwin import RoboTwinBenchmark

    twin = RoboTwinBenchmark.protocol("clean", "openpi")
    kept, _ = apply_conventions(twin, raw.model_copy(update={"gripper": detect_gripper(0, 1)}).model_dump(mode="json"),
                                sim_conventions=RoboTwinBenchmark.checkpoint_conventions)
    assert kept.gripper == twin.gripper and kept.rotate_180 == twin.rotate_180  # LIBERO's gripper map only
    with pytest.raises(KeyError, match="not in the checkpoint"):
        apply_conventions(preset, raw.model_dump(mode="json"), unnorm_key="libero_90", sim_conventions=sim)


def test_from_dataset_keeps_one_set_per_group() -> None:
    spec = DataSpec(chunk_size=4, action_norm_exclude=[-1])
    ds = VLADataset(spec, seed=0, train=False)
    single = from_dataset(ds, spec)
    assert list(single.normalization.groups) == ["all"]
    assert single.gripper.kind == "libero_raw" and not single.gripper.normalized
    stats = ds.reader.stats
    shifted = {k: {n: np.asarray(v) + (1.0 if n in ("q01", "q99") else 0.0) for n, v in s.items()} for k, s in stats.items()}
    group_stats = {"libero_spatial": stats, "libero_goal": shifted}
    norms = {name: GroupNormalizer.from_group_stats(group_stats, key, spec.normalization, exclude)
             for name, key, exclude in (("state_norms", ds.keys.state, spec.state_norm_exclude),
                                        ("action_norms", ds.keys.action, spec.action_norm_exclude))}
    grouped = SimpleNamespace(**{k: getattr(ds, k) for k in ("reader", "keys", "image_size", "slots")}, **norms)
    conv = from_dataset(grouped, spec)
    assert list(conv.normalization.groups) == ["libero_spatial", "libero_goal"]
    goal = Normalizer.from_dict(conv.normalization.groups["libero_goal"].action.model_dump())
    spatial = Normalizer.from_dict(conv.normalization.groups["libero_spatial"].action.model_dump())
    y = torch.zeros(7)
    assert torch.allclose(goal.unnormalize(y)[:-1] - spatial.unnormalize(y)[:-1], torch.ones(6))
    assert goal.unnormalize(y)[-1] == 0  # the excluded gripper passes through
