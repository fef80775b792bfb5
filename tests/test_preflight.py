"""The preflight started before Parsl is imported (pwgen.preflight.start_preflight).

Fast, no lab: this Parsl's version as the sites' probe reads it; a run of local sites
only has nothing to probe; a site never provisioned fails the future with one line.
The live preflight (versions compared over ssh, a changed Parsl refused) is tested on
the lab in tests/test_run_remote.py.
"""

import subprocess
import sys
from pathlib import Path

import parsl
import pytest

from pwgen.errors import PwgenError
from pwgen.preflight import controller_versions, start_preflight
from pwgen.sites import Site


def test_controller_versions_read_parsl_without_importing_it() -> None:
    assert controller_versions()[0] == parsl.__version__
    code = (
        "import sys; from pwgen.preflight import controller_versions; "
        "v = controller_versions(); print(v[0], 'parsl' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == [parsl.__version__, "False"]


def test_local_sites_have_nothing_to_probe(tmp_path: Path) -> None:
    done = start_preflight([Site(label="here", scheduler="local")], tmp_path, [], True).result(10)
    assert (done.ssh, done.versions, done.seconds) == (None, [], 0.0)


def test_a_site_never_provisioned_fails_the_future_in_one_line(tmp_path: Path) -> None:
    """No pinned host key: refused before any ssh runs (pwgen.ssh.trust)."""
    site = Site(label="far", scheduler="slurm", host="127.0.0.1", port=1)
    future = start_preflight([site], tmp_path / ".pwgen", [], True)
    with pytest.raises(PwgenError) as caught:
        future.result(30)
    message = str(caught.value)
    assert "\n" not in message and "site 'far': no pinned host key" in message
