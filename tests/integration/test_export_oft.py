"""OpenVLA-OFT-format folders both ways: `rocket export` of a run, and a reference-style folder served as is."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from rocket_core.errors import RocketError
from rocket_core.eval.policy import Policy
from rocket_core.eval.protocol import apply_conventions
from rocket_plugins.benchmarks.libero_protocol import libero_preset

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _rocket(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rocket_cli", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def _obs(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"images": [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(2)],
            "state": rng.normal(size=8).astype(np.float32) * 0.1, "task": "put the bowl on the plate"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny OpenVLA run with the reference's LoRA scope (ViTs and projector too), 3 steps."""
    root = tmp_path_factory.mktemp("export")
    config = root / "spec.yaml"
    config.write_text("vla: {name: openvla, preset: tiny, options: {lora_scope: all-linear}}\n"
                      "teacher: {name: vggt, preset: tiny}\ntraining: {learning_rate: 0.01}\n")
    out = root / "run"
    res = _rocket("align", "--config", str(config), "-o", str(out), "--max-steps", "3")
    assert res.returncode == 0, res.stderr[-2000:]
    return out


def test_export_then_serve_reproduces_the_run(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "oft"
    res = _rocket("export", "--checkpoint", str(run_dir), "--merge-lora", "-o", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "dataset_statistics.json", "conventions.json", "manifest.json",
            "action_head--3_checkpoint.pt", "proprio_projector--3_checkpoint.pt"} <= names
    manifest = json.loads((out / "manifest.json").read_text())["files"]
    assert set(manifest) == names - {"manifest.json"}
    for name, entry in manifest.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == entry["sha256"]
    head = torch.load(out / "action_head--3_checkpoint.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in head.values())

    ours, exported = Policy.from_checkpoint(run_dir), Policy.from_checkpoint(out)
    assert not any(".lora_" in k for k in exported.model.state_dict())  # merged
    lora_b = [p for n, p in ours.model.named_parameters() if ".lora_B" in n and "vision_backbone" in n]
    assert lora_b and max(float(p.detach().abs().max()) for p in lora_b) > 1e-4  # the merge had something to merge
    for seed in range(3):
        a, b = ours.infer(_obs(seed))["actions"], exported.infer(_obs(seed))["actions"]
        assert a.shape == (8, 7) and np.abs(a - b).max() <= 1e-5
    assert exported.metadata()["conventions"] == ours.metadata()["conventions"]

    again = _rocket("export", "--checkpoint", str(run_dir), "-o", str(out))
    assert again.returncode == 2 and "not empty" in again.stdout + again.stderr


def _reference_folder(root: Path) -> tuple[Path, dict]:
    """A folder shaped like a published OFT/ROCKET checkpoint: merged tiny model, DDP-prefixed .pt parts,
    per-suite statistics with the gripper masked out, no conventions.json, no manifest."""
    from rocket_core.specs import VLASpec
    from rocket_plugins.vla.openvla.adapter import OpenVLAAdapter
    from rocket_plugins.vla.openvla.options import PRESETS

    torch.manual_seed(0)
    model = OpenVLAAdapter.build(VLASpec(name="openvla", preset="tiny"))
    state = model.state_dict()
    parts = ("action_head", "proprio_projector")
    root.mkdir()
    save_file({k: v.contiguous() for k, v in state.items() if not k.startswith(parts)}, str(root / "model.safetensors"))
    for part in parts:
        torch.save({f"module.{k[len(part) + 1:]}": v for k, v in state.items() if k.startswith(part + ".")},
                   root / f"{part}--50000_checkpoint.pt")
    (root / "config.json").write_text(json.dumps(PRESETS["tiny"]))
    mask = [True] * 6 + [False]
    stats = {f"libero_{s}_no_noops": {
        "action": {"q01": [-0.5 * k] * 6 + [0.0], "q99": [0.5 * k] * 6 + [1.0], "mask": mask},
        "proprio": {"q01": [-1.0] * 8, "q99": [1.0] * 8}} for k, s in ((1, "spatial"), (2, "goal"))}
    (root / "dataset_statistics.json").write_text(json.dumps(stats))
    return root, stats


def test_reference_folder_is_served_with_oft_conventions(tmp_path: Path) -> None:
    folder, stats = _reference_folder(tmp_path / "ref")
    policy = Policy.from_checkpoint(folder)
    meta = policy.metadata()
    assert meta["conventions"]["source"] == "openvla-oft" and meta["conventions"]["gripper"]["kind"] == "oft_rlds"
    proto, reasons = apply_conventions(libero_preset("goal", "openvla-oft"), meta["conventions"], sim_conventions=True)
    assert proto.unnorm_key == "libero_goal_no_noops" and reasons == {"unnorm_key": "the suite's normalisation group"}
    assert proto.gripper == libero_preset("goal", "openvla-oft").gripper and proto.center_crop == 0.9
    spatial = policy.infer({**_obs(), "unnorm_key": "libero_spatial_no_noops"})["actions"]
    goal = policy.infer({**_obs(), "unnorm_key": "libero_goal_no_noops"})["actions"]
    assert np.allclose(goal[:, :6], 2 * spatial[:, :6], atol=1e-5)  # each suite's own bounds
    assert np.array_equal(goal[:, 6], spatial[:, 6])  # the masked gripper passes through
    with pytest.raises(RocketError, match="unnorm_key 'libero_10'"):
        policy.infer({**_obs(), "unnorm_key": "libero_10"})


def test_reference_folder_with_a_misshaped_head_fails_naming_it(tmp_path: Path) -> None:
    folder, _ = _reference_folder(tmp_path / "bad")
    path = folder / "action_head--50000_checkpoint.pt"
    head = torch.load(path, weights_only=True)
    key = next(iter(head))
    head[key] = torch.zeros(3, 3)
    torch.save(head, path)
    res = _rocket("serve", "--checkpoint", str(folder), "--port", "0")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    text = " ".join((res.stdout + res.stderr).split())
    assert key.removeprefix("module.") in text
