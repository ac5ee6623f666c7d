"""Import hygiene of ``src/memrec``, read from the source with ``ast`` (nothing is imported).

DESIGN.md rules 5 and 6, checked on every module, at module level and inside functions alike:

* no import cycle between modules (the cycle is reported, with the line of each import);
* imports only flow down the layers of :data:`LAYERS` (``memory``, ``nn`` ← ``models`` ←
  ``training``, ``evaluation``, ``serving`` ← ``recommender`` ← ``cli``; ``data``, ``losses``,
  ``metrics`` import nothing from ``models``);
* no ``from memrec.x import _private`` across modules (a private name is not an API);
* no module over :data:`MAX_LINES` lines unless its docstring has a line ``Size: <reason>``;
* every name in a module's ``__all__`` is bound in that module.

What exists today and breaks a rule is listed in the ``KNOWN_*`` allow-lists below, each entry
with the reason and who must remove it: the suite is green now and fails on any *new*
violation, and also on an allow-list entry that no longer matches anything (so the list only
shrinks). The checks themselves are tested on small generated packages at the end of the file.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "memrec"
MAX_LINES = 600

#: Module prefix (relative to ``memrec``; ``__init__`` is the package's own ``__init__.py``)
#: → layer. A module may import modules of its own layer or lower ones; import cycles inside a
#: layer are caught by the cycle check. The longest matching prefix wins. A module that matches
#: no prefix fails :func:`test_every_module_has_a_layer`: place a new top-level module here.
LAYERS: dict[str, int] = {
    # 0: leaf utilities, importable from anywhere
    "__init__": 0,           # only __version__
    "errors": 0,
    "fileio": 0,
    "progress": 0,
    "devices": 0,            # train.device / precision: torch devices, moving batches, autocast
    "allocator": 0,          # glibc: keep freed memory (the memrec command sets it at start)
    "distributed": 0,        # torchrun ranks, DDP wrapping, sharding batches and requests
    # 1: data and the pure building blocks (DESIGN.md: they import nothing from models)
    "data": 1,
    "losses": 1,
    "metrics": 1,
    "beyond_accuracy": 1,    # catalogue metrics of top-K lists: pure, like metrics
    "memory": 1,
    "nn": 1,
    # 2: networks that return scores, built from memory / nn
    "models": 2,
    # 3: what drives models: the training stack (samplers included), protocols, checkpoints,
    #    serving, the streaming protocol, the TransE pre-training runs (training.pretrain loads
    #    them), typed-session purchase evaluation and explanation figures
    "training": 3,
    "sampling": 3,
    "adversarial": 3,
    "knowledge_runs": 3,
    "ksr_knowledge": 3,      # KSR's TransE pretraining (runs hands it train_graph_run)
    "evaluation": 3,
    "purchases": 3,
    "streaming": 3,
    "checkpoint": 3,
    "serving": 3,            # planned in DESIGN.md; placed now so it lands on the right layer
    "plots": 3,
    # 4: the estimator façade
    "recommender": 4,
    # 5: end-to-end runs (read, split, fit through the façade, evaluate, save)
    "runs": 5,
    "all_users": 5,          # every user's top-k of a run, as a table file
    "run_report": 5,         # finished runs side by side (memrec report)
    "tuning": 5,             # hyper-parameter search: trains runs through the façade and runs
    # 6: command line
    "cli": 6,
    "__main__": 6,           # python -m memrec: the command line
}

#: (importer, imported) modules, relative to ``memrec`` → why it is allowed for now, and who
#: must remove it.
KNOWN_LAYER_VIOLATIONS: dict[tuple[str, str], str] = {
}

#: Cycles allowed for now, as frozensets of their modules (none today: keep it that way).
KNOWN_CYCLES: set[frozenset[str]] = set()

#: (importer, imported module, private name) allowed for now (none today).
KNOWN_PRIVATE_IMPORTS: set[tuple[str, str, str]] = set()


# -- reading the package ------------------------------------------------------------------------

@dataclass(frozen=True)
class Import:
    """One import statement's edge to a module of the package."""

    importer: str          # module name relative to the package ("data.splits", "__init__")
    target: str            # the module it loads
    name: str | None       # the name taken from it (``from target import name``), else None
    line: int
    runtime: bool          # False under ``if TYPE_CHECKING:`` (types only, never executed)


