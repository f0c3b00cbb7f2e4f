/*
 * state.c: the per-account state the rules read, and the locks that keep it
 * exact under concurrency.
 *
 * Locking: a payment takes a transaction-scoped advisory lock on its payer
 * and on its payee (and, for the cycle rule, on the accounts its payee
 * paid), all in one pass, lower key first, before it reads any state;
 * every writer of the state (insert and delete) goes through here, and an
 * insert that waited sees everything the other one committed (a commit is
 * visible before its locks are released).  A transaction that already
 * holds account locks (of an earlier payment, or an earlier row of the
 * same statement) waits in the lock manager only for a key above all of
 * them; for any other it tries, naps, and after
 * p2pay.multi_payment_lock_timeout gives way with 40001.  So whoever waits
 * in the lock manager for an account lock waits for a larger key than any
 * it holds, and these locks can't close a deadlock cycle: a transaction of
 * one payment never gets 40P01 from them, and one of several may get 40001
 * and be retried (so may a payment alone whose cycle-rule accounts keep
 * changing as it locks them: see p2pay_lock_payment).  What a transaction
 * holds is followed through its subtransactions by transaction callbacks.
 * The keys live in their own advisory namespace (field 4 =
 * P2PAY_LOCK_SPACE), so they can't collide with an application's
 * pg_advisory_lock keys.
 *
 * Cost: the lookup, the facts and the writes of an ordinary payment are
 * facts.c's, through the indexes directly.  What stays SQL here is rarer:
 * the money-flow facts of a large payment, the cycle rule's candidates and
 * its REPEATABLE READ check, and forgetting a reversed payment; each
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
#include "pgstat.h"
#include "access/xact.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/memutils.h"
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
 * Takes a reversed payment out of the state: the inverse of the insert's
 * writes, exact whatever else was archived (deleted with p2pay.delete_mode
 * = archive, which leaves the state as it was).  The counts and sums
 * subtract the payment: a bucket that held only it goes, and so does a
 * pair whose count reaches 0 (archived payments still count in it).  A
 * pair's first and last times are read again only when the payment was its
 * first or its last, from the pair's payments that remain (the first one
 * at or after it, or the last one at or before it, through the payer's
 * index); when none remains, as when the pair's other payments were all
 * archived, whose exact times are not known any more, the bound moves to
 * the other one.  A multi-row DELETE has removed every row before the
 * first of these statements runs, and each row's statement sees the pair
 * as the previous one left it, so the times come out as if the rows had
 * been deleted one by one.
 *
 * The payment's UTC day in account_daily: out_count goes down by one, and
 * out_payees (the payer's distinct payees that day) and in_payers (the
 * payee's distinct payers that day) go down by one when no payment of the
 * pair remains that day; none of them below what the payments that remain
 * that day count (the payee's distinct payers through the pairs paid since
 * the day began).  Without archived payments that day this is exact,
 * including after a multi-row DELETE, whose rows' statements all see what
 * the whole statement left.  With archived payments that day, which the
 * payments that remain can't show, the distinct counts are never higher
 * than they should be and at most one lower per payment reversed: a pair
 * whose only payments left that day are archived stops counting.
 */
