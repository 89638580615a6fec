"""helpers: the Python package behind "Why isn't the Linux kernel written in Go?".

Layers depend downward only:

* core models, pure Python: ``toolchain``, ``asm``, ``emu``, ``idt``, ``abi``, ``gostack``, ``unwind``, ``elf``, ``labs``;
* ``viz``: matplotlib drawings of core results;
* ``widgets``: thin ipywidgets views over core + viz.

Importing ``helpers`` imports nothing heavy; chapters import the module they need.
"""
__version__ = "0.1.0"
