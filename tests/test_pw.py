"""The PW API client (pwgen.sources.pw) against the local stand-in (tests/pw_server.py)."""

import contextlib
import logging
import socket
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pw_server import DEFAULT_KEY, PWServer, basic_auth, make_key

from pwgen.errors import PWAPIError
from pwgen.sources import LoadedSites, load_source
from pwgen.sources.pw import PWSettings, fetch_sites, host_from_key, redact, settings_from_env
from pwgen.sources.pw_clusters import (
    PWSites,
    clusters_to_sites,
    legacy_to_clusters,
    normalise_label,
)

FAST = {"attempts": 3, "backoff": 0.001, "timeout": 5.0}


def fetch(server: PWServer, **overrides: Any) -> PWSites:
    return fetch_sites(server.env(), **{**FAST, **overrides})


def cluster(name: str, **fields: Any) -> dict[str, Any]:
    """A usable slurm cluster unless fields say otherwise."""
    base: dict[str, Any] = {
        "name": name,
        "status": "active",
        "schedulerType": "slurm",
        "connectionString": "alice@192.0.2.1",
    }
    return {**base, **fields}


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# ---------------------------------------------------------------- settings


def test_settings_derive_host_from_key() -> None:
    key = make_key("cloud.parallel.works")
    found = settings_from_env({"PW_API_KEY": key})
    assert found == PWSettings(base_url="https://cloud.parallel.works", api_key=key)
    assert key not in repr(found)


def test_host_from_key_with_or_without_padding() -> None:
    assert host_from_key(make_key("a.io")) == "a.io"  # b64 of 4 bytes needs == padding
    assert host_from_key("pwt_YS5pbw==.secret") == "a.io"
    assert host_from_key("pwt_Y2xvdWQucGFyYWxsZWwud29ya3M.x.y") == "cloud.parallel.works"
    for bad in ("abc", "pwt_", "pwt_YS5pbw", "pwt_!!!.x", "pwt_.x", "pwt_AAAA.x", "pwt_YSBi.x"):
        assert host_from_key(bad) is None, bad


def test_settings_platform_host_forms() -> None:
    key = make_key("ignored.example")
    bare = settings_from_env({"PW_API_KEY": key, "PW_PLATFORM_HOST": "pw.example.org"})
    assert bare.base_url == "https://pw.example.org"
    assert bare.host == "pw.example.org"
    url = settings_from_env({"PW_API_KEY": key, "PW_PLATFORM_HOST": "http://127.0.0.1:8080/"})
    assert url.base_url == "http://127.0.0.1:8080"
    assert url.host == "127.0.0.1:8080"


def test_settings_missing_key() -> None:
    with pytest.raises(PWAPIError, match="PW_API_KEY is not set"):
        settings_from_env({"PW_PLATFORM_HOST": "pw.example.org"})
    with pytest.raises(PWAPIError, match="PW_API_KEY is not set"):
        settings_from_env({"PW_API_KEY": "  "})


def test_settings_host_not_derivable_names_what_to_set() -> None:
    with pytest.raises(PWAPIError, match="set PW_PLATFORM_HOST") as info:
        settings_from_env({"PW_API_KEY": "plain-old-secret"})
    assert "plain-old-secret" not in str(info.value)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40) | st.builds(lambda s: "pwt_" + s, st.text(max_size=40)))
def test_fuzz_settings_only_pwapierror(key: str) -> None:
    with contextlib.suppress(PWAPIError):
        found = settings_from_env({"PW_API_KEY": key})
        assert found.base_url.startswith("https://")
        assert key.strip() not in found.base_url


@pytest.mark.parametrize("value", ["has space.org", "-x.org", "http://", "https://h:99999", "a/b"])
def test_settings_bad_platform_host(value: str) -> None:
    with pytest.raises(PWAPIError, match="PW_PLATFORM_HOST"):
        settings_from_env({"PW_API_KEY": DEFAULT_KEY, "PW_PLATFORM_HOST": value})


# ---------------------------------------------------------------- the client


def test_fetch_sends_basic_auth_and_maps_default_clusters(pw_server: PWServer) -> None:
    found = fetch(pw_server)
    assert pw_server.paths == ["/api/clusters"]
    assert pw_server.requests[0].authorization == basic_auth(DEFAULT_KEY)
    assert [site.label for site in found.sites] == ["gpu_cluster_v2", "pbs_west"]
    gpu, pbs = found.sites
    assert (gpu.scheduler, gpu.host, gpu.user) == ("slurm", "192.0.2.10", "alice")
    assert (pbs.scheduler, pbs.host, pbs.user) == ("pbspro", "192.0.2.20", "bob")
    assert [(s.name, s.status) for s in found.skipped] == [
        ("old-cluster", "off"),
        ("bare-vm", "active"),
    ]
    assert "scheduler" in found.skipped[1].reason
    assert found.source == f"PW API at 127.0.0.1:{pw_server.port}"


