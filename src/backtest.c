/*
 * backtest.c: p2pay.backtest(from, to, rules), a replay of stored payments
 * through the rules, in memory, writing nothing.
 *
 * What it is: the payments created in [from, to) are read in (created_at,
 * id) order and scored one after another by p2pay_evaluate under the current
 * configuration, with the rule rows given as JSON applied on top; each is
 * scored on the facts the trigger would have read had the payments been
 * inserted one by one in that order.  Per rule, and overall, the result
 * counts what would fire, be reviewed or be declined, next to what was
 * decided at the time, with precision and recall against p2pay.fraud_labels.
 *
 * Why it matches the trigger: the facts are assembled by the same code,
 * p2pay_assemble_facts (facts.c), which decides which facts are read and
 * where each count stops; the trigger's source answers from the state
 * tables (store.c), the replay's from the same facts kept in memory and
 * moved forward as each payment is replayed (ReplaySource here).  A payment
 * counts in a window when its created_at is after created_at - window of
 * the payment being scored (strict, as in the state's index scans), the
 * payment itself is added as the trigger adds it, and the window and running sums
 * are exact numerics turned into float8 only where the trigger casts them,
 * so that a total that equals a limit in decimal compares as it does there.
 * The history before from is recorded as the range's payments are, by
 * record_payment, without being scored, read in the same order.  Only the
 * payments some fact of the range reaches are read: every payment of the
 * accounts that pay in the range, for the all-time facts (out_count and
 * out_sum, pairs seen and their latest payment, the latest payment); and
 * every payment paid or received by an account of the range from the
 * start of the longest window before from, or from the start of the UTC
 * day BASELINE_DAYS before the day of from when the normals are read,
 * whichever is earlier.  With cycle following loops of 4, the history also
 * holds every payment of at least its min_amount inside its window: the
 * leg C -> D of a loop A -> B -> C -> D -> A may join two accounts with no
 * payment in the range, which enter the account table bare.  A payment
 * before from - longest is outside every window of the range and counts
 * in the all-time facts and the normals only, so the windows' lists hold
 * at from what they would hold had they been kept all along.  The lookups
 * (users.created_at, registered methods, blocklist, allowlist, snoozes) are
 * read once into the account table and evaluated at each payment's
 * created_at, as the trigger's lookup statement does.  amount_base is the
 * stored one: the rate at the time of the insert.  A payment without
 * amount_base (inserted with the triggers off) was never scored or counted
 * in the state, and takes no part in a backtest.
 *
 * Every statement is read-only and runs with the caller's snapshot, as the
 * owner of p2pay.payments (as the trigger's do) and with search_path set to
 * pg_catalog, pg_temp; the configuration cache is copied, never changed, and
 * p2pay_evaluate is told not to count the replay in the rule statistics.
 * The statements are planned for each call rather than kept: a backtest is
 * rare, and a custom plan sees how many accounts the uuid[] parameters
 * hold.
 *
 * The money-flow facts: received_from counts the pairs paying into the
 * payer with a payment inside the pass_through window (pair_stats.last_at
 * inside it), received sums those payments exactly; closes_cycle follows
 * the pairs with a payment of at least cycle.min_amount inside its window.
 * Where the trigger stops at PASS_THROUGH_PAYERS payers or CYCLE_FANOUT
 * next accounts, its LIMITs come with an ORDER BY, and the same rows are
 * kept here: the payers whose pair has the earliest last_at, ties broken
 * by payer uuid (not by replay order); the next accounts of lowest uuid.
 * So the facts are exact beyond those bounds too.
 *
 * Each account's normal (account_daily, read by payer_velocity_count,
 * payer_fan_out and payee_fan_in through above_normal): per UTC day the
 * payments it made, its payees paid for the first time that day (the
 * pair's last_at before the start of the day, or no pair yet) and its
 * payers paying for the first time that day; and its first day, as payer
 * or payee.  The facts are the totals over [day - BASELINE_DAYS, day) and
 * the days known, as they stand before the payment (its own day's row
 * never counts).  The days are recorded from the history (account_daily
 * also counts the payments at and after from): a pair's payment before the
 * start of the day BASELINE_DAYS before the day of from is before the start
 * of every day a normal of the range counts, so the days from there on are
 * whole without it.  An account's first day is the earlier of its first
 * day in account_daily before the day of from (rows of payments before
 * from only) and its first payment in the history.  They are kept only
 * when one of those rules is evaluated with a baseline_factor, or
 * new_payee_high_amount with a min_known_days (the payer's days known).
 *
 * Archived payments (docs/partitioning.md) have left payments but not the
 * state, which the trigger reads.  The history is read from payments, so
 * the all-time facts, the windows and the days' figures of a backtest
 * count the payments still stored, as rebuild_state() would: a payer whose
 * payments before from were archived has a lower out_count and may meet a
 * known payee as new.  The first day alone is read from the state, and
 * keeps the days of archived payments.
 *
 * Memory: everything the replay keeps (the hash tables of accounts and
 * pairs, per-account lists of payments inside the longest window, the exact
 * sums) lives in a context created for the call and deleted at its end; the
 * payments are fetched through a cursor in batches of BATCH_ROWS, and the
 * per-row work of a batch is done in a child context reset after it.  A
 * list drops the payments every window has passed, so memory follows the
 * number of accounts and the payments inside the windows, not the length of
 * the range.  The result rows are built after the replay, in the query's
 * memory.
 */
#include "postgres.h"

#include "p2pay.h"
#include "catalog.h"
#include "facts.h"
#include "rules.h"
#include "timeutil.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

/* Rows fetched from a cursor at a time. */
#define BATCH_ROWS 10000

/* The windows over a payer's own payments, each with its own start. */
typedef enum OutWindow
{
	WIN_VELOCITY_COUNT,
	WIN_VELOCITY_AMOUNT,
	WIN_FAN_OUT,
	WIN_STRUCTURING,
	NUM_OUT_WINDOWS
} OutWindow;

static const RuleId out_window_rule[NUM_OUT_WINDOWS] = {
	RULE_PAYER_VELOCITY_COUNT, RULE_PAYER_VELOCITY_AMOUNT,
	RULE_PAYER_FAN_OUT, RULE_STRUCTURING
};

/* The rules that compare a count with the account's normal (above_normal). */
static const RuleId baseline_rule[] = {
	RULE_PAYER_VELOCITY_COUNT, RULE_PAYER_FAN_OUT, RULE_PAYEE_FAN_IN
};

/* A payer and a payee: what pair_stats and the round trip know of them. */
typedef struct PairKey
{
	pg_uuid_t	payer;
	pg_uuid_t	payee;
} PairKey;

typedef struct Pair
{
	PairKey		key;
	int64		fan_out_n;		/* its payments inside the payer's fan-out window */
	int64		fan_in_n;		/* its payments inside the payee's fan-in window */
	bool		seen;			/* a payment of the pair was counted before */
	TimestampTz last_at;		/* once seen: its latest payment (pair_stats.last_at) */
	bool		has_round_trip;
	TimestampTz round_trip_at;	/* latest payment >= round_trip.min_amount */
	int64		pt_n;			/* its payments inside the payee's pass-through window */
	int64		mark;			/* scratch: last pass that visited it */
	TimestampTz pt_last_at;		/* scratch: its latest payment in the pass-through window */
	bool		has_cycle;
	bool		cycle_out_listed;	/* in its payer's cycle_out */
	bool		cycle_in_listed;	/* in its payee's cycle_in */
	TimestampTz cycle_at;		/* latest payment >= cycle.min_amount */
	struct Account *cycle_from;	/* its payer and payee, once it has such a payment */
	struct Account *cycle_to;
} Pair;

/* A payment in its payer's list. */
typedef struct OutPayment
{
	TimestampTz at;
	double		amount;
	Numeric		amount_base;	/* while inside the velocity-amount window */
	Pair	   *pair;
	bool		in_band;		/* in the structuring band */
} OutPayment;

/* A payment in its payee's list. */
typedef struct InPayment
{
	TimestampTz at;
	Pair	   *pair;
} InPayment;

/* A payment in its payee's pass-through list. */
typedef struct PtPayment
{
	TimestampTz at;
	Pair	   *pair;
	Numeric		amount_base;
} PtPayment;

/* An account's figures for one UTC day, as account_daily has them. */
typedef struct DayFigures
{
	DateADT		day;
	int64		out_count;		/* payments made */
	int64		out_payees;		/* payees paid that day for the first time that day */
	int64		in_payers;		/* payers paying that day for the first time that day */
} DayFigures;

/* A snooze of one rule for an account. */
typedef struct Snooze
{
	uint32		bit;
	TimestampTz until;
} Snooze;

/* An account of the replayed payments: its lookups and its running state. */
typedef struct Account
{
	pg_uuid_t	id;				/* hash key */
	bool		pays;			/* pays in the range: its own payments are read */
	bool		is_paid;		/* is paid in the range: its fan-in is read */
	TimestampTz created_at;		/* users.created_at */
	bool		blocked;
	TimestampTz blocked_until;	/* DT_NOEND when the entry has no expires_at */
	bool		allowed;
	TimestampTz allowed_until;
	int			nmethods;
	pg_uuid_t  *methods;		/* registered payment methods */
	int			nsnoozes;
	Snooze	   *snoozes;

	/* all-time facts: account_stats and the latest payment */
	int64		out_count;
	Numeric		out_sum;		/* NULL is zero */
	bool		has_previous;
	TimestampTz previous_at;

	/* the payer's payments inside the longest of its windows */
	OutPayment *out;
	int			out_len;
	int			out_cap;
	int			out_start[NUM_OUT_WINDOWS];
	Numeric		window_sum;		/* amount_base inside the velocity-amount window */
	int64		band_n;			/* in-band payments inside the structuring window */
	int64		payees;			/* pairs with fan_out_n > 0 */

	/* the payee's payments inside the fan-in window */
	InPayment  *in;
	int			in_len;
	int			in_cap;
	int			in_start;
	int64		payers;			/* pairs with fan_in_n > 0 */

	/* the payments into a payer inside the pass-through window */
	PtPayment  *pt;
	int			pt_len;
	int			pt_cap;
	int			pt_start;
	int64		pt_payers;		/* pairs with pt_n > 0: received_from */
	Numeric		pt_sum;			/* their amount_base: received */

	/*
	 * cycle: the pairs of its payments of at least cycle.min_amount, maybe
	 * inside the window (those the window has passed are dropped as they
	 * are met): paid, in payee uuid order; received (of a payer only)
	 */
	Pair	  **cycle_out;
	int			cycle_out_len;
	int			cycle_out_cap;
	Pair	  **cycle_in;
	int			cycle_in_len;
	int			cycle_in_cap;
	int64		cycle_mark;		/* paid this closes_cycle's payer inside the window */

	/*
	 * its normal (account_daily): its first day as payer or payee, and its
	 * figures for the days at most BASELINE_DAYS before the latest, in day
	 * order
	 */
	bool		has_first;
	DateADT		first_day;
	DayFigures *days;
	int			days_len;
	int			days_cap;
} Account;

