"""What a site's strings may hold: nothing Ansible runs, nothing ssh or pip reads as an option.

    refuse_template(text)        `{{`, `{%`, `{#` or a leading `#jinja2:` -> ValueError
    refuse_control(text)         a control character (a newline ends a config line) -> ValueError
    refuse_code(value)           both, on a string or each string of a list or tuple
    check_proxy_jump(text)       every hop is [user@]host[:port] -> ValueError
    check_requirement(text)      one PEP 508 requirement, no URL -> ValueError

Ansible (2.19) trusts the inventory pwgen writes and templates every value in it, so
`{{ lookup('pipe', ...) }}` in any site string would run on the controller at
`pwgen provision`. `#jinja2:` at the start of a string changes the delimiters.
`ssh -J` hands hops to a shell-run ProxyCommand; `pip download` reads an entry
starting with `-` as an option for the whole lock, and `name @ url` would fetch (and
build, on the controller) whatever the URL holds, outside the index the lock pins.
"""

import ipaddress
import re
from typing import Any

from pwgen.validation import shown

TEMPLATE_MARKERS = ("{{", "{%", "{#")
JINJA_OVERRIDE = "#jinja2:"
# A user name ssh and the schedulers accept; a host name or IPv4 address (or ssh alias).
USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*\$?$")
_HOST_NAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
_PORT = re.compile(r"^[0-9]{1,5}$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CONTROL_OR_TAB = re.compile(r"[\x00-\x1f\x7f]")
# What either check below refuses, in one search (most strings have none of it).
_SUSPECT = re.compile(r"\{[{%#]|^#jinja2:|[\x00-\x08\x0a-\x1f\x7f]")


def refuse_template(text: str) -> str:
    if any(marker in text for marker in TEMPLATE_MARKERS) or text.startswith(JINJA_OVERRIDE):
        raise ValueError(
            f"{shown(text)} holds an Ansible template marker ({{{{, {{%, {{# or #jinja2:), "
            "which Ansible would run"
        )
    return text


def refuse_control(text: str) -> str:
    """No control character but tab: a newline in a path would start a new line of
    `.pwgen/ssh/config` (`ProxyCommand ...`, run by ssh on the controller)."""
    bad = control_character(text)
    if bad is not None:
        raise ValueError(f"{shown(text)} holds a control character ({bad!r})")
    return text


def control_character(text: str, tab: bool = False) -> str | None:
    """The first control character of `text` (a tab too when `tab`), or None."""
    found = (_CONTROL_OR_TAB if tab else _CONTROL).search(text)
    return found.group() if found else None


def refuse_code(value: Any) -> Any:
    """A model field's value (a string, or a list or tuple of them): no template marker,
    no control character. Other values pass unchanged."""
    texts = (value,) if isinstance(value, str) else value if isinstance(value, list | tuple) else ()
    for text in texts:
        if isinstance(text, str) and _SUSPECT.search(text):
            refuse_control(refuse_template(text))
    return value


def check_proxy_jump(text: str) -> str:
    for number, hop in enumerate(text.split(","), start=1):
        problem = _hop_problem(hop)
        if problem:
            raise ValueError(f"hop {number} {shown(hop)} {problem}")
    return text


def _hop_problem(hop: str) -> str:
    """Why one ProxyJump hop is not [user@]host[:port], or ""."""
    user, at, rest = hop.rpartition("@")
    if at and not USER.match(user):
        return "has a bad user name (expected [user@]host[:port])"
    if rest.startswith("["):
        address, bracket, port = rest[1:].partition("]")
        if not bracket or not _is_ipv6(address) or (port and not port.startswith(":")):
            return "is not [user@][IPv6 address][:port]"
        port = port[1:]
    else:
        host, colon, port = rest.partition(":")
        if not _HOST_NAME.match(host):
            return "is not [user@]host[:port] (host: a name, an IPv4 or an [IPv6] address)"
        if colon and not port:
            return "has an empty port"
    if port and not (_PORT.match(port) and 1 <= int(port) <= 65535):
        return "has a port that is not a number between 1 and 65535"
    return ""


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def check_requirement(text: str) -> str:
    from packaging.requirements import InvalidRequirement, Requirement  # only when given

    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        raise ValueError(
            f"{shown(text)} is not a requirement such as 'numpy>=1.26' "
            "(one package: name[extras] version; markers; no pip options)"
        ) from None
    if requirement.url:
        raise ValueError(
            f"{shown(text)} names a URL: extra packages come from the package index "
            "the lock uses, not from `name @ url`"
        )
    return text
