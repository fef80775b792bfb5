"""pwgen.parsl_internals: every Parsl internal pwgen relies on, checked against the
installed Parsl; its uses on real Parsl objects; no use of one anywhere else in pwgen.
"""

import ast
import functools
import importlib
import inspect
import pkgutil
import re
import sys
from collections.abc import Iterator
from concurrent.futures import Future
from importlib import metadata
from pathlib import Path
from typing import Any

import parsl
import pytest
from helpers import REPO, assert_one_line_error, run_pwgen
from parsl.app.app import python_app
from parsl.app.bash import BashApp
from parsl.app.errors import RemoteExceptionWrapper
from parsl.config import Config
from parsl.errors import ConfigurationError
from parsl.executors import HighThroughputExecutor
from parsl.executors.status_handling import BlockProviderExecutor
from parsl.executors.threads import ThreadPoolExecutor

import pwgen
from pwgen import parsl_checks, parsl_internals
from pwgen.parsl_checks import ASSUMPTIONS, Assumption, check_parsl_internals
from pwgen.parsl_internals import (
    INTERNAL_EXECUTOR,
    STAGING_INHIBIT,
    ParslInternalsError,
    add_executors,
    bash_command_call,
    internal_task,
    replace_submit,
    replace_task_future,
    set_bad_state,
    with_bash_runner,
)

PARSL_DIR = Path(parsl.__file__).parent


