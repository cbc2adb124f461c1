# The two commands of the README: `make demo` (end-to-end run) and `make test` (the suite);
# `make docs` rewrites the generated parts of the documentation (tools/make_docs.py).
# Both create or reuse the virtual environment $(VENV) and install what is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements.txt
export PYOPENGL_PLATFORM ?= osmesa

.PHONY: venv test test-fast demo docs

venv: $(STAMP)

# Reinstall only when requirements.txt changed since the last successful install.
$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt
	cp requirements.txt $(STAMP)

test: venv
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: venv
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

demo: venv
	$(PY) -m tools.run_demo

docs: venv
	$(PY) -m tools.make_docs
