# recbole_ext — the two commands: `make demo` (main job) and `make test`. Both install first if needed.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install install-tune install-zoo demo test test-zoo test-slow test-pandas3 clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	# RecBole without its declared dependencies: they pull ray/hyperopt, which break on numpy 2.
	$(PY) -m pip install -q --no-deps recbole==1.2.1
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The optional Ray Tune extra (run_hyper.py); the test-suite runs a parallel search, so `make test` asks for it.
TUNE_STAMP := $(VENV)/.installed-tune
install-tune: $(TUNE_STAMP)

$(TUNE_STAMP): $(STAMP) requirements-tune.txt
	$(PY) -m pip install -q -r requirements-tune.txt
	touch $(TUNE_STAMP)

# The optional model-zoo extra (faiss, lightgbm, xgboost, hyperopt: wheels only); `make test-zoo` runs every
# RecBole model for one epoch (tests/test_model_zoo.py, marker `zoo`, its own CI step) with it.
ZOO_STAMP := $(VENV)/.installed-zoo
install-zoo: $(ZOO_STAMP)

$(ZOO_STAMP): $(STAMP) requirements-zoo.txt
	$(PY) -m pip install -q -r requirements-zoo.txt
	touch $(ZOO_STAMP)

demo: install
	$(PY) -m recbole_ext.demo

test: install install-tune
	$(PY) -m pytest -q

test-zoo: install install-zoo
	$(PY) -m pytest -q -m zoo tests/test_model_zoo.py

test-slow: install
	$(PY) -m pytest -q -m slow

clean:
	rm -rf $(VENV) log log_tensorboard saved/*.pth saved/results

# The same test-suite on pandas 3 (Copy-on-Write), in a separate environment.
VENV3 := .venv-pandas3
test-pandas3:
	test -x $(VENV3)/bin/python || $(PYTHON) -m venv $(VENV3)
	$(VENV3)/bin/python -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(VENV3)/bin/python -m pip install -q "pandas==3.1.1"
	$(VENV3)/bin/python -m pip install -q --no-deps recbole==1.2.1
	$(VENV3)/bin/python -m pip install -q --no-deps --no-build-isolation -e .
	$(VENV3)/bin/python -m pytest -q $(PYTEST_ARGS)