def test_load_source_pw(pw_server: PWServer) -> None:
    loaded = load_source("pw", pw_server.env())
    assert isinstance(loaded, LoadedSites)
    assert [site.label for site in loaded.sites] == ["gpu_cluster_v2", "pbs_west"]
    assert loaded.name.startswith("PW API at 127.0.0.1:")
    assert len(loaded.skipped) == 2


def test_wrong_key_is_rejected_without_showing_it(pw_server: PWServer) -> None:
    wrong = make_key("cloud.example.org", "WrongSecretValue42")
    with pytest.raises(PWAPIError) as info:
        fetch_sites(pw_server.env(PW_API_KEY=wrong), **FAST)
    message = str(info.value)
    assert message.startswith(f"PW API at 127.0.0.1:{pw_server.port} rejected the key (HTTP 401)")
    assert "WrongSecretValue42" not in message and wrong not in message
    assert len(pw_server.requests) == 1  # a 4xx is not retried


def test_forbidden(pw_server: PWServer) -> None:
    pw_server.status = 403
    with pytest.raises(PWAPIError, match=r"rejected the key \(HTTP 403\)"):
        fetch(pw_server)


def test_legacy_fallback(pw_server: PWServer, caplog: pytest.LogCaptureFixture) -> None:
    pw_server.legacy = True
    with caplog.at_level(logging.DEBUG):
        found = fetch(pw_server)
    assert pw_server.paths == ["/api/clusters", "/api/resources"]
    # The key goes in the Authorization header only: URLs end up in proxy and server logs.
    assert pw_server.requests[1].query == {}
    assert pw_server.requests[1].authorization == basic_auth(DEFAULT_KEY)
    assert [site.label for site in found.sites] == ["legacy_one"]
    (site,) = found.sites
    assert (site.scheduler, site.host, site.user) == ("slurm", "198.51.100.7", "dave")
    assert site.workdir == "/home/dave/pw"
    assert [s.name for s in found.skipped] == ["legacy-off"]
    assert DEFAULT_KEY not in caplog.text  # httpx's request log is silenced


def test_legacy_wrong_key_never_shows_the_key(pw_server: PWServer) -> None:
    pw_server.legacy = True
    wrong = "pwt_bad/key+with&odd=chars.Secret"
    with pytest.raises(PWAPIError, match=r"rejected the key \(HTTP 401\)") as info:
        fetch_sites(pw_server.env(PW_API_KEY=wrong), **FAST)
    assert "Secret" not in str(info.value)


def test_legacy_retries_and_5xx(pw_server: PWServer) -> None:
    pw_server.legacy = True
    pw_server.fail_only = "/api/resources"
    pw_server.fail_first = 1
    assert [site.label for site in fetch(pw_server).sites] == ["legacy_one"]
    assert pw_server.paths == ["/api/clusters", "/api/resources", "/api/resources"]
    pw_server.fail_first = 100
    with pytest.raises(PWAPIError, match=r"HTTP 503 .* for /api/resources \(after 2") as info:
        fetch(pw_server, attempts=2)
    assert DEFAULT_KEY not in str(info.value)


def test_neither_endpoint(pw_server: PWServer) -> None:
    pw_server.status = 404
    with pytest.raises(PWAPIError, match="neither /api/clusters nor /api/resources"):
        fetch(pw_server)


def test_retries_then_success(pw_server: PWServer) -> None:
    pw_server.fail_first = 2
    found = fetch(pw_server, attempts=3)
    assert len(found.sites) == 2
    assert pw_server.paths == ["/api/clusters"] * 3


def test_5xx_after_retries(pw_server: PWServer) -> None:
    pw_server.fail_first = 10
    with pytest.raises(PWAPIError, match=r"HTTP 503 .*after 3 attempts"):
        fetch(pw_server, attempts=3)
    assert len(pw_server.requests) == 3


def test_timeout_is_retried(pw_server: PWServer) -> None:
    pw_server.delay = 0.3
    with pytest.raises(PWAPIError, match=r"cannot reach PW API at http://127\.0\.0\.1:\d+: timed"):
        fetch(pw_server, timeout=0.05, attempts=2)
    assert len(pw_server.requests) == 2


