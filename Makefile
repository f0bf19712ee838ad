# Two commands set up and run everything: `make demo` and `make test`.
# Each installs what is missing (Debian packages with apt, a .venv with lenghu
# and its extras), idempotently, then runs.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.lenghu-installed
SYSTEM_STAMP := $(VENV)/.system-checked
DEMO_OUT ?= demo_out
PYTEST_ARGS ?=

.PHONY: all setup system demo test bench fuzz reliability sample-data clean

all: test

setup: system $(STAMP)

system:
	@bash tools/ensure_system_packages.sh

$(STAMP): pyproject.toml setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[all]"
	$(PY) -m lenghu.calib.combine_kernel  # numba: compile the master-combine kernel into its disk cache
	$(PY) -m lenghu.convert.rice  # and the Rice coder of .fz files
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/lenghu demo --out $(DEMO_OUT)

# The test run records its fault, fuzzing and security cases (tests/faults/reliability.py);
# docs/reliability.md is rendered from them whatever the outcome, and the run's status kept.
test: setup
	$(PY) -m pytest -q -n 2 --durations=15 $(PYTEST_ARGS); status=$$?; \
	$(PY) tools/reliability_table.py || status=1; exit $$status

# Long fuzzing before a release: the `fuzz` hypothesis profile (2000 examples per fuzzer).
fuzz: setup
	HYPOTHESIS_PROFILE=fuzz LENGHU_RELIABILITY_JSON=build/reliability-fuzz.json \
	$(PY) -m pytest -q -n 2 tests/fuzz $(PYTEST_ARGS); status=$$?; \
	$(PY) tools/reliability_table.py || status=1; exit $$status

reliability:
	$(PY) tools/reliability_table.py

bench: setup
	$(PY) benchmarks/run.py --out BENCHMARKS.md

sample-data: setup
	bash sample_data/make_sample_data.sh

clean:
	rm -rf $(DEMO_OUT) build dist *.egg-info .pytest_cache
