"""Checks of the Parsl internals pwgen relies on (pwgen.parsl_internals uses them).

`check_parsl_internals()`, called by `pwgen run` before it loads the config (cheap:
nothing is started), raises one `ParslInternalsError` naming the installed Parsl version
and each broken row of `ASSUMPTIONS`, so a Parsl upgrade fails there and not mid-run.
"""

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from pwgen.parsl_internals import (
    HTEX_MODULE,
    INTERNAL_EXECUTOR,
    STAGING_INHIBIT,
    ParslInternalsError,
    bash_command_call,
    bash_executor,
    resolve,
)

Probe = Callable[[Any, str], str | None]


@dataclass(frozen=True)
class Assumption:
    """One thing pwgen assumes about Parsl.

    owner: dotted path of the Parsl class or module; name: the attribute in it;
    kind: replaced / attribute / method / override / function / constant / convention;
    user: the pwgen code that depends on it; probe: None when it holds, else what is wrong.
    """

    owner: str
    name: str
    kind: str
    user: str
    probe: Probe

    @property
    def label(self) -> str:
        return f"{self.owner.rsplit('.', 1)[-1]}.{self.name}"


def _signature(member: Any, params: tuple[str, ...]) -> str | None:
    if not inspect.isfunction(member):
        return f"not a plain function (a {type(member).__name__})"
    found = tuple(inspect.signature(member).parameters)
    found = found[1:] if found[:1] == ("self",) else found
    return None if found == params else f"parameters {found}, pwgen expects {params}"


def _method(*params: str) -> Probe:
    """A method or function with exactly these parameters (after `self`)."""

    def probe(owner: Any, name: str) -> str | None:
        member = inspect.getattr_static(owner, name, None)
        return "missing" if member is None else _signature(member, params)

    return probe


def _replaceable_method(*params: str) -> Probe:
    """A method the apps call on the instance, which an instance attribute can replace."""

    def probe(owner: Any, name: str) -> str | None:
        problem = _method(*params)(owner, name)
        if problem is None and "__slots__" in vars(owner):
            problem = "instances have __slots__: it cannot be replaced on one"
        callers = [resolve(f"parsl.app.{kind}") for kind in ("python.PythonApp", "bash.BashApp")]
        for app in callers:
            if problem is None and name not in app.__call__.__code__.co_names:
                problem = f"{app.__name__}.__call__ no longer calls dfk.{name}"
        return problem

    return probe


def _launch_hook(owner: Any, name: str) -> str | None:
    problem = _method("task_record")(owner, name)
    caller = inspect.unwrap(owner._launch_if_ready_async)  # under Parsl's wrap_with_logs
    if problem is None and name not in caller.__code__.co_names:
        problem = f"_launch_if_ready_async no longer calls self.{name}"
    return problem


def _instance_attribute(read_by: str) -> Probe:
    """Set by the class's __init__ and read by its public property `read_by`."""

    def probe(owner: Any, name: str) -> str | None:
        if name not in owner.__init__.__code__.co_names:
            return f"no longer set by {owner.__name__}.__init__"
        prop = inspect.getattr_static(owner, read_by, None)
        if not isinstance(prop, property) or prop.fget is None:
            return f"{read_by} is no longer a property"
        if name not in prop.fget.__code__.co_names:
            return f"the property {read_by} no longer reads it"
        return None

    return probe


def _list_of_str(owner: Any, name: str) -> str | None:
    value = getattr(owner, name, None)
    ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
    return None if ok else f"expected a list of str, found {value!r}"


def _bash_task_structure(owner: Any, name: str) -> str | None:
    app = owner(lambda: "true")
    inner = bash_command_call(getattr(app, name, None) or (lambda: None))
    if inner is None:
        return "is no longer wrap_error(partial(remote_side_bash_executor, func))"
    params = tuple(inspect.signature(bash_executor()).parameters)
    if params != ("func", "args", "kwargs") or len(inner.args) != 1 or inner.keywords:
        return "remote_side_bash_executor's arguments changed (pwgen_worker.run_bash takes them)"
    return None


def _names_internal_executor(owner: Any, name: str) -> str | None:
    if INTERNAL_EXECUTOR in getattr(owner, name).__code__.co_consts:
        return None
    return f"its internal executor is no longer labelled {INTERNAL_EXECUTOR!r}"


def _staging_inhibit_keyword(owner: Any, name: str) -> str | None:
    check = getattr(owner, name)
    if check({STAGING_INHIBIT: True}) is True and not check({}):
        return None
    return f"the keyword {STAGING_INHIBIT!r} no longer inhibits staging"


