"""Site-side runs: a `flux` site's workflow runs on the site's login node, not here.

Parsl's FluxExecutor must run next to flux-core, with its working directory on a
filesystem the compute nodes share, and its Flux instance connects back to it on a
random port (DESIGN.md, "FluxExecutor facts"). So for a `flux` site `pwgen run` does
not start a DataFlowKernel here: it ships the run to the login node and runs it there,
in the pinned env, streaming the output back.

    .pwgen/runs/<id>/                     here: the shipped config and manifest.json
    <workdir>/<id>/                       on the site (0700; workdir is in the facts,
        workflow.py, extra files             on the filesystem shared with the compute
        parsl_config.py                      nodes): what was shipped, one tar stream
        pwgen_site_run.py                    (`tar -x`) through the site's ssh master
        pgid, runinfo/, flux/             written by the run

and then, over the same master, without a pty:

    cd <workdir>/<id> && exec setsid -w <env>/bin/python -u pwgen_site_run.py workflow.py ARGS

`pwgen_site_run.py` (`SITE_RUNNER` below: stdlib + parsl only) records its process group
in `pgid`, puts `<env>/bin` (flux) first on PATH, loads `parsl_config.py`, runs the
workflow as `__main__` with its args and cleans the DataFlowKernel up whatever happens,
as `pwgen run` does for a controller-side run. Its output is the ssh stream's, so it
reaches this terminal live, and its exit code is the one `pwgen run` returns.

Ctrl-C or SIGTERM here: the local ssh client runs in its own session (the terminal's
SIGINT does not cut the stream), pwgen sends SIGTERM to the remote process group
(`pwgen_site_run.py --signal TERM`), waits for the run's own teardown (its messages
still stream back), and sends SIGKILL after a grace period or a second Ctrl-C. After
every run, `pwgen_site_run.py --cleanup` kills whatever process still carries the run's
marker and `scancel`s the Slurm jobs submitted from the run directory.
"""

import io
import json
import platform
import posixpath
import shlex
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from pwgen.configgen.flux import render_flux_config
from pwgen.configgen.remote import ProvisionedSite, provisioned_site
from pwgen.errors import PwgenError, WorkflowError
from pwgen.fileio import atomic_write
from pwgen.sites import Site
from pwgen.ssh import SshSetup

if TYPE_CHECKING:
    from pwgen.run import RunRecord

RUNNER_NAME = "pwgen_site_run.py"
CONFIG_NAME = "parsl_config.py"
PGID_NAME = "pgid"
#: The environment variable that marks every process of a site-side run (its run id).
MARKER = "PWGEN_SITE_RUN"
#: Names the run directory keeps for pwgen: a workflow or extra file may not use them.
RESERVED_NAMES = frozenset({RUNNER_NAME, CONFIG_NAME, PGID_NAME, "runinfo", "flux"})
#: Seconds the remote run gets to tear itself down after SIGTERM before SIGKILL.
GRACE_SECONDS = 30.0
#: Seconds to wait for the launcher's pgid file after an early Ctrl-C.
PGID_WAIT_SECONDS = 10.0
SHIP_TIMEOUT = 300
REMOTE_TIMEOUT = 60
EXIT_WORKFLOW_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