def discover(src: Path, package: str) -> dict[str, Path]:
    """Every module of ``src/package`` by name relative to the package; a package's
    ``__init__.py`` is named after the package (``data.readers``), the root's ``__init__``."""
    modules = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = path.relative_to(src / package).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts) or "__init__"] = path
    return modules


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _absolute(name: str, package: str) -> str:
    return package if name == "__init__" else f"{package}.{name}"


def _relative(dotted: str, package: str, modules: dict[str, Path]) -> str | None:
    """``memrec.data.splits.Split`` → ``data.splits``: the longest prefix that is a module of
    the package (``None`` for other packages)."""
    parts = dotted.split(".")
    if parts[0] != package:
        return None
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[1:end]) or "__init__"
        if name in modules:
            return name
    return None


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (its body, not its ``else``)."""
    hidden = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                hidden |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return hidden


def read_imports(src: Path = SRC, package: str = PACKAGE) -> tuple[dict[str, Path], list[Import]]:
    """The modules and every import among them, wherever it stands (module level, functions,
    ``TYPE_CHECKING`` blocks). ``from pkg import name`` loads ``pkg.name`` when that is a module,
    else ``pkg``. Importing ``a.b.c`` also runs the ``__init__`` of ``a`` and ``a.b``; those
    implicit edges are left out, because every submodule would then form a cycle with a package
    ``__init__`` that imports it (``models/__init__.py`` builds the registry from its models)."""
    modules = discover(src, package)
    found = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        hidden = _type_checking_nodes(tree)
        here = _absolute(module, package)
        base = here if _is_package(module, modules) else here.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = _relative(alias.name, package, modules)
                    if target is not None:
                        found.append(Import(module, target, None, node.lineno,
                                            id(node) not in hidden))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parent = base.split(".")[:len(base.split(".")) - node.level + 1]
                    source = ".".join(parent + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    sub = _relative(f"{source}.{alias.name}", package, modules)
                    whole = _relative(source, package, modules)
                    if sub is not None and sub != whole:       # ``from pkg import submodule``
                        found.append(Import(module, sub, None, node.lineno, id(node) not in hidden))
                    elif whole is not None:
                        found.append(Import(module, whole, alias.name, node.lineno,
                                            id(node) not in hidden))
    return modules, found


# -- the checks ---------------------------------------------------------------------------------

def find_cycles(imports: list[Import]) -> list[list[Import]]:
    """One concrete cycle per strongly connected component of the run-time import graph, as the
    imports that form it (``TYPE_CHECKING`` imports never run, so they cannot make a cycle)."""
    edges: dict[str, dict[str, Import]] = {}
    for imp in imports:
        if imp.runtime and imp.target != imp.importer:
            edges.setdefault(imp.importer, {}).setdefault(imp.target, imp)
    nodes = sorted(set(edges) | {t for out in edges.values() for t in out})
    # Tarjan's algorithm, iterative (no recursion limit on deep graphs)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, {}))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    cycles = []
    for component in components:
        # shortest path from the first member back to itself, inside the component (BFS)
        start, inside = component[0], set(component)
        previous: dict[str, str] = {}
        frontier = [start]
        while frontier and start not in previous:
            nxt = []
            for node in frontier:
                for child in sorted(edges.get(node, {})):
                    if child in inside and child not in previous:
                        previous[child] = node
                        nxt.append(child)
            frontier = nxt
        path, node = [], start
        while True:
            path.append(edges[previous[node]][node])
            node = previous[node]
            if node == start:
                break
        cycles.append(path[::-1])
    return cycles


def describe_cycle(cycle: list[Import]) -> str:
    steps = " -> ".join(f"{imp.importer} (line {imp.line})" for imp in cycle)
    return f"{steps} -> {cycle[0].importer}"


def layer_of(module: str) -> int | None:
    """The layer of the longest :data:`LAYERS` prefix of ``module``, None if none matches."""
    best = None
    for prefix, layer in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, layer)
    return None if best is None else best[1]


def layer_violations(imports: list[Import]) -> dict[tuple[str, str], Import]:
    """Imports of a module on a higher layer than the importer's (one per module pair)."""
    bad: dict[tuple[str, str], Import] = {}
    for imp in imports:
        low, high = layer_of(imp.importer), layer_of(imp.target)
        if low is not None and high is not None and high > low:
            bad.setdefault((imp.importer, imp.target), imp)
    return bad


