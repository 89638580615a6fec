"""How much Python one widget event costs, against a bare ipywidgets slider in the same process.

Usage: .venv/bin/python benchmarks/bench_widgets.py

The book's widgets handle a change event by recording it and restarting a short timer
(helpers.widgets.base.Debouncer); the drawing happens once, when a burst is over. So two numbers matter:

* the event cost: Python run per value change while a burst is under way (the budget is 16 ms, one frame);
* the render cost: the one coalesced redraw at the end of a burst.

Both are measured inside a running asyncio loop, as in a kernel, and the event cost is also given as a ratio
to a baseline: the same value change on a plain ``IntSlider`` with no observer.
"""
import asyncio
import statistics
import time

import ipywidgets as W

EVENTS = 200


def per_event(change, n=EVENTS) -> float:
    times = []
    for i in range(n):
        t = time.perf_counter()
        change(i)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def views():
    from helpers.widgets.abi import CallConvView
    from helpers.widgets.gostack import StackGrowthViewer
    from helpers.widgets.idt import DeliveryViewer, GateWorkbench

    gate = GateWorkbench()
    yield "gate workbench: DPL", gate, lambda i: setattr(gate.dpl, "value", i % 4)
    viewer = DeliveryViewer()
    yield "delivery viewer: gate DPL", viewer, lambda i: setattr(viewer.dpl, "value", i % 4)
    stack = StackGrowthViewer()
    yield "stack-growth viewer: event", stack, lambda i: setattr(stack.event, "value", i % (stack.event.max + 1))
    conv = CallConvView()
    yield "calling convention: args", conv, lambda i: setattr(conv.args, "value", ", ".join(["7"] * (i % 6)))


async def main() -> None:
    bare = W.IntSlider(min=0, max=10**6)
    baseline = per_event(lambda i: setattr(bare, "value", i))
    print(f"baseline, bare IntSlider change: {baseline * 1e6:.1f} µs per event\n")
    print(f"{'widget: control':32} {'event µs':>9} {'x baseline':>10} {'render ms':>10}  under 16 ms?")
    for name, view, change in views():
        event = per_event(change)
        await asyncio.sleep(0.2)                      # let the pending redraw fire
        t = time.perf_counter()
        view.redraw()
        render = time.perf_counter() - t
        ok = "yes" if event < 0.016 else "NO"
        print(f"{name:32} {event * 1e6:9.1f} {event / baseline:10.1f} {render * 1e3:10.1f}  {ok}")


if __name__ == "__main__":
    asyncio.run(main())


def bench_widget_events(quick: bool = False):
    """`make bench` rows: Python per control change of each main widget, against a bare IntSlider change."""
    from harness import Row

    async def measure():
        n = 50 if quick else EVENTS
        bare = W.IntSlider(min=0, max=10**6)
        baseline = per_event(lambda i: setattr(bare, "value", i), n)
        rows = []
        for name, view, change in views():
            event = per_event(change, n)
            await asyncio.sleep(0.2)
            rows.append(Row(f"widget event: {name}", event * 1e3, "ms", "bare IntSlider change", baseline * 1e3,
                            goal="< 16 ms", met=event < 0.016))
        return rows
    return asyncio.run(measure())
