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
# The trace viewer of the local stack: Zipkin's executable jar, fetched the
# same way into the same cache.
ZIPKIN_POM  := deploy/zipkin/pom.xml
ZIPKIN_DIR  ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/harvest/zipkin
# The browser tests: playwright-core from npm (pinned in its package-lock.json)
# driving Debian's Chromium; no browser is downloaded.
BROWSER_TEST := e2e-browser
# The reference storefront: TypeScript built with npm (pinned in its
# package-lock.json), its gRPC-Web client generated from proto/ by buf.
STOREFRONT  := storefront
# What `make deploy-check` renders and validates with, cached outside the
# repository: Helm built from the Go module proxy, a virtualenv of PyPI tools.
DEPLOY_TOOLS ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/harvest/deploy-tools
HELM_VERSION := v3.22.0
HELM         := $(DEPLOY_TOOLS)/helm-$(HELM_VERSION)/helm
DEPLOY_VENV  := $(DEPLOY_TOOLS)/venv
# The operators' published CRDs, beside the repository (never copied into it).
REPO_ROOT    := $(dir $(abspath $(firstword $(MAKEFILE_LIST))))
# Beside the repository (../shared/crds), or beside the work folder of a
# machine whose checkout lives elsewhere (/work/shared/crds); CRDS=… wins.
CRDS         ?= $(firstword $(wildcard $(abspath $(REPO_ROOT)../shared/crds) /work/shared/crds) \
                $(abspath $(REPO_ROOT)../shared/crds))
