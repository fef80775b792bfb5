"""Installing Flux on a site: sites.yaml `flux:`, its inventory variables, the Flux facts.

Fast: `flux:` of each method validated in one line; what `pwgen inventory` gives a flux
site (the role's `pwgen_flux_*` variables, the packages Flux's bindings import added to
the env's lock); the facts module's Flux parsers, and the whole Flux fact from a fake
prefix and canned `flux version` / `scontrol show config` output.

Lab (marked `lab`, root): the Molecule scenario `flux_install` (molecule/README.md), one
2-site lab provisioned by pwgen.hpc.provision: a system site on the machine's Flux build
and a source site that builds the shared tarball into its user's prefix (about 4 minutes:
once for this module), the second converge idempotent, then the facts, the env's imports
and a Flux instance on a compute node. Under CI (CI=true) a missing tarball fails it.
"""

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from facts_samples import module_facts
from helpers import REPO, run_tool
from lab_helpers import flux_tarball, molecule_labs_down

from pwgen.ansible.ansible_collections.pwgen.hpc.plugins.module_utils import (
    site_facts_env as utils_env,
)
from pwgen.ansible.ansible_collections.pwgen.hpc.plugins.module_utils import (
    site_facts_flux as utils_flux,
)
from pwgen.errors import SitesError
from pwgen.facts import validate_facts
from pwgen.inventory import site_hostvars
from pwgen.siteflux import FLUX_PYTHON_PACKAGES, with_flux_packages
from pwgen.sites import parse_sites

SHA256 = "b3e510787bc1d5901de31598d6c5596a6548b4ff3ec374bbf86431f4883cf14b"
SOURCE = f"{{method: source, version: 0.88.0, tarball: /srv/flux.tar.gz, sha256: {SHA256}}}"


def _site(flux: str, extra: str = "") -> str:
    return (
        "sites:\n  - {label: f, scheduler: slurm, host: h, executor: flux, "
        f"flux: {flux}{extra}}}\n"
    )


# ---------------------------------------------------------------- sites.yaml and inventory


@pytest.mark.parametrize(
    ("flux", "expected"),
    [
        ("{method: system, path: /opt/flux}", "method system needs the flux-core version"),
        ("{method: source, version: 0.88.0}", "method source needs a tarball to build"),
        (
            "{method: source, version: 0.88.0, tarball: /f.tar.gz}",
            "method source needs the tarball's sha256 (sha256)",
        ),
        ("{method: source, tarball: /f.tar.gz, sha256: " + SHA256 + "}", "needs the flux-core"),
        (SOURCE.replace(SHA256, "ABC"), "'ABC' is not a sha256"),
        (SOURCE.replace("/srv/flux.tar.gz", "flux.tar.gz"), "'flux.tar.gz' is not an absolute"),
        (SOURCE.replace("/srv/flux.tar.gz", "http://x/f.tar.gz"), "a URL must be https://"),
        ("{method: system, version: 0.88.0, path: /p, sha256: " + SHA256 + "}", "sha256 is not"),
        ("{method: conda, sha256: " + SHA256 + "}", "sha256 is not used by method conda"),
    ],
)
def test_bad_flux_of_each_method_is_one_line(flux: str, expected: str) -> None:
    with pytest.raises(SitesError) as caught:
        parse_sites(_site(flux), source="s.yaml")
    message = str(caught.value)
    assert expected in message and "\n" not in message and message.startswith("s.yaml:")


def test_inventory_gives_a_flux_site_the_role_variables_and_the_bindings_packages() -> None:
    (source,) = parse_sites(_site(SOURCE.replace("/srv/flux.tar.gz", "~/f.tar.gz")))
    hostvars = site_hostvars(source)
    assert {k: v for k, v in hostvars.items() if k.startswith("pwgen_flux_")} == {
        "pwgen_flux_method": "source",
        "pwgen_flux_version": "0.88.0",
        "pwgen_flux_tarball": str(Path.home() / "f.tar.gz"),  # expanded here, the controller
        "pwgen_flux_sha256": SHA256,
    }
    assert hostvars["pwgen_env_extra_packages"] == list(FLUX_PYTHON_PACKAGES)
    url = SOURCE.replace("/srv/flux.tar.gz", "https://x.org/f.tar.gz")
    assert (
        site_hostvars(parse_sites(_site(url))[0])["pwgen_flux_tarball"] == "https://x.org/f.tar.gz"
    )
    # No `flux:` key: conda, the role's default version; the site's own pin of a package wins.
    (plain,) = parse_sites(_site("null", ", env: {extra_packages: ['PyYAML==6.0.1', numpy]}"))
    plain_vars = site_hostvars(plain)
    assert plain_vars["pwgen_flux_method"] == "conda" and "pwgen_flux_version" not in plain_vars
    assert plain_vars["pwgen_env_extra_packages"] == ["PyYAML==6.0.1", "numpy", "cffi", "ply"]
    (htex,) = parse_sites(_site("null").replace("executor: flux, flux: null", "executor: htex"))
    assert "pwgen_flux_method" not in site_hostvars(htex)
    assert site_hostvars(htex)["pwgen_env_extra_packages"] == []
    assert with_flux_packages(["cffi>=1.15"]) == ["cffi>=1.15", "pyyaml", "ply"]


# ---------------------------------------------------------------- the Flux facts

SCONTROL_CONFIG = """Configuration data as of 2026-12-04T23:00:00
AccountingStorageType   = (null)
MpiDefault              = none
MpiParams               = (null)
"""
FLUX_VERSION = """commands:    		0.88.0
libflux-core:		0.88.0
build-options:		+hwloc==2.9.0+zmq==4.3.4
"""


