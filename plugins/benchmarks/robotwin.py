"""`robotwin`: RoboTwin 2.0 (50 dual-arm tasks on SAPIEN) as a client of `rocket serve`.

`rocket eval --setup robotwin`: Debian Vulkan libraries, a venv `~/.cache/rocket/envs/robotwin` (Python
3.10/3.11: the runtime pins < 3.12) with `rlinf-robotwin-runtime` installed `--no-deps` and every
dependency it declares except its pinned CUDA `torch==2.8.0` (a CPU torch goes beside it:
`ROCKET_ROBOTWIN_TORCH`, default our own torch version), then a probe that creates SAPIEN's renderer.
Assets (robots, objects, backgrounds; about 4 GB) come only from the Hub dataset
`TianxingChen/RoboTwin2.0` at the runtime's pinned revision: `rocket eval --setup robotwin --assets`
(huggingface_hub; `rocket pull robotwin` once the lead wires it).
SAPIEN 3.0.0b1 needs a Vulkan GPU device: on a CPU-only machine (lavapipe) its renderer cannot start,
which `rocket doctor` reports with the renderer's own error.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, ClassVar

from rocket_core.contracts import BenchmarkAdapter, Check
from rocket_core.errors import RocketError
from rocket_core.eval.envs import apt_install
from rocket_core.eval.protocol import GripperMap, Protocol

RUNTIME = "rlinf-robotwin-runtime==0.1.3"
VULKAN_DEBS = ("libvulkan1", "mesa-vulkan-drivers")
WIRE_PACKAGES = ("websockets>=12", "msgpack>=1.0", "pluggy>=1.5", "av>=12")
ASSET_REPO = "TianxingChen/RoboTwin2.0"
SKIP_REQUIREMENTS = ("torch",)
TORCH_DEPS = ("filelock", "typing-extensions", "sympy", "networkx", "jinja2", "fsspec")  # the runtime pins torch==2.8.0 (CUDA wheel on PyPI)


def runtime_requirements(requires: list[str]) -> list[str]:
    """The runtime's declared requirements minus torch, markers kept (pip evaluates them)."""
    out = []
    for req in requires:
        name = req.split(";")[0].strip()
        base = name.split("[")[0]
        for sep in ("=", "<", ">", "!", "~", " "):
            base = base.split(sep)[0]
        if base.lower() not in SKIP_REQUIREMENTS and "extra ==" not in req:
            out.append(req)
    return out


def cpu_torch_spec() -> str:
    spec = os.environ.get("ROCKET_ROBOTWIN_TORCH")
    if spec:
        return spec
    try:
        return f"torch=={metadata.version('torch').split('+')[0]}"
    except metadata.PackageNotFoundError:
        return "torch"


