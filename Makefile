# p2pay: PGXS build.  The version is read from p2pay.control.
EXTENSION   = p2pay
EXTVERSION  = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(EXTENSION).control)
MODULE_big  = p2pay
OBJS        = src/p2pay.o src/common.o src/catalog.o src/config.o src/rules.o src/facts.o src/store.o src/refs.o \
              src/locks.o src/moneyflow.o src/conflict.o src/trigger.o src/json.o src/output.o src/stats.o \
              src/backtest.o
DATA        = $(wildcard $(EXTENSION)--*.sql)

# pg_regress: one file per behaviour, run in this order.
REGRESS      = schema rules bad_input error_fields config insert_paths on_conflict rollback guard security schema_changes stream stream_toast stream_types operations rule_stats backtest money_flow kept_references baselines live_install bulk_load statement_rows load_plans state_indexes prune_state backdated retention stream_partitions partition_payments partitioned http_api flagged_since

# isolation tests (specs/): what concurrent sessions see of each other
ISOLATION    = config_reload reference_changes account_lock cycle_lock lock_order multi_payment_lock cycle_newcomer review_claims on_conflict_race

TAP_TESTS    = 1

# make installcheck runs the pg_regress and isolation suites on an instance
# of its own, as make check does in PostgreSQL's tree: pg_regress initdbs
# and starts one with this installation's programs (in tmp_check/, and
# tmp_check_iso/ for the isolation suite), adds the settings of
# tmp_instance.conf to it, and removes it when the suite passes.  That file
# is test/instance.conf (p2pay preloaded, logical decoding, commit
# timestamps), the one scripts/lib.sh's clusters use too, plus
# output_plugin_libraries when this installation's server knows the setting
# (scripts/instance-conf.sh asks it, at every make installcheck).
# USE_RUNNING=1 runs them instead against the server that PGHOST and PGPORT
# name (PGXS's installcheck), which must have those settings; make test
# does so for its partitioned and sanitized runs.  The TAP tests (t/) start
# nodes of their own either way, with the same settings (t/lib/P2payNode.pm).
USE_RUNNING ?=
ifneq ($(filter-out 0 1,$(USE_RUNNING)),)
$(error USE_RUNNING must be 1, 0 or empty, not '$(USE_RUNNING)')
endif
INSTANCE_CONF  = tmp_instance.conf
ifneq ($(USE_RUNNING),1)
REGRESS_OPTS   = --temp-config=$(INSTANCE_CONF) --temp-instance=./tmp_check
ISOLATION_OPTS = --temp-config=$(INSTANCE_CONF) --temp-instance=./tmp_check_iso
endif
# What make installcheck does before the suites: refuse root when it would
# start a server, and write the instance's configuration.
REGRESS_PREP   = installcheck-user $(if $(filter 1,$(USE_RUNNING)),,$(INSTANCE_CONF))

PG_CONFIG  ?= pg_config
PG_CFLAGS  += -Wall -Wextra -Werror -Wno-unused-parameter

# make SANITIZE=1 builds the extension and the tools with AddressSanitizer
# and UndefinedBehaviorSanitizer (gcc's).  The library then loads only into
# a server that has the ASan runtime preloaded: make test SANITIZE=1 sets
# that up (docs/testing.md: Testing under sanitizers and valgrind).  In a server, UB
# is reported and execution goes on, so that a run lists every finding (the
# run fails on any report); a tool stops at the first, so that the test that
# ran it fails.
SANITIZE   ?=
ifeq ($(SANITIZE),1)
SANITIZE_FLAGS = -fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer
PG_CFLAGS  += $(SANITIZE_FLAGS)
TOOL_SANITIZE_FLAGS = $(SANITIZE_FLAGS) -fno-sanitize-recover=undefined,float-cast-overflow
endif

