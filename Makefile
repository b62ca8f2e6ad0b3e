# vmvault: make demo | make test | make faults | make load | make up | make lint | make fuzz | make bench | make bench-compare
SHELL := /bin/bash
GO    ?= go

TEMPORAL_VERSION := v1.5.1
MINIO_VERSION    := v0.0.0-20260212201848-7aac2a2c5b7c
WORKFLOWCHECK_VERSION := v0.6.0
# Built tools live outside the clone, keyed by version, so a fresh clone (CI)
# reuses them; bin/ only links to them.
TOOLS_CACHE ?= $(HOME)/.cache/vmvault/bin
TEMPORAL := $(TOOLS_CACHE)/temporal-$(TEMPORAL_VERSION)
MINIO    := $(TOOLS_CACHE)/minio-$(MINIO_VERSION)
WORKFLOWCHECK := $(TOOLS_CACHE)/workflowcheck-$(WORKFLOWCHECK_VERSION)
BENCHSTAT_VERSION := v0.0.0-20260908200009-22c9c6c9d4da
BENCHSTAT := $(TOOLS_CACHE)/benchstat-$(BENCHSTAT_VERSION)

TEST_TIMEOUT ?= 25m
SEARCH_ATTRS := VmvaultVM VmvaultVault VmvaultKind VmvaultBackupType VmvaultConsistency VmvaultRecoveryPoint

.PHONY: all build tools deps guest-image demo demo-qemu up test faults load lint fuzz bench bench-compare bench-index clean

all: build

# Each tool is built from the Go module proxy once (minutes on 2 cores).
$(TEMPORAL):
	@mkdir -p $(TOOLS_CACHE) && tmp=$$(mktemp -d) && \
	echo "building Temporal CLI $(TEMPORAL_VERSION) into $(TOOLS_CACHE) (once; takes minutes)" && \
	GOBIN=$$tmp $(GO) install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_VERSION) && \
	mv $$tmp/temporal $@ && rm -rf $$tmp

$(MINIO):
	@mkdir -p $(TOOLS_CACHE) && tmp=$$(mktemp -d) && \
	echo "building MinIO $(MINIO_VERSION) into $(TOOLS_CACHE) (once; takes minutes)" && \
	GOBIN=$$tmp $(GO) install github.com/minio/minio@$(MINIO_VERSION) && \
	mv $$tmp/minio $@ && rm -rf $$tmp

$(WORKFLOWCHECK):
	@mkdir -p $(TOOLS_CACHE) && tmp=$$(mktemp -d) && \
	GOBIN=$$tmp $(GO) install go.temporal.io/sdk/contrib/tools/workflowcheck@$(WORKFLOWCHECK_VERSION) && \
	mv $$tmp/workflowcheck $@ && rm -rf $$tmp

$(BENCHSTAT):
	@mkdir -p $(TOOLS_CACHE) && tmp=$$(mktemp -d) && \
	GOBIN=$$tmp $(GO) install golang.org/x/perf/cmd/benchstat@$(BENCHSTAT_VERSION) && \
	mv $$tmp/benchstat $@ && rm -rf $$tmp

tools: $(TEMPORAL) $(MINIO) deps
	@mkdir -p bin && ln -sf $(TEMPORAL) bin/temporal && ln -sf $(MINIO) bin/minio

# System packages the demo and tests use (Debian): mke2fs for the sample
# VM's ext4 disk, qemu-system-x86 for the real-QEMU tests, qemu-utils
# (qemu-img, qemu-nbd, qemu-io) for the qemu platform's fleecing and its tests,
# debootstrap for the tests' Linux guest image, restic and borgbackup for
# make bench's comparison.
deps:
	@need=""; \
	command -v mke2fs >/dev/null || [ -x /usr/sbin/mke2fs ] || need="$$need e2fsprogs"; \
	command -v qemu-system-x86_64 >/dev/null || need="$$need qemu-system-x86"; \
	command -v qemu-img >/dev/null && command -v qemu-nbd >/dev/null || need="$$need qemu-utils"; \
	command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || need="$$need debootstrap"; \
	command -v restic >/dev/null || need="$$need restic"; \
	command -v borg >/dev/null || need="$$need borgbackup"; \
	if [ -n "$$need" ]; then echo "installing$$need (apt)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$need) >/dev/null \
	  || echo "warning: could not install$$need; tests that need them will fail or skip, saying why"; fi

# The tests' Linux guest (minimal Debian with qemu-guest-agent), built once
# into ~/.cache/vmvault/guest (a few minutes; needs root and Debian's mirror).
guest-image: deps
	$(GO) run ./testsuite/cmd/guestimage

build:
	@mkdir -p bin
	$(GO) build -o bin/vmvault ./starter
	$(GO) build -o bin/vmvault-worker ./worker
	$(GO) build -o bin/vmfixture ./testsuite/cmd/vmfixture
	$(GO) build -o bin/demo ./testsuite/cmd/demo

# The main job end to end on the embedded defaults. KEEP=1 leaves it running.
demo: tools build
	bin/demo

# The demo on a live QEMU VM running a real Debian guest (its image is
# built once and cached, see guest-image).
demo-qemu: tools build guest-image
	bin/demo qemu