def private_imports(imports: list[Import]) -> dict[tuple[str, str, str], Import]:
    """``from module import _name`` where module is another module of the package (dunders such
    as ``__version__`` are public)."""
    return {(imp.importer, imp.target, imp.name): imp for imp in imports
            if imp.name and imp.name.startswith("_") and not imp.name.endswith("__")
            and imp.target != imp.importer}


def oversized(modules: dict[str, Path], limit: int = MAX_LINES) -> dict[str, int]:
    """Modules over ``limit`` lines whose docstring has no ``Size: <reason>`` line."""
    out = {}
    for module, path in modules.items():
        text = path.read_text(encoding="utf-8")
        n = len(text.splitlines())
        if n <= limit:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        reasons = [line.strip()[len("Size:"):].strip() for line in doc.splitlines()
                   if line.strip().startswith("Size:")]
        if not any(reasons):
            out[module] = n
    return out


def unbound_all_names(modules: dict[str, Path]) -> dict[str, list[str]]:
    """Names listed in a module's literal ``__all__`` but never bound at its top level
    (assignment, def, class or import, including inside top-level ``if`` / ``try``)."""
    out = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bound, listed = set(), None

        def visit(body):
            nonlocal listed
            for stmt in body:
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    bound.add(stmt.name)
                elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
                    bound.update((a.asname or a.name).split(".")[0] for a in stmt.names)
                elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                    for target in targets:
                        for node in ast.walk(target):
                            if isinstance(node, ast.Name):
                                bound.add(node.id)
                                if node.id == "__all__" and isinstance(stmt, ast.Assign):
                                    listed = ast.literal_eval(stmt.value)
                elif isinstance(stmt, (ast.If, ast.Try)):
                    visit(stmt.body)
                    visit(getattr(stmt, "orelse", []))
                    for handler in getattr(stmt, "handlers", []):
                        visit(handler.body)
                    visit(getattr(stmt, "finalbody", []))

        visit(tree.body)
        missing = sorted(set(listed or ()) - bound)
        if missing:
            out[module] = missing
    return out


# -- the package --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def package():
    return read_imports()


def test_the_reader_sees_the_package(package):
    """Guards the checks against reading nothing (a moved src/ would make them all pass)."""
    modules, imports = package
    assert {"__init__", "errors", "data.splits", "memory.write", "models", "cli"} <= set(modules)
    assert len(imports) > 100
    assert any(i.importer == "memory.write" and i.target == "memory.fifo" for i in imports)
    assert any(i.importer == "data.interactions" and i.target == "data.sorting"  # in a function
               for i in imports)


def test_no_import_cycles(package):
    _, imports = package
    cycles = find_cycles(imports)
    new = [describe_cycle(c) for c in cycles
           if frozenset(i.importer for i in c) not in KNOWN_CYCLES]
    assert not new, "import cycles (DESIGN.md: imports flow one way):\n" + "\n".join(new)
    stale = KNOWN_CYCLES - {frozenset(i.importer for i in c) for c in cycles}
    assert not stale, f"KNOWN_CYCLES lists cycles that are gone; remove them: {stale}"


def test_every_module_has_a_layer(package):
    modules, _ = package
    missing = sorted(m for m in modules if layer_of(m) is None)
    assert not missing, f"modules without a layer; add their prefix to LAYERS: {missing}"


