# Two entry points, each sets up (or refreshes) .venv and builds the Cython core first:
#   make demo   - run the main job
#   make test   - run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: demo test venv bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel

venv: $(PY)
	$(PY) -m pip install -q -e '.[test]'

demo: venv
	$(PY) -m ccfast demo $(DEMO_ARGS)

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

bench: venv
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) -m bench.core --quick
	$(PY) -m bench.esl --quick

clean:
	rm -rf build $(VENV) ccfast/*.c ccfast/*/*.c ccfast/*.so ccfast/*/*.so
