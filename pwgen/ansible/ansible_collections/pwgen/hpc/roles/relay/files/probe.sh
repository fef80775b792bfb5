#!/bin/sh
# pwgen.hpc.relay's probe of a site (tasks/preflight.yml runs it with `raw`, see
# __relay_probe_command in vars/main.yml). Read-only.
# Prints, as one JSON line, the env's Python (null when there is none), its bin/ and
# pure-lib site-packages directories, and the sha256 and mode of the relay and of the
# helpers module installed there (null when missing). Argument: the env (may start with ~).
env=$1
case $env in "~" | "~/"*) env=$HOME${env#"~"} ;; esac
python=${env%/}/bin/python
if [ -z "$env" ] || [ ! -x "$python" ]; then
  echo '{"python": null}'
  exit 0
fi
exec "$python" -I - "$python" <<'PY'
import hashlib, json, os, sys, sysconfig

def installed(path):
    try:
        with open(path, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
        return {"sha256": digest, "mode": "%04o" % (os.stat(path).st_mode & 0o7777)}
    except OSError:
        return None

python = sys.argv[1]
bin_dir = os.path.dirname(python)
purelib = sysconfig.get_paths()["purelib"]
print(json.dumps({
    "python": python,
    "bin": bin_dir,
    "purelib": purelib,
    "relay": installed(os.path.join(bin_dir, "pwgen-relay")),
    "worker": installed(os.path.join(purelib, "pwgen_worker.py")),
}))
PY