/* What the result counts for a rule, or overall. */
typedef struct Counts
{
	int64		fired;
	int64		would_review;
	int64		would_decline;
	int64		fired_at_time;
	int64		reviewed_at_time;
	int64		declined_at_time;
	int64		fired_on_fraud;
} Counts;

/* Everything one backtest keeps. */
typedef struct Backtest
{
	P2payConfig cfg;
	MemoryContext cxt;			/* the replay's state */
	MemoryContext batch_cxt;	/* per-row work of one batch */
	HTAB	   *accounts;
	HTAB	   *pairs;
	Numeric		zero;

	bool		out_on[NUM_OUT_WINDOWS];
	int64		out_window[NUM_OUT_WINDOWS];
	bool		keep_out;		/* some window over the payer's payments is evaluated */
	bool		fan_in_on;
	bool		round_trip_on;
	bool		amount_on;		/* payer_velocity_amount: keep exact sums */
	bool		pass_through_on;
	bool		cycle_on;
	bool		cycle_four;		/* cycle follows loops of 4: third accounts count */
	bool		baseline_on;	/* a rule compares with the account's normal */
	int64		longest;		/* the longest window of an evaluated rule */
	TimestampTz window_start;	/* from - longest: before it, no window of the range */
	int64		mark;			/* the last pass that marked pairs or accounts */
	Pair	  **scratch;		/* the pairs paying into a busy payer */
	int			scratch_cap;

	/* backtest_payments(): a row per payment, with the decision type */
	Tuplestorestate *rows;
	TupleDesc	rows_desc;
	Oid			decision_type;

	int64		payments;
	int64		labelled_fraud;
	Counts		rule[RULE_COUNT];
	Counts		overall;
	size_t		name_len[RULE_COUNT];
} Backtest;

/*
 * Statements.  Every one is read-only, names everything with its schema
 * and its operators as pg_catalog's, and reads only columns whose types
 * check_layout has checked, with their tables locked.
 */

/* The accounts of the replayed payments, with their lookups. */
static const char *accounts_sql =
"SELECT a.id, a.pays, a.is_paid, u.created_at,"
"       b.user_id IS NOT NULL, b.expires_at,"
"       l.user_id IS NOT NULL, l.expires_at"
"  FROM (SELECT x.id, pg_catalog.bool_or(x.pays) AS pays, pg_catalog.bool_or(NOT x.pays) AS is_paid"
"          FROM p2pay.payments p"
"         CROSS JOIN LATERAL (VALUES (p.payer_id, true), (p.payee_id, false)) AS x (id, pays)"
"         WHERE p.created_at" SQL_GE "$1 AND p.created_at" SQL_LT "$2"
"           AND p.amount_base IS NOT NULL"
"         GROUP BY x.id) a"
"  JOIN p2pay.users u ON u.id" SQL_EQ "a.id"
"  LEFT JOIN p2pay.blocklist b ON b.user_id" SQL_EQ "a.id"
"  LEFT JOIN p2pay.allowlist l ON l.user_id" SQL_EQ "a.id";

static const char *methods_sql =
"SELECT m.user_id, m.payment_method_id FROM p2pay.user_payment_methods m"
" WHERE m.user_id" SQL_EQ "ANY ($1)";

static const char *snoozes_sql =
"SELECT s.user_id, s.rule, s.until FROM p2pay.snoozes s WHERE s.user_id" SQL_EQ "ANY ($1)";

static const char *version_sql = "SELECT r.version FROM p2pay.ruleset r";

/*
 * The payments before from ($2) that the replay's state counts, in replay
 * order: every payment of the payers of the range ($1), for the all-time
 * facts; from $4 on, every payment paid or received by the accounts of the
 * range ($3), for the windows and the normals ($4: the start of the
 * longest window, or of the UTC day BASELINE_DAYS before the day of from
 * when the normals are read, whichever is earlier); and when cycle follows
 * loops of 4 ($5), those inside its window ($6) of at least its min_amount
 * ($7) between any two accounts: the middle leg C -> D of a loop A -> B ->
 * C -> D -> A may join two accounts that have no payment in the range.
 */
static const char *history_sql =
"SELECT p.payer_id, p.payee_id, p.created_at, p.amount_base, p.amount_base::pg_catalog.float8"
"  FROM p2pay.payments p"
" WHERE p.created_at" SQL_LT "$2 AND p.amount_base IS NOT NULL"
"   AND (p.payer_id" SQL_EQ "ANY ($1)"
"        OR (p.created_at" SQL_GE "$4"
"            AND (p.payer_id" SQL_EQ "ANY ($3) OR p.payee_id" SQL_EQ "ANY ($3)))"
"        OR ($5 AND p.created_at" SQL_GE "$6"
"            AND p.amount_base::pg_catalog.float8" SQL_GE "$7))"
" ORDER BY p.created_at, p.id";

/*
 * Each account's first day in account_daily before the day of from ($2):
 * those rows hold only payments before from, archived ones too.
 */
static const char *first_day_sql =
"SELECT a.id, (SELECT pg_catalog.min(d.day) FROM p2pay.account_daily d"
"               WHERE d.user_id" SQL_EQ "a.id AND d.day" SQL_LT "$2)"
"  FROM pg_catalog.unnest($1) AS a (id)";

/*
 * The payments to replay, with what was decided at the time: a payment an
 * analyst resolved had the old_decision of its first decision_log row.
 */
static const char *replay_sql =
"SELECT p.payer_id, p.payee_id, p.payment_method_id, p.created_at,"
"       p.amount_base, p.amount_base::pg_catalog.float8, p.reasons, p.shadow_reasons,"
"       CASE coalesce(d.old_decision, p.decision)::pg_catalog.text"
"         WHEN 'approve' THEN 0 WHEN 'review' THEN 1 WHEN 'decline' THEN 2 END,"
"       coalesce(f.is_fraud, false)"
"  FROM p2pay.payments p"
"  LEFT JOIN (SELECT DISTINCT ON (g.transaction_id) g.transaction_id, g.old_decision"
"               FROM p2pay.decision_log g ORDER BY g.transaction_id, g.id) d"
"         ON d.transaction_id" SQL_EQ "p.transaction_id"
"  LEFT JOIN p2pay.fraud_labels f ON f.transaction_id" SQL_EQ "p.transaction_id"
" WHERE p.created_at" SQL_GE "$1 AND p.created_at" SQL_LT "$2 AND p.amount_base IS NOT NULL"
" ORDER BY p.created_at, p.id";

/*
 * The same for backtest_payments(), with what a result row shows of the
 * payment at the time: its columns 1 to 10 are replay_sql's.
 */
static const char *replay_payments_sql =
"SELECT p.payer_id, p.payee_id, p.payment_method_id, p.created_at,"
"       p.amount_base, p.amount_base::pg_catalog.float8, p.reasons, p.shadow_reasons,"
"       CASE coalesce(d.old_decision, p.decision)::pg_catalog.text"
"         WHEN 'approve' THEN 0 WHEN 'review' THEN 1 WHEN 'decline' THEN 2 END,"
"       coalesce(f.is_fraud, false),"
"       p.transaction_id, p.risk_score, p.shadow_risk_score, p.shadow_decision"
"  FROM p2pay.payments p"
"  LEFT JOIN (SELECT DISTINCT ON (g.transaction_id) g.transaction_id, g.old_decision"
"               FROM p2pay.decision_log g ORDER BY g.transaction_id, g.id) d"
"         ON d.transaction_id" SQL_EQ "p.transaction_id"
"  LEFT JOIN p2pay.fraud_labels f ON f.transaction_id" SQL_EQ "p.transaction_id"
" WHERE p.created_at" SQL_GE "$1 AND p.created_at" SQL_LT "$2 AND p.amount_base IS NOT NULL"
" ORDER BY p.created_at, p.id";

/* The result columns of backtest_payments(), in order. */
enum
{
	PR_TRANSACTION_ID,
	PR_CREATED_AT,
	PR_RISK_SCORE,
	PR_DECISION,
	PR_REASONS,
	PR_SHADOW_RISK_SCORE,
	PR_SHADOW_DECISION,
	PR_SHADOW_REASONS,
	PR_RISK_SCORE_AT_TIME,
	PR_DECISION_AT_TIME,
	PR_REASONS_AT_TIME,
	PR_SHADOW_RISK_SCORE_AT_TIME,
	PR_SHADOW_DECISION_AT_TIME,
	PR_SHADOW_REASONS_AT_TIME,
	NUM_PR
};

/*
 * The columns the statements read, by table: each of the type the code
 * reads it as, and NOT NULL where the code reads it without a null test.
 * The tables stay locked until the end of the transaction, so no DDL can
 * change them between the check and the reading.
 */
