"""The import graph, read from the source with ``ast`` (nothing is imported): which part of fairspeech may import which.

Layers, bottom up:

* core: ``config.py``, ``errors.py``, ``accelerator.py`` (device profiles), ``utils/``: imports no other part of fairspeech;
* the audit side: ``audit.py``, ``data``, ``metrics``, ``cohorts``, ``engines``, ``report``: never imports
  torch or a model package, at module level or inside a function (an audit runs without torch);
* ``training`` (the one loop, its callbacks and checkpoints) under the model packages: imports none of them;
* the model packages (``asr``, ``hardware``, ``verification``, ``mitigation``, ``updates``, ``demo`` (the
  synthetic corpus builder, which runs pocketsphinx and the speaker encoder) and any new one): no cycle between any two of them, or with the audit side (``verification`` may import ``asr``
  as long as ``asr`` never imports ``verification``);
* on top, the command line (``cli.py``), which imports everything. The package root imports nothing
  when it is imported (its names are resolved lazily), so it counts as core.

Every import counts: ``import x``, ``from x import y`` (relative ones resolved), and
``importlib.import_module("x")`` / ``__import__("x")`` with a literal name; those under
``if TYPE_CHECKING:`` do not (they never run). What the code does today against these rules and is
not simple to move is listed in ``KNOWN_EXCEPTIONS``, each with its reason; a new one fails.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fairspeech"
CORE = {"config", "errors", "utils", "accelerator"}
AUDIT_SIDE = {"audit", "data", "metrics", "cohorts", "engines", "report"}
TOP = {"cli"}
TORCH = ("torch", "torchaudio", "resemblyzer")  # resemblyzer imports torch

# (importing module, imported module) -> why it is allowed for now.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Imports(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool):
        self.module, self.package = module, module if is_package else module.rpartition(".")[0]
        self.found: list[tuple[str, int, bool]] = []  # (imported module, line, inside a function)
        self.depth = 0

    def _add(self, name: str, node: ast.AST) -> None:
        self.found.append((name, node.lineno, self.depth > 0))

    def visit_FunctionDef(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_If(self, node):
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node):
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node):
        if node.level:
            base = self.package.split(".")[: len(self.package.split(".")) - node.level + 1]
            name = ".".join([*base, node.module] if node.module else base)
        else:
            name = node.module
        self._add(name, node)
        for alias in node.names:  # "from fairspeech.asr import checkpoint": the submodule too, where it is one
            candidate = f"{name}.{alias.name}"
            if _exists(candidate):
                self._add(candidate, node)

    def visit_Call(self, node):
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        if called in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            self._add(node.args[0].value, node)
        self.generic_visit(node)


def _exists(module: str) -> bool:
    if not module.startswith("fairspeech."):
        return False
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports() -> dict[str, list[tuple[str, int, bool]]]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        visitor = _Imports(_module_name(path), path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        out[visitor.module] = visitor.found
    return out


IMPORTS = _imports()


def part(module: str) -> str:
    """The top-level part of fairspeech a module belongs to: ``asr``, ``audit`` (the whole audit side), ``core``, ..."""
    name = module.split(".")[1] if module.count(".") else ""
    return "audit" if name in AUDIT_SIDE else "core" if name in CORE or not name else name


def _internal(name: str) -> bool:
    return name == "fairspeech" or name.startswith("fairspeech.")


def _where(importer: str, imported: str, line: int, inside: bool) -> str:
    return f"{importer}:{line} imports {imported}" + (" (inside a function)" if inside else "")


def _edges():
    """(importer, imported, line, inside a function) for every import of fairspeech code by fairspeech code."""
    for importer, found in IMPORTS.items():
        for imported, line, inside in found:
            if _internal(imported):
                yield importer, imported, line, inside


def _excepted(importer: str, imported: str) -> bool:
    return (importer, imported) in KNOWN_EXCEPTIONS


def test_the_graph_is_read():
    assert "fairspeech.audit" in IMPORTS and "fairspeech.config" in IMPORTS and len(IMPORTS) > 50
    assert ("fairspeech.errors", 0, False) not in IMPORTS["fairspeech.config"]
    assert any(imported == "fairspeech.errors" for imported, _, _ in IMPORTS["fairspeech.config"])


def test_core_imports_only_core():
    bad = [_where(a, b, line, inside) for a, b, line, inside in _edges()
           if part(a) == "core" and part(b) != "core" and not _excepted(a, b)]
    assert not bad, "core modules (config, errors, utils) import only core:\n" + "\n".join(bad)


def test_audit_side_imports_no_torch_and_no_model_package():
    torch_core = {m for m, found in IMPORTS.items() if part(m) == "core" and any(n.split(".")[0] in TORCH for n, _, _ in found)}
    bad = []
    for importer, found in IMPORTS.items():
        if part(importer) != "audit":
            continue
        for imported, line, inside in found:
            forbidden = imported.split(".")[0] in TORCH or imported in torch_core or (
                _internal(imported) and part(imported) not in ("audit", "core"))
            if forbidden and not _excepted(importer, imported):
                bad.append(_where(importer, imported, line, inside))
    assert not bad, "the audit side (audit.py, data, metrics, cohorts, engines, report) runs without torch or a model package:\n" + "\n".join(bad)


def test_no_cycle_between_packages():
    graph, why = defaultdict(set), {}
    for importer, imported, line, inside in _edges():
        a, b = part(importer), part(imported)
        if a != b and a not in TOP and b not in TOP and "core" not in (a, b) and not _excepted(importer, imported):
            graph[a].add(b)
            why.setdefault((a, b), _where(importer, imported, line, inside))
    cycles = []
    for start in sorted(graph):  # a path from start back to itself, by breadth-first search
        paths, seen = [[start]], {start}
        while paths:
            path = paths.pop(0)
            for nxt in sorted(graph[path[-1]]):
                if nxt == start:
                    cycles.append(path + [start])
                    paths = []
                    break
                if nxt not in seen:
                    seen.add(nxt)
                    paths.append(path + [nxt])
    assert not cycles, "package import cycles:\n" + "\n".join(
        " -> ".join(c) + ": " + "; ".join(why[(x, y)] for x, y in zip(c, c[1:])) for c in cycles)


def test_known_exceptions_still_exist():
    """A listed exception that the code no longer has must leave the list (so it cannot come back unnoticed)."""
    present = {(a, b) for a, b, _, _ in _edges()}
    gone = sorted(set(KNOWN_EXCEPTIONS) - present)
    assert not gone, f"no longer imported, remove from KNOWN_EXCEPTIONS: {gone}"


def test_training_layer_sits_under_every_model_package():
    """The training loop takes any model: it imports core, the audit side (k-means helpers) and itself only."""
    bad = [_where(a, b, line, inside) for a, b, line, inside in _edges()
           if part(a) == "training" and part(b) not in ("core", "audit", "training") and not _excepted(a, b)]
    assert not bad, "fairspeech.training imports a model package:\n" + "\n".join(bad)
    users = {part(a) for a, b, _, _ in _edges() if part(b) == "training"}
    assert {"asr", "mitigation", "updates", "verification"} <= users  # every trainer runs on it
