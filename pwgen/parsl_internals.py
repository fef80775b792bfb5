"""The Parsl internals pwgen relies on: each named here, checked against the installed Parsl.

Each private attribute, replaced method, overridden private method or naming convention
of Parsl that pwgen depends on is a row of `ASSUMPTIONS`, and every use of one goes
through a small function below (no other pwgen module names a Parsl private attribute).
Overrides of private methods stay in their subclass (`pwgen.executors.site`,
`pwgen.providers.remote`) and are rows here too, so they are checked.

`check_parsl_internals()`, called by `pwgen run` before it loads the config (cheap:
nothing is started), raises one `ParslInternalsError` naming the installed Parsl version
and each broken row, so a Parsl upgrade fails there and not mid-run.
tests/test_parsl_internals.py runs the same checks, and finds uses and overrides of
Parsl private names elsewhere in pwgen.
"""

import functools
import importlib
import inspect
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from pwgen.errors import PwgenError

#: Label of the DataFlowKernel's own thread pool (joins, controller-side staging).
INTERNAL_EXECUTOR = "_parsl_internal"
#: Keyword that tells the DFK not to stage a task's Files (a staging task's own).
STAGING_INHIBIT = "_parsl_staging_inhibit"

Submit = Callable[..., Any]


class ParslInternalsError(PwgenError):
    """The installed Parsl lacks an internal pwgen relies on."""


# --- the uses: one function per internal ----------------------------------------------


def replace_submit(dfk: Any, wrap: Callable[[Submit], Submit]) -> None:
    """Route every app call of `dfk` through `wrap(original submit)`.

    Relies on: `DataFlowKernel.submit` is a plain method that `PythonApp` and `BashApp`
    look up on the DFK instance at each call, so an instance attribute replaces it
    (pwgen.failover.dispatch: allowed sites, first choice, bash walltime).
    """
    dfk.submit = wrap(dfk.submit)


def bash_command_call(func: Callable[..., Any]) -> functools.partial[Any] | None:
    """The `partial(remote_side_bash_executor, app_function)` inside a bash app's task
    function (None for any other function).

    Relies on: `BashApp` submits `wrap_error(partial(remote_side_bash_executor, func))`,
    and `wrap_error` keeps the partial as `__wrapped__` (functools.wraps).
    """
    inner = getattr(func, "__wrapped__", None)
    if isinstance(inner, functools.partial) and inner.func is _bash_executor():
        return inner
    return None


def with_bash_runner(func: Callable[..., Any], runner: Callable[..., Any]) -> Callable[..., Any]:
    """A bash app's task function `func` whose command runs through `runner`, which takes
    `remote_side_bash_executor`'s arguments (pwgen_worker.run_bash kills the command's
    process group on timeout; Parsl's runner leaves it running)."""
    inner = bash_command_call(func)
    if inner is None:
        raise TypeError(f"{func!r} is not a bash app's task function")
    call = functools.partial(runner, *inner.args, **inner.keywords)
    call.__name__ = func.__name__  # type: ignore[attr-defined]  # as Parsl names its own
    wrapped: Callable[..., Any] = _resolve("parsl.app.errors.wrap_error")(call)
    return wrapped


def add_executors(config: Any, executors: Sequence[Any], replacing: Sequence[str] = ()) -> None:
    """Add `executors` to a constructed `Config` (pwgen's stand-ins for unreachable
    sites, pwgen.failover.unavailable), first taking out those labelled `replacing`,
    with Config's own label check run again.

    Relies on: `Config.executors` is a read-only property over `Config._executors`, and
    `Config._validate_executors()` checks the labels.
    """
    kept = [executor for executor in config.executors if executor.label not in replacing]
    config._executors = (*kept, *executors)
    config._validate_executors()


def set_bad_state(executor: Any, exception: Exception) -> None:
    """Mark `executor` bad, as `set_bad_state_and_fail_all` does, but leave its tasks
    alone (pwgen.executors.site fails a snapshot of them, safely from another thread).

    Relies on: `BlockProviderExecutor._executor_exception` (read by the public
    `executor_exception`) and `_executor_bad_state`, a threading.Event read by
    `bad_state_is_set`.
    """
    executor._executor_exception = exception
    executor._executor_bad_state.set()


def replace_task_future(executor: Any, task_id: int, future: Future[Any]) -> None:
    """Put `future` where the executor delivers task `task_id`'s result (a late result of
    a try pwgen already failed lands there, unseen; pwgen.failover.watch).

    Relies on: the public `tasks` property returns the live `_tasks` dict that HTEX's
    result thread pops futures from.
    """
    executor.tasks[task_id] = future


def internal_task(dfk: Any, func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` as an app on the DFK's own thread pool, its Files not staged again: how
    Parsl's own staging providers run their transfers (pwgen.staging.files). `func` must
    accept `**kwargs`: it is called with the inhibiting keyword.

    Relies on: the DFK's internal executor label, and the keyword its
    `check_staging_inhibited` looks for.
    """
    from parsl.app.app import python_app

    app = python_app(executors=[INTERNAL_EXECUTOR], data_flow_kernel=dfk)(func)
    return functools.partial(app, **{STAGING_INHIBIT: True})


def default_interchange_launch_cmd() -> list[str]:
    """HTEX's default `interchange_launch_cmd` (pwgen.executors.site runs the interchange
    in its own session when the user kept the default)."""
    command: list[str] = _resolve(f"{_HTEX_MODULE}.DEFAULT_INTERCHANGE_LAUNCH_CMD")
    return list(command)


def _bash_executor() -> Any:
    return _resolve("parsl.app.bash.remote_side_bash_executor")


# --- the assumptions, and their check ---------------------------------------------------

Probe = Callable[[Any, str], str | None]
_HTEX_MODULE = "parsl.executors.high_throughput.executor"


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
        callers = [_resolve(f"parsl.app.{kind}") for kind in ("python.PythonApp", "bash.BashApp")]
        for app in callers:
            if problem is None and name not in app.__call__.__code__.co_names:
                problem = f"{app.__name__}.__call__ no longer calls dfk.{name}"
        return problem

    return probe


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
    params = tuple(inspect.signature(_bash_executor()).parameters)
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
        f"{_HTEX_MODULE}.HighThroughputExecutor",
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
        _HTEX_MODULE,
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
            problem = assumption.probe(_resolve(assumption.owner), assumption.name)
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
            f"(pwgen/parsl_internals.py): {'; '.join(broken)}. Install a Parsl version "
            f"pwgen supports ({_supported_parsl()})"
        )
    _checked = True


@functools.cache
def _resolve(path: str) -> Any:
    """The module, or the attribute of a module, named by a dotted path."""
    module, _, name = path.rpartition(".")
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as err:
        if not module or err.name != path:  # a module on the way is missing
            raise
        return getattr(_resolve(module), name)


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
