"""Every kind of bad input, one table: the real `pwgen`, exit 2, one line, nothing written.

Each row sets up a project directory (files, a PW API stand-in, environment), runs the
installed console script and checks the contract of pwgen/errors.py: exit code 2,
exactly one line on stderr, `pwgen: error: ` naming what is wrong, no traceback; and
that nothing was written or half-written: every file that was there is unchanged, and
the only new paths are those the row allows (a refused run keeps its manifest, which
must then be complete and say exit code 2).

Rows by kind: CLI options and values, sites files, facts files (`pwgen config` and
`pwgen run`), the PW API (through `tests/pw_server.py`, the only stand-in) and the
workflow argument. Remote sites point at 127.0.0.1 port 1: should a row ever get as far
as ssh, it is refused on this machine.
"""

import hashlib
import json
import os
import shutil
import socket
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
from facts_samples import COMPUTE, provisioned_facts
from helpers import assert_one_line_error, run_pwgen
from pw_server import DEFAULT_KEY, PWServer, make_key

LOCAL_SITES = "sites:\n  - {label: local, scheduler: local}\n"
REMOTE_SITES = "sites:\n  - {label: s1, scheduler: slurm, host: 127.0.0.1, port: 1, user: alice}\n"
# A pinned host key for the remote site (never used: no row gets to connect).
KNOWN_HOSTS = (
    "[127.0.0.1]:1 ssh-ed25519 "
    "AAAAC3NzaC1lZDI1NTE5AAAAIK70gDxdwjiViigit/TXle4RnRxGRhCJZkdHrFF3470N\n"
)
WORKFLOW = "print('the workflow ran')\n"
FACTS_FILE = ".pwgen/facts/s1.json"
# The ssh state `pwgen provision` and `pwgen run` (re)write before contacting any site.
SSH_STATE = (".pwgen", ".pwgen/ssh", ".pwgen/ssh/config", ".pwgen/ssh/known_hosts")
# What `pwgen run` keeps of a refused run: its manifest (exit code 2), and the ssh state.
RUN_RECORD = (".pwgen/runs", ".pwgen/runs/*", ".pwgen/runs/*/manifest.json", *SSH_STATE)


def facts(**changes: Any) -> str:
    """A valid facts file for site s1 (what `pwgen provision` writes), with `changes`."""
    compute = {**COMPUTE, "nodes": 2, "cpus_per_node": 4, "memory_mb_per_node": 8000}
    data = provisioned_facts(
        "s1", home="/home/alice", partitions=[compute], parsl_version="2026.1.1"
    )
    data.update(changes)
    return json.dumps(data, indent=2)


def remote(facts_text: str | bytes | None = None, sites: str = REMOTE_SITES) -> dict[str, Any]:
    """A provisioned-looking project with remote site s1; `facts_text` None: no facts file."""
    files: dict[str, Any] = {
        "sites.yaml": sites,
        "known_hosts": KNOWN_HOSTS,
        # Pinned by an earlier provision (a known_hosts beside the sites file is not
        # trusted unless named, confirmed or written by `pwgen lab`).
        ".pwgen/ssh/known_hosts": KNOWN_HOSTS,
        ".pwgen/ssh/config": "Host s1\n    HostName 127.0.0.1\n    Port 1\n",
    }
    if facts_text is not None:
        files[FACTS_FILE] = facts_text
    return files


@dataclass(frozen=True)
class Case:
    """One bad input: the project, the command, and what its error line must name."""

    args: tuple[str, ...]
    needles: tuple[str, ...]
    # Files written before the command (over a project with LOCAL_SITES and wf.py).
    files: Mapping[str, str | bytes] = field(default_factory=dict)
    # Environment; "{closed_port}" is replaced by a port nothing listens on, "{runtime}" by
    # a short private dir for the project (`_runtime_dir`).
    env: Mapping[str, str] = field(default_factory=dict)
    # PW API stand-in settings (attributes of PWServer); None: no stand-in.
    pw: Mapping[str, Any] | None = None
    # Anything files cannot express (directories, fifos, symlinks).
    prepare: Callable[[Path], None] | None = None
    # Globs of paths the command may create or rewrite (a refused run's manifest, the ssh
    # config every run rewrites).
    may_write: tuple[str, ...] = ()


def _fifo(name: str) -> Callable[[Path], None]:
    def prepare(project: Path) -> None:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(project / name)

    return prepare


def _dir(name: str) -> Callable[[Path], None]:
    return lambda project: (project / name).mkdir(parents=True)


def _symlink(name: str, target: str) -> Callable[[Path], None]:
    return lambda project: (project / name).symlink_to(target)


