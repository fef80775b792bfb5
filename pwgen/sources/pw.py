"""Sites from the Parallel Works (PW) API.

    settings_from_env(os.environ)      PW_API_KEY (+ PW_PLATFORM_HOST) -> where and how to ask
    fetch_clusters(settings)           GET /api/clusters (or the legacy /api/resources)
    clusters_to_sites(clusters)        cluster dicts -> validated `Site`s + skipped clusters
    fetch_sites()                      all three: what `pwgen inventory --from pw` and the
                                       `pwgen_pw` Ansible inventory plugin call

The mapping from clusters to sites lives in `pwgen.sources.pw_clusters`.

Every problem (no key, unreachable platform, rejected key, an answer of the wrong
shape) is one `PWAPIError` with a one-line message; the API key never appears in
one. Only clusters that are up (status `on`/`active`), have a slurm or pbs
scheduler and an address become sites; the others are returned as skipped, with
the reason. Private IPs, workdirs and partitions are not in the current API: they
are facts gathered over SSH later.
"""

import base64
import binascii
import ipaddress
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

# httpx logs every request URL at INFO; the legacy endpoint carries the key in its
# query string, so those lines must never be emitted.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

DEFAULT_TIMEOUT = 10.0
DEFAULT_ATTEMPTS = 3
DEFAULT_BACKOFF = 0.5

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
        return urlsplit(self.base_url).netloc or self.base_url


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
    if host:
        return PWSettings(base_url=base_url_for(host, "PW_PLATFORM_HOST"), api_key=key)
    derived = host_from_key(key)
    if derived is None:
        raise PWAPIError(
            "PW_PLATFORM_HOST is not set and the platform host cannot be read from "
            "PW_API_KEY (not a pwt_<host>.<secret> key): set PW_PLATFORM_HOST, "
            "e.g. PW_PLATFORM_HOST=cloud.parallel.works"
        )
    return PWSettings(base_url=base_url_for(derived, "the host in PW_API_KEY"), api_key=key)


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
) -> list[dict[str, Any]]:
    """The platform's clusters, in the shape of GET /api/clusters.

    Falls back to the legacy GET /api/resources (converted to that shape) when
    /api/clusters answers 404. Connection errors, timeouts, 429 and 5xx are retried
    `attempts` times in all, waiting backoff, 2*backoff, ... in between.
    """
    if not timeout > 0:
        raise PWAPIError(f"the PW API timeout must be a positive number of seconds, not {timeout}")
    try:
        with _client(settings, timeout) as client:
            auth = httpx.BasicAuth(settings.api_key, "")
            response = _get(client, settings, CLUSTERS_PATH, attempts, backoff, auth=auth)
            if response.status_code == 404:
                response = _get(
                    client,
                    settings,
                    LEGACY_PATH,
                    attempts,
                    backoff,
                    params={"key": settings.api_key},
                )
                if response.status_code == 404:
                    raise PWAPIError(
                        f"PW API at {settings.host} has neither {CLUSTERS_PATH} nor "
                        f"{LEGACY_PATH} (HTTP 404): is PW_PLATFORM_HOST the PW platform?"
                    )
                _check_status(response, settings, LEGACY_PATH)
                resources = _json(response, settings, LEGACY_PATH)
                return legacy_to_clusters(resources, f"PW API at {settings.host}")
            _check_status(response, settings, CLUSTERS_PATH)
            clusters = _json(response, settings, CLUSTERS_PATH)
            return objects(clusters, "clusters", f"PW API at {settings.host}")
    except PWAPIError as err:
        raise PWAPIError(redact(str(err), settings.api_key)) from None
    except (httpx.HTTPError, httpx.InvalidURL) as err:
        message = f"cannot reach PW API at {settings.base_url}: {_reason(err)}"
        raise PWAPIError(redact(message, settings.api_key)) from None


def _client(settings: PWSettings, timeout: float) -> httpx.Client:
    host = urlsplit(settings.base_url).hostname or ""
    return httpx.Client(
        base_url=settings.base_url,
        timeout=httpx.Timeout(timeout),
        headers={"Accept": "application/json", "User-Agent": "pwgen"},
        # A proxy from the environment must not see requests meant for this machine.
        trust_env=not _is_loopback(host),
        follow_redirects=False,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _get(
    client: httpx.Client,
    settings: PWSettings,
    path: str,
    attempts: int,
    backoff: float,
    **kwargs: Any,
) -> httpx.Response:
    """GET with retries; raises PWAPIError once the attempts are used up."""
    attempts = max(1, attempts)
    failure = ""
    for attempt in range(1, attempts + 1):
        try:
            response = client.get(path, **kwargs)
        except httpx.TransportError as err:
            failure = f"cannot reach PW API at {settings.base_url}: {_reason(err)}"
        except (httpx.HTTPError, httpx.InvalidURL) as err:
            raise PWAPIError(
                f"cannot reach PW API at {settings.base_url}: {_reason(err)}"
            ) from None
        else:
            status = response.status_code
            if status != 429 and status < 500:
                return response
            failure = (
                f"PW API at {settings.host} answered HTTP {status} "
                f"{response.reason_phrase} for {path}".rstrip()
            )
        if attempt < attempts:
            time.sleep(backoff * 2 ** (attempt - 1))
    tries = f" (after {attempts} attempts)" if attempts > 1 else ""
    raise PWAPIError(failure + tries)


def _reason(err: Exception) -> str:
    text = str(err).strip()
    name = type(err).__name__
    if isinstance(err, httpx.TimeoutException):
        return f"timed out ({name})"
    return text or name


def _check_status(response: httpx.Response, settings: PWSettings, path: str) -> None:
    status = response.status_code
    if status in (401, 403):
        raise PWAPIError(
            f"PW API at {settings.host} rejected the key (HTTP {status}): "
            "check PW_API_KEY (and that it belongs to this platform)"
        )
    if not 200 <= status < 300:
        raise PWAPIError(
            f"PW API at {settings.host} answered HTTP {status} "
            f"{response.reason_phrase} for {path}".rstrip()
        )


def _json(response: httpx.Response, settings: PWSettings, path: str) -> Any:
    try:
        return response.json()
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
) -> PWSites:
    """Ask the PW API (settings from `environ`, default os.environ) for sites."""
    settings = settings_from_env(os.environ if environ is None else environ)
    clusters = fetch_clusters(settings, timeout=timeout, attempts=attempts, backoff=backoff)
    try:
        return clusters_to_sites(clusters, source=f"PW API at {settings.host}")
    except PWAPIError as err:
        raise PWAPIError(redact(str(err), settings.api_key)) from None
