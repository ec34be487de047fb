"""Plugin discovery: built-ins and third-party packages alike come through entry points.

Group `rocket` holds plugin modules (VLAs, teachers, projectors, benchmarks); group `rocket.commands` holds
light modules that add CLI commands (loaded by `rocket_cli.main`). A broken package never takes the CLI down: an
import error, a raising hook, an unknown hook name, a class that is not an adapter of its kind and a name
that two packages claim are each recorded as a `Problem` naming the package (`rocket plugins` lists them),
and everything else keeps working. Only *using* a name that two packages claim fails, naming both.

Listing costs only imports: nothing here builds a model or imports torch.
"""
from __future__ import annotations

import difflib
import importlib.metadata as md
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable, Iterable, Iterator, Mapping

import pluggy

from rocket_core import hookspecs
from rocket_core.contracts import BenchmarkAdapter, ProjectorStrategy, TeacherAdapter, VLAAdapter
from rocket_core.errors import RocketError

ENTRY_POINT_GROUP = "rocket"
COMMANDS_GROUP = "rocket.commands"
BUILTIN_DIST = "rocket-vla"

# kind -> the base class its plugins subclass; one row per plugin kind, registered by hook `register_<kind>s`.
KINDS: dict[str, type] = {
    "vla": VLAAdapter,
    "teacher": TeacherAdapter,
    "projector": ProjectorStrategy,
    "benchmark": BenchmarkAdapter,
}


def hook_name(kind: str) -> str:
    """The `hookspecs` hook that registers plugins of `kind`."""
    return f"register_{kind}s"


# The hooks each entry-point group calls; any other hook a module implements is reported, not ignored.
GROUP_HOOKS: dict[str, tuple[str, ...]] = {
    ENTRY_POINT_GROUP: tuple(hook_name(kind) for kind in KINDS),
    COMMANDS_GROUP: ("register_commands",),
}


@dataclass(frozen=True)
class PluginRecord:
    kind: str
    name: str
    cls: type[Any]  # a subclass of `KINDS[kind]`
    source: str
    package: str = ""  # the distribution that installed it ("" when registered directly, e.g. in tests)
    package_version: str = ""

    def provenance(self) -> dict[str, str | None]:
        """What a checkpoint records about the plugin, so a later load can say what to install."""
        return {"name": self.name, "package": self.package or None, "version": self.package_version or None}

    @property
    def version(self) -> str:
        return str(self.cls.version)

    @property
    def description(self) -> str:
        """First line only: the listing has one row per plugin."""
        return first_line(self.cls.description)


@dataclass(frozen=True)
class Problem:
    """Something an installed package provides that cannot be used: one line in `rocket plugins`."""

    source: str  # "distribution (entry point)", as in `PluginRecord.source`
    message: str
    name: str = ""  # the plugin or entry-point name concerned, for hints in `Registry.get`

    def line(self) -> str:
        return f"{self.source}: {self.message}"


@dataclass(frozen=True)
class CommandModule:
    """A `rocket.commands` entry point whose hook ran (kind `command` in `rocket plugins`)."""

    name: str
    source: str
    description: str


@dataclass
class CommandPlugins:
    """What `rocket_cli.main` loaded from `rocket.commands` (on demand): `rocket plugins` lists it."""

    modules: list[CommandModule] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


@dataclass
class Registry:
    """All plugins by kind and name, names claimed twice, and what could not be loaded."""

    plugins: dict[str, dict[str, PluginRecord]] = field(default_factory=lambda: {k: {} for k in KINDS})
    duplicates: dict[tuple[str, str], list[PluginRecord]] = field(default_factory=dict)  # records after the first
    problems: list[Problem] = field(default_factory=list)
    _pm: pluggy.PluginManager = field(default_factory=lambda: new_manager())

    def register_module(self, module: ModuleType | Any, source: str = "", package: tuple[str, str] = ("", "")) -> None:
        """Register a module (or object) whose `@hookimpl` functions register plugin classes.

        Tests and embedding applications use this directly; entry points go through `load_registry`.
        Whatever is wrong with the module is recorded in `problems`; its usable classes still register.
        `package` is the (distribution, version) that installed the module.
        """
        source = source or f"module {getattr(module, '__name__', module)}"
        kind_of = {hook_name(kind): kind for kind in KINDS}
        for hook, function in hook_functions(self._pm, module, ENTRY_POINT_GROUP, source, self.problems):
            staged: list[Any] = []  # a hook that raises registers nothing, not half of its classes
            try:
                function(register=staged.append)
            except Exception as exc:  # a third-party bug must not break the CLI
                self.problems.append(Problem(source, f"{hook} raised {one_line(exc)}; its plugins were skipped"))
                continue
            for cls in staged:
                self._add(kind_of[hook], cls, source, package)

    def _add(self, kind: str, cls: Any, source: str, package: tuple[str, str] = ("", "")) -> None:
        base = KINDS[kind]
        if not (isinstance(cls, type) and issubclass(cls, base)):
            self.problems.append(Problem(source, f"registered {cls!r} as a {kind} plugin, but it is not a "
                                                 f"{base.__name__} subclass; skipped"))
            return
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            self.problems.append(Problem(source, f"{kind} plugin {cls.__name__} sets no `name`; skipped"))
            return
        existing = self.plugins[kind].get(name)
        if existing is None:
            self.plugins[kind][name] = PluginRecord(kind, name, cls, source, *package)
        elif existing.cls is not cls:
            self.duplicates.setdefault((kind, name), []).append(PluginRecord(kind, name, cls, source))
            self.problems.append(Problem(
                source, f"{kind} name '{name}' is also registered by {existing.source}; using it fails until "
                        "one of them is renamed or uninstalled", name))

    def get(self, kind: str, name: str, recorded: Mapping[str, Any] | None = None) -> type[Any]:  # a `KINDS[kind]`
        """The plugin class, or an error listing what is available (or naming both claimants of `name`).

        `recorded` is the plugin's `PluginRecord.provenance()` saved with a checkpoint: it names what to install.
        """
        records = self.plugins[kind]
        if (kind, name) in self.duplicates:
            sources = [records[name].source] + [r.source for r in self.duplicates[kind, name]]
            raise RocketError(f"{kind} plugin '{name}' is ambiguous: it is registered by {' and by '.join(sources)}; "
                              "uninstall or rename one of them")
        if name not in records:
            available = ", ".join(sorted(records)) or "none"
            hint = ""
            problems = [p for p in self.problems if p.name == name]
            if problems:
                hint = f" (a plugin named '{name}' failed to load: {problems[0].line()})"
            elif recorded and recorded.get("package"):
                pin = f"{recorded['package']}=={recorded['version']}" if recorded.get("version") else recorded["package"]
                hint = f": it came from package {pin}; pip install {pin}"
            else:
                hint = suggestion(name, records)
            raise RocketError(f"unknown {kind} plugin '{name}'{hint}; available {kind} plugins: {available}")
        return records[name].cls

    def records(self) -> list[PluginRecord]:
        """Every registered class, duplicates included, by kind then name."""
        out: list[PluginRecord] = []
        for kind in KINDS:
            extra = [r for (k, _), recs in self.duplicates.items() if k == kind for r in recs]
            out += sorted([*self.plugins[kind].values(), *extra], key=lambda r: (r.name, r.source))
        return out