def test_flux_parsers() -> None:
    assert utils_flux.parse_flux_version(FLUX_VERSION) == "0.88.0"
    assert utils_flux.parse_flux_version("flux: command not found") is None
    assert utils_flux.parse_mpi_default(SCONTROL_CONFIG) == "none"
    assert utils_flux.parse_mpi_default("MpiDefault = pmi2\n") == "pmi2"
    assert utils_flux.parse_mpi_default("MpiParams = (null)\n") is None
    assert utils_flux.srun_args("none") == ["--mpi=pmi2"]
    assert utils_flux.srun_args("pmix") == ["--mpi=pmi2"]
    assert utils_flux.srun_args(None) == ["--mpi=pmi2"]  # unknown: ask for it
    assert utils_flux.srun_args("pmi2") == []
    assert utils_flux.prefix_of_bindings("/opt/f/lib/python3.11/site-packages") == "/opt/f"
    assert utils_flux.prefix_of_bindings("/opt/f/lib64/python3.12/site-packages/") == "/opt/f"
    assert utils_flux.prefix_of_bindings("/opt/f/site-packages") is None


def _prefix(tmp_path: Path) -> tuple[Path, str]:
    """A Flux prefix with an executable bin/flux, and where its bindings' flux/ would be."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "flux").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "flux").chmod(0o755)
    origin = tmp_path / "lib" / "python3.11" / "site-packages" / "flux" / "__init__.py"
    return tmp_path, str(origin)


def test_flux_facts_from_a_prefix_and_slurm(tmp_path: Path) -> None:
    prefix, origin = _prefix(tmp_path)
    outputs = {"version": (0, FLUX_VERSION, ""), "show": (0, SCONTROL_CONFIG, "")}
    commands: list[list[str]] = []

    def run(argv: list[str]) -> tuple[int, str, str]:
        commands.append(argv)
        return outputs[argv[1]]

    warnings: list[str] = []
    facts = utils_flux.flux_facts(run, origin, "/usr/bin/scontrol", warnings.append)
    assert facts == {
        "version": "0.88.0",
        "prefix": str(prefix),
        "command": str(prefix / "bin" / "flux"),
        "bindings": str(prefix / "lib" / "python3.11" / "site-packages"),
        "mpi_default": "none",
        "srun_args": ["--mpi=pmi2"],
    }
    assert commands == [
        [str(prefix / "bin" / "flux"), "version"],
        ["/usr/bin/scontrol", "show", "config"],
    ]
    assert warnings == []
    # The facts model reads it (what the config generator gets).
    read = validate_facts(module_facts("s1", flux=facts), "x").flux
    assert read is not None and read.srun_args == ["--mpi=pmi2"] and read.version == "0.88.0"
    # No flux package in the env: no fact, no command run.
    assert utils_flux.flux_facts(run, None, "/usr/bin/scontrol", warnings.append) is None
    assert len(commands) == 2


def test_flux_facts_when_commands_fail_or_are_missing(tmp_path: Path) -> None:
    prefix, origin = _prefix(tmp_path)

    def failing(argv: list[str]) -> tuple[int, str, str]:
        return 1, "", f"{argv[0]}: broken"

    warnings: list[str] = []
    facts = utils_flux.flux_facts(failing, origin, "/usr/bin/scontrol", warnings.append)
    assert facts is not None
    assert (facts["version"], facts["mpi_default"], facts["srun_args"]) == (
        None,
        None,
        ["--mpi=pmi2"],
    )
    assert any("reports no version" in w for w in warnings)
    assert any("gave no MpiDefault" in w for w in warnings)
    # PBS (no scontrol): no bootstrap facts. Bindings with no flux command next to them.
    (prefix / "bin" / "flux").unlink()
    warnings.clear()
    pbs = utils_flux.flux_facts(failing, origin, None, warnings.append)
    assert pbs is not None and pbs["command"] is None and pbs["srun_args"] is None
    assert "no flux command next to it" in warnings[0]


def test_env_probe_reports_where_the_env_finds_flux(tmp_path: Path) -> None:
    """The env facts' Python probe, run by this Python with a fake `flux` on its path."""
    site_packages = tmp_path / "prefix" / "lib" / "python3.11" / "site-packages"
    (site_packages / "flux").mkdir(parents=True)
    (site_packages / "flux" / "__init__.py").write_text("")
    bin_dir = tmp_path / "env" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text(
        f'#!/bin/sh\nPYTHONPATH={site_packages} exec {sys.executable} "$@"\n'
    )
    (bin_dir / "python").chmod(0o755)

    def run(argv: list[str]) -> tuple[int, str, str]:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        return done.returncode, done.stdout, done.stderr

    probed: dict[str, Any] = {}
    utils_env.env_facts(run, str(tmp_path / "env"), lambda _: None, probed)
    assert probed["flux"] == str(site_packages / "flux" / "__init__.py")


# ---------------------------------------------------------------- the lab (Molecule)


@pytest.mark.lab
def test_molecule_flux_install_system_and_source() -> None:
    tarball = flux_tarball()
    left = molecule_labs_down()
    assert not left, f"a Molecule lab is up and has no state to take it down: {left}"
    started = time.monotonic()
    bin_dir = Path(sys.executable).parent
    result = run_tool(
        [str(bin_dir / "molecule"), "test", "-s", "flux_install"],
        REPO,
        timeout=1800,
        PWGEN_FLUX_TARBALL=str(tarball),
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-12000:]
    # The source site was built in converge; idempotence (which fails on any change) ran.
    assert "TASK [pwgen.hpc.flux : Configure, build and install flux-core" in output
    assert "idempotence" in output
    print(f"molecule test -s flux_install: {time.monotonic() - started:.0f} s")
