"""`pwgen provision`: run the provisioning playbook on every site with ansible-runner.

Sites provision in parallel (one Ansible fork each, pipelining, the shared
ControlMaster of `pwgen.ssh`). Progress and results come from runner events:
`runner_on_start` names each site's current task, `runner_on_ok` carries the
facts (read from events: ansible-runner's fact cache is empty with ansible-core
2.19), failures name the site, task and message. One failing site does not hide
the others' results.

ansible-runner writes the whole environment of ansible-playbook into its
artifacts, so it runs in a private 0700 directory that is removed afterwards,
with secrets (the PW API key and the like) scrubbed from that environment.
"""

import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pwgen.assets import ansible_dir
from pwgen.assets import playbook as collection_playbook
from pwgen.errors import PwgenError
from pwgen.facts import write_facts
from pwgen.inventory import build_inventory
from pwgen.layout import StateLayout
from pwgen.sites import Site
from pwgen.ssh import SshSetup

_SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)


class ProvisionError(PwgenError):
    """Provisioning cannot start (missing playbooks, no remote site, ...)."""


@dataclass
class SiteReport:
    """What happened on one site, updated as events arrive."""

    label: str
    task: str = "waiting"
    ok: int = 0
    changed: int = 0
    failed: bool = False
    error: str | None = None
    facts: dict[str, Any] | None = None
    env: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> str:
        if self.failed:
            return "failed"
        return "done" if self.task == "done" else "running"


OnUpdate = Callable[[Mapping[str, SiteReport]], None]


@dataclass(frozen=True)
class PlayOptions:
    """ansible-playbook's own options a `pwgen provision` passes on."""

    check: bool = False  # --check: report what would change, change nothing
    diff: bool = False  # --diff: show file and template changes
    verbosity: int = 0  # -v, -vv, ...: Ansible's output, shown as it runs

    def cmdline(self) -> str:
        return " ".join(flag for flag, on in (("--check", self.check), ("--diff", self.diff)) if on)


def provision(
    sites: Sequence[Site],
    state_dir: Path,
    ssh: SshSetup,
    playbook: str = "provision.yml",
    on_update: OnUpdate | None = None,
    options: PlayOptions = PlayOptions(),
) -> dict[str, SiteReport]:
    """Run the pwgen.hpc collection's `playbooks/<playbook>` on the remote sites; write their
    facts; return reports."""
    remote = [site for site in sites if not site.is_local]
    if not remote:
        raise ProvisionError("no remote site to provision (local sites need nothing)")
    playbook_path = collection_playbook(playbook)
    if not playbook_path.is_file():
        raise ProvisionError(f"{playbook_path}: playbook not found (reinstall pwgen)")
    reports = {site.label: SiteReport(site.label) for site in remote}
    handler = _EventHandler(reports, on_update or (lambda _: None))
    _run_playbook(playbook_path, remote, state_dir, ssh, handler, options)
    for report in reports.values():
        if not report.failed:
            report.task = "done"
            if not options.check:  # a check run changed nothing, facts included
                _save_facts(state_dir, report)
    return reports


def _inventory(sites: Sequence[Site]) -> dict[str, Any]:
    """The inventory of `pwgen inventory`, with each host reached by its ssh alias."""
    inventory = build_inventory(sites)
    for site in sites:
        inventory["all"]["children"]["sites"]["hosts"][site.label]["ansible_host"] = site.label
    return inventory


