# The two commands of the README. Both set up what is missing first.
SHELL := /bin/bash
VENV := .venv/bin
HIVE_HOME ?= .hive

.PHONY: setup run test lint typecheck pytest bench clean

setup:
	@bash scripts/setup.sh

run: setup
	$(VENV)/hive-c0re up --home $(HIVE_HOME) $(if $(ANTHROPIC_API_KEY),,--demo)

test: setup lint typecheck pytest

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .

typecheck:
	$(VENV)/mypy .build/typecheck/hyperhive tests $(wildcard bench/*.py)
	cd .build/typecheck && ../../$(VENV)/lint-imports ../../pyproject.toml

pytest:
	$(VENV)/pytest -q $(PYTEST_ARGS)

bench: setup
	$(VENV)/python bench/broker.py
	$(VENV)/python bench/reconcile.py
	$(VENV)/python bench/dashboard.py
	$(VENV)/python bench/harness.py

clean:
	rm -rf .venv .build .hive
