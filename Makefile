# The two commands of the README: `make serve` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: serve test bench hostile demo install clean

serve: $(STAMP)
	$(BIN)/bssbus serve

test: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.http_layer
	$(BIN)/python -m bench.outbox
	$(BIN)/python -m bench.reconcile
	$(BIN)/python -m bench.cdr
	$(BIN)/python -m bench.journal

hostile: $(STAMP)
	$(BIN)/python -m bench.hostile

demo: $(STAMP)
	$(BIN)/bssbus demo

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "bssbus needs Python 3.11 (spyne 2.14 does not import on 3.12+); set PYTHON=/path/to/python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "python3.11 -m venv failed: on Debian install python3.11-venv"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

clean:
	rm -rf $(VENV) var build *.egg-info
