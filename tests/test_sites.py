"""Site models and sites.yaml loading: valid files, every kind of bad input, fuzzing."""

import contextlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import BIN, REPO, run_pwgen
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from pwgen.errors import SitesError
from pwgen.inventory import site_hostvars
from pwgen.schema import sites_reference, sites_schema
from pwgen.sites import Site, load_sites, parse_sites
from pwgen.ssh.config import render_config as render_ssh_config

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


# ---------------------------------------------------------------- hostile values


def _site_text(**fields: object) -> str:
    """One slurm site with `fields` (values written as JSON, which YAML reads)."""
    site = {"label": "a", "scheduler": "slurm", "host": "h", **fields}
    return "sites:\n  - " + json.dumps(site) + "\n"


@pytest.mark.parametrize(
    "jump",
    ["bastion", "alice@bastion:2222,bob@10.0.0.1", "[2001:db8::1]:22", "u@[::1]", "a.b-c_d"],
)
def test_proxy_jump_accepts_hop_lists(jump: str) -> None:
    (site,) = parse_sites(_site_text(proxy_jump=jump))
    assert site.proxy_jump == jump


@pytest.mark.parametrize(
    ("jump", "problem"),
    [
        ("h:1,a`>FILE`", "hop 2 'a`>FILE`'"),
        ("h:1,a$(id)", "hop 2"),
        ("bastion,-oProxyCommand=sh", "hop 2 '-oProxyCommand=sh'"),
        ("h,", "hop 2 ''"),
        (",h", "hop 1 ''"),
        ("h:0", "port"),
        ("h:65536", "port"),
        ("h:22x", "hop 1"),
        ("a@b@c", "hop 1"),
        ("h;id", "hop 1"),
        ("h,a b", "hop 2"),
        ("[::1", "hop 1"),
        ("[not-ipv6]:22", "hop 1"),
        ("-h", "hop 1"),
    ],
)
def test_proxy_jump_validates_every_hop(jump: str, problem: str) -> None:
    message = _error(_site_text(proxy_jump=jump))
    assert "sites[0].proxy_jump" in message and problem in message, message


