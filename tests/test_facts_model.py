"""Site facts: the controller's model (pwgen/facts.py) and the site-side fact module
(plugins/modules/site_facts.py, parsers in plugins/module_utils/site_facts_*.py), whose
parsers are fed sample
scheduler output here (PBS Pro is not in the lab: its JSON shapes are the documented ones).
"""

import copy
import importlib.util
import ipaddress
import json
import platform
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from facts_samples import COMPUTE, DEBUG, module_facts, provisioned_facts

from pwgen.assets import ansible_dir, collection_dir
from pwgen.errors import PwgenError
from pwgen.facts import (
    PROVISION_KEYS,
    EnvInfo,
    FactsError,
    Partition,
    SiteFacts,
    read_facts,
    validate_facts,
    write_facts,
)

COLLECTION = collection_dir()
MODULE_PATH = COLLECTION / "plugins" / "modules" / "site_facts.py"


def _load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("site_facts_module", MODULE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# The module imports its parsers as Ansible names them: ansible_collections.pwgen.hpc.
sys.path.insert(0, str(ansible_dir()))
mod = _load_module()
UTILS = "ansible_collections.pwgen.hpc.plugins.module_utils"
utils_sched = importlib.import_module(f"{UTILS}.site_facts_scheduler")
utils_net = importlib.import_module(f"{UTILS}.site_facts_network")
utils_sshd = importlib.import_module(f"{UTILS}.site_facts_sshd")
utils_env = importlib.import_module(f"{UTILS}.site_facts_env")

# What the module returned on lab site lab1 (pwgen lab, 2 compute nodes of 2 CPUs).
LAB_FACTS: dict[str, Any] = module_facts(
    "lab1",
    home="/home/pwrbu1",
    env_dir="/home/pwrbu1/.pwgen/envs/test",
    internal_address="10.242.1.1",
    partitions=[
        {**COMPUTE, "nodes": 2, "cpus_per_node": 2, "memory_mb_per_node": 22899},
        {**DEBUG, "nodes": 2, "cpus_per_node": 2, "memory_mb_per_node": 22899},
    ],
    gateway_ports={
        "allowed": False,
        "method": "sshd_config",
        "reason": "sshd -T failed: sshd: no hostkeys available -- exiting.",
        "setting": "no",
        "source": "/run/lab/etc/sshd_config",
    },
)


def write_json(directory: Path, label: str, data: Any) -> Path:
    path = directory / f"{label}.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def assert_one_line(err: pytest.ExceptionInfo[FactsError], *needles: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    assert isinstance(err.value, PwgenError) and err.value.exit_code == 2
    for needle in needles:
        assert needle in message, (needle, message)


# ---------------------------------------------------------------- the model


def test_read_valid_facts(tmp_path: Path) -> None:
    write_json(tmp_path, "lab1", LAB_FACTS)
    facts = read_facts(tmp_path, "lab1")
    assert facts.scheduler == "slurm"
    assert facts.internal_address == "10.242.1.1"
    default = facts.default_partition()
    assert default is not None and default.name == "compute" and default.cpus_per_node == 2
    debug = facts.partition("debug")
    assert debug is not None and debug.max_time_seconds == 1800
    assert facts.partition(None) == default and facts.partition("nope") is None
    assert facts.python is not None and facts.python.major_minor == "3.11"
    assert facts.gateway_ports.allowed is False


def test_default_partition_falls_back_to_the_first() -> None:
    data = copy.deepcopy(LAB_FACTS)
    data["partitions"][0]["default"] = False
    default = validate_facts(data, "x").default_partition()
    assert default is not None and default.name == "compute"
    data["partitions"] = []
    assert validate_facts(data, "x").default_partition() is None


def test_unknown_keys_are_ignored(tmp_path: Path) -> None:
    data = {**LAB_FACTS, "env": {"hash": "abc"}, "gathered_at": 1.5, "new_fact": [1]}
    data["partitions"] = [{**LAB_FACTS["partitions"][0], "gres": "gpu:4"}]
    write_json(tmp_path, "lab1", data)
    assert read_facts(tmp_path, "lab1").partitions[0].name == "compute"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FactsError) as err:
        read_facts(tmp_path, "lab9")
    assert_one_line(err, str(tmp_path / "lab9.json"), "pwgen provision")