def test_imports_follow_the_layers(package):
    _, imports = package
    found = layer_violations(imports)
    new = [f"{imp.importer} (layer {layer_of(imp.importer)}, line {imp.line}) imports "
           f"{imp.target} (layer {layer_of(imp.target)})"
           for key, imp in sorted(found.items()) if key not in KNOWN_LAYER_VIOLATIONS]
    assert not new, "imports against the layer direction (see LAYERS):\n" + "\n".join(new)
    stale = sorted(set(KNOWN_LAYER_VIOLATIONS) - set(found))
    assert not stale, f"KNOWN_LAYER_VIOLATIONS lists imports that are gone; remove them: {stale}"


def test_no_private_names_imported_across_modules(package):
    _, imports = package
    found = private_imports(imports)
    new = [f"{imp.importer} (line {imp.line}): from {imp.target} import {imp.name}"
           for key, imp in sorted(found.items()) if key not in KNOWN_PRIVATE_IMPORTS]
    assert not new, ("private names imported from another module (make the name public, or "
                     "move it where it is used):\n" + "\n".join(new))
    stale = sorted(KNOWN_PRIVATE_IMPORTS - set(found))
    assert not stale, f"KNOWN_PRIVATE_IMPORTS lists imports that are gone; remove them: {stale}"


def test_no_module_over_the_size_limit_without_a_reason(package):
    modules, _ = package
    found = oversized(modules)
    assert not found, (f"modules over {MAX_LINES} lines (DESIGN.md rule 6): split them, or give "
                       f"the reason in a docstring line 'Size: ...': {found}")


def test_all_lists_name_bound_names(package):
    modules, _ = package
    found = unbound_all_names(modules)
    assert not found, f"__all__ names that the module does not define: {found}"


# -- the checks themselves, on generated packages -----------------------------------------------

def make_package(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path → source) as package ``memrec`` under ``root``."""
    for rel, text in {"__init__.py": "", **files}.items():
        path = root / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_checker_reports_a_cycle_through_a_function_level_import(tmp_path):
    src = make_package(tmp_path, {
        "data/__init__.py": "",
        "data/a.py": "from .b import f\n",
        "data/b.py": "def f():\n    from memrec.data import c\n",
        "data/c.py": "import memrec.data.a\n",
        "data/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n",
    })
    _, imports = read_imports(src)
    cycles = find_cycles(imports)
    assert len(cycles) == 1
    assert describe_cycle(cycles[0]) == ("data.a (line 1) -> data.b (line 2) -> data.c (line 1) "
                                         "-> data.a")


def test_checker_ignores_type_checking_imports_for_cycles(tmp_path):
    src = make_package(tmp_path, {
        "a.py": "from . import b\n",
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import X\n",
    })
    assert find_cycles(read_imports(src)[1]) == []


def test_checker_reports_upward_and_private_imports(tmp_path):
    src = make_package(tmp_path, {
        "models/__init__.py": "",
        "models/base.py": "_HIDDEN = 1\nfrom ..cli import main\n",
        "memory/__init__.py": "",
        "memory/read.py": "def f():\n    from ..models.base import _HIDDEN\n",
        "cli.py": "",
    })
    _, imports = read_imports(src)
    assert set(layer_violations(imports)) == {("models.base", "cli"),
                                              ("memory.read", "models.base")}
    assert set(private_imports(imports)) == {("memory.read", "models.base", "_HIDDEN")}


def test_checker_reports_long_modules_without_a_size_reason(tmp_path):
    body = "x = 1\n" * MAX_LINES
    src = make_package(tmp_path, {
        "long.py": '"""Long."""\n' + body,
        "reasoned.py": '"""Long.\n\nSize: one table of constants, nothing to split.\n"""\n' + body,
        "empty_reason.py": '"""Long.\n\nSize:\n"""\n' + body,
        "short.py": body[:-6],
    })
    assert set(oversized(discover(src, PACKAGE))) == {"long", "empty_reason"}


def test_checker_reports_unbound_all_names(tmp_path):
    src = make_package(tmp_path, {
        "a.py": "from .b import g\n__all__ = ['f', 'g', 'h']\ndef f():\n    pass\n",
        "b.py": "def g():\n    pass\n",
    })
    assert unbound_all_names(discover(src, PACKAGE)) == {"a": ["h"]}