_DFK = "parsl.dataflow.dflow.DataFlowKernel"
_BLOCK_EXECUTOR = "parsl.executors.status_handling.BlockProviderExecutor"
_SUBMIT_PARAMS = ("func", "app_args", "executors", "cache", "ignore_for_cache", "app_kwargs")
_BASH_USER = "pwgen.failover.dispatch (with_bash_runner)"

#: Every Parsl internal pwgen relies on (the functions above say why).
ASSUMPTIONS: tuple[Assumption, ...] = (
    Assumption(_DFK, "launch_task", "replaced", "pwgen.placement", _launch_hook),
    Assumption(
        _DFK,
        "submit",
        "replaced",
        "pwgen.failover.dispatch (replace_submit)",
        _replaceable_method(*_SUBMIT_PARAMS, "join"),
    ),
    Assumption(
        "parsl.app.bash.BashApp",
        "wrapped_remote_function",
        "attribute",
        _BASH_USER,
        _bash_task_structure,
    ),
    Assumption("parsl.app.errors", "wrap_error", "function", _BASH_USER, _method("func")),
    Assumption(
        "parsl.config.Config",
        "_executors",
        "attribute",
        "pwgen.run_config (add_executors)",
        _instance_attribute(read_by="executors"),
    ),
    Assumption(
        "parsl.config.Config",
        "_validate_executors",
        "method",
        "pwgen.run (add_executors)",
        _method(),
    ),
    Assumption(
        _BLOCK_EXECUTOR,
        "_executor_bad_state",
        "attribute",
        "pwgen.executors.site (set_bad_state)",
        _instance_attribute(read_by="bad_state_is_set"),
    ),
    Assumption(
        _BLOCK_EXECUTOR,
        "_executor_exception",
        "attribute",
        "pwgen.executors.site (set_bad_state)",
        _instance_attribute(read_by="executor_exception"),
    ),
    Assumption(
        _BLOCK_EXECUTOR,
        "_tasks",
        "attribute",
        "pwgen.failover.watch (replace_task_future)",
        _instance_attribute(read_by="tasks"),
    ),
    Assumption(
        f"{HTEX_MODULE}.HighThroughputExecutor",
        "_hold_manager",
        "override",
        "pwgen.executors.site.SiteExecutor._hold_manager",
        _method("manager_id"),
    ),
    Assumption(
        "parsl.providers.cluster_provider.ClusterProvider",
        "_write_submit_script",
        "override",
        "pwgen.providers.remote.RemoteClusterProvider._write_submit_script",
        _method("template", "script_filename", "job_name", "configs"),
    ),
    Assumption(
        HTEX_MODULE,
        "DEFAULT_INTERCHANGE_LAUNCH_CMD",
        "constant",
        "pwgen.executors.site (default_interchange_launch_cmd)",
        _list_of_str,
    ),
    Assumption(
        _DFK,
        "__init__",
        "convention",
        f"pwgen.failover, pwgen.staging, pwgen.status ({INTERNAL_EXECUTOR!r})",
        _names_internal_executor,
    ),
    Assumption(
        _DFK,
        "check_staging_inhibited",
        "convention",
        f"pwgen.staging.files (internal_task: {STAGING_INHIBIT!r})",
        _staging_inhibit_keyword,
    ),
)


def broken_assumptions() -> list[str]:
    """What is wrong with each assumption the installed Parsl breaks (empty: all hold)."""
    broken = []
    for assumption in ASSUMPTIONS:
        try:
            problem = assumption.probe(resolve(assumption.owner), assumption.name)
        except Exception as err:  # a module or class that moved away is broken too
            problem = f"cannot be checked: {type(err).__name__}: {err}"
        if problem is not None:
            broken.append(
                f"{assumption.label} ({assumption.kind}, for {assumption.user}): {problem}"
            )
    return broken


_checked = False


def check_parsl_internals() -> None:
    """Raise `ParslInternalsError` unless every assumption holds (checked once a process)."""
    global _checked
    if _checked:
        return
    broken = broken_assumptions()
    if broken:
        raise ParslInternalsError(
            f"Parsl {_installed_parsl()} lacks internals pwgen relies on "
            f"(pwgen/parsl_checks.py): {'; '.join(broken)}. Install a Parsl version "
            f"pwgen supports ({_supported_parsl()})"
        )
    _checked = True


def _installed_parsl() -> str:
    try:
        return metadata.version("parsl")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def _supported_parsl() -> str:
    try:
        requirements = metadata.requires("pwgen") or []
    except metadata.PackageNotFoundError:
        requirements = []
    pins = [req for req in requirements if req.replace("_", "-").startswith("parsl")]
    return ", ".join(pins) or "see pyproject.toml"