def test_malformed_json(tmp_path: Path) -> None:
    (tmp_path / "lab1.json").write_text('{"scheduler": "slurm",\n  "partitions": [}', "utf-8")
    with pytest.raises(FactsError) as err:
        read_facts(tmp_path, "lab1")
    assert_one_line(err, f"{tmp_path / 'lab1.json'}:2:", "not valid JSON")


def test_not_an_object(tmp_path: Path) -> None:
    write_json(tmp_path, "lab1", [LAB_FACTS])
    with pytest.raises(FactsError) as err:
        read_facts(tmp_path, "lab1")
    assert_one_line(err, "lab1.json", "expected a JSON object")


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        (("partitions", 0, "cpus_per_node", "2"), ["partitions[0].cpus_per_node", "'2'"]),
        (("partitions", 1, "default", "yes"), ["partitions[1].default"]),
        (("scheduler", None, None, "lsf"), ["scheduler", "'lsf'"]),
        (("internal_address", None, None, "login-1"), ["internal_address", "login-1"]),
        (("gateway_ports", "allowed", None, "maybe"), ["gateway_ports.allowed"]),
        (("python", "version", None, 3.11), ["python.version"]),
        (("version", None, None, 2), ["version", "facts version 2", "pwgen provision"]),
    ],
)
def test_wrong_type_names_file_and_field(
    tmp_path: Path, change: tuple[Any, Any, Any, Any], needles: list[str]
) -> None:
    data = copy.deepcopy(LAB_FACTS)
    key, sub, subsub, value = change
    if sub is None:
        data[key] = value
    elif subsub is None:
        data[key][sub] = value
    else:
        data[key][sub][subsub] = value
    write_json(tmp_path, "lab1", data)
    with pytest.raises(FactsError) as err:
        read_facts(tmp_path, "lab1")
    assert_one_line(err, str(tmp_path / "lab1.json"), *needles)


def test_missing_key_names_the_field(tmp_path: Path) -> None:
    data = {k: v for k, v in LAB_FACTS.items() if k not in ("hostname", "arch")}
    write_json(tmp_path, "lab1", data)
    with pytest.raises(FactsError) as err:
        read_facts(tmp_path, "lab1")
    assert_one_line(err, "lab1.json: hostname: required key is missing", "(and 1 more problems)")


def test_write_facts_round_trip(tmp_path: Path) -> None:
    record = {**LAB_FACTS, "env": {"hash": "b4c599f190d1"}}
    facts = write_facts(tmp_path, "lab1", record)
    path = tmp_path / "lab1.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["env"] == {"hash": "b4c599f190d1"}  # kept as given
    assert read_facts(tmp_path, "lab1") == facts
    # A model is written as its JSON dump.
    write_facts(tmp_path, "lab2", facts)
    assert read_facts(tmp_path, "lab2") == facts
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab1.json", "lab2.json"]


def test_write_facts_refuses_invalid_data_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(FactsError) as err:
        write_facts(tmp_path, "lab1", {**LAB_FACTS, "partitions": "compute"})
    assert_one_line(err, "facts for site 'lab1'", "partitions")
    assert list(tmp_path.iterdir()) == []


def test_model_mirrors_the_module_return_doc() -> None:
    """Every fact the module documents is in the model; the rest is provisioning's."""
    doc = yaml.safe_load(mod.RETURN)["pwgen_site_facts"]["contains"]
    assert set(doc) == set(SiteFacts.model_fields) - set(PROVISION_KEYS)
    partition_doc = doc["partitions"]["contains"]
    assert set(partition_doc) == set(Partition.model_fields)
    assert set(LAB_FACTS) == set(doc)  # the sample is a whole module result


def test_env_model_mirrors_the_facts_the_env_role_publishes() -> None:
    """`env` holds the role's `parsl_env_*` facts (provision.py strips the prefix)."""
    tasks = yaml.safe_load((COLLECTION / "roles/parsl_env/tasks/preflight.yml").read_text())
    published = {
        name.removeprefix("parsl_env_")
        for task in tasks
        for name in task.get("ansible.builtin.set_fact", {})
        if name.startswith("parsl_env_")
    }
    assert published == set(EnvInfo.model_fields)


