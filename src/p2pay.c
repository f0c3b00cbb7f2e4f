/*
 * p2pay.c: module entry point and settings.
 *
 * Settings are defined here and nowhere else, all under the reserved prefix
 * "p2pay.".  Rule parameters and decision thresholds are not settings: they
 * are rows of p2pay.rules and p2pay.settings, so that they are
 * transactional and kept by pg_dump.
 */
#include "postgres.h"

#include "p2pay.h"
#include "compat.h"

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

/* How far in the future a payment's created_at may lie, in seconds. */
int			p2pay_future_tolerance = 300;

/*
 * How long a transaction that holds account locks tries for one more that
 * it can't wait for in the lock manager (state.c), in milliseconds.
 */
int			p2pay_multi_payment_lock_timeout = 10;

void		_PG_init(void);

/*
 * An input value as a message quotes it: at most P2PAY_ECHO_MAX bytes, cut
 * on a character boundary, with "..." where it was cut.  A message never
 * grows with what a client sent (an amount of 1e131071 is 8 characters
 * long and 131,073 digits printed).
 */
char *
p2pay_echo(const char *value)
{
	size_t		len;
	int			cut;

	if (value == NULL)
		return pstrdup("(null)");
	len = strnlen(value, P2PAY_ECHO_MAX + 1);
	if (len <= P2PAY_ECHO_MAX)
		return pstrdup(value);
	cut = pg_mbcliplen(value, (int) len, P2PAY_ECHO_MAX);
	return psprintf("%.*s...", cut, value);
}

/*
 * Define the settings, register the cache invalidation callbacks and the
 * transaction callbacks that follow the account locks held and, when
 * preloaded, reserve the statistics' shared memory.
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
	MarkGUCPrefixReserved("p2pay");

	p2pay_config_register_callbacks();
	p2pay_lock_register_callbacks();
	p2pay_stats_init();
}