@pytest.fixture
def fresh_check(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The check runs again, and sees what the test patched into Parsl."""
    monkeypatch.setattr(parsl_checks, "_checked", False)
    parsl_internals.resolve.cache_clear()
    yield
    parsl_internals.resolve.cache_clear()


# --- the assumptions hold, and each kind of check can fail ----------------------------


@pytest.mark.parametrize("assumption", ASSUMPTIONS, ids=lambda a: a.label)
def test_assumption_holds_on_the_installed_parsl(assumption: Assumption) -> None:
    owner = parsl_internals.resolve(assumption.owner)
    assert assumption.probe(owner, assumption.name) is None


def _submit_without_join(self: Any, func: Any, app_args: Any, executors: Any) -> None: ...


@pytest.mark.parametrize(
    ("target", "name", "value", "needle"),
    [
        ("parsl.config.Config", "_validate_executors", None, "Config._validate_executors"),
        (
            "parsl.dataflow.dflow.DataFlowKernel",
            "submit",
            _submit_without_join,
            "DataFlowKernel.submit (replaced",
        ),
        (
            "parsl.executors.status_handling.BlockProviderExecutor",
            "tasks",
            property(lambda self: {}),
            "the property tasks no longer reads it",
        ),
        (
            "parsl.app.bash",
            "wrap_error",
            lambda func: lambda *args, **kwargs: func(*args, **kwargs),  # no functools.wraps
            "BashApp.wrapped_remote_function",
        ),
        (
            "parsl.app.bash",
            "remote_side_bash_executor",
            lambda func, command: None,
            "remote_side_bash_executor's arguments changed",
        ),
        (
            "parsl.executors.high_throughput.executor",
            "DEFAULT_INTERCHANGE_LAUNCH_CMD",
            "interchange.py",
            "DEFAULT_INTERCHANGE_LAUNCH_CMD (constant",
        ),
        (
            "parsl.dataflow.dflow.DataFlowKernel",
            "check_staging_inhibited",
            staticmethod(lambda kwargs: False),
            STAGING_INHIBIT,
        ),
    ],
)
def test_a_broken_internal_fails_the_check_naming_parsl_and_the_internal(
    fresh_check: None,
    monkeypatch: pytest.MonkeyPatch,
    target: str,
    name: str,
    value: Any,
    needle: str,
) -> None:
    owner = parsl_internals.resolve(target)
    if value is None:
        monkeypatch.delattr(owner, name)
    else:
        monkeypatch.setattr(owner, name, value)
    with pytest.raises(ParslInternalsError) as raised:
        check_parsl_internals()
    message = str(raised.value)
    assert f"Parsl {metadata.version('parsl')} lacks internals" in message
    assert needle in message
    assert "parsl" in message.rsplit("supports", 1)[1]  # the versions pwgen declares
    assert raised.value.exit_code == 2 and "\n" not in message


def test_a_moved_parsl_module_is_reported_not_raised(
    fresh_check: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = Assumption("parsl.no_such_module.Thing", "_x", "attribute", "a test", lambda o, n: None)
    monkeypatch.setattr(parsl_checks, "ASSUMPTIONS", (*ASSUMPTIONS, gone))
    assert parsl_checks.broken_assumptions() == [
        "Thing._x (attribute, for a test): cannot be checked: ModuleNotFoundError: "
        "No module named 'parsl.no_such_module'"
    ]


def test_pwgen_run_stops_before_loading_when_parsl_lacks_an_internal(tmp_path: Path) -> None:
    """End to end: the run refuses with one line (exit 2) and starts nothing."""
    (tmp_path / "sitecustomize.py").write_text(
        "import parsl.config\ndel parsl.config.Config._validate_executors\n"
    )
    result = run_pwgen(
        "run",
        str(REPO / "examples" / "hello.py"),
        "--sites",
        str(REPO / "examples" / "sites.local.yaml"),
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path)},
    )
    assert_one_line_error(
        result, f"Parsl {metadata.version('parsl')}", "Config._validate_executors"
    )
    assert not list(tmp_path.glob(".pwgen/runs/*/runinfo"))  # Parsl was never loaded


# --- the uses, on real Parsl objects --------------------------------------------------


def test_add_executors_extends_a_config_and_keeps_its_label_check() -> None:
    config = Config(executors=[ThreadPoolExecutor(label="a")])
    add_executors(config, [ThreadPoolExecutor(label="b")])
    assert [executor.label for executor in config.executors] == ["a", "b"]
    with pytest.raises(ConfigurationError, match="unique labels"):
        add_executors(config, [ThreadPoolExecutor(label="a")])
    stand_in = ThreadPoolExecutor(label="a")  # replaces the config's own "a"
    add_executors(config, [stand_in], replacing=["a"])
    assert [executor.label for executor in config.executors] == ["b", "a"]
    assert config.executors[1] is stand_in


def test_bad_state_and_task_futures_of_a_real_executor() -> None:
    executor = HighThroughputExecutor(label="site", address="127.0.0.1")
    assert isinstance(executor, BlockProviderExecutor)
    waiting: Future[Any] = Future()
    executor.tasks[7] = waiting
    error = RuntimeError("site gone")
    set_bad_state(executor, error)
    assert executor.bad_state_is_set and executor.executor_exception is error
    assert not waiting.done()  # the caller fails the tasks it chooses
    later: Future[Any] = Future()
    replace_task_future(executor, 7, later)
    assert executor.tasks[7] is later


def test_bash_runner_takes_parsl_runners_arguments() -> None:
    def command(x: int, stdout: str | None = None) -> str:
        return f"echo {x}"

    task = BashApp(command).wrapped_remote_function
    assert bash_command_call(task) is not None
    assert bash_command_call(python_app(command).func) is None  # not a bash app

    seen: list[tuple[Any, ...]] = []

    def runner(func: Any, *args: Any, **kwargs: Any) -> int:
        seen.append((func, args, kwargs))
        if kwargs.get("fail"):
            raise ValueError("command failed")
        return 0

    replaced = with_bash_runner(task, runner)
    assert replaced(1, stdout="out.txt") == 0
    assert seen == [(command, (1,), {"stdout": "out.txt"})]
    assert replaced.__name__ == "command"
    assert isinstance(replaced(2, fail=True), RemoteExceptionWrapper)  # as Parsl wraps errors


def test_submit_replaced_and_internal_tasks_on_a_loaded_dfk(tmp_path: Path) -> None:
    config = Config(executors=[ThreadPoolExecutor(label="here")], run_dir=str(tmp_path))
    dfk = parsl.load(config)
    try:
        calls: list[str] = []

        def counting(submit: Any) -> Any:
            @functools.wraps(submit)
            def wrapper(func: Any, *args: Any, **kwargs: Any) -> Any:
                calls.append(func.__name__)
                return submit(func, *args, **kwargs)

            return wrapper

        replace_submit(dfk, counting)

        @python_app(executors=["here"])
        def double(x: int) -> int:
            return 2 * x

        def internal(x: int, **parsl_keywords: Any) -> tuple[int, bool]:
            return x + 1, parsl_keywords.get(STAGING_INHIBIT) is True

        assert double(4).result(timeout=30) == 8
        future = internal_task(dfk, internal)(1)
        assert future.result(timeout=30) == (2, True)
        assert future.task_record["executor"] == INTERNAL_EXECUTOR
        assert calls == ["double", "internal"]  # both went through the replaced submit
    finally:
        dfk.cleanup()
        parsl.clear()


# --- no Parsl internal is used anywhere else --------------------------------------------


def _parsl_private_names() -> set[str]:
    """Every private attribute or method name Parsl's own source defines."""
    pattern = re.compile(r"(?:self\.|def )(_[a-z]\w*)")
    names: set[str] = set()
    for path in PARSL_DIR.rglob("*.py"):
        if "tests" not in path.relative_to(PARSL_DIR).parts:
            names.update(pattern.findall(path.read_text(errors="replace")))
    return names


def _pwgen_sources() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted((REPO / "pwgen").rglob("*.py")):
        if path.name not in ("parsl_internals.py", "parsl_checks.py"):
            yield path, ast.parse(path.read_text(), str(path))


def _is_own(node: ast.expr) -> bool:
    """`self`, `cls` or `super()`: a class's own attributes (checked by the next test)."""
    if isinstance(node, ast.Name):
        return node.id in {"self", "cls"}
    return isinstance(node, ast.Call) and getattr(node.func, "id", None) == "super"


def _violations(path: Path, tree: ast.Module, parsl_names: set[str]) -> Iterator[str]:
    where = path.relative_to(REPO)
    conventions = {"__wrapped__", INTERNAL_EXECUTOR, STAGING_INHIBIT}
    for node in ast.walk(tree):
        line = f"{where}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Attribute) and not _is_own(node.value):
            if node.attr in parsl_names or node.attr == "__wrapped__":
                yield f"{line}: .{node.attr}"
            if node.attr == "submit" and isinstance(node.ctx, ast.Store):
                yield f"{line}: assigns .submit"
        elif isinstance(node, ast.Constant) and node.value in conventions:
            yield f"{line}: {node.value!r}"
        elif isinstance(node, ast.arg | ast.keyword) and str(node.arg).startswith("_parsl"):
            yield f"{line}: {node.arg}"


def test_no_parsl_internal_is_used_outside_parsl_internals() -> None:
    parsl_names = _parsl_private_names()
    found = [
        violation
        for path, tree in _pwgen_sources()
        for violation in _violations(path, tree, parsl_names)
    ]
    assert found == [], "use pwgen.parsl_internals (or a public Parsl name) instead: " + str(found)


def _pwgen_subclasses_of_parsl() -> set[type]:
    for module in pkgutil.walk_packages(pwgen.__path__, "pwgen."):
        importlib.import_module(module.name)
    found = set()
    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith("pwgen"):
            continue
        for _, cls in inspect.getmembers(module, inspect.isclass):
            from_parsl = any(base.__module__.startswith("parsl") for base in cls.__mro__)
            if cls.__module__.startswith("pwgen") and from_parsl:
                found.add(cls)
    return found


def _private_names_used(classes: list[type], pattern: str) -> set[str]:
    names: set[str] = set()
    for cls in classes:
        try:
            names.update(re.findall(pattern, inspect.getsource(cls)))
        except (OSError, TypeError):  # a class without source (builtin)
            continue
    return names


def test_every_private_parsl_name_a_pwgen_subclass_touches_is_listed() -> None:
    """An override (or use) of a Parsl private name in a pwgen subclass must be a row of
    ASSUMPTIONS, so a Parsl upgrade that renames it is caught by the check."""
    listed = {(a.owner.rsplit(".", 1)[-1], a.name) for a in ASSUMPTIONS if a.kind == "override"}
    unlisted = set()
    for cls in _pwgen_subclasses_of_parsl():
        ours = [base for base in cls.__mro__ if base.__module__.startswith("pwgen")]
        theirs = [base for base in cls.__mro__ if base.__module__.startswith("parsl")]
        used = _private_names_used(ours, r"(?:self|super\(\))\.(_[a-z]\w*)")
        used |= {name for base in ours for name in vars(base) if re.match(r"_[a-z]", name)}
        defined = _private_names_used(theirs, r"(?:self\.|def )(_[a-z]\w*)")
        for name in used & defined:
            owners = [base.__name__ for base in theirs if name in vars(base)] or ["?"]
            if not any((owner, name) in listed for owner in owners):
                unlisted.add(f"{cls.__qualname__}: {name} (Parsl's {owners[0]})")
    assert unlisted == set(), sorted(unlisted)
