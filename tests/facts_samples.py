"""Sample site facts for the offline tests: the one facts file every test starts from.

`module_facts()` is what the pwgen.hpc.site_facts module returns (every key of its RETURN
documentation), `provisioned_facts()` the file `pwgen provision` writes from it (plus
`env` and `gathered_at`). A test passes what it varies as keyword overrides, so each
test's own values stand next to it.
"""

from pathlib import Path
from typing import Any

#: The default partition: 4 nodes of 8 CPUs and 16 GiB, no time limit.
COMPUTE: dict[str, Any] = {
    "name": "compute",
    "state": "up",
    "nodes": 4,
    "cpus_per_node": 8,
    "memory_mb_per_node": 16384,
    "default": True,
    "max_time": None,
    "max_time_seconds": None,
}
#: A small partition with a 30-minute limit and too little memory for a whole GB.
DEBUG: dict[str, Any] = {
    "name": "debug",
    "state": "up",
    "nodes": 1,
    "cpus_per_node": 4,
    "memory_mb_per_node": 800,
    "default": False,
    "max_time": "00:30:00",
    "max_time_seconds": 1800,
}


def module_facts(
    label: str = "s1",
    *,
    scheduler: str = "slurm",
    home: str | None = None,
    env_dir: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """What the facts module returns for site `label` (user home `/home/<label>u`)."""
    home = home or _home(label)
    env = env_dir or _env_dir(home)
    data: dict[str, Any] = {
        "version": 1,
        "scheduler": scheduler,
        "scheduler_version": "22.05.8",
        "scheduler_bin_dir": "/usr/bin",
        "partitions": [dict(COMPUTE), dict(DEBUG)],
        "internal_address": "10.9.1.1",
        "internal_address_method": "subnet",
        "internal_interface": "br0",
        "hostname": f"{label}-login",
        "home": home,
        "workdir": f"{home}/.pwgen/work",
        "arch": "x86_64",
        "glibc": "2.36",
        "env_path": env,
        "python": {"path": f"{env}/bin/python", "version": "3.11.2"},
        "parsl_version": "2026.10.26",
        "worker_pool": f"{env}/bin/process_worker_pool.py",
        "relay": f"{env}/bin/pwgen-relay",
        "worker_helpers": f"{env}/lib/python3.11/site-packages/pwgen_worker.py",
        "flux": None,
        "mpi": {"mpiexec": "/usr/bin/mpiexec", "flavor": "mpich", "version": "Version: 4.0.2"},
        "gateway_ports": {"allowed": False},
        "warnings": [],
    }
    data.update(overrides)
    return data


def provisioned_facts(
    label: str = "s1",
    *,
    scheduler: str = "slurm",
    home: str | None = None,
    env_dir: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The facts file `pwgen provision` writes for site `label`: the module's facts plus
    the env the runs use (the pwgen.hpc.parsl_env role's facts) and when they were gathered."""
    data = module_facts(label, scheduler=scheduler, home=home, env_dir=env_dir, **overrides)
    env = env_dir or _env_dir(home or _home(label))
    data["env"] = {
        "path": env,
        "hash": "abc123",
        "parsl_version": data["parsl_version"],
        "python_major_minor": "3.11",
        "python_path": f"{env}/bin/python",
        "activate": f"{env}/bin/pwgen-activate",
        "conda": "",
    }
    data["gathered_at"] = 1767225600.0
    data.update(overrides)
    return data


def _home(label: str) -> str:
    return f"/home/{label}u"


def _env_dir(home: str) -> str:
    return f"{home}/.pwgen/envs/abc123"


def provisioned_project(project: Path, records: dict[str, dict[str, Any]]) -> None:
    """`project` as `pwgen provision` leaves it: `sites.yaml` with one remote site per
    facts record (label -> record, its scheduler from the record), each record in
    `.pwgen/facts/` (pwgen.facts.write_facts), and an ssh config."""
    from pwgen.facts import write_facts

    state = project / ".pwgen"
    (state / "ssh").mkdir(parents=True)
    (state / "facts").mkdir()
    (state / "ssh" / "config").write_text("# written by pwgen provision\n")
    lines = ["sites:"]
    for label, record in records.items():
        scheduler = record["scheduler"]
        lines.append(f"  - {{label: {label}, scheduler: {scheduler}, host: h, partition: compute}}")
        write_facts(state / "facts", label, record)
    (project / "sites.yaml").write_text("\n".join(lines) + "\n")
