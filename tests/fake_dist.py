"""Throwaway "installed" distributions for plugin tests: a dist-info folder plus its modules, on sys.path.

`importlib.metadata` finds a `*.dist-info` folder on any sys.path entry, so adding `root` to sys.path
(or PYTHONPATH for a subprocess) installs the package as far as entry-point discovery is concerned.
"""
from __future__ import annotations

import textwrap
from pathlib import Path


def fake_dist(root: Path, dist: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str]) -> None:
    """Write distribution `dist` under `root`: `entry_points` is group -> {name: target}, `modules` name -> source."""
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    sections = [f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in eps.items())
                for group, eps in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(sections))
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))


# Five broken third-party packages (issue 13): dist -> (entry points, modules, the one problem it must show).
BROKEN_DISTS: dict[str, tuple[dict[str, dict[str, str]], dict[str, str], str]] = {
    "rocket-import-error": (
        {"rocket": {"importerr": "thirdparty_importerr"}},
        {"thirdparty_importerr": "import not_a_module_xyz\n"},
        "rocket-import-error (thirdparty_importerr): import failed: ModuleNotFoundError: "
        "No module named 'not_a_module_xyz'",
    ),
    "rocket-raising-hook": (
        {"rocket": {"raising": "thirdparty_raising"}},
        {"thirdparty_raising": """
            from rocket_core import hookimpl

            @hookimpl
            def register_teachers(register):
                raise RuntimeError("weights server down")
            """},
        "rocket-raising-hook (thirdparty_raising): register_teachers raised RuntimeError: weights server down; "
        "its plugins were skipped",
    ),
    "rocket-duplicate": (
        {"rocket": {"dup": "thirdparty_dup"}},
        {"thirdparty_dup": """
            from rocket_core import hookimpl
            from rocket_plugins.projectors.builtin import SharedProjector

            class MySharedProjector(SharedProjector):
                description = "a second 'shared'"

            @hookimpl
            def register_projectors(register):
                register(MySharedProjector)
            """},
        "rocket-duplicate (thirdparty_dup): projector name 'shared' is also registered by built-in "
        "(rocket_plugins.projectors.builtin); using it fails until one of them is renamed or uninstalled",
    ),
    "rocket-not-adapter": (
        {"rocket": {"notadapter": "thirdparty_notadapter"}},
        {"thirdparty_notadapter": """
            from rocket_core import hookimpl

            class MyVLA:
                name = "my-vla"

            @hookimpl
            def register_vlas(register):
                register(MyVLA)
            """},
        "rocket-not-adapter (thirdparty_notadapter): registered <class 'thirdparty_notadapter.MyVLA'> as a vla "
        "plugin, but it is not a VLAAdapter subclass; skipped",
    ),
    "rocket-misspelt-hook": (
        {"rocket": {"misspelt": "thirdparty_misspelt"}},
        {"thirdparty_misspelt": """
            from rocket_core import hookimpl

            @hookimpl
            def register_teacher(register):
                pass
            """},
        "rocket-misspelt-hook (thirdparty_misspelt): unknown hook 'register_teacher' was ignored; "
        "did you mean 'register_teachers'?",
    ),
}
