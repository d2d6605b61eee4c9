# mpass-guard: set-up, build, tests and demo.
#
#   make setup   toolchain target, clang (for ring on wasm32), cargo-fuzz, .venv with pinned Envoy + pytest,
#                tests/interop/node_modules (the pinned oidc-provider, via npm ci),
#                tests/istio-schemas/node_modules (Istio's and Kubernetes' published schemas)
#   make build   the Wasm filter and the native CLI
#   make test    setup + build + cargo test + clippy + fmt + real-Envoy end-to-end tests + fuzz smoke
#   make fuzz    every fuzz target for FUZZ_SECONDS (default 60) each
#   make run     setup + build + demo (Envoy on 127.0.0.1:10000, upstream on :8080);
#                DEMO=login (or `make run-login`): the legacy-app login demo in a browser
#                (http://127.0.0.1:10080/; ports LOGIN_DEMO_PORT, LOGIN_DEMO_OP_PORT,
#                LOGIN_DEMO_APP_PORT, LOGIN_DEMO_ADMIN_PORT)
#   make soak    load with faults (SOAK_SECONDS, default 180) against a flapping key server
#   make sweep   the leak sweep of issue 11 (SWEEP_REQUESTS, default 20000, or SWEEP_SECONDS)
#   make bench   setup + build + benchmark (BENCHMARKS.md, bench/cpu_per_request.png);
#                BENCH_QUICK=1 for a 1-round, 3-second-cell smoke run. Not part of test.
#   make release the reproducible Wasm module, its sha256 and the two OCI images (build/release/, docs/releasing.md)
#   make clean   remove build outputs and the virtualenv

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
ENVOY := $(VENV)/bin/envoy
REQUIREMENTS := requirements.txt
VENV_STAMP := $(VENV)/.stamp-requirements

WASM := target/wasm32-wasip1/release/mpass_guard.wasm

# Reproducible Wasm: the same bytes whoever builds it, from wherever. The
# checkout, CARGO_HOME and the toolchain are remapped to fixed names (rustc and,
# for ring's C code, clang).
# `make wasm` and `make release` use the same flags, so what the tests load is
# what is shipped. The release profile in Cargo.toml is untouched.
# SOURCE_DATE_EPOCH (the images' timestamps) is the last commit that changed the
# code, so a docs-only commit (e.g. pinning the new digest in an example) keeps
# the digests: tag that commit.
CARGO_HOME_DIR := $(abspath $(or $(CARGO_HOME),$(HOME)/.cargo))
RUST_SYSROOT := $(shell rustc --print sysroot 2>/dev/null)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct -- src Cargo.toml Cargo.lock 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH
REPRO_PREFIX_MAP := $(CURDIR)=/mpass-guard $(CARGO_HOME_DIR)=/cargo $(if $(RUST_SYSROOT),$(RUST_SYSROOT)=/rustup/toolchain)
WASM_RUSTFLAGS := $(foreach m,$(REPRO_PREFIX_MAP),--remap-path-prefix=$(m))
WASM_CFLAGS := $(foreach m,$(REPRO_PREFIX_MAP),-ffile-prefix-map=$(m))
WASM_ENV := RUSTFLAGS='$(WASM_RUSTFLAGS)' CFLAGS_wasm32_wasip1='$(WASM_CFLAGS)'
RELEASE_DIR := build/release
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
# Test-only build that traps on demand (feature test-trap), for test_fail_closed.py.
TRAP_TARGET_DIR := target/test-trap
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 20
CLI := target/release/mpass-guard

# sudo only when not already root (CI and this machine run as root).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

SOAK_SECONDS ?= 180
SWEEP_REQUESTS ?= 20000
SWEEP_SECONDS ?=

.PHONY: soak sweep setup toolchain clang cargo-fuzz venv interop istio-schemas browser run-login build wasm wasm-test-trap cli test cargo-test clippy fmt e2e fuzz fuzz-smoke run clean \
	bench bench-tools bench-build release release-tools publish promtool rules-test

setup: toolchain clang cargo-fuzz venv interop istio-schemas release-tools promtool browser

toolchain:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	@cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
	@cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt

