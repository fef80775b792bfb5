#!/bin/sh
# pwgen.hpc.flux's probe of a site (tasks/preflight.yml runs it as `sh -c`). Read-only.
# Prints, as JSON on its last line: the env (conda or not, its Python's major.minor and
# site-packages, which of Flux's binding imports it lacks), the conda binary, the Flux at
# the prefix (its version, its build marker, the Pythons it has bindings for) and, for
# the source method while the prefix is not built yet, the build dependencies missing.
# Arguments: method, prefix, env, conda binary, build Python, tarball sha256 (paths may
# start with ~).
method=$1 prefix=$2 env=$3 conda=$4 build_python=$5 sha256=$6
expand() { case $1 in "~" | "~/"*) printf '%s' "$HOME${1#"~"}" ;; *) printf '%s' "$1" ;; esac; }
prefix=$(expand "$prefix") env=$(expand "$env") conda=$(expand "$conda")
if [ -d "$env" ]; then env_exists=true; else env_exists=false; fi
if [ -d "$env/conda-meta" ]; then conda_env=true; else conda_env=false; fi
if [ -x "$conda" ]; then has_conda=true; else has_conda=false; fi

# One interpreter start: major.minor, site-packages, the binding imports it cannot find.
python_info='import importlib.util as u, sys, sysconfig
missing = [m for m in ("cffi", "yaml", "ply") if u.find_spec(m) is None]
print("%d.%d" % sys.version_info[:2], sysconfig.get_paths()["purelib"], ",".join(missing) or "-")'
env_python= env_purelib= env_missing=
if [ -x "$env/bin/python" ]; then
  info=$(PYTHONNOUSERSITE=1 "$env/bin/python" -c "$python_info" 2>/dev/null) || info=
  env_python=${info%% *} info=${info#* }
  env_purelib=${info% *} env_missing=${info##* }
  [ "$env_missing" = - ] && env_missing=
fi

flux= built= bindings= sep=
if [ -x "$prefix/bin/flux" ]; then
  flux=$("$prefix/bin/flux" version 2>/dev/null | sed -n 's/^commands:[[:space:]]*//p') || flux=
fi
[ -f "$prefix/.pwgen-flux-built" ] && read -r built < "$prefix/.pwgen-flux-built"
# A prefix that holds something pwgen did not build there is never removed or built into.
foreign=false
if [ -d "$prefix" ] && [ -n "$(ls -A "$prefix" 2>/dev/null)" ] &&
  [ ! -f "$prefix/.pwgen-flux-built" ] && [ ! -f "$prefix/.pwgen-flux-building" ]; then
  foreign=true
fi
for dir in "$prefix"/lib/python*/site-packages/flux; do
  [ -d "$dir" ] || continue
  version=${dir%/site-packages/flux}
  bindings="$bindings$sep\"${version##*/python}\""; sep=", "
done

# Build dependencies, only where a build is coming: each missing one with its Debian package.
missing= msep=
need() { missing="$missing$msep\"$1\""; msep=", "; }
if [ "$method" = source ] && [ "$built" != "$sha256" ]; then
  command -v make > /dev/null 2>&1 || need "make (make)"
  command -v cc > /dev/null 2>&1 || command -v gcc > /dev/null 2>&1 || need "a C compiler (gcc)"
  if command -v pkg-config > /dev/null 2>&1; then
    for module in libzmq:libzmq3-dev jansson:libjansson-dev hwloc:libhwloc-dev \
      liblz4:liblz4-dev sqlite3:libsqlite3-dev uuid:uuid-dev ncursesw:libncurses-dev \
      libarchive:libarchive-dev; do
      pkg-config --exists "${module%%:*}" || need "${module%%:*} (${module#*:})"
    done
  else
    need "pkg-config (pkg-config)"
  fi
  lua=
  for candidate in lua5.1 lua5.2 lua5.3 lua5.4 lua; do
    if command -v "$candidate" > /dev/null 2>&1; then lua=$candidate; break; fi
  done
  if [ -z "$lua" ]; then
    need "lua (lua5.1, liblua5.1-0-dev)"
  elif ! "$lua" -l posix -e '' > /dev/null 2>&1; then
    need "the Lua posix module (lua-posix)"
  fi
  wanted=$build_python
  build_python=$(command -v "$build_python" 2>/dev/null) || build_python=
  if [ -z "$build_python" ]; then
    need "the build Python $wanted (python3)"
  else
    header=$("$build_python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null)
    [ -f "$header/Python.h" ] || need "Python.h for $build_python (python3-dev)"
    for module in cffi:python3-cffi yaml:python3-yaml ply:python3-ply; do
      "$build_python" -c "import ${module%%:*}" > /dev/null 2>&1 ||
        need "the Python module ${module%%:*} for $build_python (${module#*:})"
    done
  fi
fi
printf '{"prefix": "%s", "env": "%s", "env_exists": %s, "conda_env": %s, "conda": "%s", "has_conda": %s, ' \
  "${prefix%/}" "${env%/}" "$env_exists" "$conda_env" "$conda" "$has_conda"
printf '"env_python": "%s", "env_purelib": "%s", "env_missing": "%s", ' \
  "$env_python" "$env_purelib" "$env_missing"
printf '"flux": "%s", "built": "%s", "foreign": %s, "bindings": [%s], "build_missing": [%s], "cpus": %s}\n' \
  "$flux" "$built" "$foreign" "$bindings" "$missing" "$(nproc 2>/dev/null || echo 1)"
