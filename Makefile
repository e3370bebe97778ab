# The two commands of the README. Each sets up .venv first (idempotent, quick when done).
PROMPT ?= Once upon a time
PYTEST_ARGS ?=

.PHONY: demo test setup-demo setup-test

demo: setup-demo
	.venv/bin/tokensampler generate "$(PROMPT)" --top-p 0.9 --seed 1

test: setup-test
	.venv/bin/python -m pytest -q $(PYTEST_ARGS)

setup-demo:
	scripts/setup.sh demo

setup-test:
	scripts/setup.sh test,demo
