# Two commands do all the set-up on a fresh machine with Python >= 3.11:
#   make train   install into .venv and train the default recipe (ARGS="recipe=digits_cnn ...")
#   make test    install into .venv (with test tools) and run ruff + the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install train test lint clean

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

test: lint
	$(BIN)/python -m pytest -q $(ARGS)

clean:
	rm -rf $(VENV) runs
