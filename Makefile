# The book's two commands: `make lab` (read it) and `make test` (check it). Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
NOTEBOOKS := chapters labs

.PHONY: setup lab teach test test-toolless book student execute fuzz-gostack bench fuzz

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

setup: $(STAMP)

# Jupyter refuses to run as root (common in containers) unless told; ordinary users never need the flag.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

# JupyterLab serves the repository root (chapters, labs and their links between them) and opens the start page.
# Readers get .jupyter/reader (no nbgrader, no news pop-up); teachers get nbgrader (.jupyter/teacher).
LAB := $(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 $(ROOT_FLAG) --ServerApp.root_dir="$(CURDIR)"

lab: setup
	JUPYTER_CONFIG_PATH="$(CURDIR)/.jupyter/reader" $(LAB) --LabApp.default_url=/lab/tree/chapters/00_start_here.ipynb

# nbgrader runs `alembic` by name (for its gradebook), so the venv's bin/ goes on PATH; build/ holds the gradebook.
teach: setup
	mkdir -p build
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" JUPYTER_CONFIG_PATH="$(CURDIR)/.jupyter/teacher" $(LAB) --LabApp.default_url=/lab/tree/labs/README.md

# Unit, property and ledger tests and every notebook under strict nbval; then the browser tests in a process of
# their own (Playwright's sync API leaves an event loop marked running in its thread, which other tests must not see).
test: setup
	$(VENV)/bin/pytest tests --ignore=tests/browser --nbval $(NOTEBOOKS) --nbval-sanitize-with tests/sanitize.cfg
	$(VENV)/bin/pytest tests/browser

# The book on machines with fewer tools (helpers.toolless), strict nbval like `make test`. Mode 1: no gcc, cc, as,
# ld, objdump, readelf, objcopy, ar (the pinned Go and zig present). Mode 2: no pinned Go or zig either.
# A cell that needs a missing tool shows its recorded output (helpers.replay), which nbval compares with the
# committed one like any other output. Mode 1 runs every notebook. Mode 2 leaves out the stack-growth lab: its
# autograded cells need the pinned Go (the checker runs the student's Go), and a grade is never a recording.
TOOLLESS_1 := $(wildcard chapters/*.ipynb labs/*/*.ipynb)
TOOLLESS_2 := $(filter-out labs/stackgrowth/%,$(TOOLLESS_1))
test-toolless: setup
	$(PY) -m helpers.toolless 1 --nbval $(TOOLLESS_1) --nbval-sanitize-with tests/sanitize.cfg
	$(PY) -m helpers.toolless 2 --nbval $(TOOLLESS_2) --nbval-sanitize-with tests/sanitize.cfg

# The reading edition (Jupyter Book: sidebar, search, claim links) in build/book, from the committed executed
# notebooks, nothing executed, every asset local; then the book's own checks (helpers/book.py). Open build/book/index.html.
book: setup
	$(PY) -m helpers.book build/book

# For teachers: the student version of every lab (nbgrader generate_assignment) in build/student/; see labs/README.md.
student: setup
	$(PY) -m helpers.classroom student

# For authors: re-execute notebooks in place (NB=chapters/03_interrupts.ipynb), then strip widget state.
NB ?= chapters/*.ipynb labs/*/*.ipynb
execute: setup
	for nb in $(NB); do $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace "$$nb" || exit 1; done
	$(PY) -m helpers.nbclean $(NB)

# The long check of chapter 4b's stack-growth model against the real Go runtime: FUZZ_PROGRAMS generated Go
# programs (helpers.gostackgen), each function run natively and emulated; prints how many were tried.
FUZZ_PROGRAMS ?= 200
fuzz-gostack: setup
	$(PY) -m helpers.gostackgen --programs $(FUZZ_PROGRAMS)


# For maintainers: every benchmark in benchmarks/bench_*.py in one table (ratios against baselines timed in the
# same run); writes benchmarks/results.json and the table in benchmarks/README.md.
bench: setup
	$(PY) benchmarks/run.py

# For maintainers: the long fuzz campaign (at least 100,000 inputs over every entry point, each batch in a
# process of its own); prints the count per entry point. The short profile runs in `make test`.
FUZZ_INPUTS ?= 100000
fuzz: setup
	$(PY) -m tests.fuzz --total $(FUZZ_INPUTS)
