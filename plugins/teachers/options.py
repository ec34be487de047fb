"""The options every built-in teacher takes (import-light: `info()` validates them without torch)."""
from __future__ import annotations

from typing import Any

from rocket_core.errors import RocketError

RESIZE_MODES: tuple[str, ...] = ("crop", "pad")  # the modes of rocket_core.vision.resize_for_teacher
OPTIONS: dict[str, str] = {"resize": f"how images reach the teacher's input: {' or '.join(RESIZE_MODES)} (default crop)"}


def check_options(name: str, options: dict[str, Any]) -> str:
    """The resize mode from a spec's options; unknown options fail naming the valid ones."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        valid = "; ".join(f"{k}: {v}" for k, v in OPTIONS.items())
        raise RocketError(f"unknown option(s) {', '.join(unknown)} for teacher '{name}'; valid options: {valid}")
    mode = options.get("resize", "crop")
    if mode not in RESIZE_MODES:
        raise RocketError(f"teacher option resize='{mode}' is invalid; use one of: {', '.join(RESIZE_MODES)}")
    return mode
