# Harvest: the commands a person types. `make` alone lists them.

CARGO       ?= cargo
NISSHI_VERSION := 0.7.0-pre.2
CARGO_BIN   := $(or $(CARGO_HOME),$(HOME)/.cargo)/bin
export PATH := $(CARGO_BIN):$(PATH)
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
TARGET_DIR  := $(or $(CARGO_TARGET_DIR),target)

.DEFAULT_GOAL := help
.PHONY: help deps build test lint fmt demo run bench clean

help: ## List the commands
	@echo "Harvest — order fulfillment for rural e-commerce"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## Install redis-server and the nisshi broker if they are missing
	@if ! command -v redis-server >/dev/null; then \
		echo "installing redis-server (apt-get)…"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q redis-server; \
	fi
	@if ! command -v nisshi >/dev/null; then \
		echo "installing the nisshi broker $(NISSHI_VERSION) (cargo install; this takes about 15–20 minutes)…"; \
		$(CARGO) install nisshi --version $(NISSHI_VERSION) --locked --features dynostore,libsql,postgres; \
	fi

build: ## Build every crate and binary
	$(CARGO) build --locked --workspace --bins

test: deps ## Run every test (starts its own Redis and broker)
	$(CARGO) build --locked --workspace --bins
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --locked --workspace --profile ci; \
	else \
		$(CARGO) test --locked --workspace; \
	fi
	$(CARGO) test --locked --workspace --doc

lint: ## Check formatting and run clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

demo: deps build ## Run the whole system with simulated buyers and couriers (ARGS="--duration 120 …")
	$(TARGET_DIR)/debug/harvest-stack demo $(ARGS)

run: deps build ## Run the whole system without simulated traffic until Ctrl-C
	$(TARGET_DIR)/debug/harvest-stack run $(ARGS)

bench: deps ## Measure rates, a regional spike and a flash sale (release build); writes target/bench/results.json
	$(CARGO) build --locked --release --workspace --bins
	$(TARGET_DIR)/release/harvest-bench $(ARGS)

clean: ## Remove build output and local state
	$(CARGO) clean
