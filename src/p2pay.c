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
#include "utils/guc.h"

PG_MODULE_MAGIC;

/* How far in the future a payment's created_at may lie, in seconds. */
int			p2pay_future_tolerance = 300;

void		_PG_init(void);

/*
 * Define the settings, register the cache invalidation callbacks and, when
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
	MarkGUCPrefixReserved("p2pay");

	p2pay_config_register_callbacks();
	p2pay_stats_init();
}
