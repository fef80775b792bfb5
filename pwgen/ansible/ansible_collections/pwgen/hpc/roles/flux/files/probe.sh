#!/bin/sh
# pwgen.hpc.flux's probe of a site (tasks/preflight.yml runs it as `sh -c`). Read-only.
# Prints whether the env is a conda env, the conda binary, and the installed flux-core, as
# JSON. Arguments: the env path and the conda binary (either may start with ~).
env=$1 conda=$2
case $env in "~" | "~/"*) env=$HOME${env#"~"} ;; esac
case $conda in "~" | "~/"*) conda=$HOME${conda#"~"} ;; esac
if [ -d "$env" ]; then env_exists=true; else env_exists=false; fi
if [ -d "$env/conda-meta" ]; then conda_env=true; else conda_env=false; fi
if [ -x "$conda" ]; then has_conda=true; else has_conda=false; fi
flux=
if [ -x "$env/bin/flux" ]; then
  flux=$("$env/bin/flux" version 2>/dev/null | sed -n 's/^commands:[[:space:]]*//p') || flux=
fi
printf '{"env": "%s", "env_exists": %s, "conda_env": %s, "conda": "%s", "has_conda": %s, "flux": "%s"}\n' \
  "${env%/}" "$env_exists" "$conda_env" "$conda" "$has_conda" "$flux"

