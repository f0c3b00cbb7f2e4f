/*
 * facts.c: the one assembly of a payment's facts from a FactSource
 * (facts.h), for the trigger (the state tables, store.c) and the backtest
 * (its replay, backtest.c) alike.
 *
 * What is decided here, once: which facts are read (only those of the
 * rules evaluated, and of those only what can change their answer for
 * this payment), where each count stops (not begun where the account's
 * days show it can't reach the rule's limit; one past the limit, or, once
 * the limit is reached, one past what the account's normal allows:
 * baseline_cap, unless the normal can't be exceeded: count_to_limit), when
 * an account's normal is read (a count at its limit, or a large payment to
 * a new payee where new_payee_high_amount asks how long the payer is
 * known), and when the money-flow facts are read (a payment large enough
 * for pass_through or cycle, and for pass_through enough payers in).  A
 * source answers the questions; it never decides which to ask, so the
 * trigger and the backtest can't differ in that.
 *
 * The lookups (users, method, lists, snoozes, the rate) are not facts of
 * other payments and come from elsewhere (refs.c, or the backtest's
 * accounts); facts->amount and facts->created_at must be set before.
 */
#include "postgres.h"

#include <math.h>

#include "facts.h"
#include "rules.h"

/* The payer's and the payee's normals, each read at most once. */
typedef struct Normals
{
	FactSource *src;
	bool		loaded[2];		/* payer, payee */
	AccountNormal normal[2];
} Normals;

/* An account's normal, read the first time it is asked for. */
static const AccountNormal *
normal_of(Normals *nm, bool payer)
{
	int			i = payer ? 0 : 1;

	if (!nm->loaded[i])
	{
		memset(&nm->normal[i], 0, sizeof(AccountNormal));
		nm->src->normal(nm->src, payer, &nm->normal[i]);
		nm->loaded[i] = true;
		Assert(nm->normal[i].days >= 0 && nm->normal[i].days <= BASELINE_DAYS);
		Assert(nm->normal[i].out_count >= 0 && nm->normal[i].out_payees >= 0 &&
			   nm->normal[i].in_payers >= 0);
	}
	return &nm->normal[i];
}

static int64
total_of(const AccountNormal *n, DayTotal which)
{
	switch (which)
	{
		case TOTAL_OUT_COUNT:
			return n->out_count;
		case TOTAL_OUT_PAYEES:
			return n->out_payees;
		case TOTAL_IN_PAYERS:
			return n->in_payers;
	}
	return 0;
}

/*
 * How far a count compared with an account's normal must go: one past the
 * count above which the rule fires (p2pay_normal_limit), with one to spare
 * for rounding; 0 while the account has no day of history or the rule
 * doesn't compare with a normal.  rules.c's above_normal() decides with
 * the same figures.
 */
static int64
baseline_cap(const RuleConfig *rc, int64 days, int64 total)
{
	double		m;

	if (!RULE_EVALUATED(rc) || rc->p.baseline_factor <= 0 || days <= 0)
		return 0;
	m = floor(p2pay_normal_limit(&rc->p, days, total));
	/* a count stops long before this, whatever the state holds */
	return m < 1e15 ? (int64) m + 2 : INT64CONST(1000000000000000);
}

typedef int64 (*CountFn) (FactSource *src, TimestampTz after, int64 limit);

/*
 * A count that a rule compares with its limit and, past it, with the
 * account's normal: how many rows there are after an instant, stopping at
 * the limit, or, once the limit is reached and the rule has a normal to
 * compare with, at baseline_cap.  Below the limit the rule can't fire and
 * the normal doesn't matter, so it is read only then.
 *
 * A count can't exceed what the account's days since the window began
 * count (day_bound): a payment after the instant was made on one of those
 * days, and a pair last paid after it was paid on one of them, which
 * counted it once.  So:
 *   - a bound below the limit is the answer, and nothing is counted: the
 *     rule can't fire, whatever the count (an account that pays or is paid
 *     a few times a day, most of them, costs no count at all).  Not where
 *     some of those days may have been pruned (whole false): the count is
 *     read there, and exact;
 *   - past the limit the count goes on only while the normal can still be
 *     exceeded (above_normal in rules.c): not when the bound is within
 *     the normal (a payee paid by thousands a day costs what any other
 *     does; on days pruned, as the normal itself, without them), nor for
 *     an account with less than baseline_days of history and a payment
 *     below short_history_min_amount (p2pay_too_small_for_history, as
 *     above_normal asks).
 * Stopping there gives the rule the same answer: the count is below the
 * limit, or past it and within the normal, either way.
 */
static int64
count_to_limit(Normals *nm, const RuleConfig *rc, int64 limit, DayTotal which,
			   CountFn count, TimestampTz after, double amount)
{
	const AccountNormal *normal;
	int64		bound = -1;
	bool		whole = false;
	int64		n = 0;
	int64		cap;

	if (!RULE_EVALUATED(rc))
		return 0;
	limit = Max(limit, 0);
	if (limit > 0)
	{
		bound = nm->src->day_bound(nm->src, which, after, &whole);
		if (whole && bound >= 0 && bound < limit)
			return bound;
		n = count(nm->src, after, limit);
	}
	Assert(n >= 0 && n <= limit);
	if (n < limit || rc->p.baseline_factor <= 0)
		return n;
	normal = normal_of(nm, which != TOTAL_IN_PAYERS);
	cap = baseline_cap(rc, normal->days, total_of(normal, which));
	if (cap <= limit)
		return n;
	if (p2pay_too_small_for_history(&rc->p, normal->days, amount))
		return n;
	if (limit == 0)
		bound = nm->src->day_bound(nm->src, which, after, &whole);
	/* 1 + bound <= floor(limit of the normal) = cap - 2 */
	if (bound >= 0 && bound <= cap - 3)
		return n;
	n = count(nm->src, after, cap);
	Assert(n >= limit && n <= cap);
	return n;
}

