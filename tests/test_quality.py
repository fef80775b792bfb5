"""The code base stays ruff- and mypy-clean: checked by the suite, not only by habit."""

import ast
from pathlib import Path

import pytest
from helpers import BIN, REPO, run_ok


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy"],
    ],
)
def test_tool_is_clean(command: list[str]) -> None:
    run_ok([str(BIN / command[0]), *command[1:]], cwd=REPO)


#: Lines of logic a function may have: its body after the signature and docstring, so
#: typer commands and Parsl executors with long argument lists are measured by what
#: they do, not by what they accept.
MAX_FUNCTION_BODY = 50
#: Lines a module may have before it should be split by concept.
MAX_MODULE_LINES = 400


def _python_sources() -> list[Path]:
    # Not the scripts a role copies to sites (pwgen_relay.py, pwgen_worker.py): each runs
    # there alone, so it stays one file.
    shipped = set((REPO / "pwgen" / "ansible").glob("ansible_collections/*/*/roles/*/files/*.py"))
    package = [path for path in (REPO / "pwgen").rglob("*.py") if path not in shipped]
    return sorted([*package, REPO / "pwgen_script.py"])


def _body_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = function.body
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and len(body) > 1:
        body = body[1:]  # the docstring
    return (function.end_lineno or function.lineno) - body[0].lineno + 1


def test_functions_and_modules_stay_small() -> None:
    too_long = []
    for path in _python_sources():
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(REPO)
        if text.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = _body_lines(node)
                if lines > MAX_FUNCTION_BODY:
                    too_long.append(f"{name}:{node.lineno} {node.name}: {lines} lines of body")
    assert too_long == [], "split these by concept:\n" + "\n".join(too_long)


def test_no_private_name_is_imported_from_another_module() -> None:
    """A `_name` is its module's own: another module needing it means it is public."""
    found = []
    for path in [
        *_python_sources(),
        *(REPO / "tests").glob("*.py"),
        *(REPO / "bench").glob("*.py"),
    ]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pwgen"):
                private = [
                    a.name
                    for a in node.names
                    if a.name.startswith("_") and not a.name.endswith("__")
                ]
                found += [f"{path.relative_to(REPO)}: {node.module}.{name}" for name in private]
    assert found == []
