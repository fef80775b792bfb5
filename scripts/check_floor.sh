#!/usr/bin/env bash
# Prove the dependency floors in pyproject.toml: a scratch virtualenv with the oldest
# Parsl and typer that pyproject allows (read from its `name>=X` bounds), then
# pwgen's internals check and the Parsl- and CLI-heavy offline tests against them.
#
#   bash scripts/check_floor.sh                 # the floors pyproject declares
#   PARSL=2026.1.5 bash scripts/check_floor.sh  # another version pyproject allows
#
# Needs PyPI (or the pip cache) for the pinned versions; about 3 minutes with a warm
# cache. FLOOR_VENV names the virtualenv (default /tmp/pwgen-floor-venv, reused).
set -euo pipefail
cd "$(dirname "$0")/.."

# The version after `name>=` in pyproject's dependencies (the declared floor).
floor() {
  python3 - "$1" <<'EOF'
import re, sys, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
for dep in deps:
    found = re.match(rf"{re.escape(sys.argv[1])}\s*>=\s*([^,;\s]+)", dep)
    if found:
        print(found.group(1))
        break
else:
    sys.exit(f"check_floor.sh: no '{sys.argv[1]}>=' bound in pyproject.toml")
EOF
}

PARSL=${PARSL:-$(floor parsl)}
TYPER=${TYPER:-$(floor typer)}
VENV=${FLOOR_VENV:-/tmp/pwgen-floor-venv}
PYTHON=${PYTHON:-python3}

[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip
"${pip[@]}" install -e ".[monitoring]" "parsl==$PARSL" "typer==$TYPER" pytest hypothesis psutil pillow
"${pip[@]}" check
echo "check_floor.sh: parsl $PARSL, typer $TYPER in $VENV"

"$VENV/bin/python" -c 'from pwgen.parsl_checks import check_parsl_internals as c; c()'
"$VENV/bin/python" -m pytest -q -p no:cacheprovider -m "not lab" \
  tests/test_parsl_internals.py tests/test_run_local.py tests/test_staging.py \
  tests/test_streams.py tests/test_failover.py tests/test_cli.py
# The command line's usage errors (typer's exceptions): one line, exit code 2.
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_bad_inputs.py -k cli
