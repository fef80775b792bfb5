"""Site models and sites.yaml loading: valid files, every kind of bad input, fuzzing."""

import contextlib
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pwgen.errors import SitesError
from pwgen.sites import Site, load_sites, parse_sites

VALID = """\
sites:
  - label: cluster_a
    scheduler: slurm
    host: 10.0.0.5
    user: alice
    partition: compute
    walltime: 02:30:00          # YAML 1.1 reads this as an integer
    worker_init: |
      module load python
      export OMP_NUM_THREADS=1
    env:
      method: venv
      extra_packages: [numpy]
  - label: laptop
    scheduler: local
    executor: mpi
"""


def test_valid_file_loads_every_field(tmp_path: Path) -> None:
    path = tmp_path / "sites.yaml"
    path.write_text(VALID)
    cluster, laptop = load_sites(path)
    assert cluster.label == "cluster_a" and cluster.scheduler == "slurm"
    assert (cluster.host, cluster.user, cluster.port) == ("10.0.0.5", "alice", 22)
    assert cluster.walltime == "02:30:00"
    assert cluster.worker_init == ("module load python", "export OMP_NUM_THREADS=1")
    assert cluster.env.method == "venv" and cluster.env.extra_packages == ("numpy",)
    assert laptop.is_local and laptop.executor == "mpi" and laptop.env.method == "wheelhouse"


def _error(text: str) -> str:
    with pytest.raises(SitesError) as caught:
        parse_sites(text, source="s.yaml")
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sites: [\n", "s.yaml:2:1: YAML syntax error"),
        (
            "sites:\n  - label: a\n    scheduler: local\n    colour: red\n",
            "s.yaml:4: sites[0].colour: unknown key 'colour'",
        ),
        (
            "sites:\n  - label: a\n    scheduler: slurm\n    host: h\n    partiton: x\n",
            "did you mean 'partition'?",
        ),
        (
            "sites:\n  - label: a\n    scheduler: slurm\n    host: h\n    port: '22'\n",
            "s.yaml:5: sites[0].port: Input should be a valid integer (got '22')",
        ),
        (
            "sites:\n  - label: a\n    scheduler: local\n    max_blocks: true\n",
            "sites[0].max_blocks",
        ),
        (
            "sites:\n  - {label: a, scheduler: local}\n  - {label: a, scheduler: local}\n",
            "s.yaml:3: sites[1].label: duplicate label 'a' (also sites[0])",
        ),
        ("sites:\n  - {label: 2fast, scheduler: local}\n", "'2fast' is not a valid label"),
        ("sites:\n  - {label: my-site, scheduler: local}\n", "'my-site' is not a valid label"),
        ("sites:\n  - {label: class, scheduler: local}\n", "'class' is not a valid label"),
        ("sites:\n  - {label: sites, scheduler: local}\n", "reserved"),
        (
            "sites:\n  - {label: a, scheduler: sge}\n",
            "sites[0].scheduler: Input should be 'slurm', 'pbspro' or 'local' (got 'sge')",
        ),
        (
            "sites:\n  - {label: a, scheduler: local, executor: dask}\n",
            "sites[0].executor: Input should be 'htex', 'mpi' or 'flux' (got 'dask')",
        ),
        ("sites:\n  - {label: a, scheduler: local, env: {method: pip}}\n", "sites[0].env.method"),
        ("sites:\n  - {label: a, scheduler: slurm}\n", "a slurm site needs a host"),
        ("sites:\n  - {label: a, scheduler: local, host: h}\n", "host is not used by a local site"),
        (
            "sites:\n  - {label: a, scheduler: slurm, host: -oProxyCommand=x}\n",
            "is not a host name",
        ),
        (
            "sites:\n  - {label: a, scheduler: slurm, host: h, partition: 'a; rm'}\n",
            "sites[0].partition",
        ),
        (
            "sites:\n  - {label: a, scheduler: local, min_blocks: 3, max_blocks: 2}\n",
            "min_blocks (3) > max_blocks (2)",
        ),
        ("sites:\n  - {label: a, scheduler: local, walltime: soon}\n", "sites[0].walltime"),
        ("sites:\n  - label: a\n    label: b\n", "s.yaml:3: duplicate key 'label'"),
        ("sites:\n  - {scheduler: local}\n", "sites[0].label: required key is missing"),
        ("sites: []\n", "sites"),
        ("- a\n- b\n", "expected a mapping with a 'sites:' list"),
        ("", "expected a mapping"),
        ("sites:\n  - {label: a, scheduler: local}\nextra: 1\n", "unknown key 'extra'"),
    ],
)
def test_bad_input_names_file_line_and_field(text: str, expected: str) -> None:
    assert expected in _error(text)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SitesError, match=r"nope.yaml: sites file not found"):
        load_sites(tmp_path / "nope.yaml")


def test_counts_further_problems() -> None:
    assert "(and 1 more problems)" in _error("sites:\n  - {label: a, scheduler: x, port: 0}\n")


# Values YAML can produce, nested a little: the loader must turn any of them into
# sites or one SitesError, never another exception.
_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
)
_field_names = st.sampled_from([*Site.model_fields, "bogus", "env"])
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_field_names, inner, max_size=4),
    max_leaves=12,
)
_site_dicts = st.dictionaries(_field_names, _values, max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["sites", "other"]), st.lists(_site_dicts, max_size=3)))
def test_fuzzed_structures_never_escape_as_other_errors(data: dict[str, object]) -> None:
    text = yaml.safe_dump(data)
    try:
        parse_sites(text)
    except SitesError as err:
        assert "\n" not in str(err)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzzed_text_never_escapes_as_other_errors(text: str) -> None:
    with contextlib.suppress(SitesError):
        parse_sites(text)
