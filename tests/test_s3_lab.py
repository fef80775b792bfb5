"""`s3://` Files against a real S3 API on a lab site, with the real `aws` CLI.

Lab (marked `lab`, root): 1 Slurm site x 1 compute node (prefix pws3, 10.224.0.0/16).
moto's server (tests/s3_server.py, IAM checks on) runs in the login node's network
namespace, on the site's internal network: the compute node reaches it, the
controller does not (the test itself reaches it only through `nsenter`). The site's
sites.yaml entry declares the object store, its keys by reference to two variables
of the controller's environment; `pwgen provision` installs the pinned `aws` CLI into
the site's env; `pwgen run` runs a workflow whose tasks copy inputs and outputs of
1 KB, 1 MB and 100 MB (sha256 compared on both ends), a prefix each way, and fail on
a missing object, a wrong secret and an endpoint nothing listens on, each with the
CLI's message in one line. While each run runs, every process's argv on the machine
(the lab's namespaces are the same pid namespace) is read over and over: the secret is
never in one; afterwards it is in no file under the project (logs, manifests, the
generated config, ansible-runner's artifacts) nor under the site user's `~/.pwgen`
(the run's work dirs and logs), and the keys' file went with the run.
"""

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import s3_server
import yaml
from helpers import run_pwgen
from lab_helpers import (
    masters_stopped,
    pwgen_provision,
    running_lab,
    ssh,
    tcp_probe,
    wait_for,
)

from pwgen.facts import read_facts
from pwgen.layout import StateLayout
from pwgen.objectstore import AWS_CLI_REQUIREMENT

PREFIX, SUBNET = "pws3", "10.224.0.0/16"
LAB_DIR = Path(tempfile.gettempdir()) / "pwgen-test-s3-lab"
SERVER = Path(s3_server.__file__).resolve()
PORT = 9300
BUCKET = "pwgen-lab"
SIZES = {"1k.bin": 1024, "1m.bin": 1024 * 1024, "100m.bin": 100 * 1024 * 1024}
KEY_VARIABLES = {"access_key_id": "PWS3_KEY_ID", "secret_access_key": "PWS3_SECRET"}

WORKFLOW = """\
import sys
from parsl import File, python_app


@python_app(executors=["lab1"])
def copy_through(inputs=(), outputs=()):
    import hashlib, os, shutil, socket, stat

    if os.path.isdir(inputs[0]):
        shutil.copytree(inputs[0], outputs[0])
        return sorted(os.listdir(outputs[0]))
    shutil.copyfile(inputs[0], outputs[0])
    digest = hashlib.sha256()
    with open(inputs[0], "rb") as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
    # The task's copy is <staging>/cloud/<uuid>/<name>; the run's keys <staging>/objectstore.
    staging = os.path.dirname(os.path.dirname(os.path.dirname(inputs[0].filepath)))
    keys = os.path.join(staging, "objectstore", "credentials")
    modes = [stat.S_IMODE(os.stat(p).st_mode) for p in (os.path.dirname(keys), keys)]
    return f"{digest.hexdigest()} {modes[0]:o}/{modes[1]:o} {socket.gethostname()} {staging}"


bucket, names = sys.argv[1], sys.argv[2:]
futures = {
    name: copy_through(
        inputs=[File(f"s3://{bucket}/in/{name}")], outputs=[File(f"s3://{bucket}/out/{name}")]
    )
    for name in names
}
for name, future in futures.items():
    try:
        print(f"{name}: {future.result()}", flush=True)
    except Exception as err:
        print(f"{name} failed: {type(err).__name__}: {err}", flush=True)
"""


@dataclass(frozen=True)
class S3Lab:
    project: Path
    netns: str  # the login node's network namespace, where the server listens
    endpoint: str
    closed: str  # an endpoint on the login node where nothing listens
    keys_file: Path  # the user's keys as JSON (for s3_server.py in the namespace)
    keys: dict[str, str]
    digests: dict[str, str]


