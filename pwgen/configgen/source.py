"""Values as Python source: the `Call` and `Ref` an executor is described by, and `pyrepr`.

A generated config is rendered, not assembled by hand: each executor is a `Call` (a
constructor name and its keyword arguments, each with an optional comment saying where
its value came from) that `pyrepr` writes one keyword argument per line.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_INDENT = "    "


@dataclass(frozen=True)
class Ref:
    """A bare name in the generated source (a module-level constant)."""

    name: str


@dataclass(frozen=True)
class Call:
    """A constructor call in the generated source: `name(**kwargs)`.

    `comments` maps a keyword to a comment rendered after it (where the value came from).
    """

    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    comments: Mapping[str, str] = field(default_factory=dict)

    def names(self) -> set[str]:
        """Every constructor name used by this call and its nested calls."""
        found = {self.name}
        for value in self.kwargs.values():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, Call):
                    found |= item.names()
        return found


@dataclass(frozen=True)
class ExecutorSource:
    label: str
    variable: str
    summary: str
    call: Call
    notes: tuple[str, ...] = ()

    @property
    def code(self) -> str:
        return pyrepr(self.call)


def pyrepr(value: Any, depth: int = 0) -> str:
    """Python source for a literal, a `Ref` or a `Call` (also in a list), one keyword
    argument (or list item holding a call) per line."""
    if isinstance(value, Ref):
        return value.name
    if isinstance(value, Call):
        if not value.kwargs:
            return f"{value.name}()"
        inner = _INDENT * (depth + 1)
        lines = []
        for key, item in value.kwargs.items():
            comment = value.comments.get(key)
            lines.append(
                f"{inner}{key}={pyrepr(item, depth + 1)},"
                f"{f'  # {comment_text(comment)}' if comment else ''}\n"
            )
        return f"{value.name}(\n{''.join(lines)}{_INDENT * depth})"
    if isinstance(value, list) and any(isinstance(item, Call | Ref) for item in value):
        inner = _INDENT * (depth + 1)
        items = "".join(f"{inner}{pyrepr(item, depth + 1)},\n" for item in value)
        return f"[\n{items}{_INDENT * depth}]"
    return repr(value)


def comment_text(text: str) -> str:
    """`text` as one line of a `#` comment in the generated module.

    The values comments quote (partition names, versions, env paths) come from sites
    and their facts: a newline would end the comment and start a statement that runs
    on `import`. Every unprintable character is written as its Python escape; the
    rest, quotes and backslashes included, is inert in a comment and stays as it is.
    """
    if text.isprintable():  # nearly always: the text as it is
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def docstring_text(text: str) -> str:
    """`text` inside the module's docstring: as `comment_text`, and every backslash and
    double quote escaped too (a `\"\"\"` would end the docstring, `\\N` start an escape)."""
    if text.isprintable() and "\\" not in text and '"' not in text:
        return text
    return "".join("\\" + char if char in '\\"' else comment_text(char) for char in text)


def _escaped(char: str) -> str:
    return char.encode("unicode_escape").decode("ascii")
