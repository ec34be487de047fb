"""OpenVLA-7B, native: our Prismatic code on stock transformers (no remote code, no fork)."""
from __future__ import annotations

from typing import Callable

from plugins.vla.openvla.adapter import OpenVLAAdapter, OpenVLAPolicy
from rocket_core import hookimpl

__all__ = ["OpenVLAAdapter", "OpenVLAPolicy"]


@hookimpl
def register_vlas(register: Callable[[type], None]) -> None:
    register(OpenVLAAdapter)