def test_provisioned_file_reads_env_and_gathered_at(tmp_path: Path) -> None:
    """The file `pwgen provision` writes: the env the runs use is typed, not a raw dict."""
    env = "/home/s1u/.pwgen/envs/abc123"
    facts = write_facts(tmp_path, "s1", provisioned_facts("s1"))
    assert read_facts(tmp_path, "s1") == facts
    assert facts.env is not None and facts.env.hash == "abc123" and facts.gathered_at
    assert (facts.env_dir, facts.env_activate) == (env, f"{env}/bin/pwgen-activate")
    # A facts-only run that found no installed env records an empty path: env_path then.
    found = validate_facts(provisioned_facts("s1", env={"path": "", "hash": "abc123"}), "x")
    assert (found.env_dir, found.env_activate) == (env, f"{env}/bin/activate")
    # Written by the role itself (no bookkeeping), without an env: nothing to activate.
    bare = validate_facts(module_facts("s1", env_path=None), "x")
    assert (bare.env, bare.gathered_at, bare.env_dir, bare.env_activate) == (None, None, None, None)


def test_old_provisioned_files_still_load(tmp_path: Path) -> None:
    """Today's files: an env of three keys, and facts from before worker_helpers existed."""
    old = provisioned_facts("s1", env={"path": "/e", "activate": "/e/bin/pwgen-activate"})
    del old["worker_helpers"], old["gathered_at"]
    write_json(tmp_path, "s1", {**old, "env": {**old["env"], "hash": "abc123"}})
    facts = read_facts(tmp_path, "s1")
    assert facts.env == EnvInfo(path="/e", activate="/e/bin/pwgen-activate", hash="abc123")
    assert facts.env_activate == "/e/bin/pwgen-activate" and facts.worker_helpers is None


def test_env_of_the_wrong_type_names_the_field(tmp_path: Path) -> None:
    write_json(tmp_path, "s1", provisioned_facts("s1", env={"path": ["/e"]}))
    with pytest.raises(FactsError) as err:
        read_facts(tmp_path, "s1")
    assert_one_line(err, "s1.json: env.path")


# ---------------------------------------------------------------- Slurm parsing

# `scontrol show partition -o` / `scontrol show node -o`: one record per line.
SCONTROL_PARTITIONS = "\n".join(
    [
        "PartitionName=compute AllowGroups=ALL Default=YES MaxNodes=UNLIMITED"
        " MaxTime=UNLIMITED Nodes=n[1-3] State=UP TotalCPUs=12 TotalNodes=3",
        "PartitionName=debug AllowGroups=ALL Default=NO MaxTime=00:30:00 Nodes=n[1-2]"
        " State=UP TotalNodes=2",
        "PartitionName=long Default=NO MaxTime=2-12:00:00 Nodes=n3 State=DRAIN TotalNodes=1",
        "PartitionName=empty Default=NO MaxTime=1:00:00 Nodes=(null) State=INACTIVE TotalNodes=0",
    ]
)
SCONTROL_NODES = (
    "\n".join(
        [
            "NodeName=n1 Arch=x86_64 CoresPerSocket=2  CPUAlloc=0 CPUEfctv=4 CPUTot=4"
            " NodeAddr=10.1.0.11 NodeHostName=n1 OS=Linux 6.1.0 #1 SMP PREEMPT_DYNAMIC Debian"
            " RealMemory=16000 Partitions=compute,debug State=IDLE",
            "NodeName=n2 Arch=x86_64 CPUTot=8 NodeAddr=10.1.0.12 RealMemory=32000"
            " Partitions=compute,debug State=IDLE Reason=disk replaced [root@2026-01-01]",
            "NodeName=n3 Arch=x86_64 CPUEfctv=6 CPUTot=8 NodeAddr=10.1.0.13 RealMemory=64000"
            " Partitions=compute,long State=DRAIN",
        ]
    )
    + "\n"
)


def test_scontrol_records_keep_values_with_spaces() -> None:
    nodes = utils_sched.parse_scontrol_records(SCONTROL_NODES)
    assert nodes[0]["OS"] == "Linux 6.1.0 #1 SMP PREEMPT_DYNAMIC Debian"
    assert nodes[1]["Reason"] == "disk replaced [root@2026-01-01]"
    assert nodes[0]["RealMemory"] == "16000"


