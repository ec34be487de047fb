"""OpenVLA-7B, native: our Prismatic code on stock transformers (no remote code, no fork).

Import-light: registering the plugin loads only `adapter` (no torch); `policy` holds the model.
"""
from __future__ import annotations

from typing import Callable

from rocket_core import hookimpl
from rocket_plugins.vla.openvla.adapter import OpenVLAAdapter

__all__ = ["OpenVLAAdapter"]


@hookimpl
def register_vlas(register: Callable[[type], None]) -> None:
    register(OpenVLAAdapter)
