/*
 * facts.h: what the rules know about a payment, where it comes from, and
 * the bounds every source of it shares.
 *
 * A fact is computed once, in facts.c, from a FactSource: the trigger's
 * source reads the per-account state tables through their indexes
 * (store.c), the backtest's replays stored payments in memory
 * (backtest.c).  Each source answers the same small questions ("how many of
 * the payer's payments since an instant, up to a limit", "the pair", "the
 * account's normal", ...); which questions are asked, with which limits,
 * is decided in one place, p2pay_assemble_facts(), so that the two can't
 * drift apart.  t/019_fact_agreement.pl checks them payment by payment.
 */
#ifndef P2PAY_FACTS_H
#define P2PAY_FACTS_H

#include "p2pay.h"
#include "rules.h"

#include "utils/fmgrprotos.h"
#include "utils/numeric.h"
#include "utils/uuid.h"

/*
 * How many days back an account's normal is measured (account_daily).
 */
#define BASELINE_DAYS 30

/*
 * Bounds on the work of the money-flow rules: pass_through sums what at
 * most PASS_THROUGH_PAYERS recent payers paid in (those with the earliest
 * last payment, then the lowest id); cycle follows at most CYCLE_FANOUT
 * accounts paid significantly out of each account on the way round (the
 * lowest ids).  The order makes the answer the same whatever plan is
 * chosen, and lets the backtest reproduce it.
 */
#define PASS_THROUGH_PAYERS 200
#define CYCLE_FANOUT 32

/* A payment's input, validated by the trigger. */
typedef struct PaymentInput
{
	pg_uuid_t  *payer;
	pg_uuid_t  *payee;
	pg_uuid_t  *method;
	Datum		currency;		/* bpchar */
	Numeric		amount;
	TimestampTz created_at;
} PaymentInput;

/*
 * What the rules know about a payment.  Counts include the new payment and
 * stop one past the limit the rule compares them with.  velocity_count,
 * fan_out and fan_in are exact from their rule's max_count, max_payees or
 * max_payers up; below it, where the account's days show that the count
 * can't reach it, they hold that bound instead (see count_to_limit): the
 * rule can't fire either way.
 */
typedef struct PaymentFacts
{
	Numeric		amount_base;	/* amount * rate_to_base, in the caller's context */
	double		amount;			/* the same, for comparisons */
	TimestampTz created_at;
	TimestampTz payer_created_at;
	TimestampTz payee_created_at;
	bool		method_registered;
	bool		payer_blocked;
	bool		payee_blocked;
	bool		allowlisted;	/* payer or payee trusted: approve unless blocklisted */
	uint32		snoozed;		/* bit per RuleId snoozed for payer or payee */
	int64		velocity_count;
	double		velocity_amount;
	int64		fan_out;
	int64		fan_in;
	int64		band_count;
	bool		pair_seen;		/* the payer paid the payee before */
	bool		paid_back;		/* the payee paid the payer enough, recently */
	int64		out_count;		/* the payer's earlier payments */
	double		out_sum;
	bool		has_previous;	/* the payer paid before, at or before created_at */
	TimestampTz previous_at;
	int64		received_from;	/* distinct payers into the payer in the window */
	double		received;		/* what they paid the payer in the window */
	bool		closes_cycle;	/* the payment closes a loop of 3 or 4 accounts */

	/*
	 * Each account's normal: its totals per UTC day over the days before
	 * this one (at most BASELINE_DAYS), and how many days that covers (0:
	 * no history).
	 */
	int64		payer_days;
	int64		payer_day_payments;	/* payments made */
	int64		payer_day_payees;	/* new payees per day, summed */
	int64		payee_days;
	int64		payee_day_payers;	/* new payers per day, summed */
} PaymentFacts;

/*
 * An account's normal as account_daily holds it, before the payment's own
 * day: the days of history it has (at most BASELINE_DAYS; 0, none) and its
 * totals over [day - BASELINE_DAYS, day).
 */
