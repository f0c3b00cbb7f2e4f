/*
 * state.c: the per-account state the rules read, and the locks that keep it
 * exact under concurrency.
 *
 * Locking: a payment takes a transaction-scoped advisory lock on its payer
 * and on its payee, lower key first, before it reads any state; every
 * writer of the state goes through here, so two transactions of one payment
 * each can't deadlock on these locks, and an insert that waited sees
 * everything the other one committed (a commit is visible before its locks
 * are released).  A transaction of several payments holds all their locks
 * until it ends, so two such transactions can deadlock; PostgreSQL then
 * aborts one of them (40P01), which can be retried.  The keys
 * live in their own advisory namespace (field 4 = P2PAY_LOCK_SPACE), so they
 * can't collide with an application's pg_advisory_lock keys.
 *
 * Cost: the lookup, the facts and the writes of an ordinary payment are
 * facts.c's, through the indexes directly.  What stays SQL here is rarer:
 * the money-flow facts of a large payment, the cycle rule's candidates and
 * its REPEATABLE READ check, and forgetting a deleted payment; each
 * statement is prepared once per backend.  The money-flow reads are bounded
 * by the accounts' activity in a window, capped (PASS_THROUGH_PAYERS,
 * CYCLE_FANOUT), never by the length of an account's history.
 *
 * Memory: SPI results live in SPI's context and die at SPI_finish; what the
 * trigger keeps (amount_base) is allocated in the context it passes in.
 */
#include "postgres.h"

#include "p2pay.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "access/xact.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#define P2PAY_LOCK_SPACE 0x7032

static SPIPlanPtr money_flow_plan = NULL;
static SPIPlanPtr forget_plan = NULL;
static SPIPlanPtr forget_empty_plan = NULL;
static SPIPlanPtr cycle_candidates_plan = NULL;
static SPIPlanPtr cycle_plan = NULL;

/*
 * Bounds on the work of the money-flow rules: pass_through sums what at
 * most this many recent payers paid in (those with the earliest last
 * payment, then the lowest id); cycle follows at most this many accounts
 * paid significantly out of each account on the way round (the lowest
 * ids).  The order makes the answer the same whatever plan is chosen, and
 * lets backtest() reproduce it.
 */
#define PASS_THROUGH_PAYERS 200
#define CYCLE_FANOUT 32

/*
 * The legs of a loop closed by payer -> payee, each of at least min since
 * since: the accounts the payee paid (other than the payer), the accounts
 * one of those, c, paid (other than the two), and whether an account paid
 * the payer.  Each list is cut at CYCLE_FANOUT, the lowest ids.
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
"EXISTS (SELECT 1 FROM p2pay.payments h3 WHERE h3.payer_id" SQL_EQ from \
"         AND h3.created_at" SQL_GT since " AND h3.payee_id" SQL_EQ payer \
"         AND h3.amount_base::pg_catalog.float8" SQL_GE min ")"

/*
 * The money-flow facts of a large payment: what the payer's recent payers
 * paid it ($3: pass_through applies), and whether the payment closes a
 * loop of three, or of four ($7), every leg at least $6 since $5 ($4:
 * cycle applies).
 */
static const char *money_flow_sql =
"SELECT"
" (CASE WHEN $3 THEN (SELECT coalesce(pg_catalog.sum(r.total), 0) FROM"
"   (SELECT (SELECT pg_catalog.sum(q.amount_base) FROM p2pay.payments q"
"             WHERE q.payer_id" SQL_EQ "s.payer_id AND q.created_at" SQL_GT "$8"
"               AND q.payee_id" SQL_EQ "$1) AS total"
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
 * in the order, that the facts statement follows), when anyone paid its
 * payer in the window: C->D locks C, so either it committed before the
 * facts are read and is seen, or it waits and then sees X->Y.
 */
static const char *cycle_candidates_sql =
"SELECT c.c::pg_catalog.uuid FROM " CYCLE_SECOND("$1", "$2", "$3", "$4") " c"
" WHERE EXISTS (SELECT 1 FROM p2pay.pair_stats s"
"                WHERE s.payee_id" SQL_EQ "$1 AND s.last_at" SQL_GT "$3"
"                  AND s.payer_id" SQL_NE "$2)";

/* The loops of four alone, for the check under a transaction snapshot. */
static const char *cycle_sql =
"SELECT EXISTS (SELECT 1 FROM " CYCLE_SECOND("$1", "$2", "$3", "$4") " c,"
"               LATERAL " CYCLE_THIRD("c.c", "$1", "$2", "$3", "$4") " d"
"                WHERE " CYCLE_BACK("d.d", "$1", "$3", "$4") ")";

