# make lab   set up .venv and open the course in JupyterLab
# make test  set up .venv and run every test (unit, notebooks, browser)
# make demo  set up .venv and run the headless CT demo
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The stamp is keyed on the files that decide what gets installed, so set-up is a
# no-op (seconds) when nothing changed and reruns when they do.
# JupyterLab refuses to run as root unless told (containers, Binder-like boxes).
LAB_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root,)
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)

.PHONY: setup chromium lab test demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $@

lab: setup
	$(BIN)/jupyter lab $(LAB_FLAGS) notebooks/

# The browser tests drive Debian's Chromium (pip's playwright cannot download browsers
# offline); install it with apt where it is missing, or say how.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	    if command -v apt-get >/dev/null; then \
	        SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	        $$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends chromium; \
	    else echo "no /usr/bin/chromium and no apt-get: the browser tests will say what to install"; fi; \
	fi

test: setup chromium
	$(BIN)/python -m pytest

demo: setup
	$(BIN)/oder-edu demo

# BM3D (bench priors' classical anchor) is free for non-commercial use only: installed here, never by setup.
bench: setup
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[bm3d]"
	$(BIN)/oder-edu bench physics
	$(BIN)/oder-edu bench widgets --sweep
	$(BIN)/oder-edu bench oder
	$(BIN)/oder-edu bench priors
	$(BIN)/oder-edu bench notebooks

clean:
	rm -rf $(VENV) build dist *.egg-info
