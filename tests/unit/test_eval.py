"""rocket eval / serve core: protocols, the wire, the policy wrapper, the rollout loop and the runner (toy sim)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rocket_core.contracts import VLAInfo
from rocket_core.data.normalize import Normalizer
from rocket_core.errors import RocketError
from rocket_core.eval.base import find_benchmark
from rocket_core.eval.client import PolicyClient, PolicyError, health
from rocket_core.eval.policy import Policy
from rocket_core.eval.protocol import GripperMap, Protocol, process_gripper
from rocket_core.eval.rollout import prepare_image, quat2axisangle, run_episode
from rocket_core.eval.runner import EvalConfig, SuitePlan, list_tasks, run_eval
from rocket_core.eval.server import PolicyServer, serve_callable
from rocket_core.eval.video import count_frames
from rocket_core.eval.wire import packb, unpackb
from rocket_plugins.benchmarks.libero import LiberoBenchmark
from rocket_plugins.benchmarks.libero_protocol import libero_preset
from rocket_plugins.benchmarks.toy import ToyBenchmark
from rocket_plugins.benchmarks.toy_sim import TASKS

# ---- protocol ------------------------------------------------------------------------------------


def test_openvla_oft_preset_pins_the_published_protocol() -> None:
    steps = {"spatial": 220, "object": 280, "goal": 300, "10": 520, "90": 400}
    for suite, n in steps.items():
        p = libero_preset(suite, "openvla-oft")
        assert p == libero_preset(suite, "openvla")  # the short name stays accepted
        assert (p.trials_per_task, p.seed, p.max_steps, p.wait_steps) == (50, 7, n, 10)
        assert p.wait_action == (0, 0, 0, 0, 0, 0, -1)
        assert (p.render_size, p.rotate_180, p.open_loop_steps, p.action_dim) == (256, True, 8, 7)
        assert p.proprio == "eef_pos+axis_angle+gripper_qpos"
        assert p.gripper == GripperMap(rescale_01_to_pm1=True, binarize=True, invert=True)
        assert p.center_crop == 0.9 and p.unnorm_key is None  # OFT center_crop=True for image_aug checkpoints
    pi = libero_preset("goal", "openpi")
    assert (pi.open_loop_steps, pi.resize_method, pi.gripper, pi.env_seed) == (5, "pad_bilinear", GripperMap(), 7)
    assert libero_preset("goal", "openvla-oft") == libero_preset("goal", "openvla")  # VLAInfo.eval_family's name
    assert pi.center_crop == 1.0
    with pytest.raises(KeyError):
        libero_preset("long", "openvla")


def test_deviations_and_roundtrip() -> None:
    preset = libero_preset("spatial", "openvla")
    used = preset.replace(max_steps=30, trials_per_task=1)
    assert used.deviations(preset) == {"trials_per_task": {"preset": 50, "used": 1},
                                       "max_steps": {"preset": 220, "used": 30}}
    assert Protocol.from_dict(json.loads(json.dumps(used.to_dict()))) == used
    assert preset.deviations(preset) == {}


def test_gripper_mapping_oft() -> None:
    chunk = np.array([[0.1] * 6 + [0.9], [0.0] * 6 + [0.2], [0.0] * 6 + [0.5]])
    out = process_gripper(chunk, GripperMap(True, True, True))
    # 0.9 -> 0.8 -> +1 -> inverted -1 ; 0.2 -> -0.6 -> -1 -> +1 ; 0.5 -> 0 -> +1 -> -1
    assert out[:, -1].tolist() == [-1.0, 1.0, -1.0]
    assert np.array_equal(out[:, :6], chunk[:, :6])
    assert np.array_equal(process_gripper(chunk, GripperMap()), chunk)


def test_quat2axisangle_and_image_prep() -> None:
    angle = 0.7
    quat = np.array([0, 0, math.sin(angle / 2), math.cos(angle / 2)])
    assert np.allclose(quat2axisangle(quat), [0, 0, angle])
    assert np.allclose(quat2axisangle(np.array([0, 0, 0, 1.0])), 0)
    img = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    p = Protocol(name="x", benchmark="x", suite="x", resize_size=4)
    assert np.array_equal(prepare_image(img, p), img[::-1, ::-1])
    big = prepare_image(np.zeros((256, 256, 3), np.uint8), p.replace(resize_size=224))
    assert big.shape == (224, 224, 3) and big.dtype == np.uint8
    padded = prepare_image(np.full((100, 200, 3), 255, np.uint8), p.replace(resize_size=64, resize_method="pad_bilinear"))
    assert padded.shape == (64, 64, 3) and padded[0, 0, 0] == 0 and padded[32, 32, 0] == 255


def test_find_benchmark() -> None:
    assert find_benchmark("libero_spatial") == (LiberoBenchmark, "spatial")
    assert find_benchmark("libero_10") == (LiberoBenchmark, "10")
    assert find_benchmark("libero")[1] is None
    assert find_benchmark("libero_plus")[0].name == "libero_plus"
    with pytest.raises(RocketError, match="available"):
        find_benchmark("metaworld")


# ---- rollout (fake env) --------------------------------------------------------------------------


class CountingEnv:
    instruction = "do it"

    def __init__(self, succeed_at: int | None = None) -> None:
        self.actions: list[np.ndarray] = []
        self.succeed_at = succeed_at

    def reset(self, episode_index: int) -> int:
        self.actions = []
        return 0

    def step(self, action: np.ndarray) -> tuple[int, bool]:
        self.actions.append(np.asarray(action))
        return len(self.actions), self.succeed_at is not None and len(self.actions) >= self.succeed_at

    def policy_observation(self, obs: int) -> dict[str, Any]:
        return {"images": [np.zeros((2, 2, 3), np.uint8)], "state": np.full(8, obs, np.float32)}

    def frame(self, obs: int) -> np.ndarray:
        return np.full((8, 8, 3), obs, np.uint8)

    def close(self) -> None:
        pass


def test_rollout_waits_then_executes_chunks_open_loop() -> None:
    env = CountingEnv()
    seen: list[dict[str, Any]] = []

    def infer(obs: dict[str, Any]) -> np.ndarray:
        seen.append(obs)
        return np.tile(np.arange(8)[:, None] / 10, (1, 7))  # 8-step chunk, gripper in [0, 0.7]

    proto = libero_preset("spatial", "openvla").replace(max_steps=20)
    out = run_episode(env, infer, proto, 0, record=True)
    assert out["steps"] == 20 and out["env_steps"] == 30 and not out["success"]
    assert out["queries"] == 3  # 8 + 8 + 4
    assert [o["state"][0] for o in seen] == [10, 18, 26]  # re-queried after each full chunk
    assert seen[0]["task"] == "do it"
    assert all(np.array_equal(a, [0, 0, 0, 0, 0, 0, -1]) for a in env.actions[:10])
    first = env.actions[10]
    assert first[0] == 0.0 and first[-1] == 1.0  # gripper 0 -> -1 -> binarised -1 -> inverted +1
    assert len(out["frames"]) == 31


def test_rollout_stops_on_success_and_checks_dims() -> None:
    env = CountingEnv(succeed_at=13)
    out = run_episode(env, lambda o: np.zeros((8, 7)), libero_preset("goal", "openvla"), 0)
    assert out["success"] and out["steps"] == 3 and out["env_steps"] == 13
    with pytest.raises(ValueError, match="7"):
        run_episode(CountingEnv(), lambda o: np.zeros((8, 3)), libero_preset("goal", "openvla"), 0)


# ---- wire + server -------------------------------------------------------------------------------

META = {"vla": "scripted", "num_images": 2, "state_dim": 8, "action_dim": 7, "chunk_size": 4, "cameras": ["a", "b"]}


def toy_expert(obs: dict[str, Any]) -> np.ndarray:
    goal = np.asarray(dict(TASKS)[obs["task"]])
    step = np.clip((goal - np.asarray(obs["state"][:2])) / 0.1, -1, 1)
    out = np.zeros((4, 7))
    out[:, :2] = step / 2
    return out


def test_wire_roundtrip() -> None:
    msg = {"kind": "infer", "obs": {"images": [np.ones((3, 4, 3), np.uint8)], "state": np.arange(8.0), "task": "x"}}
    back = unpackb(packb(msg))
    assert back["obs"]["images"][0].dtype == np.uint8 and np.array_equal(back["obs"]["state"], np.arange(8.0))


def test_server_metadata_infer_health_and_errors() -> None:
    def fn(obs: Any) -> np.ndarray:
        if not isinstance(obs, dict) or "task" not in obs:
            raise RocketError("the observation lacks task")
        return np.ones((4, 7))

    with serve_callable(META, fn, port=0) as server:
        assert health(server.url)["vla"] == "scripted"
        with PolicyClient(server.url) as client:
            assert client.metadata == META
            assert client.infer({"task": "x"}).shape == (4, 7)
            assert client.request({"kind": "ping"}) == {"kind": "pong"}
            with pytest.raises(PolicyError, match="lacks task"):
                client.infer({"images": []})
            with pytest.raises(PolicyError, match="unknown message kind"):
                client.request({"kind": "reset"})
            client._ws.send(b"\xc1garbage")
            assert "undecodable" in unpackb(client._ws.recv())["error"]
            assert client.infer({"task": "still alive"}).shape == (4, 7)
    assert health(server.url, timeout=0.5) is None


# ---- Policy wrapper (fake model) -----------------------------------------------------------------


class BatchModel(torch.nn.Module):
    """The contract's `predict_action(batch)`: returns the normalised state in every action slot."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.batches: list[dict[str, Any]] = []

    def predict_action(self, batch: dict[str, Any]) -> torch.Tensor:
        self.batches.append(batch)
        return batch["state"][:, None, :2].expand(1, 3, 2).clone()


