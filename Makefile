# The two commands of the README. Each sets up .venv first (idempotent, quick when done).
PROMPT ?= Once upon a time
PYTEST_ARGS ?=

.PHONY: demo test setup-demo setup-test

demo: setup-demo
	.venv/bin/tokensampler generate "$(PROMPT)" --top-p 0.9 --seed 1

# One worker a logical CPU, at most four (each holds torch and the interpreter's
# arrays); worksteal keeps the few minute-long tests from ending up on one
# worker. PYTEST_ARGS="-n 0" runs serially.
test: setup-test
	.venv/bin/python -m pytest -q -n logical --maxprocesses 4 --dist worksteal $(PYTEST_ARGS)

setup-demo:
	scripts/setup.sh demo

setup-test:
	scripts/setup.sh test,demo
