"""Plugin discovery: entry points, duplicates, broken packages, bad registrations, plugin commands."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import rocket_plugins.projectors.builtin as builtin_projectors
import tests.toy_plugins as toy
from rocket_cli.main import BUILTIN_COMMANDS, load_plugin_commands
from rocket_core import hookimpl
from rocket_core.errors import RocketError
from rocket_core.registry import Registry, load_registry
from tests.fake_dist import BROKEN_DISTS, fake_dist


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
    assert reg.problems == []


def test_third_party_entry_point_is_discovered(site: Path) -> None:
    fake_dist(site, "rocket-toys", {"rocket": {"toys": "thirdparty_toys"}},
              {"thirdparty_toys": "from tests.toy_plugins import *"})
    reg = load_registry()
    assert reg.get("vla", "toy-vla") is toy.ToyVLA
    record = reg.plugins["teacher"]["toy-teacher"]
    assert record.source == "rocket-toys (thirdparty_toys)"
    assert record.version == "1.0"


@pytest.mark.parametrize("dist", sorted(BROKEN_DISTS))
def test_a_broken_package_is_one_problem_and_the_rest_loads(site: Path, dist: str) -> None:
    entry_points, modules, expected = BROKEN_DISTS[dist]
    fake_dist(site, dist, entry_points, modules)
    reg = load_registry()
    assert [p.line() for p in reg.problems] == [expected]
    assert {"rocket", "independent", "single"} <= set(reg.plugins["projector"])  # everything else still loads
    assert {"openvla", "pi0"} <= set(reg.plugins["vla"]) and "vggt" in reg.plugins["teacher"]
    assert "my-vla" not in reg.plugins["vla"]


def test_import_error_is_named_when_the_plugin_is_asked_for(site: Path) -> None:
    entry_points, modules, _ = BROKEN_DISTS["rocket-import-error"]
    fake_dist(site, "rocket-import-error", entry_points, modules)
    with pytest.raises(RocketError, match="a plugin named 'importerr' failed to load: .*not_a_module_xyz"):
        load_registry().get("vla", "importerr")


def test_an_ambiguous_name_fails_only_when_used_naming_both_packages(site: Path) -> None:
    entry_points, modules, _ = BROKEN_DISTS["rocket-duplicate"]
    fake_dist(site, "rocket-duplicate", entry_points, modules)
    reg = load_registry()
    assert reg.get("projector", "rocket") is builtin_projectors.RocketProjector
    with pytest.raises(RocketError) as err:
        reg.get("projector", "shared")
    assert str(err.value) == (
        "projector plugin 'shared' is ambiguous: it is registered by built-in (rocket_plugins.projectors.builtin) and by "
        "rocket-duplicate (thirdparty_dup); uninstall or rename one of them")
    assert [r.source for r in reg.records() if r.name == "shared"] == [
        "built-in (rocket_plugins.projectors.builtin)", "rocket-duplicate (thirdparty_dup)"]


def test_unknown_name_lists_available() -> None:
    reg = Registry()
    reg.register_module(builtin_projectors)
    with pytest.raises(RocketError, match="available projector plugins: independent, rocket, shared, single"):
        reg.get("projector", "nope")


class _Hooks:
    """A plugin object for `register_module`: good and bad registrations side by side."""

    @staticmethod
    @hookimpl
    def register_vlas(register):  # type: ignore[no-untyped-def]
        register(dict)
        register(toy.ToyVLA)

    @staticmethod
    @hookimpl
    def register_commands(cli):  # type: ignore[no-untyped-def]
        """Valid hook, wrong entry-point group."""


def test_bad_registrations_are_problems_and_good_ones_register() -> None:
    reg = Registry()
    reg.register_module(_Hooks, "pkg (mod)")
    assert reg.get("vla", "toy-vla") is toy.ToyVLA
    assert sorted(p.line() for p in reg.problems) == [
        "pkg (mod): hook 'register_commands' is not called for entry-point group 'rocket'; declare this module "
        "under 'rocket.commands'",
        "pkg (mod): registered <class 'dict'> as a vla plugin, but it is not a VLAAdapter subclass; skipped",
    ]


def test_hook_with_wrong_arguments_and_module_without_hooks_are_problems() -> None:
    class WrongArgs:
        @staticmethod
        @hookimpl
        def register_vlas(reg):  # type: ignore[no-untyped-def]
            pass

    class NoHooks:
        def register_vlas(self, register):  # type: ignore[no-untyped-def]  (no @hookimpl)
            pass

    reg = Registry()
    reg.register_module(WrongArgs, "a (wrong)")
    reg.register_module(NoHooks, "b (none)")
    lines = [p.line() for p in reg.problems]
    assert lines[0].startswith("a (wrong): invalid hook: PluginValidationError:") and "'reg'" in lines[0]
    assert lines[1] == "b (none): defines no @hookimpl function, so it registers nothing"


HELLO = '''
    """Says hello (a throwaway plugin command)."""
    from rocket_core import hookimpl

    @hookimpl
    def register_commands(cli):
        @cli.command("hello")
        def hello(name: str = "world") -> None:
            """Greet someone, from a plugin."""
            print(f"hello {name}")
    '''


def test_plugin_commands_register_and_broken_ones_are_problems(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dist(site, "rocket-hello", {"rocket.commands": {"hello": "thirdparty_hello"}}, {"thirdparty_hello": HELLO})
    fake_dist(site, "rocket-clash", {"rocket.commands": {"clash": "thirdparty_clash"}}, {"thirdparty_clash": '''
        from rocket_core import hookimpl

        @hookimpl
        def register_commands(cli):
            @cli.command("extra")
            def extra() -> None:
                pass

            @cli.command("align")
            def align() -> None:
                pass
        '''})
    fake_dist(site, "rocket-raising-cmd", {"rocket.commands": {"boom": "thirdparty_boom"}}, {"thirdparty_boom": '''
        from rocket_core import hookimpl

        @hookimpl
        def register_commands(cli):
            raise ValueError("boom")
        '''})
    cli = typer.Typer()
    found = load_plugin_commands(cli)
    assert [(m.name, m.source, m.description) for m in found.modules] == [
        ("hello", "rocket-hello (thirdparty_hello)", "Says hello (a throwaway plugin command).")]
    assert sorted(p.line() for p in found.problems) == [
        "rocket-clash (thirdparty_clash): register_commands failed: RuntimeError: command name align is already "
        "taken; rename it",
        "rocket-raising-cmd (thirdparty_boom): register_commands failed: ValueError: boom",
    ]
    assert [c.name for c in cli.registered_commands] == ["hello"]  # the clashing module's "extra" is rolled back
    assert cli.registered_commands[0].rich_help_panel == "Commands from rocket-hello"
    result = CliRunner().invoke(cli, ["--name", "plugin"])
    assert result.exit_code == 0 and result.output == "hello plugin\n"


def test_builtin_command_table_matches_the_modules() -> None:
    """`rocket --help` lists commands without importing their modules, so the table must stay true."""
    import importlib

    declared: dict[str, str] = {}
    for module in sorted({m for m, _ in BUILTIN_COMMANDS.values()}):
        holder = typer.Typer()
        importlib.import_module(module).register(holder)
        for name in typer.main.get_group(holder).commands:
            declared[name] = module
    assert declared == {name: module for name, (module, _) in BUILTIN_COMMANDS.items()}
    on_disk = {f"rocket_cli.{p.stem}" for p in Path(__file__).parents[2].joinpath("cli").glob("*.py")
               if "\ndef register(app" in p.read_text()}
    assert on_disk == set(declared.values()), "a command module is missing from rocket_cli.main.BUILTIN_COMMANDS"
