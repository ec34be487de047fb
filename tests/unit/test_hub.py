"""Weight resolution: local paths, a pre-populated HF cache used offline, one-line errors, safe loading."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from rocket_core.errors import RocketError
from rocket_core.hub import find_weights_file, load_state_dict, resolve_weights
from rocket_core.specs import TeacherSpec
from rocket_plugins.teachers.vggt import VGGTTeacher

MAIN, V1 = "a" * 40, "b" * 40


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An HF cache holding acme/tiny-vggt at main and at tag v1 (two snapshots), used offline."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    repo = cache / "models--acme--tiny-vggt"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(MAIN)
    (repo / "refs" / "v1").write_text(V1)
    for commit in (MAIN, V1):
        (repo / "snapshots" / commit).mkdir(parents=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return repo


def test_hub_resolves_local_folder_and_file(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    save_file({"w": torch.ones(2)}, str(weights))
    assert resolve_weights(str(tmp_path)) == tmp_path
    assert resolve_weights(str(weights)) == weights
    with pytest.raises(RocketError, match="only applies to Hub repos"):
        resolve_weights(str(tmp_path), revision="v1")
    for missing in ("./nope", str(tmp_path / "nope.safetensors"), "a/b/c"):
        with pytest.raises(RocketError, match=f"checkpoint path '{missing}' does not exist"):
            resolve_weights(missing)


def test_hub_uses_cached_snapshot_offline_and_pins_revisions(hf_cache: Path) -> None:
    assert resolve_weights("acme/tiny-vggt") == hf_cache / "snapshots" / MAIN
    assert resolve_weights("acme/tiny-vggt", revision="v1") == hf_cache / "snapshots" / V1
    assert resolve_weights("acme/tiny-vggt", revision=V1) == hf_cache / "snapshots" / V1


def test_hub_offline_without_cache_is_one_line_with_the_fix(hf_cache: Path) -> None:
    with pytest.raises(RocketError) as err:
        resolve_weights("acme/other", pull_name="other-plugin")
    message = str(err.value)
    assert "\n" not in message
    assert "'acme/other' are not in the local Hugging Face cache" in message and "`rocket pull other-plugin`" in message
    with pytest.raises(RocketError, match=r"rocket pull acme/tiny-vggt --revision v9"):
        resolve_weights("acme/tiny-vggt", revision="v9")
    with pytest.raises(RocketError, match="checkpoint path 'bad repo!/x' does not exist"):  # not ORG/NAME: local
        resolve_weights("bad repo!/x")
    assert resolve_weights("hf://acme/tiny-vggt") == hf_cache / "snapshots" / MAIN


def test_vggt_builds_from_the_hf_cache_offline(hf_cache: Path) -> None:
    """A Hub checkpoint (here the tiny preset's weights, perturbed) loads from the cache with HF_HUB_OFFLINE=1."""
    reference = VGGTTeacher.build(TeacherSpec(name="vggt", preset="tiny"))
    state = {k: v + 0.5 for k, v in reference.model.state_dict().items()}
    save_file(state, str(hf_cache / "snapshots" / V1 / "model.safetensors"))
    teacher = VGGTTeacher.build(TeacherSpec(name="vggt", preset="tiny", checkpoint="acme/tiny-vggt", revision="v1"))
    assert torch.equal(teacher.model.aggregator.camera_token, state["aggregator.camera_token"])
    with pytest.raises(RocketError, match="holds no weights file"):  # main has no weights
        VGGTTeacher.build(TeacherSpec(name="vggt", preset="tiny", checkpoint="acme/tiny-vggt"))


def test_hub_find_weights_file_rules(tmp_path: Path) -> None:
    for name in ("a.pt", "b.bin"):
        (tmp_path / name).write_bytes(b"")
    assert find_weights_file(tmp_path) == tmp_path / "a.pt"  # .pt is tried before .bin
    (tmp_path / "c.pt").write_bytes(b"")
    with pytest.raises(RocketError, match="several .pt files"):
        find_weights_file(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert find_weights_file(tmp_path) == tmp_path / "model.safetensors"
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(RocketError, match="not a weights file"):
        find_weights_file(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RocketError, match="holds no weights file"):
        find_weights_file(tmp_path / "empty")


class _Payload:
    """Anything that is not plain tensors: weights_only loading must refuse it."""


def test_hub_load_state_dict_is_weights_only(tmp_path: Path) -> None:
    torch.save({"model": {"w": torch.arange(3.0)}}, tmp_path / "wrapped.pt")
    assert torch.equal(load_state_dict(tmp_path / "wrapped.pt")["w"], torch.arange(3.0))
    torch.save({"w": _Payload()}, tmp_path / "pickle.pt")
    with pytest.raises(RocketError, match="cannot read weights file .*pickle.pt"):
        load_state_dict(tmp_path / "pickle.pt")
    torch.save({"w": [1, 2]}, tmp_path / "lists.pt")
    with pytest.raises(RocketError, match="does not hold a state dict of tensors"):
        load_state_dict(tmp_path / "lists.pt")
    (tmp_path / "broken.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(RocketError, match="cannot read weights file .*broken.safetensors"):
        load_state_dict(tmp_path / "broken.safetensors")