# make ASSERT=1 builds the extension with PostgreSQL's assertions on
# (-DUSE_ASSERT_CHECKING, as a server configured with --enable-cassert
# builds its own code; in CPPFLAGS, so the JIT's bitcode has them too):
# every Assert() of p2pay and of the inline code of PostgreSQL's headers is
# checked, and a failed one ends the backend with a TRAP line in the
# server's log.  The tools are not affected.  Such a p2pay.so loads into a
# server built without assertions: Assert() calls ExceptionalCondition(),
# which every server has, and p2pay uses no function or structure that
# exists only in an assertion-enabled server.  It combines with SANITIZE;
# CI runs make test SANITIZE=1 ASSERT=1.
ASSERT     ?=
ifeq ($(ASSERT),1)
ASSERT_FLAGS = -DUSE_ASSERT_CHECKING
PG_CPPFLAGS += $(ASSERT_FLAGS)
endif

# Client programs (tools/README.md), installed next to PostgreSQL's own.
# make tools builds all three; make (all) builds the extension, and each
# program whose library is found: libpq (PostgreSQL's) for p2pay-stream,
# librdkafka for p2pay-forward, libmicrohttpd for p2pay-http.  A header
# that the compiler finds counts as found; HAVE_RDKAFKA=no or
# HAVE_MICROHTTPD=no on the command line acts as if it were missing.
TOOL_CC     ?= $(CC)
have_header  = $(shell printf '\043include <%s>\n' '$(1)' | $(TOOL_CC) $(2) -E -x c - >/dev/null 2>&1 && echo yes || echo no)
# (Each is looked for once, when make reads this file.)
ifeq ($(origin HAVE_LIBPQ),undefined)
HAVE_LIBPQ      := $(call have_header,libpq-fe.h,-I$(shell $(PG_CONFIG) --includedir))
endif
ifeq ($(origin HAVE_RDKAFKA),undefined)
HAVE_RDKAFKA    := $(call have_header,librdkafka/rdkafka.h)
endif
ifeq ($(origin HAVE_MICROHTTPD),undefined)
HAVE_MICROHTTPD := $(call have_header,microhttpd.h)
endif
TOOLS_ALL     = tools/p2pay-stream tools/p2pay-forward tools/p2pay-http
TOOLS_FOUND  := $(if $(filter yes,$(HAVE_LIBPQ)),tools/p2pay-stream) \
                $(if $(filter yes,$(HAVE_LIBPQ)),$(if $(filter yes,$(HAVE_RDKAFKA)),tools/p2pay-forward)) \
                $(if $(filter yes,$(HAVE_LIBPQ)),$(if $(filter yes,$(HAVE_MICROHTTPD)),tools/p2pay-http))
