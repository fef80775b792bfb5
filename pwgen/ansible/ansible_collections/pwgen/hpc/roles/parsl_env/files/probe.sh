#!/bin/sh
# pwgen.hpc.parsl_env's probe of a site (tasks/preflight.yml runs it with `raw`, see
# __parsl_env_probe_command in vars/main.yml): prints the site's home, CPU, glibc,
# interpreter, and the envs already installed (by lock hash: conda or venv, sha1 of
# bin/pwgen-activate), as JSON on its last line. POSIX sh; read-only.
# Arguments: the env prefix (may start with ~), the conda prefix, then interpreter
# candidates (the first found on PATH is used).
prefix=$1 conda=$2
shift 2
case $prefix in "~" | "~/"*) prefix=$HOME${prefix#"~"} ;; esac
case $conda in "~" | "~/"*) conda=$HOME${conda#"~"} ;; esac
glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null) || glibc=
python= version= venv=false
for candidate in "$@"; do
  if found=$(command -v "$candidate" 2>/dev/null); then python=$found; break; fi
done
if [ -n "$python" ]; then
  # One interpreter start: its major.minor, then "venv" if it can create venvs.
  info=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2], end=" "); import ensurepip, venv; print("venv")' 2>/dev/null)
  version=${info%% *}
  case $info in *venv) venv=true ;; esac
fi
installed= sep=
for marker in "$prefix"/*/.pwgen-lock; do
  [ -f "$marker" ] || continue
  dir=${marker%/.pwgen-lock}
  read -r held < "$marker" || true
  [ "$held" = "${dir##*/}" ] || continue
  sum=$(sha1sum < "$dir/bin/pwgen-activate" 2>/dev/null) || sum=
  if [ -d "$dir/conda-meta" ]; then kind=conda; else kind=venv; fi
  installed="$installed$sep\"$held\": {\"kind\": \"$kind\", \"activate\": \"${sum%% *}\"}"; sep=", "
done
if [ -x "$conda/bin/conda" ]; then has_conda=true; else has_conda=false; fi
printf '{"home": "%s", "prefix": "%s", "conda_prefix": "%s", "arch": "%s", "glibc": "%s", ' \
  "$HOME" "${prefix%/}" "${conda%/}" "$(uname -m)" "${glibc#glibc }"
printf '"python": "%s", "python_version": "%s", "venv": %s, "conda": %s, "installed": { %s }}\n' \
  "$python" "$version" "$venv" "$has_conda" "$installed"
