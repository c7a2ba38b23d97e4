# recbole_ext — the two commands: `make demo` (main job) and `make test`. Both install first if needed.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow benchmarks clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	# RecBole without its declared dependencies: they pull ray/hyperopt, which break on numpy 2.
	$(PY) -m pip install -q --no-deps recbole==1.2.1
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: install
	$(PY) -m recbole_ext.demo

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

clean:
	rm -rf $(VENV) log log_tensorboard saved/*.pth saved/results