/*
 * Takes a deleted payment out of the state: the inverse of state_sql's
 * writes.  A bucket that held only this payment goes, and so does a pair
 * none of whose payments remain (in a multi-row DELETE every row is gone
 * before the first of these triggers runs); a pair's first and last times
 * are read again from the payments that remain (a scan of the payer's
 * payments, as deletes are rare).  The payment's UTC day in account_daily
 * is counted again from the payments that remain that day: the payer's
 * through its index, the payee's distinct payers through the pairs paid
 * since that day began.  Counting again rather than subtracting keeps a
 * multi-row DELETE of one pair's payments exact.
 */
#define WHEN_IS(col, param, then) "CASE WHEN " col SQL_EQ param " THEN " then " ELSE 0 END"
static const char *forget_sql =
"WITH acct AS ("
"  UPDATE p2pay.account_stats a"
"     SET out_count = a.out_count" SQL_MINUS WHEN_IS("a.user_id", "$1", "1") ","
"         out_sum = a.out_sum" SQL_MINUS WHEN_IS("a.user_id", "$1", "$4") ","
"         in_count = a.in_count" SQL_MINUS WHEN_IS("a.user_id", "$2", "1") ","
"         in_sum = a.in_sum" SQL_MINUS WHEN_IS("a.user_id", "$2", "$4")
"   WHERE a.user_id" SQL_EQ "ANY (ARRAY[$1, $2])),"
" bucket_gone AS ("
"  DELETE FROM p2pay.payer_hourly h"
"   WHERE h.payer_id" SQL_EQ "$1 AND h.hour" SQL_EQ "$3 AND h.n" SQL_LE "1),"
" bucket AS ("
"  UPDATE p2pay.payer_hourly h SET n = h.n" SQL_MINUS "1, total = h.total" SQL_MINUS "$4"
"   WHERE h.payer_id" SQL_EQ "$1 AND h.hour" SQL_EQ "$3 AND h.n" SQL_GT "1),"
" remaining AS ("
"  SELECT pg_catalog.min(p.created_at) AS first_at, pg_catalog.max(p.created_at) AS last_at"
"    FROM p2pay.payments p WHERE p.payer_id" SQL_EQ "$1 AND p.payee_id" SQL_EQ "$2),"
" pair_gone AS ("
"  DELETE FROM p2pay.pair_stats s USING remaining r"
"   WHERE s.payer_id" SQL_EQ "$1 AND s.payee_id" SQL_EQ "$2 AND r.first_at IS NULL),"
" payer_day AS ("
"  UPDATE p2pay.account_daily d"
"     SET out_count = t.n, out_payees = t.payees"
"    FROM (SELECT pg_catalog.count(*) AS n, pg_catalog.count(DISTINCT p.payee_id) AS payees"
"            FROM p2pay.payments p"
"           WHERE p.payer_id" SQL_EQ "$1 AND p.created_at" SQL_GE "$5"
"             AND p.created_at" SQL_LT "$6) t"
"   WHERE d.user_id" SQL_EQ "$1 AND d.day" SQL_EQ "$7),"
" payee_day AS ("
"  UPDATE p2pay.account_daily d"
"     SET in_payers = (SELECT pg_catalog.count(*) FROM p2pay.pair_stats s"
"                       WHERE s.payee_id" SQL_EQ "$2 AND s.last_at" SQL_GE "$5"
"                         AND EXISTS (SELECT 1 FROM p2pay.payments p"
"                                      WHERE p.payer_id" SQL_EQ "s.payer_id"
"                                        AND p.payee_id" SQL_EQ "$2"
"                                        AND p.created_at" SQL_GE "$5"
"                                        AND p.created_at" SQL_LT "$6))"
"   WHERE d.user_id" SQL_EQ "$2 AND d.day" SQL_EQ "$7)"
"UPDATE p2pay.pair_stats s"
"   SET n = s.n" SQL_MINUS "1, total = s.total" SQL_MINUS "$4,"
"       first_at = r.first_at, last_at = r.last_at"
"  FROM remaining r"
" WHERE s.payer_id" SQL_EQ "$1 AND s.payee_id" SQL_EQ "$2 AND r.first_at IS NOT NULL";

/*
 * After forget_sql: the payer's and payee's rows that no payment remains
 * in go, their row of the payment's day ($3) and their running totals, as
 * rebuild_state() would count none.  An empty day would otherwise still
 * count in the history that an account's normal needs.
 */
