# AetherLink monitoring stack: the entry points.
#   make test   - install what is missing, then lint + unit tests + every Molecule scenario
#   make up     - the whole stack in a local sandbox, verified
#   make down   - remove the sandbox
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help tools setup image lint unit molecule test up down clean

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
	python -m pytest tests -q -p no:cacheprovider
	python -m pytest app/tests -q -p no:cacheprovider

molecule: setup    ## one scenario: make molecule ROLE=prometheus [SCENARIO=default]
	cd roles/$(ROLE) && molecule test --scenario-name $(or $(SCENARIO),default)

test: setup        ## everything, as CI runs it
	bash scripts/test.sh

up: setup          ## the whole stack in a local sandbox (containers on this machine), verified
	ansible-playbook -i inventories/local playbooks/sandbox_up.yml

down: tools        ## remove the sandbox's containers and network (the image and secrets stay)
	ansible-playbook -i inventories/local playbooks/sandbox_down.yml

clean:
	-for role in roles/*/molecule; do (cd $$role/.. && molecule destroy); done
	rm -rf .cache
