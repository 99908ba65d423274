# One entry point. `make demo` and `make test` set everything up first (a .venv with Python 3.11,
# and livekit-server built by Go into ~/.cache/kit-go, installed into .venv/bin: kit/live/server.py).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test quick lab node clean

# The Node agent examples' packages, exactly as locked (examples/node/package-lock.json; needs node and
# npm), installed again only when package.json or the lockfile changes. package.json's allowScripts skips
# onnxruntime-node's postinstall (its CUDA provider, fetched from nuget.org; the CPU runtime is in the
# package); the variable does the same for older npm versions, which ignore allowScripts.
NODE_STAMP := examples/node/node_modules/.installed

$(NODE_STAMP): examples/node/package.json examples/node/package-lock.json
	cd examples/node && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
	touch $@

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m kit server --install
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m kit compare --scenario standup-4

# NODE_STAMP is defined above this rule: make expands a rule's prerequisites when it reads the rule.
test: $(STAMP) $(NODE_STAMP)
	$(PY) -m kit server --install  # instant when installed; a venv made before the server was added gets it
	$(PY) -m pytest -q -n 2 --dist loadgroup  # two workers: the heavy lane and the rest (docs/design.md)

# The inner loop: every test that needs no real-time replay, no livekit-server and no Node.js (under 2 minutes).
quick: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not replay and not server and not node and not slow"

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

node: $(NODE_STAMP)

clean:
	rm -rf $(VENV) results examples/node/node_modules
