"""A bash app's stdout/stderr on a site (pwgen.staging.streams), offline.

A real DFK whose "site" is a thread pool with a directory standing in for the site and
a fake rsync that copies locally (tests/test_staging.py's `fake_site`): the worker must
write the streams in the site's streams dir, and they must reach the controller's
paths, in every form Parsl accepts, before the app's future completes. The same on the
lab sites, through `pwgen run`: tests/test_streams_lab.py.
"""

import os
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import parsl
import pytest
from parsl import File, bash_app
from parsl.app.errors import BashExitFailure
from parsl.config import Config
from parsl.executors.high_throughput.errors import ManagerLost
from parsl.utils import get_all_checkpoints
from test_staging import FakeSiteExecutor, fake_rsync, fake_site  # noqa: F401  (a fixture)

from pwgen.staging import SiteDirs, StagingError
from pwgen.staging.rsync import Rsync
from pwgen.staging.streams import StreamReturn, plan_streams


def test_stream_specs_are_rewritten_in_their_own_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    kwargs: dict[str, Any] = {"stdout": "logs/a.out", "stderr": ("/abs/a.err", "w"), "x": 1}
    rewritten, copies = plan_streams("/site/streams", kwargs)
    out, err = copies
    assert (out.keywords, out.target, out.append) == (("stdout",), f"{tmp_path}/logs/a.out", True)
    assert (err.keywords, err.target, err.append) == (("stderr",), "/abs/a.err", False)
    assert rewritten["stdout"] == f"/site/streams/{out.relative}"
    assert rewritten["stderr"] == (f"/site/streams/{err.relative}", "w")
    assert rewritten["x"] == 1 and kwargs["stdout"] == "logs/a.out"  # the caller's untouched
    # A File stays a File (mode w); one file for both streams is one file on the site.
    rewritten, (both,) = plan_streams("/s", {"stdout": File("b.log"), "stderr": File("b.log")})
    assert both.keywords == ("stdout", "stderr") and not both.append
    assert (
        isinstance(rewritten["stdout"], File) and rewritten["stdout"].path == f"/s/{both.relative}"
    )
    assert rewritten["stderr"].path == rewritten["stdout"].path
    # A new key per try; cloud Files are their staging provider's.
    assert plan_streams("/s", {"stdout": "x"})[1][0].relative != out.relative
    assert plan_streams("/s", {"stdout": File("s3://bucket/key")})[1] == []


def greet(name: str, stdout: Any = None, stderr: Any = None) -> str:
    return f"echo hello {name}; echo oops >&2"


def fail(stdout: Any = None, stderr: Any = None) -> str:
    return "echo partial; echo 'no such thing' >&2; exit 3"


def test_streams_come_back_in_every_form(fake_site: Path, tmp_path: Path) -> None:  # noqa: F811
    app = bash_app(greet, executors=["s1"])
    os.chdir(tmp_path)  # relative stream paths are the workflow's working directory's
    plain = app("a", stdout="greet.out", stderr="greet.err")
    assert plain.result() == 0  # and, already, both files are here
    assert (tmp_path / "greet.out").read_text() == "hello a\n"
    assert (tmp_path / "greet.err").read_text().endswith("\noops\n")  # after Parsl's banner
    # The worker wrote them on the "site", in the run's streams dir.
    site_streams = fake_site / "run-1" / "s1" / "staging" / "streams"
    assert sorted(p.name for p in site_streams.glob("*/*")) == ["stderr", "stdout"]
    # Append mode appends here; w replaces; a File (and a new directory) too.
    (tmp_path / "log").write_text("before\n")
    app("b", stdout=("log", "a"), stderr=str(tmp_path / "log")).result()
    app("c", stdout=("log", "a")).result()
    assert (tmp_path / "log").read_text().splitlines()[0] == "before"
    assert [
        line for line in (tmp_path / "log").read_text().splitlines() if line.startswith("hello")
    ] == [
        "hello b",
        "hello c",
    ]
    (tmp_path / "w.out").write_text("old content\n")
    app("d", stdout=("w.out", "w")).result()
    assert (tmp_path / "w.out").read_text() == "hello d\n"
    as_file = app("e", stdout=File(str(tmp_path / "new" / "e.out")))
    assert as_file.result() == 0 and (tmp_path / "new" / "e.out").read_text() == "hello e\n"
    assert as_file.stdout.filepath == str(tmp_path / "new" / "e.out")


def test_auto_logname_lands_in_the_runs_task_logs(fake_site: Path) -> None:  # noqa: F811
    future = bash_app(greet, executors=["s1"])("f", stdout=parsl.AUTO_LOGNAME)
    assert future.result() == 0
    stdout = Path(future.stdout)
    assert stdout.parent.parent.name == "task_logs"
    assert stdout.parent.parent.parent == Path(parsl.dfk().run_dir)
    assert stdout.read_text() == "hello f\n"


def test_a_failed_app_still_brings_its_stderr_back(fake_site: Path, tmp_path: Path) -> None:  # noqa: F811
    err = tmp_path / "fail.err"
    future = bash_app(fail, executors=["s1"])(stdout=str(tmp_path / "fail.out"), stderr=str(err))
    with pytest.raises(BashExitFailure) as caught:
        future.result()
    assert (tmp_path / "fail.out").read_text() == "partial\n"
    assert err.read_text().endswith("no such thing\n")
    assert f"pwgen: the app's stderr is in {err} (brought back from site s1)" in (
        caught.value.__notes__
    )


