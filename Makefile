# Two entry points, each sets up (or refreshes) .venv and builds the Cython core first:
#   make demo   - run the main job: `ccfast demo` for DEMO_DURATION seconds (default 60), then a summary
#   make test   - run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

DEMO_DURATION ?= 60

.PHONY: demo demo-example test venv bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel

venv: $(PY)
	$(PY) -m pip install -q -e '.[test]'

demo: venv
	$(PY) -m ccfast demo --duration $(DEMO_DURATION) $(DEMO_ARGS)

# rewrite examples/demo/callcenter.conf.xml from ccfast/demo/scenario.py (tests/test_demo.py keeps them equal)
demo-example:
	$(PY) -c 'import sys; from ccfast.demo.scenario import sample_config; sys.stdout.write(sample_config())' > examples/demo/callcenter.conf.xml

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

bench: venv
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) -m bench.core --quick
	$(PY) -m bench.esl --quick

clean:
	rm -rf build $(VENV) ccfast/*.c ccfast/*/*.c ccfast/*.so ccfast/*/*.so
