"""`rocket serve` on a real checkpoint of `rocket align` (tiny OpenVLA): weights, normalisation, wire."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rocket_core.data.normalize import Normalizer
from rocket_core.eval.client import PolicyClient, wait_healthy
from rocket_core.eval.policy import Policy

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("align") / "run"
    cmd = [sys.executable, "-m", "rocket_cli", "align", "--vla", "openvla", "--teacher", "vggt", "--preset", "tiny",
           "-o", str(out), "--max-steps", "1"]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return out


def _obs() -> dict:
    rng = np.random.default_rng(0)
    return {"images": [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(2)],
            "state": rng.normal(size=8).astype(np.float32), "task": "put the bowl on the plate"}


def test_policy_from_checkpoint_loads_weights_and_normalisation(tiny_run: Path) -> None:
    policy = Policy.from_checkpoint(tiny_run)
    ckpt = tiny_run / "checkpoints" / (tiny_run / "checkpoints" / "latest").read_text().strip()
    saved = load_file(str(ckpt / "trainable.safetensors"))
    named = dict(policy.model.named_parameters())
    vla_keys = [k for k in saved if k.startswith("vla.")]
    assert vla_keys and all(torch.equal(named[k[4:]].detach(), saved[k].to(named[k[4:]].dtype)) for k in vla_keys)
    state = json.loads((ckpt / "state.json").read_text())
    assert policy.action_norm is not None and policy.action_norm.to_dict() == state["normalization"]["action"]
    assert policy.cameras == state["cameras"]
    # actions come back in robot units: exactly the action normaliser applied to the model's normalised chunk
    obs = _obs()
    out = policy.infer(obs)["actions"]
    images = torch.stack([torch.from_numpy(im).permute(2, 0, 1).float() / 255 for im in obs["images"]])
    state_n = Normalizer.from_dict(state["normalization"]["state"]).normalize(torch.from_numpy(obs["state"]))
    raw = policy.model.predict_observation(images, obs["task"], state_n, unnormalize=False)
    expected = Normalizer.from_dict(state["normalization"]["action"]).unnormalize(torch.as_tensor(raw))
    assert out.shape == (8, 7) and np.allclose(out, expected.numpy(), atol=1e-5)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rocket_serve_cli_answers_observations(tiny_run: Path) -> None:
    port = _free_port()
    # rocket_cli.main may not register `serve` yet: a local app with the command module
    code = ("import sys, typer; from rocket_cli import serve; app = typer.Typer(); serve.register(app)\n"
            "@app.callback()\ndef _c(): pass\napp()")
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--checkpoint", str(tiny_run), "--port", str(port)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"ws://127.0.0.1:{port}"
    try:
        assert wait_healthy(url, 120)["vla"] == "openvla"
        with PolicyClient(url) as client:
            assert client.metadata["normalization"] == {"state": True, "action": True}
            assert client.infer(_obs()).shape == (8, 7)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