class WideModel(BatchModel):
    """No state; a chunk of 8 actions wider than the policy's action_dim."""

    def predict_action(self, batch: dict[str, Any]) -> torch.Tensor:
        assert batch["images"].shape == (1, 2, 3, 5, 5)
        return torch.full((1, 8, 3), 0.5)


def _info(state_dim: int | None, action_dim: int) -> VLAInfo:
    return VLAInfo(num_blocks=1, hidden_size=4, num_vision_tokens=1, max_layer_index=1, num_images=2,
                   state_dim=state_dim, action_dim=action_dim, chunk_size=3)


def test_policy_normalises_state_and_unnormalises_actions() -> None:
    norm = Normalizer("quantile", torch.tensor([0.0, 0.0]), torch.tensor([10.0, 2.0]), torch.tensor([True, True]))
    model = BatchModel()
    policy = Policy(model, "fake", _info(2, 2), source="test", state_norm=norm, action_norm=norm)
    obs = {"images": [np.zeros((5, 5, 3), np.uint8)] * 2, "state": np.array([5.0, 2.0]), "task": "t"}
    out = policy.infer(obs)
    batch = model.batches[0]
    assert batch["images"].shape == (1, 2, 3, 5, 5) and batch["image_masks"].all() and batch["task"] == ["t"]
    assert torch.allclose(batch["state"], torch.tensor([[0.0, 1.0]]))
    assert np.allclose(out["actions"], [[5.0, 2.0]] * 3, atol=1e-5)  # normalise -> model -> unnormalise = identity
    meta = policy.metadata()
    assert meta["normalization"] == {"state": True, "action": True} and meta["state_dim"] == 2
    assert meta["eval_family"] == ""  # what `rocket eval` picks the preset by: "" = the benchmark's first family


