# databricks-cmk-rotator: build, test and run the rotation locally.
# `make help` lists the targets. Every target installs what it needs (pinned) into .tools/ and node_modules/.

SHELL := /bin/bash
.DEFAULT_GOAL := help

GO          ?= go
TOOLS_BIN   := $(CURDIR)/.tools/bin
NODE        := $(CURDIR)/node_modules/.bin/node
BUILD_DIR   := $(CURDIR)/.build
LOCAL_ARCH  := $(shell $(GO) env GOARCH)

# LogicalId:directory for every Lambda function in template.yaml.
FUNCTIONS := \
	TriggerFunction:trigger \
	KeyGuardFunction:key-guard \
	RescueFunction:rescue \
	LockWorkspacesFunction:lock-workspaces \
	UnlockWorkspacesFunction:unlock-workspaces \
	ValidateFunction:validate \
	RegisterKeyConfigFunction:register-key-config \
	InventoryFunction:inventory \
	StopComputeFunction:stop-compute \
	ComputeStatusFunction:compute-status \
	PatchWorkspaceFunction:patch-workspace \
	WorkspaceStatusFunction:workspace-status \
	RestartComputeFunction:restart-compute \
	BuildReportFunction:build-report \
	KeyConfigHygieneFunction:key-config-hygiene \
	KeyAgeCheckFunction:key-age-check \
	CheckPolicyFunction:check-policy \
	RequestApprovalFunction:request-approval

fn_id  = $(word 1,$(subst :, ,$(1)))
fn_dir = $(word 2,$(subst :, ,$(1)))

# How SAM (BuildMethod: makefile) and `make build` compile a function: a static linux/arm64 binary
# named bootstrap for the provided.al2023 runtime, without the legacy RPC shim, against the
# Databricks SDK with the stubs of build/sdkoverlay (LAMBDA_MODFILE, below).
LAMBDA_BUILD = CGO_ENABLED=0 GOOS=linux GOARCH=$(1) $(GO) build -modfile=$(LAMBDA_MODFILE) -tags lambda.norpc -trimpath -ldflags='-s -w'

# The shipped functions are built against a copy of the Databricks SDK in which the files under
# build/sdkoverlay/_stubs replace the originals (why: build/sdkoverlay/doc.go): the GCP credential
# providers, which link gRPC and Google's auth stack for credentials the rotator never uses, and
# common/types/{time,duration}, whose protojson makes the linker keep every exported method
# (together 18-28 MiB -> 10-12 MiB a function). `go build -overlay` cannot do this: it refuses to
# replace files beneath GOMODCACHE. The copy comes from this machine's module cache at go.mod's
# version; `go test ./build/sdkoverlay` pins that version and the originals' hashes.
# To build against the unmodified SDK: make build LAMBDA_MODFILE=go.mod
SDK_STUBS      := $(shell find build/sdkoverlay/_stubs -name '*.go' | sort)
SDK_COPY       := $(BUILD_DIR)/sdk
LAMBDA_MODFILE ?= $(SDK_COPY)/go.mod

$(SDK_COPY)/go.mod: go.mod go.sum $(SDK_STUBS) build/sdkoverlay/copy-sdk.sh
	@build/sdkoverlay/copy-sdk.sh $(GO) $(SDK_COPY)

.PHONY: sdk-copy
sdk-copy: $(SDK_COPY)/go.mod ## copy the Databricks SDK with build/sdkoverlay's stubs into .build/sdk (every build does this)

# build-<LogicalId>: the targets `sam build` calls with ARTIFACTS_DIR set.
define sam_target
.PHONY: build-$(call fn_id,$(1))
build-$(call fn_id,$(1)): $(LAMBDA_MODFILE)
	$$(call LAMBDA_BUILD,arm64) -o $$(ARTIFACTS_DIR)/bootstrap ./functions/$(call fn_dir,$(1))
endef
$(foreach f,$(FUNCTIONS),$(eval $(call sam_target,$(f))))

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_%-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: tools
tools: $(TOOLS_BIN)/local-kms $(TOOLS_BIN)/aws-lambda-rie $(TOOLS_BIN)/actionlint node_modules/.installed ## install the pinned local tools (local-kms, aws-lambda-rie, actionlint, node 22, aws-local-stepfunctions, asl-validator)

