# The two commands of the README: `make up` runs mesh, `make test` runs every test (the fast
# tier in parallel, then the rest).
# Both create .venv and install mesh and the bundled plugins into it first.
# `make test-fast` is the quick tier to run while working: ruff and the tests on the in-process
# bus and SQLite, leaving out those marked slow (processes, a browser, mypy, Node.js, benches),
# browser, rabbitmq and postgres; on every core (pytest-xdist).

VENV   := .venv
PYTHON ?= python3
PLUGINS := $(sort $(dir $(wildcard plugins/*/pyproject.toml)))
STAMP  := $(VENV)/.installed
FAST   := not slow and not browser and not rabbitmq and not postgres
# The official AsyncAPI parser, which the tests run over `mesh contracts asyncapi`.
VALIDATOR := tools/asyncapi-validate
NODE_STAMP := $(VALIDATOR)/node_modules/.installed
# Docker Compose v2, which the tests check docker-compose.yml with; Mermaid, which they render
# the docs' diagrams with.
COMPOSE_V2 := $(VENV)/bin/docker-compose-v2
MERMAID := $(VENV)/share/mermaid/mermaid.min.js

$(STAMP): pyproject.toml $(wildcard plugins/*/pyproject.toml)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check --config-settings editable_mode=compat -e ".[dev]" $(foreach p,$(PLUGINS),-e $(p))
	touch $(STAMP)

$(NODE_STAMP): $(VALIDATOR)/package.json $(VALIDATOR)/package-lock.json
	@command -v npm >/dev/null || { echo "make: npm (Node.js 18+) is needed to install $(VALIDATOR)" >&2; exit 1; }
	npm ci --prefix $(VALIDATOR) --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

$(COMPOSE_V2): scripts/install-compose-v2 | $(STAMP)
	scripts/install-compose-v2 $(VENV)/bin/python $@

$(MERMAID): scripts/install-mermaid | $(STAMP)
	scripts/install-mermaid $@

.PHONY: install up test test-fast lint bench
install: $(STAMP) $(NODE_STAMP) $(COMPOSE_V2) $(MERMAID)

up: $(STAMP)
	$(VENV)/bin/mesh up

test: $(STAMP) $(NODE_STAMP) $(COMPOSE_V2) $(MERMAID)
	scripts/install-system-deps
	scripts/ensure-services
	$(VENV)/bin/ruff check .
	@# Two runs, every test once: the fast tier on every core, then the rest one at a time
	@# (processes, brokers, browsers: their timings assume a machine to themselves). Both run
	@# even when the first fails; "no tests collected" (exit 5) in either is not a failure.
	status=0; \
	$(VENV)/bin/pytest -p no:cacheprovider -m "$(FAST)" -n auto $(PYTEST_ARGS) || status=$$?; \
	[ $$status = 5 ] && status=0; \
	$(VENV)/bin/pytest -p no:cacheprovider -m "not ($(FAST))" $(PYTEST_ARGS) || rest=$$?; \
	[ "$${rest:-0}" = 5 ] || [ "$${rest:-0}" = 0 ] || status=$$rest; \
	exit $$status

test-fast: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -p no:cacheprovider -m "$(FAST)" -n auto $(PYTEST_ARGS)

bench: $(STAMP)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check --config-settings editable_mode=compat -e ".[bench]"
	scripts/ensure-services
	$(VENV)/bin/python -m bench rpc
	$(VENV)/bin/python -m bench startup
	$(VENV)/bin/python -m bench fanout
	$(VENV)/bin/python -m bench tasks
	$(VENV)/bin/python -m bench shell
	$(VENV)/bin/python -m bench memory
	$(VENV)/bin/python -m bench abuse
