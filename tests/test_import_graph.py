"""The import graph: no cycles inside a package, lazy or not, and the driver and the
pack never import each other.

Read from the source with ``ast``, not by importing, so that every import counts:
module level, inside functions, under ``if TYPE_CHECKING``, absolute and relative,
``from . import x`` (the submodule x, when there is one) and
``importlib.import_module("...")`` / ``__import__("...")`` with a literal name. A cycle
held together by a function-level import is still a cycle: the module that needs
something from above is in the wrong place (architecture.md, "Rules").
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

Graph = dict[str, dict[str, list[int]]]  # module -> imported module -> line numbers


def package_modules(package: str, root: Path = ROOT) -> dict[str, Path]:
    """Every module of ``package`` (a dotted name under ``root``) -> its file; a
    package is its __init__.py."""
    base = root.joinpath(*package.split("."))
    if not (base / "__init__.py").is_file():
        raise AssertionError(f"{package}: no package at {base}")
    modules = {}
    for path in sorted(base.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None, where: str) -> str:
    """The absolute name of ``from <level dots><name> import ...`` in ``module``."""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    if level - 1 > len(parts):
        raise AssertionError(f"{where}: relative import goes above the repository root")
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, *(name.split(".") if name else [])])


def _literal_import_call(node: ast.Call) -> str | None:
    """The module named by importlib.import_module("x") / import_module("x") / __import__("x")."""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if called not in ("import_module", "__import__") or not node.args:
        return None
    first = node.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def imports_of(module: str, path: Path) -> Iterator[tuple[list[str], int]]:
    """(candidate absolute names, line) for each import in the file, most specific first:
    ``from a import b`` could be module a.b or name b of module a."""
    is_package = path.name == "__init__.py"
    where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield [alias.name], node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = (
                _resolve_relative(module, is_package, node.level, node.module, f"{where}:{node.lineno}")
                if node.level
                else node.module or ""
            )
            for alias in node.names:
                yield ([f"{base}.{alias.name}", base] if alias.name != "*" else [base]), node.lineno
        elif isinstance(node, ast.Call):
            name = _literal_import_call(node)
            if name is not None:
                if name.startswith("."):
                    level = len(name) - len(name.lstrip("."))
                    name = _resolve_relative(
                        module, is_package, level, name.lstrip(".") or None, f"{where}:{node.lineno}"
                    )
                yield [name], node.lineno


def _known(names: list[str], modules: dict[str, Path]) -> str | None:
    """The first candidate that is (or lies inside) one of ``modules``: the longest
    module prefix of it, so ``pkg.errors.DriverError`` is ``pkg.errors``."""
    for name in names:
        parts = name.split(".")
        for n in range(len(parts), 0, -1):
            if ".".join(parts[:n]) in modules:
                return ".".join(parts[:n])
    return None


def import_graph(package: str, root: Path = ROOT) -> Graph:
    modules = package_modules(package, root)
    graph: Graph = {m: {} for m in modules}
    for module, path in modules.items():
        for names, line in imports_of(module, path):
            target = _known(names, modules)
            if target is not None:
                graph[module].setdefault(target, []).append(line)
    return graph


def _components(graph: Graph) -> list[list[str]]:
    """Strongly connected components (Tarjan), each with more than one module or a self-import."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _shortest_cycle(graph: Graph, component: list[str]) -> list[str]:
    """A shortest cycle inside the component (the first by name among equals)."""
    return min((_cycle_through(graph, start, set(component)) for start in component), key=len)


def _cycle_through(graph: Graph, start: str, inside: set[str]) -> list[str]:
    """A shortest cycle from ``start`` back to it, staying ``inside``."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph[v]):
            if w not in inside:
                continue
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if w not in came_from:
                came_from[w] = v
                queue.append(w)
    raise AssertionError(f"no cycle through {start} in {sorted(inside)}")  # cannot happen in a component


def find_cycles(graph: Graph) -> list[str]:
    """One readable cycle per tangle: 'a -> b (a.py line 3) -> a (b.py line 9, in a function)'."""
    out = []
    for comp in _components(graph):
        cycle = _shortest_cycle(graph, comp)
        steps = [cycle[0]] + [
            f"{b} (line {', '.join(map(str, sorted(set(graph[a][b]))))} of {a})" for a, b in zip(cycle, cycle[1:])
        ]
        extra = f"; tangled with {', '.join(m for m in comp if m not in cycle)}" if len(comp) > len(cycle) - 1 else ""
        out.append(" -> ".join(steps) + extra)
    return out


# -- the real packages ----------------------------------------------------------------------------


@pytest.mark.parametrize("package", ["driver", "comfy_avatar_nodes.core"])
def test_no_import_cycles(package: str) -> None:
    cycles = find_cycles(import_graph(package))
    assert not cycles, (
        f"import cycles in {package} (the module that imports upward is in the wrong place):\n  " + "\n  ".join(cycles)
    )


@pytest.mark.parametrize("package, foreign", [("driver", "comfy_avatar_nodes"), ("comfy_avatar_nodes", "driver")])
def test_the_driver_and_the_pack_never_import_each_other(package: str, foreign: str) -> None:
    hits = [
        f"{path.relative_to(ROOT)}:{line} imports {names[0]}"
        for module, path in package_modules(package).items()
        for names, line in imports_of(module, path)
        if any(name == foreign or name.startswith(foreign + ".") for name in names)
    ]
    assert not hits, f"{package} must not import {foreign} (the driver speaks HTTP only):\n  " + "\n  ".join(hits)


# -- the walker itself, on a package made for it --------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_every_kind_of_import_is_an_edge(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from .low import VALUE\n",
            "pkg/low.py": "VALUE = 1\n",
            "pkg/mid.py": "from . import low, VALUE\nimport pkg.sub.deep\nimport os\n",
            "pkg/lazy.py": "def f():\n    from .mid import x\n",
            "pkg/typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import lazy\n",
            "pkg/dyn.py": "import importlib\nimportlib.import_module('.typed', __package__)\n__import__('pkg.low')\n",
            "pkg/sub/__init__.py": "from .. import low\n",
            "pkg/sub/deep.py": "from ..mid import thing\nfrom . import *\n",
        },
    )
    graph = {m: sorted(deps) for m, deps in import_graph("pkg", tmp_path).items()}
    assert graph == {
        "pkg": ["pkg.low"],
        "pkg.low": [],
        "pkg.mid": ["pkg", "pkg.low", "pkg.sub.deep"],  # `VALUE` is a name of pkg, `low` a submodule
        "pkg.lazy": ["pkg.mid"],
        "pkg.typed": ["pkg.lazy"],
        "pkg.dyn": ["pkg.low", "pkg.typed"],
        "pkg.sub": ["pkg.low"],
        "pkg.sub.deep": ["pkg.mid", "pkg.sub"],
    }


def test_a_cycle_through_a_function_level_import_is_reported_with_its_path(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from .b import x\n",
            "pkg/b.py": "def later():\n    from . import c\n",
            "pkg/c.py": "import pkg.a\n",
            "pkg/d.py": "from .a import y\n",
        },
    )
    assert find_cycles(import_graph("pkg", tmp_path)) == [
        "pkg.a -> pkg.b (line 1 of pkg.a) -> pkg.c (line 2 of pkg.b) -> pkg.a (line 1 of pkg.c)"
    ]
