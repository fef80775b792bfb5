"""A local stand-in for the Parallel Works API, for tests.

    with PWServer() as server:                   # 127.0.0.1, a free port, own thread
        env = server.env()                        # PW_API_KEY + PW_PLATFORM_HOST=http://...
        ...
        server.requests[0].authorization          # what the client sent

It serves the documented shapes: `GET /api/clusters` (HTTP Basic, the key as user
and an empty password; anything else is 401) and, in legacy mode, only the old
`GET /api/resources` (404 on /api/clusters), with the same HTTP Basic header: a key
in the query string is refused (401), so a client that puts it in the URL fails.
Switches, all plain attributes that may be changed while it runs:

    clusters / resources   the JSON served (deep-copied defaults)
    api_key                the key it accepts
    legacy                 404 on /api/clusters, serve /api/resources
    fail_first             answer the first N requests with `fail_status` (503)
    fail_only              count only requests to this path for fail_first (e.g.
                           "/api/resources": fail after the legacy fallback)
    status                 answer every request with this status (e.g. 403)
    body                   serve these raw bytes instead of JSON (malformed JSON)
    malformed              shorthand for a truncated JSON body
    delay                  seconds to wait before answering (client timeouts)
    drip                   send the headers, then one byte of body every `drip` seconds
                           for ever (a per-read timeout never fires)
    huge                   answer 200 with this many bytes of valid JSON, streamed
                           without a Content-Length (a body-size cap must stop reading)
"""

import base64
import copy
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def make_key(host: str, secret: str = "S3cretT0kenValue") -> str:
    """A key shaped like PW's: pwt_<urlsafe-b64(host) without padding>.<secret>."""
    encoded = base64.urlsafe_b64encode(host.encode()).decode().rstrip("=")
    return f"pwt_{encoded}.{secret}"


DEFAULT_KEY = make_key("cloud.example.org", "Pw5ecretDoNotLeak")

# Documentation addresses (RFC 5737): nothing ever connects to them.
DEFAULT_CLUSTERS: list[dict[str, Any]] = [
    {
        "id": "66f0c2",
        "name": "GPU-Cluster.v2",
        "displayName": "GPU Cluster v2",
        "type": "aws-slurm",
        "csp": "aws",
        "status": "active",
        "schedulerType": "slurm",
        "ipAddress": "192.0.2.10",
        "connectionString": "alice@192.0.2.10",
        "user": "alice",
        "activeNodes": 2,
        "maxNodes": 11,
        "tags": [],
        "workspaceMounts": [],
    },
    {
        "id": "77a1d3",
        "name": "pbs-west",
        "displayName": "PBS West",
        "type": "existing",
        "csp": "existing",
        "status": "on",
        "schedulerType": "pbs",
        "ipAddress": "192.0.2.20",
        "connectionString": "",
        "user": "bob",
        "activeNodes": 0,
        "maxNodes": 4,
    },
    {
        "id": "88b2e4",
        "name": "old-cluster",
        "displayName": "Old Cluster",
        "type": "google-slurm",
        "csp": "google",
        "status": "off",
        "schedulerType": "slurm",
        "ipAddress": "",
        "connectionString": "",
        "user": "alice",
        "activeNodes": 0,
        "maxNodes": 8,
    },
    {
        "id": "99c3f5",
        "name": "bare-vm",
        "displayName": "Bare VM",
        "type": "existing",
        "csp": "existing",
        "status": "active",
        "schedulerType": "",
        "ipAddress": "192.0.2.40",
        "connectionString": "carol@192.0.2.40",
        "user": "carol",
        "activeNodes": 1,
        "maxNodes": 1,
    },
]

DEFAULT_RESOURCES: list[dict[str, Any]] = [
    {
        "name": "legacy-one",
        "status": "on",
        "controllerIp": "198.51.100.7",
        "variables": {"privateIp": "10.1.0.7", "workdir": "/home/dave/pw"},
        "settings": {"slurmUsername": "dave"},
    },
    {
        "name": "legacy-off",
        "status": "off",
        "controllerIp": "",
        "variables": {},
        "settings": {"slurmUsername": "dave"},
    },
]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # without the query string
    query: dict[str, list[str]]
    authorization: str | None


