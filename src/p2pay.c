/*
 * p2pay.c: module entry point and settings.
 *
 * Settings are defined here and nowhere else, all under the reserved prefix
 * "p2pay."; each one's variable lives with the code that reads it
 * (trigger.c, locks.c, stats.c), and nothing else of p2pay calls into this
 * file.  Rule parameters and decision thresholds are not settings: they
 * are rows of p2pay.rules and p2pay.settings, so that they are
 * transactional and kept by pg_dump.
 */
#include "postgres.h"

#include "p2pay.h"
#include "conflict.h"
#include "compat.h"
#include "locks.h"
#include "rules.h"
#include "stats.h"
#include "store.h"
#include "trigger.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

static const struct config_enum_entry delete_mode_options[] = {
	{"reverse", DELETE_MODE_REVERSE, false},
	{"archive", DELETE_MODE_ARCHIVE, false},
	{NULL, 0, false}
};

void		_PG_init(void);

/*
 * Refuse a SET of p2pay.delete_mode to another mode than the one this
 * transaction has deleted payments in, so that a statement never deletes
 * some rows in one mode and some in the other.  The values restored at the
 * end of a function or a subtransaction are not checked here: the delete
 * triggers refuse a delete in another mode.
 */
static bool
check_delete_mode(int *newval, void **extra, GucSource source)
{
	int			fixed = p2pay_delete_mode_fixed();

	if (source != PGC_S_SESSION || fixed < 0 || *newval == fixed)
		return true;
	GUC_check_errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE);
	GUC_check_errmsg("p2pay.delete_mode can't change in a transaction that has deleted payments");
	GUC_check_errdetail("This transaction deleted payments with p2pay.delete_mode = %s; a transaction deletes payments in one mode, the one of its first delete.",
						fixed == DELETE_MODE_ARCHIVE ? "archive" : "reverse");
	GUC_check_errhint("Set p2pay.delete_mode before the transaction deletes its first payment, or delete in another transaction.");
	return false;
}

/*
 * Define the settings, register the cache invalidation callbacks and the
 * transaction callbacks that follow the account locks held and the mode of
 * the transaction's deletes and, when preloaded, reserve the statistics'
 * shared memory.
 */
void
_PG_init(void)
{
	DefineCustomIntVariable("p2pay.future_tolerance",
							"How far in the future a payment's created_at may lie.",
							"Inserts whose created_at lies further ahead of the server's clock are rejected.",
							&p2pay_future_tolerance,
							300, 0, 86400,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("p2pay.multi_payment_lock_timeout",
							"How long a transaction that already holds account locks tries for another.",
							"A transaction holding the account locks of earlier payments does not wait in the lock manager "
							"for a lock below one it holds, which could deadlock; after this long it gives way with a "
							"serialization failure (40001).  0 gives way at once.",
							&p2pay_multi_payment_lock_timeout,
							10, 0, 60000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("p2pay.lock_escalation_accounts",
							"How many account locks a transaction holds before it locks every account at once.",
							"A transaction about to hold more account locks takes one lock covering every account "
							"instead, once the transactions writing payments at that moment have ended (it tries "
							"for deadlock_timeout); other writers then wait until it ends.  -1 never escalates.",
							&p2pay_lock_escalation_accounts,
							64, -1, INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
	DefineCustomEnumVariable("p2pay.delete_mode",
							 "What deleting a payment means: reversing it, or archiving it.",
							 "reverse takes the payment out of the per-account state and streams a deleted event; "
							 "archive (for the owner of p2pay.payments) keeps it in the state, as history the rules "
							 "still count, and streams nothing.",
							 &p2pay_delete_mode,
							 DELETE_MODE_REVERSE, delete_mode_options,
							 PGC_USERSET,
							 0,
							 check_delete_mode, NULL, NULL);
	/* Sized at start: defined only when preloaded (a later load can't). */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("p2pay.stats_databases",
								"How many databases keep statistics of their own.",
								"Each database that uses p2pay takes a block of shared memory for rule_stats and "
								"decision_stats, reserved at server start; further databases share one overflow block, "
								"which their views report.  Needs p2pay in shared_preload_libraries.",
								&p2pay_stats_databases,
								64, 1, 4096,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);
	MarkGUCPrefixReserved("p2pay");

	p2pay_config_register_callbacks();
	p2pay_lock_register_callbacks();
	p2pay_delete_mode_register_callbacks();
	p2pay_statement_register_callbacks();
	p2pay_conflict_register_hooks();
	p2pay_stats_init();
}