static const char *forget_empty_sql =
"WITH day_gone AS ("
"  DELETE FROM p2pay.account_daily d"
"   WHERE d.user_id" SQL_EQ "ANY (ARRAY[$1, $2]) AND d.day" SQL_EQ "$3"
"     AND d.out_count" SQL_EQ "0 AND d.in_payers" SQL_EQ "0)"
"DELETE FROM p2pay.account_stats a"
" WHERE a.user_id" SQL_EQ "ANY (ARRAY[$1, $2]) AND a.out_count" SQL_EQ "0"
"   AND a.in_count" SQL_EQ "0";

/* Prepare a statement once for the life of the backend. */
static SPIPlanPtr
prepare_kept(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan;

	/* a generic plan from the start: the shape never depends on the values */
	plan = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "p2pay: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "p2pay: SPI_keepplan failed");
	return plan;
}

/* The lock key of an account. */
static uint64
account_key(const pg_uuid_t *id)
{
	return hash_bytes_extended(id->data, UUID_LEN, P2PAY_LOCK_SPACE);
}

static void
lock_key(uint64 key)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (key >> 32), (uint32) key,
						 P2PAY_LOCK_SPACE);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

static void
unlock_key(uint64 key)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (key >> 32), (uint32) key,
						 P2PAY_LOCK_SPACE);
	(void) LockRelease(&tag, ExclusiveLock, false);
}

/*
 * Serialize this transaction with every other one that touches account a or
 * b, until it ends.  Keys are taken in ascending order so that no two
 * payments can wait for each other.
 */
void
p2pay_lock_accounts(const pg_uuid_t *a, const pg_uuid_t *b)
{
	uint64		ka = account_key(a);
	uint64		kb = account_key(b);

	lock_key(Min(ka, kb));
	if (ka != kb)
		lock_key(Max(ka, kb));
}

static int
key_cmp(const void *a, const void *b)
{
	uint64		ka = *(const uint64 *) a;
	uint64		kb = *(const uint64 *) b;

	return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/* Sort keys and drop repeats; returns the new count. */
static int
sort_keys(uint64 *keys, int n)
{
	int			m = 0;

	qsort(keys, n, sizeof(uint64), key_cmp);
	for (int i = 0; i < n; i++)
		if (m == 0 || keys[m - 1] != keys[i])
			keys[m++] = keys[i];
	return m;
}

/* Add the keys of cycle_candidates_sql's accounts not in keys[0..n). */
static int
add_cycle_candidates(Datum *values, uint64 *keys, int n)
{
	int			ret;

	ret = SPI_execute_plan(cycle_candidates_plan, values, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "p2pay: cycle candidates statement failed: %s", SPI_result_code_string(ret));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		uint64		key = account_key(DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[i],
																  SPI_tuptable->tupdesc, 1, &isnull)));
		bool		found = false;

		for (int k = 0; k < n && !found; k++)
			found = keys[k] == key;
		if (!found)
			keys[n++] = key;
	}
	return n;
}

/*
 * Lock the accounts the payment's facts depend on: its payer and payee
 * and, when the cycle rule follows loops of four for it, the accounts a
 * middle leg can start from (see cycle_candidates_sql).  Those are known
 * only by reading, and the reading is exact only under the payee's lock;
 * so they are read first without locks, then every key is taken in
 * ascending order, and they are read again: if accounts were added in
 * between, this attempt's locks are given back and the larger set taken
 * again in order.  Taking every lock of a payment in one ascending pass is
 * what keeps transactions of one payment each from deadlocking.
 */
void
p2pay_lock_payment(const P2payConfig *cfg, const PaymentInput *in, const PaymentFacts *facts)
{
	const RuleConfig *cy = &cfg->rules[RULE_CYCLE];
	uint64		keys[2 + 4 * CYCLE_FANOUT];
	Datum		values[4];
	int			n;

	if (!(RULE_EVALUATED(cy) && facts->amount >= cy->p.min_amount && cy->p.max_length >= 4))
	{
		p2pay_lock_accounts(in->payer, in->payee);
		return;
	}

	if (cycle_candidates_plan == NULL)
	{
		Oid			types[4] = {UUIDOID, UUIDOID, TIMESTAMPTZOID, FLOAT8OID};

		cycle_candidates_plan = prepare_kept(cycle_candidates_sql, 4, types);
		cycle_plan = prepare_kept(cycle_sql, 4, types);
	}
	values[0] = UUIDPGetDatum(in->payer);
	values[1] = UUIDPGetDatum(in->payee);
	values[2] = TimestampTzGetDatum(in->created_at - cy->p.window);
	values[3] = Float8GetDatum(cy->p.min_amount);

	keys[0] = account_key(in->payer);
	keys[1] = account_key(in->payee);
	n = add_cycle_candidates(values, keys, 2);

	for (int attempt = 0;; attempt++)
	{
		int			locked = sort_keys(keys, n);
		int			more;

		for (int i = 0; i < locked; i++)
			lock_key(keys[i]);
		more = add_cycle_candidates(values, keys, locked);
		if (more == locked)
			return;

		/*
		 * Accounts came in between.  Give this attempt's locks back and take
		 * the larger set in order; a set that keeps changing (three times)
		 * is locked as it stands, in which case a deadlock is possible and
		 * is broken by PostgreSQL (40P01).
		 */
		if (attempt == 2 || more > (int) lengthof(keys) - CYCLE_FANOUT)
		{
			for (int i = locked; i < more; i++)
				lock_key(keys[i]);
			return;
		}
		for (int i = 0; i < locked; i++)
			unlock_key(keys[i]);
		n = more;
	}
}

