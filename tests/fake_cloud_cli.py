#!/usr/bin/env python3
"""A stand-in for the gs:// CLIs (`gcloud`, `gsutil`), for tests: no GCS server runs
here, so "buckets" are directories next to this script. (s3:// meets a real S3 API,
moto's server, and the real `aws` CLI: tests/s3_server.py.)

Installed on a site as `<dir>/bin/fake_cloud_cli.py` with `gcloud` and `gsutil` linked
to it (`<dir>/bin` on the workers' PATH); it acts as the name it is called by:

    gcloud storage cp SRC DST      gcloud storage rsync --recursive SRC DST
    gsutil cp SRC DST              gsutil -m rsync -r SRC DST

`gs://bucket/key` is `<dir>/store/gs/bucket/key`. Every call is
appended to `<dir>/calls.log` as a JSON list (the name, then its arguments), so a
test can check the command lines it was given. A missing object fails as the real
CLI does (exit 1, its kind of message on stderr); anything else it does not know
exits 2. Stdlib only: it runs with the site's python3.
"""

import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
STORE = os.path.join(HERE, "store")

USAGE = {
    "gcloud": {("storage", "cp"): False, ("storage", "rsync", "--recursive"): True},
    "gsutil": {("cp",): False, ("-m", "rsync", "-r"): True},
}
NOT_FOUND = {
    "gcloud": "ERROR: (gcloud.storage.cp) The following URLs matched no objects or files:\n-{url}",
    "gsutil": "CommandException: No URLs matched: {url}",
}


def local(path: str) -> str:
    """The store path of a URL, or the path itself."""
    if path.startswith("gs://"):
        return os.path.join(STORE, "gs", path.removeprefix("gs://"))
    return path


def main() -> int:
    name = os.path.basename(sys.argv[0])
    args = sys.argv[1:]
    with open(os.path.join(HERE, "calls.log"), "a") as log:
        log.write(json.dumps([name, *args]) + "\n")
    for verb, recursive in USAGE.get(name, {}).items():
        if tuple(args[: len(verb)]) == verb and len(args) == len(verb) + 2:
            source, destination = args[len(verb) :]
            return copy(name, source, destination, recursive)
    print(f"{name}: fake: unknown command line {args}", file=sys.stderr)
    return 2


def copy(name: str, source: str, destination: str, recursive: bool) -> int:
    src, dst = local(source), local(destination.rstrip("/") if recursive else destination)
    if not os.path.exists(src) or os.path.isdir(src) != recursive:
        print(NOT_FOUND[name].format(url=source), file=sys.stderr)
        return 1
    if recursive:
        shutil.copytree(src, dst, dirs_exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        shutil.copyfile(src, dst)
    print(f"copy: {source} to {destination}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