$(TOOLS_BIN)/local-kms $(TOOLS_BIN)/aws-lambda-rie $(TOOLS_BIN)/actionlint: tools/go.mod tools/go.sum
	cd tools && $(GO) build -o $(TOOLS_BIN)/ github.com/nsmithuk/local-kms github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie github.com/rhysd/actionlint/cmd/actionlint

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

.PHONY: build
build: $(LAMBDA_MODFILE) ## build every function as a static linux/arm64 bootstrap into .build/lambda/<LogicalId>/ (or `sam build` if SAM is installed)
	@if command -v sam >/dev/null 2>&1 && [ -z "$(NO_SAM)" ]; then sam build; else \
	  for f in $(FUNCTIONS); do id=$${f%%:*}; dir=$${f##*:}; \
	    echo "build $$id -> .build/lambda/$$id/bootstrap"; \
	    $(call LAMBDA_BUILD,arm64) -o $(BUILD_DIR)/lambda/$$id/bootstrap ./functions/$$dir || exit 1; \
	  done; fi

.PHONY: build-local
build-local: $(LAMBDA_MODFILE) ## build every function for this machine, for the runtime emulator in the sandbox
	@for f in $(FUNCTIONS); do id=$${f%%:*}; dir=$${f##*:}; \
	  $(call LAMBDA_BUILD,$(LOCAL_ARCH)) -o $(BUILD_DIR)/local/$$id/bootstrap ./functions/$$dir || exit 1; \
	done

.PHONY: test
test: tools build-local ## everything CI runs: vet, unit and integration tests, sandbox scenarios, ASL and workflow checks
	$(GO) vet ./...
	SANDBOX_REQUIRED=1 ROTATOR_BUILD_DIR=$(BUILD_DIR)/local $(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) --no-print-directory validate

.PHONY: validate
validate: tools ## static checks: ASL definitions, template consistency, GitHub workflows
	$(NODE) node_modules/.bin/asl-validator --json-path statemachine/rotation.asl.json
	$(NODE) node_modules/.bin/asl-validator --json-path statemachine/retirement-reminder.asl.json
	$(NODE) node_modules/.bin/asl-validator --json-path statemachine/workspace-rotation.asl.json
	@if [ -d .github/workflows ]; then $(TOOLS_BIN)/actionlint; fi

.PHONY: demo
demo: tools build-local ## run a whole rotation in the local sandbox: KMS key created, event delivered, workspace moved, compute restarted
	ROTATOR_BUILD_DIR=$(BUILD_DIR)/local $(GO) run ./emulation/cmd/rotator-sandbox demo

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME each (default 5m); not part of CI
	@for t in $$(grep -rl --include='*_test.go' '^func Fuzz' internal | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$t/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9]*\).*/\1/'); do \
	    echo "== $$t $$f"; $(GO) test ./$$t -run '^$$' -fuzz "^$$f$$" -fuzztime $${FUZZTIME:-5m} || exit 1; \
	  done; done

.PHONY: bench
bench: ## measure throughput, downtime, cost, cold starts, sizes and memory (BENCH lines, bench/RESULTS.md; ~20 min); not part of CI
	@started=$$(date +%s); \
	$(MAKE) --no-print-directory tools build-local && $(MAKE) --no-print-directory build NO_SAM=1 && \
	$(GO) test -tags bench -c -o $(BUILD_DIR)/bench.test ./bench && \
	cd bench && BENCH_STARTED_AT=$$started BENCH_FUNCTIONS="$(FUNCTIONS)" GO=$(GO) LAMBDA_MODFILE=$(abspath $(LAMBDA_MODFILE)) \
	  ROTATOR_BUILD_DIR=$(BUILD_DIR)/local ROTATOR_LAMBDA_DIR=$(BUILD_DIR)/lambda \
	  $(BUILD_DIR)/bench.test -test.run '^TestBench$$' -test.timeout 60m -results RESULTS.md

.PHONY: deploy
deploy: ## deploy with SAM (CONFIG_ENV=default|prod)
	sam build && sam deploy --config-env $${CONFIG_ENV:-default}

.PHONY: clean
clean: ## remove build output (keeps the pinned tools)
	rm -rf $(BUILD_DIR) .aws-sam
