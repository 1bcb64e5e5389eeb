# Aladdin portal. `make run` starts everything on one machine; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
export PORT
# The web port travels as ALADDIN_WEB_PORT (Procfile.dev, settings): Procfile runners
# such as honcho set PORT per process, so PORT alone could not name it.
export ALADDIN_WEB_PORT := $(PORT)
# Job payloads that need PyTorch (the manual's CUDA check) run in their own venv,
# made with Debian's /usr/bin/python3: its bin/python links to that interpreter,
# and a sandbox sees /usr and the venv, never pyenv under the host's /root nor
# this checkout (CI clones into a 0700 temp dir), hence a path under /opt.
# torch==2.13.0 is the CPU build that pip takes from local disk here (any other
# version downloads GBs of CUDA); numpy keeps torch from warning at import.
PAYLOAD_VENV ?= $(or $(ALADDIN_PAYLOAD_VENV),/opt/aladdin/payload-venv)
PAYLOAD_PACKAGES := torch==2.13.0 numpy==2.3.5
# The portal's settings map the torch images to this venv's Python.
export ALADDIN_PAYLOAD_VENV := $(PAYLOAD_VENV)

# Processes started by `make run`; the bundled Redis only when REDIS_URL is unset.
PROCS := web worker beat agent
ifeq ($(strip $(REDIS_URL)),)
PROCS := redis $(PROCS)
endif

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/.installed: requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	@touch $@

.PHONY: venv
venv: $(BIN)/.installed ## Create .venv and install the requirements

# Phony, with the installed pins in its stamp: a changed pin reinstalls.
.PHONY: payload-venv
payload-venv: ## Create the venv job payloads run in (torch CPU, numpy; PAYLOAD_VENV)
	@if [ "$$(cat $(PAYLOAD_VENV)/.installed 2>/dev/null)" = "$(PAYLOAD_PACKAGES)" ]; then \
		echo "Job-payload venv $(PAYLOAD_VENV) is up to date ($(PAYLOAD_PACKAGES))"; \
	else \
		set -e; umask 022; \
		bash scripts/apt-ensure.sh python3 python3-venv; \
		echo "Creating the job-payload venv $(PAYLOAD_VENV) with /usr/bin/python3: $(PAYLOAD_PACKAGES)"; \
		test -x $(PAYLOAD_VENV)/bin/python || /usr/bin/python3 -m venv $(PAYLOAD_VENV); \
		$(PAYLOAD_VENV)/bin/pip install --quiet $(PAYLOAD_PACKAGES); \
		echo "$(PAYLOAD_PACKAGES)" > $(PAYLOAD_VENV)/.installed; \
	fi

.PHONY: system-run-deps
# rsync: `rsync -e ssh` runs `rsync --server` inside the workshop's sandbox, which sees the host's /usr.
system-run-deps: ## Install Debian packages the portal needs (bubblewrap; sftp-server and rsync for the SSH gateway)
	@bash scripts/apt-ensure.sh bubblewrap openssh-sftp-server rsync

.PHONY: system-test-deps
system-test-deps: ## Install Debian packages the tests need (chromium, CJK font, PostgreSQL, bubblewrap, OpenSSH client and sftp-server, rsync)
	@bash scripts/apt-ensure.sh chromium fonts-wqy-microhei postgresql bubblewrap openssh-client openssh-sftp-server rsync

.PHONY: migrate
migrate: venv ## Apply database migrations and load catalog data
	umask 077; DEBUG=$${DEBUG:-1} $(BIN)/python manage.py migrate --noinput
	umask 077; DEBUG=$${DEBUG:-1} $(BIN)/python manage.py load_catalog

.PHONY: run
run: venv system-run-deps payload-venv migrate ## Start the whole portal in the foreground (Ctrl-C stops it)
	@echo ""
	@echo "  Aladdin is starting at http://127.0.0.1:$(PORT)/  (processes: $(PROCS))"
	@echo "  SMS codes are printed in this log (console SMS backend)."
	@echo ""
	@# supervisord (scripts/supervise.py) restarts a crashed process alone; umask 077: var/ is private.
	umask 077; DEBUG=$${DEBUG:-1} ALIPAY_SANDBOX=$${ALIPAY_SANDBOX-$$( [ -n "$$ALIPAY_APP_ID" ] || echo 1)} exec $(BIN)/python scripts/supervise.py $(PROCS) 2>&1

# mypy with django-stubs over the typed packages (pyproject.toml [tool.mypy] lists
# them). The plugin imports the settings, which need a SECRET_KEY outside DEBUG:
# a placeholder is enough (nothing is signed) and keeps var/secret_key unwritten.
# Cache in .mypy_cache/: about 20 s cold, 2 s warm.
.PHONY: typecheck
typecheck: venv ## mypy over services, selectors, aladdin/cluster and aladdin/workloads
	DEBUG=1 SECRET_KEY=typecheck-placeholder $(BIN)/mypy

# Hypothesis profiles (tests/conftest.py): `ci` (100 examples) here and in CI,
# `nightly` (500, and the tests marked `nightly`) in test-nightly.
# typecheck is a prerequisite: it runs (and must pass) before pytest starts.
.PHONY: test
test: venv system-test-deps payload-venv typecheck ## Run mypy, then the whole test suite (unit, PostgreSQL, browser)
	HYPOTHESIS_PROFILE=ci $(BIN)/pytest

.PHONY: test-nightly
test-nightly: venv system-test-deps payload-venv typecheck ## The whole suite with 500 Hypothesis examples and the nightly tier
	HYPOTHESIS_PROFILE=nightly $(BIN)/pytest

.PHONY: bench-load
bench-load: venv system-test-deps ## Load test: a few hundred students on the production server setup (docs/benchmarks.md)
	$(BIN)/pip install --quiet -r bench/requirements.txt
	$(BIN)/python bench/load_portal.py $(ARGS)

.PHONY: bench-ledger
bench-ledger: venv system-test-deps ## Ledger writes (metering tick, nightly storage charge) vs the raw writes, SQLite and PostgreSQL
	$(BIN)/python bench/ledger_writes.py $(ARGS)

# Debian's sshd is the baseline here only: `make run` never needs openssh-server.
.PHONY: bench-ssh
bench-ssh: venv system-test-deps ## scp (1 GiB) and keystrokes through the SSH gateway vs. Debian's sshd (ARGS="--sizes 256 1024")
	@bash scripts/apt-ensure.sh openssh-server
	$(BIN)/python bench/ssh_transfer.py $(or $(ARGS),--sizes 256 1024 --profile)

.PHONY: bench-limits
bench-limits: venv system-run-deps ## Cost of the local resource limits: CPU- and memory-bound payloads in the sandbox with vs. without their cgroup (ARGS="--repeats 5")
	$(BIN)/python bench/limits.py $(ARGS)

.PHONY: lint
lint: venv ## ruff format --check and ruff check
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

.PHONY: fmt
fmt: venv ## Format and fix with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: superuser
superuser: venv ## Create a staff account for the back office
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py createsuperuser

.PHONY: clean
clean: ## Remove var/ (database, volumes, logs) — destroys local data
	rm -rf var/
