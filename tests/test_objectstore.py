"""A site's object store (offline): the `object_store:` key, its keys read by reference,
and `s3://` Files copied by the real `aws` CLI against a real S3 API on loopback (moto's
server with IAM checks, tests/s3_server.py), through a real DFK on this machine.

The lab run (`pwgen provision` installing the CLI, the keys shipped to a site, 100 MB
round trips, no secret in any argv or log) is tests/test_s3_lab.py.
"""

import hashlib
import os
import socket
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import parsl
import pytest
import s3_server
from parsl import File, python_app
from parsl.config import Config
from parsl.errors import ConfigurationError
from parsl.executors import ThreadPoolExecutor
from test_staging import run_shipped

from pwgen.configgen.remote import storage_access
from pwgen.configgen.source import pyrepr
from pwgen.errors import SitesError
from pwgen.inventory import site_hostvars
from pwgen.objectstore import (
    AWS_CLI_REQUIREMENT,
    AccessKeys,
    CredentialsError,
    ObjectStore,
    StoreCredentials,
    read_keys,
    worker_environment,
)
from pwgen.poll import poll
from pwgen.sites import parse_sites
from pwgen.staging import CloudStaging, StagingError
from pwgen.staging.intask import cloud_stage_in
from pwgen.staging.storekeys import ship_keys

AWS = str(Path(sys.executable).parent / "aws")
SITE = "sites:\n  - label: s3site\n    scheduler: slurm\n    host: login.example.org\n"


def site_with(store: str) -> Any:
    return parse_sites(SITE + f"    object_store: {store}\n")[0]


# --- the sites file ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ("{endpoint_url: 'ftp://h'}", "object_store.endpoint_url: 'ftp://h' is not an http(s) URL"),
        ("{credentials: {secret_access_key: abc}}", "credentials.secret_access_key: unknown key"),
        ("{credentials: {env: {}, file: f}}", "credentials: give exactly one of env"),
        ("{credentials: {profile: p, env: {}}}", "profile is a section of a credentials file"),
        ("{credentials: {env: {access_key_id: 'A-B'}}}", "'A-B' is not an environment variable"),
        ("{buckets: [No_Such]}", "'No_Such' is not an S3 bucket name"),
        ("{region: 'us east'}", "'us east' is not a region"),
    ],
)
def test_bad_object_stores_are_one_line(store: str, message: str) -> None:
    with pytest.raises(SitesError) as caught:
        site_with(store)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith("sites.yaml:5: sites[0].object_store")


def test_a_local_site_has_no_object_store() -> None:
    with pytest.raises(SitesError, match="object_store is for remote sites"):
        parse_sites("sites:\n  - label: here\n    scheduler: local\n    object_store: {}\n")


def test_the_site_gets_the_cli_and_its_config_names_only_references() -> None:
    site = site_with("{endpoint_url: 'http://10.1.2.3:9000', credentials: {env: {}}}")
    assert site_hostvars(site)["pwgen_env_extra_packages"] == [AWS_CLI_REQUIREMENT]
    assert site_hostvars(site_with("{}"))["pwgen_env_extra_packages"] == [AWS_CLI_REQUIREMENT]
    plain = parse_sites(SITE)[0]
    assert site_hostvars(plain)["pwgen_env_extra_packages"] == []
    source = pyrepr(storage_access(site))
    assert (
        "CloudStaging(\n        object_store={'endpoint_url': 'http://10.1.2.3:9000', "
        "'credentials': {'env': {}}},  # s3site: references\n    )"
    ) in source
    assert "CloudStaging()" in pyrepr(storage_access(plain))
    with pytest.raises(ConfigurationError, match=r"object_store: buckets: 'B' is not an S3"):
        CloudStaging(object_store={"buckets": ["B"]})


# --- the keys, read on this machine ------------------------------------------------------


def test_keys_are_read_by_reference_and_errors_never_show_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("MY_SECRET", "s3cr3t/with+chars")
    by_env = StoreCredentials.model_validate(
        {"env": {"access_key_id": "MY_ID", "secret_access_key": "MY_SECRET"}}
    )
    keys = read_keys(by_env)
    assert keys.credentials_file() == (
        b"[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = s3cr3t/with+chars\n"
    )
    assert "s3cr3t" not in repr(keys)
    monkeypatch.setenv("MY_SECRET", "two words")
    with pytest.raises(CredentialsError) as caught:
        read_keys(by_env)
    assert "two" not in str(caught.value) and "secret key holds spaces" in str(caught.value)
    monkeypatch.delenv("MY_SECRET")
    with pytest.raises(CredentialsError, match=r"\$MY_SECRET is not set on this machine"):
        read_keys(by_env)
    path = tmp_path / "credentials"
    path.write_text("[lab]\naws_access_key_id = K\naws_secret_access_key = S\n")
    by_file = StoreCredentials.model_validate({"file": str(path), "profile": "lab"})
    assert read_keys(by_file).credentials_file().endswith(b"aws_secret_access_key = S\n")
    path.write_text("aws_secret_access_key = leaked\n[lab\n")
    with pytest.raises(CredentialsError) as caught:
        read_keys(by_file)
    assert str(caught.value) == f"{path}: not an AWS credentials file (INI sections)"
    missing = StoreCredentials.model_validate({"file": str(tmp_path / "nope")})
    with pytest.raises(CredentialsError, match="credentials file not found"):
        read_keys(missing)


# --- real copies: the aws CLI against moto's server on loopback --------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """moto's server on loopback with IAM checks: its endpoint and a user's keys."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    server = s3_server.start([], "127.0.0.1", port, str(log))
    try:
        assert poll(lambda: answers(port), 30) is not None, log.read_text()
        endpoint = f"http://127.0.0.1:{port}"
        yield endpoint, s3_server.setup(endpoint, "pwgen-data")
    finally:
        server.terminate()
        server.wait(timeout=10)


