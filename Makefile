# Two commands do all the set-up on a fresh machine with Python >= 3.11:
#   make train   install into .venv and train the default recipe (ARGS="recipe=digits_cnn ...")
#   make test    install into .venv (with test tools) and run ruff + the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install lock train test lint browser clean

# Every package at the version and hash requirements.lock.txt pins (Linux x86-64, Python
# 3.11; `make lock` refreshes it), then jaxfw itself. LOCK= (empty) resolves the newest
# versions pyproject.toml allows instead, for another platform or an environment of your own.
LOCK ?= requirements.lock.txt

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
ifneq ($(LOCK),)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
else
	$(BIN)/python -m pip install --quiet -e '.[test]'
endif
	touch $(STAMP)

install: $(STAMP)

# Re-resolve every dependency (with the test tools) to the newest versions pyproject.toml
# allows, pinned with their hashes, for the platform CI and the README's commands run on.
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet "uv>=0.4"
	$(BIN)/uv pip compile pyproject.toml --extra test --generate-hashes --quiet \
	  --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
	  --custom-compile-command "make lock" -o requirements.lock.txt

train: $(STAMP)
	$(BIN)/jaxfw-train $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

# The report test renders report.html in a real headless Chromium (Debian's package).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "install Chromium first: sudo apt-get install chromium" >&2; exit 1; fi; }

# Two pytest workers (pytest-xdist), each test file on one worker so its module fixtures
# are built once: the suite's subprocess start-ups and compiles overlap on 2 cores.
JOBS ?= 2

test: lint browser
	$(BIN)/python -m pytest -q -n $(JOBS) --dist loadfile $(ARGS)

clean:
	rm -rf $(VENV) runs