static const ColumnSpec payments_read[] = {
	COLUMN("id", INT8OID), COLUMN("transaction_id", UUIDOID),
	COLUMN_NOT_NULL("payer_id", UUIDOID), COLUMN_NOT_NULL("payee_id", UUIDOID),
	COLUMN_NOT_NULL("payment_method_id", UUIDOID),
	COLUMN_NOT_NULL("created_at", TIMESTAMPTZOID), COLUMN("amount_base", NUMERICOID),
	COLUMN("reasons", TEXTARRAYOID), COLUMN("shadow_reasons", TEXTARRAYOID),
	OWN_TYPE_COLUMN("decision", "decision"), COLUMN("risk_score", FLOAT8OID),
	COLUMN("shadow_risk_score", FLOAT8OID), OWN_TYPE_COLUMN("shadow_decision", "decision"),
	{NULL}
};
static const ColumnSpec users_read[] = {
	COLUMN_NOT_NULL("id", UUIDOID), COLUMN_NOT_NULL("created_at", TIMESTAMPTZOID), {NULL}
};
static const ColumnSpec list_read[] = {
	COLUMN("user_id", UUIDOID), COLUMN("expires_at", TIMESTAMPTZOID), {NULL}
};
static const ColumnSpec methods_read[] = {
	COLUMN_NOT_NULL("user_id", UUIDOID), COLUMN_NOT_NULL("payment_method_id", UUIDOID), {NULL}
};
static const ColumnSpec snoozes_read[] = {
	COLUMN_NOT_NULL("user_id", UUIDOID), COLUMN_NOT_NULL("rule", TEXTOID),
	COLUMN_NOT_NULL("until", TIMESTAMPTZOID), {NULL}
};
static const ColumnSpec ruleset_read[] = {COLUMN_NOT_NULL("version", INT8OID), {NULL}};
static const ColumnSpec log_read[] = {
	COLUMN("id", INT8OID), COLUMN("transaction_id", UUIDOID),
	OWN_TYPE_COLUMN("old_decision", "decision"), {NULL}
};
static const ColumnSpec labels_read[] = {
	COLUMN("transaction_id", UUIDOID), COLUMN("is_fraud", BOOLOID), {NULL}
};
static const ColumnSpec daily_read[] = {
	COLUMN("user_id", UUIDOID), COLUMN("day", DATEOID), {NULL}
};

static const struct
{
	const char *table;
	const ColumnSpec *columns;
}			layout[] = {
	{"payments", payments_read},
	{"users", users_read},
	{"blocklist", list_read},
	{"allowlist", list_read},
	{"user_payment_methods", methods_read},
	{"snoozes", snoozes_read},
	{"ruleset", ruleset_read},
	{"decision_log", log_read},
	{"fraud_labels", labels_read},
	{"account_daily", daily_read},
};

/* Lock the tables the statements read and check their columns. */
static void
check_layout(void)
{
	for (int i = 0; i < (int) lengthof(layout); i++)
		p2pay_check_columns(layout[i].table, layout[i].columns);
}

/* The account with this id, which the accounts statement loaded. */
static Account *
find_account(Backtest *bt, const pg_uuid_t *id)
{
	return (Account *) hash_search(bt->accounts, id, HASH_FIND, NULL);
}

/*
 * The account with this id, made empty the first time: an account with no
 * payment in the range, met as the payer or payee of a leg of a loop.
 */
static Account *
enter_account(Backtest *bt, const pg_uuid_t *id)
{
	bool		found;
	Account    *a = (Account *) hash_search(bt->accounts, id, HASH_ENTER, &found);

	if (!found)
		memset((char *) a + sizeof(pg_uuid_t), 0, sizeof(Account) - sizeof(pg_uuid_t));
	return a;
}

/* Room for n pairs in the scratch array. */
static Pair **
scratch(Backtest *bt, int n)
{
	if (n > bt->scratch_cap)
	{
		int			cap = Max(n, Max(bt->scratch_cap * 2, PASS_THROUGH_PAYERS + 1));

		bt->scratch = bt->scratch
			? repalloc(bt->scratch, sizeof(Pair *) * cap)
			: MemoryContextAlloc(bt->cxt, sizeof(Pair *) * cap);
		bt->scratch_cap = cap;
	}
	return bt->scratch;
}

/* The pair of payer and payee, made empty the first time. */
static Pair *
enter_pair(Backtest *bt, const pg_uuid_t *payer, const pg_uuid_t *payee)
{
	PairKey		key;
	Pair	   *pair;
	bool		found;

	memcpy(&key.payer, payer, sizeof(pg_uuid_t));
	memcpy(&key.payee, payee, sizeof(pg_uuid_t));
	pair = (Pair *) hash_search(bt->pairs, &key, HASH_ENTER, &found);
	if (!found)
	{
		pair->fan_out_n = 0;
		pair->fan_in_n = 0;
		pair->seen = false;
		pair->last_at = 0;
		pair->pt_last_at = 0;
		pair->has_round_trip = false;
		pair->round_trip_at = 0;
		pair->pt_n = 0;
		pair->mark = 0;
		pair->has_cycle = false;
		pair->cycle_out_listed = false;
		pair->cycle_in_listed = false;
		pair->cycle_at = 0;
		pair->cycle_from = NULL;
		pair->cycle_to = NULL;
	}
	return pair;
}

/* sum plus or minus x, exactly, kept in the replay's context (NULL is zero). */
static Numeric
accumulate(Backtest *bt, Numeric sum, Numeric x, bool subtract)
{
	MemoryContext old = MemoryContextSwitchTo(bt->cxt);
	Numeric		result;

	result = DatumGetNumeric(DirectFunctionCall2(subtract ? numeric_sub : numeric_add,
												 NumericGetDatum(sum ? sum : bt->zero),
												 NumericGetDatum(x)));
	if (sum)
		pfree(sum);
	MemoryContextSwitchTo(old);
	return result;
}

/* An exact sum as float8, as the trigger's ::float8 casts it (NULL is zero). */
static double
sum_float8(Numeric sum)
{
	if (sum == NULL)
		return 0.0;
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(sum)));
}

/* Drop from a payer's list the payments every window has passed. */
static void
compact_out(Backtest *bt, Account *a)
{
	int			keep_from = a->out_len;

	for (int w = 0; w < NUM_OUT_WINDOWS; w++)
		if (bt->out_on[w])
			keep_from = Min(keep_from, a->out_start[w]);
	if (keep_from < 16 || keep_from * 2 < a->out_len)
		return;
	memmove(a->out, a->out + keep_from, sizeof(OutPayment) * (a->out_len - keep_from));
	a->out_len -= keep_from;
	for (int w = 0; w < NUM_OUT_WINDOWS; w++)
		if (bt->out_on[w])
			a->out_start[w] -= keep_from;
}

/* Move each window over the payer's payments up to the one created at t. */
static void
expire_out(Backtest *bt, Account *a, TimestampTz t)
{
	for (int w = 0; w < NUM_OUT_WINDOWS; w++)
	{
		TimestampTz edge;

		if (!bt->out_on[w])
			continue;
		edge = t - bt->out_window[w];
		while (a->out_start[w] < a->out_len && a->out[a->out_start[w]].at <= edge)
		{
			OutPayment *op = &a->out[a->out_start[w]++];

			if (w == WIN_VELOCITY_AMOUNT)
			{
				a->window_sum = accumulate(bt, a->window_sum, op->amount_base, true);
				pfree(op->amount_base);
				op->amount_base = NULL;
			}
			else if (w == WIN_FAN_OUT && --op->pair->fan_out_n == 0)
				a->payees--;
			else if (w == WIN_STRUCTURING && op->in_band)
				a->band_n--;
			Assert(op->pair->fan_out_n >= 0 && a->payees >= 0 && a->band_n >= 0);
		}
		Assert(a->out_start[w] <= a->out_len);
	}
	compact_out(bt, a);
}

/* Move the payee's fan-in window up to the payment created at t. */
static void
expire_in(Backtest *bt, Account *a, TimestampTz t)
{
	TimestampTz edge = t - bt->cfg.rules[RULE_PAYEE_FAN_IN].p.window;

	while (a->in_start < a->in_len && a->in[a->in_start].at <= edge)
	{
		if (--a->in[a->in_start].pair->fan_in_n == 0)
			a->payers--;
		Assert(a->in[a->in_start].pair->fan_in_n >= 0 && a->payers >= 0);
		a->in_start++;
	}
	if (a->in_start >= 16 && a->in_start * 2 >= a->in_len)
	{
		memmove(a->in, a->in + a->in_start, sizeof(InPayment) * (a->in_len - a->in_start));
		a->in_len -= a->in_start;
		a->in_start = 0;
	}
}

/* Move the payer's pass-through window up to the payment created at t. */
static void
expire_pt(Backtest *bt, Account *a, TimestampTz t)
{
	TimestampTz edge = t - bt->cfg.rules[RULE_PASS_THROUGH].p.window;

	while (a->pt_start < a->pt_len && a->pt[a->pt_start].at <= edge)
	{
		PtPayment  *pp = &a->pt[a->pt_start++];

		if (--pp->pair->pt_n == 0)
			a->pt_payers--;
		Assert(pp->pair->pt_n >= 0 && a->pt_payers >= 0);
		if (a->pt_start == a->pt_len)
		{
			/* the window is empty: so is the sum */
			pfree(a->pt_sum);
			a->pt_sum = NULL;
		}
		else
			a->pt_sum = accumulate(bt, a->pt_sum, pp->amount_base, true);
		pfree(pp->amount_base);
	}
	if (a->pt_start >= 16 && a->pt_start * 2 >= a->pt_len)
	{
		memmove(a->pt, a->pt + a->pt_start, sizeof(PtPayment) * (a->pt_len - a->pt_start));
		a->pt_len -= a->pt_start;
		a->pt_start = 0;
	}
}

/*
 * Drop from a cycle list the pairs whose latest payment of at least
 * cycle.min_amount is at or before edge, keeping the order of the others;
 * returns the new length.  Replay times only grow, so no later payment's
 * window holds them again unless a new payment lists them again.
 */
static int
drop_passed(Pair **list, int len, TimestampTz edge, bool out)
{
	int			k = 0;

	for (int i = 0; i < len; i++)
	{
		Pair	   *p = list[i];

		if (p->cycle_at > edge)
			list[k++] = p;
		else if (out)
			p->cycle_out_listed = false;
		else
			p->cycle_in_listed = false;
	}
	return k;
}

