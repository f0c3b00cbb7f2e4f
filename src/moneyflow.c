/*
 * moneyflow.c: the money-flow facts of a large payment, in SQL: what the
 * payer's recent payers paid it (pass_through) and whether the payment
 * closes a loop of three or four accounts (cycle), and the accounts a loop
 * of four can pass through, which the payment locks (locks.c).
 *
 * These are rarer than the other facts (large payments only, and only once
 * the cheaper facts say they can matter: store.c), and read more rows, so
 * they stay SQL, each statement prepared once per backend.  Their reads
 * are bounded by the accounts' activity in a window, capped
 * (PASS_THROUGH_PAYERS, CYCLE_FANOUT, facts.h), never by the length of an
 * account's history; the backtest (backtest.c) follows the same bounds in
 * the same order.
 *
 * Memory: SPI results live in SPI's context and die at SPI_finish.
 */
#include "postgres.h"

#include "p2pay.h"
#include "catalog.h"
#include "facts.h"
#include "moneyflow.h"
#include "rules.h"
#include "store.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/*
 * Each statement is planned for index scans only.  A plan is made once and
 * kept, and the planner sizes p2pay.payments by its statistics: planned
 * when the table was small (just created, truncated, or with its rows yet
 * to be counted by ANALYZE), it would scan the table sequentially or
 * through its BRIN index on created_at, whose every block in the window
 * then qualifies, and a load of many payments in one transaction, which
 * ANALYZE can't see until it commits, would read all the payments it had
 * inserted so far for each one it inserts.  The settings are made in the
 * nesting level of settings that every caller runs in, the trigger's work
 * as the owner (p2pay_begin_as_owner), whose end restores them: so a
 * payment that runs none of these statements pays nothing for them, and
 * one that runs several sets them once more each, with no level of its
 * own to open and close.
 */
