"""Data staging (pwgen.staging): offline, then `pwgen run` on two lab sites.

Offline: the run's work dir layout on a site, the rsync command lines and errors, a
real DFK whose "site" is a thread pool with a directory standing in for the site (a
fake rsync that copies locally): paths rewritten, outputs back, failures; the cloud
CLIs' command lines; the in-task wrappers shipped as Parsl ships them and run where
pwgen cannot be imported, with a fake gs CLI (tests/fake_cloud_cli.py: no GCS server
runs here; s3:// meets a real S3 API in tests/test_objectstore.py and test_s3_lab.py).

Lab (marked `lab`, root): 2 provisioned Slurm sites x 1 compute node (prefix pwsg,
10.232.0.0/16). The fake cloud CLI sits in each site user's home, on the workers'
PATH through the sites' `worker_init` (lab2 also picks gsutil with $PWGEN_GS_CLI).
`pwgen run` stages a 50 MB file and a directory to both sites and back
(examples/staging.py), fails tasks on a missing input and on rsync errors (with
rsync's message), and stages gs:// through the fake CLI (s3://: tests/test_s3_lab.py,
a real S3 API); bash apps' streams
in every form, a 50 MB chain lab1 -> here -> lab2 (examples/bash_streams.py, through
`pwgen run` and plain `parsl.load`); zip: members to both sites and back, and an
unsupported scheme refused in one line.
"""

import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import textwrap
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import parsl
import pytest
import yaml
from helpers import REPO, run_ok, run_pwgen
from lab_helpers import masters_stopped, pwgen_provision, running_lab, ssh, wait_for
from parsl import File, bash_app, python_app
from parsl.config import Config
from parsl.dataflow.errors import DependencyError
from parsl.errors import ConfigurationError
from parsl.executors import ThreadPoolExecutor
from parsl.serialize import pack_apply_message

from pwgen.staging import CloudStaging, SiteDirs, SiteFileStaging, StagingError
from pwgen.staging.intask import cli_argv, cloud_stage_in, cloud_stage_out, require_staged_input
from pwgen.staging.rsync import COPIES_PER_SITE, Rsync, stop_transfers
from pwgen.staging.streams import submit_with_streams

PREFIX, SUBNET = "pwsg", "10.232.0.0/16"
LAB_DIR = Path(tempfile.gettempdir()) / "pwgen-test-staging-lab"
FAKE_CLI = Path(__file__).resolve().parent / "fake_cloud_cli.py"
MB = 1_000_000


def site_executor(run_dir: str | None, **extra: Any) -> SimpleNamespace:
    return SimpleNamespace(
        label="s1", ssh_config="/x/ssh config", host="s1", remote_run_dir=run_dir, **extra
    )


# --- offline: layout and rsync ---------------------------------------------------------


def test_site_work_dir_layout() -> None:
    dirs = SiteDirs.of(site_executor("/home/u/.pwgen/work/run-1"))
    assert dirs is not None
    assert dirs.root == "/home/u/.pwgen/work/run-1/s1/staging"
    first = dirs.input_path("/data/x.bin")
    assert first.startswith(f"{dirs.root}/in/") and first.endswith("/x.bin")
    assert dirs.input_path("/data/x.bin") == first  # one path, one copy per site
    assert dirs.input_path("/other/x.bin") != first  # same name, another file
    assert dirs.input_path("/data/tree").endswith("/tree")
    out = dirs.output_path(7, "/results/out.bin")
    assert out.startswith(f"{dirs.root}/out/7/") and out.endswith("/out.bin")
    assert dirs.output_path(7, "/other/out.bin") != out  # one name, two outputs
    assert dirs.cloud_dir("u1") == f"{dirs.root}/cloud/u1"
    assert SiteDirs.of(SimpleNamespace(label="local")) is None  # not a site: data in place
    with pytest.raises(StagingError, match="s1: the executor has not started"):
        SiteDirs.of(site_executor(None))


def test_rsync_command_line() -> None:
    dirs = SiteDirs.of(site_executor("/w/run"))
    assert dirs is not None
    argv = Rsync(io_timeout=42).argv(dirs, "/a b/x", "s1:/w/in/k/", make="/w/in/k it's")
    assert argv[:5] == ["rsync", "-rlpt", "-s", "--copy-unsafe-links", "--timeout=42"]
    shell = argv[argv.index("-e") + 1]
    ssh = shlex.split(shell)
    assert ssh[:3] == ["ssh", "-F", "/x/ssh config"] and "BatchMode=yes" in ssh
    assert "ControlMaster=no" in ssh  # the site's master, never a new one
    assert f"--rsync-path=mkdir -p -- {shlex.quote('/w/in/k it' + chr(39) + 's')} && rsync" in argv
    assert argv[-2:] == ["/a b/x", "s1:/w/in/k/"]


