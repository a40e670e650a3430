# The two commands of the README: `make up` runs mesh, `make test` runs every test.
# Both create .venv and install mesh and the bundled plugins into it first.

VENV   := .venv
PYTHON ?= python3
PLUGINS := $(sort $(dir $(wildcard plugins/*/pyproject.toml)))
STAMP  := $(VENV)/.installed

$(STAMP): pyproject.toml $(wildcard plugins/*/pyproject.toml)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check --config-settings editable_mode=compat -e ".[dev]" $(foreach p,$(PLUGINS),-e $(p))
	touch $(STAMP)

.PHONY: install up test lint bench
install: $(STAMP)

up: $(STAMP)
	$(VENV)/bin/mesh up

test: $(STAMP)
	scripts/ensure-services
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -p no:cacheprovider $(PYTEST_ARGS)

bench: $(STAMP)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check --config-settings editable_mode=compat -e ".[bench]"
	scripts/ensure-services
	$(VENV)/bin/python -m bench rpc
	$(VENV)/bin/python -m bench startup
	$(VENV)/bin/python -m bench tasks
