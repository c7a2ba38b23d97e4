"""The package's import graph, built from the source: no cycle (imports inside functions count), and
``compat.py`` imports only the layer-0 parser (docs/architecture.md)."""

import ast
import os

PACKAGE = "recbole_ext"
ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), PACKAGE)


def package_modules():
    """``{dotted module name: file path}`` of every module of the package."""
    modules = {}
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                modules[dotted.removesuffix(".__init__")] = path
    return modules


def imported_modules(module, path, modules):
    """The package modules that ``module`` imports anywhere in its source (``from a import b`` counts as
    an import of ``a.b`` when that is a module, else of ``a``)."""
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != module}


def import_graph():
    modules = package_modules()
    return {m: imported_modules(m, p, modules) for m, p in modules.items()}


def find_cycle(graph):
    """One import cycle as a list of modules (first == last), or ``None``."""
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return trail[trail.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, trail + [nxt])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_find_cycle_on_worked_examples():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    assert len(graph) > 30 and "recbole_ext.trainer.trainer" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_compat_imports_only_layer0_helpers():
    """compat patches RecBole; of recbole_ext it may use only layer-0 helpers: the safe parser (C17) and the
    weights-only value codec (C14)."""
    assert import_graph()["recbole_ext.compat"] <= {"recbole_ext.parsing", "recbole_ext.codec", "recbole_ext.errors"}


def test_lower_layers_never_import_upper_ones():
    """Layers of docs/architecture.md: a module imports only from its own layer or lower ones."""
    layers = {
        "recbole_ext.errors": 0, "recbole_ext.io": 0, "recbole_ext.parsing": 0, "recbole_ext.codec": 0,
        "recbole_ext.stats": 0,
        "recbole_ext.compat": 1, "recbole_ext.checkpoint": 1, "recbole_ext.distributed": 1,
        "recbole_ext.registry": 2, "recbole_ext.options": 2, "recbole_ext.config": 2,
        "recbole_ext.data": 3, "recbole_ext.model": 3, "recbole_ext.evaluator": 3,
        "recbole_ext.trainer": 4,
        "recbole_ext.utils": 5, "recbole_ext.quick_start": 5, "recbole_ext.tune": 5, "recbole_ext.analysis": 5,
        "recbole_ext.seeds": 5,
        "recbole_ext.demo": 6, "recbole_ext.compare": 6, "recbole_ext.frontier": 6, "recbole_ext.cli": 6, "recbole_ext.__main__": 6, "recbole_ext": 6,
    }

    def layer(module):
        while module not in layers:
            module = module.rsplit(".", 1)[0]
        return layers[module]

    upward = [(m, i) for m, imports in import_graph().items() for i in imports if layer(i) > layer(m)]
    assert upward == [], f"lower layers import upper ones: {upward}"
