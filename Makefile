# The two commands of the README: `make demo` and `make test`. Everything else they
# need (a virtual environment, the locked dependencies, PostgreSQL itself) is installed
# from here, so a fresh machine with Python 3.11+ is enough.

PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
UV_VERSION := 0.13.8
VENV := .venv
PYTEST_ARGS ?=
DEMO_SCALE ?= 1

export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
export UV_PYTHON_DOWNLOADS := never
export UV_NO_PROGRESS := 1

.PHONY: install demo test test-fast bench lint format lock clean

$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "pgwarden needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2; exit 2; }
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check 'uv==$(UV_VERSION)'

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --all-extras --python $(PYTHON)
	@touch $@

install: $(VENV)/.synced

# The embedded server, then learnhub: a database created, migrated and seeded as the
# server's superuser, and driven by its workload through the API's own role,
# learnhub_app; then pgwarden's view of it (the doctor, run as the superuser, is told
# which role the application uses), its migrations' status and lint weighed on the live
# tables, and its jobs run on a fast schedule with the embedded server as broker.
demo: install
	$(VENV)/bin/pgwarden server start
	PYTHONPATH=examples/learnhub $(VENV)/bin/python -m learnhub demo \
		--database-url "$$($(VENV)/bin/pgwarden server url)" --scale $(DEMO_SCALE)
	$(VENV)/bin/pgwarden --database-url "$$($(VENV)/bin/pgwarden server url --database learnhub)" ping
	$(VENV)/bin/pgwarden --database-url "$$($(VENV)/bin/pgwarden server url --database learnhub)" doctor \
		--set rls_bypassed.role=learnhub_app
	$(VENV)/bin/pgwarden --database-url "$$($(VENV)/bin/pgwarden server url --database learnhub)" advise indexes
	PYTHONPATH=examples/learnhub $(VENV)/bin/pgwarden \
		--database-url "$$($(VENV)/bin/pgwarden server url --database learnhub)" \
		migrations status -c examples/learnhub/alembic.ini
	PYTHONPATH=examples/learnhub $(VENV)/bin/pgwarden \
		--database-url "$$($(VENV)/bin/pgwarden server url --database learnhub)" \
		migrations lint examples/learnhub/alembic.ini --show medium
	DATABASE_URL="$$($(VENV)/bin/pgwarden server url --database learnhub)" \
		$(VENV)/bin/python examples/schedule_demo.py
	$(VENV)/bin/pgwarden server status

# pytest exits 5 when a selection holds no test; that is not a failure here.
test: install
	$(VENV)/bin/pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

test-fast: PYTEST_ARGS += -m "not slow"
test-fast: test

# Benchmarks against their baselines (see bench/); not part of `make test`.
bench: install
	$(VENV)/bin/python bench/observe_overhead.py
	$(VENV)/bin/python bench/doctor_scale.py
	$(VENV)/bin/python bench/api_load.py
	$(VENV)/bin/python bench/tasks_overhead.py
	$(VENV)/bin/python bench/orm_sessions.py

lint: install
	$(VENV)/bin/ruff check src tests examples bench
	$(VENV)/bin/ruff format --check src tests examples bench
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format src tests examples
	$(VENV)/bin/ruff check --fix src tests examples

lock: | $(UV)
	$(UV) lock

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