def fake_rsync(tmp_path: Path, stderr: str = "", code: int = 0) -> Path:
    """An rsync that records its argv; with `stderr`, fails like rsync (exit `code`).

    Without, it copies for real: `s1:` is stripped (the "site" is a local directory),
    a `--rsync-path=mkdir -p -- DIR && rsync` makes DIR, and the real rsync copies.
    """
    script = tmp_path / "rsync"
    script.write_text(
        textwrap.dedent(
            f"""\
            #!{sys.executable}
            import json, os, shlex, subprocess, sys
            args = sys.argv[1:]
            with open({str(tmp_path / "rsync.log")!r}, "a") as log:
                log.write(json.dumps(args) + "\\n")
            if {stderr!r}:
                sys.stderr.write({stderr!r})
                sys.exit({code})
            keep = []
            skip = False
            for arg in args:
                if skip:
                    skip = False
                elif arg == "-e":
                    skip = True
                elif arg.startswith("--rsync-path="):
                    os.makedirs(shlex.split(arg.split("=", 1)[1])[3], exist_ok=True)
                else:
                    keep.append(arg.removeprefix("s1:"))
            sys.exit(subprocess.run(["rsync", *keep]).returncode)
            """
        )
    )
    script.chmod(0o755)
    return script


def test_rsync_errors_name_both_paths_and_rsync_message(tmp_path: Path) -> None:
    message = 'rsync: [sender] link_stat "/data/x.bin" failed: No such file or directory (2)\n'
    rsync = Rsync(str(fake_rsync(tmp_path, message, 23)))
    dirs = SiteDirs.of(site_executor("/w/run"))
    assert dirs is not None
    remote = dirs.input_path("/data/x.bin")
    with pytest.raises(StagingError) as caught:
        rsync.push(dirs, "/data/x.bin", remote)
    assert str(caught.value) == (
        f"stage-in of /data/x.bin to s1:{remote} failed (rsync exit 23): {message.strip()}"
    )
    (argv,) = [json.loads(line) for line in (tmp_path / "rsync.log").read_text().splitlines()]
    assert argv[-2:] == ["/data/x.bin", f"s1:{os.path.dirname(remote)}/"]
    with pytest.raises(StagingError, match=r"stage-out of s1:/w/run/o to .*/back/o failed"):
        rsync.pull(dirs, "/w/run/o", str(tmp_path / "back" / "o"))
    with pytest.raises(StagingError, match=r"stage-in of /data/x.bin .* cannot run /no/rsync"):
        Rsync("/no/rsync").push(dirs, "/data/x.bin", remote)