typedef struct AccountNormal
{
	int64		days;
	int64		out_count;		/* payments made */
	int64		out_payees;		/* payees paid for the first time that day */
	int64		in_payers;		/* payers paying for the first time that day */
} AccountNormal;

/*
 * Where the facts of one payment (payer pays payee at created_at, its
 * amount) come from.  Every answer is as the state stood before the
 * payment, and every count stops at its limit (a limit of 0 or less: 0).
 * "After" is exclusive: a payment at exactly that instant is not counted.
 * Each function is asked only when the rule that needs it is evaluated
 * (p2pay_assemble_facts says when), so a source keeps only what those
 * rules read.
 */
typedef struct FactSource FactSource;

/* Which of an account's totals per day a count is bounded and compared by. */
typedef enum DayTotal
{
	TOTAL_OUT_COUNT,			/* the payer's payments */
	TOTAL_OUT_PAYEES,			/* the payer's new payees */
	TOTAL_IN_PAYERS				/* the payee's new payers */
} DayTotal;

struct FactSource
{
	/* the payer's payments created after an instant */
	int64		(*payments_after) (FactSource *src, TimestampTz after, int64 limit);
	/* the payees other than this payment's that the payer paid after an instant */
	int64		(*payees_after) (FactSource *src, TimestampTz after, int64 limit);
	/* the payers other than this payment's that paid the payee after an instant */
	int64		(*payers_after) (FactSource *src, TimestampTz after, int64 limit);
	/* what the payer paid after an instant, summed exactly, as float8 */
	double		(*paid_after) (FactSource *src, TimestampTz after);
	/* the payer's payments after an instant of an amount in [lo, hi) */
	int64		(*band_after) (FactSource *src, TimestampTz after, double lo, double hi,
							   int64 limit);
	/* whether the payer paid the payee before */
	bool		(*pair_seen) (FactSource *src);
	/* whether the payee paid the payer at least min after an instant */
	bool		(*paid_back) (FactSource *src, TimestampTz after, double min);
	/* the payer's earlier payments: how many, and their sum */
	void		(*account) (FactSource *src, int64 *out_count, double *out_sum);
	/* the payer's (payer true) or the payee's normal */
	void		(*normal) (FactSource *src, bool payer, AccountNormal *out);

	/*
	 * A bound on a count for the same instant: payments_after
	 * (TOTAL_OUT_COUNT), payees_after (TOTAL_OUT_PAYEES) or payers_after
	 * (TOTAL_IN_PAYERS), from the account's totals per day from after's
	 * UTC day on, later days included; -1 if the source keeps none.  whole
	 * is set false where some of those days may be gone (pruned), so that
	 * the count may exceed the bound.
	 */
	int64		(*day_bound) (FactSource *src, DayTotal which, TimestampTz after, bool *whole);
	/* the payer's latest payment at or before created_at, if any */
	bool		(*previous) (FactSource *src, TimestampTz *at);
	/* the payers of the payer whose pair was paid after an instant */
	int64		(*payers_of_payer_after) (FactSource *src, TimestampTz after, int64 limit);

	/*
	 * The money-flow facts of a large payment, into facts: received (if
	 * sum: what the pairs paying into the payer paid inside pass_through's
	 * window, the PASS_THROUGH_PAYERS with the earliest last payment, then
	 * the lowest payer id) and closes_cycle (if loops: whether the payment
	 * closes a loop inside cycle's window, every leg at least its
	 * min_amount, following CYCLE_FANOUT accounts of lowest id at each
	 * step).  cycle_on: cycle is evaluated for this payment.
	 */
	void		(*money_flow) (FactSource *src, bool sum, bool loops, bool cycle_on,
							   PaymentFacts *facts);
};

/* facts.c */
extern void p2pay_assemble_facts(const P2payConfig *cfg, FactSource *src, PaymentFacts *facts);

/* An exact amount as float8, as the rules compare it. */
static inline double
p2pay_numeric_to_double(Datum num)
{
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8, num));
}

#endif							/* P2PAY_FACTS_H */