#define WHEN_IS(col, param, then) "CASE WHEN " col SQL_EQ param " THEN " then " ELSE 0 END"
#define PAIR_PAYMENT(cmp, dir) \
"(SELECT p.created_at FROM p2pay.payments p" \
"   WHERE p.payer_id" SQL_EQ "$1 AND p.payee_id" SQL_EQ "$2 AND p.created_at" cmp "$8" \
"   ORDER BY p.created_at " dir " LIMIT 1)"
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
" pair_gone AS ("
"  DELETE FROM p2pay.pair_stats s"
"   WHERE s.payer_id" SQL_EQ "$1 AND s.payee_id" SQL_EQ "$2 AND s.n" SQL_LE "1),"
" day_left AS ("
"  SELECT pg_catalog.count(*) AS n, pg_catalog.count(DISTINCT p.payee_id) AS payees,"
"         CASE WHEN pg_catalog.bool_or(p.payee_id" SQL_EQ "$2) THEN 0 ELSE 1 END AS pair_gone"
"    FROM p2pay.payments p"
"   WHERE p.payer_id" SQL_EQ "$1 AND p.created_at" SQL_GE "$5 AND p.created_at" SQL_LT "$6),"
" payer_day AS ("
"  UPDATE p2pay.account_daily d"
"     SET out_count = GREATEST(t.n, d.out_count" SQL_MINUS "1),"
"         out_payees = GREATEST(t.payees, d.out_payees" SQL_MINUS "t.pair_gone)"
"    FROM day_left t"
"   WHERE d.user_id" SQL_EQ "$1 AND d.day" SQL_EQ "$7),"
" payee_day AS ("
"  UPDATE p2pay.account_daily d"
"     SET in_payers = GREATEST((SELECT pg_catalog.count(*) FROM p2pay.pair_stats s"
"                                WHERE s.payee_id" SQL_EQ "$2 AND s.last_at" SQL_GE "$5"
"                                  AND EXISTS (SELECT 1 FROM p2pay.payments p"
"                                               WHERE p.payer_id" SQL_EQ "s.payer_id"
"                                                 AND p.payee_id" SQL_EQ "$2"
"                                                 AND p.created_at" SQL_GE "$5"
"                                                 AND p.created_at" SQL_LT "$6)),"
"                              d.in_payers" SQL_MINUS "t.pair_gone)"
"    FROM day_left t"
"   WHERE d.user_id" SQL_EQ "$2 AND d.day" SQL_EQ "$7)"
"UPDATE p2pay.pair_stats s"
"   SET n = s.n" SQL_MINUS "1, total = s.total" SQL_MINUS "$4,"
"       first_at = CASE WHEN s.first_at" SQL_EQ "$8"
"                  THEN COALESCE(" PAIR_PAYMENT(SQL_GE, "ASC") ", s.last_at)"
"                  ELSE s.first_at END,"
"       last_at = CASE WHEN s.last_at" SQL_EQ "$8"
"                 THEN COALESCE(" PAIR_PAYMENT(SQL_LE, "DESC") ", s.first_at)"
"                 ELSE s.last_at END"
" WHERE s.payer_id" SQL_EQ "$1 AND s.payee_id" SQL_EQ "$2 AND s.n" SQL_GT "1";

/*
 * After forget_sql: the payer's and payee's rows that no payment counts in
 * any more go, their row of the payment's day ($3) and their running
 * totals, as rebuild_state() would count none.  An empty day would
 * otherwise still count in the history that an account's normal needs.
 * Archived payments still count, so their rows stay.
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

/*
 * The account locks this transaction holds, exact across savepoints: an
 * entry for each subtransaction nesting level at which a pass of locks
 * ended and whose locks are still held, the lowest level first, each with
 * the largest key held at its level or below.  A subtransaction that rolls
 * back releases the locks it took, and its entry goes; one that commits
 * hands them to its parent, and so does its entry; the end of the
 * transaction releases them all.  Kept in TopMemoryContext, and room is
 * made before a pass takes its first lock, so that a lock is never held
 * unrecorded.
 */
typedef struct HeldLevel
{
	int			level;			/* subtransaction nesting level */
	uint64		max_key;		/* the largest key held at this level or below */
} HeldLevel;

static HeldLevel *held = NULL;
static int	held_depth = 0;
static int	held_size = 0;

/*
 * Whether this transaction holds an account lock and, if it does, the
 * largest key it holds.
 */
static bool
held_max(uint64 *max_key)
{
	if (held_depth == 0)
		return false;
	*max_key = held[held_depth - 1].max_key;
	return true;
}

/* Make room for one more level, before a pass takes any lock. */
static void
reserve_held(void)
{
	if (held_depth < held_size)
		return;
	if (held == NULL)
	{
		held = MemoryContextAlloc(TopMemoryContext, 8 * sizeof(HeldLevel));
		held_size = 8;
		return;
	}
	held = repalloc(held, 2 * held_size * sizeof(HeldLevel));
	held_size *= 2;
}

/* Record at level that this transaction holds key (room was made). */
static void
note_held_at(int level, uint64 key)
{
	HeldLevel  *top = held_depth > 0 ? &held[held_depth - 1] : NULL;

	if (top != NULL && top->level == level)
	{
		top->max_key = Max(top->max_key, key);
		return;
	}
	Assert(held_depth < held_size);
	held[held_depth].level = level;
	held[held_depth].max_key = top != NULL ? Max(top->max_key, key) : key;
	held_depth++;
}

/* The transaction ended: its locks are released (or handed to PREPARE). */
static void
held_xact_callback(XactEvent event, void *arg)
{
	if (p2pay_xact_ends(event))
		held_depth = 0;
}

/*
 * A subtransaction ended (the callback runs at its nesting level): rolled
 * back, the locks it took are released; committed, they pass to its parent.
 */
