# Confide — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench soak openapi migrate clean venv lock

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/confide migrate
	$(BIN)/confide serve

migrate: $(STAMP)
	$(BIN)/confide migrate

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest
	# crypto/ and audit/ are held to 100 % branch coverage.
	$(BIN)/coverage report --include='crypto/*,audit/*' --fail-under=100 --skip-covered --show-missing

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m tests.bench

# Checklist L-06 (nightly, not per change): the mixed workload held 30 minutes; prints its
# figures (memory, descriptors and database connections before and after) without writing
# BENCHMARKS.md.
soak: $(STAMP)
	BENCH_MIX_S=1800 BENCH_MIX_ENVELOPES=100000 $(BIN)/python -m tests.bench.bench_mixed

# Re-pin after changing dependencies (needs uv: `pip install uv`). The image's lock is the
# runtime subset of requirements.lock, same versions and hashes (tests/deploy checks it).
lock:
	uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 --universal -o requirements.lock
	uv pip compile pyproject.toml deploy/build-requirements.in -c requirements.lock --generate-hashes \
		--python-version 3.11 --universal -o deploy/requirements-image.lock

openapi: $(STAMP)
	$(BIN)/confide openapi > openapi/openapi.json.tmp && mv openapi/openapi.json.tmp openapi/openapi.json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .coverage
