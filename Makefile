# Two entry points: `make run` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test peers lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The whole product on the built-in sandbox: a hot folder, inbound faxes to var/inbox.
run: $(STAMP)
	$(BIN)/faxgate run --demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The programs the tests run as real peers (tests/peers.txt), installed when missing.
peers:
	scripts/test-peers install

# Most tests wait on sockets, peers and daemons rather than compute: more workers than
# cores pays. Each worker has its own temporary folders, ports and PostgreSQL cluster.
TEST_WORKERS ?= 4

test: peers lint typecheck
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal

bench: $(STAMP)
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