def _fetch_in_thread(server: PWServer, **overrides: Any) -> BaseException | PWSites:
    """fetch() in a thread; a fetch still running after 60 s fails the test (it hangs)."""
    outcome: list[BaseException | PWSites] = []

    def target() -> None:
        try:
            outcome.append(fetch(server, **overrides))
        except BaseException as err:  # handed to the test
            outcome.append(err)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert outcome, "fetch_sites still running after 60 s: no total deadline"
    return outcome[0]


def test_a_dripping_server_meets_the_total_deadline(pw_server: PWServer) -> None:
    pw_server.drip = 0.2  # a byte every 0.2 s: the per-read timeout (5 s) never fires
    outcome = _fetch_in_thread(pw_server, deadline=1.0)
    assert isinstance(outcome, PWAPIError), outcome
    assert "no complete answer within 1 s" in str(outcome)
    assert DEFAULT_KEY not in str(outcome)


def test_an_endless_body_is_cut_at_the_byte_cap(pw_server: PWServer) -> None:
    pw_server.huge = 64 << 20  # no Content-Length: only counting the bytes read stops it
    outcome = _fetch_in_thread(pw_server)
    assert isinstance(outcome, PWAPIError), outcome
    assert "answer is larger than 8 MiB" in str(outcome)


def test_byte_cap_applies_to_every_answer(pw_server: PWServer) -> None:
    with pytest.raises(PWAPIError, match="/api/clusters: the answer is larger than 100 bytes"):
        fetch(pw_server, max_bytes=100)
    assert len(fetch(pw_server, max_bytes=100_000).sites) == 2


def test_deeply_nested_json_is_one_error(pw_server: PWServer) -> None:
    pw_server.body = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(PWAPIError, match="nested too deeply"):
        fetch(pw_server)


@pytest.mark.parametrize(
    ("environ", "what"),
    [
        ({"PW_PLATFORM_HOST": "http://pw.example.org"}, "PW_PLATFORM_HOST"),
        ({"PW_PLATFORM_HOST": "http://10.0.0.1:8080/"}, "PW_PLATFORM_HOST"),
        ({"PW_API_KEY": make_key("http://cloud.example.org")}, "the host in PW_API_KEY"),
    ],
)
def test_plain_http_off_loopback_needs_consent(environ: dict[str, str], what: str) -> None:
    environ = {"PW_API_KEY": DEFAULT_KEY, **environ}
    with pytest.raises(PWAPIError, match=f"{what} .*plain http.*PWGEN_ALLOW_HTTP=1") as info:
        settings_from_env(environ)
    assert "S3cret" not in str(info.value) and "Pw5ecret" not in str(info.value)
    allowed = settings_from_env({**environ, "PWGEN_ALLOW_HTTP": "1"})
    assert allowed.base_url.startswith("http://")


@pytest.mark.parametrize("host", ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:2"])
def test_plain_http_to_loopback_is_fine(host: str) -> None:
    found = settings_from_env({"PW_API_KEY": DEFAULT_KEY, "PW_PLATFORM_HOST": host})
    assert found.base_url == host


def test_template_markers_from_the_api_name_the_cluster(pw_server: PWServer) -> None:
    pw_server.clusters = [cluster("evil", workdir="{{ lookup('pipe', 'id') }}")]
    with pytest.raises(PWAPIError, match=r"cluster 'evil': workdir .*template") as info:
        fetch(pw_server)
    assert "\n" not in str(info.value)


def test_unreachable() -> None:
    port = closed_port()
    env = {"PW_API_KEY": DEFAULT_KEY, "PW_PLATFORM_HOST": f"http://127.0.0.1:{port}"}
    with pytest.raises(PWAPIError) as info:
        fetch_sites(env, **FAST)
    message = str(info.value)
    assert message.startswith(f"cannot reach PW API at http://127.0.0.1:{port}: ")
    assert "after 3 attempts" in message
    assert DEFAULT_KEY not in message


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"[{not json", "malformed JSON"),
        (b"\xff\xfe\x00garbage", "malformed JSON"),
        (b'{"clusters": []}', "expected a list of clusters, got an object"),
        (b'[1, "x"]', r"clusters\[0\] should be an object, got a number"),
        (b"null", "expected a list of clusters, got null"),
    ],
)
def test_bad_answers(pw_server: PWServer, body: bytes, match: str) -> None:
    pw_server.body = body
    with pytest.raises(PWAPIError, match=match):
        fetch(pw_server)