def _squatted_control_dir(how: str) -> Callable[[Path], None]:
    """A private runtime dir `rt/` whose `pwgen/` socket dir another user got to first."""

    def prepare(project: Path) -> None:
        if os.geteuid() != 0:
            pytest.skip("making a directory another user owns needs root")
        runtime = _runtime_dir(project)
        runtime.mkdir(mode=0o700)
        if how == "symlink":
            (runtime / "pwgen").symlink_to("/tmp")
            return
        (runtime / "pwgen").mkdir()
        os.chmod(runtime / "pwgen", 0o777)
        os.chown(runtime / "pwgen", 65534, 65534)

    return prepare


def _runtime_dir(project: Path) -> Path:
    """A short XDG_RUNTIME_DIR for the project (a socket path must stay short), in /tmp."""
    return Path("/tmp") / f"pwrt-{hashlib.sha1(str(project).encode()).hexdigest()[:10]}"


def _state_dir_is_a_file(project: Path) -> None:
    (project / ".pwgen").write_text("not a directory\n")


CLUSTER = {"name": "c1", "status": "on", "schedulerType": "slurm", "ipAddress": "192.0.2.1"}
TO_PW = ("inventory", "--from", "pw", "-o", "inv.yml")
# Hostile values must never become code: `inventory` writes what Ansible would read.
TO_INVENTORY = ("inventory", "--from", "sites.yaml", "-o", "inv.yml")
PIPE_LOOKUP = "{{ lookup('pipe', 'touch pwned') }}"
# Ten lines whose naive expansion is 9**9 strings (the "billion laughs").
ALIAS_BOMB = (
    'l0: &l0 "lol"\n'
    + "".join(f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]\n" for n in range(1, 9))
    + "sites: [*l8]\n"
)
# Longest error line pwgen may print: a hostile value is never echoed whole.
MAX_ERROR_LINE = 1000


def _remote_site(**fields: str) -> str:
    """REMOTE_SITES with more fields (flow style, values quoted by json.dumps)."""
    extra = "".join(f", {name}: {json.dumps(value)}" for name, value in fields.items())
    return REMOTE_SITES.replace("user: alice}", f"user: alice{extra}}}")


def _env_site(**env: Any) -> str:
    return "sites:\n  - label: a\n    scheduler: local\n    env: " + json.dumps(env) + "\n"


def _huge_file(name: str, size: int) -> Callable[[Path], None]:
    return lambda project: (project / name).write_bytes(b"#" * size + b"\nsites: []\n")


BAD_SITES = {
    "yaml_syntax": ("sites:\n  - label: a\n   scheduler: local\n", "sites.yaml:3:"),
    "unknown_key": ("sites:\n  - {label: a, scheduler: local, colour: red}\n", "unknown key"),
    "wrong_type": ("sites:\n  - {label: a, scheduler: local, max_blocks: many}\n", "max_blocks"),
    "duplicate_label": (
        "sites:\n  - {label: a, scheduler: local}\n  - {label: a, scheduler: local}\n",
        "duplicate label 'a'",
    ),
    "invalid_label": ("sites:\n  - {label: a-b, scheduler: local}\n", "'a-b' is not a valid"),
    "unknown_scheduler": ("sites:\n  - {label: a, scheduler: lsf}\n", "sites[0].scheduler"),
    "unknown_executor": (
        "sites:\n  - {label: a, scheduler: local, executor: dask}\n",
        "sites[0].executor",
    ),
}
SITES_COMMANDS = {
    "inventory": ("inventory", "--from", "sites.yaml", "-o", "inv.yml"),
    "config": ("config", "-o", "parsl_config.py"),
    "run": ("run", "wf.py"),
}

