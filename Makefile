# One entry point. `make demo` and `make test` set everything up first (a .venv with Python 3.11,
# and livekit-server built by Go into ~/.cache/kit-go, installed into .venv/bin: kit/server.py).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lab clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m kit server --install
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m kit compare --scenario standup-4

test: $(STAMP)
	$(PY) -m kit server --install  # instant when installed; a venv made before the server was added gets it
	$(PY) -m pytest -q

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV) results
