"""environment.yml (conda/Binder) and pyproject.toml must install the same pinned set."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def pins_from_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {re.split(r"[=<>~!]", d)[0].lower(): d for d in deps}


def pins_from_environment():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return env, {re.split(r"[=<>~!]", d)[0].lower(): d for d in pip if not d.startswith("-e")}, pip


def test_environment_matches_pyproject():
    _, env_pins, _ = pins_from_environment()
    assert env_pins == pins_from_pyproject()


def test_every_dependency_is_pinned_exactly():
    for spec in pins_from_pyproject().values():
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][0-9A-Za-z.\-]*", spec), spec


def test_environment_installs_python_311_and_the_project():
    env, _, pip = pins_from_environment()
    assert "python=3.11" in env["dependencies"] and "pip" in env["dependencies"]
    assert "-e ." in pip
