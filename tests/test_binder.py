"""The repository follows repo2docker's conventions, so Binder and hubs build it as the README promises.

repo2docker reads configuration from ``binder/`` (or ``.binder/``) if such a folder exists and then ignores
the root; otherwise from the root. It uses ``environment.yml`` for conda, runs ``postBuild`` only if it is
executable, and ``start`` likewise (repo2docker docs, "Configuration files").
"""
import os
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG_FILES = {"environment.yml", "requirements.txt", "Pipfile", "Pipfile.lock", "setup.py", "Project.toml",
                "REQUIRE", "install.R", "apt.txt", "DESCRIPTION", "manifest.xml", "postBuild", "start",
                "runtime.txt", "default.nix", "Dockerfile"}


def config_dir() -> Path:
    for d in ("binder", ".binder"):
        if (ROOT / d).is_dir():
            return ROOT / d
    return ROOT


def test_environment_yml_is_where_repo2docker_looks():
    assert (config_dir() / "environment.yml").exists()


def test_no_config_that_would_override_environment_yml():
    present = {p.name for p in config_dir().iterdir()} & CONFIG_FILES
    # A Dockerfile makes repo2docker ignore everything else; requirements.txt would be a second, drifting pin list.
    assert present <= {"environment.yml", "postBuild", "apt.txt", "runtime.txt", "start"}, present


def test_post_build_and_start_are_executable_if_present():
    for name in ("postBuild", "start"):
        path = config_dir() / name
        if path.exists():
            assert os.access(path, os.X_OK), f"{name} must be executable for repo2docker to run it"


def test_environment_is_valid_conda_yaml():
    env = yaml.safe_load((config_dir() / "environment.yml").read_text())
    assert set(env) <= {"name", "channels", "dependencies"}
    assert any(isinstance(d, dict) and "pip" in d for d in env["dependencies"])


def test_readme_has_binder_badge_opening_the_start_page():
    readme = (ROOT / "README.md").read_text()
    assert "https://mybinder.org/badge_logo.svg" in readme
    assert "labpath=chapters%2F00_start_here.ipynb" in readme
    assert "user-redirect/git-pull?repo=" in readme   # the nbgitpuller link for a hub
