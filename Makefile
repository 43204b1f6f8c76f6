# ETL Monitor — the two commands of the README, plus helpers.
#   make run    fresh machine → running platform (web + worker + beat) on SQLite and an embedded broker
#   make test   fresh machine → full test suite (SQLite by default; PostgreSQL/Redis when DATABASE_URL/REDIS_URL are set)
#   make bench  benchmarks in bench/ (figures go to docs/benchmarks.md)
#   make docs   the documentation site, built --strict into var/site (docs/testing.md)
#   make screenshots  the documentation's screenshots (docs/img/), taken by the browser tests on the demo data

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PORT ?= 8000

.PHONY: run test bench docs lint venv clean deploy-check image screenshots

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

venv: $(STAMP)

# One shell for the whole start, so that the first-run admin password (kept in a shell variable,
# never in a file) is repeated after migrations and demo data, just before the process logs
# flood the terminal. Links in emails and Slack point at this PORT unless ETL_MONITOR_BASE_URL says otherwise.
run: venv
	@export DEBUG=$${DEBUG:-true} ETL_MONITOR_BASE_URL=$${ETL_MONITOR_BASE_URL:-http://127.0.0.1:$(PORT)}; \
	set -e; \
	$(PY) manage.py migrate --noinput; \
	admin_notice="$$($(PY) manage.py ensure_admin)"; echo "$$admin_notice"; \
	$(PY) manage.py demo; \
	$(PY) manage.py collectstatic --noinput --verbosity 0; \
	echo; echo "$$admin_notice"; \
	echo "ETL Monitor on http://127.0.0.1:$(PORT)/admin/  (API docs: /api/docs/, health: /healthz /readyz)"; \
	echo "Links in notifications point at $$ETL_MONITOR_BASE_URL"; echo; \
	WEB_PORT=$(PORT) PATH="$(abspath $(VENV))/bin:$$PATH" exec $(VENV)/bin/honcho -f deploy/Procfile.dev start

test: venv
	@$(VENV)/bin/pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$status

bench: venv
	$(PY) bench/run.py

# The API reference's schema regenerated from the code first (docs/api/openapi.yaml: commit it when
# it changes), then the site; --strict turns every broken link, missing anchor and page left out
# of the navigation (mkdocs.yml, validation:) into a failure.
docs: venv
	$(PY) manage.py docs_schema
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --clean --site-dir var/site

# The browser tests of tests/browser/test_docs_screenshots.py walk the documented screens on the demo data (and
# test_anomaly_pages.py an anomaly incident on data of its own) and,
# with DOCS_SCREENSHOTS set, write them as the PNGs the docs embed (needs Chromium and chromedriver).
screenshots: venv
	DOCS_SCREENSHOTS=docs/img $(VENV)/bin/pytest tests/browser/test_docs_screenshots.py tests/browser/test_onboarding_journey.py tests/browser/test_anomaly_pages.py -q -p no:cacheprovider

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

# Offline validation of deploy/ (yamllint, hadolint, compose schema, kustomize + kubernetes-validate,
# CRD schemas, promtool, checkov) in its own venv; and the container image built and run with podman.
deploy-check:
	bash .ci/deploy-check

image:
	bash .ci/image

clean:
	rm -rf $(VENV) .venv-deploy var .pytest_cache .ruff_cache
