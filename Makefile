# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates .venv when missing and installs what it needs: torch==2.13.0
# first (the local CPU build), then the package with its extras.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test install clean chromium

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0

$(VENV)/.installed: $(PY) pyproject.toml
	$(PIP) install -e ".[faces,provenance]"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -e ".[faces,detect,train,live,speed,scale,provenance,webapp,dev]"
	touch $@

# The web app's browser test drives the system's chromium (Debian's package), installed once
# with apt-get when missing; playwright's own browser download is never used.
chromium:
	@command -v chromium >/dev/null 2>&1 || test -x /usr/bin/chromium || \
		{ $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq chromium; }

install: $(VENV)/.installed

# `make demo CHECKPOINT=vox-cpk.pth.tar [CONFIG=vox-256]` adds a FOMM animation to the demo.
CONFIG ?= vox-256
demo: $(VENV)/.installed
	$(VENV)/bin/fakelab demo $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT) --config $(CONFIG))

test: $(VENV)/.installed-dev chromium
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build src/*.egg-info