def copy_through(inputs: list[File], outputs: list[File]) -> str:
    import hashlib
    import shutil

    shutil.copyfile(inputs[0], outputs[0])
    with open(inputs[0], "rb") as source:
        return hashlib.sha256(source.read()).hexdigest()


def upload(path: str, outputs: list[File]) -> None:
    import shutil

    shutil.copyfile(path, outputs[0])


@pytest.fixture
def dfk(
    s3: tuple[str, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, dict[str, str]]]:
    """Executors `good`, `wrong` (a wrong secret) and `closed` (nothing listens)."""
    endpoint, keys = s3
    monkeypatch.setenv("PWS3_ID", keys["key_id"])
    monkeypatch.setenv("PWS3_SECRET", keys["secret"])
    monkeypatch.setenv("PWS3_WRONG", keys["secret"][::-1])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASHADOWED")  # the worker's own keys lose
    credentials = {"env": {"access_key_id": "PWS3_ID", "secret_access_key": "PWS3_SECRET"}}
    wrong = {"env": {"access_key_id": "PWS3_ID", "secret_access_key": "PWS3_WRONG"}}
    stores = {
        "good": {"endpoint_url": endpoint, "credentials": credentials, "buckets": ["pwgen-data"]},
        "wrong": {"endpoint_url": endpoint, "credentials": wrong},
        "closed": {"endpoint_url": f"http://127.0.0.1:{free_port()}", "credentials": credentials},
    }
    executors = [
        ThreadPoolExecutor(
            label=label,
            storage_access=[CloudStaging(s3_cli=AWS, object_store=store)],
            working_dir=str(tmp_path / label),
        )
        for label, store in stores.items()
    ]
    with parsl.load(Config(executors=executors, run_dir=str(tmp_path / "runinfo"))):
        yield s3


def failure(future: Any) -> str:
    with pytest.raises(Exception) as caught:
        future.result()
    assert "\n" not in str(caught.value)
    return f"{type(caught.value).__name__}: {caught.value}"


def test_round_trips_and_failures_with_the_real_cli(
    dfk: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    endpoint, keys = dfk
    source = tmp_path / "one.bin"
    source.write_bytes(os.urandom(1024 * 1024 + 7))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    into = "s3://pwgen-data/in/one.bin"
    python_app(upload, executors=["good"])(str(source), outputs=[File(into)]).result()
    assert s3_server.sha256(endpoint, keys, into) == digest
    through = python_app(copy_through, executors=["good"])
    out = "s3://pwgen-data/out/one.bin"
    assert through(inputs=[File(into)], outputs=[File(out)]).result() == digest
    assert s3_server.sha256(endpoint, keys, out) == digest
    # The keys: a private file on this machine (the executors are not sites).
    found = [
        path
        for path in Path(tempfile.gettempdir()).glob("pwgen-objectstore-*/credentials")
        if keys["key_id"] in path.read_text()
    ]
    assert found and all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in found)
    assert all(stat.S_IMODE(path.parent.stat().st_mode) == 0o700 for path in found)

    missing = failure(through(inputs=[File("s3://pwgen-data/nope")], outputs=[File(out)]))
    assert missing.startswith("RuntimeError: stage-in of s3://pwgen-data/nope to ")
    assert missing.endswith(
        "exited 1: fatal error: An error occurred (404) when calling the HeadObject "
        'operation: Key "nope" does not exist'
    )
    wrong = python_app(copy_through, executors=["wrong"])
    denied = failure(wrong(inputs=[File(into)], outputs=[File(out)]))
    assert denied.endswith("(403) when calling the HeadObject operation: Forbidden"), denied
    closed = python_app(copy_through, executors=["closed"])
    unreachable = failure(closed(inputs=[File(into)], outputs=[File(out)]))
    assert "fatal error: Could not connect to the endpoint URL: " in unreachable
    with pytest.raises(StagingError, match="bucket 'elsewhere' is not one of the site's"):
        through(inputs=[File("s3://elsewhere/x")], outputs=[File(out)])


def test_the_s3_wrappers_run_without_pwgen(s3: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    """Shipped as HTEX ships them, into a Python that cannot import pwgen (as on a site)."""
    endpoint, keys = s3
    (tmp_path / "obj.txt").write_text("hello cloud")
    s3_server.put(endpoint, keys, str(tmp_path / "obj.txt"), "s3://pwgen-data/in/obj.txt")
    store = ObjectStore.model_validate({"endpoint_url": endpoint})
    keys_file = ship_keys(SimpleNamespace(label="here"), AccessKeys(keys["key_id"], keys["secret"]))
    copy = tmp_path / "task" / "u1" / "obj.txt"
    arguments: dict[str, Any] = {
        "url": "s3://pwgen-data/in/obj.txt", "scheme": "s3", "local_path": str(copy),
        "directory": False, "cli": AWS,
    }  # fmt: skip
    settings = worker_environment(store, keys_file)
    size = cloud_stage_in(os.path.getsize, **arguments, settings=settings)
    assert run_shipped(size, str(copy)) == "ok 11"
    elsewhere = str(tmp_path / "elsewhere" / "credentials")
    moved = cloud_stage_in(
        os.path.getsize, **arguments, settings=worker_environment(store, elsewhere)
    )
    assert run_shipped(moved, str(copy)) == (
        f"FileNotFoundError stage-in of s3://pwgen-data/in/obj.txt to {copy} failed: the object "
        f"store's keys {elsewhere} are not on {socket.gethostname()}: the task runs on another "
        "site than the one they were written to, or the site's work dir is not shared with its "
        "compute nodes"
    )