def in_netns(netns: str, *args: str, timeout: float = 300) -> str:
    """tests/s3_server.py ARGS inside the namespace (this Python works there)."""
    argv = ["nsenter", f"--net=/run/netns/{netns}", sys.executable, str(SERVER), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def write_sites(project: Path, name: str, endpoint: str) -> None:
    """The lab's sites file with an object store for lab1 (keys by reference)."""
    sites = yaml.safe_load((LAB_DIR / "sites.yaml").read_text())
    sites["sites"][0]["object_store"] = {
        "endpoint_url": endpoint,
        "buckets": [BUCKET],
        "credentials": {"env": KEY_VARIABLES},
    }
    (project / name).write_text(yaml.safe_dump(sites))


def make_inputs(tmp: Path, netns: str, endpoint: str, keys_file: Path) -> dict[str, str]:
    """Upload the inputs (and a prefix of two objects); their sha256 by name."""
    digests = {}
    for name, size in SIZES.items():
        path = tmp / name
        path.write_bytes(os.urandom(size))
        digests[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        in_netns(netns, "put", endpoint, str(keys_file), str(path), f"s3://{BUCKET}/in/{name}")
        path.unlink()
    for name in ("a.txt", "b.txt"):
        (tmp / name).write_text(name)
        url = f"s3://{BUCKET}/in/tree/{name}"
        in_netns(netns, "put", endpoint, str(keys_file), str(tmp / name), url)
    return digests


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Lab]:
    with running_lab(PREFIX, SUBNET, LAB_DIR, sites=1, compute_nodes=1) as state:
        login = state.sites[0].login
        tmp = tmp_path_factory.mktemp("s3")
        netns = login.netns
        prefix = ["nsenter", f"--net=/run/netns/{netns}"]
        server = s3_server.start(prefix, "0.0.0.0", PORT, str(tmp / "moto.log"))
        try:
            assert wait_for(lambda: tcp_probe(netns, login.ip, PORT) == "ok", 30)
            endpoint = f"http://{login.ip}:{PORT}"
            keys_file = tmp / "keys.json"
            keys_file.write_text(in_netns(netns, "setup", endpoint, BUCKET))
            keys_file.chmod(0o600)
            keys = json.loads(keys_file.read_text())
            digests = make_inputs(tmp, netns, endpoint, keys_file)
            project = tmp_path_factory.mktemp("project")
            write_sites(project, "sites.yaml", endpoint)
            closed = f"http://{login.ip}:{PORT + 1}"
            write_sites(project, "closed.yaml", closed)
            (project / "s3wf.py").write_text(WORKFLOW)
            known_hosts = str(LAB_DIR / "known_hosts")
            pwgen_provision(project, "--sites", "sites.yaml", "--known-hosts", known_hosts)
            with masters_stopped(project, ["lab1"]):
                yield S3Lab(project, netns, endpoint, closed, keys_file, keys, digests)
        finally:
            server.terminate()
            server.wait(timeout=10)


class ArgvWatch:
    """Reads every process's argv (/proc/*/cmdline) until stopped; what held a secret."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = [secret.encode() for secret in secrets]
        self.found: list[str] = []
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> "ArgvWatch":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if any(secret in argv for secret in self.secrets):
                    self.found.append(argv.replace(b"\0", b" ").decode(errors="replace"))
            self.scans += 1


def run_workflow(
    lab: S3Lab, secret: str, *names: str, sites: str = "sites.yaml"
) -> tuple[subprocess.CompletedProcess[str], ArgvWatch]:
    environment = {KEY_VARIABLES["access_key_id"]: lab.keys["key_id"]}
    environment[KEY_VARIABLES["secret_access_key"]] = secret
    with ArgvWatch([secret]) as watch:
        done = run_pwgen(
            "run", "s3wf.py", "--sites", sites, "--", BUCKET, *names,
            cwd=lab.project, env=environment, timeout=600,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert watch.scans > 20 and watch.found == [], watch.found
    return done, watch


def stored_sha256(lab: S3Lab, key: str) -> str:
    """The sha256 of an object as the server holds it."""
    return in_netns(lab.netns, "sha256", lab.endpoint, str(lab.keys_file), f"s3://{BUCKET}/{key}")


def results(stdout: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in stdout.splitlines() if ": " in line)


def assert_secret_nowhere(lab: S3Lab, secret: str) -> None:
    """Not in a file of the project (logs, manifests, config, runner artifacts) nor of
    the site user's ~/.pwgen (the run's work dirs and logs); grep reads it on stdin."""
    needle = secret.encode()
    held = [
        str(path)
        for path in lab.project.rglob("*")
        if path.is_file() and not path.is_symlink() and needle in path.read_bytes()
    ]
    assert held == []
    listing = ssh(LAB_DIR, "lab1", "grep -rlF -f - ~/.pwgen || true", stdin=secret + "\n")
    assert listing.strip() == ""


@pytest.mark.lab
def test_provisioning_installs_the_pinned_cli(lab: S3Lab) -> None:
    facts = read_facts(StateLayout(lab.project / ".pwgen").facts_dir, "lab1")
    version = ssh(LAB_DIR, "lab1", f"{shlex.quote(facts.env_dir or '')}/bin/aws --version")
    assert version.startswith("aws-cli/" + AWS_CLI_REQUIREMENT.split("==")[1] + " ")


@pytest.mark.lab
def test_round_trips_with_checksums_and_a_missing_object(lab: S3Lab) -> None:
    done, _ = run_workflow(lab, lab.keys["secret"], *SIZES, "tree/", "missing.bin")
    found = results(done.stdout)
    staging = set()
    for name, digest in lab.digests.items():
        seen, modes, host, where = found[name].split()
        assert (seen, modes, host) == (digest, "700/600", "lab1-c1"), found[name]
        staging.add(where)
        assert stored_sha256(lab, f"out/{name}") == digest
    assert found["tree/"] == "['a.txt', 'b.txt']"
    for name in ("a.txt", "b.txt"):
        assert stored_sha256(lab, f"out/tree/{name}") == hashlib.sha256(name.encode()).hexdigest()
    missing = found["missing.bin failed"]
    assert missing.startswith(f"RuntimeError: stage-in of s3://{BUCKET}/in/missing.bin to /home/")
    assert missing.endswith(
        "exited 1: fatal error: An error occurred (404) when calling the HeadObject "
        'operation: Key "in/missing.bin" does not exist'
    )
    # One run, one staging dir: with the keys in it, gone after the run.
    (where,) = staging
    assert ssh(LAB_DIR, "lab1", f"ls -d {shlex.quote(where)} 2>/dev/null || true") == ""
    assert_secret_nowhere(lab, lab.keys["secret"])
    assert_secret_nowhere(lab, lab.keys["key_id"])


@pytest.mark.lab
def test_a_wrong_secret_fails_the_task_with_the_clis_message(lab: S3Lab) -> None:
    wrong = lab.keys["secret"][::-1]
    done, _ = run_workflow(lab, wrong, "1k.bin")
    failed = results(done.stdout)["1k.bin failed"]
    assert re.fullmatch(
        rf"RuntimeError: stage-in of s3://{BUCKET}/in/1k.bin to /home/\S+ failed: `aws s3 cp "
        r"\S+ \S+` exited 1: fatal error: An error occurred \(403\) when calling the "
        r"HeadObject operation: Forbidden",
        failed,
    ), failed
    assert_secret_nowhere(lab, wrong)


@pytest.mark.lab
def test_an_unreachable_endpoint_fails_the_task_with_the_clis_message(lab: S3Lab) -> None:
    done, _ = run_workflow(lab, lab.keys["secret"], "1k.bin", sites="closed.yaml")
    failed = results(done.stdout)["1k.bin failed"]
    assert failed.startswith(f"RuntimeError: stage-in of s3://{BUCKET}/in/1k.bin to /home/")
    assert failed.endswith(
        f'fatal error: Could not connect to the endpoint URL: "{lab.closed}/{BUCKET}/in/1k.bin"'
    ), failed