def test_slurm_partitions() -> None:
    partitions = utils_sched.slurm_partitions(
        utils_sched.parse_scontrol_records(SCONTROL_PARTITIONS),
        utils_sched.parse_scontrol_records(SCONTROL_NODES),
    )
    by_name = {p["name"]: p for p in partitions}
    assert [p["name"] for p in partitions] == ["compute", "debug", "long", "empty"]
    # The smallest node: n1 has 4 CPUs and 16000 MB; CPUEfctv beats CPUTot (n3: 6, not 8).
    assert by_name["compute"] == {
        "name": "compute",
        "state": "up",
        "nodes": 3,
        "cpus_per_node": 4,
        "memory_mb_per_node": 16000,
        "default": True,
        "max_time": None,
        "max_time_seconds": None,
    }
    assert by_name["debug"]["max_time"] == "00:30:00" and not by_name["debug"]["default"]
    assert by_name["long"]["cpus_per_node"] == 6 and by_name["long"]["state"] == "drain"
    assert by_name["long"]["max_time"] == "2-12:00:00"
    assert by_name["long"]["max_time_seconds"] == 2 * 86400 + 12 * 3600
    assert by_name["empty"]["cpus_per_node"] is None and by_name["empty"]["nodes"] == 0
    assert by_name["empty"]["max_time"] == "01:00:00"
    for partition in partitions:  # what the module emits is what the model reads
        validate_facts({**LAB_FACTS, "partitions": [partition]}, "x")


def test_slurm_node_addresses() -> None:
    nodes = utils_sched.parse_scontrol_records(SCONTROL_NODES + "NodeName=n4 State=DOWN\n")
    assert utils_sched.slurm_node_addresses(nodes) == ["10.1.0.11", "10.1.0.12", "10.1.0.13", "n4"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("UNLIMITED", None),
        ("INFINITE", None),
        (None, None),
        ("00:30:00", 1800),
        ("30:00", 1800),
        ("30", 1800),
        ("1-00:00:00", 86400),
        ("48:00:00", 172800),
    ],
)
def test_walltimes(text: str | None, seconds: int | None) -> None:
    assert utils_sched.parse_walltime(text) == seconds


def test_format_walltime() -> None:
    assert utils_sched.format_walltime(None) is None
    assert utils_sched.format_walltime(59) == "00:00:59"
    assert utils_sched.format_walltime(172800 + 3661) == "2-01:01:01"


# ---------------------------------------------------------------- PBS Pro parsing
# Recorded qstat/pbsnodes answers of a larger PBS Pro than the lab's (a queue per
# size, limits on several, node names with domains): shapes a 2-node OpenPBS cannot
# show. Real OpenPBS is read by provisioning in tests/test_pbs_lab.py.

QSTAT_QF = {
    "timestamp": 1731528276,
    "pbs_version": "2022.1.5.20240213134632",
    "pbs_server": "pbs01",
    "Queue": {
        "workq": {
            "queue_type": "Execution",
            "total_jobs": 0,
            "resources_max": {"walltime": "24:00:00"},
            "resources_default": {"walltime": "01:00:00"},
            "resources_assigned": {"mem": "0kb", "ncpus": 0, "nodect": 0},
            "enabled": "True",
            "started": "True",
        },
        "gpu": {
            "queue_type": "Execution",
            "hasnodes": "True",
            "resources_max": {"walltime": "72:00:00", "ngpus": 8},
            "enabled": "True",
            "started": "False",
        },
        "old": {"queue_type": "Execution", "enabled": "False", "started": "True"},
        "prod": {
            "queue_type": "Route",
            "route_destinations": "workq,gpu",
            "enabled": "True",
            "started": "True",
        },
    },
}
QSTAT_BF = {
    "pbs_version": "2022.1.5",
    "Server": {"pbs01": {"server_state": "Active", "default_queue": "prod"}},
}
PBSNODES = {
    "timestamp": 1606173513,
    "pbs_version": "19.2.6",
    "pbs_server": "pbs01",
    "nodes": {
        "cn01": {
            "Mom": "cn01.cluster",
            "state": "free",
            "pcpus": 56,
            "resources_available": {
                "arch": "linux",
                "host": "cn01",
                "mem": "384000000kb",
                "ncpus": 56,
                "vnode": "cn01",
            },
        },
        "cn02": {
            "Mom": "cn02.cluster",
            "state": "job-busy",
            "resources_available": {"host": "cn02", "mem": "192gb", "ncpus": 48, "vnode": "cn02"},
        },
        "gn01": {
            "Mom": "gn01.cluster",
            "state": "offline",
            "queue": "gpu",
            "resources_available": {"host": "gn01", "mem": "512gb", "ncpus": 64, "ngpus": 4},
        },
        "gn02": {
            "Mom": "gn02.cluster",
            "state": "free",
            "resources_available": {"host": "gn02", "mem": "1tb", "ncpus": 32, "Qlist": "gpu"},
        },
    },
}