/*
 * Fill the facts that depend on other payments from src, as they stood
 * before this payment: each count and sum includes the payment itself.
 * facts->amount and facts->created_at are the payment's.
 */
void
p2pay_assemble_facts(const P2payConfig *cfg, FactSource *src, PaymentFacts *facts)
{
	const RuleConfig *rules = cfg->rules;
	const RuleConfig *vc = &rules[RULE_PAYER_VELOCITY_COUNT];
	const RuleConfig *va = &rules[RULE_PAYER_VELOCITY_AMOUNT];
	const RuleConfig *fo = &rules[RULE_PAYER_FAN_OUT];
	const RuleConfig *fi = &rules[RULE_PAYEE_FAN_IN];
	const RuleConfig *st = &rules[RULE_STRUCTURING];
	const RuleConfig *np = &rules[RULE_NEW_PAYEE_HIGH_AMOUNT];
	const RuleConfig *rt = &rules[RULE_ROUND_TRIP];
	const RuleConfig *ad = &rules[RULE_AMOUNT_DEVIATION];
	const RuleConfig *dr = &rules[RULE_DORMANT_REACTIVATION];
	const RuleConfig *pt = &rules[RULE_PASS_THROUGH];
	const RuleConfig *cy = &rules[RULE_CYCLE];
	TimestampTz t = facts->created_at;
	double		amount = facts->amount;
	Normals		nm = {.src = src};
	bool		pt_on;
	bool		cy_on;

	facts->velocity_count = 1 +
		count_to_limit(&nm, vc, vc->p.max_count, TOTAL_OUT_COUNT,
					   src->payments_after, t - vc->p.window, amount);
	facts->velocity_amount = amount;
	if (RULE_EVALUATED(va))
		facts->velocity_amount += src->paid_after(src, t - va->p.window);
	facts->fan_out = 1 +
		count_to_limit(&nm, fo, fo->p.max_payees, TOTAL_OUT_PAYEES,
					   src->payees_after, t - fo->p.window, amount);
	facts->fan_in = 1 +
		count_to_limit(&nm, fi, fi->p.max_payers, TOTAL_IN_PAYERS,
					   src->payers_after, t - fi->p.window, amount);

	facts->band_count = 0;
	if (RULE_EVALUATED(st) && p2pay_in_structuring_band(&st->p, amount))
	{
		int64		limit = Max(st->p.min_count - 1, 0);
		int64		n = limit > 0
			? src->band_after(src, t - st->p.window, st->p.threshold * (1.0 - st->p.band),
							  st->p.threshold, limit)
			: 0;

		Assert(n >= 0 && n <= limit);
		facts->band_count = 1 + n;
	}

	facts->pair_seen = src->pair_seen(src);

	/* how long p2pay has known the payer, where new_payee_high_amount asks */
	if (!facts->pair_seen && RULE_EVALUATED(np) && np->p.min_known_days > 0 &&
		amount > np->p.min_amount)
		(void) normal_of(&nm, true);

	facts->paid_back = RULE_EVALUATED(rt) && amount >= rt->p.min_amount &&
		src->paid_back(src, t - rt->p.window, rt->p.min_amount);

	facts->out_count = 0;
	facts->out_sum = 0;
	if (RULE_EVALUATED(ad))
	{
		src->account(src, &facts->out_count, &facts->out_sum);
		Assert(facts->out_count >= 0);
	}

	facts->has_previous = RULE_EVALUATED(dr) && amount > dr->p.min_amount &&
		src->previous(src, &facts->previous_at);
	Assert(!facts->has_previous || facts->previous_at <= t);

	/*
	 * The money-flow rules look at large payments only; pass_through needs
	 * what the payer's payers paid it only once they are enough of them.
	 */
	pt_on = RULE_EVALUATED(pt) && amount >= pt->p.min_amount;
	cy_on = RULE_EVALUATED(cy) && amount >= cy->p.min_amount;
	facts->received_from = pt_on && pt->p.min_payers > 0
		? src->payers_of_payer_after(src, t - pt->p.window, pt->p.min_payers)
		: 0;
	Assert(facts->received_from >= 0 && facts->received_from <= Max(pt->p.min_payers, 0));
	facts->received = 0;
	facts->closes_cycle = false;
	src->money_flow(src, pt_on && facts->received_from >= pt->p.min_payers, cy_on, cy_on,
					facts);

	/* each account's normal, as far as it was read */
	facts->payer_days = nm.normal[0].days;
	facts->payer_day_payments = nm.normal[0].out_count;
	facts->payer_day_payees = nm.normal[0].out_payees;
	facts->payee_days = nm.normal[1].days;
	facts->payee_day_payers = nm.normal[1].in_payers;
}