/* Room for one more pair in a cycle list, dropping the passed ones first. */
static Pair **
cycle_room(Backtest *bt, Pair **list, int *len, int *cap, TimestampTz edge, bool out)
{
	if (*len < *cap)
		return list;
	*len = drop_passed(list, *len, edge, out);
	if (*len < *cap * 3 / 4)
		return list;
	*cap = *cap ? *cap * 2 : 8;
	return list ? repalloc(list, sizeof(Pair *) * *cap)
		: MemoryContextAlloc(bt->cxt, sizeof(Pair *) * *cap);
}

/*
 * The account's figures for day, made empty the first time.  Days come in
 * order (the history, then the range, both by time), so it is the last one
 * or a new one after it; the days no later payment's normal reaches
 * (BASELINE_DAYS before day or earlier) are dropped on the way.
 */
static DayFigures *
account_day(Backtest *bt, Account *a, DateADT day)
{
	DayFigures *f;
	int			keep_from = 0;

	if (a->days_len > 0 && a->days[a->days_len - 1].day == day)
		return &a->days[a->days_len - 1];
	if (a->days_len > 0 && a->days[a->days_len - 1].day > day)
		elog(ERROR, "p2pay: backtest met the days of an account out of order");
	while (keep_from < a->days_len && a->days[keep_from].day < day - BASELINE_DAYS)
		keep_from++;
	if (keep_from > 0)
	{
		memmove(a->days, a->days + keep_from, sizeof(DayFigures) * (a->days_len - keep_from));
		a->days_len -= keep_from;
	}
	if (a->days_len == a->days_cap)
	{
		a->days_cap = a->days_cap ? a->days_cap * 2 : 4;
		a->days = a->days
			? repalloc(a->days, sizeof(DayFigures) * a->days_cap)
			: MemoryContextAlloc(bt->cxt, sizeof(DayFigures) * a->days_cap);
	}
	f = &a->days[a->days_len++];
	f->day = day;
	f->out_count = 0;
	f->out_payees = 0;
	f->in_payers = 0;
	return f;
}

/* That the account has a row in account_daily for day. */
static inline void
note_day(Account *a, DateADT day)
{
	if (!a->has_first || day < a->first_day)
	{
		a->has_first = true;
		a->first_day = day;
	}
}

/*
 * The account's normal as store.c reads it from account_daily on day: how
 * many days of history it has, and its totals over the days in
 * [day - BASELINE_DAYS, day).
 */
static int64
normal_of(const Account *a, DateADT day, int64 *out_count, int64 *out_payees,
		  int64 *in_payers)
{
	*out_count = *out_payees = *in_payers = 0;
	for (int i = 0; i < a->days_len; i++)
	{
		const DayFigures *f = &a->days[i];

		if (f->day >= day - BASELINE_DAYS && f->day < day)
		{
			*out_count += f->out_count;
			*out_payees += f->out_payees;
			*in_payers += f->in_payers;
		}
	}
	if (!a->has_first)
		return 0;
	return Max(0, Min(BASELINE_DAYS, (int64) day - (int64) a->first_day));
}

/* Whether an amount is in the structuring band of the evaluated rule. */
static bool
in_band(Backtest *bt, double amount)
{
	const RuleConfig *st = &bt->cfg.rules[RULE_STRUCTURING];

	return RULE_EVALUATED(st) && p2pay_in_structuring_band(&st->p, amount);
}

/*
 * Count a payment in the windows and pairs, as recording it in pair_stats
 * and in the payer's hours in account_daily does.  payer and payee are
 * NULL for an account with no payment in the range; a list nobody reads is
 * not kept.
 */
static void
count_payment(Backtest *bt, Account *payer, Account *payee, Pair *pair,
			  TimestampTz at, double amount, Datum amount_base)
{
	if (payer && payer->pays && bt->keep_out)
	{
		OutPayment *op;

		if (payer->out_len == payer->out_cap)
		{
			payer->out_cap = payer->out_cap ? payer->out_cap * 2 : 8;
			payer->out = payer->out
				? repalloc(payer->out, sizeof(OutPayment) * payer->out_cap)
				: MemoryContextAlloc(bt->cxt, sizeof(OutPayment) * payer->out_cap);
		}
		op = &payer->out[payer->out_len++];
		op->at = at;
		op->amount = amount;
		op->pair = pair;
		op->in_band = in_band(bt, amount);
		op->amount_base = NULL;
		if (bt->amount_on)
		{
			MemoryContext old = MemoryContextSwitchTo(bt->cxt);

			op->amount_base = DatumGetNumericCopy(amount_base);
			MemoryContextSwitchTo(old);
			payer->window_sum = accumulate(bt, payer->window_sum, op->amount_base, false);
		}
		if (bt->out_on[WIN_FAN_OUT] && pair->fan_out_n++ == 0)
			payer->payees++;
		if (op->in_band)
			payer->band_n++;
	}
	if (payee && payee->is_paid && bt->fan_in_on)
	{
		if (payee->in_len == payee->in_cap)
		{
			payee->in_cap = payee->in_cap ? payee->in_cap * 2 : 8;
			payee->in = payee->in
				? repalloc(payee->in, sizeof(InPayment) * payee->in_cap)
				: MemoryContextAlloc(bt->cxt, sizeof(InPayment) * payee->in_cap);
		}
		payee->in[payee->in_len].at = at;
		payee->in[payee->in_len].pair = pair;
		payee->in_len++;
		if (pair->fan_in_n++ == 0)
			payee->payers++;
	}
	if (bt->round_trip_on &&
		amount >= bt->cfg.rules[RULE_ROUND_TRIP].p.min_amount &&
		(!pair->has_round_trip || at > pair->round_trip_at))
	{
		pair->has_round_trip = true;
		pair->round_trip_at = at;
	}
	/* what a payer received: only a payer's facts read it */
	if (payee && payee->pays && bt->pass_through_on)
	{
		PtPayment  *pp;
		MemoryContext old;

		expire_pt(bt, payee, at);
		if (payee->pt_len == payee->pt_cap)
		{
			payee->pt_cap = payee->pt_cap ? payee->pt_cap * 2 : 8;
			payee->pt = payee->pt
				? repalloc(payee->pt, sizeof(PtPayment) * payee->pt_cap)
				: MemoryContextAlloc(bt->cxt, sizeof(PtPayment) * payee->pt_cap);
		}
		pp = &payee->pt[payee->pt_len++];
		pp->at = at;
		pp->pair = pair;
		old = MemoryContextSwitchTo(bt->cxt);
		pp->amount_base = DatumGetNumericCopy(amount_base);
		MemoryContextSwitchTo(old);
		payee->pt_sum = accumulate(bt, payee->pt_sum, pp->amount_base, false);
		if (pair->pt_n++ == 0)
			payee->pt_payers++;
	}
	/* the legs of loops: any two accounts may be the B, C or D of one */
	if (bt->cycle_on && amount >= bt->cfg.rules[RULE_CYCLE].p.min_amount)
	{
		TimestampTz edge = at - bt->cfg.rules[RULE_CYCLE].p.window;

		if (!pair->has_cycle || at > pair->cycle_at)
		{
			pair->has_cycle = true;
			pair->cycle_at = at;
		}
		if (pair->cycle_from == NULL)
		{
			pair->cycle_from = payer ? payer : enter_account(bt, &pair->key.payer);
			pair->cycle_to = payee ? payee : enter_account(bt, &pair->key.payee);
		}
		if (!pair->cycle_out_listed)
		{
			Account    *from = pair->cycle_from;
			int			lo = 0;
			int			hi;

			from->cycle_out = cycle_room(bt, from->cycle_out, &from->cycle_out_len,
										 &from->cycle_out_cap, edge, true);
			/* after the payees of lower uuid */
			hi = from->cycle_out_len;
			while (lo < hi)
			{
				int			mid = lo + (hi - lo) / 2;

				if (memcmp(&from->cycle_out[mid]->key.payee, &pair->key.payee,
						   sizeof(pg_uuid_t)) < 0)
					lo = mid + 1;
				else
					hi = mid;
			}
			memmove(from->cycle_out + lo + 1, from->cycle_out + lo,
					sizeof(Pair *) * (from->cycle_out_len - lo));
			from->cycle_out[lo] = pair;
			from->cycle_out_len++;
			/* in payee uuid order, each payee once */
			Assert(lo == 0 || memcmp(&from->cycle_out[lo - 1]->key.payee, &pair->key.payee,
									 sizeof(pg_uuid_t)) < 0);
			Assert(lo + 1 == from->cycle_out_len ||
				   memcmp(&pair->key.payee, &from->cycle_out[lo + 1]->key.payee,
						  sizeof(pg_uuid_t)) < 0);
			pair->cycle_out_listed = true;
		}
		if (pair->cycle_to->pays && !pair->cycle_in_listed)
		{
			Account    *to = pair->cycle_to;

			to->cycle_in = cycle_room(bt, to->cycle_in, &to->cycle_in_len,
									  &to->cycle_in_cap, edge, false);
			to->cycle_in[to->cycle_in_len++] = pair;
			pair->cycle_in_listed = true;
		}
	}
}

/* Pairs by their latest payment, then by payer uuid (uuid_cmp is memcmp). */
static int
pt_pair_cmp(const void *x, const void *y)
{
	const Pair *a = *(Pair *const *) x;
	const Pair *b = *(Pair *const *) y;

	if (a->pt_last_at != b->pt_last_at)
		return a->pt_last_at < b->pt_last_at ? -1 : 1;
	return memcmp(&a->key.payer, &b->key.payer, sizeof(pg_uuid_t));
}

/*
 * What the payer received in the pass-through window, as float8: the
 * trigger's sum over the pairs paying into it whose last_at is inside the
 * window, ORDER BY last_at, payer_id LIMIT PASS_THROUGH_PAYERS.  Up to that
 * many payers, it is every payment into the payer inside the window; beyond
 * it, the pairs with the earliest latest payment, ties by payer uuid.
 */
