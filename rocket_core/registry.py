"""Plugin discovery: built-ins and third-party packages alike come through the entry-point group `rocket`.

A plugin that fails to import is recorded (name + error) and skipped, so one broken package never takes
the CLI down. Two classes registered under the same kind and name raise an error naming both sources.
"""
from __future__ import annotations

import importlib.metadata as md
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from rocket_core import hookspecs
from rocket_core.contracts import PLUGIN_BASES
from rocket_core.errors import RocketError

ENTRY_POINT_GROUP = "rocket"
BUILTIN_DIST = "rocket-vla"

# kind -> name of the register hook; one row per plugin kind.
KINDS: dict[str, str] = {
    "vla": "register_vlas",
    "teacher": "register_teachers",
    "projector": "register_projectors",
    "benchmark": "register_benchmarks",
}


@dataclass(frozen=True)
class PluginRecord:
    kind: str
    name: str
    cls: type
    source: str

    @property
    def version(self) -> str:
        return str(getattr(self.cls, "version", "?"))

    @property
    def description(self) -> str:
        """First line only: the listing has one row per plugin."""
        lines = str(getattr(self.cls, "description", "")).strip().splitlines()
        return lines[0] if lines else ""


@dataclass(frozen=True)
class BrokenPlugin:
    name: str
    source: str
    error: str


@dataclass
class Registry:
    """All plugins by kind and name, plus the ones that failed to load."""

    plugins: dict[str, dict[str, PluginRecord]] = field(default_factory=lambda: {k: {} for k in KINDS})
    broken: list[BrokenPlugin] = field(default_factory=list)
    _pm: pluggy.PluginManager = field(default_factory=lambda: _new_manager())

    def register_module(self, module: ModuleType | Any, source: str = "") -> None:
        """Register a module (or object) whose `@hookimpl` functions register plugin classes.

        Tests and embedding applications use this directly; entry points go through `load_registry`.
        """
        source = source or f"module {getattr(module, '__name__', module)}"
        self._pm.register(module)  # pluggy validates the hookimpl signatures against the specs
        for kind, hook_name in KINDS.items():
            for impl in getattr(self._pm.hook, hook_name).get_hookimpls():
                if impl.plugin is module:
                    impl.function(register=lambda cls, _kind=kind: self._add(_kind, cls, source))

    def _add(self, kind: str, cls: type, source: str) -> None:
        base = PLUGIN_BASES[kind]
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise RocketError(f"{source} registered {cls!r} as a {kind} plugin but it is not a {base.__name__}")
        name = cls.name
        existing = self.plugins[kind].get(name)
        if existing is not None and existing.cls is not cls:
            raise RocketError(
                f"two {kind} plugins are named '{name}': one from {existing.source}, one from {source}; "
                "uninstall or rename one of them"
            )
        self.plugins[kind][name] = PluginRecord(kind, name, cls, source)

    def get(self, kind: str, name: str) -> type:
        """The plugin class, or an error listing what is available."""
        records = self.plugins[kind]
        if name not in records:
            available = ", ".join(sorted(records)) or "none"
            hint = ""
            broken = [b for b in self.broken if b.name == name]
            if broken:
                hint = f" (a plugin named '{name}' failed to load: {broken[0].error})"
            raise RocketError(f"unknown {kind} plugin '{name}'{hint}; available {kind} plugins: {available}")
        return records[name].cls

    def records(self) -> list[PluginRecord]:
        return [rec for kind in KINDS for rec in sorted(self.plugins[kind].values(), key=lambda r: r.name)]


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("rocket")
    pm.add_hookspecs(hookspecs)
    return pm


def _source(ep: md.EntryPoint) -> str:
    dist = ep.dist.name if ep.dist is not None else "unknown distribution"
    label = "built-in" if dist == BUILTIN_DIST else dist
    return f"{label} ({ep.value})"


def load_registry(entry_points: bool = True) -> Registry:
    """Build a registry from the `rocket` entry-point group (built-ins are entry points of this package)."""
    reg = Registry()
    if not entry_points:
        return reg
    for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.value, e.name)):
        source = _source(ep)
        try:
            reg.register_module(ep.load(), source)
        except RocketError:
            raise  # duplicate names: the user must choose, we cannot
        except Exception as exc:  # a broken third-party plugin must not break the CLI
            reg.broken.append(BrokenPlugin(ep.name, source, f"{type(exc).__name__}: {exc}"))
    return reg


_CACHED: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _CACHED
    if _CACHED is None:
        _CACHED = load_registry()
    return _CACHED
