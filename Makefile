# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint install lock bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"

$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/carepath demo

test: $(STAMP)
	$(VENV)/bin/ruff check engine rules adapters tests bench examples
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

# Every benchmark (several minutes; figures and targets in docs/benchmarks.md). Runs them all,
# then fails if any missed its target.
bench: $(STAMP)
	@status=0; for b in validate_speed rules_speed core_speed ingest_speed dispatch_speed service_load; do \
		echo "== bench/$$b.py"; $(PY) bench/$$b.py || status=1; done; exit $$status

# Re-pin every dependency after changing pyproject.toml.
lock: $(PY)
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip freeze --exclude-editable | grep -v '^carepath' > constraints.txt.new
	(echo '# Exact versions installed by `make install` (pip install -c constraints.txt). Regenerate with `make lock`.'; cat constraints.txt.new) > constraints.txt
	rm constraints.txt.new

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