static double
received(Backtest *bt, Account *a)
{
	Pair	  **pairs;
	int64		seen;
	int64		chosen;
	int			n = 0;
	Numeric		sum = bt->zero;

	if (a->pt_payers <= PASS_THROUGH_PAYERS)
		return sum_float8(a->pt_sum);

	/* newest first: the first payment met of a pair is its last_at */
	pairs = scratch(bt, a->pt_len - a->pt_start);
	seen = ++bt->mark;
	chosen = ++bt->mark;
	for (int i = a->pt_len - 1; i >= a->pt_start; i--)
	{
		Pair	   *p = a->pt[i].pair;

		if (p->mark != seen)
		{
			p->mark = seen;
			p->pt_last_at = a->pt[i].at;
			pairs[n++] = p;
		}
	}
	qsort(pairs, n, sizeof(Pair *), pt_pair_cmp);
	for (int i = 0; i < Min(n, PASS_THROUGH_PAYERS); i++)
		pairs[i]->mark = chosen;
	for (int i = a->pt_start; i < a->pt_len; i++)
		if (a->pt[i].pair->mark == chosen)
			sum = DatumGetNumeric(DirectFunctionCall2(numeric_add, NumericGetDatum(sum),
													  NumericGetDatum(a->pt[i].amount_base)));
	return sum_float8(sum);
}

/*
 * The next accounts of a loop after account a: the first CYCLE_FANOUT of the
 * distinct payees it paid at least cycle.min_amount to after edge, other
 * than not1 and not2, as their pairs in out; returns how many.  The trigger
 * takes SELECT DISTINCT ... LIMIT CYCLE_FANOUT; planned as a sort on the
 * payee and a unique, that is the lowest uuids, and cycle_out is in uuid
 * order.  (Planned as a hash aggregate, its choice beyond CYCLE_FANOUT
 * follows the hash table, which nothing here can follow.)  Drops the passed
 * pairs it meets.
 */
static int
cycle_next(Account *a, TimestampTz edge, const Account *not1, const Account *not2,
		   Pair **out)
{
	int			k = 0;
	int			i;
	int			n = 0;

	for (i = 0; i < a->cycle_out_len && n < CYCLE_FANOUT; i++)
	{
		Pair	   *p = a->cycle_out[i];

		if (p->cycle_at <= edge)
		{
			p->cycle_out_listed = false;
			continue;
		}
		a->cycle_out[k++] = p;
		if (p->cycle_to != not1 && p->cycle_to != not2)
			out[n++] = p;
	}
	if (k < i)
	{
		memmove(a->cycle_out + k, a->cycle_out + i, sizeof(Pair *) * (a->cycle_out_len - i));
		a->cycle_out_len -= i - k;
	}
	return n;
}

/*
 * Whether payer A's payment to B at t closes a loop inside the cycle window,
 * every leg at least cycle.min_amount: B paid C and C paid A, or (loops of
 * 4) B paid C, C paid D and D paid A, with D neither A nor B.  The accounts
 * that paid A such a payment inside the window are marked first.
 */
static bool
closes_cycle(Backtest *bt, Account *a, Account *b, TimestampTz t)
{
	TimestampTz edge = t - bt->cfg.rules[RULE_CYCLE].p.window;
	int64		mark = ++bt->mark;
	Pair	   *cs[CYCLE_FANOUT];
	int			nc;

	a->cycle_in_len = drop_passed(a->cycle_in, a->cycle_in_len, edge, false);
	if (a->cycle_in_len == 0)
		return false;			/* no leg into A: no loop */
	for (int i = 0; i < a->cycle_in_len; i++)
		a->cycle_in[i]->cycle_from->cycle_mark = mark;

	nc = cycle_next(b, edge, a, NULL, cs);
	for (int i = 0; i < nc; i++)
		if (cs[i]->cycle_to->cycle_mark == mark)
			return true;
	if (!bt->cycle_four)
		return false;
	for (int i = 0; i < nc; i++)
	{
		Pair	   *ds[CYCLE_FANOUT];
		int			nd = cycle_next(cs[i]->cycle_to, edge, a, b, ds);

		Assert(nd >= 0 && nd <= CYCLE_FANOUT);
		for (int j = 0; j < nd; j++)
			if (ds[j]->cycle_to->cycle_mark == mark)
				return true;
	}
	return false;
}

/* Whether an entry of a list (blocklist, allowlist) holds at t. */
static inline bool
listed_at(bool listed, TimestampTz until, TimestampTz t)
{
	return listed && until > t;
}

/* The rules snoozed for an account at t, as bits. */
static uint32
snoozed_at(const Account *a, TimestampTz t)
{
	uint32		bits = 0;

	for (int i = 0; i < a->nsnoozes; i++)
		if (a->snoozes[i].until > t)
			bits |= a->snoozes[i].bit;
	return bits;
}

/* Whether the payer registered the method. */
static bool
method_registered(const Account *a, const pg_uuid_t *method)
{
	for (int i = 0; i < a->nmethods; i++)
		if (memcmp(&a->methods[i], method, sizeof(pg_uuid_t)) == 0)
			return true;
	return false;
}

/* The rules named in a text[] of reasons, as bits. */
static uint32
reason_bits(Backtest *bt, Datum d, bool isnull)
{
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	uint32		bits = 0;

	if (isnull)
		return 0;
	arr = DatumGetArrayTypeP(d);
	if (ARR_NDIM(arr) == 0)
		return 0;
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		text	   *name;

		if (nulls[i])
			continue;
		name = DatumGetTextPP(elems[i]);
		for (int r = 0; r < RULE_COUNT; r++)
			if (VARSIZE_ANY_EXHDR(name) == bt->name_len[r] &&
				memcmp(VARDATA_ANY(name), p2pay_rule_name(r), bt->name_len[r]) == 0)
				bits |= 1u << r;
	}
	return bits;
}

/*
 * The replay as a FactSource (facts.h) for one payment: the answers come
 * from the windows, pairs and lists kept in memory, moved up to the
 * payment's time first (replay_source_at).  Each window is kept for the
 * rule that reads it, so each function is asked for that rule's window
 * only, as p2pay_assemble_facts asks.
 */
typedef struct ReplaySource
{
	FactSource	src;			/* first: facts.c sees only this */
	Backtest   *bt;
	Account    *payer;
	Account    *payee;
	Pair	   *pair;
	TimestampTz t;
} ReplaySource;

/* The window of rule ended at the payment being replayed: after must be its start. */
#define ASSERT_WINDOW(rs, rule, after) \
	Assert((after) == (rs)->t - (rs)->bt->cfg.rules[rule].p.window)

static int64
replay_payments_after(FactSource *src, TimestampTz after, int64 limit)
{
	ReplaySource *rs = (ReplaySource *) src;
	Account    *a = rs->payer;

	ASSERT_WINDOW(rs, RULE_PAYER_VELOCITY_COUNT, after);
	Assert(rs->bt->out_on[WIN_VELOCITY_COUNT]);
	return Min(a->out_len - a->out_start[WIN_VELOCITY_COUNT], limit);
}

static int64
replay_payees_after(FactSource *src, TimestampTz after, int64 limit)
{
	ReplaySource *rs = (ReplaySource *) src;

	ASSERT_WINDOW(rs, RULE_PAYER_FAN_OUT, after);
	Assert(rs->payer->payees >= (rs->pair->fan_out_n > 0 ? 1 : 0));
	return Min(rs->payer->payees - (rs->pair->fan_out_n > 0 ? 1 : 0), limit);
}

static int64
replay_payers_after(FactSource *src, TimestampTz after, int64 limit)
{
	ReplaySource *rs = (ReplaySource *) src;

	ASSERT_WINDOW(rs, RULE_PAYEE_FAN_IN, after);
	Assert(rs->payee->payers >= (rs->pair->fan_in_n > 0 ? 1 : 0));
	return Min(rs->payee->payers - (rs->pair->fan_in_n > 0 ? 1 : 0), limit);
}

static double
replay_paid_after(FactSource *src, TimestampTz after)
{
	ReplaySource *rs = (ReplaySource *) src;

	ASSERT_WINDOW(rs, RULE_PAYER_VELOCITY_AMOUNT, after);
	return sum_float8(rs->payer->window_sum);
}

static int64
replay_band_after(FactSource *src, TimestampTz after, double lo, double hi, int64 limit)
{
	ReplaySource *rs = (ReplaySource *) src;

	ASSERT_WINDOW(rs, RULE_STRUCTURING, after);
	Assert(rs->payer->band_n >= 0);
	return Min(rs->payer->band_n, limit);
}

static bool
replay_pair_seen(FactSource *src)
{
	return ((ReplaySource *) src)->pair->seen;
}

static bool
replay_paid_back(FactSource *src, TimestampTz after, double min)
{
	ReplaySource *rs = (ReplaySource *) src;
	PairKey		back;
	Pair	   *paid;

	ASSERT_WINDOW(rs, RULE_ROUND_TRIP, after);
	Assert(min == rs->bt->cfg.rules[RULE_ROUND_TRIP].p.min_amount);
	back.payer = rs->payee->id;
	back.payee = rs->payer->id;
	paid = (Pair *) hash_search(rs->bt->pairs, &back, HASH_FIND, NULL);
	return paid && paid->has_round_trip && paid->round_trip_at > after;
}

static void
replay_account(FactSource *src, int64 *out_count, double *out_sum)
{
	ReplaySource *rs = (ReplaySource *) src;

	*out_count = rs->payer->out_count;
	*out_sum = sum_float8(rs->payer->out_sum);
}

static void
replay_normal(FactSource *src, bool payer, AccountNormal *out)
{
	ReplaySource *rs = (ReplaySource *) src;
	int64		unused;

	if (!rs->bt->baseline_on)
		return;					/* no rule compares with a normal */
	if (payer)
		out->days = normal_of(rs->payer, p2pay_date_of(rs->t), &out->out_count,
							  &out->out_payees, &unused);
	else
		out->days = normal_of(rs->payee, p2pay_date_of(rs->t), &unused, &unused,
							  &out->in_payers);
}

/* The replay's counts cost the same however many they count: no bound saves one. */
static int64
replay_day_bound(FactSource *src, DayTotal which, TimestampTz after, bool *whole)
{
	*whole = false;
	return -1;
}

static bool
replay_previous(FactSource *src, TimestampTz *at)
{
	ReplaySource *rs = (ReplaySource *) src;

	if (!rs->payer->has_previous)
		return false;
	*at = rs->payer->previous_at;
	return true;
}