def new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("rocket")
    pm.add_hookspecs(hookspecs)
    return pm


def first_line(text: Any) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[0].strip() if lines else ""


def one_line(exc: BaseException) -> str:
    """`Type: message` on one line (pluggy's validation errors span several)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def hook_functions(pm: pluggy.PluginManager, module: Any, group: str, source: str,
                   problems: list[Problem]) -> list[tuple[str, Callable[..., Any]]]:
    """The `(hook, function)` pairs of `module` that `group` calls; every other hook becomes a problem.

    pluggy checks the signatures against the specs when registering; unknown names (a misspelt
    `register_teacher`) it only keeps aside, so they are reported here instead of silently ignored.
    """
    if pm.is_registered(module):  # the same module behind two entry points registers once
        return []
    try:
        pm.register(module)
    except Exception as exc:  # pluggy.PluginValidationError: a hook with the wrong arguments
        problems.append(Problem(source, f"invalid hook: {one_line(exc)}"))
        return []
    callers = pm.get_hookcallers(module) or []
    if not callers:
        problems.append(Problem(source, "defines no @hookimpl function, so it registers nothing"))
    allowed = GROUP_HOOKS[group]
    found: list[tuple[str, Callable[..., Any]]] = []
    for caller in callers:
        if caller.name in allowed:
            found += [(caller.name, impl.function) for impl in caller.get_hookimpls() if impl.plugin is module]
        else:
            problems.append(Problem(source, _unknown_hook(caller.name, group)))
    return found


def _unknown_hook(name: str, group: str) -> str:
    for other, hooks in GROUP_HOOKS.items():
        if name in hooks:
            return f"hook '{name}' is not called for entry-point group '{group}'; declare this module under '{other}'"
    allowed = GROUP_HOOKS[group]
    guess = difflib.get_close_matches(name, allowed, n=1)
    hint = f"did you mean '{guess[0]}'?" if guess else f"known hooks: {', '.join(allowed)}"
    return f"unknown hook '{name}' was ignored; {hint}"


def _source(ep: md.EntryPoint) -> str:
    dist = ep.dist.name if ep.dist is not None else "unknown distribution"
    label = "built-in" if dist == BUILTIN_DIST else dist
    return f"{label} ({ep.value})"


def _package(ep: md.EntryPoint) -> tuple[str, str]:
    return (ep.dist.name, ep.dist.version) if ep.dist is not None else ("", "")


def suggestion(name: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for a near miss among `choices`, else nothing: every typo hint reads the same."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def load_entry_points(group: str, problems: list[Problem]) -> Iterator[tuple[md.EntryPoint, str, Any]]:
    """`(entry point, source, loaded object)` for each entry point of `group`, built-ins first.

    One that fails to import becomes a problem (named after the entry point) and is skipped.
    """
    def order(ep: md.EntryPoint) -> tuple[bool, str, str]:
        return (ep.dist is None or ep.dist.name != BUILTIN_DIST, ep.value, ep.name)

    for ep in sorted(md.entry_points(group=group), key=order):
        source = _source(ep)
        try:
            loaded = ep.load()
        except Exception as exc:  # a broken third-party package must not break the CLI
            problems.append(Problem(source, f"import failed: {one_line(exc)}", ep.name))
            continue
        yield ep, source, loaded


def load_registry(entry_points: bool = True) -> Registry:
    """Build a registry from the `rocket` entry-point group (built-ins are entry points of this package)."""
    reg = Registry()
    if entry_points:
        for ep, source, module in load_entry_points(ENTRY_POINT_GROUP, reg.problems):
            reg.register_module(module, source, _package(ep))
    return reg


_CACHED: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _CACHED
    if _CACHED is None:
        _CACHED = load_registry()
    return _CACHED


def loaded_records() -> list[PluginRecord]:
    """The plugins of the process-wide registry if it was built (an error can only come from a loaded plugin)."""
    return _CACHED.records() if _CACHED is not None else []
