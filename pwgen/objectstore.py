"""A site's `object_store:` key: the S3 API its `s3://` Files live in, and its secret.

    object_store:
      endpoint_url: https://s3.example.org      # S3-compatible server (omit: AWS itself)
      region: us-east-1
      buckets: [results, inputs]                # optional: only these buckets
      credentials:                              # by reference, never the secret itself
        env: {access_key_id: MY_KEY_ID, secret_access_key: MY_SECRET}
        # or: file: ~/.aws/credentials   profile: lab

The site's tasks copy their `s3://` Files with the real `aws` CLI, which `pwgen
provision` installs into the site's env (`AWS_CLI_REQUIREMENT`). The secret is read
here, on the controller, when a run first stages an `s3://` File on the site, and
reaches the site as a private file (pwgen.staging.cloud); the CLI finds it, the
endpoint and the region through its environment (`worker_environment`), so none of
them is ever an argument of any process or a line of a log.
"""

import configparser
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pwgen.errors import PwgenError
from pwgen.sitevalues import refuse_code
from pwgen.userfiles import read_user_text
from pwgen.validation import shown

#: The AWS CLI the site's env gets when the site declares an object store (PyPI, pinned).
AWS_CLI_REQUIREMENT = "awscli==1.46.3"
#: Variables of the worker's environment that would beat the shipped credentials file.
SHADOWING_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
)
#: Largest credentials file read on the controller.
MAX_CREDENTIALS_BYTES = 64 * 1024

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_REGION = re.compile(r"^[a-z0-9-]{1,40}$")
# S3 bucket names (the rules of the AWS docs, dots allowed).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ENDPOINT = re.compile(r"^https?://[A-Za-z0-9_.:\[\]%-]+(:[0-9]{1,5})?(/[^\s]*)?$")
# A secret value: printable ASCII without spaces (it becomes one line of an INI file).
_SECRET_VALUE = re.compile(r"^[\x21-\x7e]{1,4096}$")


class CredentialsError(PwgenError):
    """A referenced secret cannot be read (the message never holds the secret)."""


class _StoreModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @field_validator("*")
    @classmethod
    def _refuse_code(cls, value: Any) -> Any:
        return refuse_code(value)


def _check_env_name(name: str | None) -> str | None:
    if name is not None and not _ENV_NAME.match(name):
        raise ValueError(f"{shown(name)} is not an environment variable name")
    return name


class EnvCredentials(_StoreModel):
    """The names of the controller's environment variables that hold the keys."""

    access_key_id: str = Field("AWS_ACCESS_KEY_ID", description="variable holding the key id")
    secret_access_key: str = Field(
        "AWS_SECRET_ACCESS_KEY", description="variable holding the secret key"
    )
    session_token: str | None = Field(None, description="variable holding a session token")

    _check_names = field_validator("access_key_id", "secret_access_key", "session_token")(
        _check_env_name
    )


