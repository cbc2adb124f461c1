# The two commands of the README: `make demo` (end-to-end run) and `make test` (the suite);
# `make docs` rewrites the generated parts of the documentation (tools/make_docs.py).
# Both create or reuse the virtual environment $(VENV) and install what is missing; they do not
# activate it (run .venv/bin/python, or `. .venv/bin/activate` first).
# `make venv TORCH=cpu`: install the CPU-only torch/torchvision pair (PyTorch's own index,
# TORCH_CPU_INDEX) before requirements.txt; without TORCH, PyPI's default wheels (with CUDA).
# It acts when the environment is (re)installed: on a new $(VENV) or a changed requirements.txt.
PYTHON ?= python3
TORCH ?=
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements.txt
export PYOPENGL_PLATFORM ?= osmesa

ifneq ($(filter-out cpu,$(TORCH)),)
$(error TORCH=$(TORCH): the one choice is TORCH=cpu (the CPU-only torch/torchvision); leave TORCH unset for PyPI's default wheels)
endif

.PHONY: venv test test-fast demo docs detector app

venv: $(STAMP)

# Reinstall only when requirements.txt changed since the last successful install. With
# TORCH=cpu, torch and torchvision (requirements.txt's ranges) come from TORCH_CPU_INDEX first,
# so the second pip finds them installed.
$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
ifeq ($(TORCH),cpu)
	$(PY) -m pip install --index-url $(TORCH_CPU_INDEX) $$(grep -E '^torch(vision)?[<>=!~ ]' requirements.txt)
endif
	$(PY) -m pip install -r requirements.txt
	cp requirements.txt $(STAMP)

test: venv
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: venv
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# DEMO_ARGS="--amp off": fp32 (what a CPU without native bf16 gets); the report also goes to
# output/demo_report.json.
demo: venv
	$(PY) -m tools.run_demo $(DEMO_ARGS)

docs: venv
	$(PY) -m tools.make_docs

# The optional hand detector (demo.py --detector mediapipe; requirements-detector.txt). Its
# opencv-contrib-python overwrites the module cv2: put opencv-python-headless's back (same
# version, no Qt/X11), which mediapipe runs on as well.
detector: venv
	$(PY) -m pip install -r requirements-detector.txt
	$(PY) -m pip install --force-reinstall --no-deps \
		"opencv-python-headless==$$($(PY) -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))')"
	$(PY) -c "import cv2, mediapipe; print('detector ready: mediapipe', mediapipe.__version__, 'cv2', cv2.__version__)"

# The web demo on http://127.0.0.1:7860: make app CKPT=path/to/snapshot.pth.tar
# [APP_ARGS='--mano_root DIR --port N'] (docs/own_images.md "Web demo").
app: venv
	@test -n "$(CKPT)" || { echo "make app CKPT=path/to/snapshot.pth.tar [APP_ARGS='--mano_root DIR --port N']"; exit 2; }
	$(PY) app.py --checkpoint $(CKPT) $(APP_ARGS)
