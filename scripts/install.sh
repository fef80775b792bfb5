#!/usr/bin/env bash
# Install pwgen and everything it needs on Debian 12, as root: system packages
# (apt-get, skipped when already present), then a virtualenv in .venv with pwgen
# and its dev tools. Safe to run again; the second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

# Python for the controller; OpenSSH, Slurm, munge and friends for the lab sites;
# OpenMPI, MPICH and a C compiler for MPI programs on them (pwgen/lab/system.py lists the same);
# librsvg2-bin for the tests only (they render `pwgen status --plot` to PNG to look at it).
PACKAGES=(
  python3 python3-venv python3-pip git ca-certificates iproute2 procps
  openssh-server openssh-client slurm-wlm slurmctld slurmd slurm-client munge rsync autossh
  openmpi-bin libopenmpi-dev mpich libmpich-dev gcc librsvg2-bin
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install.sh: run as root to install: ${missing[*]}" >&2
    exit 2
  fi
  echo "install.sh: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The controller's Python: the first python3 on PATH, which must be 3.11 or newer.
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "install.sh: $PYTHON is $("$PYTHON" -V 2>&1); pwgen needs Python 3.11 or newer" >&2
  exit 2
}
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,monitoring]'
echo "install.sh: pwgen installed in .venv ($(.venv/bin/pwgen --version))"