def test_policy_cuts_to_action_dim_and_rejects_malformed_observations() -> None:
    policy = Policy(WideModel(), "openvla", _info(None, 2), source="test")
    good = {"images": [np.zeros((5, 5, 3), np.uint8)] * 2, "task": "t"}
    assert policy.infer(good)["actions"].shape == (8, 2)  # cut to action_dim
    bad = [
        ("not a map", "must be a map"),
        ({"images": good["images"]}, "lacks task"),
        ({**good, "task": ""}, "non-empty"),
        ({**good, "images": good["images"][:1]}, "list of 2 camera frames"),
        ({**good, "images": [np.zeros((5, 5, 3), np.float32)] * 2}, "uint8"),
        ({**good, "images": [np.zeros((5, 5, 3), np.uint8), np.zeros((4, 5, 3), np.uint8)]}, "one size"),
    ]
    for obs, message in bad:
        with pytest.raises(RocketError, match=message):
            policy.infer(obs)
    needs_state = Policy(BatchModel(), "fake", _info(2, 2), source="test")
    with pytest.raises(RocketError, match="needs 'state'"):
        needs_state.infer(good)
    with pytest.raises(RocketError, match="2 finite"):
        needs_state.infer({**good, "state": [1.0, float("nan")]})


# ---- runner on the toy benchmark -----------------------------------------------------------------


def _config(url: str, out: Path, **kw: Any) -> EvalConfig:
    preset = ToyBenchmark.protocol("reach", "openvla")
    proto = preset.replace(**kw.pop("changes", {}))
    tasks = list_tasks(ToyBenchmark, "reach", proto)
    return EvalConfig(benchmark=ToyBenchmark, suites=[SuitePlan("reach", proto, preset, tasks)], url=url, out=out,
                      policy=META, **kw)


