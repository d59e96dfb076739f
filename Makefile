# Two commands do all the set-up on a fresh machine with Python >= 3.11:
#   make train   install into .venv and train the default recipe (ARGS="recipe=digits_cnn ...")
#   make test    install into .venv (with test tools) and run ruff + the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install train test lint browser clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

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
