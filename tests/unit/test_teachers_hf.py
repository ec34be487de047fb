"""transformers teachers (DINOv2, Depth Anything V2): per-block patch tokens through the teacher contract."""
from __future__ import annotations

import pytest
import torch

from rocket_core.errors import RocketError
from rocket_core.registry import load_registry
from rocket_core.specs import TeacherSpec
from rocket_core.vision import normalize
from rocket_plugins.teachers.hf import DepthAnythingTeacher, DINOv2Teacher

TEACHERS = [DINOv2Teacher, DepthAnythingTeacher]


def test_teachers_are_registered_with_vggt() -> None:
    registry = load_registry()
    assert {"vggt", "dinov2", "depth-anything"} <= set(registry.plugins["teacher"])
    assert not [p for p in registry.problems if p.name in ("vggt", "hf-teachers")]


@pytest.mark.parametrize(
    ("cls", "expected"),
    [(DINOv2Teacher, (12, 768, (16, 16), (224, 224))), (DepthAnythingTeacher, (12, 384, (37, 37), (518, 518)))],
)
def test_teachers_default_info_needs_no_weights(cls: type, expected: tuple) -> None:
    info = cls.info(TeacherSpec(name=cls.name))
    assert (info.num_layers, info.feature_dim, info.patch_grid, info.image_size) == expected


@pytest.mark.parametrize("cls", TEACHERS)
def test_teachers_hf_tiny_extract_matches_hidden_states(cls: type) -> None:
    teacher = cls.build(TeacherSpec(name=cls.name, preset="tiny"))
    info = teacher.info
    teacher.train()
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    images = torch.rand(2, 3, 3, 40, 40)
    out = teacher.extract(images, [0, 2, -1])
    assert list(out) == [0, 2, -1]
    grid = info.patch_grid[0] * info.patch_grid[1]
    assert all(v.shape == (2, 3, grid, info.feature_dim) for v in out.values())

    # Layer i is transformers' hidden_states[i + 1] (block i's output), cls token dropped.
    pixels = normalize(teacher.preprocess(images)).flatten(0, 1)
    with torch.no_grad():
        hidden = teacher.vit(pixel_values=pixels, output_hidden_states=True).hidden_states
    assert len(hidden) == info.num_layers + 1
    for layer, index in ((0, 1), (2, 3), (-1, info.num_layers)):
        torch.testing.assert_close(out[layer], hidden[index][:, 1:].unflatten(0, (2, 3)), rtol=0, atol=0)


@pytest.mark.parametrize("cls", TEACHERS)
def test_teachers_hf_early_exit_and_errors(cls: type, tmp_path, monkeypatch) -> None:
    teacher = cls.build(TeacherSpec(name=cls.name, preset="tiny"))
    calls: list[int] = []
    for i, block in enumerate(teacher.vit.encoder.layer):
        block.register_forward_hook(lambda *_a, i=i: calls.append(i))
    teacher.extract(torch.rand(1, 1, 3, 56, 56), [1])
    assert calls == [0, 1]
    with pytest.raises(RocketError, match="out of range"):
        teacher.extract(torch.rand(1, 1, 3, 56, 56), [teacher.info.num_layers])
    with pytest.raises(RocketError, match=f"unknown {cls.name} preset 'big'"):
        cls.build(TeacherSpec(name=cls.name, preset="big"))

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(RocketError, match=f"run `rocket pull {cls.name}`"):
        cls.build(TeacherSpec(name=cls.name))


@pytest.mark.parametrize("cls", TEACHERS)
def test_teachers_hf_loads_a_local_folder(cls: type, tmp_path) -> None:
    tiny = cls.build(TeacherSpec(name=cls.name, preset="tiny"))
    tiny.model.save_pretrained(tmp_path)
    loaded = cls.build(TeacherSpec(name=cls.name, checkpoint=str(tmp_path)))
    assert loaded.info.num_layers == tiny.info.num_layers and loaded.info.feature_dim == tiny.info.feature_dim
    state_a, state_b = tiny.model.state_dict(), loaded.model.state_dict()
    assert state_a.keys() == state_b.keys() and all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    with pytest.raises(RocketError, match="needs a model folder"):
        cls.build(TeacherSpec(name=cls.name, checkpoint=str(tmp_path / "model.safetensors")))