static void
index_scans_only(void)
{
	Assert(InSecurityRestrictedOperation());
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_bitmapscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

static SPIPlanPtr money_flow_plan = NULL;
static SPIPlanPtr cycle_candidates_plan = NULL;
static SPIPlanPtr cycle_plan = NULL;

/*
 * The legs of a loop closed by payer -> payee, each of at least min since
 * since: the accounts the payee paid (other than the payer), the accounts
 * one of those, c, paid (other than the two), and whether an account paid
 * the payer.  Each list is cut at CYCLE_FANOUT, the lowest ids.  The last
 * leg asks the pair's row first: pair_stats keeps every pair with its last
 * payment's time, so an account whose pair with the payer has none in the
 * window paid it nothing there, and its payments are not read (a CASE,
 * which the planner can't turn into a join that reads them first).
 */
#define CYCLE_SECOND(payer, payee, since, min) \
"(SELECT DISTINCT h1.payee_id AS c FROM p2pay.payments h1" \
"  WHERE h1.payer_id" SQL_EQ payee " AND h1.created_at" SQL_GT since \
"    AND h1.amount_base::pg_catalog.float8" SQL_GE min " AND h1.payee_id" SQL_NE payer \
"  ORDER BY h1.payee_id LIMIT " CppAsString2(CYCLE_FANOUT) ")"
#define CYCLE_THIRD(c, payer, payee, since, min) \
"(SELECT DISTINCT h2.payee_id AS d FROM p2pay.payments h2" \
"  WHERE h2.payer_id" SQL_EQ c " AND h2.created_at" SQL_GT since \
"    AND h2.amount_base::pg_catalog.float8" SQL_GE min \
"    AND h2.payee_id" SQL_NE payer " AND h2.payee_id" SQL_NE payee \
"  ORDER BY h2.payee_id LIMIT " CppAsString2(CYCLE_FANOUT) ")"
#define CYCLE_BACK(from, payer, since, min) \
"CASE WHEN EXISTS (SELECT 1 FROM p2pay.pair_stats b WHERE b.payer_id" SQL_EQ from \
"                   AND b.payee_id" SQL_EQ payer " AND b.last_at" SQL_GT since ")" \
"     THEN EXISTS (SELECT 1 FROM p2pay.payments h3 WHERE h3.payer_id" SQL_EQ from \
"                   AND h3.created_at" SQL_GT since " AND h3.payee_id" SQL_EQ payer \
"                   AND h3.amount_base::pg_catalog.float8" SQL_GE min ")" \
"     ELSE false END"

/*
 * The money-flow facts of a large payment: what the payer's recent payers
 * paid it since $8 ($3: pass_through applies), and whether the payment
 * closes a loop of three, or of four ($7), every leg at least $6 since $5
 * ($4: cycle applies).  A pair whose first payment is after $8 paid all
 * its total then (pair_stats keeps the first payment's time and the sum of
 * amount_base exactly, through reversals too): only the payments of a
 * pair that paid before are read.
 */
static const char *money_flow_sql =
"SELECT"
" (CASE WHEN $3 THEN (SELECT coalesce(pg_catalog.sum(r.total), 0) FROM"
"   (SELECT CASE WHEN s.first_at" SQL_GT "$8 THEN s.total"
"            ELSE (SELECT pg_catalog.sum(q.amount_base) FROM p2pay.payments q"
"                   WHERE q.payer_id" SQL_EQ "s.payer_id AND q.created_at" SQL_GT "$8"
"                     AND q.payee_id" SQL_EQ "$1) END AS total"
"      FROM p2pay.pair_stats s WHERE s.payee_id" SQL_EQ "$1 AND s.last_at" SQL_GT "$8"
"     ORDER BY s.last_at, s.payer_id LIMIT " CppAsString2(PASS_THROUGH_PAYERS) ") r) END)"
"   ::pg_catalog.float8,"
" CASE WHEN $4 THEN EXISTS ("
"   SELECT 1 FROM " CYCLE_SECOND("$1", "$2", "$5", "$6") " c"
"    WHERE " CYCLE_BACK("c.c", "$1", "$5", "$6")
"       OR ($7 AND EXISTS (SELECT 1 FROM " CYCLE_THIRD("c.c", "$1", "$2", "$5", "$6") " d"
"                            WHERE " CYCLE_BACK("d.d", "$1", "$5", "$6") "))) END";

/*
 * A loop of four, X->Y->C->D->X, closed by X->Y has a middle leg C->D that
 * touches neither X nor Y, so the payer's and payee's locks alone don't
 * order X->Y with a concurrent C->D: each could miss the other and the
 * loop go unflagged.  So a payment the cycle rule reads for also locks
 * every account C its payee paid significantly in the window (the ones,
 * in the order, that the facts statement follows), when anyone but the
 * payee paid its payer in the window (which p2pay_cycle_candidates asks
 * before it runs this): C->D locks C, so either it committed before the
 * facts are read and is seen, or it waits and then sees X->Y.
 */
static const char *cycle_candidates_sql =
"SELECT c.c::pg_catalog.uuid FROM " CYCLE_SECOND("$1", "$2", "$3", "$4") " c";

/* The loops of four alone, for the check under a transaction snapshot. */
static const char *cycle_sql =
"SELECT EXISTS (SELECT 1 FROM " CYCLE_SECOND("$1", "$2", "$3", "$4") " c,"
"               LATERAL " CYCLE_THIRD("c.c", "$1", "$2", "$3", "$4") " d"
"                WHERE " CYCLE_BACK("d.d", "$1", "$3", "$4") ")";

/*
 * Prepare the cycle's statements, kept for the session, once.
 */
static void
prepare_cycle_plans(void)
{
	Oid			types[4] = {UUIDOID, UUIDOID, TIMESTAMPTZOID, FLOAT8OID};

	if (cycle_candidates_plan == NULL)
		cycle_candidates_plan = p2pay_prepare_kept(cycle_candidates_sql, 4, types);
	if (cycle_plan == NULL)
		cycle_plan = p2pay_prepare_kept(cycle_sql, 4, types);
}

/*
 * The accounts a middle leg of a loop of four closed by the payment can
 * start from: none unless anyone but the payee paid its payer since since
 * (p2pay_paid_after, the state's index of pairs by payee: most payers were
 * paid by no one in the window), and then the accounts its payee paid at
 * least min_amount since then (cycle_candidates_sql).  Each is read with a
 * new snapshot under READ COMMITTED, the transaction's under REPEATABLE
 * READ; the two agree once the payer is locked, as only payments to it
 * change the first.  Returns how many, their uuids the first column of
 * SPI_tuptable.
 */
uint64
p2pay_cycle_candidates(Oid nspid, const PaymentInput *in, TimestampTz since, double min_amount)
{
	Datum		values[4];
	int			ret;

	if (!p2pay_paid_after(nspid, in->payer, in->payee, since, false))
		return 0;
	prepare_cycle_plans();
	values[0] = UUIDPGetDatum(in->payer);
	values[1] = UUIDPGetDatum(in->payee);
	values[2] = TimestampTzGetDatum(since);
	values[3] = Float8GetDatum(min_amount);

	PushActiveSnapshot(GetTransactionSnapshot());
	index_scans_only();
	ret = SPI_execute_plan(cycle_candidates_plan, values, NULL, true, 0);
	PopActiveSnapshot();
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "p2pay: cycle candidates statement failed: %s", SPI_result_code_string(ret));
	return SPI_processed;
}

