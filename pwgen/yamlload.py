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

The document is read by libyaml (C) when it can be, and by PyYAML's pure-Python
parser otherwise: any problem the C path meets (a syntax error, a duplicate key,
nesting that might be too deep) sends the text down the Python path, which reports
it exactly as it always has. libyaml caps nesting itself (1,000 levels, from 0.2.5),
so its recursive composer cannot overflow the C stack.
"""

import re
from typing import Any

import yaml
from yaml.constructor import ConstructorError

from pwgen.errors import PwgenError
from pwgen.validation import clip

MAX_DEPTH = 64
# More nodes than a file within the size cap holds without aliases.
MAX_EXPANDED = 1_000_000


class _ValuesAtTheirNode:
    """Constructor errors (ValueError, OverflowError) as ConstructorErrors at their node."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)  # type: ignore[misc]
        except (ValueError, OverflowError) as err:
            problem = f"cannot read this value: {err}"
            raise ConstructorError(None, None, problem, node.start_mark) from None


class _Loader(_ValuesAtTheirNode, yaml.SafeLoader):
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


def _libyaml_loader() -> type | None:
    """libyaml's safe loader, if PyYAML has it and libyaml caps nesting (>= 0.2.5)."""
    if not yaml.__with_libyaml__:
        return None
    from yaml import _yaml

    if _yaml.get_version() < (0, 2, 5):
        return None
    return type("_FastLoader", (_ValuesAtTheirNode, yaml.CSafeLoader), {})


_FastLoader = _libyaml_loader()
# Text PyYAML's reader refuses, and line breaks other than \n and \r: the Python path.
_NON_PRINTABLE = yaml.reader.Reader.NON_PRINTABLE
_ODD_BREAKS = re.compile("[\x85\u2028\u2029]")


def load_yaml(text: str, source: str, error: type[PwgenError]) -> tuple[Any, yaml.Node | None]:
    """Compose, check and construct one YAML document; any problem is one `error`."""
    loaded = _load_fast(text, source, error)
    if loaded is not None:
        return loaded
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


def _load_fast(
    text: str, source: str, error: type[PwgenError]
) -> tuple[Any, yaml.Node | None] | None:
    """The document read by libyaml, or None: no libyaml, or anything to report."""
    if _FastLoader is None or _NON_PRINTABLE.search(text) or _ODD_BREAKS.search(text):
        return None
    loader = _FastLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        if _check_graph(root, source, error) > MAX_DEPTH:  # maybe nested too deep
            return None
        return loader.construct_document(root), root
    except (yaml.YAMLError, PwgenError):
        return None  # the Python path says what, in its words
    finally:
        loader.dispose()


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


def _check_graph(root: yaml.Node, source: str, error: type[PwgenError]) -> int:
    """Visit every collection once (no recursion): duplicate keys, recursive aliases,
    expansion. Returns the graph's height, aliases followed: at least the nesting depth."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes once aliases expand, height)
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            open_nodes.discard(id(node))
            sizes[id(node)] = _size(node, sizes)
            if sizes[id(node)][0] > MAX_EXPANDED:
                line = node.start_mark.line + 1
                raise error(f"{source}:{line}: aliases expand to more than {MAX_EXPANDED:,} nodes")
            continue
        if id(node) in sizes:
            continue
        if id(node) in open_nodes:
            raise error(f"{source}:{node.start_mark.line + 1}: an alias refers to itself")
        open_nodes.add(id(node))
        _refuse_duplicate_keys(node, source, error)
        stack.append((node, True))
        stack.extend(
            (child, False)
            for child in _children(node)
            if not isinstance(child, yaml.ScalarNode) and id(child) not in sizes
        )
    return sizes[id(root)][1]


def _size(node: yaml.Node, sizes: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """A node's (expanded count, height) from its children's (a scalar's: 1, 1)."""
    children = [sizes.get(id(child), (1, 1)) for child in _children(node)]
    return 1 + sum(count for count, _ in children), 1 + max((h for _, h in children), default=0)


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
