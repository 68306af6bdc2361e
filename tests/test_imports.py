"""The package's import structure, read from the source with ``ast`` (nothing is imported):

* no import circle among ``pseudolabel`` modules, counting the imports that run when a module is
  imported (module level, including under ``if``/``try`` and in class bodies; not those inside
  functions, nor under ``if TYPE_CHECKING:``);
* no module imports a private name (``_name``) from another ``pseudolabel`` module, wherever the
  import stands, except inside the ``pseudolabel.store`` package, whose modules share internals.

Importing ``a.b.c`` runs the ``__init__`` of ``a`` and ``a.b`` too, but a package's ``__init__``
that imports its own submodules must not count as a circle with those submodules, so an import
makes an edge to the module it names only: ``from pkg import sub`` (a submodule) to ``pkg.sub``,
``from pkg import name`` (anything else) to ``pkg``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "pseudolabel"
ROOT = Path(__file__).resolve().parents[1] / "src" / PACKAGE
PRIVATE_OK = (f"{PACKAGE}.store",)  # packages whose modules may import each other's private names


def _module_files() -> dict[str, Path]:
    """Module name -> file, for every module of the package; a package shadows a module of its name."""
    found: dict[str, Path] = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        name = ".".join(parts)
        if name in found and found[name].name == "__init__.py":
            continue  # store/__init__.py wins over store.py, as in Python's import system
        found[name] = path
    return found


MODULES = _module_files()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names (relative imports resolved against ``module``)."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if _is_package(module) else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, tree: ast.Module, *, module_level: bool):
    """(statement, imported module, names imported from it) for each import of ``tree``."""

    def walk(node):
        for child in ast.iter_child_nodes(node):
            if module_level and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue  # runs when called, not when the module is imported
            if module_level and isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from (x for n in child.orelse for x in walk_one(n))
                continue
            yield from walk_one(child)

    def walk_one(node):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            yield node, _resolve(module, node), [alias.name for alias in node.names]
        else:
            yield from walk(node)

    yield from walk(tree)


def _targets(source: str, names: list[str]) -> list[str]:
    """The package modules one import statement depends on (see the module docstring)."""
    if not names:  # import a.b.c
        return [source] if source in MODULES else []
    subs = [f"{source}.{n}" for n in names if f"{source}.{n}" in MODULES]
    plain = [n for n in names if f"{source}.{n}" not in MODULES]
    return subs + ([source] if plain and source in MODULES else [])


def _trees() -> dict[str, ast.Module]:
    return {m: ast.parse(p.read_text(encoding="utf-8"), filename=str(p)) for m, p in MODULES.items()}


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported package module: line of the first such import}."""
    graph: dict[str, dict[str, int]] = {}
    for module, tree in _trees().items():
        edges = graph.setdefault(module, {})
        for node, source, names in _imports(module, tree, module_level=True):
            for target in _targets(source, names):
                if target != module:
                    edges.setdefault(target, node.lineno)
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One circle per strongly connected component with more than one module (Tarjan), each as a
    path that starts and ends at the same module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_circle_in(graph, set(c)) for c in sorted(components)]


def _circle_in(graph: dict[str, dict[str, int]], component: set[str]) -> list[str]:
    """A shortest circle through the component's first module (breadth-first search)."""
    start = min(component)
    previous: dict[str, str | None] = {start: None}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph.get(v, {})):
            if w == start:
                path = [v]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                return path[::-1] + [start]
            if w in component and w not in previous:
                previous[w] = v
                queue.append(w)
    raise AssertionError(f"no circle through {start} in {sorted(component)}")


def _describe(graph, circle: list[str]) -> str:
    steps = [f"{a} (line {graph[a][b]})" for a, b in zip(circle, circle[1:])]
    return " -> ".join(steps + [circle[-1]])


def test_the_package_is_found():
    assert f"{PACKAGE}" in MODULES and f"{PACKAGE}.datasets" in MODULES, sorted(MODULES)


def test_no_import_circle():
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, "import circles among pseudolabel modules (module-level imports):\n" + "\n".join(
        _describe(graph, c) for c in cycles)


def test_no_private_name_imported_across_modules():
    found = []
    for module, tree in _trees().items():
        if any(module == p or module.startswith(p + ".") for p in PRIVATE_OK):
            continue
        for node, source, names in _imports(module, tree, module_level=False):
            if source != PACKAGE and not source.startswith(PACKAGE + "."):
                continue
            private = [n for n in names if n.startswith("_") and not (n.startswith("__") and n.endswith("__"))]
            if private and source != module:
                found.append(f"{MODULES[module].relative_to(ROOT.parent)}:{node.lineno}: "
                             f"from {source} import {', '.join(private)}")
    assert not found, "private names imported from another pseudolabel module:\n" + "\n".join(found)


# ----------------------------------------------------------------------------- the checker itself

@pytest.fixture
def this_module():
    import sys

    return sys.modules[__name__]


def test_checker_finds_a_circle_and_ignores_imports_in_functions(this_module, monkeypatch):
    sources = {
        "pseudolabel.a": "from pseudolabel.b import x\n",
        "pseudolabel.b": "import pseudolabel.c\n",
        "pseudolabel.c": "from pseudolabel import a\ndef f():\n    from pseudolabel.b import x\n",
        "pseudolabel.d": "def f():\n    import pseudolabel.a\n",
    }
    monkeypatch.setattr(this_module, "MODULES", {m: Path(m.replace(".", "/") + ".py") for m in sources})
    monkeypatch.setattr(this_module, "_trees", lambda: {m: ast.parse(s) for m, s in sources.items()})
    graph = this_module.import_graph()
    assert graph["pseudolabel.d"] == {}
    assert find_cycles(graph) == [["pseudolabel.a", "pseudolabel.b", "pseudolabel.c", "pseudolabel.a"]]


def test_checker_lets_a_package_init_import_its_submodules(this_module, monkeypatch):
    sources = {
        "pseudolabel.pkg": "from pseudolabel.pkg.app import run\nfrom . import images\n",
        "pseudolabel.pkg.app": "from pseudolabel.pkg.images import load\nfrom . import images\n",
        "pseudolabel.pkg.images": "import numpy\n",
        "pseudolabel.user": "from pseudolabel.pkg import run\n",
    }
    files = {m: Path(m.replace(".", "/") + ".py") for m in sources}
    files["pseudolabel.pkg"] = Path("pseudolabel/pkg/__init__.py")
    monkeypatch.setattr(this_module, "MODULES", files)
    monkeypatch.setattr(this_module, "_trees", lambda: {m: ast.parse(s) for m, s in sources.items()})
    graph = this_module.import_graph()
    assert set(graph["pseudolabel.pkg"]) == {"pseudolabel.pkg.app", "pseudolabel.pkg.images"}
    assert set(graph["pseudolabel.pkg.app"]) == {"pseudolabel.pkg.images"}
    assert set(graph["pseudolabel.user"]) == {"pseudolabel.pkg"}
    assert find_cycles(graph) == []
