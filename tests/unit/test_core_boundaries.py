"""The core's boundaries, checked on its source: it names no plugin, benchmark or model, and its modules
import each other without cycles (function-level and type-checking imports included)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "rocket_core"
# `blocks` only as a name of its own (`"blocks"`, `blocks_world`, `.blocks`): `num_blocks` or "VLA blocks" is not it.
NAMES = re.compile(r"libero|robotwin|openvla|vggt|pi0|pi05|paligemma|metaworld|dinov2|depth_anything|toy"
                   r"|(^|[./:])blocks($|[._/:])", re.I)
# Persisted values the core must keep reading: `conventions.json`'s gripper kind of raw LIBERO actions.
ALLOWED = {("conventions.py", "libero_raw")}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in CORE.rglob("*.py"):
        parts = list(path.relative_to(CORE.parent).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes (documentation may cite the references; code may not name them)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def _words(tree: ast.AST) -> list[str]:
    """Every identifier and string literal of the code (comments are not in the tree; docstrings are skipped)."""
    docs, words = _docstrings(tree), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            words.append(node.value)
        elif isinstance(node, ast.Name):
            words.append(node.id)
        elif isinstance(node, ast.Attribute):
            words.append(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            words.append(node.name)
        elif isinstance(node, ast.arg):
            words.append(node.arg)
        elif isinstance(node, ast.keyword) and node.arg:
            words.append(node.arg)
        elif isinstance(node, ast.alias):
            words += [node.name, node.asname or ""]
        elif isinstance(node, ast.ImportFrom):
            words.append(node.module or "")
    return words


def name_hits(root: Path = CORE) -> list[str]:
    """`file: word` for each identifier or string literal in `root` that names a plugin or benchmark."""
    hits = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        for word in _words(ast.parse(path.read_text())):
            if NAMES.search(word) and (rel.name, word) not in ALLOWED:
                hits.append(f"{rel}: {word!r}")
    return hits


def test_the_core_names_no_plugin_benchmark_or_model() -> None:
    """The core reaches plugins only through the contracts and the registry."""
    assert name_hits() == []


def import_graph() -> dict[str, set[str]]:
    """module -> the rocket_core modules it imports anywhere (top level, in functions, under TYPE_CHECKING)."""
    mods, graph = _modules(), {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]  # `from pkg import module` too
            else:
                continue
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_core_has_no_import_cycles() -> None:
    """A cycle means two modules are one: the shared piece belongs in one of them, or below both."""
    graph = import_graph()
    assert len(graph) > 50 and "rocket_core.registry" in graph["rocket_core.eval.policy"]  # sees function-level imports
    assert cycles(graph) == []


def test_the_checks_catch_what_they_look_for(tmp_path: Path) -> None:
    """Mutants: a benchmark named in code, and two modules importing each other inside functions."""
    (tmp_path / "mutant.py").write_text('"""Docstrings may cite LIBERO."""\nSUITE = "libero_goal"  # comment: vggt\n'
                                        'num_blocks = "blocks"\n')
    assert name_hits(tmp_path) == ["mutant.py: 'libero_goal'", "mutant.py: 'blocks'"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
