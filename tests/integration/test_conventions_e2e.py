"""One convention from data to simulator, end to end, in both gripper conventions.

A LeRobot dataset with a known gripper pattern (the bundled one: raw LIBERO, -1 open / +1 close; and the
same data in OFT's RLDS convention, 1 open / 0 close) -> its `conventions.json` -> a served oracle VLA
that returns the stored *normalised* action chunk of the frame whose (server-normalised) state it gets
-> the eval client's full pre-processing (rotation, resize, centre crop, state) and post-processing
(un-normalisation with the suite's group, gripper map) -> the commands reaching a fake LIBERO env.
They must carry the dataset action's gripper meaning (LIBERO env: -1 open, +1 close) and its arm
dimensions within 1e-5. The preset's own OFT gripper map would invert the raw-LIBERO gripper: checked too.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from rocket_core.contracts import VLAInfo
from rocket_core.conventions import Conventions, from_dataset
from rocket_core.data import DataSpec, VLADataset, bundled_dataset_path
from rocket_core.eval.client import PolicyClient
from rocket_core.eval.policy import Policy
from rocket_core.eval.protocol import apply_conventions
from rocket_core.eval.rollout import run_episode
from rocket_core.eval.server import PolicyServer
from rocket_plugins.benchmarks.libero_protocol import libero_preset

CHUNK = 8


def _to_rlds(root: Path) -> None:
    """Rewrite a dataset's gripper (last action dim) from raw LIBERO (-1 open, +1 close) to RLDS (1 open, 0 close)."""
    path = next((root / "data").rglob("*.parquet"))
    table = pq.read_table(path)
    actions = np.array(table.column("action").to_pylist(), dtype=np.float32)
    actions[:, -1] = (1.0 - actions[:, -1]) / 2.0
    col = pa.FixedSizeListArray.from_arrays(pa.array(actions.reshape(-1), pa.float32()), actions.shape[1])
    pq.write_table(table.set_column(table.column_names.index("action"), "action", col), path)
    stats_path = root / "meta" / "stats.json"
    stats = json.loads(stats_path.read_text())
    grip = actions[:, -1].astype(np.float64)
    for name, value in (("min", grip.min()), ("max", grip.max()), ("mean", grip.mean()), ("std", grip.std()),
                        ("q01", np.quantile(grip, 0.01)), ("q99", np.quantile(grip, 0.99))):
        stats["action"][name][-1] = float(value)
    stats_path.write_text(json.dumps(stats))


@pytest.fixture(scope="module", params=["libero_raw", "oft_rlds"])
def dataset(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, VLADataset]:
    root = tmp_path_factory.mktemp(request.param) / "libero-like"
    shutil.copytree(bundled_dataset_path(), root)
    if request.param == "oft_rlds":
        _to_rlds(root)
    spec = DataSpec(dataset=str(root), chunk_size=CHUNK)
    return request.param, VLADataset(spec, seed=0, train=False)


class Oracle(torch.nn.Module):
    """A VLA that knows the dataset: normalised state -> that frame's normalised action chunk."""

    def __init__(self, states: torch.Tensor, chunks: torch.Tensor) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.states, self.chunks = states, chunks
        self.seen_images: list[tuple[int, ...]] = []

    def predict_action(self, batch: dict) -> torch.Tensor:
        self.seen_images.append(tuple(batch["images"].shape[1:]))
        dist = (self.states - batch["state"][0][None]).abs().amax(-1)
        i = int(dist.argmin())
        assert float(dist[i]) < 1e-5, f"the served state does not match any dataset frame ({float(dist[i])})"
        return self.chunks[i][None]


class ReplayFrameEnv:
    """A LIBERO-like env showing one dataset frame (rendered upside down, as LIBERO) and recording commands."""

    instruction = "pick up the block"

    def __init__(self, images: list[np.ndarray], state: np.ndarray) -> None:
        self.images, self.state = images, state
        self.commands: list[np.ndarray] = []

    def reset(self, episode_index: int) -> None:
        self.commands = []

    def step(self, action: np.ndarray) -> tuple[None, bool]:
        self.commands.append(np.asarray(action))
        return None, False

    def policy_observation(self, obs: Any) -> dict[str, Any]:
        from rocket_core.eval.rollout import prepare_image

        return {"images": [prepare_image(im[::-1, ::-1], self.protocol) for im in self.images], "state": self.state}

    def frame(self, obs: Any) -> np.ndarray:
        return self.images[0]

    def close(self) -> None:
        pass