def test_pbs_partitions() -> None:
    partitions = utils_sched.pbs_partitions(QSTAT_QF, PBSNODES, QSTAT_BF)
    by_name = {p["name"]: p for p in partitions}
    assert list(by_name) == ["workq", "gpu", "old", "prod"]
    # Untied vnodes (cn01, cn02) serve workq; gn01 (queue=gpu) and gn02 (Qlist) serve gpu.
    assert by_name["workq"] == {
        "name": "workq",
        "state": "up",
        "nodes": 2,
        "cpus_per_node": 48,
        "memory_mb_per_node": 192 * 1024,
        "default": False,
        "max_time": "1-00:00:00",
        "max_time_seconds": 86400,
    }
    assert by_name["gpu"]["nodes"] == 2 and by_name["gpu"]["cpus_per_node"] == 32
    assert by_name["gpu"]["memory_mb_per_node"] == 512 * 1024
    assert by_name["gpu"]["state"] == "inactive"  # enabled, not started
    assert by_name["old"]["state"] == "down"
    # The route queue is the default one and gets its destinations' nodes.
    assert by_name["prod"]["default"] is True
    assert by_name["prod"]["nodes"] == 4 and by_name["prod"]["cpus_per_node"] == 32
    assert by_name["prod"]["max_time"] is None
    for partition in partitions:
        validate_facts({**LAB_FACTS, "scheduler": "pbspro", "partitions": [partition]}, "x")


def test_pbs_partitions_without_pbsnodes() -> None:
    partitions = utils_sched.pbs_partitions(QSTAT_QF, None, None)
    assert all(p["nodes"] is None and p["cpus_per_node"] is None for p in partitions)
    assert not any(p["default"] for p in partitions)


def test_pbs_node_hosts() -> None:
    assert utils_sched.pbs_node_hosts(PBSNODES) == [
        "cn01.cluster",
        "cn02.cluster",
        "gn01.cluster",
        "gn02.cluster",
    ]
    assert utils_sched.pbs_node_hosts(None) == []


@pytest.mark.parametrize(
    ("size", "mb"),
    [("2033640kb", 1985), ("16gb", 16384), ("512mb", 512), ("1tb", 1048576), ("1048576", 1)],
)
def test_pbs_sizes(size: str, mb: int) -> None:
    assert utils_sched.pbs_size_to_mb(size) == mb


def test_pbs_size_words_and_nonsense() -> None:
    assert utils_sched.pbs_size_to_mb("131072w") == 1  # 8-byte words
    assert utils_sched.pbs_size_to_mb("lots") is None and utils_sched.pbs_size_to_mb(None) is None


# ---------------------------------------------------------------- addresses

IP_ADDR = """\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2: ctl0    inet 10.242.0.2/30 scope global ctl0\\       valid_lft forever preferred_lft forever
3: br0    inet 10.242.1.1/24 scope global br0\\       valid_lft forever preferred_lft forever
"""


def test_parse_ip_addr() -> None:
    found = utils_net.parse_ip_addr(IP_ADDR)
    assert [(name, str(iface)) for name, iface in found] == [
        ("ctl0", "10.242.0.2/30"),
        ("br0", "10.242.1.1/24"),
    ]


def test_internal_address_from_the_compute_subnet() -> None:
    interfaces = utils_net.parse_ip_addr(IP_ADDR)
    computes = [ipaddress.IPv4Address("10.242.1.11"), ipaddress.IPv4Address("10.242.1.12")]
    routes: list[Any] = []
    assert utils_net.pick_internal_address(interfaces, computes, routes.append) == (
        "10.242.1.1",
        "subnet",
        "br0",
    )
    assert routes == []  # the route is only asked when no subnet matches


def test_internal_address_from_the_route() -> None:
    interfaces = utils_net.parse_ip_addr(IP_ADDR)
    computes = [ipaddress.IPv4Address("10.9.0.5")]  # routed, not on a local subnet
    assert utils_net.pick_internal_address(interfaces, computes, lambda _: "10.242.0.2") == (
        "10.242.0.2",
        "route",
        "ctl0",
    )
    route_text = "10.9.0.5 via 10.242.0.1 dev ctl0 src 10.242.0.2 uid 1001 \n    cache \n"
    assert utils_net.parse_route_src(route_text) == "10.242.0.2"


