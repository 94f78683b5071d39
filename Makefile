# tritonfleet: `make serve` serves the fleet on this machine's CPU; `make test` runs every test against a
# real tritonserver. Both set everything up first (idempotent).
VENV ?= .venv
FLEET := $(VENV)/bin/fleet
STAMP := $(VENV)/.setup-done
WEB := tritonfleet/console/web
CONSOLE := tritonfleet/console/static/index.html

.PHONY: setup build validate serve test lint bench clean image

setup: $(STAMP) $(CONSOLE)

$(STAMP): pyproject.toml scripts/setup.sh setup.py $(wildcard tritonfleet/pipelines/*/pipeline.py)
	VENV=$(VENV) scripts/setup.sh
	touch $@

# The console's bundle, again when its sources change (the set-up makes it the first time).
$(CONSOLE): $(WEB)/package-lock.json $(WEB)/build.mjs $(wildcard $(WEB)/src/*) | $(STAMP)
	scripts/setup.sh console

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

# The GPU image (needs Docker): every pin comes from docker/image.env, as build arguments.
IMAGE_ARGS = $(shell grep -E '^[A-Z_]+=' docker/image.env | sed 's/^/--build-arg /')
image:
	docker build $(IMAGE_ARGS) -f docker/Dockerfile -t tritonfleet-gpu:$(shell $(VENV)/bin/python -c \
		'import tomllib;print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])' 2>/dev/null || echo dev) .

bench: build
	$(FLEET) bench all

clean:
	rm -rf $(VENV) reports .pytest_cache