def _run_playbook(
    playbook: Path,
    sites: Sequence[Site],
    state_dir: Path,
    ssh: SshSetup,
    handler: "_EventHandler",
    options: PlayOptions,
) -> None:
    from ansible_runner import Runner, RunnerConfig  # slow import: only when provisioning

    private = Path(tempfile.mkdtemp(prefix="pwgen-runner-"))  # mode 0700
    try:
        inventory = private / "inventory.json"  # the yaml plugin reads JSON too
        inventory.write_text(json.dumps(_inventory(sites)))
        config = RunnerConfig(
            private_data_dir=str(private),
            playbook=str(playbook),
            inventory=str(inventory),
            forks=max(1, len(sites)),
            extravars={"parsl_env_cache": str(StateLayout(state_dir).wheelhouse_dir.resolve())},
            envvars={
                # The package's ansible.cfg and its pwgen.hpc collection, from any directory.
                "ANSIBLE_CONFIG": str(ansible_dir() / "ansible.cfg"),
                "ANSIBLE_COLLECTIONS_PATH": str(ansible_dir()),
                # Every connection goes through pwgen's ssh config: pinned keys, one master.
                "ANSIBLE_SSH_ARGS": ssh.ansible_ssh_args(),
                "ANSIBLE_HOST_KEY_CHECKING": "True",
                "ANSIBLE_PIPELINING": "True",
                # The inventory is a JSON file: load only the plugin that reads it (the
                # project's PW API plugin costs about 0.2 s of imports).
                "ANSIBLE_INVENTORY_ENABLED": "yaml",
                "ANSIBLE_NOCOLOR": "1",
                # The ansible-playbook of this Python's environment, activated or not.
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            },
            quiet=options.verbosity == 0,
            verbosity=options.verbosity or None,
            cmdline=options.cmdline() or None,
            suppress_env_files=True,
        )
        config.prepare()
        config.env = scrub_secrets(config.env)
        runner = Runner(config=config, event_handler=handler)
        runner.run()
        if runner.status != "successful" and not handler.saw_hosts:
            # Ansible itself failed (syntax, config): no site got as far as a task.
            raise ProvisionError(f"ansible-playbook failed: {handler.last_output or runner.status}")
    finally:
        shutil.rmtree(private, ignore_errors=True)


def scrub_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment without anything that looks like a credential (PW_API_KEY, ...)."""
    kept = {"ANSIBLE_HOST_KEY_CHECKING", "SSH_AUTH_SOCK"}
    return {k: v for k, v in environ.items() if k in kept or not _SECRET.search(k)}


class _EventHandler:
    """Turns ansible-runner events into per-site reports."""

    def __init__(self, reports: dict[str, SiteReport], on_update: OnUpdate) -> None:
        self.reports = reports
        self.on_update = on_update
        self.saw_hosts = False
        self.last_output = ""

    def __call__(self, event: Mapping[str, Any]) -> bool:
        data = event.get("event_data") or {}
        stdout = " ".join(str(event.get("stdout") or "").split())
        if "ERROR" in stdout or "error:" in stdout:
            self.last_output = stdout[-500:]
        report = self.reports.get(str(data.get("host", "")))
        if report is not None:
            self.saw_hosts = True
            self._apply(event.get("event", ""), data, report)
            self.on_update(self.reports)
        return False  # nothing reads the artifacts' job_events: do not write them

    @staticmethod
    def _apply(kind: str, data: Mapping[str, Any], report: SiteReport) -> None:
        result = data.get("res") or {}
        if kind == "runner_on_start":
            report.task = str(data.get("task", ""))
        elif kind == "runner_on_ok":
            report.ok += 1
            report.changed += bool(result.get("changed"))
            _collect_facts(result, report)
        elif kind in ("runner_on_failed", "runner_on_unreachable") and not data.get(
            "ignore_errors"
        ):
            report.failed = True
            report.error = f"{data.get('task', '')}: {failure_message(result)}"


def failure_message(result: Mapping[str, Any]) -> str:
    """One line: the task's message, with the last line of stderr when it says more."""
    message = " ".join(str(result.get("msg") or "").split())
    stderr = str(result.get("stderr") or "").strip().splitlines()
    detail = " ".join(stderr[-1].split()) if stderr else ""
    if detail and detail not in message:
        message = f"{message}: {detail}" if message else detail
    return message or "failed"


def _collect_facts(result: Mapping[str, Any], report: SiteReport) -> None:
    """Facts arrive as the module's `pwgen_site_facts` result or as set_fact results."""
    facts = dict(result.get("ansible_facts") or {})
    site_facts = result.get("pwgen_site_facts") or facts.pop("pwgen_site_facts", None)
    if isinstance(site_facts, dict):
        report.facts = site_facts
    for name, value in facts.items():
        if name.startswith("parsl_env_"):
            report.env[name.removeprefix("parsl_env_")] = value


def _save_facts(state_dir: Path, report: SiteReport) -> None:
    """`.pwgen/facts/<label>.json`: the module's facts plus the env the run will use."""
    if report.facts is None:
        return
    directory = StateLayout(state_dir).facts_dir
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_facts(
        directory, report.label, {**report.facts, "env": report.env, "gathered_at": time.time()}
    )