CASES: dict[str, Case] = {
    # ---------------------------------------------------------------- command line
    "cli_unknown_command": Case(("frobnicate",), ("No such command 'frobnicate'",)),
    "cli_unknown_option": Case(("config", "--colour"), ("No such option: --colour",)),
    "cli_unknown_option_after_workflow": Case(
        ("run", "wf.py", "--colour"), ("No such option: --colour", "pwgen run --help")
    ),
    "cli_option_without_value": Case(("config", "-o"), ("Option '-o' requires an argument",)),
    "cli_missing_workflow_argument": Case(("run",), ("Missing argument 'workflow'",)),
    "cli_missing_required_option": Case(("inventory",), ("Missing option '--from'",)),
    "cli_not_a_number": Case(("status", "--last", "abc"), ("'--last'", "not a valid int")),
    "cli_negative_count": Case(("status", "--last", "-1"), ("--last -1", "negative")),
    "cli_run_negative_retries": Case(("run", "wf.py", "--retries", "-1"), ("'--retries'", "x>=0")),
    "cli_run_queue_wait_not_a_number": Case(
        ("run", "wf.py", "--queue-wait", "10m"), ("'--queue-wait'", "not a valid float")
    ),
    "cli_run_avoid_after_zero": Case(
        ("run", "wf.py", "--avoid-after", "0"), ("'--avoid-after'", "x>=1")
    ),
    "cli_run_cool_down_nan": Case(
        ("run", "wf.py", "--cool-down", "nan"), ("'--cool-down'", "not a number of seconds")
    ),
    "cli_run_queue_wait_inf": Case(
        ("run", "wf.py", "--queue-wait", "inf"), ("'--queue-wait'", "not a number of seconds")
    ),
    "cli_run_flag_with_a_value": Case(
        ("run", "wf.py", "--no-failover=1"), ("'--no-failover' does not take a value",)
    ),
    "cli_limit_unknown_site": Case(
        ("provision", "--limit", "nosuch"), ("--limit nosuch: no such site", "local")
    ),
    "cli_known_hosts_missing": Case(
        ("provision", "--known-hosts", "nofile"),
        ("nofile: known_hosts file not found",),
        may_write=(".pwgen", ".pwgen/ssh"),
    ),
    "cli_teardown_unknown_run": Case(
        ("teardown", "--run", "20200101-000000-abcdef"),
        ("--run 20200101-000000-abcdef: no such run",),
    ),
    "cli_provision_nothing_remote": Case(
        ("provision",), ("no remote site to provision",), may_write=SSH_STATE
    ),
    "cli_sites_missing": Case(("config", "--sites", "missing.yaml"), ("missing.yaml: sites file",)),
    "cli_sites_missing_run": Case(
        ("run", "wf.py", "--sites", "missing.yaml"), ("missing.yaml: sites file not found",)
    ),
    "cli_sites_missing_inventory": Case(
        ("inventory", "--from", "missing.yaml"), ("missing.yaml: sites file not found",)
    ),
    "cli_sites_missing_from_env": Case(
        ("status",), ("nope.yaml: sites file not found",), env={"PWGEN_SITES": "nope.yaml"}
    ),
    "cli_output_dir_missing": Case(
        ("config", "-o", "no/such/dir/parsl_config.py"), ("no/such/dir does not exist",)
    ),
    "cli_inventory_output_dir_not_makeable": Case(  # a missing directory is made
        ("inventory", "--from", "sites.yaml", "-o", "sites.yaml/inv.yml"),
        ("cannot make directory sites.yaml",),
    ),
    "cli_output_is_a_directory": Case(
        ("config", "-o", "out"), ("out", "directory"), prepare=_dir("out")
    ),
    "cli_inventory_output_is_a_directory": Case(
        ("inventory", "--from", "sites.yaml", "-o", "out"),
        ("out", "directory"),
        prepare=_dir("out"),
    ),
    "cli_state_dir_is_a_file_run": Case(
        ("run", "wf.py"), (".pwgen",), prepare=_state_dir_is_a_file
    ),
    "cli_state_dir_is_a_file_provision": Case(
        ("provision",),
        (".pwgen",),
        files={"sites.yaml": REMOTE_SITES, "known_hosts": KNOWN_HOSTS},
        prepare=_state_dir_is_a_file,
    ),
    "cli_lab_sites_out_of_range": Case(
        (
            "lab",
            "up",
            "--site-count",
            "0",
            "--name",
            "pwsec",
            "--subnet",
            "10.238.0.0/16",
            "--state-dir",
            "lab",
        ),
        ("--site-count 0", "between 1 and"),
    ),
    "cli_lab_public_subnet": Case(
        ("lab", "up", "--name", "pwsec", "--subnet", "8.8.0.0/16", "--state-dir", "lab"),
        ("--subnet 8.8.0.0/16", "private range"),
    ),
    "cli_lab_ssh_without_lab": Case(
        ("lab", "ssh", "lab1", "--state-dir", "lab"), ("no lab in", "pwgen lab up")
    ),
    "cli_lab_corrupt_record": Case(
        ("lab", "down", "--state-dir", "lab"),
        ("lab/lab.json: not a lab record",),
        files={"lab/lab.json": '{"prefix": "pwsec", "sites": 3}'},
    ),
    # ---------------------------------------------------------------- sites files
    "sites_empty_file": Case(
        ("config",), ("sites.yaml", "expected a mapping"), files={"sites.yaml": ""}
    ),
    "sites_top_level_list": Case(
        ("inventory", "--from", "sites.yaml", "-o", "inv.yml"),
        ("sites.yaml", "expected a mapping with a 'sites:' list"),
        files={"sites.yaml": "- {label: a, scheduler: local}\n"},
    ),
    "sites_empty_list": Case(
        ("run", "wf.py"),
        ("sites.yaml:1: sites:", "at least 1 item"),
        files={"sites.yaml": "sites: []\n"},
    ),
    "sites_entry_not_a_mapping": Case(
        ("status",),
        ("sites.yaml:2: sites[0]:", "dictionary"),
        files={"sites.yaml": "sites:\n  - local\n"},
    ),
    "sites_duplicate_key": Case(
        ("provision",),
        ("sites.yaml:4: duplicate key 'scheduler'",),
        files={"sites.yaml": "sites:\n  - label: a\n    scheduler: local\n    scheduler: slurm\n"},
    ),
    "sites_remote_without_host": Case(
        ("config",),
        ("sites.yaml:2: sites[0]:", "a slurm site needs a host"),
        files={"sites.yaml": "sites:\n  - {label: a, scheduler: slurm}\n"},
    ),
    "sites_local_with_host": Case(
        ("run", "wf.py"),
        ("sites[0]", "host is not used by a local site"),
        files={"sites.yaml": "sites:\n  - {label: a, scheduler: local, host: h1}\n"},
    ),
    "sites_min_blocks_above_max": Case(
        ("config",),
        ("sites[0]", "min_blocks (3) > max_blocks (1)"),
        files={"sites.yaml": "sites:\n  - {label: a, scheduler: local, min_blocks: 3}\n"},
    ),
    "sites_bad_walltime": Case(
        ("provision",),
        ("sites.yaml:2: sites[0].walltime",),
        files={"sites.yaml": "sites:\n  - {label: a, scheduler: slurm, host: h, walltime: 1h}\n"},
    ),
    "sites_port_out_of_range": Case(
        ("inventory", "--from", "sites.yaml", "-o", "inv.yml"),
        ("sites[0].port", "65535"),
        files={"sites.yaml": "sites:\n  - {label: a, scheduler: slurm, host: h, port: 70000}\n"},
    ),
    "sites_host_is_an_ssh_option": Case(
        ("provision",),
        ("sites[0].host", "'-oProxyCommand=sh' is not a host name"),
        files={"sites.yaml": "sites:\n  - {label: a, scheduler: slurm, host: -oProxyCommand=sh}\n"},
    ),
    "sites_env_key_typo": Case(
        ("config",),
        ("sites[0].env.methd: unknown key 'methd'", "did you mean 'method'?"),
        files={"sites.yaml": "sites:\n  - {label: a, scheduler: local, env: {methd: conda}}\n"},
    ),
    "sites_unknown_env_method": Case(
        ("run", "wf.py"),
        ("sites[0].env.method",),
        files={"sites.yaml": "sites:\n  - {label: a, scheduler: local, env: {method: pip}}\n"},
    ),
    "sites_multiline_worker_init_entry": Case(
        ("config",),
        ("sites[0].worker_init", "control character"),
        files={"sites.yaml": 'sites:\n  - {label: a, scheduler: local, worker_init: ["a\\nb"]}\n'},
    ),
    "sites_not_utf8": Case(
        ("config",),
        ("sites.yaml: cannot read sites file", "utf-8"),
        files={"sites.yaml": b"sites:\n  - {label: \xff}\n"},
    ),
    "sites_is_a_directory": Case(
        ("run", "wf.py", "--sites", "conf"), ("conf: cannot read sites file",), prepare=_dir("conf")
    ),
    # ---------------------------------------------------------------- hostile sites files
    "ssh_control_dir_of_another_user": Case(
        ("provision",),
        ("/pwgen: is owned by uid 65534", "has mode 0777", "another user may have made it"),
        files=remote(),
        env={"XDG_RUNTIME_DIR": "{runtime}"},
        prepare=_squatted_control_dir("owner"),
    ),
    "ssh_control_dir_is_a_symlink": Case(
        ("run", "wf.py"),
        ("/pwgen: is a symbolic link",),
        files=remote(facts()),
        env={"XDG_RUNTIME_DIR": "{runtime}"},
        prepare=_squatted_control_dir("symlink"),
        may_write=RUN_RECORD,
    ),
    "sites_identity_file_starts_an_ssh_config_line": Case(
        ("provision",),
        ("sites.yaml:2: sites[0].identity_file", "control character"),
        files={"sites.yaml": _remote_site(identity_file="/k\nProxyCommand touch pwned")},
    ),
    "sites_proxy_jump_command_in_second_hop": Case(
        TO_INVENTORY,
        ("sites.yaml:2: sites[0].proxy_jump", "hop 2"),
        files={"sites.yaml": _remote_site(proxy_jump="h:1,a`touch pwned`")},
    ),
    "sites_proxy_jump_option_hop": Case(
        ("provision",),
        ("sites[0].proxy_jump", "'-oProxyCommand=sh'"),
        files={"sites.yaml": _remote_site(proxy_jump="bastion,-oProxyCommand=sh")},
    ),
    "sites_template_in_env_python": Case(
        TO_INVENTORY,
        ("sites.yaml:4: sites[0].env.python", "template"),
        files={"sites.yaml": _env_site(python=PIPE_LOOKUP)},
    ),
    "sites_template_in_env_prefix": Case(
        ("config",),
        ("sites[0].env.prefix", "template"),
        files={"sites.yaml": _env_site(prefix="{% set x = 1 %}/envs")},
    ),
    "sites_template_in_extra_packages": Case(
        TO_INVENTORY,
        ("sites[0].env.extra_packages", "template"),
        files={"sites.yaml": _env_site(extra_packages=[PIPE_LOOKUP])},
    ),
    "sites_template_in_worker_init": Case(
        ("run", "wf.py"),
        ("sites[0].worker_init", "template"),
        files={
            "sites.yaml": "sites:\n  - label: a\n    scheduler: local\n"
            f"    worker_init: {json.dumps(PIPE_LOOKUP)}\n"
        },
    ),
    "sites_template_in_identity_file": Case(
        TO_INVENTORY,
        ("sites[0].identity_file", "template"),
        files={"sites.yaml": _remote_site(identity_file="~/.ssh/{# x #}id")},
    ),
    "sites_jinja_override_header_in_workdir": Case(
        TO_INVENTORY,
        ("sites[0].workdir", "template"),
        files={"sites.yaml": _remote_site(workdir="#jinja2:variable_start_string:'<<'\n<< 1 >>")},
    ),
    "sites_extra_packages_pip_option": Case(
        TO_INVENTORY,
        ("sites[0].env.extra_packages", "'--index-url=https://evil.example/simple'"),
        files={"sites.yaml": _env_site(extra_packages=["--index-url=https://evil.example/simple"])},
    ),
    "sites_extra_packages_url": Case(
        ("config",),
        ("sites[0].env.extra_packages", "URL"),
        files={"sites.yaml": _env_site(extra_packages=["numpy @ https://evil.example/n.whl"])},
    ),
    "sites_extra_packages_two_in_one": Case(
        ("config",),
        ("sites[0].env.extra_packages", "requirement"),
        files={"sites.yaml": _env_site(extra_packages=["numpy scipy"])},
    ),
    "sites_alias_bomb": Case(
        ("config",), ("sites.yaml", "alias"), files={"sites.yaml": ALIAS_BOMB}
    ),
    "sites_deep_nesting": Case(
        ("config",), ("sites.yaml:1:", "nested"), files={"sites.yaml": "sites: " + "[" * 5000}
    ),
    "sites_huge_value_not_echoed": Case(
        ("config",),
        ("sites[0].partition", "..."),
        files={"sites.yaml": _remote_site(partition="x;" * 300_000)},
    ),
    "sites_integer_too_long": Case(
        ("config",),
        ("sites.yaml:2:", "cannot read this value"),
        files={
            "sites.yaml": "sites:\n  - {label: a, scheduler: local, max_blocks: "
            + "9" * 5000
            + "}\n"
        },
    ),
    "sites_impossible_date": Case(
        ("config",),
        ("sites.yaml:2:", "day is out of range"),
        files={"sites.yaml": "sites:\n  - {label: a, scheduler: local, workdir: 2026-02-30}\n"},
    ),
    "sites_is_a_fifo": Case(
        ("run", "wf.py", "--sites", "pipe.yaml"),
        ("pipe.yaml: cannot read sites file", "not a regular file"),
        prepare=_fifo("pipe.yaml"),
    ),
    "sites_is_a_fifo_from_env": Case(
        ("config",),
        ("pipe.yaml: cannot read sites file", "not a regular file"),
        env={"PWGEN_SITES": "pipe.yaml"},
        prepare=_fifo("pipe.yaml"),
    ),
    "sites_is_dev_zero": Case(
        ("config", "--sites", "/dev/zero"), ("/dev/zero: cannot read sites file", "not a regular")
    ),
    "sites_too_big": Case(
        ("inventory", "--from", "big.yaml", "-o", "inv.yml"),
        ("big.yaml: cannot read sites file", "larger than 1 MiB"),
        prepare=_huge_file("big.yaml", 2 << 20),
    ),
    # ---------------------------------------------------------------- facts files
    "facts_missing_config": Case(
        ("config",),
        ("site 's1' (slurm): no facts", "s1.json", "pwgen provision"),
        files=remote(None),
    ),
    "facts_missing_run": Case(
        ("run", "wf.py"),
        ("s1.json: no facts for site 's1'", "pwgen provision"),
        files=remote(None),
        may_write=RUN_RECORD,
    ),
    "facts_corrupt_json_config": Case(
        ("config",),
        ("s1.json:2:", "not valid JSON"),
        files=remote('{"version": 1,\n'),
    ),
    "facts_corrupt_json_run": Case(
        ("run", "wf.py"),
        ("s1.json:1:", "not valid JSON"),
        files=remote('{"version": 1'),
        may_write=RUN_RECORD,
    ),
    "facts_not_an_object_run": Case(
        ("run", "wf.py"),
        ("s1.json: expected a JSON object, got list",),
        files=remote("[1, 2]"),
        may_write=RUN_RECORD,
    ),
    "facts_partition_name_starts_a_statement": Case(
        ("config",),
        ("s1.json: partitions[0].name", "control character"),
        files=remote(
            facts(partitions=[{**COMPUTE, "name": "compute\nimport os; os.system('touch pwned')"}])
        ),
    ),
    "facts_env_path_holds_a_template": Case(
        ("run", "wf.py"),
        ("s1.json: env.path", "template marker"),
        files=remote(facts(env={"path": PIPE_LOOKUP})),
        may_write=RUN_RECORD,
    ),
    "facts_is_a_fifo_run": Case(
        ("run", "wf.py"),
        ("s1.json: cannot read facts", "not a regular file (a FIFO)"),
        files=remote(None),
        prepare=_fifo(FACTS_FILE),
        may_write=RUN_RECORD,
    ),
    "facts_not_utf8_config": Case(
        ("config",),
        ("s1.json: cannot read facts",),
        files=remote(b"\xff\xfe{}"),
    ),
    "facts_is_a_directory_run": Case(
        ("run", "wf.py"),
        ("s1.json: cannot read facts",),
        files=remote(None),
        prepare=_dir(FACTS_FILE),
        may_write=RUN_RECORD,
    ),
    "facts_other_version_run": Case(
        ("run", "wf.py"),
        ("s1.json: version: facts version 2", "pwgen provision"),
        files=remote(facts(version=2)),
        may_write=RUN_RECORD,
    ),
    "facts_missing_key_config": Case(
        ("config",),
        ("s1.json: partitions: required key is missing",),
        files=remote(json.dumps({"version": 1, "scheduler": "slurm"})),
    ),
    "facts_wrong_type_run": Case(
        ("run", "wf.py"),
        ("s1.json: python.path",),
        files=remote(facts(python={"path": 3, "version": "3.11.2"})),
        may_write=RUN_RECORD,
    ),
    "facts_bad_internal_address_config": Case(
        ("config",),
        ("s1.json: internal_address", "'10.9.1'"),
        files=remote(facts(internal_address="10.9.1")),
    ),
    "facts_no_python_env_run": Case(
        ("run", "wf.py"),
        ("site 's1': its facts name no Python env", "pwgen provision"),
        files=remote(facts(python=None)),
        may_write=RUN_RECORD,
    ),
    "facts_other_scheduler_config": Case(
        ("config",),
        ("s1.json: site 's1' is slurm in the sites file but the facts say pbspro",),
        files=remote(facts(scheduler="pbspro")),
    ),
    "facts_partition_not_on_site_config": Case(
        ("config",),
        ("site 's1': partition 'gpu' is not on the site", "compute"),
        files=remote(
            facts(),
            sites="sites:\n  - {label: s1, scheduler: slurm, host: 127.0.0.1, partition: gpu}\n",
        ),
    ),
    "facts_without_ssh_config": Case(
        ("config",),
        ("ssh/config: no ssh config", "pwgen provision"),
        files={"sites.yaml": REMOTE_SITES, FACTS_FILE: facts()},
    ),
    "facts_unpinned_host_key_run": Case(
        ("run", "wf.py"),
        ("site 's1': no pinned host key for [127.0.0.1]:1", "--known-hosts"),
        files={"sites.yaml": REMOTE_SITES, FACTS_FILE: facts()},
        may_write=RUN_RECORD,
    ),
    # ---------------------------------------------------------------- PW API
    "pw_key_missing": Case(TO_PW, ("PW_API_KEY is not set",)),
    "pw_host_not_in_key": Case(
        TO_PW, ("PW_PLATFORM_HOST is not set", "PW_API_KEY"), env={"PW_API_KEY": "plainkey123"}
    ),
    "pw_platform_host_not_a_host": Case(
        TO_PW,
        ("PW_PLATFORM_HOST is not a host name", "'has space.org'"),
        env={"PW_API_KEY": DEFAULT_KEY, "PW_PLATFORM_HOST": "has space.org"},
    ),
    "pw_unreachable": Case(
        TO_PW,
        ("cannot reach PW API at http://127.0.0.1:",),
        env={"PW_API_KEY": DEFAULT_KEY, "PW_PLATFORM_HOST": "http://127.0.0.1:{closed_port}"},
    ),
    "pw_401_wrong_key": Case(
        TO_PW, ("rejected the key (HTTP 401)", "PW_API_KEY"), pw=dict(api_key="pwt_x.other")
    ),
    "pw_403": Case(TO_PW, ("rejected the key (HTTP 403)",), pw=dict(status=403)),
    "pw_401_legacy": Case(
        TO_PW, ("rejected the key (HTTP 401)",), pw=dict(legacy=True, api_key="pwt_x.other")
    ),
    "pw_500_after_retries": Case(
        TO_PW,
        ("answered HTTP 500", "/api/clusters", "after 3 attempts"),
        pw=dict(fail_first=99, fail_status=500),
    ),
    "pw_503_after_retries": Case(TO_PW, ("answered HTTP 503",), pw=dict(fail_first=99)),
    "pw_neither_endpoint": Case(
        TO_PW, ("neither /api/clusters nor /api/resources",), pw=dict(status=404)
    ),
    "pw_malformed_json": Case(
        TO_PW, ("/api/clusters with malformed JSON",), pw=dict(malformed=True)
    ),
    "pw_html_instead_of_json": Case(
        TO_PW, ("malformed JSON",), pw=dict(body=b"<html>maintenance</html>")
    ),
    "pw_object_not_list": Case(
        TO_PW, ("expected a list of clusters, got an object",), pw=dict(clusters={"items": []})
    ),
    "pw_cluster_not_object": Case(
        TO_PW, ("clusters[0] should be an object, got a string",), pw=dict(clusters=["c1"])
    ),
    "pw_field_wrong_type": Case(
        TO_PW,
        ("cluster 'c1': field 'ipAddress' should be a string, got 5",),
        pw=dict(clusters=[{**CLUSTER, "ipAddress": 5}]),
    ),
    "pw_cluster_without_name": Case(
        TO_PW,
        ("clusters[0]", "field 'name' is missing or empty"),
        pw=dict(clusters=[{**CLUSTER, "name": ""}]),
    ),
    "pw_address_is_an_ssh_option": Case(
        TO_PW,
        ("cluster 'c1'", "'-oProxyCommand=sh' is not a host name"),
        pw=dict(clusters=[{**CLUSTER, "ipAddress": "-oProxyCommand=sh"}]),
    ),
    "pw_no_clusters": Case(TO_PW, ("lists no clusters",), pw=dict(clusters=[])),
    "pw_no_usable_cluster": Case(
        TO_PW,
        ("no usable cluster", "down (off)"),
        pw=dict(clusters=[{**CLUSTER, "name": "down", "status": "off"}]),
    ),
    "pw_label_collision": Case(
        TO_PW,
        ("both become site label 'a_b'",),
        pw=dict(clusters=[{**CLUSTER, "name": "a-b"}, {**CLUSTER, "name": "a.b"}]),
    ),
    "pw_legacy_wrong_shape": Case(
        TO_PW, ("expected a list of resources",), pw=dict(legacy=True, resources={"x": 1})
    ),
    "pw_template_in_workdir": Case(
        TO_PW,
        ("cluster 'c1'", "workdir (from variables.workdir)", "template"),
        pw=dict(clusters=[{**CLUSTER, "workdir": PIPE_LOOKUP}]),
    ),
    "pw_legacy_template_in_workdir": Case(
        TO_PW,
        ("cluster 'r1'", "workdir", "template"),
        pw=dict(
            legacy=True,
            resources=[
                {
                    "name": "r1",
                    "status": "on",
                    "controllerIp": "192.0.2.1",
                    "variables": {"workdir": PIPE_LOOKUP},
                }
            ],
        ),
    ),
    "pw_huge_answer": Case(TO_PW, ("answer is larger than",), pw=dict(huge=64 << 20)),
    "pw_deeply_nested_json": Case(
        TO_PW, ("/api/clusters", "nested"), pw=dict(body=b"[" * 100_000 + b"]" * 100_000)
    ),
    "pw_plain_http_off_loopback": Case(
        TO_PW,
        ("PW_PLATFORM_HOST", "http://0.0.0.0:", "https", "PWGEN_ALLOW_HTTP"),
        env={"PW_API_KEY": DEFAULT_KEY, "PW_PLATFORM_HOST": "http://0.0.0.0:{closed_port}"},
    ),
    "pw_key_says_plain_http": Case(
        TO_PW,
        ("the host in PW_API_KEY", "https", "PWGEN_ALLOW_HTTP"),
        env={"PW_API_KEY": make_key("http://0.0.0.0:9")},
    ),
    # ---------------------------------------------------------------- the workflow
    "workflow_missing": Case(("run", "nowhere.py"), ("nowhere.py: workflow script not found",)),
    "workflow_missing_with_remote_sites": Case(
        ("run", "nowhere.py"), ("nowhere.py: workflow script not found",), files=remote(facts())
    ),
    "workflow_not_python": Case(
        ("run", "broken.py"), ("broken.py:1: not valid Python",), files={"broken.py": "def (:\n"}
    ),
    "workflow_python2": Case(
        ("run", "old.py"), ("old.py:1: not valid Python",), files={"old.py": "print 'hello'\n"}
    ),
    "workflow_not_utf8": Case(
        ("run", "bin.py"), ("bin.py", "not valid Python"), files={"bin.py": b"\xff\xfe\x00x"}
    ),
    "workflow_null_bytes": Case(
        ("run", "nul.py"), ("nul.py", "null bytes"), files={"nul.py": b"x = 1\0\n"}
    ),
    "workflow_is_a_directory": Case(
        ("run", "flows"), ("flows", "workflow script"), prepare=_dir("flows")
    ),
    "workflow_is_a_fifo": Case(
        ("run", "pipe.py"), ("pipe.py", "workflow script"), prepare=_fifo("pipe.py")
    ),
    "workflow_is_a_device": Case(("run", "/dev/null"), ("/dev/null", "workflow script")),
    "workflow_dangling_symlink": Case(
        ("run", "link.py"), ("link.py", "workflow script"), prepare=_symlink("link.py", "gone.py")
    ),
}
for _name, (_text, _needle) in BAD_SITES.items():
    for _command, _args in SITES_COMMANDS.items():
        CASES[f"sites_{_name}_{_command}"] = Case(
            _args, ("sites.yaml", _needle), {"sites.yaml": _text}
        )

