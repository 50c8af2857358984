"""The briefing notebook is committed without outputs and holds no logic: only asmspotter calls.

:func:`notebook_problems` is the check; it is run on the committed notebook and, to show it
can fail, on doctored copies of it.
"""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

import nbformat
import pytest

from asmspotter.report import notebook_path
from asmspotter.report.render import NOTEBOOK_NAME

ROOT = Path(__file__).resolve().parent.parent
#: Statements a cell may hold: imports of asmspotter, calls, and names bound to calls.
ALLOWED = (ast.Import, ast.ImportFrom, ast.Expr, ast.Assign)
#: Nodes that would be logic (or definitions) in a cell's expressions.
FORBIDDEN = (
    ast.BinOp,
    ast.BoolOp,
    ast.UnaryOp,
    ast.Compare,
    ast.IfExp,
    ast.Lambda,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
    ast.Subscript,
    ast.JoinedStr,
)
PARAMETER = re.compile(r"^(\w+): [\w\[\]]+ = .+  # \S.*$")


def _call_problems(node: ast.AST, where: str) -> list[str]:
    problems = [f"{where}: {type(n).__name__}" for n in ast.walk(node) if isinstance(n, FORBIDDEN)]
    if not isinstance(node, ast.Call):
        return problems + [f"{where}: not a call"]
    root = node.func
    while isinstance(root, ast.Attribute):
        root = root.value
    if not (isinstance(root, ast.Name) and root.id == "report"):
        problems.append(f"{where}: calls something other than asmspotter.report")
    return problems


def _parameter_problems(source: str) -> list[str]:
    problems = []
    for line in source.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if not PARAMETER.match(line):
            problems.append(f"parameters: {line!r} is not 'name: type = value  # comment'")
    return problems


def notebook_problems(nb: nbformat.NotebookNode) -> list[str]:
    """Return what is wrong with a briefing notebook (empty when it is right)."""
    problems = []
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    if len(tagged) != 1:
        problems.append(f"{len(tagged)} cells are tagged 'parameters' (want 1)")
    for i, cell in enumerate(code):
        where = f"code cell {i + 1}"
        if cell.get("outputs") or cell.get("execution_count") is not None:
            problems.append(f"{where}: committed with outputs")
        if cell in tagged:
            problems.extend(_parameter_problems(cell.source))
            continue
        for stmt in ast.parse(cell.source).body:
            if not isinstance(stmt, ALLOWED):
                problems.append(f"{where}: {type(stmt).__name__}")
            elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
                module = stmt.module if isinstance(stmt, ast.ImportFrom) else stmt.names[0].name
                if not (module or "").startswith("asmspotter"):
                    problems.append(f"{where}: imports {module}")
            elif isinstance(stmt, ast.Expr):
                problems.extend(_call_problems(stmt.value, where))
            else:
                assert isinstance(stmt, ast.Assign)
                if not all(isinstance(t, ast.Name) for t in stmt.targets):
                    problems.append(f"{where}: assigns to something other than a name")
                problems.extend(_call_problems(stmt.value, where))
    return problems


@pytest.fixture(scope="module")
def committed() -> nbformat.NotebookNode:
    return nbformat.read(notebook_path(), as_version=4)


def test_notebooks_folder_holds_the_shipped_notebook() -> None:
    linked = ROOT / "notebooks" / NOTEBOOK_NAME
    assert linked.exists()
    assert linked.resolve() == notebook_path().resolve()


def test_committed_notebook_has_no_outputs_and_no_logic(committed: nbformat.NotebookNode) -> None:
    nbformat.validate(committed)
    assert notebook_problems(committed) == []
    tagged = next(c for c in committed.cells if "parameters" in c.metadata.get("tags", []))
    names = {m.group(1) for m in map(PARAMETER.match, tagged.source.splitlines()) if m}
    assert {"region", "periods", "source", "model", "language", "catalogue"} <= names
    assert {"shared_data", "output_dir", "cache_dir"} <= names


@pytest.mark.parametrize(
    ("doctor", "complaint"),
    [
        (
            lambda nb: nb.cells[-1].outputs.append(nbformat.v4.new_output("stream", text="x")),
            "outputs",
        ),
        (lambda nb: setattr(nb.cells[-1], "source", "def f():\n    return 1"), "FunctionDef"),
        (lambda nb: setattr(nb.cells[-1], "source", "class A:\n    pass"), "ClassDef"),
        (lambda nb: setattr(nb.cells[-1], "source", "for i in []:\n    pass"), "For"),
        (lambda nb: setattr(nb.cells[-1], "source", "x = report.f(1 + 2)"), "BinOp"),
        (lambda nb: setattr(nb.cells[-1], "source", "import pandas"), "imports pandas"),
        (lambda nb: setattr(nb.cells[-1], "source", "print(1)"), "other than asmspotter"),
        (lambda nb: nb.cells[1].metadata.update(tags=[]), "tagged 'parameters'"),
        (lambda nb: setattr(nb.cells[1], "source", "region = 'x'"), "not 'name: type"),
    ],
)
def test_the_check_fails_on_outputs_and_logic(
    committed: nbformat.NotebookNode,
    doctor,
    complaint: str,  # type: ignore[no-untyped-def]
) -> None:
    nb = copy.deepcopy(committed)
    doctor(nb)
    problems = notebook_problems(nb)
    assert any(complaint in p for p in problems), problems
