# VESSA: `make demo` and `make test` work on a fresh machine (Python 3.11, pip, no GPU needed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: demo test test-all install clean

install: $(STAMP)

# torch first, then sam2 without build isolation (its build must not pull another torch), then the rest.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip<26" setuptools wheel
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1 "numpy<2"
	$(PIP) install -q --no-build-isolation sam2==1.1.0
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/vessa demo

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" --timeout=900

test-all: $(STAMP)
	$(PY) -m pytest -q --timeout=1800

clean:
	rm -rf runs sample_data models/*.pt eval