def counted(stdout: Any = None, outputs: Any = ()) -> str:
    return f"echo run >> {os.environ.get('PWST_COUNT', '/dev/null')}; echo memo > {outputs[0]}"


def test_a_memoized_bash_app_keeps_its_stdout_and_outputs(
    fake_site: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PWST_COUNT", str(tmp_path / "count"))
    app = bash_app(counted, executors=["s1"], cache=True)  # Files memoized: pwgen.staging.memo
    log, out = tmp_path / "memo.log", tmp_path / "memo.txt"
    first = app(stdout=str(log), outputs=[File(str(out))])
    assert first.result() == 0 and first.outputs[0].result().filepath == str(out)
    again = app(stdout=str(log), outputs=[File(str(out))])
    assert again.result() == 0 and again.outputs[0].result().filepath == str(out)
    assert again.task_record["from_memo"]
    assert (tmp_path / "count").read_text() == "run\n"  # ran once
    assert out.read_text() == "memo\n" and log.read_text() == ""


def _checkpointing(run_dir: str, **settings: Any) -> Config:
    """A Config that checkpoints each task as it ends and loads the earlier runs'
    checkpoints, in this Parsl's own terms."""
    earlier = get_all_checkpoints(run_dir)
    try:
        from parsl.dataflow.memoization import BasicMemoizer
    except ImportError:  # Parsl before its memoizer plug-in (pwgen's floor): Config's own
        return Config(
            checkpoint_mode="task_exit", checkpoint_files=earlier, run_dir=run_dir, **settings
        )
    memoizer = BasicMemoizer(checkpoint_mode="task_exit", checkpoint_files=earlier)
    return Config(memoizer=memoizer, run_dir=run_dir, **settings)


def test_a_checkpointed_bash_app_is_not_run_again_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoints (task_exit) of a bash app with a stdout and a File output: the next
    run (a new DFK reading them) gets its result without running it or copying back."""
    monkeypatch.setenv("PWST_COUNT", str(tmp_path / "count"))
    log, out = tmp_path / "cp.log", tmp_path / "cp.txt"
    for attempt in range(2):
        site = FakeSiteExecutor(tmp_path / f"site{attempt}", fake_rsync(tmp_path))
        config = _checkpointing(str(tmp_path / "runinfo"), executors=[site])
        with parsl.load(config):
            app = bash_app(counted, executors=["s1"], cache=True)
            future = app(stdout=str(log), outputs=[File(str(out))])
            assert future.result() == 0 and future.outputs[0].result().filepath == str(out)
            assert bool(future.task_record["from_memo"]) == (attempt == 1)
    assert (tmp_path / "count").read_text() == "run\n"  # the second run did not run it
    assert out.read_text() == "memo\n" and log.read_text() == ""
    assert not (tmp_path / "site1").exists()  # nothing staged for the second run


class _Site:
    """A StreamReturn over a local directory, its tries completed by the test."""

    def __init__(self, tmp_path: Path) -> None:
        self.dirs = SiteDirs("s1", "/unused", "s1", str(tmp_path / "site"))
        rsync = Rsync(str(fake_rsync(tmp_path)))
        self.streams = StreamReturn(self.dirs, rsync, str(tmp_path / "spool"))
        self.inner: Future[Any] = Future()
        self.site_kwargs: dict[str, Any] = {}

    def submit(self, func: Any, resource_specification: Any, *args: Any, **kwargs: Any) -> Any:
        self.site_kwargs = kwargs
        return self.inner

    def write_stdout(self, text: str) -> None:
        path = Path(self.site_kwargs["stdout"])
        path.parent.mkdir(parents=True)
        path.write_text(text)


def test_a_try_lost_with_its_site_brings_nothing_back(tmp_path: Path) -> None:
    site = _Site(tmp_path)
    target = tmp_path / "moved.out"
    outer = site.streams.submit(site.submit, print, {}, (), {"stdout": str(target)})
    site.write_stdout("half of it\n")  # the lost try had started writing
    site.inner.set_exception(ManagerLost(b"m", "node1"))
    with pytest.raises(ManagerLost):
        outer.result(timeout=10)
    assert not target.exists()  # the try that runs next brings the whole file
    # A try that ran does bring it, and only then completes.
    site.inner = Future()
    outer = site.streams.submit(site.submit, print, {}, (), {"stdout": str(target)})
    site.write_stdout("all of it\n")
    done = threading.Event()
    outer.add_done_callback(lambda _: done.set())
    site.inner.set_result(0)
    assert outer.result(timeout=10) == 0 and done.is_set()
    assert target.read_text() == "all of it\n"
    site.streams.stop()


def test_a_stream_that_cannot_be_delivered_fails_the_task(tmp_path: Path) -> None:
    site = _Site(tmp_path)
    blocker = tmp_path / "blocker"  # a file where the stream's directory should be: even
    blocker.write_text("")  # root cannot write below it
    outer = site.streams.submit(site.submit, print, {}, (), {"stdout": str(blocker / "x.out")})
    site.write_stdout("text\n")
    site.inner.set_result(0)
    with pytest.raises(StagingError, match=r"^stdout could not be written to .*blocker/x.out: "):
        outer.result(timeout=10)
    site.streams.stop()
