"""A small driver for JupyterLab in a real browser, through the app object JupyterLab exposes
(``--LabApp.expose_app_in_browser=True``): open a notebook, run all cells, wait for the kernel, read the
outputs from the notebook model, and run code in the notebook's kernel."""
from __future__ import annotations

import time

OPEN = """async (path) => {
  const app = window.jupyterapp;
  const panel = await app.commands.execute('docmanager:open', {path, factory: 'Notebook'});
  await panel.context.ready;
  await panel.sessionContext.ready;
  app.shell.activateById(panel.id);
  return panel.id;
}"""

RUN_ALL = """async () => {
  const app = window.jupyterapp;
  await app.commands.execute('notebook:run-all-cells');
}"""

STATE = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = panel.content.model.cells;
  let pending = 0, errors = [];
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code' || !c.sharedModel.getSource().trim()) continue;
    if (c.executionCount === null) pending++;
    for (const o of c.outputs.toJSON()) {
      if (o.output_type === 'error') errors.push(`cell ${i}: ${o.ename}: ${o.evalue}`);
    }
  }
  return {status: kernel ? kernel.status : 'none', pending, errors};
}"""

EXEC = """async (code) => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const future = kernel.requestExecute({code, store_history: false});
  let out = '';
  future.onIOPub = (msg) => {
    if (msg.header.msg_type === 'stream') out += msg.content.text;
    if (msg.header.msg_type === 'error') out += 'ERROR ' + msg.content.ename + ': ' + msg.content.evalue;
  };
  await future.done;
  return out;
}"""


class Lab:
    def __init__(self, context, server):
        self.server = server
        self.page = context.new_page()
        self.page.set_default_timeout(60_000)
        self.page.goto(f"{server['url']}/lab?token={server['token']}")
        self.page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started !== undefined", timeout=90_000)
        self.page.evaluate("async () => { await window.jupyterapp.started; await window.jupyterapp.restored; }")

    def open(self, path: str) -> None:
        self.page.evaluate(OPEN, path)

    def state(self) -> dict:
        return self.page.evaluate(STATE)

    def run_all(self, timeout: float = 300) -> dict:
        """Run every cell and wait until all have run and the kernel is idle, or a cell raised."""
        self.page.evaluate(RUN_ALL)
        deadline, quiet_since = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            s = self.state()
            if s["errors"]:
                return s
            if s["pending"] == 0 and s["status"] == "idle":
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 1.5:  # widgets finish rendering after the last reply
                    return s
            else:
                quiet_since = None
            time.sleep(0.25)
        raise TimeoutError(f"notebook still running after {timeout} s: {self.state()}")

    def kernel(self, code: str) -> str:
        """Run ``code`` in the open notebook's kernel and return what it printed."""
        return self.page.evaluate(EXEC, code)

    def wait_quiet(self, seconds: float = 1.0, timeout: float = 30) -> None:
        """Wait until the kernel has been idle for ``seconds`` (a burst of widget events is over)."""
        deadline, since = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            if self.state()["status"] == "idle":
                since = since or time.monotonic()
                if time.monotonic() - since >= seconds:
                    return
            else:
                since = None
            time.sleep(0.1)
        raise TimeoutError("kernel never went quiet")

    def widget_errors(self) -> list[str]:
        text = self.page.inner_text("body")
        return [m for m in ("Error displaying widget", "model not found") if m in text]

    def close(self) -> None:
        self.page.close()