# ring needs a C compiler that targets wasm32: clang. Install it only when missing.
clang:
	@if ! command -v clang >/dev/null 2>&1; then \
		echo "clang not found: installing it with apt-get"; \
		$(SUDO) apt-get update; \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y clang; \
	fi

# cargo-fuzz from crates.io; only the stable toolchain exists, so the fuzz
# script runs it with RUSTC_BOOTSTRAP=1. Installed only when missing.
cargo-fuzz:
	@cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked

venv: $(VENV_STAMP)

# Rebuilt only when the pinned requirements change; the stamp keeps it fast.
$(VENV_STAMP): $(REQUIREMENTS)
	@[ -x $(VENV_PY) ] || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check -r $(REQUIREMENTS)
	@$(ENVOY) --version >/dev/null
	@touch $@

# The independent OpenID Provider of the interop test, exactly as locked.
INTEROP_STAMP := tests/interop/node_modules/.package-lock.json

interop: $(INTEROP_STAMP)

$(INTEROP_STAMP): tests/interop/package.json tests/interop/package-lock.json
	@if ! command -v npm >/dev/null 2>&1; then \
		echo "npm not found: installing Node.js and npm with apt-get (the interop test runs oidc-provider)"; \
		$(SUDO) apt-get update; \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y nodejs npm; \
	fi
	cd tests/interop && npm ci --no-audit --no-fund
	@touch $@

# Istio's CRD schemas (crd-all.gen.yaml) and Kubernetes' OpenAPI schemas as
# compiled validators, exactly as locked, for tests/e2e/test_examples.py.
ISTIO_SCHEMAS_STAMP := tests/istio-schemas/node_modules/.package-lock.json

istio-schemas: $(ISTIO_SCHEMAS_STAMP)

$(ISTIO_SCHEMAS_STAMP): tests/istio-schemas/package.json tests/istio-schemas/package-lock.json $(INTEROP_STAMP)
	cd tests/istio-schemas && npm ci --no-audit --no-fund
	@touch $@

# Debian's chromium and its chromium-driver: the browser the login tests
# (tests/e2e/test_login_browser.py, Selenium from requirements.txt) drive
# headless. Installed only when missing.
browser:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing with apt-get"; \
		$(SUDO) apt-get update; \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y $$missing; \
	fi

# buildah builds the compat image, skopeo copies images to registries, and
# docker-registry is the loopback registry of the release test. Installed only when missing.
release-tools:
	@missing=""; \
	command -v buildah >/dev/null 2>&1 || missing="$$missing buildah"; \
	command -v skopeo >/dev/null 2>&1 || missing="$$missing skopeo"; \
	command -v docker-registry >/dev/null 2>&1 || missing="$$missing docker-registry"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing with apt-get"; \
		$(SUDO) apt-get update; \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends $$missing; \
	fi

# promtool (checks and unit-tests the alert rules) and prometheus (the e2e scrape)
# come with Debian's prometheus package. Installed only when missing.
promtool:
	@if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then \
		echo "prometheus not found: installing it with apt-get"; \
		$(SUDO) apt-get update; \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends prometheus; \
	fi

build: wasm cli

wasm: toolchain clang
	$(WASM_ENV) cargo build --release --target wasm32-wasip1 --lib

cli:
	cargo build --release --bin mpass-guard --example registry_permissions

# Never shipped: its own target directory, so the real build is untouched.
wasm-test-trap: toolchain clang
	cargo build --release --target wasm32-wasip1 --lib --features test-trap --target-dir $(TRAP_TARGET_DIR)

test: setup build wasm-test-trap cargo-test clippy fmt rules-test fuzz-smoke e2e release-test

cargo-test:
	cargo test

clippy:
	cargo clippy --all-targets -- -D warnings
	cargo clippy --release --target wasm32-wasip1 --lib -- -D warnings

fmt:
	cargo fmt --check

# A missing Envoy, Wasm or CLI fails the run (the harness checks; nothing is skipped).
e2e: $(VENV_STAMP)
	$(VENV_PY) -m pytest tests/e2e -p no:cacheprovider

# The alert rules: syntax and expressions, then their unit tests.
rules-test: promtool
	promtool check rules deploy/prometheus/mpass-guard.rules.yml
	promtool test rules deploy/prometheus/mpass-guard.rules.test.yml

