"""The plan of a site-side run: the files it ships, their modes and its remote commands."""

import io
import posixpath
import shlex
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pwgen_script
from pwgen.configgen.flux import render_flux_config
from pwgen.configgen.remote import ProvisionedSite
from pwgen.errors import WorkflowError
from pwgen.flux import site_run
from pwgen.sites import Site

#: The launcher (pwgen/flux/site_run.py) and the module it imports, shipped as they are.
RUNNER_NAME = "pwgen_site_run.py"
SCRIPT_NAME = "pwgen_script.py"
CONFIG_NAME = site_run.CONFIG_FILE
PGID_NAME = site_run.PGID_FILE
#: The environment variable that marks every process of a site-side run (its run id).
MARKER = site_run.MARKER
#: Names the run directory keeps for pwgen: a workflow or extra file may not use them.
RESERVED_NAMES = frozenset({RUNNER_NAME, SCRIPT_NAME, CONFIG_NAME, PGID_NAME, "runinfo", "flux"})


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
        *launcher_files(),
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


def launcher_files() -> list[ShippedFile]:
    """The launcher and the module it imports, from pwgen's own source files."""
    return [
        ShippedFile(RUNNER_NAME, 0o600, Path(site_run.__file__).read_bytes()),
        ShippedFile(SCRIPT_NAME, 0o600, Path(pwgen_script.__file__).read_bytes()),
    ]


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
