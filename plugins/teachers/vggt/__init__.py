"""VGGT teacher plugin (entry point `vggt`): our own plain-torch VGGT, key-for-key with facebook/VGGT-1B.

Import-light: registering loads only `adapter`; `teacher` and `model` hold the torch code.
"""
from __future__ import annotations

from typing import Callable

from rocket_core import hookimpl
from rocket_plugins.teachers.vggt.adapter import VGGTTeacher

__all__ = ["VGGTTeacher", "register_teachers"]


@hookimpl
def register_teachers(register: Callable[[type], None]) -> None:
    register(VGGTTeacher)