static int64
replay_payers_of_payer_after(FactSource *src, TimestampTz after, int64 limit)
{
	ReplaySource *rs = (ReplaySource *) src;

	ASSERT_WINDOW(rs, RULE_PASS_THROUGH, after);
	expire_pt(rs->bt, rs->payer, rs->t);
	return Min(rs->payer->pt_payers, limit);
}

static void
replay_money_flow(FactSource *src, bool sum, bool loops, bool cycle_on, PaymentFacts *facts)
{
	ReplaySource *rs = (ReplaySource *) src;

	if (sum)
	{
		expire_pt(rs->bt, rs->payer, rs->t);
		facts->received = received(rs->bt, rs->payer);
	}
	if (loops)
		facts->closes_cycle = closes_cycle(rs->bt, rs->payer, rs->payee, rs->t);
}

/* The replay's answers, in FactSource's order. */
static const FactSource replay_functions = {
	.payments_after = replay_payments_after,
	.payees_after = replay_payees_after,
	.payers_after = replay_payers_after,
	.paid_after = replay_paid_after,
	.band_after = replay_band_after,
	.pair_seen = replay_pair_seen,
	.paid_back = replay_paid_back,
	.account = replay_account,
	.normal = replay_normal,
	.day_bound = replay_day_bound,
	.previous = replay_previous,
	.payers_of_payer_after = replay_payers_of_payer_after,
	.money_flow = replay_money_flow,
};

/*
 * The facts the trigger would read for this payment, from the state as it is
 * after the payments replayed before it: the lookups from the account
 * table (as refs.c reads them at the payment's time), the rest assembled
 * by facts.c from the replay's source.
 */
static void
read_facts(Backtest *bt, Account *payer, Account *payee, Pair *pair,
		   const pg_uuid_t *method, TimestampTz t, double amount, PaymentFacts *f)
{
	ReplaySource source;

	memset(f, 0, sizeof(*f));
	f->amount = amount;
	f->created_at = t;

	/* the lookup */
	f->payer_created_at = payer->created_at;
	f->payee_created_at = payee->created_at;
	f->method_registered = method_registered(payer, method);
	f->payer_blocked = listed_at(payer->blocked, payer->blocked_until, t);
	f->payee_blocked = listed_at(payee->blocked, payee->blocked_until, t);
	f->allowlisted = listed_at(payer->allowed, payer->allowed_until, t) ||
		listed_at(payee->allowed, payee->allowed_until, t);
	f->snoozed = snoozed_at(payer, t) | snoozed_at(payee, t);

	/* the windows, up to this payment */
	if (bt->keep_out)
		expire_out(bt, payer, t);
	if (bt->fan_in_on)
		expire_in(bt, payee, t);

	source.src = replay_functions;
	source.bt = bt;
	source.payer = payer;
	source.payee = payee;
	source.pair = pair;
	source.t = t;
	p2pay_assemble_facts(&bt->cfg, &source.src, f);
}

/*
 * Add a payment's verdict, and what it had at the time, to the counts.  A
 * rule fires whether active or shadow (reasons or shadow_reasons at the
 * time); would_review and would_decline take the payment's decision, which
 * only the active rules make.
 */
static void
tally(Backtest *bt, const Verdict *v, uint32 then_bits, int then_decision, bool fraud)
{
	bool		any = false;
	bool		flagged = v->decision != DECISION_APPROVE;

	for (int r = 0; r < RULE_COUNT; r++)
	{
		Counts	   *c = &bt->rule[r];
		bool		fired = v->fired[r] || v->shadow_fired[r];

		if (!RULE_EVALUATED(&bt->cfg.rules[r]))
			continue;
		if (fired)
		{
			any = true;
			c->fired++;
			c->would_review += v->decision == DECISION_REVIEW;
			c->would_decline += v->decision == DECISION_DECLINE;
			c->fired_on_fraud += fraud;
		}
		if (then_bits & (1u << r))
		{
			c->fired_at_time++;
			c->reviewed_at_time += then_decision == DECISION_REVIEW;
			c->declined_at_time += then_decision == DECISION_DECLINE;
		}
	}

	bt->payments++;
	bt->labelled_fraud += fraud;
	bt->overall.fired += any;
	bt->overall.would_review += v->decision == DECISION_REVIEW;
	bt->overall.would_decline += v->decision == DECISION_DECLINE;
	bt->overall.fired_on_fraud += flagged && fraud;
	bt->overall.fired_at_time += then_bits != 0;
	bt->overall.reviewed_at_time += then_decision == DECISION_REVIEW;
	bt->overall.declined_at_time += then_decision == DECISION_DECLINE;
}

/*
 * Add backtest_payments()'s row of a payment: its verdict in the replay,
 * then what it had at the time (values and nulls: replay_payments_sql's
 * columns).
 */
static void
put_payment(Backtest *bt, const Verdict *v, TimestampTz t, const Datum *values,
			const bool *nulls)
{
	Datum		row[NUM_PR];
	bool		isnull[NUM_PR] = {false};
	Oid			dt = bt->decision_type;

	row[PR_TRANSACTION_ID] = values[10];
	isnull[PR_TRANSACTION_ID] = nulls[10];
	row[PR_CREATED_AT] = TimestampTzGetDatum(t);
	row[PR_RISK_SCORE] = Float8GetDatum(v->score);
	row[PR_DECISION] = p2pay_decision_datum(dt, v->decision);
	row[PR_REASONS] = p2pay_rule_names(v->fired);
	row[PR_SHADOW_RISK_SCORE] = Float8GetDatum(v->shadow_score);
	row[PR_SHADOW_DECISION] = p2pay_decision_datum(dt, v->shadow_decision);
	row[PR_SHADOW_REASONS] = p2pay_rule_names(v->shadow_fired);
	row[PR_RISK_SCORE_AT_TIME] = values[11];
	isnull[PR_RISK_SCORE_AT_TIME] = nulls[11];
	isnull[PR_DECISION_AT_TIME] = nulls[8];
	if (!nulls[8])
		row[PR_DECISION_AT_TIME] = p2pay_decision_datum(dt, DatumGetInt32(values[8]));
	row[PR_REASONS_AT_TIME] = values[6];
	isnull[PR_REASONS_AT_TIME] = nulls[6];
	row[PR_SHADOW_RISK_SCORE_AT_TIME] = values[12];
	isnull[PR_SHADOW_RISK_SCORE_AT_TIME] = nulls[12];
	row[PR_SHADOW_DECISION_AT_TIME] = values[13];
	isnull[PR_SHADOW_DECISION_AT_TIME] = nulls[13];
	row[PR_SHADOW_REASONS_AT_TIME] = values[7];
	isnull[PR_SHADOW_REASONS_AT_TIME] = nulls[7];
	tuplestore_putvalues(bt->rows, bt->rows_desc, row, isnull);
}

/*
 * Record a payment in the replay's state, as the trigger's state statement
 * records it: the day's figures of its accounts (whether it is the pair's
 * first that day), the pair's latest payment, the windows, and the payer's
 * all-time facts (out_count, out_sum, the latest payment).  payer and payee
 * are NULL for an account with no payment in the range; a payment before
 * every window of the range counts only in the rest.
 */
static void
record_payment(Backtest *bt, Account *payer, Account *payee, Pair *pair,
			   TimestampTz t, double amount, Datum amount_base)
{
	if (bt->baseline_on)
	{
		DateADT		day = p2pay_date_of(t);
		bool		first_today = !pair->seen || pair->last_at < p2pay_day_of(t);

		if (payer && payer->pays)
		{
			DayFigures *df = account_day(bt, payer, day);

			df->out_count++;
			df->out_payees += first_today;
		}
		if (payee && payee->is_paid)
			account_day(bt, payee, day)->in_payers += first_today;
		if (payer)
			note_day(payer, day);
		if (payee)
			note_day(payee, day);
	}
	if (!pair->seen || t > pair->last_at)
		pair->last_at = t;
	pair->seen = true;
	if (t >= bt->window_start)
		count_payment(bt, payer, payee, pair, t, amount, amount_base);
	if (payer && payer->pays)
	{
		payer->out_count++;
		if (RULE_EVALUATED(&bt->cfg.rules[RULE_AMOUNT_DEVIATION]))
			payer->out_sum = accumulate(bt, payer->out_sum, DatumGetNumeric(amount_base), false);
		if (!payer->has_previous || t > payer->previous_at)
			payer->previous_at = t;
		payer->has_previous = true;
	}
}

/* Replay one payment: read its facts, score it, count it, record it. */
static void
replay_row(Backtest *bt, HeapTuple tup, TupleDesc desc)
{
	Datum		values[14];
	bool		nulls[14];
	const pg_uuid_t *payer_id;
	const pg_uuid_t *payee_id;
	Account    *payer;
	Account    *payee;
	Pair	   *pair;
	TimestampTz t;
	double		amount;
	PaymentFacts facts;
	Verdict		verdict;
	uint32		then_bits;

	/* per-row work in the batch's context, reset after it */
	Assert(CurrentMemoryContext == bt->batch_cxt);
	heap_deform_tuple(tup, desc, values, nulls);
	payer_id = DatumGetUUIDP(values[0]);
	payee_id = DatumGetUUIDP(values[1]);
	t = DatumGetTimestampTz(values[3]);
	amount = DatumGetFloat8(values[5]);

	payer = find_account(bt, payer_id);
	payee = find_account(bt, payee_id);
	if (payer == NULL || payee == NULL)
		elog(ERROR, "p2pay: backtest lost an account of a replayed payment");
	pair = enter_pair(bt, payer_id, payee_id);

	read_facts(bt, payer, payee, pair, DatumGetUUIDP(values[2]), t, amount, &facts);
	p2pay_evaluate(&bt->cfg, &facts, &verdict, NULL, NULL);

	then_bits = reason_bits(bt, values[6], nulls[6]) | reason_bits(bt, values[7], nulls[7]);
	tally(bt, &verdict, then_bits, nulls[8] ? -1 : DatumGetInt32(values[8]),
		  DatumGetBool(values[9]));
	if (bt->rows != NULL)
		put_payment(bt, &verdict, t, values, nulls);

	record_payment(bt, payer, payee, pair, t, amount, values[4]);
}