class StoreCredentials(_StoreModel):
    """Where the controller reads the keys: its environment or a credentials file."""

    env: EnvCredentials | None = Field(None, description="environment variables of the controller")
    file: str | None = Field(
        None, min_length=1, description="an AWS shared credentials file on the controller"
    )
    profile: str | None = Field(
        None, min_length=1, description="the file's section (default: default)"
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env (variable names) or file (a path)")
        if self.profile is not None and self.file is None:
            raise ValueError("profile is a section of a credentials file: give file too")
        return self


class ObjectStore(_StoreModel):
    """The S3 API a site's `s3://` Files are copied from and to (docs/staging.md)."""

    endpoint_url: str | None = Field(
        None, description="http(s) URL of an S3-compatible server (default: AWS)"
    )
    region: str = Field("us-east-1", description="the region the CLI signs requests for")
    # strict=False only to accept YAML lists as tuples (items stay strict strings).
    buckets: tuple[str, ...] = Field(
        (), strict=False, description="the only buckets its Files may name (default: any)"
    )
    credentials: StoreCredentials | None = Field(
        None, description="by reference; none: the CLI's own on the site"
    )

    @field_validator("endpoint_url")
    @classmethod
    def _check_endpoint(cls, url: str | None) -> str | None:
        if url is not None and not _ENDPOINT.match(url):
            raise ValueError(f"{shown(url)} is not an http(s) URL such as https://s3.example.org")
        return url

    @field_validator("region")
    @classmethod
    def _check_region(cls, region: str) -> str:
        if not _REGION.match(region):
            raise ValueError(f"{shown(region)} is not a region such as us-east-1")
        return region

    @field_validator("buckets")
    @classmethod
    def _check_buckets(cls, buckets: tuple[str, ...]) -> tuple[str, ...]:
        for bucket in buckets:
            if not _BUCKET.match(bucket):
                raise ValueError(f"{shown(bucket)} is not an S3 bucket name")
        return buckets

    def refused_bucket(self, bucket: str) -> str | None:
        """Why a File may not name `bucket` here, or None."""
        if not self.buckets or bucket in self.buckets:
            return None
        return f"bucket {bucket!r} is not one of the site's object_store buckets"


@dataclass(frozen=True)
class AccessKeys:
    """The keys read on the controller; never shown (`repr=False`)."""

    key_id: str = field(repr=False)
    secret: str = field(repr=False)
    token: str | None = field(default=None, repr=False)

    def credentials_file(self) -> bytes:
        """The AWS shared credentials file the site's CLI reads (profile `default`)."""
        lines = ["[default]", f"aws_access_key_id = {self.key_id}"]
        lines.append(f"aws_secret_access_key = {self.secret}")
        if self.token is not None:
            lines.append(f"aws_session_token = {self.token}")
        return ("\n".join(lines) + "\n").encode()


def read_keys(credentials: StoreCredentials) -> AccessKeys:
    """The keys a site's credentials refer to, read now; CredentialsError names what is
    missing, never a value."""
    if credentials.env is not None:
        env = credentials.env
        token = _from_env(env.session_token) if env.session_token else None
        return _checked(_from_env(env.access_key_id), _from_env(env.secret_access_key), token)
    assert credentials.file is not None  # the model holds one of the two
    return _from_file(Path(credentials.file).expanduser(), credentials.profile or "default")


def _from_env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise CredentialsError(f"${name} is not set on this machine (object_store credentials)")
    return value


def _from_file(path: Path, profile: str) -> AccessKeys:
    text = read_user_text(path, "credentials file", CredentialsError, MAX_CREDENTIALS_BYTES)
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error:
        raise CredentialsError(f"{path}: not an AWS credentials file (INI sections)") from None
    if not parser.has_section(profile):
        raise CredentialsError(f"{path}: no [{profile}] section (object_store credentials)")
    section = parser[profile]
    for key in ("aws_access_key_id", "aws_secret_access_key"):
        if not section.get(key, "").strip():
            raise CredentialsError(f"{path}: [{profile}] has no {key}")
    token = section.get("aws_session_token", "").strip() or None
    return _checked(
        section["aws_access_key_id"].strip(), section["aws_secret_access_key"].strip(), token
    )


def _checked(key_id: str, secret: str, token: str | None) -> AccessKeys:
    for what, value in (("key id", key_id), ("secret key", secret), ("session token", token)):
        if value is not None and not _SECRET_VALUE.match(value):
            raise CredentialsError(
                f"the object_store {what} holds spaces or control characters (not shown)"
            )
    return AccessKeys(key_id, secret, token)


def worker_environment(store: ObjectStore, credentials_file: str | None) -> dict[str, str | None]:
    """What the CLI's environment gets on the worker (None: the variable is removed): the
    endpoint, the region and, when the keys were shipped, the file holding them, which
    nothing in the worker's own environment may override (paths and URLs, no secret)."""
    environment: dict[str, str | None] = {
        "AWS_DEFAULT_REGION": store.region,
        "AWS_REGION": store.region,
    }
    if store.endpoint_url is not None:
        environment["AWS_ENDPOINT_URL"] = store.endpoint_url
    if credentials_file is not None:
        environment.update(dict.fromkeys(SHADOWING_VARIABLES))
        # Both files: the site user's own ~/.aws/config must not pick other keys.
        environment["AWS_SHARED_CREDENTIALS_FILE"] = credentials_file
        environment["AWS_CONFIG_FILE"] = credentials_file
    return environment


#: The models of the key, by the key that holds each (for "did you mean" hints).
STORE_MODELS: dict[str, type[BaseModel]] = {
    "object_store": ObjectStore,
    "credentials": StoreCredentials,
}
