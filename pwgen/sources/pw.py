"""Sites from the Parallel Works (PW) API.

    settings_from_env(os.environ)      PW_API_KEY (+ PW_PLATFORM_HOST) -> where and how to ask
    fetch_clusters(settings)           GET /api/clusters (or the legacy /api/resources)
    clusters_to_sites(clusters)        cluster dicts -> validated `Site`s + skipped clusters
    fetch_sites()                      all three: what `pwgen inventory --from pw` and the
                                       `pwgen.hpc.pw` Ansible inventory plugin call

The mapping from clusters to sites lives in `pwgen.sources.pw_clusters`, the HTTP
exchange (retries, total deadline, byte cap) in `pwgen.sources.pw_http`. The key is
sent only in the Authorization header, and only over https unless the platform is
on this machine (loopback) or PWGEN_ALLOW_HTTP=1 says plain http is wanted.

Every problem (no key, unreachable platform, rejected key, an answer of the wrong
shape) is one `PWAPIError` with a one-line message; the API key never appears in
one. Only clusters that are up (status `on`/`active`), have a slurm or pbs
scheduler and an address become sites; the others are returned as skipped, with
the reason. Private IPs, workdirs and partitions are not in the current API: they
are facts gathered over SSH later.
"""

import base64
import binascii
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

import httpx

from pwgen.errors import PWAPIError
from pwgen.sources.pw_clusters import PWSites, clusters_to_sites, legacy_to_clusters, objects
from pwgen.sources.pw_http import (
    Answer,
    Limits,
    Retry,
    deadline_client,
    get,
    is_loopback,
    late_message,
    netloc,
    reason,
    run_within,
)

# httpx logs every request URL at INFO: noise in Ansible's output (no key is in a URL).
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

DEFAULT_TIMEOUT = 10.0
DEFAULT_ATTEMPTS = 3
DEFAULT_BACKOFF = 0.5
# The whole fetch, all attempts included; a PW answer is a few kB.
DEFAULT_DEADLINE = 60.0
DEFAULT_MAX_BYTES = 8 << 20
# Set to 1 to send the key over plain http to a host that is not this machine.
ALLOW_HTTP_VARIABLE = "PWGEN_ALLOW_HTTP"

CLUSTERS_PATH = "/api/clusters"
LEGACY_PATH = "/api/resources"

_KEY_PREFIX = "pwt_"
_B64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
_BARE_HOST = re.compile(
    r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(:\d{1,5})?$"
)
_REDACTED = "<PW_API_KEY>"


@dataclass(frozen=True)
class PWSettings:
    """Where the PW API is and the key to use (kept out of repr)."""

    base_url: str
    api_key: str = field(repr=False)

    @property
    def host(self) -> str:
        """The platform's host[:port], for messages."""
        return netloc(self.base_url)


# ---------------------------------------------------------------- settings


def settings_from_env(environ: Mapping[str, str]) -> PWSettings:
    """Read PW_API_KEY and PW_PLATFORM_HOST (or derive the host from the key).

    PW_PLATFORM_HOST is a bare host (`cloud.parallel.works` -> https://...) or a
    full `http(s)://` base URL used as it is.
    """
    key = environ.get("PW_API_KEY", "").strip()
    if not key:
        raise PWAPIError(
            "PW_API_KEY is not set: create an API key in the PW platform "
            "(account settings) and export PW_API_KEY"
        )
    host = environ.get("PW_PLATFORM_HOST", "").strip()
    allow_http = environ.get(ALLOW_HTTP_VARIABLE, "").strip().lower() in ("1", "true", "yes")
    if host:
        url = _encrypted(base_url_for(host, "PW_PLATFORM_HOST"), "PW_PLATFORM_HOST", allow_http)
        return PWSettings(base_url=url, api_key=key)
    derived = host_from_key(key)
    if derived is None:
        raise PWAPIError(
            "PW_PLATFORM_HOST is not set and the platform host cannot be read from "
            "PW_API_KEY (not a pwt_<host>.<secret> key): set PW_PLATFORM_HOST, "
            "e.g. PW_PLATFORM_HOST=cloud.parallel.works"
        )
    what = "the host in PW_API_KEY"
    url = _encrypted(base_url_for(derived, what), what, allow_http)
    return PWSettings(base_url=url, api_key=key)


def _encrypted(base_url: str, what: str, allow_http: bool) -> str:
    """Refuse plain http off this machine: the key would cross the network in clear."""
    parts = urlsplit(base_url)
    if parts.scheme.lower() == "http" and not allow_http and not is_loopback(parts.hostname or ""):
        raise PWAPIError(
            f"{what} asks for plain http ({base_url}): the API key would cross the network "
            f"unencrypted; use https, or set {ALLOW_HTTP_VARIABLE}=1 to allow it"
        )
    return base_url


def host_from_key(key: str) -> str | None:
    """The platform host encoded in a `pwt_<urlsafe-b64(host)>.<secret>` key, or None."""
    if not key.startswith(_KEY_PREFIX):
        return None
    encoded, dot, secret = key[len(_KEY_PREFIX) :].partition(".")
    if not dot or not secret or not _B64URL.match(encoded):
        return None
    encoded = encoded.rstrip("=")
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        host = raw.decode("ascii").strip().rstrip("/")
    except (binascii.Error, ValueError):
        return None
    if host.lower().startswith(("http://", "https://")):
        return host if _is_base_url(host) else None
    return host if _BARE_HOST.match(host) else None


