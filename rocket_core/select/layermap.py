"""Layer-map files and the `--layers` mini-language.

A layer-map file is YAML or JSON with `vla:` and `teacher:` lists (pair order) and optional `meta:`.
`--layers` accepts such a file, `balanced:K`, or inline `v1,v2,...:t1,t2,...`.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rocket_core.errors import RocketError
from rocket_core.paths import check_output_file
from rocket_core.select.balanced import balanced_layers
from rocket_core.specs import LayerMap, format_validation_error, load_config_file

_INLINE = re.compile(r"^\s*(-?\d+(?:\s*,\s*-?\d+)*)\s*:\s*(-?\d+(?:\s*,\s*-?\d+)*)\s*$")
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
    if m := _INLINE.match(text):
        vla, teacher = ([int(x) for x in g.split(",")] for g in m.groups())
        try:
            return LayerMap(vla=vla, teacher=teacher)
        except ValidationError as exc:
            raise RocketError(format_validation_error(exc, "layer map")) from None
    if Path(text).suffix in (".yaml", ".yml", ".json", ".toml"):
        return read_layer_map(text)
    raise RocketError(
        f"cannot read --layers '{value}': use 'balanced:K', 'v1,v2:t1,t2' or a layer-map file (.yaml/.json)"
    )
