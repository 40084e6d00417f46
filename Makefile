# The two commands of the README: `make demo` and `make test`.
# Each creates .venv when missing and installs the project into it.
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch/torchvision are installed first and pinned here (the versions this project is tested with;
# on the development machines they install from local files). Override on other platforms:
#   make test TORCH="torch torchvision"
TORCH  ?= torch==2.14.1 torchvision==0.29.1
DEMO_OUT ?= runs

.PHONY: demo test install clean

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

clean:
	rm -rf $(VENV) runs .pytest_cache