def _string_fields(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every field of `model` (and nested models) that holds strings, as paths."""
    found = []
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            found += _string_fields(info.annotation, (*prefix, name))
        elif "str" in str(info.annotation):
            found.append((*prefix, name))
    return found


TEMPLATES = [
    "{{ lookup('pipe', 'id') }}",
    "x{% if true %}y{% endif %}",
    "a{# comment #}b",
    "#jinja2:variable_start_string:'<<'\n<< 1 >>",
]


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("path", _string_fields(Site), ids=".".join)
def test_no_site_string_may_hold_a_template(path: tuple[str, ...], template: str) -> None:
    listed = path[-1] in ("extra_packages", "worker_init")
    value: object = [template] if listed else template
    fields: dict[str, object] = {path[-1]: value}
    if len(path) == 2:
        fields = {path[0]: fields}
    message = _error(_site_text(**fields))
    assert f"sites[0].{'.'.join(path)}" in message, message


@pytest.mark.parametrize("path", [("env", "python"), ("workdir",), ("worker_init",)], ids=str)
def test_template_refusal_says_why(path: tuple[str, ...]) -> None:
    value: object = "{{ 7 * 7 }}"
    fields = {path[-1]: [value] if path == ("worker_init",) else value}
    text = _site_text(**({path[0]: fields} if len(path) == 2 else fields))
    assert "Ansible template marker" in _error(text)


def test_plain_braces_are_fine() -> None:
    (site,) = parse_sites(_site_text(worker_init=["export A=${HOME}", "f() { :; }"]))
    assert site.worker_init == ("export A=${HOME}", "f() { :; }")


def test_template_values_never_reach_ansible(tmp_path: Path) -> None:
    """The real pipeline: `pwgen inventory`, then Ansible reading what it wrote.

    Ansible templates inventory values (pwgen's own `ansible_python_interpreter` is
    a template, shown resolved below), so a site value holding one would run its
    lookup: pwgen must refuse it before any inventory exists.
    """
    marker = tmp_path / "pwned"
    hostile = f"{{{{ lookup('pipe', 'touch {marker}') }}}}"
    inventory = tmp_path / "inv.yml"
    outputs = {}
    for name, python in (("hostile", hostile), ("benign", "/opt/py{3}/bin/python3")):
        sites = tmp_path / f"{name}.yaml"
        sites.write_text(_local_site_with_python(python))
        result = run_pwgen("inventory", "--from", str(sites), "-o", str(inventory), cwd=tmp_path)
        outputs[name] = result
        if inventory.exists():
            for var in ("pwgen_env_python", "ansible_python_interpreter"):
                outputs[f"{name} {var}"] = _ansible_debug(inventory, var, tmp_path)
            inventory.unlink()
    assert not marker.exists(), "a site value reached Ansible and ran a command"
    assert outputs["hostile"].returncode == 2, outputs["hostile"].stdout
    assert "sites[0].env.python" in outputs["hostile"].stderr
    assert '"pwgen_env_python": "/opt/py{3}/bin/python3"' in outputs["benign pwgen_env_python"]
    interpreter = outputs["benign ansible_python_interpreter"]
    assert '"ansible_python_interpreter": "/' in interpreter, interpreter  # templated by Ansible


def _local_site_with_python(python: str) -> str:
    site = {"label": "a", "scheduler": "local", "env": {"python": python}}
    return "sites:\n  - " + json.dumps(site) + "\n"


def _ansible_debug(inventory: Path, var: str, cwd: Path) -> str:
    env = {**os.environ, "ANSIBLE_LOCAL_TEMP": str(cwd / "tmp"), "ANSIBLE_NOCOLOR": "1"}
    result = subprocess.run(
        [str(BIN / "ansible"), "a", "-i", str(inventory), "-m", "debug", "-a", f"var={var}"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    "package", ["numpy", "numpy>=1.26", "scipy[all]==1.13; python_version > '3.9'", "a_b.c~=1.0"]
)
def test_extra_packages_accepts_requirements(package: str) -> None:
    (site,) = parse_sites(_site_text(env={"extra_packages": [package]}))
    assert site.env.extra_packages == (package,)


@pytest.mark.parametrize(
    ("package", "problem"),
    [
        ("--index-url=https://evil.example/simple", "not a requirement"),
        ("-e .", "not a requirement"),
        ("numpy --no-deps", "not a requirement"),
        ("numpy scipy", "not a requirement"),
        ("", "not a requirement"),
        ("./local.whl", "not a requirement"),
        ("git+https://example.org/x.git", "not a requirement"),
        ("numpy @ https://evil.example/n.whl", "URL"),
        ("numpy @ file:///home/alice/n.whl", "URL"),
    ],
)
def test_extra_packages_refuses_options_and_urls(package: str, problem: str) -> None:
    message = _error(_site_text(env={"extra_packages": ["numpy", package]}))
    assert "sites[0].env.extra_packages" in message and problem in message, message


# ---------------------------------------------------------------- hostile files


def test_regular_files_only(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes
    for path in (fifo, tmp_path, Path("/dev/zero"), Path("/dev/null")):
        with pytest.raises(SitesError, match=f"{path}: cannot read sites file: not a regular"):
            load_sites(path)


def test_size_cap(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(VALID + "#" * (1 << 20))
    with pytest.raises(SitesError, match=r"big\.yaml: cannot read sites file: larger than 1 MiB"):
        load_sites(path)
    path.write_text(VALID + "#" * ((1 << 20) - len(VALID) - 10))
    assert len(load_sites(path)) == 2


def test_symlink_to_a_regular_file_is_fine(tmp_path: Path) -> None:
    (tmp_path / "real.yaml").write_text(VALID)
    (tmp_path / "link.yaml").symlink_to("real.yaml")
    assert len(load_sites(tmp_path / "link.yaml")) == 2


@pytest.mark.parametrize(
    "text", ["sites: " + "[" * 5000, "sites: " + "{a: " * 5000, "sites:\n  " + "- " * 5000 + "x\n"]
)
def test_deep_nesting_is_one_error(text: str) -> None:
    assert "nested more than 64 levels deep" in _error(text)


def test_nesting_within_the_limit_is_read() -> None:
    assert "sites[0]" in _error("sites:\n  - " + "[" * 40 + "]" * 40 + "\n")


BOMB = 'a0: &a0 ["lol"]\n' + "".join(
    f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]\n" for n in range(1, 9)
)
MERGE_BOMB = "m0: &m0 {k0: 1}\n" + "".join(
    f"m{n}: &m{n} {{<<: [{', '.join([f'*m{n - 1}'] * 9)}], k{n}: 1}}\n" for n in range(1, 9)
)


@pytest.mark.parametrize("text", [BOMB + "sites: [*a8]\n", BOMB + "sites: 1\n", MERGE_BOMB])
def test_alias_bombs_are_refused_without_expanding(text: str) -> None:
    assert "aliases expand to more than" in _error(text)


def test_aliases_within_reason_still_work() -> None:
    text = (
        "sites:\n  - {label: a, scheduler: local, env: &env {method: venv}}\n"
        "  - {label: b, scheduler: local, env: *env}\n"
    )
    assert [site.env.method for site in parse_sites(text)] == ["venv", "venv"]


def test_long_values_are_not_echoed_whole() -> None:
    huge = "x;" * 300_000
    for text in (_site_text(host=huge), _site_text(port=huge), _site_text(colour=huge)):
        message = _error(text)
        assert len(message) < 400, len(message)


@pytest.mark.parametrize(
    ("value", "problem"),
    [("9" * 5000, "Exceeds the limit"), ("2026-02-30", "day is out of range"), ("!!float x", "")],
)
def test_values_yaml_cannot_build_are_one_error(value: str, problem: str) -> None:
    message = _error(f"sites:\n  - label: a\n    scheduler: local\n    max_blocks: {value}\n")
    assert message.startswith("s.yaml:4:") and "cannot read this value" in message
    assert problem in message


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("scheduler_options: ['srun rm -rf ~']", "expected a directive line"),
        (
            "scheduler_options: ['#PBS -m e']",
            "does not fit a slurm site (lines starting with '#SBATCH')",
        ),
        ('scheduler_options: ["#SBATCH --a\\a"]', "one line, without controls"),
        ("constraint: 'a b'", "is not a Slurm constraint"),
        ("gres: 'gpu;id'", "is not a Slurm gres"),
        ("gpus_per_node: 0", "greater than or equal to 1"),
        (
            "ssh_options: {ProxyCommand: 'nc %h %p'}",
            "ssh option 'ProxyCommand' is not allowed here",
        ),
        ("ssh_options: {Compression: 'yes no'}", "is not a single-word value"),
    ],
)
def test_bad_site_options_are_one_line_errors(tmp_path: Path, extra: str, message: str) -> None:
    path = tmp_path / "sites.yaml"
    path.write_text(f"sites:\n  - label: a\n    scheduler: slurm\n    host: h\n    {extra}\n")
    with pytest.raises(SitesError, match=re.escape(message)) as caught:
        load_sites(path)
    assert "\n" not in str(caught.value)


def test_slurm_options_on_a_pbs_site_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "sites.yaml"
    path.write_text("sites:\n  - {label: p, scheduler: pbspro, host: h, gres: 'gpu:1'}\n")
    with pytest.raises(SitesError, match="gres is a Slurm option; a pbspro site has none"):
        load_sites(path)


def test_ssh_options_reach_the_ssh_config_and_the_inventory(tmp_path: Path) -> None:
    path = tmp_path / "sites.yaml"
    path.write_text(
        "sites:\n  - {label: a, scheduler: slurm, host: h, proxy_jump: j,"
        " ssh_options: {ServerAliveInterval: '5', Ciphers: 'aes256-gcm@openssh.com'}}\n"
    )
    (site,) = load_sites(path)
    text = render_ssh_config([site], tmp_path / "kh", False, tmp_path / "cm")
    host_block = text.split("Host *")[0]
    assert "    Ciphers aes256-gcm@openssh.com\n    ServerAliveInterval 5\n" in host_block
    assert site_hostvars(site)["ansible_ssh_common_args"] == (
        "-o ProxyJump=j -o Ciphers=aes256-gcm@openssh.com -o ServerAliveInterval=5"
    )


def test_the_sites_reference_is_generated_from_the_models() -> None:
    reference = REPO / "docs" / "sites-reference.md"
    assert reference.read_text() == sites_reference(), "run: pwgen schema --markdown -o " + str(
        reference
    )
    schema = sites_schema()
    assert schema["$defs"]["Site"]["additionalProperties"] is False
    assert "ssh_options" in schema["$defs"]["Site"]["properties"]
