"""helpers: the Python package behind "Why isn't the Linux kernel written in Go?".

Layers depend downward only:

* core models, pure Python: ``toolchain``, ``asm``, ``emu``, ``idt``, ``abi``, ``gostack``, ``unwind``, ``elf``, ``labs``;
* ``viz``: matplotlib drawings of core results;
* ``widgets``: thin ipywidgets views over core + viz.

Importing ``helpers`` imports nothing heavy; chapters import the module they need. Inside a Jupyter kernel it
also installs :mod:`helpers.replay`: a cell that needs a tool this machine lacks shows its recorded output.
"""
import sys

__version__ = "0.1.0"


def _install_replay() -> None:
    ipython = sys.modules.get("IPython")          # never imported here: only a kernel that has it already
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is not None and getattr(shell, "kernel", None) is not None:
        from . import replay
        replay.install(shell)


_install_replay()