def basic_auth(key: str) -> str:
    """The Authorization header PW expects: Basic base64("<key>:")."""
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


class PWServer:
    """A PW API stand-in on 127.0.0.1 (port chosen by the OS), served from a thread."""

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_KEY,
        clusters: list[dict[str, Any]] | None = None,
        resources: list[dict[str, Any]] | None = None,
    ) -> None:
        self.api_key = api_key
        self.clusters: Any = copy.deepcopy(DEFAULT_CLUSTERS if clusters is None else clusters)
        self.resources: Any = copy.deepcopy(DEFAULT_RESOURCES if resources is None else resources)
        self.legacy = False
        self.fail_first = 0
        self.fail_status = 503
        self.fail_only: str | None = None
        self.status: int | None = None
        self.body: bytes | None = None
        self.malformed = False
        self.delay = 0.0
        self.drip: float | None = None
        self.huge = 0
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> "PWServer":
        handler = type("Handler", (_Handler,), {"pw": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "PWServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        """Environment variables that point pwgen at this server."""
        return {"PW_API_KEY": self.api_key, "PW_PLATFORM_HOST": self.url, **extra}

    @property
    def paths(self) -> list[str]:
        return [request.path for request in self.requests]

    # ------------------------------------------------------------ answering

    def _answer(self, request: RecordedRequest) -> tuple[int, bytes]:
        with self._lock:
            self.requests.append(request)
            count = sum(
                1 for seen in self.requests if self.fail_only is None or seen.path == self.fail_only
            )
        failing = self.fail_only is None or request.path == self.fail_only
        if self.delay:
            time.sleep(self.delay)
        if failing and count <= self.fail_first:
            return self.fail_status, b'{"error": "temporarily unavailable"}'
        if self.status is not None:
            return self.status, b'{"error": "forced status"}'
        if request.path == "/api/clusters":
            if self.legacy:
                return 404, b'{"error": "not found"}'
            if request.authorization != basic_auth(self.api_key):
                return 401, b'{"error": "unauthorized"}'
            return 200, self._payload(self.clusters)
        if request.path == "/api/resources":
            if not self.legacy:
                return 404, b'{"error": "not found"}'
            if "key" in request.query or request.authorization != basic_auth(self.api_key):
                return 401, b'{"error": "invalid key"}'
            return 200, self._payload(self.resources)
        return 404, b'{"error": "not found"}'

    def _payload(self, data: Any) -> bytes:
        if self.body is not None:
            return self.body
        text = json.dumps(data).encode()
        return text[: len(text) // 2] if self.malformed else text


class _Handler(BaseHTTPRequestHandler):
    pw: PWServer

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        request = RecordedRequest(
            method="GET",
            path=parts.path,
            query=parse_qs(parts.query),
            authorization=self.headers.get("Authorization"),
        )
        status, body = self.pw._answer(request)
        if status == 200 and (self.pw.drip is not None or self.pw.huge):
            self._stream_forever() if self.pw.drip is not None else self._stream_huge()
            return
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream_forever(self) -> None:
        """Headers, then a space (valid JSON padding) every `drip` seconds until cut off."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.flush()
        with suppress(OSError):
            while self.pw.drip is not None:
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(self.pw.drip)

    def _stream_huge(self) -> None:
        """`huge` bytes of one JSON list, no Content-Length: the end is the closed socket."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        chunk = b'{"name": "x", "status": "off"},' * 2048
        with suppress(OSError):
            self.wfile.write(b"[")
            for _ in range(self.pw.huge // len(chunk)):
                self.wfile.write(chunk)
            self.wfile.write(b'{"name": "x"}]')

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@contextmanager
def running(**kwargs: Any) -> Iterator[PWServer]:
    """`with running() as server:` outside pytest."""
    with PWServer(**kwargs) as server:
        yield server