def test_truncated_json(pw_server: PWServer) -> None:
    pw_server.malformed = True
    with pytest.raises(PWAPIError, match="answered /api/clusters with malformed JSON"):
        fetch(pw_server)


def test_no_usable_cluster(pw_server: PWServer) -> None:
    pw_server.clusters = [c for c in pw_server.clusters if c["name"] in ("old-cluster", "bare-vm")]
    with pytest.raises(PWAPIError, match="no usable cluster") as info:
        fetch(pw_server)
    assert "old-cluster (off)" in str(info.value) and "bare-vm" in str(info.value)


def test_no_clusters_at_all(pw_server: PWServer) -> None:
    pw_server.clusters = []
    with pytest.raises(PWAPIError, match="lists no clusters"):
        fetch(pw_server)


# ---------------------------------------------------------------- mapping


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("GPU-Cluster.v2", "gpu_cluster_v2"),
        ("  My   Cluster 01 ", "my_cluster_01"),
        ("__x__", "x"),
        ("2fast", "site_2fast"),
        ("sites", "site_sites"),
        ("All", "site_all"),
        ("class", "site_class"),
        ("Größe", "gr_e"),
        ("a" * 80, "a" * 63),
        ("9" + "-b" * 40, ("site_9" + "_b" * 40)[:63].rstrip("_")),
        ("!!!", ""),
    ],
)
def test_normalise_label(name: str, label: str) -> None:
    assert normalise_label(name) == label


def test_display_name_fallback_and_address_fields() -> None:
    found = clusters_to_sites(
        [
            {
                "displayName": "From Display",
                "status": "ON",
                "schedulerType": "PBS",
                "ipAddress": "192.0.2.5",
                "user": "eve",
            },
            cluster("cs", connectionString="frank@192.0.2.6", user="ignored"),
            cluster("nouser", connectionString="192.0.2.7"),
        ]
    )
    a, b, c = found.sites
    assert (a.label, a.scheduler, a.host, a.user) == ("from_display", "pbspro", "192.0.2.5", "eve")
    assert (b.host, b.user) == ("192.0.2.6", "frank")
    assert (c.host, c.user) == ("192.0.2.7", None)


def test_label_collision_names_both_clusters() -> None:
    with pytest.raises(PWAPIError, match=r"'GPU-Cluster' and 'gpu cluster' both become") as info:
        clusters_to_sites([cluster("GPU-Cluster"), cluster("gpu cluster")])
    assert "gpu_cluster" in str(info.value)


def test_collision_with_a_skipped_cluster_is_fine() -> None:
    found = clusters_to_sites([cluster("a-b"), cluster("a b", status="stopped")])
    assert [site.label for site in found.sites] == ["a_b"]


def test_skipped_reasons() -> None:
    found = clusters_to_sites(
        [
            cluster("ok"),
            cluster("stopped", status="stopped"),
            cluster("nostatus", status=None),
            cluster("lsf", schedulerType="lsf"),
            cluster("empty", schedulerType=""),
            cluster("nohost", connectionString="", ipAddress=""),
        ]
    )
    reasons = {s.name: s.reason for s in found.skipped}
    assert reasons == {
        "stopped": "status is 'stopped', not on/active",
        "nostatus": "no status",
        "lsf": "unsupported scheduler type 'lsf' (slurm or pbs)",
        "empty": "no scheduler type (not a slurm or pbs cluster)",
        "nohost": "no IP address or connection string",
    }
    assert str(found.skipped[0]) == "stopped (stopped): status is 'stopped', not on/active"


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"maxNodes": "x"}, r"cluster 'c': field 'maxNodes' should be an integer, got 'x'"),
        ({"tags": 5}, r"cluster 'c': field 'tags' should be a list or an object, got 5"),
        ({"activeNodes": True}, "field 'activeNodes' should be an integer"),
        ({"status": ["on"]}, "field 'status' should be a string"),
        ({"connectionString": "bob@has space"}, r"cluster 'c': host \(from connection"),
        ({"connectionString": "b d@192.0.2.1"}, r"cluster 'c': user \(from connection"),
    ],
)
def test_shape_errors_name_cluster_and_field(fields: dict[str, Any], match: str) -> None:
    with pytest.raises(PWAPIError, match=match):
        clusters_to_sites([cluster("c", **fields)])