static void
held_subxact_callback(SubXactEvent event, SubTransactionId subid,
					  SubTransactionId parent_subid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	uint64		max_key;

	if (event != SUBXACT_EVENT_COMMIT_SUB && event != SUBXACT_EVENT_ABORT_SUB)
		return;
	if (held_depth == 0 || held[held_depth - 1].level < level)
		return;
	max_key = held[held_depth - 1].max_key;
	while (held_depth > 0 && held[held_depth - 1].level >= level)
		held_depth--;
	if (event == SUBXACT_EVENT_COMMIT_SUB)
		note_held_at(level - 1, max_key);
}

/* Follow the transaction's account locks through its (sub)transactions. */
void
p2pay_lock_register_callbacks(void)
{
	RegisterXactCallback(held_xact_callback, NULL);
	RegisterSubXactCallback(held_subxact_callback, NULL);
}

static void
key_tag(LOCKTAG *tag, uint64 key)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) (key >> 32), (uint32) key,
						 P2PAY_LOCK_SPACE);
}

/* Take the lock of key, waiting in the lock manager for as long as it takes. */
static void
lock_key(uint64 key)
{
	LOCKTAG		tag;

	key_tag(&tag, key);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

static void
unlock_key(uint64 key)
{
	LOCKTAG		tag;

	key_tag(&tag, key);
	(void) LockRelease(&tag, ExclusiveLock, false);
}

/* The longest nap between two tries of a busy lock, in milliseconds. */
#define LOCK_NAP_MAX_MS 10

/*
 * Take the lock of key without ever waiting for it in the lock manager, so
 * that this transaction can't be an edge of a deadlock cycle however many
 * locks it holds: try it, and while another transaction holds it (or waits
 * for it first), nap and try again, for at most
 * p2pay.multi_payment_lock_timeout; then give way with a serialization
 * failure: as the transaction aborts, its locks go to whoever waits for
 * them.  late: the key is one of a cycle candidate set that kept changing
 * (p2pay_lock_payment), not one taken after an earlier payment's locks.
 */
static void
lock_key_or_give_way(uint64 key, bool late)
{
	LOCKTAG		tag;
	TimestampTz start = GetCurrentTimestamp();
	long		nap = 1;

	key_tag(&tag, key);
	for (;;)
	{
		long		waited;

		if (LockAcquire(&tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL)
			return;
		waited = TimestampDifferenceMilliseconds(start, GetCurrentTimestamp());
		if (waited >= p2pay_multi_payment_lock_timeout)
		{
			if (late)
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("could not lock an account of this payment's cycle check"),
						 errdetail("The accounts the cycle rule follows from this payment's payee kept changing while they were locked, and the last one found was held by another transaction for more than p2pay.multi_payment_lock_timeout (%d ms).",
								   p2pay_multi_payment_lock_timeout),
						 errhint("Retry the transaction.")));
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not lock an account of this payment while holding the account locks of earlier payments"),
					 errdetail("This transaction already holds the account locks of payments it inserted or deleted before, and another transaction held a lock this payment needs for more than p2pay.multi_payment_lock_timeout (%d ms); waiting for it could deadlock.",
							   p2pay_multi_payment_lock_timeout),
					 errhint("Retry the transaction.")));
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(nap, p2pay_multi_payment_lock_timeout - waited),
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		nap = Min(nap * 2, LOCK_NAP_MAX_MS);
	}
}

/*
 * Take the locks of keys[from..n) (ascending, no repeats), the rest of a
 * pass whose keys below keys[from] are held.  Every lock this transaction
 * holds apart from the pass's own lower ones is at most prior_max (if
 * prior).  The lock manager is waited in only for a key above every
 * account lock held: so whoever waits there for an account lock waits for
 * a larger key than any it holds, and a cycle of such waits, whose keys
 * would have to grow all the way round, can't form.  A key at or below
 * one held is taken without waiting in the lock manager.
 */
