"""Browser tests: real JupyterLab, real (Debian) Chromium, driven by Playwright from PyPI.

Playwright's own browser download cannot work on a closed network, so these tests launch Debian's
``chromium``. When it is missing they install it (``apt-get install -y chromium``, only when running as
root), or skip with a clear message. ``BOOK_REQUIRE_BROWSER=1`` (set by ``.ci/run``) turns that skip into a
failure, so CI cannot go green without running them.

The server runs on a *copy* of the book, so JupyterLab's autosave can never write executed outputs or widget
state into the committed notebooks. Screenshots go to ``test-artifacts/`` (git-ignored).
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [  # without the networking flags Chromium stalls on this closed network
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            try:
                subprocess.run(argv, env=env, capture_output=True, timeout=600, check=False)
            except subprocess.TimeoutExpired:
                return None
        return shutil.which("chromium")
    return None


def _unavailable(reason: str):
    if os.environ.get("BOOK_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests are required here but cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_path():
    try:
        import playwright  # noqa: F401
    except ImportError:
        _unavailable("playwright is not installed (pip install -e .)")
    path = _chromium()
    if path is None:
        _unavailable("Debian's chromium is not installed and cannot be installed here (needs root and apt-get)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(argv, probe_url: str, what: str, timeout: float, **popen):
    """Run a local server (``argv``) until the block ends; wait first until ``probe_url`` answers."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, **popen)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(probe_url, timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{what} did not start") from None
                time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def book_lab(base: Path, extra_env: dict | None = None):
    """JupyterLab on 127.0.0.1, a random port and a token, serving a copy of the book in ``base`` as `make lab`
    does (the reader's configuration: no nbgrader, no news pop-up); ``extra_env`` goes to its kernels too."""
    copy = base / "main"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".git", "test-artifacts", "build", "__pycache__"))
    port, token = _free_port(), secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"), "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
           "JUPYTER_CONFIG_PATH": str(copy / ".jupyter" / "reader"), **(extra_env or {})}  # what `make lab` gives a reader
    argv = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={copy}", "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=", "--ServerApp.port_retries=0", "--allow-root"]
    with open(base / "server.log", "w") as log, serving(argv, f"{url}/api/status?token={token}",
                                                      f"JupyterLab (see {base / 'server.log'})", timeout=60,
                                                      cwd=copy, env=env, stdout=log, stderr=subprocess.STDOUT):
        yield {"url": url, "token": token, "root": copy}


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    with book_lab(tmp_path_factory.mktemp("book")) as server:
        yield server


@pytest.fixture(scope="session")
def browser(chromium_path, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(profile), executable_path=chromium_path, args=CHROMIUM_ARGS,
                                                   headless=True, viewport={"width": 1400, "height": 1000})
        try:
            yield ctx
        finally:
            ctx.close()


@pytest.fixture
def screenshot():
    ARTIFACTS.mkdir(exist_ok=True)

    def take(page, name: str):
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)

    return take
