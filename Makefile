# Harvest: the commands a person types. `make` alone lists them.

CARGO       ?= cargo
MVN         ?= mvn
CARGO_BIN   := $(or $(CARGO_HOME),$(HOME)/.cargo)/bin
export PATH := $(CARGO_BIN):$(PATH)
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
TARGET_DIR  := $(or $(CARGO_TARGET_DIR),target)
# Apache Kafka's classpath, fetched from Maven Central by `make deps`; it
# survives `cargo clean`. The services' code finds it here too.
KAFKA_POM   := deploy/kafka/pom.xml
KAFKA_LIBS  ?= $(or $(HARVEST_KAFKA_LIBS),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/harvest/kafka/libs)
export HARVEST_KAFKA_LIBS := $(KAFKA_LIBS)

# The services' integration tests again, each on a Redis Cluster of three
# primaries: every script, transaction and pipeline of their stores meets
# the cluster's slots. A broker outage shows nothing more on a cluster.
CLUSTER_TESTS := -p harvest-catalog -p harvest-orders -p harvest-payments -p harvest-delivery \
	-E 'kind(test) - test(/with_the_broker_down/)'

.DEFAULT_GOAL := help
.PHONY: help deps build test lint fmt demo run bench chaos clean

help: ## List the commands
	@echo "Harvest — order fulfillment for rural e-commerce"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## Install what is missing: Apache Kafka (Maven Central; needs Java 17+), redis-server and redis-cli, cargo-nextest
	@java_version=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1); \
	if [ -z "$$java_version" ] || [ "$$java_version" -lt 17 ]; then \
		echo "Apache Kafka needs Java 17 or newer on PATH (found: $${java_version:-none})" >&2; exit 1; \
	fi
	@if ! command -v $(MVN) >/dev/null; then \
		echo "installing Maven (apt-get)…"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q maven; \
	fi
	@if ! cmp -s $(KAFKA_POM) $(KAFKA_LIBS)/pom.xml; then \
		echo "fetching Apache Kafka's classpath from Maven Central into $(KAFKA_LIBS)…"; \
		rm -rf $(KAFKA_LIBS).new && mkdir -p $(dir $(KAFKA_LIBS)) && \
		$(MVN) -q -B -f $(KAFKA_POM) dependency:copy-dependencies -DincludeScope=runtime \
			-DoutputDirectory=$(abspath $(KAFKA_LIBS)).new >$(KAFKA_LIBS).log 2>&1 || \
			{ cat $(KAFKA_LIBS).log; exit 1; }; \
		cp $(KAFKA_POM) $(KAFKA_LIBS).new/pom.xml && \
		rm -rf $(KAFKA_LIBS) && mv $(KAFKA_LIBS).new $(KAFKA_LIBS) && \
		echo "Apache Kafka: $$(ls $(KAFKA_LIBS) | grep -c 'jar$$') jars in $(KAFKA_LIBS)"; \
	fi
	@if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then \
		echo "installing redis-server and redis-cli (apt-get)…"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q redis-server redis-tools; \
	fi
	@if ! $(CARGO) nextest --version >/dev/null 2>&1; then \
		echo "installing cargo-nextest (cargo install; a few minutes)…"; \
		$(CARGO) install cargo-nextest --locked; \
	fi

build: ## Build every crate and binary
	$(CARGO) build --locked --workspace --bins

test: deps ## Run every test (each starts its own Redis; a run shares one Kafka broker), then the services' on a Redis Cluster
	$(CARGO) build --locked --workspace --bins
	$(CARGO) test --locked --workspace --doc
	$(CARGO) nextest run --locked --workspace --profile ci
	HARVEST_TEST_REDIS=cluster $(CARGO) nextest run --locked --profile ci $(CLUSTER_TESTS)

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

chaos: deps ## Kill services, Kafka and Redis under load and check nothing is lost (release build); writes target/faults/results.json
	$(CARGO) build --locked --release --workspace --bins
	$(TARGET_DIR)/release/harvest-faults $(ARGS)

clean: ## Remove build output and local state
	$(CARGO) clean
