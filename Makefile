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
# Processes started by `make run` (their command lines: Procfile.dev); the
# bundled Redis only when REDIS_URL is unset.
PROCS := web worker beat agent ssh ports
ifeq ($(strip $(REDIS_URL)),)
PROCS := redis $(PROCS)
endif

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

# uv installs the requirements (pinned below, itself from PyPI through pip): the
# same versions pip resolves, about three times faster on a fresh machine (66 s
# against 207 s here, most of either compiling bytecode). Bytecode is compiled at
# install: where PYTHONDONTWRITEBYTECODE is set (CI) every process would otherwise
# compile Django and the rest again at each start.
UV_VERSION := 0.13.9
UV := $(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode

$(BIN)/.installed: requirements.txt requirements-dev.txt cli/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/pip install --quiet "uv==$(UV_VERSION)"
	$(UV) -r requirements-dev.txt
	@# The `aladdin` command-line client (cli/, docs/cli.md), editable: .venv/bin/aladdin runs cli/.
	$(UV) -e ./cli
	@touch $@

.PHONY: venv
venv: $(BIN)/.installed ## Create .venv and install the requirements

# The debugger GPU Debug jobs run under (aladdin/cluster/debugger.py): debugpy's universal
# wheel (no compiled parts: it runs under any image's Python), pinned, outside .venv (the
# portal never imports it), world-readable: the agent binds it read-only into a debug job's
# sandbox. ALADDIN_DEBUGPY_DIR (settings.DEBUGPY_DIR) names it for the agent.
DEBUGPY_VERSION := 1.8.21
DEBUGPY_DIR ?= $(or $(ALADDIN_DEBUGPY_DIR),/opt/aladdin/tools/debugpy)

.PHONY: debugpy
debugpy: venv ## Install the debugger of GPU Debug jobs into DEBUGPY_DIR (default /opt/aladdin/tools/debugpy)
	@if [ ! -d "$(DEBUGPY_DIR)/debugpy-$(DEBUGPY_VERSION).dist-info" ]; then \
	  $(BIN)/pip install --quiet --no-deps --only-binary=:all: --platform any --python-version 3.8 \
	    --implementation py --upgrade --target "$(DEBUGPY_DIR)" "debugpy==$(DEBUGPY_VERSION)" && \
	  chmod -R a+rX "$(DEBUGPY_DIR)"; \
	fi

.PHONY: system-run-deps
# rsync: `rsync -e ssh` runs `rsync --server` inside the workshop's sandbox, which sees the host's /usr.
# patchelf: the agent relocates the Python it copies into each image (aladdin/cluster/agent/images.py).
# slirp4netns, nftables: workloads' outbound network and its deny rules (aladdin/cluster/egress.py).
system-run-deps: ## Install Debian packages the portal needs (bubblewrap, patchelf, slirp4netns, nftables; sftp-server and rsync for the SSH gateway)
	@bash scripts/apt-ensure.sh bubblewrap patchelf slirp4netns nftables openssh-sftp-server rsync

.PHONY: system-test-deps
system-test-deps: ## Install Debian packages the tests need (chromium, CJK font, PostgreSQL, bubblewrap, patchelf, slirp4netns, nftables, OpenSSH client and sftp-server, rsync)
	@bash scripts/apt-ensure.sh chromium fonts-wqy-microhei postgresql bubblewrap patchelf slirp4netns nftables openssh-client openssh-sftp-server rsync
	@# axe-core for the browser tests' accessibility checks (package.json, pinned by package-lock.json).
	@command -v npm >/dev/null || bash scripts/apt-ensure.sh npm
	@[ -f node_modules/axe-core/axe.min.js ] || npm ci --no-audit --no-fund --silent

.PHONY: migrate
migrate: venv ## Apply database migrations and load catalog data
	umask 077; DEBUG=$${DEBUG:-1} $(BIN)/python manage.py migrate --noinput
	umask 077; DEBUG=$${DEBUG:-1} $(BIN)/python manage.py load_catalog

.PHONY: run
run: venv debugpy system-run-deps migrate ## Start the whole portal in the foreground (Ctrl-C stops it)
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
# Test processes (pytest-xdist): each gets its own Redis, databases, sandbox uid
# range and cgroup group (tests/services_plugin.py). 3 on this 2-core machine:
# with 2 the cores were a third idle (tests wait on servers, agents and
# sandboxes), and 3 ran the suite in 800-850 s against 956 s;
# TEST_WORKERS=0 runs everything in one process. A worker takes whole
# files, and the files on the torch image go to one worker, which builds it
# once (tests/scheduling.py: --dist loadgroup cannot, while pytest-xdist 3.8
# renames items the pre-pytest-9 way).
TEST_WORKERS ?= 3

.PHONY: test
test: venv debugpy system-test-deps typecheck bytecode ## Run mypy, then the whole test suite (unit, PostgreSQL, browser)
	HYPOTHESIS_PROFILE=ci $(BIN)/pytest -n $(TEST_WORKERS)

# The portal's own modules compiled once (1 s): the suite starts hundreds of
# Django processes (agents, servers, manage.py), and where
# PYTHONDONTWRITEBYTECODE is set, as on CI, each compiled them again: 0.5 s of
# CPU per start. Python still checks each .pyc against its source.
.PHONY: bytecode
bytecode: venv
	$(BIN)/python -m compileall -q -j 0 aladdin billing gpu_jobs storage workshops cli scripts tests manage.py

.PHONY: test-nightly
test-nightly: venv debugpy system-test-deps typecheck bytecode ## The whole suite with 500 Hypothesis examples and the nightly tier
	HYPOTHESIS_PROFILE=nightly $(BIN)/pytest -n $(TEST_WORKERS)

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

.PHONY: bench-image-start
bench-image-start: venv system-test-deps ## Start a workload on a built image vs. the bare sandbox (ARGS="--repeats 15")
	$(BIN)/python bench/image_start.py $(ARGS)

.PHONY: bench-task-start
bench-task-start: venv system-run-deps ## Run Task: submit -> all N workers running (N = 1, 2, 4) vs. one GPU Run (ARGS="--repeats 10")
	$(BIN)/python bench/task_start.py $(ARGS)

.PHONY: bench-port-proxy
bench-port-proxy: venv system-run-deps ## A job's port through the port proxy vs. directly in its sandbox: 256 MiB and 1 GiB downloads, small-request latency (ARGS="--repeats 5")
	$(BIN)/python bench/port_proxy.py $(ARGS)

.PHONY: bench-limits
bench-limits: venv system-run-deps ## Cost of the local resource limits: CPU- and memory-bound payloads in the sandbox with vs. without their cgroup (ARGS="--repeats 5")
	$(BIN)/python bench/limits.py $(ARGS)

# deploy/kubernetes/ (docs/operations.md "Kubernetes"): every object against Kubernetes 1.34's
# schema in strict mode, plus the RBAC, security and consistency checks; then, where kubectl is
# installed, kustomize renders both kustomizations (no cluster needed for either).
.PHONY: k8s-validate
k8s-validate: venv ## Check the Kubernetes manifests (strict 1.34 schema, RBAC, security; kustomize render if kubectl is here)
	$(BIN)/pytest tests/deploy -q
	@if command -v kubectl >/dev/null; then \
	  kubectl kustomize deploy/kubernetes >/dev/null && kubectl kustomize deploy/kubernetes/migrate >/dev/null && \
	  echo "kustomize: deploy/kubernetes and deploy/kubernetes/migrate render"; \
	fi

.PHONY: bench-kube-watch
bench-kube-watch: venv ## Pod informer: 10,000 pods and 1,000 status changes/s for 10 min against the API-server stub; a re-list vs. json.loads (ARGS="--seconds 60")
	$(BIN)/python bench/kube_watch.py $(ARGS)

.PHONY: lint
lint: venv ## ruff format --check and ruff check
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

.PHONY: fmt
fmt: venv ## Format and fix with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: messages
messages: venv ## Update the translation catalogs from the code, then compile zh-hans (translate the new entries in between)
	DEBUG=1 $(BIN)/python manage.py makemessages -l zh_Hans -l en --no-obsolete -i ".venv/*"
	DEBUG=1 $(BIN)/python manage.py compilemessages -l zh_Hans -i .venv

.PHONY: superuser
superuser: venv ## Create a staff account for the back office
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py createsuperuser

.PHONY: clean
clean: ## Remove var/ (database, volumes, logs) — destroys local data
	rm -rf var/