# Dev server (UI on :8233) and a worker, in the foreground, for interactive use.
# Without a configured key it generates DATA_DIR/vault.key, and it creates
# the vault if there is none.
up: tools build
	@d=$${VMVAULT_DATA_DIR:-$(HOME)/.local/share/vmvault}; mkdir -p $$d; \
	if [ -z "$$VMVAULT_VAULT_PASSPHRASE$$VMVAULT_VAULT_KEY_FILE" ] && [ ! -f $$d/vault.key ]; then \
	  (umask 077; head -c 32 /dev/urandom | base64 > $$d/vault.key); echo "generated vault key $$d/vault.key: keep it safe"; fi; \
	bin/vmvault vault stats >/dev/null 2>&1 || bin/vmvault vault init
	@trap 'kill 0' EXIT; \
	bin/temporal server start-dev --ip 127.0.0.1 --ui-port 8233 --log-level warn \
	  --db-filename $${VMVAULT_DATA_DIR:-$(HOME)/.local/share/vmvault}/temporal.db \
	  $(foreach a,$(SEARCH_ATTRS),--search-attribute $(a)=Keyword) & \
	until bin/temporal operator cluster health >/dev/null 2>&1; do sleep 0.5; done; \
	echo "Temporal UI: http://localhost:8233"; \
	bin/vmvault-worker

test: tools
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

# The fault suite's whole matrix (make test runs its short, seeded form):
# worker kills at every fault point, Temporal restarts, and the other
# TestFaults scenarios; the table of figures is printed and written to
# FAULTS_REPORT. VMVAULT_FAULTS_SEED picks another seed.
FAULTS_REPORT ?= $(CURDIR)/faults-table.md
faults: tools
	VMVAULT_FAULTS=full VMVAULT_FAULTS_REPORT=$(FAULTS_REPORT) $(GO) test -count=1 -timeout 60m -run 'TestFaults' -v ./testsuite/e2e/

# Every Go fuzz target (func FuzzX in a _test.go file) for FUZZTIME each,
# one after the other; a crasher lands in the package's testdata/fuzz and
# then runs in make test as a seed. Not part of make test.
FUZZTIME ?= 30s
fuzz:
	@set -eo pipefail; for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for t in $$(grep -h '^func Fuzz' $$dir/*_test.go | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "== $$dir $$t ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$dir | grep -v '^fuzz: elapsed' ; \
	  done; \
	done

lint: $(WORKFLOWCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	$(GO) vet ./...
	$(WORKFLOWCHECK) ./workflows/...

# vmvault vs restic and borg on one cached workload (the tests' Debian
# guest in a 4 GiB ext4 image, churned 1% and 5%), one table; BENCH_JSON=file
# keeps the rows. Then the Go benchmarks of the hot paths.
bench: tools build guest-image
	$(GO) build -o bin/bench ./testsuite/cmd/bench
	bin/bench
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 3x ./infra/vault/ ./infra/vault/format/ ./infra/vault/index/ ./testsuite/bench/

# A worker's index on a synthetic vault of INDEX_SCALE stored blocks (built
# once, cached; 100000000 takes about 4 GB of index objects and as much for
# the worker's runs): first load, refresh, lookups and peak RSS, one table.
INDEX_SCALE ?= 10000000
bench-index:
	VMVAULT_INDEX_SCALE=$(INDEX_SCALE) VMVAULT_INDEX_SCALE_DIR=$(HOME)/.cache/vmvault/indexscale \
		$(GO) test -count=1 -timeout 3h -run '^TestIndexScale$$' -v ./infra/vault/ | grep -E '^\||PASS|FAIL|ok'

# The load suite: 200 concurrent backups of small 2-disk VMs on one worker
# and a burst of 1,000 scheduled starts (make test runs a small form), each
# line of figures also written to LOAD_REPORT.
LOAD_REPORT ?= $(CURDIR)/load-figures.md
load: tools
	@rm -f $(LOAD_REPORT)
	set -o pipefail; VMVAULT_LOAD=full VMVAULT_LOAD_REPORT=$(LOAD_REPORT) $(GO) test -count=1 -timeout 60m -run '^TestLoad' -v ./testsuite/e2e/ | grep -E 'load:|^(---|ok|FAIL|PASS)'
	@cat $(LOAD_REPORT)

clean:
	rm -rf bin demo-work demo-qemu-work

# The hot paths' Go benchmarks (infra/vault/hotpath_bench_test.go, and the
# in-memory backups) at BASE and in the working tree, compared with
# benchstat: both test binaries are built first and run alternately, six
# times each, so that the machine's noise falls on both alike.
BASE ?= HEAD~1
HOT_BENCH ?= Hash|Compress|SealBlob|OpenBlob|IndexAdd|IndexLookup|TreeBlockIDs|RestoreDisk|BackupDisk
bench-compare: $(BENCHSTAT)
	@tmp=$$(mktemp -d) && trap 'git worktree remove --force $$tmp/base >/dev/null 2>&1; rm -rf $$tmp' EXIT && \
	git worktree add -q --detach $$tmp/base $(BASE) && \
	cp -n infra/vault/hotpath_bench_test.go $$tmp/base/infra/vault/ && \
	(cd $$tmp/base && $(GO) test -c -o $$tmp/base.test ./infra/vault/) && \
	$(GO) test -c -o $$tmp/head.test ./infra/vault/ && \
	for i in 1 2 3 4 5 6; do \
	  for side in base head; do \
	    $$tmp/$$side.test -test.run '^$$' -test.bench '$(HOT_BENCH)' -test.benchmem >> $$tmp/$$side.txt || exit 1; \
	  done; \
	done && \
	echo "benchstat: $(BASE) ($$(git rev-parse --short $(BASE))) vs the working tree" && \
	$(BENCHSTAT) base=$$tmp/base.txt head=$$tmp/head.txt
