# The two commands of the README. Each does all the set-up it needs first.
#   make examples   run the example virtual-home suite (builds images on first use)
#   make test       run the project's tests
.PHONY: setup examples test lint

PYTEST_ARGS ?=

setup:
	@scripts/setup

examples: setup
	.venv/bin/python -m pytest -p no:cacheprovider examples $(PYTEST_ARGS)

test: setup
	.venv/bin/python -m pytest -n 4 tests $(PYTEST_ARGS)

lint: setup
	.venv/bin/ruff check .
	scripts/check-structure
