# p2pay: PGXS build.  The version is read from p2pay.control.
EXTENSION   = p2pay
EXTVERSION  = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(EXTENSION).control)
MODULE_big  = p2pay
OBJS        = src/p2pay.o src/config.o src/rules.o src/state.o src/trigger.o
DATA        = $(wildcard $(EXTENSION)--*.sql)

# pg_regress: one file per behaviour, run in this order.
REGRESS      = schema rules bad_input config insert_paths rollback guard

# isolation tests (specs/): what concurrent sessions see of each other
ISOLATION    = config_reload account_lock


TAP_TESTS    = 1

PG_CONFIG  ?= pg_config
PG_CFLAGS  += -Wall -Wextra -Werror -Wno-unused-parameter

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

.PHONY: test demo
# Everything: installs what it needs, builds, installs, runs every suite on
# a throwaway cluster.
test:
	bash scripts/test.sh

# A throwaway cluster with a scripted P2P scenario, printed with decisions.
demo:
	bash scripts/demo.sh
