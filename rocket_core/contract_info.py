"""The light half of the contract checks (no torch): what `info()` alone shows, and plugin bugs as one line.

`plan_run` (so `rocket align --dry-run`) uses these; `contract_check` adds the checks that run the models.
A plugin that raises or returns the wrong thing inside any command becomes one line naming the plugin, the
package it came from and the fix, the same line `rocket plugins check` prints.
"""
from __future__ import annotations

import os
import sys
import traceback
from typing import TYPE_CHECKING, Any, Iterable

from rocket_core.align.layout import pooled_grid
from rocket_core.errors import RocketError

if TYPE_CHECKING:
    from rocket_core.contracts import TeacherInfo, VLAInfo
    from rocket_core.registry import PluginRecord

# What a built model must offer, per kind (contracts.VLAModel / TeacherModel).
MODEL_METHODS: dict[str, tuple[str, ...]] = {
    "vla": ("forward_align", "configure_training", "predict_action"),
    "teacher": ("extract",),
}


def pooled_token_count(vinfo: VLAInfo, tinfo: TeacherInfo) -> tuple[int, str]:
    """(tokens the bilinear pooling gives, how): cameras x the pooled grid, the reference's truncation included."""
    ph, pw = tinfo.patch_grid
    oh, ow = pooled_grid(vinfo.num_images, (ph, pw), vinfo.num_vision_tokens)
    return vinfo.num_images * oh * ow, f"{vinfo.num_images} cameras x the {ph}x{pw} teacher grid pooled to {oh}x{ow}"


def token_count_problems(vla: str, vinfo: VLAInfo, tinfo: TeacherInfo, pooling: str = "bilinear") -> list[str]:
    """What `info()` alone shows: tokens split evenly over the cameras and, with bilinear pooling, equal to
    the pooled teacher grid (random pooling samples any count)."""
    problems = []
    if vinfo.num_images < 1 or vinfo.num_vision_tokens % vinfo.num_images:
        problems.append(f"VLA '{vla}' info(): num_vision_tokens ({vinfo.num_vision_tokens}) must be num_images "
                        f"({vinfo.num_images}) x the tokens of one camera")
    elif pooling == "bilinear":
        want, how = pooled_token_count(vinfo, tinfo)
        if want != vinfo.num_vision_tokens:
            problems.append(f"VLA '{vla}' info(): num_vision_tokens is {vinfo.num_vision_tokens} but {how} gives "
                            f"{want} targets; return cameras x tokens per camera (frame-major) that the teacher "
                            "grid pools to, or use alignment.pooling random")
    return problems


def raised_line(who: str, exc: BaseException) -> str:
    """One line for an exception a plugin raised: the plugin, the function that raised, where, and what."""
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return (f"{who} {frame.name} raised {type(exc).__name__}: {' '.join(str(exc).split())} "
            f"({frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})")


def plugin_fix(kind: str, name: str, source: str = "") -> str:
    """The fix every plugin-bug line ends with."""
    origin = f" (from {source})" if source else ""
    return (f"a bug in {kind} plugin '{name}'{origin}: fix it or report it to its authors; "
            f"`rocket plugins check {kind} {name}` lists every problem")


def expect_type(kind: str, name: str, method: str, value: Any, want: type) -> Any:
    """`value` if it is a `want` (what `info()` must return), else one line naming the plugin."""
    if not isinstance(value, want):
        raise RocketError(f"{kind} plugin '{name}' {method}() returned {type(value).__name__}, expected a "
                          f"{want.__name__}; {plugin_fix(kind, name)}")
    return value


def expect_model(kind: str, name: str, model: Any) -> Any:
    """`model` if it has the methods its kind's contract asks for, else one line naming the plugin."""
    missing = [m for m in MODEL_METHODS[kind] if not callable(getattr(model, m, None))]
    if model is None or missing:
        got = "None" if model is None else f"a {type(model).__name__} without {', '.join(missing)}"
        raise RocketError(f"{kind} plugin '{name}' build() returned {got}; it must return the model "
                          f"({', '.join(MODEL_METHODS[kind])}); {plugin_fix(kind, name)}")
    return model


def _code_roots(cls: type) -> set[str]:
    """Where a plugin class's code lives, for every class of its MRO outside rocket_core: the folder of its
    package, or the file of a lone top-level module."""
    roots = set()
    for klass in cls.__mro__:
        name = klass.__module__
        path = getattr(sys.modules.get(name), "__file__", None)
        if path is None or name.split(".")[0] in ("rocket_core", "builtins", "abc"):
            continue
        path = os.path.realpath(path)
        roots.add(os.path.dirname(path) + os.sep if "." in name or path.endswith("__init__.py") else path)
    return roots


def plugin_error(exc: BaseException, records: Iterable[PluginRecord]) -> RocketError | None:
    """`exc` as one line when plugin code is in its traceback (the deepest plugin frame names the plugin), else None."""
    frames = [os.path.realpath(f.filename) for f in traceback.extract_tb(exc.__traceback__)]
    owners = [(root, record) for record in records for root in _code_roots(record.cls)]
    for filename in reversed(frames):
        for root, record in owners:
            if filename == root or (root.endswith(os.sep) and filename.startswith(root)):
                who = f"{record.kind} plugin '{record.name}'"
                return RocketError(f"{raised_line(who, exc)}; {plugin_fix(record.kind, record.name, record.source)}")
    return None
