"""rocket doctor: every probe returns a real result, the CLI prints one line per check."""
from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from rocket_cli import doctor
from rocket_core.eval import doctor as doctor_mod
from rocket_core.eval.doctor import probe_egl, probe_osmesa, probe_vulkan, run_doctor
from rocket_plugins.benchmarks.robotwin import RoboTwinBenchmark
from rocket_plugins.benchmarks.toy import ToyBenchmark


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
    lines = text.output.strip().splitlines()
    assert text.exit_code == 0 and len(lines) == len(run_doctor([ToyBenchmark], False)) + 1  # + the summary
    assert lines[-1].startswith(f"{len(lines) - 1} checks: 0 failed")


def _app() -> typer.Typer:
    app = typer.Typer()
    doctor.register(app)

    @app.callback()
    def _cb() -> None:
        pass

    return app


@pytest.mark.parametrize("reachable", [True, False])
def test_doctor_probes_the_hub(monkeypatch: pytest.MonkeyPatch, reachable: bool) -> None:
    """Online or unreachable comes from a real request (mocked here: tests never touch the network)."""
    calls: list[tuple[str, float]] = []

    def probe(endpoint: str, timeout: float = doctor_mod.HUB_PROBE_TIMEOUT_S) -> tuple[bool, str]:
        calls.append((endpoint, timeout))
        return reachable, "HTTP 200" if reachable else "timed out"

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(doctor_mod, "probe_hub", probe)
    res = CliRunner().invoke(_app(), ["doctor", "--quick", "--benchmark", "toy", "--json"])
    assert res.exit_code == 0, res.output  # an unreachable Hub only warns
    hub = next(c for c in json.loads(res.output) if c["name"] == "Hugging Face hub")
    assert calls and calls[0][1] <= 5  # a short timeout
    if reachable:
        assert hub["level"] == "ok" and hub["detail"].startswith("online")
    else:
        assert hub["level"] == "warning" and hub["detail"].startswith("unreachable") and "timed out" in hub["detail"]


def test_doctor_offline_does_not_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(doctor_mod, "probe_hub", lambda *a, **k: pytest.fail("probed while offline"))
    hub = next(c for c in doctor_mod.check_hf() if c.name == "Hugging Face hub")
    assert hub.ok is None and hub.detail.startswith("offline")


def test_hub_probe_of_a_closed_port_is_unreachable_quickly() -> None:
    """The real probe (local only): a refused connection is 'unreachable', not an exception."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        reachable, how = doctor_mod.probe_hub(f"http://127.0.0.1:{port}", timeout=2)
    assert reachable is False and how


def test_doctor_exit_codes_follow_what_was_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing benchmark check is an error when that benchmark is asked for, a warning otherwise."""
    from rocket_core.contracts import Check

    class Broken(ToyBenchmark):
        name = "broken"

        @classmethod
        def doctor(cls, quick: bool = False) -> list[Check]:
            return [Check("benchmark broken", False, "simulator missing", "rocket eval --setup broken")]

    import rocket_core.eval.base as base

    monkeypatch.setattr(base, "find_benchmark", lambda name: (Broken, None))
    monkeypatch.setattr(base, "installed_benchmarks", lambda: {"toy": ToyBenchmark, "broken": Broken})
    asked = CliRunner().invoke(_app(), ["doctor", "--quick", "--benchmark", "broken", "--json"])
    assert asked.exit_code == 1
    levels = {c["name"]: c["level"] for c in json.loads(asked.output)}
    assert levels["benchmark broken"] == "error" and levels["torch"] == "ok"
    assert CliRunner().invoke(_app(), ["doctor", "--quick", "--benchmark", "broken", "--no-fail"]).exit_code == 0
    plain = CliRunner().invoke(_app(), ["doctor", "--quick", "--json"])
    assert plain.exit_code == 0, plain.output
    assert {c["name"]: c["level"] for c in json.loads(plain.output)}["benchmark broken"] == "warning"


def test_doctor_fails_on_a_broken_core_check(monkeypatch: pytest.MonkeyPatch) -> None:
    from rocket_core.contracts import Check

    monkeypatch.setattr(doctor_mod, "check_torch", lambda: [Check("torch", False, "not importable", "bash install.sh")])
    res = CliRunner().invoke(_app(), ["doctor", "--quick", "--benchmark", "toy"])
    assert res.exit_code == 1 and "FAIL torch: not importable" in res.output
    assert res.output.strip().splitlines()[-1].startswith(f"{len(res.output.strip().splitlines()) - 1} checks: 1 failed")


def test_doctor_robotwin_gates_a_machine_that_cannot_run_it() -> None:
    """Acceptance: RoboTwin needs a GPU Vulkan device; without one `--benchmark robotwin` exits 1 (0 with --no-fail),
    while plain `rocket doctor` only warns about it."""
    if any(not d["cpu"] for d in probe_vulkan()["devices"]) and RoboTwinBenchmark.env().ready():
        pytest.skip("this machine can run RoboTwin")
    assert CliRunner().invoke(_app(), ["doctor", "--quick", "--benchmark", "robotwin"]).exit_code == 1
    assert CliRunner().invoke(_app(), ["doctor", "--quick", "--benchmark", "robotwin", "--no-fail"]).exit_code == 0
    plain = CliRunner().invoke(_app(), ["doctor", "--quick", "--json"])
    levels = {c["name"]: c["level"] for c in json.loads(plain.output)}
    assert plain.exit_code == 0 and levels["benchmark robotwin"] in ("warning", "ok")