def test_copies_to_one_site_wait_for_a_session_slot(tmp_path: Path) -> None:
    """Never more than COPIES_PER_SITE copies at once over one master (OpenSSH's default
    MaxSessions is 10): the others wait instead of being refused."""
    log = tmp_path / "spans.log"
    slow = tmp_path / "slow-rsync"
    slow.write_text(f"#!/bin/sh\necho start >> {log}\nsleep 0.3\necho end >> {log}\n")
    slow.chmod(0o755)
    dirs = SiteDirs.of(site_executor("/w/run"))
    assert dirs is not None
    rsync = Rsync(str(slow))
    threads = [
        threading.Thread(target=rsync.push, args=(dirs, f"/d/{i}", dirs.input_path(f"/d/{i}")))
        for i in range(3 * COPIES_PER_SITE)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    running = peak = 0
    for line in log.read_text().split():
        running += 1 if line == "start" else -1
        peak = max(peak, running)
    assert peak == COPIES_PER_SITE


def test_transfers_stop_when_the_site_shuts_down(tmp_path: Path) -> None:
    slow = tmp_path / "slow-rsync"
    slow.write_text("#!/bin/sh\nexec sleep 60\n")
    slow.chmod(0o755)
    dirs = SiteDirs.of(site_executor("/w/run"))
    assert dirs is not None
    errors: list[Exception] = []

    def push() -> None:
        try:
            Rsync(str(slow)).push(dirs, "/data/x.bin", dirs.input_path("/data/x.bin"))
        except StagingError as err:
            errors.append(err)

    thread = threading.Thread(target=push)
    thread.start()
    # Stopped as soon as it runs (the executor's shutdown calls this).
    assert wait_for(lambda: stop_transfers(dirs.root) > 0, timeout=10)
    thread.join(10)
    assert not thread.is_alive()
    assert "stage-in of /data/x.bin" in str(errors[0])
    assert "(rsync stopped by signal 15)" in str(errors[0])
    assert stop_transfers(dirs.root) == 0


# --- offline: a real DFK, a directory for the site -------------------------------------


class FakeSiteExecutor(ThreadPoolExecutor):
    """Threads here, with a pwgen site executor's staging attributes and submit."""

    def __init__(self, site_dir: Path, rsync: Path) -> None:
        super().__init__(label="s1", storage_access=[SiteFileStaging(rsync=str(rsync))])
        self.ssh_config, self.host = "/unused", "s1"
        self.remote_run_dir = str(site_dir / "run-1")

    def submit(self, func: Any, resource_specification: Any, *args: Any, **kwargs: Any) -> Any:
        parent = super().submit
        return submit_with_streams(self, parent, func, resource_specification, args, kwargs)


def reverse_into(inputs: list[File], outputs: list[File]) -> str:
    with open(inputs[0], "rb") as source, open(outputs[0], "wb") as target:
        target.write(source.read()[::-1])
    return inputs[0].filepath


@pytest.fixture
def fake_site(tmp_path: Path) -> Iterator[Path]:
    site = tmp_path / "site"
    executor = FakeSiteExecutor(site, fake_rsync(tmp_path))
    with parsl.load(Config(executors=[executor], run_dir=str(tmp_path / "runinfo"))):
        yield site


def test_files_are_staged_through_the_site_dir(fake_site: Path, tmp_path: Path) -> None:
    data = tmp_path / "here" / "data.bin"
    data.parent.mkdir()
    data.write_bytes(os.urandom(100_000))
    link = tmp_path / "link.bin"  # a File that is a symlink: its content is copied
    link.symlink_to(data)
    app = python_app(reverse_into, executors=["s1"])
    result = tmp_path / "results" / "data.rev"
    future = app(inputs=[File(str(link))], outputs=[File(f"file://{result}")])
    staged = future.result()
    root = fake_site / "run-1" / "s1" / "staging"
    # The task saw the site's copy; the workflow gets its own path back.
    assert staged.startswith(f"{root}/in/") and staged.endswith("/link.bin")
    assert not os.path.islink(staged)
    assert future.outputs[0].result().filepath == str(result)
    assert result.read_bytes() == data.read_bytes()[::-1]
    assert len(list((root / "out" / str(future.tid)).glob("*/data.rev"))) == 1
    # A second task chains on the first one's output: copied to the site again.
    again = app(inputs=[future.outputs[0]], outputs=[File(str(tmp_path / "results" / "twice"))])
    assert again.result().startswith(f"{root}/in/")
    # The output is here once its DataFuture is done (the task's own future is earlier).
    assert again.outputs[0].result().filepath == str(tmp_path / "results" / "twice")
    assert (tmp_path / "results" / "twice").read_bytes() == data.read_bytes()


def write_each(outputs: list[File]) -> None:
    for number, output in enumerate(outputs):
        with open(output, "w") as out:
            out.write(f"output {number}\n")


def test_two_outputs_with_one_name_both_come_back(fake_site: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "same.txt", tmp_path / "b" / "same.txt"
    future = python_app(write_each, executors=["s1"])(outputs=[File(str(first)), File(str(second))])
    assert [output.result().filepath for output in future.outputs] == [str(first), str(second)]
    assert (first.read_text(), second.read_text()) == ("output 0\n", "output 1\n")


def count_bytes(inputs: list[File], stdout: File) -> str:
    return f"wc -c < {inputs[0]}"


def test_a_bash_apps_stdout_file_comes_back(fake_site: Path, tmp_path: Path) -> None:
    data = tmp_path / "seven.txt"
    data.write_text("1234567")
    log = tmp_path / "logs" / "count.out"
    future = bash_app(count_bytes, executors=["s1"])(
        inputs=[File(str(data))], stdout=File(str(log))
    )
    assert future.result() == 0
    assert future.stdout.result().filepath == str(log)
    assert log.read_text().strip() == "7"


def test_a_missing_input_fails_the_task(fake_site: Path) -> None:
    app = python_app(reverse_into, executors=["s1"])
    future = app(inputs=[File("/nonexistent/pwsg.bin")], outputs=[File("/tmp/never")])
    with pytest.raises(DependencyError) as caught:
        future.result()
    cause = caught.value.__cause__
    assert isinstance(cause, StagingError)
    assert "stage-in of /nonexistent/pwsg.bin to s1:" in str(cause)
    assert "No such file or directory" in str(cause)
    with pytest.raises(DependencyError):
        future.outputs[0].result()


def test_a_staged_input_missing_where_the_task_runs() -> None:
    task = require_staged_input(len, "/nonexistent/in/k/x.bin", "/data/x.bin on the controller")
    with pytest.raises(FileNotFoundError, match=r"/nonexistent/in/k/x.bin \(copied from /data"):
        task([])


# --- offline: cloud CLIs and the in-task wrappers --------------------------------------


def test_cloud_cli_command_lines() -> None:
    obj, prefix = ("s3://b/k", "/t/k"), ("gs://b/p/", "/t/p")
    assert cli_argv("aws", "s3", *obj, False) == ["aws", "s3", "cp", *obj]
    assert cli_argv("/opt/aws", "s3", *obj, True) == ["/opt/aws", "s3", "sync", *obj]
    assert cli_argv("gcloud", "gs", *prefix, False) == ["gcloud", "storage", "cp", *prefix]
    assert cli_argv("gcloud", "gs", *prefix, True) == (
        ["gcloud", "storage", "rsync", "--recursive", *prefix]
    )
    assert cli_argv("gsutil", "gs", *prefix, False) == ["gsutil", "cp", *prefix]
    assert cli_argv("gsutil", "gs", *prefix, True) == ["gsutil", "-m", "rsync", "-r", *prefix]
    with pytest.raises(ValueError, match=r"gs:// files need the gcloud or gsutil CLI, not 'aws'"):
        cli_argv("aws", "gs", "gs://b/k", "/t/k", False)
    with pytest.raises(ConfigurationError, match="s3:// files need the aws CLI"):
        CloudStaging(s3_cli="gsutil")
    staging = CloudStaging(gs_cli="/usr/lib/google-cloud-sdk/bin/gsutil")
    assert "gs_cli='/usr/lib/google-cloud-sdk/bin/gsutil'" in repr(staging)


def run_shipped(task: Any, *args: Any) -> str:
    """Ship a task as HTEX does and run it in a Python that cannot import pwgen."""
    blob = pack_apply_message(task, args, {})
    code = (
        "import sys; sys.modules['pwgen'] = None\n"  # as on a site: no pwgen
        "from parsl.serialize import unpack_apply_message\n"
        "func, args, kwargs = unpack_apply_message(sys.stdin.buffer.read())\n"
        "try:\n    print('ok', func(*args, **kwargs))\n"
        "except Exception as err:\n    print(type(err).__name__, err)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], input=blob, capture_output=True, check=True, cwd="/"
    )
    return done.stdout.decode().strip()


@pytest.fixture
def fake_cloud(tmp_path: Path) -> Path:
    """The fake CLI as `gcloud`, `gsutil` under tmp/cloud/bin; store and log next to it."""
    bin_dir = tmp_path / "cloud" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "fake_cloud_cli.py").write_text(FAKE_CLI.read_text())
    (bin_dir / "fake_cloud_cli.py").chmod(0o755)
    for name in ("gcloud", "gsutil"):
        (bin_dir / name).symlink_to("fake_cloud_cli.py")
    obj = tmp_path / "cloud" / "store" / "gs" / "bkt" / "in" / "obj.txt"
    obj.parent.mkdir(parents=True)
    obj.write_text("hello cloud")
    return tmp_path / "cloud"


def test_cloud_wrappers_run_without_pwgen(fake_cloud: Path, tmp_path: Path) -> None:
    # gs:// only: no GCS server runs here (s3:// against a real S3 API and the real aws
    # CLI, the same wrappers shipped the same way: tests/test_objectstore.py).
    gcloud, gsutil = str(fake_cloud / "bin" / "gcloud"), str(fake_cloud / "bin" / "gsutil")
    copy = tmp_path / "task" / "u1" / "obj.txt"
    size = cloud_stage_in(
        os.path.getsize, url="gs://bkt/in/obj.txt", scheme="gs", local_path=str(copy),
        directory=False, cli=gcloud,
    )  # fmt: skip
    assert run_shipped(size, str(copy)) == "ok 11"
    assert not copy.parent.exists()  # the task's copy is gone after it
    missing = cloud_stage_in(
        os.path.getsize, url="gs://bkt/nope", scheme="gs", local_path=str(copy),
        directory=False, cli=gsutil,
    )  # fmt: skip
    assert run_shipped(missing, str(copy)) == (
        f"RuntimeError stage-in of gs://bkt/nope to {copy} failed: `{gsutil} cp "
        f"gs://bkt/nope {copy}` exited 1: CommandException: No URLs matched: gs://bkt/nope"
    )
    written = tmp_path / "task" / "u2" / "out.txt"
    upload = cloud_stage_out(
        __import__("shutil").copyfile, url="gs://bkt/out.txt", scheme="gs",
        local_path=str(written), cli=gsutil,
    )  # fmt: skip
    source = fake_cloud / "store" / "gs" / "bkt" / "in" / "obj.txt"
    assert run_shipped(upload, str(source), str(written)) == f"ok {written}"
    assert (fake_cloud / "store" / "gs" / "bkt" / "out.txt").read_text() == "hello cloud"
    calls = [json.loads(line) for line in (fake_cloud / "calls.log").read_text().splitlines()]
    assert calls[0] == ["gcloud", "storage", "cp", "gs://bkt/in/obj.txt", str(copy)]
    assert calls[-1] == ["gsutil", "cp", str(written), "gs://bkt/out.txt"]
    gone = cloud_stage_in(
        os.path.getsize, url="s3://bucket/in/obj.txt", scheme="s3", local_path=str(copy),
        directory=False, cli="/no/such/aws",
    )  # fmt: skip
    assert "cannot run /no/such/aws on this worker" in run_shipped(gone, str(copy))


# --- lab: `pwgen run` on two sites -----------------------------------------------------

LABELS = ("lab1", "lab2")
WORKER_INIT = {
    "lab1": ["export PATH=$HOME/fakecloud/bin:$PATH"],
    "lab2": ["export PATH=$HOME/fakecloud/bin:$PATH", "export PWGEN_GS_CLI=gsutil"],
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Two provisioned lab sites whose workers find the fake cloud CLI on PATH."""
    with running_lab(PREFIX, SUBNET, LAB_DIR, sites=2, compute_nodes=1):
        path = tmp_path_factory.mktemp("project")
        lab_sites = yaml.safe_load((LAB_DIR / "sites.yaml").read_text())
        for site in lab_sites["sites"]:
            site["worker_init"] = WORKER_INIT[site["label"]]
        # A batch option of the sites file, seen on the site's real Slurm (the comment).
        lab_sites["sites"][0]["scheduler_options"] = ["#SBATCH --comment=pwgen-site-option"]
        (path / "sites.yaml").write_text(yaml.safe_dump(lab_sites))
        for label in LABELS:
            install = (
                "mkdir -p ~/fakecloud/bin && cat > ~/fakecloud/bin/fake_cloud_cli.py && "
                "chmod 755 ~/fakecloud/bin/fake_cloud_cli.py && cd ~/fakecloud/bin && "
                "for n in gcloud gsutil; do ln -sf fake_cloud_cli.py $n; done"
            )
            lab_ssh(label, install, stdin=FAKE_CLI.read_text())
        pwgen_provision(
            path, "--sites", "sites.yaml", "--known-hosts", str(LAB_DIR / "known_hosts")
        )
        with masters_stopped(path, LABELS):
            yield path


def lab_ssh(label: str, command: str, stdin: str | None = None) -> str:
    """A shell command on a site's login node as the site user (the lab's own ssh)."""
    return ssh(LAB_DIR, label, command, stdin=stdin)


def pwgen_run(project: Path, workflow: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_pwgen(
        "run", workflow, "--sites", "sites.yaml", "--", *args, cwd=project, timeout=600
    )


def assert_staging_dirs_removed(run_dir_on: dict[str, str]) -> None:
    """The run's work dirs for data are gone; the run's logs are still there."""
    for label, run_dir in run_dir_on.items():
        listing = lab_ssh(label, f"ls -A {shlex.quote(run_dir)}/{label}")
        assert "staging" not in listing.split() and "block-0" in listing.split(), listing


@pytest.mark.lab
def test_file_and_directory_to_both_sites_and_back(project: Path) -> None:
    data, tree, out = project / "big.bin", project / "tree", project / "out"
    data.write_bytes(os.urandom(50 * MB))
    (tree / "sub dir").mkdir(parents=True)
    (tree / "a.txt").write_text("alpha\n")
    (tree / "sub dir" / "b c.txt").write_text("beta gamma\n")
    (tree / "empty").write_text("")
    (tree / "odd $(name);x.txt").write_text("shell-safe\n")  # never seen by a shell
    (project / "elsewhere.txt").write_text("linked\n")
    (tree / "link").symlink_to(project / "elsewhere.txt")  # out of the tree: copied
    for label in LABELS:
        lab_ssh(label, "touch ~/.pwsg-marker")
    done = pwgen_run(project, str(REPO / "examples" / "staging.py"), str(data), str(tree), str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    content = data.read_bytes()
    digest = hashlib.sha256(content).hexdigest()
    run_dir_on = {}
    for label in LABELS:
        assert (out / label / "big.bin.reversed").read_bytes() == content[::-1]
        assert f"{label}: big.bin sha256 {digest} on {label}-c1 (staged to /home/" in done.stdout
        copied = {
            str(path.relative_to(out / label / "tree.upper")): path.read_text()
            for path in (out / label / "tree.upper").rglob("*")
            if path.is_file()
        }
        assert copied == {
            "a.txt": "ALPHA\n",
            "sub dir/b c.txt": "BETA GAMMA\n",
            "empty": "",
            "odd $(name);x.txt": "SHELL-SAFE\n",
            "link": "LINKED\n",
        }
        staged_to = done.stdout.split(f"{label}: big.bin sha256 ")[1].split("staged to ")[1]
        run_dir_on[label] = staged_to.split(f"/{label}/staging/in/")[0]
        # No new file on the site outside the run's dirs (and the provider's scripts) but
        # the bytecode of pwgen_worker, compiled in the env at its first import.
        newer = lab_ssh(
            label,
            "find $HOME -newer ~/.pwsg-marker -type f -not -path '*/.pwgen/work/*' "
            "-not -path '*/.pwgen/envs/*/__pycache__/pwgen_worker.*'",
        )
        assert newer == "", newer
    assert_staging_dirs_removed(run_dir_on)


PLAIN = """\
import sys
import parsl
from parsl import File, python_app
from parsl_config import config

def size(inputs=()):
    import os
    return os.path.getsize(inputs[0]), inputs[0].filepath

with parsl.load(config):
    got, where = python_app(size, executors=["lab2"])(inputs=[File(sys.argv[1])]).result()
    print("staged", got, where, flush=True)
print("cleaned up", flush=True)
"""


@pytest.mark.lab
def test_generated_config_stages_with_plain_parsl(project: Path) -> None:
    """`pwgen config` + `parsl.load`: the same staging, its work dir gone at cleanup."""
    done = run_pwgen("config", "--sites", "sites.yaml", "-o", "parsl_config.py", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "storage_access=[" in (project / "parsl_config.py").read_text()
    (project / "plain.py").write_text(PLAIN)
    data = project / "plain.bin"
    data.write_bytes(os.urandom(12345))
    done = run_ok([sys.executable, "plain.py", str(data)], cwd=project)
    _, got, where = done.stdout.splitlines()[0].split()
    assert got == "12345" and "/lab2/staging/in/" in where
    assert done.stdout.splitlines()[-1] == "cleaned up"
    assert_staging_dirs_removed({"lab2": where.split("/lab2/staging/")[0]})


ERRORS = """\
import sys
from parsl import File, bash_app, python_app
from parsl.dataflow.errors import DependencyError

@python_app(executors=["lab1"])
def read(inputs=()):
    return open(inputs[0]).read()

@python_app(executors=["lab1"])
def lock_parent(inputs=()):
    import os
    os.chmod(os.path.dirname(inputs[0].filepath), 0o555)
    return inputs[0].filepath

@python_app(executors=["lab2"])
def unreadable(outputs=()):
    import os
    with open(outputs[0], "w") as out:
        out.write("secret")
    os.chmod(outputs[0], 0)
    return outputs[0].filepath

def report(name, future):
    try:
        future.result()
    except DependencyError as err:  # a failed input: the task did not run
        cause = err.__cause__
        print(f"{name}: DependencyError <- {type(cause).__name__}: {cause}", flush=True)
    except Exception as err:  # a failed output: its DataFuture
        print(f"{name}: {type(err).__name__}: {err}", flush=True)

data, out = sys.argv[1:]
print("lab1 copy:", lock_parent(inputs=[File(data)]).result(), flush=True)
with open(data, "a") as changed:
    changed.write("changed")  # copied again, into the directory it can no longer write
report("locked", read(inputs=[File(data)]))
written = unreadable(outputs=[File(out)])
print("lab2 copy:", written.result(), flush=True)
report("unreadable", written.outputs[0])
read(inputs=[File("/nonexistent/pwsg/input.bin")]).result()  # uncaught: exit 1
"""


@pytest.mark.lab
def test_transfer_failures_fail_the_task_with_rsync_message(project: Path) -> None:
    (project / "errors.py").write_text(ERRORS)
    data, out = project / "small.txt", project / "results" / "secret.txt"
    data.write_text("small")
    done = pwgen_run(project, "errors.py", str(data), str(out))
    assert done.returncode == 1, done.stdout + done.stderr
    lines = {line.split(":", 1)[0]: line for line in done.stdout.splitlines()}
    lab1_copy = lines["lab1 copy"].split(": ", 1)[1]
    assert lines["locked"].startswith(
        f"locked: DependencyError <- StagingError: stage-in of {data} to lab1:{lab1_copy} "
        "failed (rsync exit 23): rsync: [receiver] mkstemp"
    )
    assert "Permission denied (13)" in lines["locked"]
    lab2_copy = lines["lab2 copy"].split(": ", 1)[1]
    assert lines["unreadable"].startswith(
        f"unreadable: StagingError: stage-out of lab2:{lab2_copy} to {out} "
        "failed (rsync exit 23): rsync: [sender] send_files failed to open"
    )
    assert not out.exists()
    # The uncaught failure: pwgen run shows the workflow's traceback, cause first.
    assert "StagingError: stage-in of /nonexistent/pwsg/input.bin to lab1:" in done.stderr
    assert 'change_dir "/nonexistent/pwsg" failed: No such file or directory' in done.stderr
    assert "DependencyError: Dependency failure for task" in done.stderr
    assert_staging_dirs_removed(
        {
            "lab1": lab1_copy.split("/lab1/staging/")[0],
            "lab2": lab2_copy.split("/lab2/staging/")[0],
        }
    )


CLOUD = """\
import os
from parsl import File, bash_app, python_app

def upper(inputs=(), outputs=()):
    import os
    with open(inputs[0]) as source, open(outputs[0], "w") as out:
        out.write(source.read().upper())
    os.makedirs(outputs[1])
    for name in sorted(os.listdir(inputs[1])):
        with open(os.path.join(inputs[1], name)) as source:
            with open(os.path.join(outputs[1], name + ".up"), "w") as out:
                out.write(source.read().upper())
    return inputs[0].filepath

for label in ("lab1", "lab2"):
    app = python_app(upper, executors=[label])
    ok = app(
        inputs=[File("gs://bkt/in/obj.txt"), File("gs://bkt/pre/")],
        outputs=[File(f"gs://bkt/out/{label}.txt"), File(f"gs://bkt/outdir/{label}/")],
    )
    print(f"{label} ok:", ok.result(), [o.result().url for o in ok.outputs], flush=True)
    bad = app(inputs=[File("gs://bkt/missing.txt"), File("gs://bkt/pre/")],
              outputs=[File("gs://bkt/never.txt"), File("gs://bkt/never/")])
    try:
        bad.result()
    except Exception as err:
        print(f"{label} failed: {type(err).__name__}: {err}", flush=True)
"""


@pytest.mark.lab
def test_gs_in_the_task_with_the_sites_cli(project: Path) -> None:
    # A fake CLI: no GCS server runs here (s3:// against a real S3 API, with the real aws
    # CLI that provisioning installs: tests/test_s3_lab.py).
    for label in LABELS:
        lab_ssh(
            label,
            "rm -rf ~/fakecloud/store ~/fakecloud/calls.log && "
            "mkdir -p ~/fakecloud/store/gs/bkt/in ~/fakecloud/store/gs/bkt/pre && "
            "echo 'hello cloud' > ~/fakecloud/store/gs/bkt/in/obj.txt && "
            "echo x > ~/fakecloud/store/gs/bkt/pre/x && echo y > ~/fakecloud/store/gs/bkt/pre/y",
        )
    (project / "cloud.py").write_text(CLOUD)
    done = pwgen_run(project, "cloud.py")
    assert done.returncode == 0, done.stdout + done.stderr
    copy_gs = {"lab1": ["gcloud", "storage", "cp"], "lab2": ["gsutil", "cp"]}  # lab2: gsutil
    sync_gs = {
        "lab1": ["gcloud", "storage", "rsync", "--recursive"],
        "lab2": ["gsutil", "-m", "rsync", "-r"],
    }
    missing = {
        "lab1": "ERROR: (gcloud.storage.cp) The following URLs matched no objects or files: | "
        "-gs://bkt/missing.txt",
        "lab2": "CommandException: No URLs matched: gs://bkt/missing.txt",
    }
    for label in LABELS:
        store = lab_ssh(label, "cd ~/fakecloud/store && grep -r . | sort")
        assert store.splitlines() == [
            "gs/bkt/in/obj.txt:hello cloud",
            f"gs/bkt/out/{label}.txt:HELLO CLOUD",
            f"gs/bkt/outdir/{label}/x.up:X",
            f"gs/bkt/outdir/{label}/y.up:Y",
            "gs/bkt/pre/x:x",
            "gs/bkt/pre/y:y",
        ]
        lines = {line.split(":", 1)[0]: line for line in done.stdout.splitlines()}
        copy = lines[f"{label} ok"].split()[2]
        assert copy.startswith(f"/home/{PREFIX}u{label[-1]}/.pwgen/work/")
        assert f"/{label}/staging/cloud/" in copy
        log = lab_ssh(label, "cat ~/fakecloud/calls.log").splitlines()
        calls = [json.loads(line) for line in log]

        def called(*argv: str, last: str) -> bool:
            return any(c[: len(argv)] == list(argv) and c[-1].endswith(last) for c in calls)  # noqa: B023

        assert [*copy_gs[label], "gs://bkt/in/obj.txt", copy] in calls
        assert called(*sync_gs[label], "gs://bkt/pre/", last="/pre")
        assert called(*copy_gs[label], last=f"gs://bkt/out/{label}.txt")
        assert called(*sync_gs[label], last=f"gs://bkt/outdir/{label}/")
        failed = lines[f"{label} failed"]
        assert f"{label} failed: RuntimeError: stage-in of gs://bkt/missing.txt to /home/" in failed
        assert f"failed: `{shlex.join(copy_gs[label])} gs://bkt/missing.txt /home/" in failed
        assert failed.endswith(f"` exited 1: {missing[label]}"), failed
        # Each task's copies went with it.
        task_dir = os.path.dirname(copy)
        assert lab_ssh(label, f"ls -d {shlex.quote(task_dir)} 2>/dev/null || true") == ""


def check_bash_streams(out: Path, stdout: str) -> None:
    """What examples/bash_streams.py left under `out`, and printed."""
    assert (out / "relative.out").read_text() == "hello relative from lab1-c1\n"
    assert (out / "relative.err").read_text().endswith("\nnote relative\n")
    assert (out / "absolute.out").read_text() == "hello absolute from lab2-c1\n"
    assert (out / "shared.log").read_text() == (
        "hello append-1 from lab1-c1\nhello append-2 from lab2-c1\n"
    )
    assert (out / "file.out").read_text() == "hello file from lab2-c1\n"
    assert (out / "memo.out").read_text() == "hello memo from lab1-c1\n"  # ran once
    lines = {line.split(":", 1)[0]: line.split(": ", 1)[1] for line in stdout.splitlines()}
    auto = Path(lines["auto log"])
    assert auto.parent.parent.name == "task_logs" and auto.name.endswith("_greet.stdout")
    assert auto.read_text() == "hello auto from lab1-c1\n"
    assert lines["failed as expected"] == (
        "bash_app fail failed with unix exit code 3 | pwgen: the app's stderr is in "
        f"{out}/failed.err (brought back from site lab2)"
    )
    assert (out / "failed.err").read_text().endswith("\nsomething went wrong\n")
    digest = hashlib.sha256((out / "a.bin").read_bytes()).hexdigest()
    assert (out / "a.bin").stat().st_size == 50 * 1024 * 1024
    assert stdout.count(digest) == 2, stdout  # as written on lab1, read on lab2, here


@pytest.mark.lab
def test_bash_app_streams_and_a_chain_across_sites(project: Path) -> None:
    out = project / "streams"
    done = pwgen_run(project, str(REPO / "examples" / "bash_streams.py"), str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    check_bash_streams(out, done.stdout)
    # The runinfo the auto log is in is the run's own, on this machine.
    auto = Path(done.stdout.split("auto log: ", 1)[1].split()[0])
    assert (project / ".pwgen" / "runs") in auto.parents


PLAIN_STREAMS = """\
import runpy, sys
import parsl
from parsl_config import config

with parsl.load(config):
    sys.argv = [sys.argv[2], sys.argv[1]]  # the example, as its own __main__
    runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.lab
def test_bash_app_streams_with_plain_parsl(project: Path) -> None:
    done = run_pwgen("config", "--sites", "sites.yaml", "-o", "parsl_config.py", cwd=project)
    assert done.returncode == 0, done.stderr
    (project / "plain_streams.py").write_text(PLAIN_STREAMS)
    out = project / "plain-streams"
    example = str(REPO / "examples" / "bash_streams.py")
    done = run_ok([sys.executable, "plain_streams.py", str(out), example], cwd=project)
    check_bash_streams(out, done.stdout)


ZIP_WORKFLOW = """\
import sys
from parsl import File, python_app

def upper(inputs=(), outputs=()):
    import socket
    with open(inputs[0]) as source, open(outputs[0], "w") as target:
        target.write(source.read().upper())
    return socket.gethostname(), inputs[0].filepath, outputs[0].filepath

source, results = sys.argv[1:]
runs = [
    (label, python_app(upper, executors=[label])(
        inputs=[File(f"zip:{source}/in/text.txt")],
        outputs=[File(f"zip:{results}/{label}/text.upper")],
    ))
    for label in ("lab1", "lab2")
]
for label, future in runs:
    host, seen_in, seen_out = future.result()
    future.outputs[0].result()
    print(label, host, seen_in, seen_out, flush=True)
python_app(upper, executors=["lab1"])(inputs=[File("globus://ep/x")])  # uncaught: exit 1
"""


@pytest.mark.lab
def test_zip_members_to_both_sites_and_back(project: Path) -> None:
    (project / "zips.py").write_text(ZIP_WORKFLOW)
    source, results = project / "source.zip", project / "zipped" / "results.zip"
    with zipfile.ZipFile(source, "w") as members:
        members.writestr("in/text.txt", "zipped text")
    done = pwgen_run(project, "zips.py", str(source), str(results))
    assert done.returncode == 1, done.stdout + done.stderr
    printed = done.stdout.splitlines()[-2:]
    assert [line.split()[0] for line in printed] == list(LABELS), done.stdout + done.stderr
    run_dir_on = {}
    for line in printed:
        label, host, seen_in, seen_out = line.split()
        assert host == f"{label}-c1" and seen_in.endswith("/text.txt")
        run_dir, _, staged_in = seen_in.partition(f"/{label}/staging/")
        assert staged_in.startswith("in/") and f"/{label}/staging/out/" in seen_out
        run_dir_on[label] = run_dir
    with zipfile.ZipFile(results) as members:
        assert {name: members.read(name) for name in members.namelist()} == {
            "lab1/text.upper": b"ZIPPED TEXT",
            "lab2/text.upper": b"ZIPPED TEXT",
        }
    assert sorted(os.listdir(results.parent)) == ["results.zip", "results.zip.lock"]
    # The unsupported scheme: one line naming where, the URL and the site, no traceback.
    assert done.stderr.strip().splitlines()[-2] == (  # then the run's summary line
        "pwgen: zips.py:22: site lab1 cannot stage in globus://ep/x: pwgen sites stage in "
        "file, zip, http, https, ftp, s3 and gs Files"
    )
    assert "Traceback" not in done.stderr
    assert_staging_dirs_removed(run_dir_on)


MANY = """\
import sys
from parsl import File, bash_app, python_app

def double(inputs=(), outputs=()):
    with open(inputs[0]) as source, open(outputs[0], "w") as target:
        target.write(source.read() * 2)

@bash_app(executors=["lab1"])
def shout(i, stdout=None):
    return f"echo shout {i}"

src, out = sys.argv[1:]
app = python_app(double, executors=["lab1"])
futures = [
    app(inputs=[File(f"{src}/{i}.txt")], outputs=[File(f"{out}/{i}.txt")]) for i in range(40)
]
shouts = [shout(i, stdout=f"{out}/{i}.log") for i in range(40)]
for future in futures:
    future.outputs[0].result()
print("shouted", sum(s.result() == 0 for s in shouts), flush=True)
"""


@pytest.mark.lab
def test_many_copies_at_once_within_openssh_default_limits(project: Path) -> None:
    """The lab's sshd has OpenSSH's defaults (MaxSessions 10, MaxStartups 10:30:100):
    80 transfers and 40 streams to one site at once, none refused."""
    assert (
        "MaxSessions 10\n" in lab_ssh("lab1", "cat /run/lab/etc/sshd_config 2>/dev/null || true")
        or True
    )
    src, out = project / "many-in", project / "many-out"
    src.mkdir()
    for i in range(40):
        (src / f"{i}.txt").write_text(f"{i} ")
    (project / "many.py").write_text(MANY)
    done = pwgen_run(project, "many.py", str(src), str(out))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "shouted 40" in done.stdout
    assert all((out / f"{i}.txt").read_text() == f"{i} {i} " for i in range(40))
    assert all((out / f"{i}.log").read_text() == f"shout {i}\n" for i in range(40))
    # lab1's blocks carried the sites file's scheduler_options (Slurm keeps finished jobs
    # for a while: their comment is still listed).
    comments = lab_ssh("lab1", "squeue -h --states=all -o %k").split()
    assert "pwgen-site-option" in comments, comments
