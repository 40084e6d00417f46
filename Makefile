# The commands of the README: `make demo`, `make test` (the whole suite, what CI runs) and `make test-fast`.
# Each creates .venv when missing and installs the project into it.
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch/torchvision are installed first and pinned here (the versions this project is tested with;
# on the development machines they install from local files). Override on other platforms:
#   make test TORCH="torch torchvision"
TORCH  ?= torch==2.14.1 torchvision==0.29.1
DEMO_OUT ?= runs

.PHONY: demo test test-fast install clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

demo: install
	$(VENV)/bin/imgcls train examples/ants_bees --strategy feature-extraction --epochs 5 --out $(DEMO_OUT) --name demo

test: install
	$(PY) -m pytest -q

# The suite without the tests marked slow (real photos, full training runs, browsers): for the edit-test loop.
test-fast: install
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) runs .pytest_cache
