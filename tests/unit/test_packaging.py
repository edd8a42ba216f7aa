"""One pinned stack: pyproject.toml, the hashed locks and the conda environment of the rules agree."""

import hashlib
import re
import tomllib

import yaml

from tests.conftest import REPO


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", requirement).lower()


def _pins(requirements: list[str]) -> dict[str, str]:
    return {_name(r.split("==")[0]): r.split("==")[1].strip() for r in requirements if "==" in r}


def _locked(path: str) -> dict[str, str]:
    return {_name(n): v for n, v in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", (REPO / path).read_text(), re.M)}


def test_locks_hold_the_pins_and_the_conda_env_installs_the_cluster_lock():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core, embedded = _pins(project["dependencies"]), _pins(project["optional-dependencies"]["embedded"])
    cluster, full = _locked("requirements/cluster.lock"), _locked("requirements/embedded.lock")
    assert core.items() <= cluster.items()
    assert (core | embedded).items() <= full.items()
    assert not set(embedded) & set(cluster)  # the cluster jobs get no embedded-only package
    assert cluster.items() <= full.items()  # one resolution (uv.lock): the same versions in both
    env_text = (REPO / "envs" / "most.yaml").read_text()
    assert "python =3.11" in yaml.safe_load(env_text)["dependencies"]
    digest = hashlib.sha256((REPO / "requirements" / "cluster.lock").read_bytes()).hexdigest()
    assert f"# requirements/cluster.lock sha256: {digest}" in env_text  # written by `make lock`
