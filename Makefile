# tritonfleet: `make serve` serves the fleet on this machine's CPU; `make test` runs every test against a
# real tritonserver. Both set everything up first (idempotent).
VENV ?= .venv
FLEET := $(VENV)/bin/fleet
STAMP := $(VENV)/.setup-done

.PHONY: setup build validate serve test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh setup.py $(wildcard tritonfleet/pipelines/*/pipeline.py)
	VENV=$(VENV) scripts/setup.sh
	touch $@

build: setup
	$(FLEET) build

validate: setup
	$(FLEET) validate

serve: build
	$(FLEET) serve $(SERVE_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: build lint validate
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: build
	$(FLEET) bench all

clean:
	rm -rf $(VENV) reports .pytest_cache
