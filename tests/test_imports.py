"""No import cycles between project modules (``b2bua/`` and ``media/``).

The import graph is built from the source with :mod:`ast`, nothing is imported. Every import
statement counts, wherever it is: at module level, inside a function or method, under
``if TYPE_CHECKING:``. A cycle hidden in a function or behind TYPE_CHECKING is still a design
cycle (the modules cannot be understood, tested or split apart on their own), so it fails too.

Resolution rules:

- relative imports are resolved against the importing module's package (``from ..sip import x``);
- ``from pkg import name`` imports the module ``pkg.name`` when there is one, else ``pkg``;
- ``import a.b.c`` imports ``a.b.c``;
- importing ``a.b.c`` also runs the ``__init__`` of ``a`` and ``a.b``; an edge to a package's
  ``__init__`` (explicit or implied) counts only when that ``__init__`` itself imports something from
  the project, and never towards the importer's own enclosing packages (they are already running).

A failure lists each cycle as ``a -> b -> a`` followed by the ``file:line`` of every import that
makes one of its edges: one of those imports has to go (move the shared code to a leaf module).
"""

from __future__ import annotations

import ast
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("b2bua", "media")


# -- the graph --------------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class Edge:
    """One import statement that makes ``source`` depend on ``target``."""

    source: str
    target: str
    path: str  # relative to the scanned root
    line: int
    statement: str
    where: str  # "module level", "in function f", "under TYPE_CHECKING", ...

    def describe(self) -> str:
        return f"{self.path}:{self.line}: {self.source} -> {self.target}: {self.statement}  [{self.where}]"


