# VESSA: `make demo` and `make test` work on a fresh machine (Python 3.11, pip, no GPU needed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: demo test test-all install pacs clean

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

# --timeout guards against hangs: generous, since on 2 shared cores torch's threads run up to ~11x slower (the
# 72 s stage-1 fixture took 797 s beside a 2-thread training and `yes`).
# the venv's bin first on PATH: MONAI Label finds dcmqi's itkimage2segimage there (DICOM SEG)
test: $(STAMP) pacs
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q -m "not slow" --timeout=1800 --durations=12

test-all: $(STAMP) pacs
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q --timeout=1800

# Orthanc and its DICOMweb plugin (Debian packages) for the PACS tests: installed when absent and root, else those tests skip.
pacs: $(STAMP)
	@$(PY) -c "import sys; sys.path.insert(0, 'tests'); import pacs; r = pacs.ensure_orthanc(); print('PACS tests: ' + (r or 'Orthanc ready'))"

clean:  # keeps the shipped models/vessa_base.pt
	rm -rf runs sample_data eval models/*/
	find models -maxdepth 1 -name '*.pt' ! -name vessa_base.pt -delete
