"""rocket doctor: every probe returns a real result, the CLI prints one line per check."""
from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from cli import doctor
from rocket_core.eval.doctor import probe_egl, probe_osmesa, probe_vulkan, run_checks
from plugins.benchmarks.robotwin import RoboTwinBenchmark
from plugins.benchmarks.toy import ToyBenchmark


def test_probes_return_results_not_fixed_text() -> None:
    for probe in (probe_egl, probe_osmesa, probe_vulkan):
        out = probe()
        assert isinstance(out["ok"], bool)
        assert out["ok"] or out["error"]
    vk = probe_vulkan()
    for dev in vk["devices"]:
        assert dev["name"] and dev["type"] and isinstance(dev["extensions"], list)


def test_robotwin_doctor_explains_the_vulkan_device() -> None:
    checks = {c.name: c for c in RoboTwinBenchmark.doctor(quick=True)}
    vk = checks["robotwin Vulkan"]
    devices = probe_vulkan()["devices"]
    if not any(not d["cpu"] for d in devices):
        assert vk.ok is False and vk.fix
        assert ("only CPU Vulkan devices" in vk.detail and devices[0]["name"] in vk.detail) or "Vulkan" in vk.detail
    assert "robotwin assets" in checks


def test_doctor_cli_one_line_per_check() -> None:
    app = typer.Typer()
    doctor.register(app)

    @app.callback()
    def _cb() -> None:
        pass

    res = CliRunner().invoke(app, ["doctor", "--quick", "--benchmark", "toy", "--json"])
    assert res.exit_code == 0, res.output
    names = [c["name"] for c in json.loads(res.output)]
    assert names[:4] == ["torch", "render EGL", "render OSMesa", "render Vulkan"]
    assert "Hugging Face hub" in names and "plugins" in names and "benchmark toy" in names
    text = CliRunner().invoke(app, ["doctor", "--quick", "--benchmark", "toy"])
    assert text.exit_code == 0 and len(text.output.strip().splitlines()) == len(run_checks([ToyBenchmark], False))
