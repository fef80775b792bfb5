"""One GET to the PW API: retries, a total deadline and a byte cap.

    with deadline_client(base_url, timeout) as client:
        answer = get(client, path, retry, limits)

httpx's timeout is per network read, so a server dripping a byte every few seconds
would never time out: `run_within` runs the whole exchange in a worker thread and
gives up at the deadline, and each read's timeout and the body loop also stop at
it, so the worker ends soon after. The body is streamed and abandoned past the
byte cap (counted after decompression, so a gzip bomb stops too). The key only ever
travels in the Authorization header (URLs end up in logs and proxies).
"""

import ipaddress
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from pwgen.errors import PWAPIError
from pwgen.userfiles import describe_size

Result = TypeVar("Result")


@dataclass(frozen=True)
class Limits:
    """How long the whole fetch may take (monotonic end) and how big one answer may be."""

    ends_at: float
    max_bytes: int
    deadline: float  # seconds, for messages


@dataclass(frozen=True)
class Retry:
    attempts: int
    backoff: float


@dataclass(frozen=True)
class Answer:
    """A response read in full (within the cap)."""

    status: int
    reason: str
    body: bytes


def run_within(deadline: float, work: Callable[[], Result], late: str) -> Result:
    """`work()` in a daemon thread; PWAPIError(`late`) if it has not ended after `deadline` s."""
    outcome: list[Result] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(work())
        except BaseException as err:  # re-raised in the caller's thread
            failure.append(err)

    worker = threading.Thread(target=target, name="pwgen-pw-api", daemon=True)
    worker.start()
    worker.join(deadline)
    if failure:
        raise failure[0]
    if not outcome:
        raise PWAPIError(late)
    return outcome[0]


def deadline_client(base_url: str, timeout: float) -> httpx.Client:
    host = httpx.URL(base_url).host
    return httpx.Client(
        base_url=base_url,
        timeout=httpx.Timeout(timeout),
        headers={"Accept": "application/json", "User-Agent": "pwgen"},
        # A proxy from the environment must not see requests meant for this machine.
        trust_env=not is_loopback(host),
        follow_redirects=False,
    )


def netloc(base_url: str) -> str:
    """The platform's host[:port], for messages."""
    return urlsplit(base_url).netloc or base_url


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def get(client: httpx.Client, path: str, retry: Retry, limits: Limits, **kwargs: Any) -> Answer:
    """GET with retries (connection errors, timeouts, 429, 5xx); PWAPIError once used up."""
    base_url, where = str(client.base_url).rstrip("/"), netloc(str(client.base_url))
    attempts = max(1, retry.attempts)
    failure = ""
    for attempt in range(1, attempts + 1):
        try:
            answer = _get_once(client, where, path, limits, **kwargs)
        except httpx.TransportError as err:
            failure = f"cannot reach PW API at {base_url}: {reason(err)}"
        except (httpx.HTTPError, httpx.InvalidURL) as err:
            raise PWAPIError(f"cannot reach PW API at {base_url}: {reason(err)}") from None
        else:
            if answer.status != 429 and answer.status < 500:
                return answer
            failure = f"PW API at {where} answered HTTP {answer.status} {answer.reason}"
            failure = f"{failure.rstrip()} for {path}"
        pause = retry.backoff * 2 ** (attempt - 1)
        if attempt < attempts and time.monotonic() + pause < limits.ends_at:
            time.sleep(pause)
        elif attempt < attempts:
            break
    tries = f" (after {attempt} attempts)" if attempt > 1 else ""
    raise PWAPIError(failure + tries)


def _get_once(client: httpx.Client, where: str, path: str, limits: Limits, **kwargs: Any) -> Answer:
    left = limits.ends_at - time.monotonic()
    if left <= 0:
        raise _late(where, limits)
    timeout = httpx.Timeout(min(left, client.timeout.read or left))
    with client.stream("GET", path, timeout=timeout, **kwargs) as response:
        if response.status_code == 429 or response.status_code >= 500:
            return Answer(response.status_code, response.reason_phrase, b"")
        return Answer(
            response.status_code, response.reason_phrase, _body(response, where, path, limits)
        )


def _body(response: httpx.Response, where: str, path: str, limits: Limits) -> bytes:
    too_big = f"PW API at {where} answered {path}: the answer is larger than "
    too_big += describe_size(limits.max_bytes)
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise PWAPIError(too_big)
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limits.max_bytes:
            raise PWAPIError(too_big)
        if time.monotonic() > limits.ends_at:
            raise _late(where, limits)
        chunks.append(chunk)
    return b"".join(chunks)


def _late(where: str, limits: Limits) -> PWAPIError:
    return PWAPIError(late_message(where, limits.deadline))


def late_message(where: str, deadline: float) -> str:
    return f"PW API at {where} gave no complete answer within {deadline:g} s"


def reason(err: Exception) -> str:
    text = str(err).strip()
    name = type(err).__name__
    if isinstance(err, httpx.TimeoutException):
        return f"timed out ({name})"
    return text or name