def test_missing_name_names_the_index() -> None:
    with pytest.raises(PWAPIError, match=r"clusters\[1\] \(id 'x1'\): field 'name' is missing"):
        clusters_to_sites([cluster("a"), {"id": "x1", "status": "on"}])
    with pytest.raises(PWAPIError, match=r"clusters\[0\]: field 'name' should be a string"):
        clusters_to_sites([{"name": 3}])


def test_legacy_shape_errors() -> None:
    with pytest.raises(PWAPIError, match=r"resource 'r': field 'variables' should be an object"):
        legacy_to_clusters([{"name": "r", "variables": []}])
    with pytest.raises(PWAPIError, match=r"field 'settings.slurmUsername' should be a string"):
        legacy_to_clusters([{"name": "r", "settings": {"slurmUsername": 1}}])
    with pytest.raises(PWAPIError, match=r"resources\[0\]: field 'name' is missing"):
        legacy_to_clusters([{"status": "on"}])


def test_redact() -> None:
    key = "pwt_a+b/c=.d e"
    text = f"x {key} y pwt_a%2Bb%2Fc%3D.d%20e z pwt_a%2Bb%2Fc%3D.d+e"
    assert redact(text, key) == "x <PW_API_KEY> y <PW_API_KEY> z <PW_API_KEY>"


# ---------------------------------------------------------------- fuzzing

CLUSTER_KEYS = [
    "id",
    "name",
    "displayName",
    "type",
    "status",
    "schedulerType",
    "ipAddress",
    "connectionString",
    "user",
    "activeNodes",
    "maxNodes",
    "tags",
    "workspaceMounts",
    "workdir",
    "privateIp",
]
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.sampled_from(["on", "active", "off", "slurm", "pbs", "", "a@192.0.2.1", "192.0.2.9"])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
cluster_dicts = st.dictionaries(
    st.sampled_from(CLUSTER_KEYS) | st.text(max_size=8), json_values, max_size=10
)
PLAUSIBLE_KEYS = ("name", "status", "schedulerType", "connectionString")
names = st.text(st.characters(codec="ascii"), max_size=30) | st.text(max_size=10)
# Mostly well-typed clusters (some usable, so the success path is fuzzed too) ...
well_typed = st.fixed_dictionaries(
    {
        "name": names,
        "status": st.sampled_from(["on", "active", "off", "ACTIVE", ""]),
        "schedulerType": st.sampled_from(["slurm", "pbs", "", "lsf"]),
        "connectionString": st.sampled_from(["u@192.0.2.3", "192.0.2.4", "", "@", "u@"]),
    },
    optional={
        "id": st.text(max_size=5) | st.integers(),
        "ipAddress": st.sampled_from(["192.0.2.5", "", "h.example"]),
        "user": st.sampled_from(["alice", "", "9bad"]),
        "maxNodes": st.integers(0, 100),
        "tags": st.lists(st.text(max_size=5), max_size=2),
    },
)
# ... and clusters with any JSON value in any known field.
plausible = st.fixed_dictionaries(
    {
        "name": names,
        "status": st.sampled_from(["on", "active", "off", ""]),
        "schedulerType": st.sampled_from(["slurm", "pbs", "", "lsf"]),
        "connectionString": st.text(max_size=30) | st.just("u@192.0.2.3"),
    },
    optional={key: json_values for key in CLUSTER_KEYS if key not in PLAUSIBLE_KEYS},
)
answers = (
    json_values
    | st.lists(cluster_dicts | plausible | well_typed, max_size=5)
    | st.lists(well_typed, min_size=1, max_size=4)
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers)
def test_fuzz_mapping_raises_only_pwapierror(data: Any) -> None:
    try:
        found = clusters_to_sites(data)
    except PWAPIError as err:
        assert "\n" not in str(err)
    else:
        assert found.sites
        assert len({site.label for site in found.sites}) == len(found.sites)


legacy_dicts = st.dictionaries(
    st.sampled_from(["name", "status", "controllerIp", "variables", "settings"])
    | st.text(max_size=5),
    json_values
    | st.dictionaries(
        st.sampled_from(["privateIp", "workdir", "slurmUsername"]), json_values, max_size=3
    ),
    max_size=6,
)


@settings(max_examples=100, deadline=None)
@given(json_values | st.lists(legacy_dicts, max_size=4))
def test_fuzz_legacy_raises_only_pwapierror(data: Any) -> None:
    with contextlib.suppress(PWAPIError):
        clusters_to_sites(legacy_to_clusters(data))
