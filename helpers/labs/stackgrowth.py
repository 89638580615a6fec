"""The stack-growth lab (chapter 4b): predict how often a goroutine's stack grows, then run real Go code.

A seed picks a recursive function's frame size (the ``medium`` function of
:func:`helpers.gostack.stacks_source`, whose frame is 8 bytes per array element plus 32), a recursion depth
and an initial stack size. The student predicts the prologue form, the depth of the first growth, the number
of growths, the final stack size and where stackguard0 ends up. In the last question the student writes (or
edits) a function of their own and predicts the call depths at which its stack moves; the checker compiles it
with the pinned Go and runs it natively and in the emulator (:class:`helpers.gostack.FunctionProgram`). The key
comes from
:func:`helpers.gostack.predict_growth`, the pencil-and-paper form of golang/go src/runtime/stack.go
(newstack/copystack) and src/cmd/internal/obj/x86/obj6.go (stacksplit). tests/test_lab_stackgrowth.py checks
it against the emulator running the compiled function. :func:`observe` runs it in the notebook.

    python -m helpers.labs stackgrowth --seed 7 -c
"""
from __future__ import annotations

from helpers.goelf import runtime_constants
from helpers.gostack import predict_growth

from .common import Feedback, Problem, Question, check_each, rng

NAME = "stackgrowth"
TITLE = "Predict a goroutine's stack growth"
CHAPTER = "chapters/04b_goroutine_stacks.ipynb"

ELEMENTS = (4, 12, 13, 40, 100, 150, 300, 511, 777, 1000)  # int64 elements in medium's local array
STACKS = (2048, 4096, 8192)
FIRST_USED = 72      # hi - SP at the first frame's entry: newproc1's 4 words + goexit's return address (40),
                     # worker's 24-byte frame, worker's call (8); tests check it against the binary
FRAME_EXTRA = 32     # medium's frame beyond its array: saved BP, spill slots (tests check it)
FORMS = ("small", "medium", "huge")
OWN_ELEMENTS = (3, 20, 60, 100, 250, 600)  # int64 elements in the own-function template's local array
OWN_STACK = 2048     # the harness's goroutine starts at fixedStack, natively and emulated
OWN_TEMPLATE = """//go:noinline
func f(n int) int {
	mark(n)
	var local [K]int64
	local[n%K] = int64(n)
	if n == 0 {
		return 0
	}
	return f(n-1) + int(local[n%K])
}
"""


def frame_of(elements: int) -> int:
    return 8 * elements + FRAME_EXTRA


def form_of(frame: int) -> str:
    k = runtime_constants()
    return "small" if frame <= k["StackSmall"] else "medium" if frame <= k["StackBig"] else "huge"