class RoboTwinBenchmark(BenchmarkAdapter):
    name = "robotwin"
    description = "RoboTwin 2.0: 50 dual-arm tasks (SAPIEN, needs a Vulkan GPU), clean and randomized"
    suites: ClassVar[tuple[str, ...]] = ("clean", "randomized")
    families: ClassVar[tuple[str, ...]] = ("openvla-oft", "openpi")  # OFT-style chunks of 8, or openpi's 50
    sim_module = "rocket_plugins.benchmarks.robotwin_sim"
    env_name: ClassVar[str | None] = "robotwin"

    @classmethod
    def protocol(cls, suite: str, family: str) -> Protocol:
        cls.check_suite(suite)
        oft = family != "openpi"
        return Protocol(
            name=f"robotwin2-{family}", benchmark=cls.name, suite=suite, trials_per_task=100, seed=0, env_seed=100000,
            max_steps=0,  # 0: the task's own limit from the runtime's _eval_step_limit.yml
            wait_steps=0, wait_action=(), render_size=0, cameras=("head_camera", "left_camera", "right_camera"),
            rotate_180=False, resize_size=224, resize_method="lanczos" if oft else "pad_bilinear",
            proprio="joint_action.vector (14: per arm 6 joints + gripper)", open_loop_steps=8 if oft else 50,
            action_dim=14, gripper=GripperMap(),
            notes="RoboTwin 2.0 eval: 100 episodes/task from seed 100000, demo_clean / demo_randomized task config, "
                  "qpos actions (take_action(..., 'qpos')), D435 cameras; step limit per task",
        )

    @classmethod
    def assets_dir(cls) -> Path:
        env = cls.env()
        assert env is not None
        return Path(os.environ.get("ROBOTWIN_ASSETS", env.path / "assets"))

    @classmethod
    def worker_env(cls) -> dict[str, str]:
        return {**super().worker_env(), "ASSETS_PATH": str(cls.assets_dir()), "OMP_NUM_THREADS": "1"}

    @classmethod
    def setup(cls, log: Callable[[str], None] = print, force: bool = False, assets: bool = False) -> dict[str, Any]:
        env = cls.env()
        assert env is not None
        if sys.version_info >= (3, 12):
            raise RocketError("rlinf-robotwin-runtime needs Python 3.10 or 3.11; run rocket with one of those")
        timings: dict[str, float] = {}
        if not env.ready() or force:
            t = time.perf_counter()
            apt_install(VULKAN_DEBS, log)
            timings["debian_s"] = time.perf_counter() - t
            t = time.perf_counter()
            env.create(log, fresh=force)
            env.pip("--no-deps", RUNTIME, log=log)
            requires = json.loads(env.run("import json, importlib.metadata as m; "
                                          "print(json.dumps(m.requires('rlinf-robotwin-runtime')))").stdout)
            env.pip(*runtime_requirements(requires), *WIRE_PACKAGES, log=log)
            # torch beside, --no-deps: its own pins (setuptools) conflict with the runtime's setuptools<75.9
            env.pip("--no-deps", cpu_torch_spec(), log=log)
            env.pip(*TORCH_DEPS, log=log)
            timings["packages_s"] = time.perf_counter() - t
            env.write_stamp(benchmark=cls.name, versions=env.pip_versions(["rlinf-robotwin-runtime", "sapien", "torch",
                                                                           "numpy", "mplib"]),
                            timings={k: round(v, 1) for k, v in timings.items()})
        if assets:
            t = time.perf_counter()
            cls.fetch_assets(log)
            timings["assets_s"] = time.perf_counter() - t
        probe = cls.probe()
        log(f"{cls.name}: renderer probe: {probe}")
        return {"environment": str(env.path), "probe": probe, "timings": timings}

    @classmethod
    def fetch_assets(cls, log: Callable[[str], None] = print) -> Path:
        """The runtime's own downloader (pinned revision, sha256 manifest) in the isolated env."""
        env = cls.env()
        if env is None or not env.python.exists():
            raise RocketError("the RoboTwin environment is not set up; run `rocket eval --setup robotwin` first")
        out = cls.assets_dir()
        log(f"downloading RoboTwin assets from the Hub dataset {ASSET_REPO} into {out}")
        res = subprocess.run([str(env.python), "-m", "robotwin.assets", "--output", str(out)], text=True,
                             capture_output=True)
        if res.returncode:
            raise RocketError(f"RoboTwin asset download failed: {(res.stderr.strip().splitlines() or ['?'])[-1]}")
        return out

    @classmethod
    def probe(cls) -> dict[str, Any]:
        env = cls.env()
        if env is None or not env.python.exists():
            return {"ok": False, "error": "not set up"}
        res = subprocess.run([str(env.python), "-m", cls.sim_module, "--probe"], capture_output=True, text=True,
                             timeout=300, env={**os.environ, **cls.worker_env()})
        for line in res.stdout.splitlines():
            if line.startswith("@@rocket "):
                return json.loads(line[len("@@rocket "):])
        return {"ok": False, "error": (res.stderr.strip().splitlines() or ["probe produced no output"])[-1]}

    @classmethod
    def doctor(cls, quick: bool = False) -> list[Check]:
        from rocket_core.eval.doctor import probe_vulkan

        env = cls.env()
        assert env is not None
        checks = []
        vk = probe_vulkan()
        gpus = [d for d in vk.get("devices", []) if not d["cpu"]]
        if not vk["ok"]:
            checks.append(Check("robotwin Vulkan", False, f"{vk['error']}: SAPIEN cannot render",
                                "apt-get install libvulkan1 mesa-vulkan-drivers, and a GPU with its Vulkan driver"))
        elif not gpus:
            names = ", ".join(d["name"] for d in vk["devices"])
            checks.append(Check("robotwin Vulkan", False, f"only CPU Vulkan devices ({names}); RoboTwin's pinned "
                                "sapien 3.0.0b1 needs a GPU Vulkan device (lavapipe lacks what its renderer needs)",
                                "run RoboTwin on a machine with an NVIDIA GPU + driver (Vulkan ICD)"))
        else:
            checks.append(Check("robotwin Vulkan", True, ", ".join(d["name"] for d in gpus)))
        if not env.ready():
            checks.append(Check(f"benchmark {cls.name}", False, f"not set up (no environment at {env.path})",
                                f"rocket eval --setup {cls.name}"))
        else:
            info = env.info() or {}
            checks.append(Check(f"benchmark {cls.name}", True, f"environment {env.path} "
                                f"({', '.join(f'{k} {v}' for k, v in (info.get('versions') or {}).items())})"))
            if not quick:
                probe = cls.probe()
                checks.append(Check("robotwin renderer", bool(probe.get("ok")),
                                    probe.get("detail") or probe.get("error", "?"),
                                    "" if probe.get("ok") else "needs a GPU Vulkan device (see robotwin Vulkan)"))
        root = cls.assets_dir()
        have = [d for d in ("assets/background_texture", "assets/embodiments/aloha-agilex", "assets/objects")
                if (root / d).is_dir()]
        checks.append(Check("robotwin assets", len(have) == 3, f"{len(have)}/3 asset folders in {root}",
                            "" if len(have) == 3 else "rocket eval --setup robotwin --assets "
                            f"(Hub dataset {ASSET_REPO}, ~4 GB)"))
        return checks
