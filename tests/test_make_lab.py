"""`make lab` opens the whole book and `make teach` the classroom tools (issue 12 §2, §7): in a copy of the
committed tree (as a fresh clone has it), the command lines the Makefile really runs (``make -n``), started
headless on a free port with a timeout, then asked over HTTP what a reader's or a teacher's browser would get:
the repository root is served (chapters and labs), the front page redirects to the start page, and the page
config hides nbgrader and the news pop-up from readers only."""
from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from repo_copy import archive_head
NBGRADER = "@jupyter/nbgrader"
NEWS = "@jupyterlab/apputils-extension:announcements"


def make_command(repo: Path, target: str) -> tuple[dict, list[str], list[str]]:
    """(environment assignments, argv, other commands) of ``make <target>`` in ``repo``, setup not remade."""
    assert shutil.which("make"), "make is needed: the README's commands are make targets"
    out = subprocess.run(["make", "--no-print-directory", "-n", "-o", ".venv/.installed-stamp", target], cwd=repo,
                         capture_output=True, text=True, timeout=30, check=True).stdout
    lines = [line for line in out.splitlines() if " lab " in f" {line} "]
    assert len(lines) == 1, out
    others = [line for line in out.splitlines() if line not in lines]
    words = shlex.split(lines[0])
    env = {}
    venv_bin = str(repo / ".venv" / "bin")
    while re.match(r"^[A-Z_]+=", words[0]):
        key, value = words.pop(0).split("=", 1)
        # a copy has no .venv of its own: the tests' environment stands in for it (same pins)
        env[key] = os.path.expandvars(value.replace(venv_bin, str(Path(sys.executable).parent)))
    assert words[0].endswith("/bin/jupyter") and words[1] == "lab", words
    # the same JupyterLab as the tests' own environment (make's is .venv/bin/jupyter, from the same pins)
    return env, [sys.executable, "-m", "jupyter", *words[1:]], others


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, target: str, tmp: Path):
        (tmp / "clone").mkdir()
        self.repo = archive_head(tmp / "clone")
        env, argv, others = make_command(self.repo, target)
        for line in others:           # e.g. `mkdir -p build`: simple commands without a shell
            subprocess.run(shlex.split(line), cwd=self.repo, timeout=30, check=True)
        self.env, self.argv = env, argv
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, **env, "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
                    "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces")}
        full_env.pop("JUPYTER_CONFIG_DIR", None)
        argv = argv + ["--no-browser", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
                       f"--IdentityProvider.token={self.token}"]
        if "--allow-root" not in argv and os.geteuid() == 0:
            argv.append("--allow-root")
        self.log = open(tmp / f"{target}.log", "w")
        self.proc = subprocess.Popen(argv, cwd=self.repo, env=full_env, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 90
        while True:
            try:
                self.get("/api/status")
                break
            except (OSError, urllib.error.URLError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"make {target}: JupyterLab did not start; see {tmp / f'{target}.log'}")
                time.sleep(0.3)

    def get(self, path: str):
        """(status, headers, body) of GET ``path``, not following redirects."""
        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        req = urllib.request.Request(self.url + path, headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.build_opener(NoRedirect).open(req, timeout=90) as r:  # generous: a first formgrader request creates the gradebook
                return r.status, r.headers, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode("utf-8", "replace")

    def page_config(self) -> dict:
        status, _h, body = self.get("/lab")
        assert status == 200, status
        m = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', body, re.S)
        assert m, "no page config in /lab"
        return json.loads(m.group(1))

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.log.close()


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    server = Server("lab", tmp_path_factory.mktemp("make-lab"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    server = Server("teach", tmp_path_factory.mktemp("make-teach"))
    yield server
    server.stop()


def test_make_lab_serves_the_repository_root(reader):
    assert f"--ServerApp.root_dir={reader.repo}" in reader.argv
    for path in ("labs", "chapters"):
        status, _h, body = reader.get(f"/api/contents/{path}?content=1")
        assert status == 200, (path, status)
        names = {item["name"] for item in json.loads(body)["content"]}
        assert names, path
    status, _h, body = reader.get("/api/contents/labs?content=1")
    assert {p.name for p in (reader.repo / "labs").iterdir() if p.is_dir()} <= \
        {i["name"] for i in json.loads(body)["content"]}
    # 03a's link to ../labs/idt/idt.ipynb resolves on this server
    assert reader.get("/api/contents/labs/idt/idt.ipynb?content=0")[0] == 200


def test_make_lab_opens_the_start_page(reader):
    status, headers, _body = reader.get("/")
    assert status in (301, 302), status
    assert headers["Location"].split("?")[0] == "/lab/tree/chapters/00_start_here.ipynb", headers["Location"]
    assert reader.get("/api/contents/chapters/00_start_here.ipynb?content=0")[0] == 200


def test_make_lab_hides_nbgrader_and_the_news_from_readers(reader):
    config = reader.page_config()
    assert NBGRADER in config["disabledExtensions"] and NEWS in config["disabledExtensions"], \
        config["disabledExtensions"]
    assert reader.get("/formgrader/api/assignments")[0] == 404      # the nbgrader server extensions are off too


def test_make_teach_has_nbgrader_and_no_news(teacher):
    config = teacher.page_config()
    assert NBGRADER not in config["disabledExtensions"] and NEWS in config["disabledExtensions"]
    assert NBGRADER in {e["name"] for e in config["federated_extensions"]}
    status, _h, body = teacher.get("/formgrader/api/assignments")
    assert status == 200, status
    assert {a["name"] for a in json.loads(body)} >= {p.name for p in (teacher.repo / "labs").iterdir() if p.is_dir()}
    assert teacher.get("/api/contents/labs?content=0")[0] == 200