TOOLS_SKIPPED := $(filter-out $(TOOLS_FOUND),$(TOOLS_ALL))
# make install installs (and links) the programs make builds.
SCRIPTS_built := $(strip $(TOOLS_FOUND))
EXTRA_CLEAN   = .build-mode http/swagger-ui $(TOOLS_ALL) tools/p2pay-forward-test

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# prove prints each TAP test's time, so that a run's log says where it went.
# The TAP tests run TAP_JOBS at a time, each on nodes of its own (free
# ports are claimed under tmp_check/portlock), the longest first, so that
# the others run beside it: make installcheck TAP_JOBS=1 runs them one by
# one, PROVE_TESTS=t/NNN_name.pl runs one.
TAP_JOBS    ?= 2
PROVE_FLAGS += --timer -j$(TAP_JOBS)
PROVE_TESTS ?= t/010_schema_changes.pl $(filter-out t/010_schema_changes.pl,$(sort $(wildcard t/*.pl)))

# Every installation of an older version can be updated to EXTVERSION, and
# EXTVERSION can be installed: the scripts' names are checked before every
# build (scripts/check-update-chain.sh; t/011_upgrade.pl walks the paths).
all: check-update-chain
.PHONY: check-update-chain
check-update-chain:
	@bash $(srcdir)/scripts/check-update-chain.sh $(srcdir) $(EXTENSION) $(EXTVERSION)

# Every object depends on the shared headers (PGXS tracks only the .c files).
$(OBJS): src/p2pay.h src/catalog.h src/compat.h src/json.h src/facts.h src/rules.h src/stats.h src/store.h \
         src/refs.h src/locks.h src/moneyflow.h src/trigger.h src/timeutil.h src/conflict.h

# libpq clients: warnings as errors like the extension.
PG_INCLUDEDIR := $(shell $(PG_CONFIG) --includedir)
PG_LIBDIR     := $(shell $(PG_CONFIG) --libdir)
TOOL_CFLAGS    = -O2 -g -Wall -Wextra -Werror -I$(PG_INCLUDEDIR) $(TOOL_SANITIZE_FLAGS)

# Objects built with and without SANITIZE, or with and without ASSERT, must
# never be linked together, nor objects and programs built for another
# installation (p2pay-http has its files' directory built in): .build-mode
# records the modes and the installation of the last build, and a change
# rebuilds.
BUILD_MODE = $(if $(SANITIZE_FLAGS),sanitize,plain)$(if $(ASSERT_FLAGS),+assert) $(datadir)
.build-mode: .FORCE
	@[ "$$(cat $@ 2>/dev/null)" = '$(BUILD_MODE)' ] || echo '$(BUILD_MODE)' > $@
.PHONY: .FORCE
$(OBJS) $(TOOLS_ALL) tools/p2pay-forward-test: .build-mode
# The JIT's bitcode of the extension (with_llvm) is built with or without
# assertions too.
ifeq ($(with_llvm),yes)
$(OBJS:.o=.bc): .build-mode
endif

# make tools: every program, or an error that names the missing library.
# make (all): the ones whose libraries are found, and a line on the rest.
.PHONY: tools tools-test tools-found
tools: $(TOOLS_ALL)
all: tools-found
tools-found: $(TOOLS_FOUND)
	$(if $(strip $(TOOLS_SKIPPED)),@echo '$(SKIPPED_NOTE)')
PACKAGE_p2pay-stream = libpq-dev
PACKAGE_p2pay-forward = librdkafka-dev
PACKAGE_p2pay-http = libmicrohttpd-dev
SKIPPED_NOTE = make: skipped $(foreach t,$(notdir $(TOOLS_SKIPPED)),$(t) (no $(PACKAGE_$(t)))): install those Debian packages, then make tools
need = $(if $(filter yes,$(HAVE_$(1))),,@echo "make: $@ needs $(2) (Debian: $(3))" >&2; exit 1)

TOOL_COMMON = tools/common.c tools/common.h tools/replication.h
tools/p2pay-stream: tools/p2pay-stream.c $(TOOL_COMMON)
	$(call need,LIBPQ,libpq,libpq-dev)
	$(CC) $(TOOL_CFLAGS) -o $@ $(filter %.c,$^) -L$(PG_LIBDIR) -lpq

# The Kafka forwarder also needs librdkafka (Debian: librdkafka-dev).  Its
# test build (tools/p2pay-forward-test, made by make tools-test for
# t/007_forward.pl, never installed) adds the mock cluster's faults.
FORWARD_SRCS = tools/forward/main.c tools/forward/source.c tools/forward/queue.c \
               tools/forward/sink_kafka.c tools/forward/sink_file.c
tools/p2pay-forward: $(FORWARD_SRCS) tools/forward/forward.h $(TOOL_COMMON)
	$(call need,RDKAFKA,librdkafka,librdkafka-dev)
	$(CC) $(TOOL_CFLAGS) -o $@ $(filter %.c,$^) -L$(PG_LIBDIR) -lpq -lrdkafka
tools-test: tools/p2pay-forward-test
tools/p2pay-forward-test: $(FORWARD_SRCS) tools/forward/mock.c tools/forward/forward.h $(TOOL_COMMON)
	$(call need,RDKAFKA,librdkafka,librdkafka-dev)
	$(CC) $(TOOL_CFLAGS) -DP2PAY_FORWARD_TESTING -o $@ $(filter %.c,$^) -L$(PG_LIBDIR) -lpq -lrdkafka

# The HTTP daemon also needs libmicrohttpd (Debian: libmicrohttpd-dev).  It
# serves the files of http/ from where make install puts them.
HTTP_DIR = $(datadir)/p2pay-http
tools/p2pay-http: tools/p2pay-http.c $(TOOL_COMMON)
	$(call need,MICROHTTPD,libmicrohttpd,libmicrohttpd-dev)
	$(CC) $(TOOL_CFLAGS) -pthread -DP2PAY_HTTP_DIR='"$(HTTP_DIR)"' -o $@ $(filter %.c,$^) -L$(PG_LIBDIR) -lpq -lmicrohttpd

# Its pages, scripts and OpenAPI document; and Swagger UI for the docs page,
# from npm's swagger-ui-dist at the version http/package-lock.json pins,
# installed by the build (with the tests' npm packages) and never committed.
# Without npm, the rest builds, and /api/v1/docs says what is missing.
HTTP_FILES = $(filter-out http/package.json http/package-lock.json,\
	$(wildcard http/*.html http/*.js http/*.css http/*.json))
SWAGGER_UI = http/swagger-ui/swagger-ui-bundle.js http/swagger-ui/swagger-ui.css
HAVE_NPM  := $(shell command -v npm 2>/dev/null)
ifneq ($(HAVE_NPM),)
all: $(SWAGGER_UI)
endif
http/node_modules/.package-lock.json: http/package.json http/package-lock.json
	cd http && npm ci --no-audit --no-fund --loglevel=error
	@touch $@
$(SWAGGER_UI): http/node_modules/.package-lock.json
	@mkdir -p http/swagger-ui
	cp http/node_modules/swagger-ui-dist/$(notdir $@) $@
install: install-http
.PHONY: install-http
install-http:
	$(MKDIR_P) '$(DESTDIR)$(HTTP_DIR)/swagger-ui'
	$(INSTALL_DATA) $(HTTP_FILES) '$(DESTDIR)$(HTTP_DIR)/'
	$(if $(wildcard $(SWAGGER_UI)),$(INSTALL_DATA) $(SWAGGER_UI) '$(DESTDIR)$(HTTP_DIR)/swagger-ui/')

# The queries of prometheus-postgres-exporter (README: Monitoring), in
# $(pg_config --sharedir)/p2pay/.
MONITORING_DIR = $(datadir)/p2pay
install: install-monitoring
.PHONY: install-monitoring
install-monitoring:
	$(MKDIR_P) '$(DESTDIR)$(MONITORING_DIR)'
	$(INSTALL_DATA) monitoring/queries.yaml '$(DESTDIR)$(MONITORING_DIR)/'
# The programs go next to PostgreSQL's own (pg_config --bindir), which is
# not on PATH on Debian (/usr/lib/postgresql/15/bin): make install also
# links them into BIN_LINK_DIR, /usr/local/bin unless told otherwise
# (BIN_LINK_DIR= makes no links).  A file there that is not a link is left
# alone, and make uninstall removes only links to this installation.
TOOLS        = $(notdir $(SCRIPTS_built))
BIN_LINK_DIR = /usr/local/bin
install: install-links
.PHONY: install-links
install-links:
ifneq ($(BIN_LINK_DIR),)
	$(MKDIR_P) '$(DESTDIR)$(BIN_LINK_DIR)'
	@for p in $(TOOLS); do \
	  link='$(DESTDIR)$(BIN_LINK_DIR)/'$$p; \
	  if [ -e "$$link" ] && [ ! -L "$$link" ]; then \
	    echo "warning: $$link exists and is not a link: left as it is" >&2; \
	  else \
	    echo "ln -sfn '$(bindir)/$$p' $$link"; ln -sfn '$(bindir)/'$$p "$$link"; \
	  fi; \
	done
endif

# PGXS uninstalls SCRIPTS_built by their path in the tree (bin/tools/...).
uninstall: uninstall-tools
.PHONY: uninstall-tools
uninstall-tools:
	rm -f $(addprefix '$(DESTDIR)$(bindir)'/,$(notdir $(TOOLS_ALL)))
	rm -rf '$(DESTDIR)$(HTTP_DIR)'
	rm -f '$(DESTDIR)$(MONITORING_DIR)/queries.yaml'
	-rmdir '$(DESTDIR)$(MONITORING_DIR)'
ifneq ($(BIN_LINK_DIR),)
	@for p in $(notdir $(TOOLS_ALL)); do \
	  link='$(DESTDIR)$(BIN_LINK_DIR)/'$$p; \
	  if [ -L "$$link" ] && [ "$$(readlink "$$link")" = '$(bindir)/'$$p ]; then \
	    echo "rm -f $$link"; rm -f "$$link"; \
	  fi; \
	done
endif

# The configuration of make installcheck's instance, written again at
# every run: the server of PG_CONFIG's installation decides what it holds.
.PHONY: $(INSTANCE_CONF)
$(INSTANCE_CONF):
	@bash $(srcdir)/scripts/instance-conf.sh '$(bindir)' > $@
EXTRA_CLEAN += $(INSTANCE_CONF)

# PostgreSQL refuses to run as root, so make installcheck does too when it
# would start a server: its own instance, or the TAP tests' nodes.
INSTALLCHECK_STARTS_SERVERS = $(or $(if $(filter 1,$(USE_RUNNING)),,$(REGRESS)$(ISOLATION)),$(TAP_TESTS))
.PHONY: installcheck-user
installcheck-user:
ifneq ($(strip $(INSTALLCHECK_STARTS_SERVERS)),)
	@if [ "$$(id -u)" = 0 ]; then \
	  echo "make installcheck: PostgreSQL refuses to run as root, and make installcheck starts servers"; \
	  echo "(its own instance for the pg_regress and isolation suites, the TAP tests' nodes).  Either:"; \
	  echo "  - run it as an unprivileged user who can write the tree, e.g. as root, in a copy owned by postgres:"; \
	  echo "      runuser -u postgres -- make installcheck"; \
	  echo "  - or run make test, which does that for you (and installs what the suites need);"; \
	  echo "  - or run the pg_regress and isolation suites against a server you run (PGHOST, PGPORT):"; \
	  echo "      make installcheck USE_RUNNING=1 TAP_TESTS="; \
	  exit 1; \
	fi >&2
endif

.PHONY: test demo eval bench valgrind check-docker
# Everything: installs what it needs, builds, installs, runs every suite on
# a throwaway cluster.  With SANITIZE=1, under ASan and UBSan.
test:
	bash scripts/test.sh

# docker/Dockerfile's lines run in a Debian 12 root, then the image started
# as docker/docker-compose.yml starts it (no Docker engine; as root, with
# network access to Debian and npm; several minutes).  See docker/README.md.
check-docker:
	bash scripts/check-docker.sh

# make test against PostgreSQL 17 (or 18), as Debian 13 (or forky) ships
# it, in a Debian root made and cached by scripts/test-version.sh; as root.
# The plain run of the suites that depend on the server's version.
.PHONY: test-pg17 test-pg18 test-versions
test-pg17:
	bash scripts/test-version.sh 17
test-pg18:
	bash scripts/test-version.sh 18
# Every version Debian ships: 15 here, 17 and 18 in their roots.
test-versions: test test-pg17 test-pg18

# The pg_regress suite against a server under valgrind's memcheck (slow).
valgrind:
	bash scripts/valgrind.sh

# A throwaway cluster with a scripted P2P scenario, printed with decisions.
demo:
	bash scripts/demo.sh

# The detection-quality harness: a simulated P2P network with planted fraud,
# scored through the trigger; prints and writes eval/results/latest.md.
eval:
	bash scripts/eval.sh

# The insert path against bare inserts and a PL/pgSQL trigger, scaling with
# history, a hot payee, backtest, and the stream against wal2json and
# test_decoding; prints and writes bench/results/latest.md.
bench:
	bash scripts/bench.sh
