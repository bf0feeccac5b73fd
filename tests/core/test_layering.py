"""The layering is true: every assay module imports only what comes before it in ``docs/architecture.md``.

The order is read from the doc itself (its ``ground floor:``, arrow and ``top floor:`` lines), so the doc and
this test cannot disagree. Every ``import`` / ``from`` statement in ``src/assay/**/*.py`` counts, at module
level, inside functions and under ``TYPE_CHECKING`` alike, relative or absolute; each lands in one unit
(``assay.<name>``: a package or a top-level module; ``assay`` itself: the package's ``__init__``).

- no import runs back up: a unit imports only itself and the units before it;
- no import circle between modules: the graph of the imports that run (module level and inside functions;
  ``TYPE_CHECKING`` ones never run) has no cycle, within a package or across packages;
- the order names every package and top-level module of ``src/assay`` once;
- the checker is shown to fail on a fabricated upward import and a fabricated circle.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import assay

SRC = Path(assay.__file__).resolve().parent
DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, e.g. assay.report._evaluate
    target: str  # the deepest assay module the statement names, e.g. assay.evaluator._contract
    line: int
    where: str  # "module", "function" or "type" (under TYPE_CHECKING)


def read_order(text: str) -> list[str]:
    """The units in order: the ``ground floor:`` list, the arrow line, the ``top floor:`` list."""
    order: list[str] = []
    fenced = text.split("```")[1] if "```" in text else ""  # the first fenced block holds the order
    for line in fenced.splitlines():
        line = line.strip()
        if line.startswith(("ground floor:", "top floor:")):
            names = line.split(":", 1)[1].split("·")
        elif "→" in line:
            names = line.split("→")
        else:
            continue
        order += [re.split(r"[\s(]", n.strip(), maxsplit=1)[0] for n in names]
    return order


def module_name(path: Path, root: Path) -> tuple[str, bool]:
    """(dotted name, is a package ``__init__``) of a file under ``root`` (the ``assay`` folder)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def _is_module(name: str, root: Path) -> bool:
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    return (root / rel).is_dir() or (root / rel).with_suffix(".py").is_file()


