"""Staging schemes other than file:// on sites (offline): zip:, http, and the refusal.

A real DFK whose "site" is a thread pool with a directory standing in for the site
(test_staging's FakeSiteExecutor and fake rsync), with pwgen's whole site list
(`site_storage_access()`): zip: members of an archive here reach the task and its
outputs land in the archive (concurrently, memoized, as a directory); a missing
archive or member fails the task naming both; an http input is downloaded in the
task from a loopback server; a scheme no provider takes fails the app call in one
line; on a non-site executor, Parsl's own ZipFileStaging does the work.

On the lab (tests/test_staging.py, its two sites): `pwgen run` reads a zip: member on
both sites, adds each one's output to one archive here, and a globus:// input ends
the run with the one-line refusal.
"""

import http.server
import os
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import parsl
import pytest
from parsl import File, python_app
from parsl.config import Config
from parsl.data_provider.http import HTTPInTaskStaging
from parsl.dataflow.errors import DependencyError
from parsl.executors import ThreadPoolExecutor
from test_staging import (
    FakeSiteExecutor,
    fake_rsync,
)

from pwgen.staging import SiteFileStaging, StagingError, site_storage_access


def write_text(text: str, outputs: list[File]) -> str:
    with open(outputs[0], "w") as target:
        target.write(text)
    return outputs[0].filepath


def write_tree(outputs: list[File]) -> str:
    os.makedirs(os.path.join(outputs[0], "sub"))
    for name, text in (("a.txt", "A"), (os.path.join("sub", "b.txt"), "B")):
        with open(os.path.join(outputs[0], name), "w") as target:
            target.write(text)
    return outputs[0].filepath


def read_inputs(inputs: list[File]) -> list[tuple[str, str]]:
    found = []
    for file in inputs:
        paths = [file.filepath]
        if os.path.isdir(file):
            paths = sorted(os.path.join(d, n) for d, _, names in os.walk(file) for n in names)
        for path in paths:
            with open(path) as source:
                found.append((path, source.read()))
    return found


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    """A fake site `s1` with pwgen's site providers, and a non-site executor `here`."""
    site_dir = tmp_path / "site"
    executor = FakeSiteExecutor(site_dir, fake_rsync(tmp_path))
    executor.storage_access = site_storage_access()
    for provider in executor.storage_access:
        if isinstance(provider, SiteFileStaging):  # SiteZipStaging too
            provider.rsync = str(tmp_path / "rsync")
    executor.working_dir = str(site_dir / "work")  # where the http download goes
    here = ThreadPoolExecutor(
        label="here", storage_access=site_storage_access(), working_dir=str(tmp_path / "wd")
    )
    config = Config(executors=[executor, here], run_dir=str(tmp_path / "runinfo"))
    with parsl.load(config):
        yield site_dir / "run-1" / "s1" / "staging"


def test_zip_outputs_of_concurrent_tasks_land_in_the_archive(site: Path, tmp_path: Path) -> None:
    archive = tmp_path / "results" / "out.zip"  # its directory does not exist yet
    app = python_app(write_text, executors=["s1"])
    futures = [app(f"text {n}", outputs=[File(f"zip:{archive}/d{n}/out.txt")]) for n in range(4)]
    tree = python_app(write_tree, executors=["s1"])(outputs=[File(f"zip:{archive}/tree")])
    for n, future in enumerate(futures):
        # The task wrote its own file on the site; the workflow keeps the zip: URL.
        seen = Path(future.result())
        assert seen.parent.parent == site / "out" / str(future.tid) and seen.name == "out.txt"
        assert future.outputs[0].result().url == f"zip:{archive}/d{n}/out.txt"
    assert tree.outputs[0].result()
    with zipfile.ZipFile(archive) as members:
        assert {name: members.read(name).decode() for name in members.namelist()} == {
            **{f"d{n}/out.txt": f"text {n}" for n in range(4)},
            "tree/a.txt": "A",
            "tree/sub/b.txt": "B",
        }
    # The private copies next to the archive are gone; Parsl's lock file stays.
    assert sorted(os.listdir(archive.parent)) == ["out.zip", "out.zip.lock"]