/* Record a payment made before from, as the payments of the range are. */
static void
history_row(Backtest *bt, HeapTuple tup, TupleDesc desc)
{
	Datum		values[5];
	bool		nulls[5];
	const pg_uuid_t *payer_id;
	const pg_uuid_t *payee_id;

	heap_deform_tuple(tup, desc, values, nulls);
	payer_id = DatumGetUUIDP(values[0]);
	payee_id = DatumGetUUIDP(values[1]);
	record_payment(bt, find_account(bt, payer_id), find_account(bt, payee_id),
				   enter_pair(bt, payer_id, payee_id),
				   DatumGetTimestampTz(values[2]), DatumGetFloat8(values[4]), values[3]);
}

/* Run a read-only statement through a cursor, handing each row to row_fn. */
static void
for_each_row(Backtest *bt, const char *sql, int nargs, Oid *types, Datum *values,
			 void (*row_fn) (Backtest *bt, HeapTuple tup, TupleDesc desc))
{
	Portal		portal;

	portal = SPI_cursor_open_with_args(NULL, sql, nargs, types, values, NULL, true, 0);
	if (portal == NULL)
		elog(ERROR, "p2pay: backtest could not open a cursor: %s",
			 SPI_result_code_string(SPI_result));
	for (;;)
	{
		MemoryContext old;

		SPI_cursor_fetch(portal, true, BATCH_ROWS);
		if (SPI_processed == 0)
			break;
		old = MemoryContextSwitchTo(bt->batch_cxt);
		for (uint64 i = 0; i < SPI_processed; i++)
			row_fn(bt, SPI_tuptable->vals[i], SPI_tuptable->tupdesc);
		MemoryContextSwitchTo(old);
		SPI_freetuptable(SPI_tuptable);
		MemoryContextReset(bt->batch_cxt);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_freetuptable(SPI_tuptable);
	SPI_cursor_close(portal);
}

/* Run a read-only statement that returns all its rows at once. */
static void
run_select(const char *sql, int nargs, Oid *types, Datum *values)
{
	int			ret = SPI_execute_with_args(sql, nargs, types, values, NULL, true, 0);

	if (ret != SPI_OK_SELECT)
		elog(ERROR, "p2pay: backtest statement failed: %s", SPI_result_code_string(ret));
}

/* A value of a row SPI just returned, and whether it is null. */
static Datum
column(uint64 row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

/*
 * Load the accounts of the replayed payments with their lookups; returns
 * them as uuid[], all and payers only, for the statements that follow.
 */
static void
load_accounts(Backtest *bt, TimestampTz from, TimestampTz to,
			  Datum *accounts, Datum *payers)
{
	Oid			types[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[2] = {TimestampTzGetDatum(from), TimestampTzGetDatum(to)};
	HASHCTL		ctl;
	Datum	   *all_ids;
	Datum	   *payer_ids;
	int			npayers = 0;
	uint64		n;
	MemoryContext old;

	run_select(accounts_sql, 2, types, values);
	n = SPI_processed;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(pg_uuid_t);
	ctl.entrysize = sizeof(Account);
	ctl.hcxt = bt->cxt;
	bt->accounts = hash_create("p2pay backtest accounts", Max(n, 64), &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	ctl.keysize = sizeof(PairKey);
	ctl.entrysize = sizeof(Pair);
	bt->pairs = hash_create("p2pay backtest pairs", Max(n * 4, 256), &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	/* the arrays are parameters of cursors read across batch resets */
	old = MemoryContextSwitchTo(bt->cxt);
	all_ids = palloc(sizeof(Datum) * Max(n, 1));
	payer_ids = palloc(sizeof(Datum) * Max(n, 1));
	MemoryContextSwitchTo(old);

	for (uint64 row = 0; row < n; row++)
	{
		bool		isnull;
		pg_uuid_t  *id = DatumGetUUIDP(column(row, 1, &isnull));
		Account    *a;
		bool		found;
		Datum		d;

		a = (Account *) hash_search(bt->accounts, id, HASH_ENTER, &found);
		memset((char *) a + sizeof(pg_uuid_t), 0, sizeof(Account) - sizeof(pg_uuid_t));
		all_ids[row] = UUIDPGetDatum(&a->id);
		a->pays = DatumGetBool(column(row, 2, &isnull));
		if (a->pays)
			payer_ids[npayers++] = UUIDPGetDatum(&a->id);
		a->is_paid = DatumGetBool(column(row, 3, &isnull));
		a->created_at = DatumGetTimestampTz(column(row, 4, &isnull));
		a->blocked = DatumGetBool(column(row, 5, &isnull));
		d = column(row, 6, &isnull);
		a->blocked_until = isnull ? DT_NOEND : DatumGetTimestampTz(d);
		a->allowed = DatumGetBool(column(row, 7, &isnull));
		d = column(row, 8, &isnull);
		a->allowed_until = isnull ? DT_NOEND : DatumGetTimestampTz(d);
	}
	SPI_freetuptable(SPI_tuptable);

	old = MemoryContextSwitchTo(bt->cxt);
	*accounts = PointerGetDatum(construct_array(all_ids, (int) n, UUIDOID, UUID_LEN,
												false, TYPALIGN_CHAR));
	*payers = PointerGetDatum(construct_array(payer_ids, npayers, UUIDOID, UUID_LEN,
											  false, TYPALIGN_CHAR));
	MemoryContextSwitchTo(old);
}

/* Load the registered methods and the snoozes of the accounts. */
static void
load_lookups(Backtest *bt, Datum accounts, Datum payers)
{
	Oid			types[1] = {UUIDARRAYOID};
	Datum		values[1];

	values[0] = payers;
	run_select(methods_sql, 1, types, values);
	for (uint64 row = 0; row < SPI_processed; row++)
	{
		bool		isnull;
		Account    *a = find_account(bt, DatumGetUUIDP(column(row, 1, &isnull)));

		if (a == NULL)
			continue;
		a->methods = a->methods
			? repalloc(a->methods, sizeof(pg_uuid_t) * (a->nmethods + 1))
			: MemoryContextAlloc(bt->cxt, sizeof(pg_uuid_t));
		memcpy(&a->methods[a->nmethods++], DatumGetUUIDP(column(row, 2, &isnull)),
			   sizeof(pg_uuid_t));
	}
	SPI_freetuptable(SPI_tuptable);

	values[0] = accounts;
	run_select(snoozes_sql, 1, types, values);
	for (uint64 row = 0; row < SPI_processed; row++)
	{
		bool		isnull;
		Account    *a = find_account(bt, DatumGetUUIDP(column(row, 1, &isnull)));
		char	   *rule_name = TextDatumGetCString(column(row, 2, &isnull));
		int			rule = p2pay_rule_lookup(rule_name);

		if (a == NULL || rule < 0)
			continue;
		a->snoozes = a->snoozes
			? repalloc(a->snoozes, sizeof(Snooze) * (a->nsnoozes + 1))
			: MemoryContextAlloc(bt->cxt, sizeof(Snooze));
		a->snoozes[a->nsnoozes].bit = 1u << rule;
		a->snoozes[a->nsnoozes].until = DatumGetTimestampTz(column(row, 3, &isnull));
		a->nsnoozes++;
	}
	SPI_freetuptable(SPI_tuptable);
}

static TimestampTz history_start(TimestampTz from, int64 window);

/*
 * Record the payments before from that the range's facts reach
 * (history_sql), and take each account's first day in account_daily, which
 * keeps the days of archived payments too.
 */
static void
load_history(Backtest *bt, TimestampTz from, Datum accounts, Datum payers)
{
	const RuleParams *cy = &bt->cfg.rules[RULE_CYCLE].p;
	TimestampTz start = bt->window_start;
	Oid			types[7] = {UUIDARRAYOID, TIMESTAMPTZOID, UUIDARRAYOID, TIMESTAMPTZOID,
	BOOLOID, TIMESTAMPTZOID, FLOAT8OID};
	Datum		values[7];

	/* no payment, and no day, before -infinity */
	if (TIMESTAMP_NOT_FINITE(from))
		return;

	if (bt->baseline_on)
	{
		Oid			first_types[2] = {UUIDARRAYOID, DATEOID};
		Datum		first_values[2] = {accounts, DateADTGetDatum(p2pay_date_of(from))};

		run_select(first_day_sql, 2, first_types, first_values);
		for (uint64 row = 0; row < SPI_processed; row++)
		{
			bool		isnull;
			Account    *a = find_account(bt, DatumGetUUIDP(column(row, 1, &isnull)));
			Datum		d = column(row, 2, &isnull);

			if (a != NULL && !isnull)
				note_day(a, DatumGetDateADT(d));
		}
		SPI_freetuptable(SPI_tuptable);
		start = Min(start, history_start(p2pay_day_of(from), BASELINE_DAYS * USECS_PER_DAY));
	}

	values[0] = payers;
	values[1] = TimestampTzGetDatum(from);
	values[2] = accounts;
	values[3] = TimestampTzGetDatum(start);
	values[4] = BoolGetDatum(bt->cycle_four);
	values[5] = TimestampTzGetDatum(history_start(from, cy->window));
	values[6] = Float8GetDatum(cy->min_amount);
	for_each_row(bt, history_sql, 7, types, values, history_row);
}

/* The rule-set version the caller's snapshot sees. */
static int64
snapshot_version(void)
{
	bool		isnull;
	int64		version = 0;

	run_select(version_sql, 0, NULL, NULL);
	if (SPI_processed == 1)
		version = DatumGetInt64(column(0, 1, &isnull));
	SPI_freetuptable(SPI_tuptable);
	return version;
}

/* Which windows the backtest configuration needs, and the longest of them. */
static void
plan_windows(Backtest *bt)
{
	const RuleConfig *rules = bt->cfg.rules;

	bt->longest = 0;
	bt->keep_out = false;
	for (int w = 0; w < NUM_OUT_WINDOWS; w++)
	{
		const RuleConfig *rc = &rules[out_window_rule[w]];

		bt->out_on[w] = RULE_EVALUATED(rc);
		bt->out_window[w] = rc->p.window;
		if (bt->out_on[w])
		{
			bt->keep_out = true;
			bt->longest = Max(bt->longest, rc->p.window);
		}
	}
	bt->amount_on = bt->out_on[WIN_VELOCITY_AMOUNT];
	bt->fan_in_on = RULE_EVALUATED(&rules[RULE_PAYEE_FAN_IN]);
	if (bt->fan_in_on)
		bt->longest = Max(bt->longest, rules[RULE_PAYEE_FAN_IN].p.window);
	bt->round_trip_on = RULE_EVALUATED(&rules[RULE_ROUND_TRIP]);
	if (bt->round_trip_on)
		bt->longest = Max(bt->longest, rules[RULE_ROUND_TRIP].p.window);
	bt->pass_through_on = RULE_EVALUATED(&rules[RULE_PASS_THROUGH]);
	if (bt->pass_through_on)
		bt->longest = Max(bt->longest, rules[RULE_PASS_THROUGH].p.window);
	bt->cycle_on = RULE_EVALUATED(&rules[RULE_CYCLE]);
	bt->cycle_four = bt->cycle_on && rules[RULE_CYCLE].p.max_length >= 4;
	if (bt->cycle_on)
		bt->longest = Max(bt->longest, rules[RULE_CYCLE].p.window);
	/* the normals are read only where a rule compares with them */
	bt->baseline_on = false;
	for (int i = 0; i < (int) lengthof(baseline_rule); i++)
		if (RULE_EVALUATED(&rules[baseline_rule[i]]) &&
			rules[baseline_rule[i]].p.baseline_factor > 0)
			bt->baseline_on = true;
	if (RULE_EVALUATED(&rules[RULE_NEW_PAYEE_HIGH_AMOUNT]) &&
		rules[RULE_NEW_PAYEE_HIGH_AMOUNT].p.min_known_days > 0)
		bt->baseline_on = true;
}

/* Where a window's history before from starts: from less the window. */
static TimestampTz
history_start(TimestampTz from, int64 window)
{
	TimestampTz start;

	if (TIMESTAMP_NOT_FINITE(from) || pg_sub_s64_overflow(from, window, &start) ||
		!IS_VALID_TIMESTAMP(start))
		return DT_NOBEGIN;
	return start;
}

/*
 * Load the configuration as the trigger does, with the lists' version, and
 * copy it: the rule rows given as JSON change the copy, never the cache.
 */
static void
backtest_config(Backtest *bt, Oid nspid, Jsonb *rules)
{
	const P2payConfig *cfg = p2pay_config(nspid);
	int64		version = snapshot_version();

	for (int attempt = 0; version != cfg->version && attempt < 3; attempt++)
	{
		p2pay_config_forget();
		cfg = p2pay_config(nspid);
	}
	bt->cfg = *cfg;
	if (rules != NULL)
		p2pay_config_apply_json(&bt->cfg, rules);
}

/* Replay the range as the owner of payments; fills bt's counts. */
static void
replay(Backtest *bt, Oid owner, Oid nspid, TimestampTz from, TimestampTz to, Jsonb *rules)
{
	OwnerContext saved;
	Datum		accounts;
	Datum		payers;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "p2pay: SPI_connect failed");
	p2pay_begin_as_owner(owner, &saved);
	/* every cursor is read to its end, so plan for all its rows */
	(void) set_config_option("cursor_tuple_fraction", "1", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);

	check_layout();
	backtest_config(bt, nspid, rules);
	plan_windows(bt);

	bt->cxt = AllocSetContextCreate(CurrentMemoryContext, "p2pay backtest",
									ALLOCSET_DEFAULT_SIZES);
	bt->batch_cxt = AllocSetContextCreate(bt->cxt, "p2pay backtest batch",
										  ALLOCSET_DEFAULT_SIZES);
	{
		MemoryContext old = MemoryContextSwitchTo(bt->cxt);

		bt->zero = DatumGetNumeric(DirectFunctionCall1(int8_numeric, Int64GetDatum(0)));
		MemoryContextSwitchTo(old);
	}
	for (int r = 0; r < RULE_COUNT; r++)
		bt->name_len[r] = strlen(p2pay_rule_name(r));

	load_accounts(bt, from, to, &accounts, &payers);
	load_lookups(bt, accounts, payers);
	bt->window_start = history_start(from, bt->longest);
	load_history(bt, from, accounts, payers);
	{
		Oid			types[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
		Datum		values[2] = {TimestampTzGetDatum(from), TimestampTzGetDatum(to)};

		for_each_row(bt, bt->rows ? replay_payments_sql : replay_sql, 2, types, values,
					 replay_row);
	}

	MemoryContextDelete(bt->cxt);
	bt->cxt = bt->batch_cxt = NULL;

	p2pay_end_as_owner(&saved);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "p2pay: SPI_finish failed");
}

/* A ratio, or null when its denominator is zero. */
static void
ratio(int64 num, int64 den, Datum *value, bool *isnull)
{
	*isnull = den == 0;
	*value = Float8GetDatum(den == 0 ? 0.0 : (double) num / (double) den);
}

/* Add one result row. */
static void
put_row(Tuplestorestate *store, TupleDesc desc, const Backtest *bt, const char *rule,
		const Counts *c, int64 precision_den)
{
	Datum		values[12];
	bool		nulls[12] = {false};

	values[0] = CStringGetTextDatum(rule);
	values[1] = Int64GetDatum(bt->payments);
	values[2] = Int64GetDatum(c->fired);
	values[3] = Int64GetDatum(c->would_review);
	values[4] = Int64GetDatum(c->would_decline);
	values[5] = Int64GetDatum(c->fired_at_time);
	values[6] = Int64GetDatum(c->reviewed_at_time);
	values[7] = Int64GetDatum(c->declined_at_time);
	values[8] = Int64GetDatum(bt->labelled_fraud);
	values[9] = Int64GetDatum(c->fired_on_fraud);
	ratio(c->fired_on_fraud, precision_den, &values[10], &nulls[10]);
	ratio(c->fired_on_fraud, bt->labelled_fraud, &values[11], &nulls[11]);
	tuplestore_putvalues(store, desc, values, nulls);
}

/*
 * Check the arguments and the call of fname (p2pay.backtest or
 * p2pay.backtest_payments), and replay the range as the owner of payments,
 * with a row per payment into rows when it is not NULL.  Returns the
 * replay's counts, in the caller's memory.
 */
static Backtest *
backtest_call(FunctionCallInfo fcinfo, const char *fname, bool per_payment,
			  Tuplestorestate **rows, TupleDesc *rows_desc)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz from;
	TimestampTz to;
	Jsonb	   *rules = NULL;
	Oid			nspid;
	Oid			relid;
	Oid			owner;
	Relation	rel;
	TupleDesc	desc;
	Backtest   *bt;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument %s of %s must not be null",
						PG_ARGISNULL(0) ? "from" : "to", fname),
				 errhint("Give the range to replay as [from, to), such as now() - interval '7 days', now().")));
	from = PG_GETARG_TIMESTAMPTZ(0);
	to = PG_GETARG_TIMESTAMPTZ(1);
	if (to <= from)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("backtest range is empty or reversed"),
				 errdetail("from is %s and to is %s; the range [from, to) holds no time.",
						   timestamptz_to_str(from), timestamptz_to_str(to)),
				 errhint("Give a from earlier than to.")));
	if (!PG_ARGISNULL(2))
		rules = PG_GETARG_JSONB_P(2);

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		(rsinfo->allowedModes & SFRM_Materialize) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s must be called where a set of rows is accepted", fname),
				 errhint("SELECT * FROM %s(from, to) reads it.", fname)));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "%s: must return rows", fname);

	nspid = p2pay_schema();
	relid = p2pay_relid("payments");
	rel = table_open(relid, AccessShareLock);
	owner = rel->rd_rel->relowner;
	table_close(rel, AccessShareLock);

	{
		MemoryContext old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);

		*rows_desc = CreateTupleDescCopy(desc);
		*rows = tuplestore_begin_heap(true, false, work_mem);
		MemoryContextSwitchTo(old);
	}

	bt = palloc0(sizeof(Backtest));
	if (per_payment)
	{
		if ((*rows_desc)->natts != NUM_PR)
			elog(ERROR, "%s: must return %d columns", fname, NUM_PR);
		bt->rows = *rows;
		bt->rows_desc = *rows_desc;
		bt->decision_type = TupleDescAttr(*rows_desc, PR_DECISION)->atttypid;
	}
	replay(bt, owner, nspid, from, to, rules);
	return bt;
}

