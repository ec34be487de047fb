"""Layer-map files and the `--layers` mini-language (one grammar for every command).

A layer-map file is YAML or JSON with `vla:` and `teacher:` lists (pair order) and optional `meta:`.
`--layers` names pairs: such a file, `balanced:K`, or inline `v1,v2,...:t1,t2,...` (`parse_layers`).
`rocket profile cka` compares every VLA layer with every teacher layer, so its `--layers` names two sets
in the same `VLA:TEACHER` form, each side also taking `all` and inclusive ranges `N-M` (`parse_layer_sets`).
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

import yaml
from pydantic import ValidationError

from rocket_core.errors import RocketError
from rocket_core.paths import check_output_file
from rocket_core.select.balanced import balanced_layers
from rocket_core.specs import LayerMap, format_validation_error, load_config_file

_INDEX = re.compile(r"^-?\d+$")
_RANGE = re.compile(r"^(\d+)-(\d+)$")
_BALANCED = re.compile(r"^balanced:(\d+)$")


def read_layer_map(path: str | Path) -> LayerMap:
    data = load_config_file(path, "layer-map file")
    try:
        return LayerMap.model_validate({k: data.get(k) for k in ("vla", "teacher")})
    except ValidationError as exc:
        raise RocketError(format_validation_error(exc, f"layer map '{path}'")) from None


def write_layer_map(path: str | Path, layer_map: LayerMap, meta: dict[str, Any] | None = None) -> Path:
    """Write atomically (temp file, then rename) so a failed run leaves nothing half-written."""
    p = check_output_file(path, "layer-map file")
    doc: dict[str, Any] = {"vla": list(layer_map.vla), "teacher": list(layer_map.teacher)}
    if meta:
        doc["meta"] = meta
    text = ("# rocket layer map: pair i aligns VLA hidden state vla[i] to teacher layer teacher[i]\n"
            + yaml.safe_dump(doc, sort_keys=False))
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)  # our own, never a user's file
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        tmp.replace(p)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise RocketError(f"cannot write the layer map '{p}': {exc.strerror or exc}") from None
    return p


def balanced_map(k: int, vla_blocks: int, teacher_layers: int, vla_offset: int = 1) -> LayerMap:
    """Balanced rule on both sides; VLA block b becomes hidden-state index b + offset.

    K above either side's layer count is refused: the rule would silently give fewer pairs than asked.
    """
    if k > min(vla_blocks, teacher_layers):
        raise RocketError(
            f"cannot pick {k} balanced pairs: the VLA has {vla_blocks} blocks and the teacher {teacher_layers} "
            f"layers; ask for at most {min(vla_blocks, teacher_layers)} pairs"
        )
    if vla_offset < 0:
        raise RocketError(f"the VLA offset must be 0 or more (hidden-state index of block 0's output), got {vla_offset}")
    return LayerMap(
        vla=[i + vla_offset for i in balanced_layers(vla_blocks, k)],
        teacher=balanced_layers(teacher_layers, k),
    )


def parse_layers(value: str, vla_blocks: int, teacher_layers: int, vla_offset: int = 1) -> LayerMap:
    """Interpret a `--layers` value (see module docstring)."""
    text = value.strip()
    if m := _BALANCED.match(text):
        k = int(m.group(1))
        if k < 1:
            raise RocketError("--layers balanced:K needs K >= 1")
        return balanced_map(k, vla_blocks, teacher_layers, vla_offset)
    sides = _sides(text)
    if sides is not None and all(_INDEX.match(t) for side in sides for t in _tokens(side)):
        vla, teacher = ([int(t) for t in _tokens(side)] for side in sides)
        try:
            return LayerMap(vla=vla, teacher=teacher)
        except ValidationError as exc:
            raise RocketError(format_validation_error(exc, "layer map")) from None
    if Path(text).suffix in (".yaml", ".yml", ".json", ".toml"):
        return read_layer_map(text)
    raise RocketError(
        f"cannot read --layers '{value}': use 'balanced:K', 'v1,v2:t1,t2' or a layer-map file (.yaml/.json)"
    )


def _sides(text: str) -> tuple[str, str] | None:
    """`VLA:TEACHER` split at its colon (None without exactly one)."""
    vla, sep, teacher = text.partition(":")
    return (vla, teacher) if sep and ":" not in teacher else None


def _tokens(side: str) -> list[str]:
    return [t.strip() for t in side.split(",")]


def parse_layer_sets(value: str, vla: tuple[int, Callable[[int], int]],
                     teacher: tuple[int, Callable[[int], int]]) -> tuple[list[int], list[int]]:
    """Two layer sets (sorted, resolved): `all`, or `VLA:TEACHER` with each side `all` or a comma list of
    indices and inclusive ranges (`0-4,8`). `vla` and `teacher` are (top index, resolver of a user index)."""
    text = value.strip()
    sides = (text, text) if text == "all" else _sides(text)
    if sides is None:
        raise RocketError(f"--layers '{value}': use 'all' or 'VLA:TEACHER' (e.g. '0-32:all', '2,4,6:0-23')")
    return _layer_set(sides[0], *vla, "VLA"), _layer_set(sides[1], *teacher, "teacher")


def _layer_set(text: str, top: int, resolve: Callable[[int], int], what: str) -> list[int]:
    text = text.strip()
    if text in ("", "all"):
        return list(range(top + 1))
    out: set[int] = set()
    for token in _tokens(text):
        if _INDEX.match(token):
            out.add(resolve(int(token)))
        elif m := _RANGE.match(token):
            lo, hi = int(m.group(1)), int(m.group(2))
            if lo > hi:
                raise RocketError(f"{what} layer range '{token}' is empty; write low-high")
            out.update(resolve(i) for i in range(lo, hi + 1))
        else:
            raise RocketError(f"cannot read {what} layers '{token}': use 'all', N, N-M or a comma list")
    return sorted(out)