def test_internal_address_falls_back_to_the_primary_address() -> None:
    interfaces = utils_net.parse_ip_addr(IP_ADDR)
    assert utils_net.pick_internal_address(interfaces, [], lambda _: None) == (
        "10.242.0.2",
        "primary",
        "ctl0",
    )
    assert utils_net.pick_internal_address([], [], lambda _: None) == (None, None, None)


# ---------------------------------------------------------------- sshd GatewayPorts

LISTENER = (
    b"sshd: /usr/sbin/sshd -f /run/lab/etc/sshd_config -E /run/lab/log/x.log "
    b"[listener] 0 of 100-200 startups"
)


def test_parse_sshd_argv() -> None:
    assert utils_sshd.parse_sshd_argv(LISTENER) == (
        "/usr/sbin/sshd",
        "/run/lab/etc/sshd_config",
        {},
    )
    plain = b"/usr/sbin/sshd\0-D\0-o\0GatewayPorts=yes\0-fetc/x\0"
    assert utils_sshd.parse_sshd_argv(plain) == ("/usr/sbin/sshd", "etc/x", {"gatewayports": "yes"})
    assert utils_sshd.parse_sshd_argv(b"sshd: /usr/sbin/sshd -D [listener]")[1] is None


def test_gateway_ports_from_config_with_include_and_match(tmp_path: Path) -> None:
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "10-gw.conf").write_text("GatewayPorts clientspecified\n")
    (conf_d / "20-gw.conf").write_text("GatewayPorts yes\n")  # later: ignored (first wins)
    main = tmp_path / "sshd_config"
    main.write_text(
        "# comment\nPort 22\nMatch User admin\n  GatewayPorts yes\nMatch all\n"
        f"Include {conf_d}/*.conf\nGatewayPorts no\n"
    )
    setting, note = utils_sshd.gateway_ports_from_config(str(main))
    assert setting == "clientspecified"
    assert note is not None and "Match" in note


def test_gateway_ports_key_equals_value_and_default(tmp_path: Path) -> None:
    main = tmp_path / "sshd_config"
    main.write_text("Port 22\nGatewayPorts=yes # a trailing comment\n")
    assert utils_sshd.gateway_ports_from_config(str(main)) == ("yes", None)
    main.write_text("Port 22\n")
    assert utils_sshd.gateway_ports_from_config(str(main)) == ("no", None)


def _failing_run(argv: list[str]) -> tuple[int, str, str]:
    return 1, "", "sshd: no hostkeys available -- exiting."


def test_gateway_ports_from_the_listeners_config(tmp_path: Path) -> None:
    config = tmp_path / "sshd_config"
    config.write_text("GatewayPorts no\n")
    cmdline = f"sshd: /usr/sbin/sshd -f {config} [listener]".encode()
    answer = utils_sshd.gateway_ports(_failing_run, cmdline)
    assert answer["allowed"] is False and answer["method"] == "sshd_config"
    assert answer["source"] == str(config) and "no hostkeys" in answer["reason"]


def test_gateway_ports_from_sshd_t_and_command_line(tmp_path: Path) -> None:
    def run(argv: list[str]) -> tuple[int, str, str]:
        return 0, "port 22\ngatewayports clientspecified\nx11forwarding no\n", ""

    cmdline = f"/bin/sh\0-f\0{tmp_path / 'none'}\0".encode()  # sh: executable, like sshd
    answer = utils_sshd.gateway_ports(run, cmdline)
    assert answer["allowed"] is True and answer["method"] == "sshd -T"
    cmdline = b"sshd: /usr/sbin/sshd -D -o GatewayPorts=yes [listener]"
    assert utils_sshd.gateway_ports(run, cmdline)["method"] == "command line"


def test_gateway_ports_unknown_when_the_config_is_unreadable(tmp_path: Path) -> None:
    cmdline = f"sshd: /nonexistent/sshd -f {tmp_path / 'missing'} [listener]".encode()
    answer = utils_sshd.gateway_ports(_failing_run, cmdline)
    assert answer["allowed"] == "unknown" and "No such file" in answer["reason"]
    validate_facts({**LAB_FACTS, "gateway_ports": answer}, "x")