REGIONS      := $(sort $(wildcard deploy/regions/*.yaml))
RENDERED     := $(TARGET_DIR)/deploy

# The services' integration tests again, each on a Redis Cluster of three
# primaries: every script, transaction and pipeline of their stores meets
# the cluster's slots. A broker outage shows nothing more on a cluster.
CLUSTER_TESTS := -p harvest-catalog -p harvest-orders -p harvest-payments -p harvest-delivery \
	-E 'kind(test) - test(/with_the_broker_down/)'

.DEFAULT_GOAL := help
.PHONY: help build-deps deps browser-deps storefront build test lint fmt demo run bench chaos clean contracts-deps contracts-check contracts-schemas deploy-deps deploy-check

# The contract checkers: buf and the AsyncAPI parser from npm (pinned in
# contracts/package-lock.json), promtool from Debian's prometheus package.
CONTRACTS    := contracts
NODE_BIN     := $(CONTRACTS)/node_modules/.bin
BUF          := $(NODE_BIN)/buf
# The commit of the last released proto/: the last line of proto/RELEASED.
# See docs/contracts.md.
PROTO_RELEASED = $(shell tail -n 1 proto/RELEASED)
PROMETHEUS_RULES := deploy/prometheus/harvest.rules.yaml

help: ## List the commands
	@echo "Harvest — order fulfillment for rural e-commerce"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-17s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build-deps: ## Install what building needs beyond Rust: OpenSSL's headers and pkg-config (apt-get), for Kafka over TLS and SCRAM
	@if ! pkg-config --exists openssl 2>/dev/null; then \
		echo "installing OpenSSL's headers and pkg-config (apt-get)…"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends libssl-dev pkg-config; \
	fi

deps: build-deps ## Install what is missing: Apache Kafka and Zipkin (Maven Central; need Java 17+), redis-server and redis-cli, Prometheus, cargo-nextest
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
	@if ! cmp -s $(ZIPKIN_POM) $(ZIPKIN_DIR)/pom.xml; then \
		echo "fetching Zipkin's server from Maven Central into $(ZIPKIN_DIR)…"; \
		rm -rf $(ZIPKIN_DIR).new && mkdir -p $(dir $(ZIPKIN_DIR)) && \
		$(MVN) -q -B -f $(ZIPKIN_POM) dependency:copy-dependencies \
			-DoutputDirectory=$(abspath $(ZIPKIN_DIR)).new >$(ZIPKIN_DIR).log 2>&1 || \
			{ cat $(ZIPKIN_DIR).log; exit 1; }; \
		cp $(ZIPKIN_POM) $(ZIPKIN_DIR).new/pom.xml && \
		rm -rf $(ZIPKIN_DIR) && mv $(ZIPKIN_DIR).new $(ZIPKIN_DIR); \
	fi
	@if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then \
		echo "installing redis-server and redis-cli (apt-get)…"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q redis-server redis-tools; \
	fi
	@if ! command -v prometheus >/dev/null; then \
		echo "installing Prometheus (apt-get)…"; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends prometheus; \
	fi
	@if ! $(CARGO) nextest --version >/dev/null 2>&1; then \
		echo "installing cargo-nextest (cargo install; a few minutes)…"; \
		$(CARGO) install cargo-nextest --locked; \
	fi

browser-deps: ## Install what the browser tests need: Chromium and a Chinese font (apt-get), playwright-core (npm)
	@if [ ! -x /usr/bin/chromium ] || [ ! -d /usr/share/fonts/truetype/wqy ]; then \
		echo "installing Chromium and a Chinese font (apt-get)…"; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends chromium fonts-wqy-microhei; \
	fi
	@if ! cmp -s $(BROWSER_TEST)/package-lock.json $(BROWSER_TEST)/node_modules/.installed-lock; then \
		echo "installing playwright-core (npm ci)…"; \
		npm ci --prefix $(BROWSER_TEST) --no-audit --no-fund --loglevel=error && \
		cp $(BROWSER_TEST)/package-lock.json $(BROWSER_TEST)/node_modules/.installed-lock; \
	fi

storefront: ## Build the reference storefront (npm): its client generated from proto/, bundled into storefront/dist
	@if ! cmp -s $(STOREFRONT)/package-lock.json $(STOREFRONT)/node_modules/.installed-lock; then \
		echo "installing the storefront's packages (npm ci)…"; \
		npm ci --prefix $(STOREFRONT) --no-audit --no-fund --loglevel=error && \
		cp $(STOREFRONT)/package-lock.json $(STOREFRONT)/node_modules/.installed-lock; \
	fi
	npm run --prefix $(STOREFRONT) --silent build

build: build-deps ## Build every crate and binary
	$(CARGO) build --locked --workspace --bins

test: deps browser-deps storefront ## Run every test (each starts its own Redis; a run shares one Kafka broker; the browser tests drive Chromium), then the services' on a Redis Cluster
	$(CARGO) build --locked --workspace --bins
	$(CARGO) test --locked --workspace --doc
	$(CARGO) nextest run --locked --workspace --profile ci
	HARVEST_TEST_REDIS=cluster $(CARGO) nextest run --locked --profile ci $(CLUSTER_TESTS)

lint: build-deps ## Check formatting and run clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

demo: deps build storefront ## Run the whole system with simulated buyers and couriers, Zipkin, Prometheus and the storefront (ARGS="--duration 120 …"; --no-observability)
	$(TARGET_DIR)/debug/harvest-stack demo $(ARGS)

run: deps build storefront ## Run the whole system (with Zipkin, Prometheus and the storefront, whose URL it prints) without simulated traffic until Ctrl-C (ARGS="--couriers", --no-observability)
	$(TARGET_DIR)/debug/harvest-stack run $(ARGS)

bench: deps ## Measure rates, a regional spike and a flash sale (release build); writes target/bench/results.json
	$(CARGO) build --locked --release --workspace --bins
	$(TARGET_DIR)/release/harvest-bench $(ARGS)

chaos: deps ## Kill services, Kafka and Redis under load and check nothing is lost (release build); writes target/faults/results.json
	$(CARGO) build --locked --release --workspace --bins
	$(TARGET_DIR)/release/harvest-faults $(ARGS)

contracts-deps: ## Install the contract checkers: buf and the AsyncAPI parser (npm), promtool (apt-get)
	@if ! cmp -s $(CONTRACTS)/package-lock.json $(CONTRACTS)/node_modules/.installed-lock; then \
		echo "installing buf and the AsyncAPI parser (npm ci)…"; \
		SCARF_ANALYTICS=false npm ci --prefix $(CONTRACTS) --no-audit --no-fund --loglevel=error && \
		cp $(CONTRACTS)/package-lock.json $(CONTRACTS)/node_modules/.installed-lock; \
	fi
	@if ! command -v promtool >/dev/null; then \
		echo "installing promtool (apt-get, Debian's prometheus package)…"; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends prometheus; \
	fi

contracts-check: contracts-deps ## Lint the protos, check them against the last release, the AsyncAPI document, the courier doc and the alert rules
	$(BUF) lint proto
	$(BUF) format --diff --exit-code proto
	@git cat-file -e $(PROTO_RELEASED)^{commit} 2>/dev/null || { \
		echo "proto/RELEASED names $(PROTO_RELEASED), which this clone does not have (a shallow clone?)" >&2; exit 1; }
	$(BUF) breaking proto --against '.git#ref=$(PROTO_RELEASED),subdir=proto'
	node $(CONTRACTS)/check.mjs
	promtool check rules $(PROMETHEUS_RULES)
	promtool test rules deploy/prometheus/harvest.rules.test.yaml
	node $(CONTRACTS)/observability.mjs --check

contracts-schemas: contracts-deps ## Regenerate the AsyncAPI payload schemas from proto/ (and the PrometheusRule from the rules)
	node $(CONTRACTS)/proto-schemas.mjs
	node $(CONTRACTS)/observability.mjs

deploy-deps: ## Install what deploy-check needs: Helm (Go module proxy), kubernetes-validate, yamllint, check-jsonschema (PyPI)
	@if [ ! -x $(HELM) ]; then \
		echo "building Helm $(HELM_VERSION) from the Go module proxy (a few minutes)…"; \
		GOBIN=$(dir $(HELM)) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION); \
	fi
	@if ! cmp -s deploy/validate/requirements.txt $(DEPLOY_VENV)/requirements.txt; then \
		echo "installing the validators into $(DEPLOY_VENV)…"; \
		rm -rf $(DEPLOY_VENV) && python3 -m venv $(DEPLOY_VENV) && \
		$(DEPLOY_VENV)/bin/pip install -q --disable-pip-version-check -r deploy/validate/requirements.txt && \
		cp deploy/validate/requirements.txt $(DEPLOY_VENV)/requirements.txt; \
	fi

deploy-check: deploy-deps ## Render the chart with every region and validate it all (CRDS=… for the CRD folder)
	@test -d $(CRDS) || { echo "no CRDs at $(CRDS); pass CRDS=<path to shared/crds>" >&2; exit 1; }
	@mkdir -p $(RENDERED)
	$(HELM) lint deploy --quiet --strict $(REGIONS:%=-f %) --set image.tag=0.0.0-check --set auth.issuer=https://id.harvest.example \
		--set "courierPartners.partners={partner-example-express}" --set "server.webOrigins={https://shop.harvest.example}"
	$(HELM) template harvest deploy --namespace harvest $(REGIONS:%=-f %) \
		--set image.tag=0.0.0-check --set auth.issuer=https://id.harvest.example \
		--set "courierPartners.partners={partner-example-express}" --set "server.webOrigins={https://shop.harvest.example}" > $(RENDERED)/harvest.yaml
	$(DEPLOY_VENV)/bin/yamllint --strict -c deploy/.yamllint.yaml deploy $(RENDERED)/harvest.yaml
	$(DEPLOY_VENV)/bin/python deploy/validate/custom_resources.py $(RENDERED)/harvest.yaml $(CRDS) $(RENDERED)/core.yaml
	$(DEPLOY_VENV)/bin/python deploy/validate/custom_resources.py deploy/prometheus/prometheus-rule.yaml \
		$(CRDS) $(RENDERED)/rules-core.yaml
	$(DEPLOY_VENV)/bin/kubernetes-validate --strict --quiet $(RENDERED)/core.yaml
	@echo "core objects: $$(grep -c '^kind:' $(RENDERED)/core.yaml) passed kubernetes-validate --strict"
	$(DEPLOY_VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml

clean: ## Remove build output and local state
	$(CARGO) clean
