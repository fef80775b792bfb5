"""A real S3 API for the tests: moto's server, with IAM checks of every request.

moto accepts any key unless `INITIAL_NO_AUTH_ACTION_COUNT` is set: after that many
requests it checks each one's SigV4 signature against the keys of its IAM users (a
wrong secret fails as on AWS). `setup` spends the unchecked requests on making a user,
its keys and its policy, then makes the bucket as that user.

Also a script, run where the server is reachable (inside a lab node's namespace):

    python s3_server.py setup ENDPOINT BUCKET      -> {"key_id": ..., "secret": ...}
    python s3_server.py put ENDPOINT KEYS FILE URL  (KEYS: a JSON file as setup prints)
    python s3_server.py sha256 ENDPOINT KEYS URL    -> hex digest of the object
"""

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

#: Requests moto serves without checking keys: create user, access key, user policy.
UNCHECKED_REQUESTS = 3
REGION = "us-east-1"


def start(prefix: Sequence[str], host: str, port: int, log: str) -> "subprocess.Popen[bytes]":
    """moto's server on host:port (after the argv `prefix`, e.g. nsenter), logging to `log`."""
    server = os.path.join(os.path.dirname(sys.executable), "moto_server")
    environment = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(UNCHECKED_REQUESTS)}
    with open(log, "wb") as handle:
        return subprocess.Popen(
            [*prefix, server, "-H", host, "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=environment,
        )


def client(service: str, endpoint: str, keys: dict[str, str]) -> Any:
    import boto3  # type: ignore[import-untyped]

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=keys["key_id"],
        aws_secret_access_key=keys["secret"],
    )


def setup(endpoint: str, bucket: str) -> dict[str, str]:
    """An IAM user allowed everything, its keys, and `bucket` made with them."""
    iam = client("iam", endpoint, {"key_id": "bootstrap", "secret": "bootstrap"})
    iam.create_user(UserName="pwgen")
    made = iam.create_access_key(UserName="pwgen")["AccessKey"]
    statement = {"Effect": "Allow", "Action": "*", "Resource": "*"}
    policy = {"Version": "2012-10-17", "Statement": [statement]}
    iam.put_user_policy(UserName="pwgen", PolicyName="all", PolicyDocument=json.dumps(policy))
    keys = {"key_id": made["AccessKeyId"], "secret": made["SecretAccessKey"]}
    client("s3", endpoint, keys).create_bucket(Bucket=bucket)
    return keys


def _split(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


def put(endpoint: str, keys: dict[str, str], path: str, url: str) -> None:
    client("s3", endpoint, keys).upload_file(path, *_split(url))


def sha256(endpoint: str, keys: dict[str, str], url: str) -> str:
    body = client("s3", endpoint, keys).get_object(Bucket=_split(url)[0], Key=_split(url)[1])
    digest = hashlib.sha256()
    for chunk in body["Body"].iter_chunks(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def main(argv: list[str]) -> None:
    command, endpoint, *rest = argv
    if command == "setup":
        print(json.dumps(setup(endpoint, rest[0])))
        return
    with open(rest[0]) as handle:
        keys = json.load(handle)
    if command == "put":
        put(endpoint, keys, rest[1], rest[2])
    elif command == "sha256":
        print(sha256(endpoint, keys, rest[1]))


if __name__ == "__main__":
    main(sys.argv[1:])