# ---------------------------------------------------------------- the env


def _subprocess_run(argv: list[str]) -> tuple[int, str, str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    return done.returncode, done.stdout, done.stderr


_WORKER_ORIGIN = (
    "import importlib.util, json, sys; del sys.path[0]; "
    "spec = importlib.util.find_spec('pwgen_worker'); print(json.dumps(spec and spec.origin))"
)


def test_env_facts_from_a_real_interpreter(tmp_path: Path) -> None:
    """This venv's Python (which has Parsl) stands in for a site env."""
    import parsl

    bin_dir = tmp_path / "env" / "bin"
    bin_dir.mkdir(parents=True)
    # A wrapper, not a symlink: a symlinked venv Python looks for pyvenv.cfg next to the link.
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (bin_dir / "python").chmod(0o755)
    for name in ("process_worker_pool.py", "pwgen-relay"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    warnings: list[str] = []
    facts = utils_env.env_facts(_subprocess_run, str(tmp_path / "env"), warnings.append)
    assert facts["python"] == {
        "path": str(bin_dir / "python"),
        "version": platform.python_version(),
    }
    assert facts["parsl_version"] == parsl.__version__
    assert facts["worker_pool"] == str(bin_dir / "process_worker_pool.py")
    assert facts["relay"] == str(bin_dir / "pwgen-relay")
    # Where this venv imports pwgen_worker from (an editable install: the repository).
    where = subprocess.run(
        [sys.executable, "-c", _WORKER_ORIGIN], capture_output=True, text=True, cwd=tmp_path
    )
    assert facts["worker_helpers"] == json.loads(where.stdout)
    assert warnings == []


def test_env_facts_when_parsl_or_the_env_is_missing(tmp_path: Path) -> None:
    bin_dir = tmp_path / "env" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(sys.executable)

    def no_parsl(argv: list[str]) -> tuple[int, str, str]:
        info = {"version": "3.11.2", "parsl": None, "error": "ModuleNotFoundError: parsl"}
        return 0, json.dumps(info) + "\n", ""

    warnings: list[str] = []
    facts = utils_env.env_facts(no_parsl, str(tmp_path / "env"), warnings.append)
    assert facts["python"]["version"] == "3.11.2" and facts["parsl_version"] is None
    assert facts["worker_pool"] is None and facts["relay"] is None
    assert any("finds no parsl" in w for w in warnings)
    assert any("process_worker_pool.py" in w for w in warnings)

    warnings.clear()
    facts = utils_env.env_facts(no_parsl, str(tmp_path / "missing"), warnings.append)
    assert facts == dict.fromkeys(
        ("python", "parsl_version", "worker_pool", "relay", "worker_helpers")
    )
    assert "not provisioned yet" in warnings[0]
    assert utils_env.env_facts(no_parsl, "", warnings.append)["python"] is None


def _env(parsl: str | None, python: str = "3.11.2") -> dict[str, Any]:
    return {
        "python": {"path": "/h/.pwgen/envs/abc123abc123/bin/python", "version": python},
        "parsl_version": parsl,
    }


def test_env_mismatch_names_what_the_env_runs_and_the_fix() -> None:
    env_path = "/h/.pwgen/envs/abc123abc123"
    assert utils_env.env_mismatch(_env("2026.1.1"), env_path, "2026.1.1", "3.11") is None
    assert utils_env.env_mismatch(_env("2025.1.1"), env_path, "", "") is None  # nothing expected
    assert utils_env.env_mismatch(_env("2025.1.1"), env_path, "", "3.11") is None
    wrong = utils_env.env_mismatch(_env("2025.1.1"), env_path, "2026.1.1", "3.11")
    assert wrong is not None
    assert wrong.startswith(f"{env_path}/bin/python reports Parsl 2025.1.1 on Python 3.11,")
    assert "must run Parsl 2026.1.1 on Python 3.11" in wrong
    assert "parsl_env_purge_hashes=[abc123abc123]" in wrong
    other_python = utils_env.env_mismatch(_env("2026.1.1", "3.12.1"), env_path, "2026.1.1", "3.11")
    assert other_python is not None and "on Python 3.12," in other_python
    no_parsl = utils_env.env_mismatch(_env(None), env_path, "2026.1.1", "")
    assert no_parsl is not None and "finds no parsl" in no_parsl
    missing = dict.fromkeys(("python", "parsl_version"))
    no_env = utils_env.env_mismatch(missing, env_path, "2026.1.1", "3.11")
    assert no_env is not None and no_env.startswith(f"{env_path}/bin/python does not run")


# ---------------------------------------------------------------- the whole module


class FakeModule:
    """Stands in for AnsibleModule: canned command output, no site needed."""

    def __init__(self, scheduler: str, outputs: dict[str, tuple[int, str, str]]) -> None:
        self.params = {
            "scheduler": scheduler,
            "env_path": "",
            "workdir": "~/.pwgen/work",
            "search_path": ["/opt/pbs/bin"],
            "expect_parsl_version": "",
            "expect_python_version": "",
        }
        self.check_mode = False
        self.outputs = outputs
        self.commands: list[list[str]] = []

    def get_bin_path(self, name: str, opt_dirs: list[str] | None = None) -> str | None:
        known = {"sinfo", "scontrol", "qstat", "pbsnodes", "ip"}
        return f"/opt/bin/{name}" if name in known else None

    def run_command(
        self, argv: list[str], environ_update: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        self.commands.append(argv)
        key = " ".join(part.removeprefix("/opt/bin/") for part in argv)
        for prefix, output in self.outputs.items():
            if key.startswith(prefix):
                return output
        return 1, "", f"{key}: not faked"

    def fail_json(self, msg: str) -> None:
        raise AssertionError(msg)


def test_whole_module_with_slurm_output() -> None:
    fake = FakeModule(
        "slurm",
        {
            "scontrol show partition": (0, SCONTROL_PARTITIONS, ""),
            "scontrol show node": (0, SCONTROL_NODES, ""),
            "scontrol --version": (0, "slurm 23.02.7\n", ""),
            "ip -4 -o addr": (0, IP_ADDR.replace("10.242.1.1/24", "10.1.0.1/24"), ""),
        },
    )
    facts = validate_facts(mod._Gatherer(fake).gather(), "module")
    assert facts.scheduler_version == "23.02.7" and facts.scheduler_bin_dir == "/opt/bin"
    assert facts.internal_address == "10.1.0.1" and facts.internal_address_method == "subnet"
    assert facts.python is None and facts.parsl_version is None and facts.relay is None
    assert facts.workdir.endswith("/.pwgen/work") and "~" not in facts.workdir


def test_whole_module_with_pbs_output(monkeypatch: pytest.MonkeyPatch) -> None:
    hosts = {"cn01.cluster": "10.5.0.11", "cn02.cluster": "10.5.0.12"}

    def getaddrinfo(name: str, *args: Any) -> list[Any]:
        if name not in hosts:
            raise OSError("unknown host")
        return [(None, None, None, "", (hosts[name], 0))]

    monkeypatch.setattr(mod.socket, "getaddrinfo", getaddrinfo)
    fake = FakeModule(
        "pbspro",
        {
            "qstat -Qf -F json": (0, json.dumps(QSTAT_QF), ""),
            "qstat -Bf -F json": (0, json.dumps(QSTAT_BF), ""),
            "pbsnodes -a -F json": (0, json.dumps(PBSNODES), ""),
            "ip -4 -o addr": (0, IP_ADDR, ""),
            "ip -4 route get 10.5.0.11": (0, "10.5.0.11 via 10.242.0.1 src 10.242.0.2\n", ""),
        },
    )
    facts = validate_facts(mod._Gatherer(fake).gather(), "module")
    assert facts.scheduler == "pbspro" and facts.scheduler_version == "2022.1.5.20240213134632"
    default = facts.default_partition()
    assert default is not None and default.name == "prod"
    # The compute nodes are routed (not on a local subnet): the route's source address.
    assert (facts.internal_address, facts.internal_address_method) == ("10.242.0.2", "route")


def test_pbs_without_server_and_nodes_json_warns() -> None:
    fake = FakeModule(
        "pbspro",
        {"qstat -Qf -F json": (0, json.dumps(QSTAT_QF), ""), "ip -4 -o addr": (0, IP_ADDR, "")},
    )
    facts = validate_facts(mod._Gatherer(fake).gather(), "module")
    assert any("pbsnodes -a -F json failed" in w for w in facts.warnings)
    assert facts.internal_address_method == "primary"