# ---------------------------------------------------------------- release

# The module, its sha256 and both OCI images in build/release/ (docs/releasing.md).
# RELEASE_REPOSITORY only names the repository in the printed Istio url.
RELEASE_REPOSITORY ?= registry.example.fi/mpass-guard

release: release-tools venv wasm
	$(VENV_PY) scripts/release.py --module $(WASM) --out $(RELEASE_DIR) --version $(VERSION) \
		--registry $(RELEASE_REPOSITORY)

# Copy both images to a registry: make publish REPOSITORY=registry.example.fi/mpass-guard
# (skopeo's own credentials: skopeo login). Digests are kept as built.
publish: release
	@[ -n "$(REPOSITORY)" ] || { echo "error: set REPOSITORY=host/path/mpass-guard"; exit 2; }
	skopeo copy --preserve-digests oci:$(RELEASE_DIR)/oci:$(VERSION) docker://$(REPOSITORY):$(VERSION)
	skopeo copy --preserve-digests oci:$(RELEASE_DIR)/oci:$(VERSION)-wasm docker://$(REPOSITORY):$(VERSION)-wasm

# Two builds from two copies of the tree (other paths, other CARGO_HOME) give the
# same bytes as build/release; the images go through a real loopback registry.
release-test: release
	$(VENV_PY) -m pytest tests/release -p no:cacheprovider

fuzz: cargo-fuzz
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

fuzz-smoke: cargo-fuzz
	FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS) scripts/fuzz.sh

DEMO ?=

run: setup build
	$(VENV_PY) scripts/$(if $(filter login,$(DEMO)),demo_login.py,demo.py)

run-login: setup build
	$(VENV_PY) scripts/demo_login.py

# ---------------------------------------------------------------- benchmark

BENCH_REQUIREMENTS := bench/requirements.txt
BENCH_STAMP := $(VENV)/.stamp-bench-requirements
BENCH_QUICK ?=
BENCH_ARGS ?=

# wrk (load), valgrind (callgrind profile): installed only when missing.
bench-tools:
	@missing=""; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	command -v valgrind >/dev/null 2>&1 || missing="$$missing valgrind"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing with apt-get"; \
		$(SUDO) apt-get update; \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y $$missing; \
	fi

$(BENCH_STAMP): $(BENCH_REQUIREMENTS) $(VENV_STAMP)
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check -r $(BENCH_REQUIREMENTS)
	@touch $@

# The empty baseline filter and the native profile driver build standalone.
bench-build: build
	cd bench/empty-filter && cargo build --release --target wasm32-wasip1
	cd bench/floor-filter && cargo build --release --target wasm32-wasip1
	cd bench/profile && cargo build --release
	cd bench/profile && cargo build --release --target wasm32-wasip1

bench: setup bench-tools $(BENCH_STAMP) bench-build
	$(VENV_PY) bench/run.py $(if $(BENCH_QUICK),--quick) $(BENCH_ARGS)

clean:
	cargo clean
	cd bench/empty-filter && cargo clean
	cd bench/floor-filter && cargo clean
	cd bench/profile && cargo clean
	rm -rf $(VENV) build

# Load with faults for SOAK_SECONDS (default 180): the invariant is checked on
# every request the upstream receives; prints the report. A 20 s run is part of
# `make test`.
soak: setup build
	$(VENV_PY) tests/e2e/soak.py --seconds $(SOAK_SECONDS)

# The leak sweep (tests/e2e/sweep.py) for SWEEP_REQUESTS requests (or
# SWEEP_SECONDS, when set), with the base and the sealed configuration; every
# request the upstream receives is checked against the invariant. A bounded
# run is part of `make test`.
SWEEP_ARGS = --requests $(SWEEP_REQUESTS) $(if $(SWEEP_SECONDS),--seconds $(SWEEP_SECONDS))
sweep: setup build
	rc=0; \
	$(VENV_PY) tests/e2e/sweep.py --variant base $(SWEEP_ARGS) || rc=1; \
	$(VENV_PY) tests/e2e/sweep.py --variant sealed $(SWEEP_ARGS) || rc=1; \
	exit $$rc