def generate(seed: int) -> Problem:
    r = rng(seed)
    elements = r.choice(ELEMENTS)
    frame = frame_of(elements)
    stack = r.choice(STACKS)
    # enough depth for 2-6 growths, never more than 64 frames' worth of a huge frame
    reach = 2 ** r.randint(2, 5) * stack
    depth = max(3, min(3000, reach // (frame + 8) + r.randint(0, 5)))
    k = runtime_constants()
    p = predict_growth(frame, depth, stack, FIRST_USED)
    params = {"frame": frame, "elements": elements, "depth": depth, "initial_stack": stack,
              "first_used": FIRST_USED, "stackGuard": k["stackGuard"], "StackSmall": k["StackSmall"],
              "StackBig": k["StackBig"]}
    intro = (f"medium(n) has a {frame}-byte frame (funcMaxSPDelta: locals, spills, saved BP); each call also pushes "
             f"an 8-byte return address. The goroutine starts with a {stack}-byte stack, {FIRST_USED} bytes of it "
             f"already used at the first call, and recurses {depth} levels (depths 0..{depth}).")
    # the own-function question: drawn after the others, so the earlier parameters of a seed never change
    own_elements = r.choice(OWN_ELEMENTS)
    own_frame = frame_of(own_elements)
    own_depth = max(4, min(400, 2 ** r.randint(14, 17) // (own_frame + 8) + r.randint(0, 9)))
    own_template = OWN_TEMPLATE.replace("K", str(own_elements))
    own_key = predict_growth(own_frame, own_depth, OWN_STACK, FIRST_USED)["depths"]
    params.update(own_depth=own_depth, own_frame=own_frame, own_template=own_template)
    questions = [
        Question("form", intro + "\nWhich stack-check prologue does the compiler emit for medium?", form_of(frame),
                 "choice", choices=FORMS),
        Question("first", "At which depth (0 = the first medium frame) does the stack grow for the first time? "
                 "(-1 if never)", p["depths"][0] if p["depths"] else -1, "int"),
        Question("growths", "How many times does newstack grow the stack during the recursion?", p["growths"], "int"),
        Question("final_size", "How many bytes is the stack at the deepest point?", p["final_size"], "int"),
        Question("guard_below_hi", "At the deepest point, how many bytes below stack.hi is stackguard0?",
                 p["final_guard_below_hi"], "int"),
        Question("own_moves",
                 f"Your own function. Put Go source for func f(n int) int in answers['own_source']: own_template "
                 f"as it is ({own_frame}-byte frame), or edited (another frame size, a second function, a pointer "
                 f"argument...), allocation-free, with mark(n) first in every recursive function. f({own_depth}) "
                 f"runs on a new goroutine with a {OWN_STACK}-byte stack, {FIRST_USED} bytes used at f's first "
                 f"entry.\nAt which call depths (0 = the first f frame) does the stack move? "
                 f"answers['own_moves'], a list of whole numbers; the checker runs your source natively and in the "
                 f"emulator", own_key, "list", item_kind="int"),
    ]
    return Problem(NAME, seed, params, questions, TITLE)


def _naive(frame: int, depth: int, stack: int, first_used: int, *, slack: bool = True, refit: bool = True,
           guard: int | None = None) -> dict:
    """predict_growth with one rule changed, to recognise a student's typical slip."""
    k = runtime_constants()
    g = k["stackGuard"] if guard is None else guard
    size, sizes, at = stack, [], []
    for j in range(depth + 1):
        used = first_used + j * (frame + 8)
        extra = max(0, frame - k["StackSmall"]) if slack else frame
        if size - used - extra <= g:
            size *= 2
            while refit and size - used < frame + g:
                size *= 2
            sizes.append(size)
            at.append(j)
    return {"growths": len(sizes), "final_size": size, "depths": at}


def _explain(problem: Problem, q: Question, value) -> str:
    pr = problem.params
    frame, depth, stack, first = pr["frame"], pr["depth"], pr["initial_stack"], pr["first_used"]
    k = runtime_constants()
    key = predict_growth(frame, depth, stack, first)
    no_refit = _naive(frame, depth, stack, first, refit=False)
    no_slack = _naive(frame, depth, stack, first, slack=False)
    no_guard = _naive(frame, depth, stack, first, guard=0)
    if q.id == "form":
        return (f"the forms depend only on the frame size: <= StackSmall ({k['StackSmall']}) compares SP directly, "
                f"<= StackBig ({k['StackBig']}) uses LEAQ -(frame-StackSmall)(SP), larger needs the SUBQ with a "
                f"wraparound check; this frame is {frame} bytes")
    if q.id == "first":
        if no_guard["depths"] and value == no_guard["depths"][0]:
            return "that is where the stack would overflow; the prologue fires earlier, when SP gets within stackGuard of stack.lo"
        if no_slack["depths"] and value == no_slack["depths"][0] and frame <= k["StackSmall"]:
            return f"a frame of at most StackSmall ({k['StackSmall']}) bytes only compares SP itself with stackguard0"
        if no_slack["depths"] and value == no_slack["depths"][0]:
            return f"the prologue compares SP - (frame - StackSmall) with stackguard0, not SP - frame: StackSmall bytes of slack"
        return (f"frame j enters with hi - SP = {first} + j*({frame}+8); it grows when SP - max(0, frame - StackSmall) "
                f"<= stackguard0 = lo + {k['stackGuard']}")
    if q.id == "growths":
        if value == no_refit["growths"] and no_refit["growths"] != key["growths"]:
            return "one growth can more than double: newstack keeps doubling until frame + stackGuard fits above the used part"
        if value == no_guard["growths"]:
            return f"stackguard0 sits {k['stackGuard']} bytes above stack.lo, so the stack grows before it is full"
        if value in (key["growths"] - 1, key["growths"] + 1):
            return "off by one: check whether the first frame (depth 0) already grows, and whether the deepest does"
        return "walk the frames: each growth doubles (at least) the size; count how often the check fails"
    if q.id == "final_size":
        if value == stack * 2 ** key["growths"] and value != key["final_size"]:
            return "not every growth is a single doubling: with a big frame, newstack doubles until the frame fits"
        if value in key["sizes"][:-1]:
            return "that size is reached on the way; the stack grows again later"
        if value & (value - 1):
            return "stack sizes are powers of two: the initial size times a power of two"
        return f"start from {stack} and apply each growth: at least double, until frame + stackGuard fits"
    if q.id == "own_moves":
        return f"for own_template as given: {_first_difference(list(value), list(q.answer))}"
    if q.id == "guard_below_hi":
        size = key["final_size"]
        if value == k["stackGuard"]:
            return f"{k['stackGuard']} is how far stackguard0 is ABOVE stack.lo; the question asks the distance below stack.hi"
        if value == 0:
            return "stackguard0 is not the upper bound: copystack sets it to new.lo + stackGuard"
        if value == size:
            return "that is the whole stack; stackguard0 is stackGuard bytes above stack.lo"
        return "stackguard0 = stack.lo + stackGuard, and stack.hi - stack.lo is the final size"
    return ""


def check(problem: Problem, answers: dict) -> list[Feedback]:
    out = check_each(problem, answers, lambda q, v: _explain(problem, q, v))
    source = answers.get("own_source") if isinstance(answers, dict) else None
    if source is not None and isinstance(answers, dict) and "own_moves" in answers:
        i = next(k for k, f in enumerate(out) if f.question == "own_moves")
        if "no answer" not in out[i].message:
            out[i] = _check_own(problem, source, answers["own_moves"])
    return out


def _first_difference(said: list, moves: list) -> str:
    for k, (a, b) in enumerate(zip(said, moves)):
        if a != b:
            if k == 0:
                return (f"your first entry, {a}, is not where the stack first moves: walk the frames from depth 0, "
                        "with hi - SP = first_used + j*(frame+8) at frame j's entry")
            return f"your first {k} entries agree with the run, but entry #{k} ({a}) does not: recompute from the move before it"
    if len(said) < len(moves):
        return "every entry you gave is right, but the stack moves again later: keep walking the frames to the last one"
    return (f"the stack does not move {len(said) - len(moves)} more time(s) after your #{len(moves) - 1}: "
            "check the last growth, which makes room for frame + stackGuard above the used part")


def observe_own(problem: Problem, source: str) -> dict:
    """Build ``source`` in the book's harness (func f, mark(n)), run f(own_depth) natively and in the emulator:
    {"native": [call depths], "emulated": [...], "frame": f's frame, "result": ...}. GoStackError (a
    ValueError) with one line for bad source or code the model cannot run."""
    from helpers.gostack import FunctionProgram

    depth = problem.params["own_depth"]
    prog = FunctionProgram.build(source, "f")
    native = prog.native(depth)
    emu = prog.marks(prog.emulate(depth, max_insns=50_000_000), depth)
    if not any(native.hi):
        from helpers.gostack import GoStackError
        raise GoStackError("f never calls mark(n): put mark(n) first in f so the checker can see its stack")
    depths = lambda m: [d for d, _size in m.moves() if d != "end"]
    return {"native": depths(native), "emulated": depths(emu), "frame": prog.frame_size("main.f"),
            "result": native.result, "agree": native.moves() == emu.moves() and native.result == emu.result}


def _check_own(problem: Problem, source, raw) -> Feedback:
    q = problem.question("own_moves")
    try:
        said = q.parse(raw)
    except ValueError as e:
        return Feedback(q.id, False, str(e))
    if not isinstance(source, str) or not source.strip():
        return Feedback(q.id, False, "answers['own_source'] must be the Go source of your func f, as a string")
    try:
        seen = observe_own(problem, source)
    except ValueError as e:  # GoStackError and toolchain errors: one line about the student's source
        return Feedback(q.id, False, f"your source: {str(e).splitlines()[0][:200]}")
    agree = "; the emulator agrees with the native run" if seen["agree"] else (
        "; the emulator disagrees with the native run here (tell your teacher: that is a bug in the model)")
    if said == seen["native"]:
        return Feedback(q.id, True, f"correct: the native run moved the stack at those depths{agree}")
    return Feedback(q.id, False, f"natively, your f({problem.params['own_depth']}) ({seen['frame']}-byte frame): "
                                 + _first_difference(said, seen["native"]) + agree)


def observe(problem: Problem, max_insns: int = 50_000_000) -> dict:
    """Build the lab's function with the real Go toolchain, run it in the emulator, and report the same
    quantities the questions ask for (needs go; the notebook calls this after the student answers)."""
    from helpers.gostack import GoProgram, emulated_moves, run_recursion, stacks_source

    pr = problem.params
    prog = GoProgram.build(stacks_source(medium=pr["elements"]))
    rt = run_recursion("medium", pr["depth"], initial_stack=pr["initial_stack"], program=prog, max_insns=max_insns)
    grows = [e for e in rt.grows() if e.func == "main.medium"]
    # the frames' own record gives depths >= 1; a growth with only the first frame's caller on the stack is depth 0
    moved = emulated_moves(rt, pr["depth"]).moved_at()
    if grows and grows[0].used == FIRST_USED:
        moved = [0] + moved
    last = grows[-1] if grows else rt.events[0]
    own = observe_own(problem, pr["own_template"])
    return {"form": prog.prologue("main.medium").form, "first": moved[0] if moved else -1, "growths": len(grows),
            "final_size": last.new[1] - last.new[0], "guard_below_hi": last.new[1] - last.guard_after,
            "frame": prog.frame_size("main.medium"), "result": rt.read_global("main.Result"),
            "own_moves": own["emulated"], "own_native": own["native"]}