def discover(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Module name -> file, for every .py file under ``root/<package>`` (``__init__.py`` is the package)."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


@dataclass(frozen=True)
class _Import:
    """An import statement, resolved to absolute dotted names (before matching them to modules)."""

    line: int
    statement: str
    where: str
    #: (base module, names imported from it); ``import a.b`` is ("a.b", ())
    base: str
    names: tuple[str, ...]


class _Collector(ast.NodeVisitor):
    """Every import statement at any depth, with where it sits (function, TYPE_CHECKING block)."""

    def __init__(self, module: str, is_package: bool, source: str):
        self.package = module if is_package else module.rpartition(".")[0]
        self.source_lines = source.splitlines()
        self.scopes: list[str] = []
        self.found: list[_Import] = []

    def _where(self) -> str:
        return ", ".join(self.scopes) or "module level"

    def _statement(self, node: ast.stmt) -> str:
        end = node.end_lineno or node.lineno
        return " ".join(line.strip() for line in self.source_lines[node.lineno - 1:end])

    def _scoped(self, label: str, node: ast.AST) -> None:
        self.scopes.append(label)
        self.generic_visit(node)
        self.scopes.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._scoped(f"in function {node.name}", node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._scoped(f"in function {node.name}", node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scoped(f"in class {node.name}", node)

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
            self.visit(test)
            self.scopes.append("under TYPE_CHECKING")
            for child in node.body:
                self.visit(child)
            self.scopes.pop()
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append(_Import(node.lineno, self._statement(node), self._where(), alias.name, ()))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            parts = self.package.split(".") if self.package else []
            if node.level - 1 > len(parts):
                return  # beyond the top-level package: not ours to resolve (Python raises ImportError)
            parts = parts[:len(parts) - (node.level - 1)]
            if node.module:
                parts.append(node.module)
            base = ".".join(parts)
        else:
            base = node.module or ""
        names = tuple(alias.name for alias in node.names)
        self.found.append(_Import(node.lineno, self._statement(node), self._where(), base, names))


def _collect(module: str, path: Path) -> list[_Import]:
    source = path.read_text(encoding="utf-8")
    collector = _Collector(module, path.name == "__init__.py", source)
    collector.visit(ast.parse(source, filename=str(path)))
    return collector.found


def build_graph(root: Path, packages: Iterable[str]) -> dict[str, list[Edge]]:
    """Module -> its import edges to other project modules."""
    modules = discover(root, packages)
    imports = {name: _collect(name, path) for name, path in modules.items()}
    packages_ = {name for name, path in modules.items() if path.name == "__init__.py"}

    def project_targets(base: str, names: tuple[str, ...]) -> set[str]:
        """The project modules one import statement names, before the ``__init__`` rule."""
        out: set[str] = set()
        if names:
            for name in names:
                if f"{base}.{name}" in modules:
                    out.add(f"{base}.{name}")
                elif base in modules:
                    out.add(base)
        elif base in modules:
            out.add(base)
        else:  # ``import a.b.c`` where only ``a.b`` exists here: the deepest module we have
            parts = base.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            if parts:
                out.add(".".join(parts))
        return out

    def imports_project(package: str) -> bool:
        return any(project_targets(i.base, i.names) - {package} for i in imports[package])

    graph: dict[str, list[Edge]] = {name: [] for name in modules}
    for source, found in imports.items():
        own = set(_ancestors(source)) | ({source} if source in packages_ else set())
        for imp in found:
            targets = project_targets(imp.base, imp.names)
            implied = {a for t in targets for a in _ancestors(t)}
            for target in sorted(targets | implied):
                if target == source or target in own:
                    continue
                if target in packages_ and not imports_project(target):
                    continue
                rel = modules[source].relative_to(root).as_posix()
                graph[source].append(Edge(source, target, rel, imp.line, imp.statement, imp.where))
    return graph


def _ancestors(module: str) -> Iterator[str]:
    parts = module.split(".")
    for n in range(1, len(parts)):
        yield ".".join(parts[:n])


# -- cycles -----------------------------------------------------------------------------------
def strongly_connected(nodes: Iterable[str], succ: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components with more than one module, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(nodes):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(succ.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(succ.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))
    return sorted(out)


def _shortest_path(succ: dict[str, set[str]], start: str, goal: str, within: set[str]) -> list[str]:
    previous: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            path = [node]
            while (before := previous[path[-1]]) is not None:
                path.append(before)
            return path[::-1]
        for child in sorted(succ.get(node, ())):
            if child in within and child not in previous:
                previous[child] = node
                queue.append(child)
    raise AssertionError(f"{goal} is not reachable from {start} inside its component")


def find_cycles(graph: dict[str, list[Edge]]) -> list[list[str]]:
    """Import cycles as module lists ``[a, b, a]``: for every edge inside a strongly connected
    component, the shortest cycle through it. Every edge that takes part in a cycle shows up in
    at least one of them, so the report names every import that could break one."""
    succ: dict[str, set[str]] = defaultdict(set)
    for source, edges in graph.items():
        for e in edges:
            succ[source].add(e.target)
    cycles: dict[tuple[str, ...], list[str]] = {}
    for component in strongly_connected(graph, succ):
        members = set(component)
        for source in component:
            for target in sorted(succ[source] & members):
                cycle = [source, *_shortest_path(succ, target, source, members)]
                ring = cycle[:-1]
                turn = ring.index(min(ring))
                key = tuple(ring[turn:] + ring[:turn])
                cycles.setdefault(key, [*key, key[0]])
    return [cycles[k] for k in sorted(cycles, key=lambda k: (len(k), k))]


def report(graph: dict[str, list[Edge]], cycles: list[list[str]]) -> str:
    """Each cycle with the file:line of every import making each of its edges."""
    by_pair: dict[tuple[str, str], list[Edge]] = defaultdict(list)
    for edges in graph.values():
        for e in edges:
            by_pair[(e.source, e.target)].append(e)
    out = [f"{len(cycles)} import cycle(s) between project modules; break one edge of each by moving the "
           "shared code to a leaf module (function-level and TYPE_CHECKING imports count too):"]
    for cycle in cycles:
        out.append("")
        out.append(" -> ".join(cycle))
        for source, target in pairwise(cycle):
            out.extend(f"    {e.describe()}" for e in sorted(by_pair[(source, target)]))
    return "\n".join(out)


# -- the tests --------------------------------------------------------------------------------
def test_no_import_cycles() -> None:
    graph = build_graph(ROOT, PACKAGES)
    assert len(graph) > 20, "the project modules were not found"
    assert any(graph.values()), "no imports between project modules were found"
    cycles = find_cycles(graph)
    assert not cycles, report(graph, cycles)


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_detector_finds_a_cycle_through_type_checking_and_function_imports(tmp_path: Path) -> None:
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from .b import B\n",
        "pkg/b.py": "class B:\n    def f(self):\n        from . import a\n        return a\n",
        "pkg/c.py": "import pkg.a\n",
    })
    graph = build_graph(tmp_path, ["pkg"])
    cycles = find_cycles(graph)
    assert cycles == [["pkg.a", "pkg.b", "pkg.a"]]
    text = report(graph, cycles)
    assert "pkg.a -> pkg.b -> pkg.a" in text
    assert "pkg/a.py:4: pkg.a -> pkg.b: from .b import B  [under TYPE_CHECKING]" in text
    assert "pkg/b.py:3: pkg.b -> pkg.a: from . import a  [in class B, in function f]" in text


def test_detector_passes_an_acyclic_tree(tmp_path: Path) -> None:
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from .sub import c\nfrom .b import thing\nimport pkg.sub.d\n",
        "pkg/b.py": "from pkg.sub.c import f\n\nthing = 1\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "import os\nfrom .. import sub\nfrom . import d\n\ndef f():\n    from ..sub.d import g\n",
        "pkg/sub/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import nothing_here\n",
    })
    graph = build_graph(tmp_path, ["pkg"])
    assert {(e.source, e.target) for edges in graph.values() for e in edges} == {
        ("pkg.a", "pkg.sub.c"), ("pkg.a", "pkg.b"), ("pkg.a", "pkg.sub.d"),
        ("pkg.b", "pkg.sub.c"), ("pkg.sub.c", "pkg.sub.d"),
    }
    assert find_cycles(graph) == []


def test_detector_counts_a_package_init_only_when_it_imports_the_project(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.sub import helper\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/helper.py": "x = 1\n",
        "pkg/sub/other.py": "import pkg.a\n",
    }
    _write(tmp_path, files)
    assert find_cycles(build_graph(tmp_path, ["pkg"])) == []
    # the package re-exports a module that imports pkg.a: pkg.a -> pkg.sub (implied) -> ... -> pkg.a
    _write(tmp_path, {"pkg/sub/__init__.py": "from .other import pkg\n"})
    graph = build_graph(tmp_path, ["pkg"])
    assert find_cycles(graph) == [["pkg.a", "pkg.sub", "pkg.sub.other", "pkg.a"]]
    assert "pkg/a.py:1: pkg.a -> pkg.sub: from pkg.sub import helper  [module level]" in report(
        graph, find_cycles(graph))


def test_detector_reports_every_edge_of_a_larger_component(tmp_path: Path) -> None:
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from . import b\n",
        "pkg/b.py": "from . import a, c\n",
        "pkg/c.py": "from .a import x\n",
    })
    cycles = find_cycles(build_graph(tmp_path, ["pkg"]))
    assert cycles == [["pkg.a", "pkg.b", "pkg.a"], ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