/*
 * Under REPEATABLE READ or SERIALIZABLE the facts come from the
 * transaction's snapshot, which can't see a middle leg that committed after
 * it was taken.  Finding one with a current snapshot is a serialization
 * failure, as for every other fact that changed under a fixed snapshot.
 * The loop's last leg is a payment to the payer by an account other than
 * the payee: unless the latest snapshot shows one in the window
 * (p2pay_paid_after), there is no loop and the statement is not run.
 */
static void
check_cycle_snapshot(Oid nspid, const PaymentInput *in, TimestampTz since, double min_amount)
{
	Datum		values[4];
	int			ret;
	bool		isnull;

	if (!p2pay_paid_after(nspid, in->payer, in->payee, since, true))
		return;
	prepare_cycle_plans();
	values[0] = UUIDPGetDatum(in->payer);
	values[1] = UUIDPGetDatum(in->payee);
	values[2] = TimestampTzGetDatum(since);
	values[3] = Float8GetDatum(min_amount);

	index_scans_only();
	ret = SPI_execute_snapshot(cycle_plan, values, NULL, GetLatestSnapshot(),
							   InvalidSnapshot, true, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "p2pay: cycle statement failed: %s", SPI_result_code_string(ret));
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to a concurrent payment"),
				 errdetail("A payment committed after this transaction's snapshot was taken closes a loop with this one.")));
}

/*
 * Read the money-flow facts of a large payment (facts.c decides when these
 * can matter; store.c asks), with the active snapshot: what the payer's
 * recent payers paid it, if sum, and whether the payment closes a loop, if
 * loops.  Under REPEATABLE READ an insert of a payment cycle looks at
 * (cycle_on) also checks for a loop closed after its snapshot; nspid is
 * p2pay's schema.
 */
void
p2pay_read_money_flow(const P2payConfig *cfg, Oid nspid, const PaymentInput *in,
					  PaymentFacts *facts, bool record, bool sum, bool loops, bool cycle_on)
{
	const RuleConfig *pt = &cfg->rules[RULE_PASS_THROUGH];
	const RuleConfig *cy = &cfg->rules[RULE_CYCLE];

	facts->received = 0;
	facts->closes_cycle = false;
	if (sum || loops)
	{
		Datum		values[8];
		bool		isnull;
		Datum		d;
		int			ret;

		if (money_flow_plan == NULL)
		{
			Oid			types[8] = {UUIDOID, UUIDOID, BOOLOID, BOOLOID, TIMESTAMPTZOID,
			FLOAT8OID, BOOLOID, TIMESTAMPTZOID};

			money_flow_plan = p2pay_prepare_kept(money_flow_sql, 8, types);
		}
		values[0] = UUIDPGetDatum(in->payer);
		values[1] = UUIDPGetDatum(in->payee);
		values[2] = BoolGetDatum(sum);
		values[3] = BoolGetDatum(loops);
		values[4] = TimestampTzGetDatum(in->created_at - cy->p.window);
		values[5] = Float8GetDatum(cy->p.min_amount);
		values[6] = BoolGetDatum(cy->p.max_length >= 4);
		values[7] = TimestampTzGetDatum(in->created_at - pt->p.window);

		index_scans_only();
		ret = SPI_execute_plan(money_flow_plan, values, NULL, true, 0);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "p2pay: money-flow statement failed: %s", SPI_result_code_string(ret));

		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		facts->received = isnull ? 0.0 : DatumGetFloat8(d);
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		facts->closes_cycle = !isnull && DatumGetBool(d);
	}

	if (record && cycle_on && !facts->closes_cycle && cy->p.max_length >= 4 &&
		IsolationUsesXactSnapshot())
		check_cycle_snapshot(nspid, in, in->created_at - cy->p.window, cy->p.min_amount);
}