def _targets(node: ast.AST, module: str, is_package: bool, root: Path) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        stem = ".".join(base + ([node.module] if node.module else []))
    else:
        stem = node.module or ""
    if stem.split(".")[0] != "assay":
        return [stem]
    # ``from .x import y``: y may itself be a module (``from . import _foo``)
    return [f"{stem}.{a.name}" if _is_module(f"{stem}.{a.name}", root) else stem for a in node.names]


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def imports_in(text: str, module: str, is_package: bool, root: Path = SRC) -> list[Import]:
    """Every assay import in one module's source, with where it sits."""
    found: list[Import] = []

    def visit(node: ast.AST, where: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = where
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                inner = "function" if where == "module" else where
            elif _is_type_checking(child):
                inner = "type"
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.extend(Import(module, t, child.lineno, where)
                             for t in _targets(child, module, is_package, root) if t.split(".")[0] == "assay")
            visit(child, inner)

    visit(ast.parse(text), "module")
    return found


def scan(root: Path = SRC) -> list[Import]:
    out: list[Import] = []
    for path in sorted(root.rglob("*.py")):
        module, is_package = module_name(path, root)
        out += imports_in(path.read_text(encoding="utf-8"), module, is_package, root)
    return out


def unit(module: str) -> str:
    """The unit a module belongs to: ``assay.report._schema`` -> ``report``; ``assay`` -> ``assay``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "assay"


def upward(imports: list[Import], order: list[str]) -> list[str]:
    """Every import of a unit after the importer's own in ``order`` (and of a unit the order lacks)."""
    rank = {name: i for i, name in enumerate(order)}
    bad = []
    for imp in imports:
        src, dst = unit(imp.source), unit(imp.target)
        if src not in rank or dst not in rank or rank[dst] > rank[src]:
            bad.append(f"{imp.source}:{imp.line} ({imp.where}) imports {imp.target}: {src} -> {dst}")
    return bad


def cycles(imports: list[Import]) -> list[list[str]]:
    """The import circles among modules (strongly connected groups of more than one module, or a self-import),
    over the imports that run: module level and inside functions."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.where != "type":
            graph.setdefault(imp.source, set()).add(imp.target)
            graph.setdefault(imp.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def strong(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in graph[v]:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


# --- the real package ------------------------------------------------------------------------------

def test_the_order_names_every_unit_once():
    order = read_order(DOC.read_text(encoding="utf-8"))
    assert len(order) == len(set(order)), order
    units = {unit(module_name(p, SRC)[0]) for p in SRC.rglob("*.py")}
    assert units == set(order), f"in src but not in the doc: {sorted(units - set(order))}; " \
                                f"in the doc but not in src: {sorted(set(order) - units)}"
    assert order.index("evaluator") < order.index("train") and order.index("judge") < order.index("server")


def test_no_import_runs_back_up():
    order = read_order(DOC.read_text(encoding="utf-8"))
    bad = upward(scan(), order)
    assert not bad, "imports against the order in docs/architecture.md:\n" + "\n".join(bad)


def test_no_import_circles():
    found = cycles(scan())
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


MAX_LATE_IMPORTS = 0.20  # share of assay's own imports written inside functions (inspect_ai: about 13%)
MAX_FUNCTION_LINES = 80


def test_imports_sit_at_module_top():
    """At most 20% of assay's own imports are inside functions: the ones an optional extra (torch,
    sqlalchemy, the providers' SDKs) or the CLI's start-up time needs late, not layering work-arounds."""
    found = [i for i in scan() if i.where != "type"]
    late = [i for i in found if i.where == "function"]
    share = len(late) / len(found)
    assert share <= MAX_LATE_IMPORTS, f"{len(late)} of {len(found)} imports ({share:.1%}) are inside functions"


def test_no_function_is_longer_than_80_lines():
    long = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "functions over 80 lines (split them into named stages):\n" + "\n".join(long)


# --- the checker fails when it should ---------------------------------------------------------------

def test_the_checker_reports_an_upward_import(tmp_path):
    root = tmp_path / "assay"
    (root / "metrics").mkdir(parents=True)
    (root / "server").mkdir()
    for path in (root / "__init__.py", root / "metrics" / "__init__.py", root / "server" / "__init__.py",
                 root / "server" / "_app.py"):
        path.write_text("")
    (root / "metrics" / "_spec.py").write_text(
        "from ..errors import AssayError\n\n\ndef f():\n    from ..server._app import x\n    return x\n")
    (root / "errors.py").write_text("")
    order = ["errors", "metrics", "server", "assay"]
    found = scan(root)
    bad = upward(found, order)
    assert bad == ["assay.metrics._spec:5 (function) imports assay.server._app: metrics -> server"]
    assert upward([i for i in found if i.target != "assay.server._app"], order) == []
    # an absolute import and an import under TYPE_CHECKING count the same
    text = "from typing import TYPE_CHECKING\nimport assay.server\nif TYPE_CHECKING:\n    from ..server import y\n"
    bad = upward(imports_in(text, "assay.metrics._render", False, root), order)
    assert [b.split(" imports ")[1] for b in bad] == ["assay.server: metrics -> server"] * 2
    # a unit the order does not name is reported too
    assert upward([Import("assay.judge._x", "assay.metrics", 1, "module")], order)


def test_the_checker_reports_a_circle():
    imports = [Import("assay.server._app", "assay.server._api", 3, "module"),
               Import("assay.server._api", "assay.server._deps", 4, "module"),
               Import("assay.server._deps", "assay.server._app", 9, "function"),
               Import("assay.server._ui", "assay.server._deps", 2, "module")]
    assert cycles(imports) == [["assay.server._api", "assay.server._app", "assay.server._deps"]]
    assert cycles(imports[:2] + imports[3:]) == []
    # an import only for type checkers never runs: no circle
    assert cycles(imports[:2] + [Import("assay.server._deps", "assay.server._app", 9, "type")]) == []


def test_the_order_is_read_from_the_doc():
    text = ("x\n```\nground floor: errors · _files (ASSAY_HOME) · stats\nmetrics → data → cli\n"
            "top floor: testing · assay (the façade)\n```\n| a | b → c |\n")
    assert read_order(text) == ["errors", "_files", "stats", "metrics", "data", "cli", "testing", "assay"]