/*
 * p2pay.backtest(from, to, rules): per evaluated rule in catalogue order,
 * then overall, what replaying the payments of [from, to) under the current
 * configuration (changed by the rule rows in rules) would fire and decide,
 * next to what was decided at the time.  Writes nothing.
 */
PG_FUNCTION_INFO_V1(p2pay_backtest);
Datum
p2pay_backtest(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Tuplestorestate *store;
	TupleDesc	desc;
	MemoryContext old;
	Backtest   *bt;

	bt = backtest_call(fcinfo, "p2pay.backtest", false, &store, &desc);

	old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	for (int r = 0; r < RULE_COUNT; r++)
		if (RULE_EVALUATED(&bt->cfg.rules[r]))
			put_row(store, desc, bt, p2pay_rule_name(r), &bt->rule[r], bt->rule[r].fired);
	put_row(store, desc, bt, "overall", &bt->overall,
			bt->overall.would_review + bt->overall.would_decline);
	MemoryContextSwitchTo(old);

	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = store;
	rsinfo->setDesc = desc;
	pfree(bt);
	return (Datum) 0;
}

/*
 * p2pay.backtest_payments(from, to, rules): the same replay as
 * p2pay.backtest(), a row per payment in replay order: its score, decision
 * and reasons, active and shadow, under the configuration replayed, next to
 * those it was given at the time.  Writes nothing.
 */
PG_FUNCTION_INFO_V1(p2pay_backtest_payments);
Datum
p2pay_backtest_payments(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Tuplestorestate *store;
	TupleDesc	desc;
	Backtest   *bt;

	bt = backtest_call(fcinfo, "p2pay.backtest_payments", true, &store, &desc);

	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = store;
	rsinfo->setDesc = desc;
	pfree(bt);
	return (Datum) 0;
}
