"""The CLI as a user meets it: what each command writes and prints.

Every bad input (one line, exit 2, nothing written) is a row of tests/test_bad_inputs.py.
"""

import json
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import BIN, run_pwgen
from pw_server import PWServer, basic_auth

from pwgen.assets import ansible_dir

GOOD_SITES = """\
sites:
  - label: cluster_a
    scheduler: slurm
    host: 10.0.0.5
    user: alice
    partition: compute
    proxy_jump: bob@bastion
    identity_file: /keys/id_ed25519
  - label: pbs_b
    scheduler: pbspro
    host: pbs.example.org
    executor: mpi
  - label: local
    scheduler: local
"""


def test_config_overwrites_atomically(tmp_path: Path) -> None:
    (tmp_path / "sites.yaml").write_text("sites:\n  - {label: local, scheduler: local}\n")
    (tmp_path / "parsl_config.py").write_text("old")
    result = run_pwgen("config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "HighThroughputExecutor" in (tmp_path / "parsl_config.py").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parsl_config.py", "sites.yaml"]


def test_config_json_and_shell_completion(tmp_path: Path) -> None:
    (tmp_path / "sites.yaml").write_text("sites:\n  - {label: local, scheduler: local}\n")
    result = run_pwgen("config", "--json", "-o", "c.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"config": "c.py", "sites": ["local"]}
    result = run_pwgen("--show-completion", "bash", cwd=tmp_path)
    assert result.returncode == 0 and "_pwgen_completion()" in result.stdout
    # What bash gets back when completing `pwgen pro`.
    env = {"_PWGEN_COMPLETE": "complete_bash", "COMP_WORDS": "pwgen pro", "COMP_CWORD": "1"}
    result = run_pwgen(cwd=tmp_path, env=env)
    assert result.stdout.split() == ["provision"], result.stdout + result.stderr


def test_inventory_to_stdout_and_a_thousand_sites_summarised(tmp_path: Path) -> None:
    (tmp_path / "sites.yaml").write_text(GOOD_SITES)
    result = run_pwgen("inventory", "--from", "sites.yaml", "-o", "-", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["all"]["children"]["sites"]["hosts"].keys() == {
        "cluster_a",
        "pbs_b",
        "local",
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sites.yaml"]  # no file named -
    many = [
        {"label": f"c{i:04d}", "scheduler": "slurm", "host": f"10.0.{i // 250}.{i % 250 + 1}"}
        for i in range(1000)
    ]
    (tmp_path / "many.yaml").write_text(yaml.safe_dump({"sites": many}))
    result = run_pwgen("inventory", "--from", "many.yaml", "-o", "inv.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "c0019" in result.stdout and "c0020" not in result.stdout
    assert "... and 980 more (980 slurm/htex); `--json` lists them all" in result.stdout
    assert len(result.stdout.splitlines()) < 40


def test_inventory_from_file_is_what_ansible_reads(tmp_path: Path) -> None:
    (tmp_path / "sites.yaml").write_text(GOOD_SITES)  # no inventory/ dir: it is made
    result = run_pwgen("inventory", "--from", "sites.yaml", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {
        "inventory": "inventory/pwgen.yml",
        "sites": ["cluster_a", "pbs_b", "local"],
        "skipped": [],
    }

    listed = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", "inventory/pwgen.yml", "--list"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env={
            "PATH": f"{BIN}:/usr/bin:/bin",
            "ANSIBLE_CONFIG": str(ansible_dir() / "ansible.cfg"),
        },
    )
    inventory = json.loads(listed.stdout)
    hostvars = inventory["_meta"]["hostvars"]
    assert sorted(inventory["sites"]["hosts"]) == ["cluster_a", "local", "pbs_b"]
    assert inventory["scheduler_slurm"]["hosts"] == ["cluster_a"]
    assert inventory["scheduler_pbspro"]["hosts"] == ["pbs_b"]
    assert inventory["executor_mpi"]["hosts"] == ["pbs_b"]
    assert sorted(inventory["executor_htex"]["hosts"]) == ["cluster_a", "local"]
    a = hostvars["cluster_a"]
    assert (a["ansible_host"], a["ansible_user"], a["ansible_port"]) == ("10.0.0.5", "alice", 22)
    assert a["ansible_ssh_common_args"] == "-o ProxyJump=bob@bastion"
    assert a["ansible_ssh_private_key_file"] == "/keys/id_ed25519"
    assert (a["pwgen_scheduler"], a["pwgen_partition"]) == ("slurm", "compute")
    assert a["pwgen_env_method"] == "wheelhouse" and a["pwgen_walltime"] == "01:00:00"
    assert hostvars["local"]["ansible_connection"] == "local"
    assert "ansible_user" not in hostvars["pbs_b"]


def test_inventory_table_output(tmp_path: Path) -> None:
    (tmp_path / "sites.yaml").write_text(GOOD_SITES)
    result = run_pwgen("inventory", "--from", "sites.yaml", "-o", "inv.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "cluster_a" in result.stdout and "this machine" in result.stdout
    written = yaml.safe_load((tmp_path / "inv.yml").read_text())
    assert set(written["all"]["children"]["sites"]["hosts"]) == {"cluster_a", "pbs_b", "local"}


def test_help_everywhere(tmp_path: Path) -> None:
    for args in ([], ["inventory"], ["config"], ["run"]):
        result = run_pwgen(*args, "--help", cwd=tmp_path)
        assert result.returncode == 0 and "Usage" in result.stdout, (args, result.stderr)


# ---------------------------------------------------------------- --from pw


def test_inventory_from_pw_writes_usable_clusters(tmp_path: Path, pw_server: PWServer) -> None:
    result = run_pwgen(
        "inventory", "--from", "pw", "-o", "inv.yml", "--json", cwd=tmp_path, env=pw_server.env()
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["sites"] == ["gpu_cluster_v2", "pbs_west"]
    assert {s["name"] for s in report["skipped"]} == {"old-cluster", "bare-vm"}
    hosts = yaml.safe_load((tmp_path / "inv.yml").read_text())["all"]["children"]["sites"]["hosts"]
    assert hosts["gpu_cluster_v2"]["ansible_host"] == "192.0.2.10"
    assert hosts["gpu_cluster_v2"]["ansible_user"] == "alice"
    assert hosts["pbs_west"]["pwgen_scheduler"] == "pbspro"
    assert pw_server.requests[0].authorization == basic_auth(pw_server.api_key)


def test_inventory_from_pw_warns_about_skipped_clusters(
    tmp_path: Path, pw_server: PWServer
) -> None:
    result = run_pwgen(
        "inventory", "--from", "pw", "-o", "inv.yml", cwd=tmp_path, env=pw_server.env()
    )
    assert result.returncode == 0, result.stderr
    (warning,) = result.stderr.strip().splitlines()
    assert warning.startswith("pwgen: warning: skipped 2 cluster(s): old-cluster")
    assert "gpu_cluster_v2" in result.stdout


def test_pw_is_a_source_everywhere_and_sites_freezes_it(
    tmp_path: Path, pw_server: PWServer
) -> None:
    env = {**pw_server.env(), "PWGEN_PW_IDENTITY_FILE": "/keys/pw_ed25519"}
    result = run_pwgen("sites", "--from", "pw", "-o", "sites.yaml", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "wrote sites.yaml (2 sites from PW API at" in result.stdout
    frozen = yaml.safe_load((tmp_path / "sites.yaml").read_text())["sites"]
    assert [site["label"] for site in frozen] == ["gpu_cluster_v2", "pbs_west"]
    assert frozen[0]["user"] == "alice" and frozen[0]["identity_file"] == "/keys/pw_ed25519"
    # The frozen file is a sites file like any other; `--sites pw` asks the API again.
    assert run_pwgen("inventory", "--from", "sites.yaml", "-o", "-", cwd=tmp_path).returncode == 0
    # config, provision and status take `--sites pw` (here they stop where they must:
    # nothing was provisioned, no host key is pinned).
    expected = {
        "config": "site 'gpu_cluster_v2' (slurm): no facts gathered for it yet",
        "provision": "site 'gpu_cluster_v2': no pinned host key for 192.0.2.10",
        "status": "",
    }
    for command, error in expected.items():
        result = run_pwgen(command, "--sites", "pw", cwd=tmp_path, env=env)
        assert result.returncode == (2 if error else 0), result.stderr
        assert "warning: skipped 2 cluster(s)" in result.stderr  # the API was asked
        assert error in result.stderr.strip().splitlines()[-1]
    assert "pbs_west" in result.stdout  # status lists the API's sites
    env["PWGEN_PW_USER"] = "bad user"
    result = run_pwgen("sites", "--from", "pw", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "$PWGEN_PW_USER/$PWGEN_PW_IDENTITY_FILE:" in result.stderr


def test_the_cli_starts_without_loading_parsl() -> None:
    """Importing Parsl costs ~0.6 s: `pwgen --help`, `status`, `inventory` never pay it."""
    code = (
        "import sys, pwgen.cli; print(sorted(m for m in sys.modules if m.split('.')[0] == 'parsl'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
