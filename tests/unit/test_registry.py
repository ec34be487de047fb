"""Plugin discovery: entry points, duplicates, broken plugins, bad registrations."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

import plugins.projectors.builtin as builtin_projectors
import tests.toy_plugins as toy
from rocket_core.errors import RocketError
from rocket_core.registry import Registry, load_registry


def _fake_dist(root: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """An installed third-party distribution: a dist-info folder plus its modules, importable from `root`."""
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[rocket]\n{lines}\n")
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("thirdparty_")]:
        del sys.modules[name]


def test_builtins_come_from_entry_points() -> None:
    reg = load_registry()
    names = {r.name for r in reg.records() if r.kind == "projector"}
    assert {"rocket", "shared", "independent", "single"} <= names
    assert all(r.source.startswith("built-in") for r in reg.records() if r.kind == "projector")


def test_third_party_entry_point_is_discovered(site: Path) -> None:
    _fake_dist(site, "rocket-toys", {"toys": "thirdparty_toys"}, {"thirdparty_toys": "from tests.toy_plugins import *"})
    reg = load_registry()
    assert reg.get("vla", "toy-vla") is toy.ToyVLA
    record = reg.plugins["teacher"]["toy-teacher"]
    assert record.source == "rocket-toys (thirdparty_toys)"
    assert record.version == "1.0"


def test_broken_plugin_is_reported_and_skipped(site: Path) -> None:
    _fake_dist(site, "rocket-broken", {"broken": "thirdparty_broken"}, {"thirdparty_broken": "import not_a_module_xyz"})
    reg = load_registry()
    [broken] = [b for b in reg.broken if b.name == "broken"]
    assert "not_a_module_xyz" in broken.error and broken.source.startswith("rocket-broken")
    assert "rocket" in reg.plugins["projector"]  # everything else still loads
    with pytest.raises(RocketError, match="failed to load"):
        reg.get("vla", "broken")


def test_duplicate_names_name_both_sources(site: Path) -> None:
    _fake_dist(site, "rocket-clash", {"clash": "thirdparty_clash"}, {"thirdparty_clash": """
        from rocket_core import hookimpl
        from plugins.projectors.builtin import RocketProjector

        class Impostor(RocketProjector):
            name = "rocket"

        @hookimpl
        def register_projectors(register):
            register(Impostor)
        """})
    with pytest.raises(RocketError) as err:
        load_registry()
    message = str(err.value)
    assert "two projector plugins are named 'rocket'" in message
    assert "built-in (plugins.projectors.builtin)" in message and "rocket-clash (thirdparty_clash)" in message


def test_unknown_name_lists_available() -> None:
    reg = Registry()
    reg.register_module(builtin_projectors)
    with pytest.raises(RocketError, match="available projector plugins: independent, rocket, shared, single"):
        reg.get("projector", "nope")


def test_registering_a_non_plugin_class_fails() -> None:
    class NotAPlugin:
        from rocket_core import hookimpl

        @staticmethod
        @hookimpl
        def register_vlas(register):  # type: ignore[no-untyped-def]
            register(dict)

    with pytest.raises(RocketError, match="is not a VLAAdapter"):
        Registry().register_module(NotAPlugin)