# Bugs whose fix is outside this test's files (see the reasons); strict: a fix shows up.


def _params() -> list[Any]:
    return [
        pytest.param(
            name,
            id=name,
        )
        for name in CASES
    ]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write(project: Path, files: Mapping[str, str | bytes]) -> None:
    for name, content in files.items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def _snapshot(project: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under the project: its type and, for a regular file, its bytes."""
    found: dict[str, tuple[int, bytes | None]] = {}
    for path in project.rglob("*"):
        mode = path.lstat().st_mode
        content = path.read_bytes() if stat.S_ISREG(mode) else None  # never open a fifo
        found[path.relative_to(project).as_posix()] = (stat.S_IFMT(mode), content)
    return found


def _environment(case: Case, request: pytest.FixtureRequest, project: Path) -> dict[str, str]:
    env = {
        name: value.format(closed_port=_closed_port(), runtime=_runtime_dir(project))
        for name, value in case.env.items()
    }
    if any("{runtime}" in value for value in case.env.values()):
        request.addfinalizer(lambda: shutil.rmtree(_runtime_dir(project), ignore_errors=True))
    if case.pw is None:
        return env
    server: PWServer = request.getfixturevalue("pw_server")
    env = {**server.env(), **env}  # the client keeps the default key, whatever the server wants
    for name, value in case.pw.items():
        setattr(server, name, value)
    return env


@pytest.mark.parametrize("name", _params())
def test_bad_input(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    case = CASES[name]
    project = tmp_path / "project"
    project.mkdir()
    _write(project, {"sites.yaml": LOCAL_SITES, "wf.py": WORKFLOW, **case.files})
    if case.prepare is not None:
        case.prepare(project)
    env = _environment(case, request, project)
    before = _snapshot(project)

    result = run_pwgen(*case.args, cwd=project, env=env, timeout=60)

    assert_one_line_error(result, *case.needles)
    assert len(result.stderr) < MAX_ERROR_LINE, f"{len(result.stderr)} characters of error"
    assert not (project / "pwned").exists(), "a site value ran a command"
    assert "the workflow ran" not in result.stdout
    key = env.get("PW_API_KEY")
    if key:
        assert key not in result.stdout + result.stderr, "the API key was shown"
    after = _snapshot(project)
    changed = sorted(path for path, entry in before.items() if after.get(path) != entry)
    created = sorted(set(after) - set(before))
    allowed = case.may_write
    unexpected = [path for path in changed + created if not any(fnmatch(path, g) for g in allowed)]
    assert not unexpected, f"a refused command wrote, changed or removed {unexpected}"
    for path in created:
        if path.endswith("manifest.json"):  # a refused run's record: complete, exit code 2
            manifest = json.loads((project / path).read_text())
            assert manifest["exit_code"] == 2 and manifest["finished"] is not None, manifest