def _frames_within_bounds(ds: VLADataset, n: int) -> list[int]:
    """Rows whose whole action chunk lies inside the q01/q99 bounds (no clipping) and in one episode."""
    norm = ds.action_norm
    out = []
    for index in range(0, len(ds), 37):
        rows, pad = ds.reader.window(index, ds.action_offsets)
        raw = torch.from_numpy(ds.reader.column(ds.keys.action)[rows])
        inside = ((raw >= norm.low - 1e-6) & (raw <= norm.high + 1e-6)) | ~norm.mask
        if not pad.any() and bool(inside.all()):
            out.append(index)
        if len(out) == n:
            break
    return out


def test_dataset_action_reaches_the_env_with_its_gripper_meaning(dataset: tuple[str, VLADataset]) -> None:
    kind, ds = dataset
    conv = from_dataset(ds, ds.spec)
    assert conv.gripper.kind == kind
    assert conv.images.eval_center_crop == pytest.approx(0.9)
    Conventions.from_dict(json.loads(conv.to_json()))  # what the checkpoint stores reads back

    frames = _frames_within_bounds(ds, 4)
    assert len(frames) >= 3
    action_col = ds.reader.column(ds.keys.action)
    all_states = torch.stack([ds[i]["state"] for i in frames])
    all_chunks = torch.stack([ds[i]["actions"] for i in frames])
    oracle = Oracle(all_states, all_chunks)
    info = VLAInfo(num_blocks=1, hidden_size=1, num_vision_tokens=1, max_layer_index=1, num_images=2,
                   chunk_size=CHUNK, action_dim=7, state_dim=8)
    policy = Policy(oracle, "oracle", info, source="test", state_norm=ds.state_norm, action_norm=ds.action_norm,
                    cameras=list(ds.slots), conventions=conv)

    with PolicyServer(policy, port=0) as server, PolicyClient(server.url) as client:
        preset = libero_preset("spatial", "openvla-oft")
        proto, reasons = apply_conventions(preset, client.metadata["conventions"], sim_conventions=True)
        proto = proto.replace(wait_steps=0, max_steps=CHUNK, open_loop_steps=CHUNK)
        assert proto.center_crop == pytest.approx(0.9)
        assert ("gripper" in reasons) == (kind == "libero_raw")  # the preset assumes OFT's RLDS gripper
        meanings = set()
        for index in frames:
            images = [ds.reader.frames(k, np.array([index]))[0] for k in ds.camera_keys]
            env = ReplayFrameEnv(images, ds.reader.column(ds.keys.state)[index].astype(np.float32))
            env.protocol = proto
            run_episode(env, client.infer, proto, 0)
            commands = np.stack(env.commands)
            rows, _ = ds.reader.window(index, ds.action_offsets)
            want = action_col[rows].astype(np.float64)
            assert np.abs(commands[:, :6] - want[:, :6]).max() < 1e-5
            # LIBERO's command: -1 opens, +1 closes, whatever convention the data stored
            opening = want[:, -1] < 0 if kind == "libero_raw" else want[:, -1] > 0.5
            assert np.array_equal(commands[:, -1], np.where(opening, -1.0, 1.0))
            meanings.update(opening.tolist())
            if kind == "libero_raw":
                # the preset alone (OFT RLDS assumption) would send the opposite gripper command
                env.commands = []
                run_episode(env, client.infer, preset.replace(wait_steps=0, max_steps=CHUNK), 0)
                wrong = np.stack(env.commands)[:, -1]
                assert np.array_equal(wrong, np.where(opening, 1.0, -1.0))
        assert meanings == {True, False}  # the frames open and close the gripper
    assert set(oracle.seen_images) == {(2, 3, 224, 224)}


def test_eval_center_crop_matches_the_training_view() -> None:
    """The client's centre crop is the box training's `center_crop` takes (same area, resized back)."""
    from rocket_core.data.augment import center_crop, center_crop_box
    from rocket_core.eval.rollout import center_crop_box as eval_box, prepare_image

    for h, w, scale in ((224, 224, 0.9), (128, 160, 0.81), (56, 56, 0.5)):
        assert eval_box(h, w, scale) == center_crop_box(h, w, scale)
    img = (np.random.default_rng(0).random((224, 224, 3)) * 40 + np.linspace(0, 200, 224)[None, :, None]).astype(np.uint8)
    proto = libero_preset("spatial", "openvla-oft").replace(rotate_180=False)
    ours = prepare_image(img, proto).astype(np.float64)
    train = center_crop(torch.from_numpy(img).permute(2, 0, 1).float() / 255, 0.9).permute(1, 2, 0).numpy() * 255
    uncropped = prepare_image(img, proto.replace(center_crop=1.0)).astype(np.float64)
    assert np.abs(ours - train).mean() < 2.0  # same geometry, bilinear resizes of two libraries
    assert np.abs(uncropped - train).mean() > 4 * np.abs(ours - train).mean()