SITE_RUNNER = '''\
"""pwgen's site-side launcher: run a workflow with the Parsl config beside it.

Shipped by `pwgen run` into a run directory on a site's login node, next to
`parsl_config.py` and the workflow, and started from that directory:

    <env>/bin/python -u pwgen_site_run.py WORKFLOW.py [ARGS...]   run the workflow
    <env>/bin/python pwgen_site_run.py --signal TERM|KILL          signal the run
    <env>/bin/python pwgen_site_run.py --cleanup                   end what is left

Exit codes as `pwgen run`: the workflow's own, 1 when it raised, 2 when the config
does not load, 130 when interrupted (SIGINT, SIGTERM or SIGHUP). Standard library
and Parsl only.
"""

import importlib.util
import os
import runpy
import shutil
import signal
import subprocess
import sys
import traceback

MARKER = "PWGEN_SITE_RUN"
PGID_FILE = "pgid"
CONFIG_FILE = "parsl_config.py"


def say(message):
    print(f"pwgen-site: {message}", file=sys.stderr, flush=True)


def interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv):
    if argv[:1] == ["--signal"] and len(argv) == 2:
        return signal_run(argv[1])
    if argv == ["--cleanup"]:
        return cleanup()
    if not argv or argv[0].startswith("-"):
        say("usage: pwgen_site_run.py WORKFLOW.py [ARGS...] | --signal NAME | --cleanup")
        return 2
    return run(argv[0], argv[1:])


def run(workflow, args):
    # Every process of the run carries the marker (pwgen sets it with `env` so that it is
    # in this process's own /proc/PID/environ too): --signal and --cleanup find them by it.
    os.environ[MARKER] = run_id()
    with open(PGID_FILE + ".tmp", "w") as handle:
        handle.write(f"{os.getpgrp()}\\n")
    os.replace(PGID_FILE + ".tmp", PGID_FILE)
    # Flux's client runs `flux` from PATH: the pinned env's bin/ comes first.
    bindir = os.path.dirname(os.path.abspath(sys.executable))
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)
    dfk = None
    try:
        import parsl

        config = load_config(os.path.join(os.getcwd(), CONFIG_FILE))
        dfk = parsl.load(config)
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        traceback.print_exc()
        say(f"cannot load {CONFIG_FILE}: {type(err).__name__}: {err}")
        code = 2
    else:
        code = 1
        try:
            code = run_script(workflow, args)
            if code == 0:
                dfk.wait_for_current_tasks()
        except KeyboardInterrupt:
            say("interrupted; cleaning up")
            code = 130
            cancel_blocks(dfk)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        if dfk is not None:
            dfk.cleanup()
        if "parsl" in sys.modules:
            sys.modules["parsl"].clear()
    return code


def run_id():
    """The run directory's name: unique per run, the same through any symlinked parent."""
    return os.path.basename(os.getcwd())


def load_config(path):
    spec = importlib.util.spec_from_file_location("parsl_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["parsl_config"] = module
    return module.config


def run_script(workflow, args):
    saved_argv, saved_path0 = sys.argv[:], sys.path[0]
    sys.argv = [workflow, *args]
    sys.path[0] = os.path.dirname(os.path.abspath(workflow))
    try:
        runpy.run_path(workflow, run_name="__main__")
        return 0
    except SystemExit as exit_:
        if exit_.code is None:
            return 0
        if isinstance(exit_.code, int):
            return exit_.code
        print(exit_.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        raise
    except Exception:
        error_type, error, tb = sys.exc_info()
        while tb is not None and tb.tb_frame.f_code.co_filename != workflow:
            tb = tb.tb_next
        traceback.print_exception(error_type, error, tb)
        say(f"workflow {workflow} failed")
        return 1
    finally:
        sys.argv, sys.path[0] = saved_argv, saved_path0


def cancel_blocks(dfk):
    """Cancel every block first: FluxExecutor's shutdown waits while its block is queued."""
    for executor in list(dfk.executors.values()):
        provider = getattr(executor, "provider", None)
        jobs = list(getattr(provider, "resources", None) or {})
        if provider is None or not jobs:
            continue
        try:
            provider.cancel(jobs)
        except Exception as err:
            say(f"cannot cancel blocks {jobs} of {executor.label}: {err}")


def marked(pid):
    """Does process `pid` belong to the run in this directory?"""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            environ = handle.read().split(b"\\0")
    except OSError:
        return False
    return f"{MARKER}={run_id()}".encode() in environ


def signal_run(name):
    signum = getattr(signal, f"SIG{name}", None)
    if not isinstance(signum, signal.Signals):
        say(f"no signal {name}")
        return 2
    try:
        with open(PGID_FILE) as handle:
            pgid = int(handle.read())
    except (OSError, ValueError):
        return 1
    if not marked(pgid):
        return 1
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return 1
    return 0


def cleanup():
    """Kill the run's leftover processes here; cancel its Slurm jobs."""
    # The run directory as the kernel (sbatch's WorkDir) and the shell (paths in the
    # config) name it.
    here = {os.getcwd(), os.environ.get("PWD") or os.getcwd()}
    killed = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid() and marked(entry):
            try:
                os.kill(int(entry), signal.SIGKILL)
                killed.append(entry)
            except OSError:
                pass
    if killed:
        say(f"killed leftover processes {' '.join(killed)}")
    squeue = shutil.which("squeue")
    if squeue is None:
        return 0
    listing = subprocess.run(
        [squeue, "-h", "-u", str(os.getuid()), "-o", "%i|%Z|%o"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    jobs = []
    for line in listing.stdout.splitlines():
        job, _, rest = line.partition("|")
        workdir, _, command = rest.partition("|")
        for path in (workdir, command):
            if any(path == d or path.startswith(d + "/") for d in here):
                jobs.append(job.strip())
                break
    if jobs:
        subprocess.run(["scancel", *jobs], timeout=60, check=False)
        say(f"cancelled Slurm jobs {' '.join(jobs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''


class SiteRunError(PwgenError):
    """A site-side run could not be shipped to or started on its site."""


@dataclass(frozen=True)
class ShippedFile:
    """One file of a site-side run: its name in the run directory, mode and content."""

    name: str
    mode: int
    data: bytes


@dataclass(frozen=True)
class SiteRunPlan:
    """Everything a site-side run ships and runs; remote commands are shell text."""

    label: str
    run_id: str
    remote_dir: str
    python: str
    workflow: str
    args: tuple[str, ...]
    files: tuple[ShippedFile, ...]

    def ship_command(self) -> str:
        """Create the run directory (0700, a new one) and unpack the tar stream on stdin."""
        directory = shlex.quote(self.remote_dir)
        parent = shlex.quote(posixpath.dirname(self.remote_dir))
        return (
            f"umask 077 && mkdir -p {parent} && mkdir -m 0700 {directory} && "
            f"tar -x --no-same-owner -f - -C {directory}"
        )

    def run_command(self) -> str:
        """Run the workflow in its own session; setsid -w passes its exit code on."""
        command = [
            "env",
            f"{MARKER}={self.run_id}",
            self.python,
            "-u",
            RUNNER_NAME,
            self.workflow,
            *self.args,
        ]
        return f"cd {shlex.quote(self.remote_dir)} && exec setsid -w {shlex.join(command)}"

    def signal_command(self, name: str) -> str:
        """Signal the run's process group (exit 1 when it is not running)."""
        return self._runner("--signal", name)

    def cleanup_command(self) -> str:
        """Kill the run's leftover processes and cancel its Slurm jobs."""
        return self._runner("--cleanup")

    def _runner(self, *options: str) -> str:
        command = [self.python, RUNNER_NAME, *options]
        return f"cd {shlex.quote(self.remote_dir)} && {shlex.join(command)}"

    def tarball(self) -> bytes:
        """The files as one tar stream, each with its mode (owned by whoever unpacks it)."""
        buffer = io.BytesIO()
        now = int(time.time())
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            directories = sorted(
                {posixpath.dirname(f.name) for f in self.files if posixpath.dirname(f.name)}
            )
            for directory in directories:
                info = tarfile.TarInfo(directory)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o700, now
                tar.addfile(info)
            for shipped in self.files:
                info = tarfile.TarInfo(shipped.name)
                info.size, info.mode, info.mtime = len(shipped.data), shipped.mode, now
                tar.addfile(info, io.BytesIO(shipped.data))
        return buffer.getvalue()


def ssh_argv(ssh: SshSetup, label: str, command: str) -> list[str]:
    """`ssh` through the site's shared master, no pty (`-T`): stdout and stderr stay apart."""
    return ["ssh", "-F", str(ssh.config), "-T", label, command]


def plan_site_run(
    site: Site,
    workflow: Path,
    args: Sequence[str],
    provisioned: ProvisionedSite,
    run_id: str,
    *,
    config_text: str | None = None,
    extra_files: Sequence[Path] = (),
    source: str = "sites.yaml",
) -> SiteRunPlan:
    """What a run of `workflow` on `site` ships and runs (nothing is contacted).

    `config_text` replaces the generated Flux config (any module defining `config`).
    `extra_files` (files or directories under the workflow's directory: modules it
    imports, inputs) are shipped to the same relative paths beside it.
    """
    facts = provisioned.facts
    remote_dir = f"{facts.workdir.rstrip('/')}/{run_id}"
    python = facts.python.path if facts.python else f"{provisioned.env_path}/bin/python"
    if config_text is None:
        config_text = render_flux_config(site, provisioned, remote_dir=remote_dir, source=source)
    name = workflow.name
    if name in RESERVED_NAMES:
        raise WorkflowError(f"{workflow}: a site-side run keeps the name {name} for itself")
    if name.startswith("-"):
        raise WorkflowError(f"{workflow}: a workflow name may not start with '-'")
    files = [
        ShippedFile(name, 0o600, _read(workflow)),
        ShippedFile(CONFIG_NAME, 0o600, config_text.encode()),
        ShippedFile(RUNNER_NAME, 0o600, SITE_RUNNER.encode()),
        *_extra_files(workflow, extra_files),
    ]
    return SiteRunPlan(
        label=site.label,
        run_id=run_id,
        remote_dir=remote_dir,
        python=python,
        workflow=name,
        args=tuple(args),
        files=tuple(files),
    )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise WorkflowError(f"{path}: cannot read: {err.strerror}") from None


def _extra_files(workflow: Path, extra: Sequence[Path]) -> list[ShippedFile]:
    base = workflow.resolve().parent
    found: dict[str, ShippedFile] = {}
    for item in extra:
        path = item.resolve()
        if not path.is_relative_to(base):
            raise WorkflowError(
                f"{item}: extra files must be under the workflow's directory {base}"
            )
        if not path.exists():
            raise WorkflowError(f"{item}: extra file not found")
        paths = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in paths:
            relative = file.relative_to(base)
            if "__pycache__" in relative.parts:
                continue
            name = relative.as_posix()
            if relative.parts[0] in RESERVED_NAMES or name == workflow.name:
                raise WorkflowError(f"{item}: a site-side run keeps the name {name} for itself")
            mode = 0o700 if file.stat().st_mode & 0o100 else 0o600
            found[name] = ShippedFile(name, mode, _read(file))
    return list(found.values())


# ---------------------------------------------------------------- running


def run_site_side(
    site: Site,
    workflow: Path,
    args: Sequence[str],
    state_dir: Path,
    ssh: SshSetup,
    *,
    extra_files: Sequence[Path] = (),
    config_text: str | None = None,
    source: str = "sites.yaml",
    grace: float = GRACE_SECONDS,
) -> int:
    """Run `workflow` with `args` on the login node of a flux `site`; returns its exit code.

    Needs what `pwgen provision` left in `state_dir` (facts, ssh config) and `ssh` (see
    `pwgen.ssh.prepare_ssh`). Checks the site's Parsl and Python (PreflightError with
    the table on a mismatch), ships the run, streams its output here, and cleans the
    site up afterwards. Writes `<state_dir>/runs/<id>/manifest.json` and the shipped
    config beside it. `config_text` replaces the generated config (tests use a
    ThreadPoolExecutor config: the lab has no Flux).
    """
    import parsl  # slow import: only when a run really starts

    from pwgen.preflight import check_versions
    from pwgen.run import RunRecord, new_run_dir  # pwgen.run imports this module

    if not workflow.is_file():
        raise WorkflowError(f"{workflow}: workflow script not found")
    provisioned = provisioned_site(site, state_dir)
    run_id, run_dir = new_run_dir(state_dir)
    record = RunRecord(
        run_id=run_id,
        workflow=str(workflow),
        args=list(args),
        sites=[site.model_dump(mode="json")],
        parsl_version=parsl.__version__,
        python_version=platform.python_version(),
    )
    record.facts = {site.label: json.loads(provisioned.facts_file.read_text(encoding="utf-8"))}
    plan: SiteRunPlan | None = None
    shipped = False
    exit_code = EXIT_BAD_INPUT
    try:
        plan = plan_site_run(
            site,
            workflow,
            args,
            provisioned,
            run_id,
            config_text=config_text,
            extra_files=extra_files,
            source=source,
        )
        config = next(f for f in plan.files if f.name == CONFIG_NAME)
        atomic_write(run_dir / CONFIG_NAME, config.data.decode(), mode=0o600)
        clock = time.monotonic()
        rows = check_versions([site], state_dir, ssh)
        record.site_versions = {row.label: [row.parsl, row.python] for row in rows}
        record.timings["preflight"] = time.monotonic() - clock
        clock = time.monotonic()
        ship(plan, ssh)
        shipped = True
        record.timings["ship"] = time.monotonic() - clock
        clock = time.monotonic()
        exit_code = stream(plan, ssh, grace)
        record.timings["workflow"] = time.monotonic() - clock
    finally:
        with _signals_ignored():
            if plan is not None and shipped:
                clock = time.monotonic()
                _remote(ssh, plan.label, plan.cleanup_command())
                record.timings["cleanup"] = time.monotonic() - clock
            ssh.stop_master(site.label)
            _write_manifest(run_dir, record, exit_code, plan)
    return exit_code


def ship(plan: SiteRunPlan, ssh: SshSetup) -> None:
    """Create the run directory on the site and unpack the run's files into it."""
    try:
        done = subprocess.run(
            ssh_argv(ssh, plan.label, plan.ship_command()),
            input=plan.tarball(),
            capture_output=True,
            timeout=SHIP_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SiteRunError(
            f"site {plan.label!r}: shipping the run to {plan.remote_dir} took over {SHIP_TIMEOUT} s"
        ) from None
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise SiteRunError(
            f"site {plan.label!r}: cannot ship the run to {plan.remote_dir}: "
            f"{reason[-1] if reason else f'ssh exited {done.returncode}'}"
        )


def stream(plan: SiteRunPlan, ssh: SshSetup, grace: float = GRACE_SECONDS) -> int:
    """Run the shipped workflow; its output goes to this process's stdout and stderr.

    Returns the remote exit code, or 130 after Ctrl-C / SIGTERM (which end the remote
    run: SIGTERM to its process group, SIGKILL after `grace` s or a second Ctrl-C).
    """
    with _signals_as_interrupt():
        # Its own session: the terminal's Ctrl-C reaches pwgen, not the ssh client, so
        # the remote teardown's output still comes back through it.
        proc = subprocess.Popen(
            ssh_argv(ssh, plan.label, plan.run_command()),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            return proc.wait()
        except KeyboardInterrupt:
            pass
        print(f"pwgen: interrupted; stopping the run on {plan.label}", file=sys.stderr)
        try:
            _stop(plan, ssh, proc, grace)
        except KeyboardInterrupt:
            print("pwgen: interrupted again; killing the run", file=sys.stderr)
        if proc.poll() is None:
            _remote(ssh, plan.label, plan.signal_command("KILL"))
            try:
                proc.wait(5)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                proc.kill()
                proc.wait()
    return EXIT_INTERRUPTED


def _stop(plan: SiteRunPlan, ssh: SshSetup, proc: "subprocess.Popen[bytes]", grace: float) -> None:
    """SIGTERM to the remote group (once the launcher has written it), then wait `grace` s."""
    deadline = time.monotonic() + PGID_WAIT_SECONDS
    while proc.poll() is None:
        if _remote(ssh, plan.label, plan.signal_command("TERM")) == 0:
            break
        if time.monotonic() > deadline:
            return
        time.sleep(0.2)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        print(f"pwgen: the run on {plan.label} did not stop in {grace:g} s", file=sys.stderr)


def _remote(ssh: SshSetup, label: str, command: str) -> int:
    """Run a short command on the site; its output is dropped. Returns the exit code."""
    try:
        done = subprocess.run(
            ssh_argv(ssh, label, command),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=REMOTE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return 255
    if done.stderr:
        sys.stderr.write(done.stderr.decode(errors="replace"))
    return done.returncode


def _write_manifest(
    run_dir: Path, record: "RunRecord", exit_code: int, plan: SiteRunPlan | None
) -> None:
    data = asdict(record)
    data["finished"] = time.time()
    data["exit_code"] = exit_code
    if plan is not None:
        data["site_side"] = {
            "site": plan.label,
            "remote_dir": plan.remote_dir,
            "command": plan.run_command(),
            "files": [f.name for f in plan.files],
        }
    atomic_write(run_dir / "manifest.json", json.dumps(data, indent=2) + "\n")


@contextmanager
def _signals_as_interrupt() -> Iterator[None]:
    """SIGTERM (and SIGHUP) here end the remote run as Ctrl-C does."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _signals_ignored() -> Iterator[None]:
    """The final clean-up (bounded by ssh timeouts) is not cut short by another Ctrl-C."""
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
