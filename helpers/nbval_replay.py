"""pytest plugin (registered in pyproject.toml): nbval leaves a replay's one-line note out of its comparison.

On a machine without a tool, :mod:`helpers.replay` clears what a cell printed before it failed and shows the
cell's committed outputs under one line saying that they are a recording. nbval ignores clear_output messages,
so this plugin does what a notebook front end does: it keeps only the outputs after the note (marked with
``metadata[helpers.replay.NOTE]``), and leaves the note out, before nbval merges the cell's streams. The replay
itself is compared as usual, so a recording that no longer matches the notebook fails like any other cell.
"""
from __future__ import annotations

from helpers.replay import NOTE


def after_last_note(outputs: list) -> list:
    """The outputs a front end shows once the replay has cleared the cell: those after the last note."""
    notes = [i for i, o in enumerate(outputs) if (o.get("metadata") or {}).get(NOTE)]
    return outputs[notes[-1] + 1:] if notes else outputs


def pytest_configure(config):
    try:
        import nbval.plugin as nbval
    except ImportError:              # nbval not installed: nothing to adjust
        return
    if getattr(nbval.coalesce_streams, "after_replay_notes", False):
        return
    coalesce = nbval.coalesce_streams

    def coalesce_streams(outputs):   # nbval merges a cell's streams here, before comparing: drop first
        return coalesce(after_last_note(list(outputs)))

    coalesce_streams.after_replay_notes = True
    nbval.coalesce_streams = coalesce_streams