static void
lock_keys(const uint64 *keys, int from, int n, bool prior, uint64 prior_max)
{
	for (int i = from; i < n; i++)
	{
		if (!prior || keys[i] > prior_max)
			lock_key(keys[i]);
		else
			lock_key_or_give_way(keys[i], false);
	}
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

/*
 * Serialize this transaction with every other one that touches account a or
 * b, until it ends: both locks in one ascending pass.
 */
void
p2pay_lock_accounts(const pg_uuid_t *a, const pg_uuid_t *b)
{
	uint64		keys[2];
	uint64		prior_max = 0;
	bool		prior = held_max(&prior_max);
	int			n;

	keys[0] = account_key(a);
	keys[1] = account_key(b);
	n = sort_keys(keys, 2);
	reserve_held();
	lock_keys(keys, 0, n, prior, prior_max);
	note_held_at(GetCurrentTransactionNestLevel(), keys[n - 1]);
}

/*
 * Add the keys of cycle_candidates_sql's accounts not in keys[0..n), read
 * with a new snapshot under READ COMMITTED (so that, under the payee's
 * lock, the set is the one the facts will see), the transaction's under
 * REPEATABLE READ, as the facts are.
 */
static int
add_cycle_candidates(Datum *values, uint64 *keys, int n)
{
	int			ret;

	PushActiveSnapshot(GetTransactionSnapshot());
	ret = SPI_execute_plan(cycle_candidates_plan, values, NULL, true, 0);
	PopActiveSnapshot();
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
 * How many times the cycle candidates may change under a payment before
 * the ones that came last are locked out of order (without waiting in the
 * lock manager).
 */
#define LOCK_ROUNDS 3

/*
 * Lock the accounts the payment's facts depend on: its payer and payee
 * and, when the cycle rule follows loops of four for it, the accounts a
 * middle leg can start from (see cycle_candidates_sql).  Those are known
 * only by reading, and the reading is final only under the payer's and
 * payee's locks (only payments of theirs change it); so they are read first
 * without locks, every key is taken in ascending order, and they are read
 * again.  Should accounts have come in meanwhile, this pass's locks above
 * the smallest newcomer are given back, those below kept, and the pass
 * goes on up from there: still in ascending order, so a transaction of one
 * payment never waits for a lock below one it holds.  The set can change
 * again only if the payer's or payee's lock was given back; after
 * LOCK_ROUNDS changes, the newcomers are taken as they are, above locks
 * already held, without waiting in the lock manager (40001 if one stays
 * busy), never at the risk of a deadlock.
 */
void
p2pay_lock_payment(const P2payConfig *cfg, const PaymentInput *in, const PaymentFacts *facts)
{
	const RuleConfig *cy = &cfg->rules[RULE_CYCLE];
	uint64		keys[2 + (LOCK_ROUNDS + 2) * CYCLE_FANOUT];
	Datum		values[4];
	uint64		prior_max = 0;
	bool		prior;
	int			n;
	int			from = 0;

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

	prior = held_max(&prior_max);
	reserve_held();
	keys[0] = account_key(in->payer);
	keys[1] = account_key(in->payee);
	n = sort_keys(keys, add_cycle_candidates(values, keys, 2));

	for (int round = 0;; round++)
	{
		int			more;
		uint64		first_new;

		lock_keys(keys, from, n, prior, prior_max);
		more = add_cycle_candidates(values, keys, n);
		if (more == n)
			break;

		if (round == LOCK_ROUNDS)
		{
			/*
			 * The payer's and payee's locks are held: no more can come.  A
			 * newcomer above every lock held can still be waited for.
			 */
			uint64		top = prior ? Max(prior_max, keys[n - 1]) : keys[n - 1];

			qsort(keys + n, more - n, sizeof(uint64), key_cmp);
			for (int i = n; i < more; i++)
			{
				if (keys[i] > top)
				{
					lock_key(keys[i]);
					top = keys[i];
				}
				else
					lock_key_or_give_way(keys[i], true);
			}
			n = sort_keys(keys, more);
			break;
		}

		first_new = keys[n];
		for (int i = n + 1; i < more; i++)
			first_new = Min(first_new, keys[i]);
		for (int i = n - 1; i >= 0 && keys[i] > first_new; i--)
			unlock_key(keys[i]);
		n = sort_keys(keys, more);
		for (from = 0; keys[from] < first_new; from++)
			;
	}
	note_held_at(GetCurrentTransactionNestLevel(), keys[n - 1]);
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
 * Take a reversed payment out of the per-account state, so that no rule
 * counts it any more.  The accounts are locked.
 */
void
p2pay_forget_payment(const pg_uuid_t *payer, const pg_uuid_t *payee,
					 TimestampTz created_at, Numeric amount_base)
{
	Datum		values[8];
	Datum		empty_keys[3];
	int			ret;
	TimestampTz day_start = p2pay_day_of(created_at);

	if (forget_plan == NULL)
	{
		Oid			types[8] = {UUIDOID, UUIDOID, TIMESTAMPTZOID, NUMERICOID,
		TIMESTAMPTZOID, TIMESTAMPTZOID, DATEOID, TIMESTAMPTZOID};

		forget_plan = prepare_kept(forget_sql, 8, types);
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
	values[7] = TimestampTzGetDatum(created_at);
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
