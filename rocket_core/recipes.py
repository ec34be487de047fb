"""Paper recipes: YAML run specs under `recipes/` (shipped as package data), each with a `recipe:` header."""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from rocket_core.errors import RocketError


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    paper: str
    spec: dict[str, Any]


def _files() -> dict[str, Any]:
    return {f.name.removesuffix(".yaml"): f for f in resources.files("rocket_recipes").iterdir() if f.name.endswith(".yaml")}


def list_recipes() -> list[Recipe]:
    return [load_recipe(name) for name in sorted(_files())]


def load_recipe(name: str) -> Recipe:
    files = _files()
    if name not in files:
        from rocket_core.registry import suggestion

        raise RocketError(f"unknown recipe '{name}'{suggestion(name, files)}; available recipes: {', '.join(sorted(files))}")
    doc = yaml.safe_load(files[name].read_text())
    header = doc.pop("recipe", {})
    return Recipe(name, header.get("description", ""), header.get("paper", ""), doc)
