"""YAML from users, read with bounded work and one error naming file and line.

    load_yaml(text, source, error)  -> (data, root node), or one `error`

PyYAML's safe loader is safe from code, not from work: its composer recurses (5,000
`[` is a RecursionError), aliases share nodes that a walk or a merge key (`<<`)
expands again each time (a 10-line "billion laughs" is 9**9 strings), a recursive
alias loops, and some values raise plain ValueErrors (a 5,000-digit integer,
2026-02-30). So: nesting is capped while composing, the node graph is walked once
per node (counting what aliases expand to, refused past MAX_EXPANDED), duplicate
keys are refused (PyYAML silently keeps the last), and a value that cannot be built
is reported at its line.
"""

from typing import Any

import yaml
from yaml.constructor import ConstructorError

from pwgen.errors import PwgenError
from pwgen.validation import clip

MAX_DEPTH = 64
# More nodes than a file within the size cap holds without aliases.
MAX_EXPANDED = 1_000_000


class _Loader(yaml.SafeLoader):
    """SafeLoader with a nesting cap and constructor errors at their node."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep", mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as err:
            problem = f"cannot read this value: {err}"
            raise ConstructorError(None, None, problem, node.start_mark) from None


def load_yaml(text: str, source: str, error: type[PwgenError]) -> tuple[Any, yaml.Node | None]:
    """Compose, check and construct one YAML document; any problem is one `error`."""
    try:
        return _load(text, source, error)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        syntax = isinstance(err, yaml.scanner.ScannerError | yaml.parser.ParserError)
        kind = "YAML syntax error" if syntax else "YAML error"
        raise error(f"{where}: {kind}: {clip(str(err.problem))}") from None
    except yaml.YAMLError as err:
        raise error(f"{source}: YAML error: {clip(str(err))}") from None


def _load(text: str, source: str, error: type[PwgenError]) -> tuple[Any, yaml.Node | None]:
    loader = _Loader(text)  # reads (and checks) the first characters already
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        _check_graph(root, source, error)
        return loader.construct_document(root), root
    finally:
        loader.dispose()


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_graph(root: yaml.Node, source: str, error: type[PwgenError]) -> None:
    """Visit every node once (no recursion): duplicate keys, recursive aliases, expansion."""
    expanded: dict[int, int] = {}  # id(node) -> nodes it stands for once aliases expand
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            open_nodes.discard(id(node))
            expanded[id(node)] = 1 + sum(expanded[id(child)] for child in _children(node))
            if expanded[id(node)] > MAX_EXPANDED:
                line = node.start_mark.line + 1
                raise error(f"{source}:{line}: aliases expand to more than {MAX_EXPANDED:,} nodes")
            continue
        if id(node) in expanded:
            continue
        if id(node) in open_nodes:
            raise error(f"{source}:{node.start_mark.line + 1}: an alias refers to itself")
        open_nodes.add(id(node))
        _refuse_duplicate_keys(node, source, error)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in expanded)


def _refuse_duplicate_keys(node: yaml.Node, source: str, error: type[PwgenError]) -> None:
    """PyYAML silently keeps the last of two equal keys; a typo'd copy would be lost."""
    if not isinstance(node, yaml.MappingNode):
        return
    keys: set[Any] = set()
    for key_node, _ in node.value:
        key = key_node.value
        if isinstance(key, list):  # a collection as a key: unhashable, never a site key
            continue
        if key in keys:
            line = key_node.start_mark.line + 1
            raise error(f"{source}:{line}: duplicate key {clip(repr(key))}")
        keys.add(key)
