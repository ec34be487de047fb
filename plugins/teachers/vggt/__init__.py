"""VGGT teacher plugin (entry point `vggt`): our own plain-torch VGGT, key-for-key with facebook/VGGT-1B."""
from __future__ import annotations

from typing import Callable

from plugins.teachers.vggt.teacher import FrozenVGGT, VGGTTeacher
from rocket_core import hookimpl

__all__ = ["FrozenVGGT", "VGGTTeacher", "register_teachers"]


@hookimpl
def register_teachers(register: Callable[[type], None]) -> None:
    register(VGGTTeacher)