@pytest.mark.sim
def test_runner_results_videos_parallel_and_resume(tmp_path: Path) -> None:
    with serve_callable(META, toy_expert, port=0) as server:
        cfg = _config(server.url, tmp_path, workers=2, episodes=[0, 1], videos="all", changes={"max_steps": 40})
        first = run_eval(cfg, progress=False)
        assert first["overall"]["episodes"] == 6 and first["overall"]["success_rate"] == 1.0
        suite = first["suites"]["reach"]
        assert suite["deviations"] == {"max_steps": {"preset": 30, "used": 40}}
        assert suite["protocol"]["max_steps"] == 40 and suite["preset"] == "toy"
        assert [t["episodes"] for t in suite["tasks"]] == [2, 2, 2]
        rec = json.loads((tmp_path / "episodes/reach/task-001/ep-000.json").read_text())
        video = tmp_path / rec["video"]
        assert rec["success"] and video.name.endswith("-success.mp4")
        assert count_frames(video) == rec["video_frames"] == rec["env_steps"] + 1
        assert len(list((tmp_path / "workers").glob("worker-*.log"))) == 2
        stamp = (tmp_path / "episodes/reach/task-000/ep-000.json").stat().st_mtime_ns

        # resume: episodes 0-1 are on disk; only 2-3 run, on one task subset
        cfg2 = _config(server.url, tmp_path, workers=1, episodes=[0, 1, 2, 3], tasks=[0], videos="none",
                       changes={"max_steps": 40})
        second = run_eval(cfg2, progress=False)
        assert (tmp_path / "episodes/reach/task-000/ep-000.json").stat().st_mtime_ns == stamp
        assert [t["episodes"] for t in second["suites"]["reach"]["tasks"]] == [4, 2, 2]
        assert second["selection"] == {"tasks": [0], "episodes": [0, 1, 2, 3], "workers": 1}
        assert "numpy" in second["versions"]

        # another protocol in the same folder is refused
        with pytest.raises(RocketError, match="another protocol"):
            run_eval(_config(server.url, tmp_path, episodes=[0]), progress=False)


@pytest.mark.sim
def test_runner_random_policy_fails_and_bad_selection(tmp_path: Path) -> None:
    with serve_callable(META, lambda o: np.zeros((4, 7)), port=0) as server:
        res = run_eval(_config(server.url, tmp_path, episodes=[0], tasks=[0, 1], videos="failures"), progress=False)
        assert res["overall"] == {"episodes": 2, "successes": 0, "success_rate": 0.0}
        rec = json.loads((tmp_path / "episodes/reach/task-000/ep-000.json").read_text())
        assert rec["steps"] == 30 and rec["video"].endswith("-failure.mp4")
        with pytest.raises(RocketError, match="no task 7"):
            run_eval(_config(server.url, tmp_path, tasks=[7]), progress=False)


@pytest.mark.sim
def test_runner_reports_policy_errors_without_recording(tmp_path: Path) -> None:
    with serve_callable(META, lambda o: np.zeros((4, 2)), port=0) as server:  # too few action dims
        with pytest.raises(RocketError, match="failed and were not recorded"):
            run_eval(_config(server.url, tmp_path, episodes=[0], tasks=[0]), progress=False)
    assert not list(tmp_path.glob("episodes/**/*.json"))
    assert json.loads((tmp_path / "results.json").read_text())["overall"]["episodes"] == 0


def test_policy_server_serves_a_policy_object() -> None:
    policy = Policy(WideModel(), "openvla", _info(None, 3), source="test")
    with PolicyServer(policy, port=0) as server, PolicyClient(server.url) as client:
        assert client.metadata["vla"] == "openvla"
        assert client.infer({"images": [np.zeros((5, 5, 3), np.uint8)] * 2, "task": "t"}).shape == (8, 3)
        with pytest.raises(PolicyError, match="camera frames"):
            client.infer({"images": [], "task": "t"})


def test_worker_pythonpath_holds_only_our_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A benchmark worker's PYTHONPATH links rocket_core and the sim module's package, never a site-packages."""
    from rocket_core.eval.base import find_benchmark

    monkeypatch.setenv("ROCKET_ENVS", str(tmp_path / "envs"))
    bench, _ = find_benchmark("toy")
    folder = Path(bench.worker_env()["PYTHONPATH"])
    top = bench.sim_module.split(".")[0]
    assert sorted(p.name for p in folder.iterdir()) == sorted({"rocket_core", top})
    assert (folder / "rocket_core" / "eval" / "worker.py").is_file()
    assert Path(bench.worker_env()["PYTHONPATH"]) == folder  # reused, not rebuilt


def test_libero_init_states_load_numpy_arrays_and_nothing_else(tmp_path: Path) -> None:
    """Init-state files are unpickled inside the benchmark env: only numpy's own globals may be looked up."""
    import os
    import pickle
    import zipfile

    from rocket_plugins.benchmarks.libero_sim import load_torch_pickle

    states = np.arange(12.0).reshape(3, 4)
    for name, payload in (("good.pt", pickle.dumps(states, protocol=2)), ("evil.pt", pickle.dumps(os.system))):
        with zipfile.ZipFile(tmp_path / name, "w") as z:
            z.writestr("archive/data.pkl", payload)
    assert np.array_equal(load_torch_pickle(str(tmp_path / "good.pt")), states)
    with pytest.raises(pickle.UnpicklingError, match="system' is not allowed"):
        load_torch_pickle(str(tmp_path / "evil.pt"))
