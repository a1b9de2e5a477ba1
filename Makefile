# AetherLink monitoring stack: the entry points.
#   make test   - install what is missing, then lint + unit tests + every Molecule scenario + browser checks
#   make up     - the whole stack in a local sandbox, verified
#   make down   - remove the sandbox
#   make browser - the sandbox's web pages checked in headless Chromium (part of make test)
#   make bench-app|bench-smoke|bench-metrics|bench-rules|bench-deploy - the benchmarks
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help tools setup image lint unit molecule test up down browser clean bench-app bench-smoke bench-metrics bench-rules bench-deploy

help:
	@grep -E '^#   make' Makefile | sed 's/^#   //'

tools:             ## Debian packages, venv, promtool/amtool: what lint and unit need (no Docker)
	bash scripts/setup.sh --tools

setup:             ## tools + Docker engine + base image: what the Molecule scenarios need
	bash scripts/setup.sh

image:             ## (re)use or build the systemd base image
	bash scripts/build-image.sh

lint: tools        ## yamllint + ansible-lint (production profile)
	yamllint --strict .
	ansible-lint

unit: tools        ## controller-side tests (promtool rule tests, templates) and the app's tests
	python -m pytest tests -q -p no:cacheprovider --ignore=tests/browser
	python -m pytest app/tests -q -p no:cacheprovider

molecule: setup    ## one scenario: make molecule ROLE=prometheus [SCENARIO=default]
	cd roles/$(ROLE) && molecule test --scenario-name $(or $(SCENARIO),default)

test: setup        ## everything, as CI runs it
	bash scripts/test.sh

up: setup          ## the whole stack in a local sandbox (containers on this machine), verified
	ansible-playbook -i inventories/local playbooks/sandbox_up.yml

browser: setup     ## the sandbox (deployed with shortened alert durations) read in headless Chromium: tests/browser
	bash scripts/browser.sh

down: tools        ## remove the sandbox's containers and network (the image and secrets stay)
	ansible-playbook -i inventories/local playbooks/sandbox_down.yml

clean:
	-for role in roles/*/molecule; do (cd $$role/.. && molecule destroy); done
	rm -rf .cache

# Benchmarks (benchmarks/README.md: what each measures, options, results). Not
# part of `make test`: timings belong here, not in tests. BENCH_ARGS passes options.
bench-app: tools     ## the API's latency and throughput
	python benchmarks/app_bench.py $(BENCH_ARGS)

bench-smoke: tools   ## the smoke traffic sender's requests/s
	python benchmarks/smoke_bench.py --sender-python /usr/bin/python3 $(BENCH_ARGS)

bench-metrics: tools ## the API's /metrics at 100 / 1k / 10k tenants, and queries during scrapes
	python benchmarks/metrics_bench.py $(BENCH_ARGS)

bench-rules: tools   ## rule evaluation, dashboard refresh and billing cost, recorded vs raw, 100 / 1k / 10k tenants
	python benchmarks/rules_bench.py $(or $(BENCH_ARGS),--tenants 100,1000,10000 --step 15,10000:60)

bench-deploy: setup  ## site.yml rerun and rules-only change on the sandbox (run `make up` first)
	python benchmarks/deploy_bench.py $(BENCH_ARGS)
