# make demo | test | lint | generate. Each target creates .venv and installs spane with its
# dev tools when needed (again only when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Some machines set PYTHONDONTWRITEBYTECODE: every `spane` process (the suite starts thousands,
# workers and CLI calls) would then compile spane's sources again, a third of its start time.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test lint generate venv

venv: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(BIN)/spane validate workflows/*.yaml workflows/sub/*.yaml
	$(BIN)/spane graph workflows/expense-approval.yaml
	$(BIN)/spane run --local workflows/etl.yaml
	$(BIN)/spane run --local workflows/expense-approval.yaml -i amount=1500
	$(BIN)/spane run --local workflows/dynamic-loop.yaml -o json
	$(BIN)/spane run --local workflows/subworkflow.yaml -i name=operator
	$(BIN)/spane run --local workflows/retry.yaml
	$(BIN)/spane run --local workflows/delay.yaml
	$(BIN)/spane list --limit 6

# The whole suite, one pytest process per core; then the tests that measure rates against the
# clock (marker `timing`), alone on a quiet machine; then lint (a few seconds). pytest exits 5
# when it collected no tests: that is a failure too, with a clear message.
test: $(STAMP)
	@status=0; $(BIN)/pytest -q -n auto --dist worksteal -m "not timing" || status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	[ $$status -eq 0 ] || exit $$status; \
	$(BIN)/pytest -q -m timing || status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no timing tests" >&2; fi; \
	exit $$status
	@$(MAKE) --no-print-directory lint

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/mypy scripts/generate.py scripts/language_reference.py scripts/operator_bench.py scripts/fault_injection.py scripts/storage_cost.py

generate: $(STAMP)
	$(BIN)/python scripts/generate.py