/*
 * Under REPEATABLE READ or SERIALIZABLE the facts come from the
 * transaction's snapshot, which can't see a middle leg that committed after
 * it was taken.  Finding one with a current snapshot is a serialization
 * failure, as for every other fact that changed under a fixed snapshot.
 */
static void
check_cycle_snapshot(const PaymentInput *in, TimestampTz since, double min_amount)
{
	Datum		values[4];
	int			ret;
	bool		isnull;

	if (cycle_plan == NULL)
		return;					/* no loop of four was looked for */
	values[0] = UUIDPGetDatum(in->payer);
	values[1] = UUIDPGetDatum(in->payee);
	values[2] = TimestampTzGetDatum(since);
	values[3] = Float8GetDatum(min_amount);

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
 * Take a deleted payment out of the per-account state, so that no rule
 * counts it any more.  The accounts are locked.
 */
void
p2pay_forget_payment(const pg_uuid_t *payer, const pg_uuid_t *payee,
					 TimestampTz created_at, Numeric amount_base)
{
	Datum		values[7];
	Datum		empty_keys[3];
	int			ret;
	TimestampTz day_start = p2pay_day_of(created_at);

	if (forget_plan == NULL)
	{
		Oid			types[7] = {UUIDOID, UUIDOID, TIMESTAMPTZOID, NUMERICOID,
		TIMESTAMPTZOID, TIMESTAMPTZOID, DATEOID};

		forget_plan = prepare_kept(forget_sql, 7, types);
	}
	if (forget_empty_plan == NULL)
	{
		Oid			types[3] = {UUIDOID, UUIDOID, DATEOID};

		forget_empty_plan = prepare_kept(forget_empty_sql, 3, types);
	}

	values[0] = UUIDPGetDatum(payer);
	values[1] = UUIDPGetDatum(payee);
	values[2] = TimestampTzGetDatum(p2pay_hour_of(created_at));
	values[3] = NumericGetDatum(amount_base);
	values[4] = TimestampTzGetDatum(day_start);
	values[5] = TimestampTzGetDatum(day_start + USECS_PER_DAY);
	values[6] = DateADTGetDatum((DateADT) (day_start / USECS_PER_DAY));
	empty_keys[0] = values[0];
	empty_keys[1] = values[1];
	empty_keys[2] = values[6];

	ret = SPI_execute_plan(forget_plan, values, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "p2pay: forgetting a payment failed: %s", SPI_result_code_string(ret));

	ret = SPI_execute_plan(forget_empty_plan, empty_keys, NULL, false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "p2pay: forgetting a payment's empty rows failed: %s",
			 SPI_result_code_string(ret));
}

/*
 * Read the money-flow facts of a large payment (facts.c reads the rest, and
 * knows when these can matter), with the active snapshot: what the payer's
 * recent payers paid it, if sum, and whether the payment closes a loop, if
 * loops.  Under REPEATABLE READ an insert of a payment cycle looks at
 * (cycle_on) also checks for a loop closed after its snapshot.
 */
void
p2pay_read_money_flow(const P2payConfig *cfg, const PaymentInput *in, PaymentFacts *facts,
					  bool record, bool sum, bool loops, bool cycle_on)
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

			money_flow_plan = prepare_kept(money_flow_sql, 8, types);
		}
		values[0] = UUIDPGetDatum(in->payer);
		values[1] = UUIDPGetDatum(in->payee);
		values[2] = BoolGetDatum(sum);
		values[3] = BoolGetDatum(loops);
		values[4] = TimestampTzGetDatum(in->created_at - cy->p.window);
		values[5] = Float8GetDatum(cy->p.min_amount);
		values[6] = BoolGetDatum(cy->p.max_length >= 4);
		values[7] = TimestampTzGetDatum(in->created_at - pt->p.window);

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
		check_cycle_snapshot(in, in->created_at - cy->p.window, cy->p.min_amount);
}
