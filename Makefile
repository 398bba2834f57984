# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates .venv when missing and installs what it needs: torch==2.13.0
# first (the local CPU build), then the package with its extras.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0

$(VENV)/.installed: $(PY) pyproject.toml
	$(PIP) install -e ".[faces]"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -e ".[faces,detect,train,live,speed,scale,dev]"
	touch $@

install: $(VENV)/.installed

# `make demo CHECKPOINT=vox-cpk.pth.tar [CONFIG=vox-256]` adds a FOMM animation to the demo.
CONFIG ?= vox-256
demo: $(VENV)/.installed
	$(VENV)/bin/fakelab demo $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT) --config $(CONFIG))

test: $(VENV)/.installed-dev
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build src/*.egg-info