def base_url_for(value: str, what: str = "PW_PLATFORM_HOST") -> str:
    """`host` -> `https://host`; an `http(s)://` URL is kept (without a trailing /)."""
    value = value.strip()
    if value.lower().startswith(("http://", "https://")):
        if not _is_base_url(value):
            raise PWAPIError(f"{what} is not a usable URL: {value!r}")
        return value.rstrip("/")
    host = value.rstrip("/")
    if not _BARE_HOST.match(host):
        raise PWAPIError(f"{what} is not a host name (e.g. cloud.parallel.works): {value!r}")
    return f"https://{host}"


def _is_base_url(value: str) -> bool:
    if any(char.isspace() for char in value):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return bool(parts.hostname) and not parts.query and not parts.fragment


# ---------------------------------------------------------------- HTTP


def fetch_clusters(
    settings: PWSettings,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    attempts: int = DEFAULT_ATTEMPTS,
    backoff: float = DEFAULT_BACKOFF,
    deadline: float = DEFAULT_DEADLINE,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[dict[str, Any]]:
    """The platform's clusters, in the shape of GET /api/clusters.

    Falls back to the legacy GET /api/resources (converted to that shape) when
    /api/clusters answers 404. Connection errors, timeouts, 429 and 5xx are retried
    `attempts` times in all, waiting backoff, 2*backoff, ... in between. `timeout`
    bounds each network read, `deadline` the whole exchange (all attempts), and no
    answer may be larger than `max_bytes`.
    """
    for name, value in (("timeout", timeout), ("deadline", deadline), ("size cap", max_bytes)):
        if not value > 0:
            raise PWAPIError(f"the PW API {name} must be a positive number, not {value}")
    limits = Limits(time.monotonic() + deadline, max_bytes, deadline)
    retry = Retry(attempts, backoff)
    try:
        return run_within(
            deadline,
            lambda: _ask(settings, timeout, retry, limits),
            late_message(settings.host, deadline),
        )
    except PWAPIError as err:
        raise PWAPIError(redact(str(err), settings.api_key)) from None
    except (httpx.HTTPError, httpx.InvalidURL) as err:
        message = f"cannot reach PW API at {settings.base_url}: {reason(err)}"
        raise PWAPIError(redact(message, settings.api_key)) from None


def _ask(settings: PWSettings, timeout: float, retry: Retry, limits: Limits) -> Any:
    """/api/clusters, else the legacy /api/resources; the key only in the auth header."""
    auth = httpx.BasicAuth(settings.api_key, "")
    with deadline_client(settings.base_url, timeout) as client:
        answer = get(client, CLUSTERS_PATH, retry, limits, auth=auth)
        if answer.status != 404:
            _check_status(answer, settings, CLUSTERS_PATH)
            clusters = _json(answer, settings, CLUSTERS_PATH)
            return objects(clusters, "clusters", f"PW API at {settings.host}")
        answer = get(client, LEGACY_PATH, retry, limits, auth=auth)
        if answer.status == 404:
            raise PWAPIError(
                f"PW API at {settings.host} has neither {CLUSTERS_PATH} nor "
                f"{LEGACY_PATH} (HTTP 404): is PW_PLATFORM_HOST the PW platform?"
            )
        _check_status(answer, settings, LEGACY_PATH)
        resources = _json(answer, settings, LEGACY_PATH)
        return legacy_to_clusters(resources, f"PW API at {settings.host}")


def _check_status(answer: Answer, settings: PWSettings, path: str) -> None:
    status = answer.status
    if status in (401, 403):
        raise PWAPIError(
            f"PW API at {settings.host} rejected the key (HTTP {status}): "
            "check PW_API_KEY (and that it belongs to this platform)"
        )
    if not 200 <= status < 300:
        raise PWAPIError(
            f"PW API at {settings.host} answered HTTP {status} {answer.reason}".rstrip()
            + f" for {path}"
        )


def _json(answer: Answer, settings: PWSettings, path: str) -> Any:
    try:
        return json.loads(answer.body)
    except RecursionError:
        raise PWAPIError(
            f"PW API at {settings.host} answered {path} with JSON nested too deeply"
        ) from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        where = ""
        if hasattr(err, "lineno") and hasattr(err, "colno"):
            where = f" (line {err.lineno}, column {err.colno})"
        raise PWAPIError(
            f"PW API at {settings.host} answered {path} with malformed JSON{where}"
        ) from None


def redact(text: str, key: str) -> str:
    """`text` with every spelling of `key` (plain, URL-quoted) replaced."""
    if not key:
        return text
    for spelling in sorted({key, quote(key, safe=""), quote_plus(key)}, key=len, reverse=True):
        text = text.replace(spelling, _REDACTED)
    return text


# ---------------------------------------------------------------- all together


def fetch_sites(
    environ: Mapping[str, str] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    attempts: int = DEFAULT_ATTEMPTS,
    backoff: float = DEFAULT_BACKOFF,
    deadline: float = DEFAULT_DEADLINE,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> PWSites:
    """Ask the PW API (settings from `environ`, default os.environ) for sites."""
    settings = settings_from_env(os.environ if environ is None else environ)
    clusters = fetch_clusters(
        settings,
        timeout=timeout,
        attempts=attempts,
        backoff=backoff,
        deadline=deadline,
        max_bytes=max_bytes,
    )
    try:
        return clusters_to_sites(clusters, source=f"PW API at {settings.host}")
    except PWAPIError as err:
        raise PWAPIError(redact(str(err), settings.api_key)) from None
