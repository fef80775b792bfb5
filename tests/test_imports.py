"""No import cycle inside `pwgen/`, counting imports made inside functions too.

The graph is built from the source with `ast`: an edge per `import a.b.c` (to
`a.b.c`) and per `from a.b import c` (to `a.b.c` when that is a module, else to
`a.b`), at module level or in a function, but not under `if TYPE_CHECKING:` (those
never run). The parent packages Python imports on the way (`a`, `a.b`) are not
edges: a package's `__init__` importing its own submodules is not a cycle.
"""

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "pwgen"


def _module_names(package_dir: Path) -> dict[str, Path]:
    """Dotted module name → file, for every module of the package."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement below `node`, skipping `if TYPE_CHECKING:` bodies."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from _imports_in(other)
            continue
        yield from _imports_in(child)


def _imports_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    else:
        yield from _imports(node)


def _targets(
    statement: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: Mapping[str, Path]
) -> set[str]:
    """The modules of the package `statement` (in `module`) imports."""
    if isinstance(statement, ast.Import):
        names = {alias.name for alias in statement.names}
    else:
        base = statement.module or ""
        if statement.level:
            anchor = module.split(".")
            anchor = anchor[: len(anchor) - statement.level + (1 if is_package else 0)]
            base = ".".join([*anchor, *([base] if base else [])])
        names = {
            f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
            for alias in statement.names
        }
    return {name for name in names if name in known}


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    known = _module_names(package_dir)
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for statement in _imports(tree):
            edges |= _targets(statement, module, is_package, known)
        graph[module] = edges - {module}
    return graph


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One cycle (its modules, the first repeated at the end), or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for child in sorted(graph.get(node, ())):
            cycle = visit(child)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start)
        if cycle:
            return cycle
    return None


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_function_imports_and_skips_type_checking(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("def f():\n    from ..c import x\n")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.sub.b\n"
        "else:\n    import pkg.sub\n"
    )
    graph = import_graph(package)
    assert graph == {
        "pkg": {"pkg.sub.b"},
        "pkg.sub": set(),
        "pkg.sub.b": {"pkg.c"},
        "pkg.c": {"pkg.sub"},
    }
    assert find_cycle(graph) is None


def test_pwgen_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph(ROOT / PACKAGE))
    assert cycle is None, "import cycle in pwgen/: " + " -> ".join(cycle or [])