def test_zip_inputs_are_extracted_here_and_read_on_the_site(site: Path, tmp_path: Path) -> None:
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as members:
        members.writestr("in/one.txt", "one")
        members.writestr("dir/x.txt", "x")
        members.writestr("dir/sub/y.txt", "y")
    app = python_app(read_inputs, executors=["s1"])
    files = [File(f"zip:{archive}/in/one.txt"), File(f"zip:{archive}/dir")]
    found = app(inputs=files).result()
    assert [text for _, text in found] == ["one", "y", "x"]  # dir/sub/y.txt < dir/x.txt
    assert all(path.startswith(f"{site}/in/") for path, _ in found)
    assert found[0][0].endswith("/one.txt") and found[1][0].endswith("/dir/sub/y.txt")
    # An output added to an archive here is the next task's input.
    writer = python_app(write_text, executors=["s1"])
    written = writer("fresh", outputs=[File(f"zip:{archive}/new")])
    assert app(inputs=[written.outputs[0]]).result()[0][1] == "fresh"


def test_missing_archive_or_member_fails_the_task_naming_both(site: Path, tmp_path: Path) -> None:
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as members:
        members.writestr("present.txt", "here")
    app = python_app(read_inputs, executors=["s1"])
    for url, reason in (
        (f"zip:{archive}/absent.txt", f"no member absent.txt in {archive}"),
        (f"zip:{tmp_path}/none.zip/a.txt", f"no such file: {tmp_path}/none.zip"),
    ):
        with pytest.raises(DependencyError) as caught:
            app(inputs=[File(url)]).result()
        cause = caught.value.__cause__
        assert isinstance(cause, StagingError)
        assert str(cause).startswith(f"stage-in of {url} to s1:{site}/in/")
        assert str(cause).endswith(f" failed: {reason}")
    # A URL that names no member, or a host, fails the app call itself.
    for url, problem in (
        (f"zip://host{archive}/present.txt", "not on host 'host'"),
        (f"zip:{tmp_path}/data.tar/x", "names no member of a .zip archive"),
        (f"zip:{archive}/../x", "names no member of a .zip archive"),
    ):
        with pytest.raises(StagingError, match=f"^{url}: .*{problem}"):
            app(inputs=[File(url)])


def test_a_memoized_task_adds_nothing_to_the_archive(site: Path, tmp_path: Path) -> None:
    archive = tmp_path / "memo.zip"
    app = python_app(write_text, executors=["s1"], cache=True)
    first = app("once", outputs=[File(f"zip:{archive}/m.txt")])
    first.outputs[0].result()
    again = app("once", outputs=[File(f"zip:{archive}/m.txt")])
    assert again.outputs[0].result()  # no copy back from the site: the task did not run
    assert again.task_record["from_memo"] is True
    assert not (site / "out" / str(again.tid)).exists()
    with zipfile.ZipFile(archive) as members:
        assert members.namelist() == ["m.txt"]


def test_a_scheme_no_provider_takes_fails_the_app_call_in_one_line(site: Path) -> None:
    app = python_app(write_text, executors=["s1"])
    with pytest.raises(StagingError) as caught:
        app("x", inputs=[File("globus://ep/path")], outputs=[File("/tmp/never")])
    assert str(caught.value) == (
        "site s1 cannot stage in globus://ep/path: "
        "pwgen sites stage in file, zip, http, https, ftp, s3 and gs Files"
    )
    with pytest.raises(StagingError) as caught:
        app("x", outputs=[File("https://example.org/up.txt")])
    assert str(caught.value) == (
        "site s1 cannot stage out https://example.org/up.txt: "
        "pwgen sites stage out file, zip, s3 and gs Files"
    )


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A loopback HTTP server of tmp_path/www; its base URL."""
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "www").mkdir()
    handler = lambda *args: QuietHandler(*args, directory=str(tmp_path / "www"))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_http_input_is_downloaded_in_the_task(
    site: Path, tmp_path: Path, http_root: str
) -> None:
    (tmp_path / "www" / "page.txt").write_text("served")
    executor = parsl.dfk().executors["s1"]
    chosen = [p for p in executor.storage_access if p.can_stage_in(File(f"{http_root}/x"))]
    assert isinstance(chosen[0], HTTPInTaskStaging)
    found = python_app(read_inputs, executors=["s1"])(inputs=[File(f"{http_root}/page.txt")])
    assert found.result() == [(executor.working_dir + "/page.txt", "served")]


def test_zip_on_a_non_site_executor_is_parsls_own(site: Path, tmp_path: Path) -> None:
    archive = tmp_path / "local.zip"
    app = python_app(write_text, executors=["here"])
    future = app("local", outputs=[File(f"zip:{archive}/l.txt")])
    assert future.result() == str(tmp_path / "wd" / "l.txt")  # Parsl's working_dir layout
    future.outputs[0].result()
    with zipfile.ZipFile(archive) as members:
        assert members.read("l.txt") == b"local"
    assert not site.exists()  # nothing went through the site
