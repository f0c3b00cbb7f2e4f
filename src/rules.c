/*
 * rules.c: the rule catalogue.
 *
 * Each rule has a name, the parameters it takes (checked when a rule row is
 * written, never at payment time) and one small function that decides from
 * the payment's facts whether it fires.  The catalogue's order is the order
 * of reasons on a payment.  Nothing here reads a table: facts.c assembles
 * the facts, so a rule costs a comparison.
 */
#include "postgres.h"

#include <math.h>

#include "p2pay.h"
#include "compat.h"
#include "facts.h"
#include "rules.h"

#include "common/int.h"

#include "fmgr.h"
#include "portability/instr_time.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

/*
 * The kinds of parameter, each with its bounds, checked when a rule row is
 * written: every value a rule computes with stays far from overflowing.
 */
typedef enum RuleParamKind
{
	PARAM_AMOUNT,				/* number in [0, MAX_PARAM_AMOUNT] */
	PARAM_COUNT,				/* whole number in [0, MAX_PARAM_COUNT] */
	PARAM_DAYS,					/* whole number in [0, BASELINE_DAYS] */
	PARAM_FRACTION,				/* number in (0, 1) */
	PARAM_LENGTH,				/* 3 or 4: the accounts in a loop */
	PARAM_FACTOR,				/* number in (0, MAX_PARAM_FACTOR] */
	PARAM_MULTIPLE,				/* number in [0, MAX_PARAM_FACTOR]: 0 switches it off */
	PARAM_INTERVAL				/* interval text in (0, MAX_PARAM_DAYS days], without months */
} RuleParamKind;

/* An amount above any payment's (payments are at most 10^15). */
#define MAX_PARAM_AMOUNT 1e15
/* A count beyond any a window of payments is compared with. */
#define MAX_PARAM_COUNT 1000000
/* A factor beyond any normal or mean a payment is compared with. */
#define MAX_PARAM_FACTOR 1000
/* A window, age or idle time: ten years. */
#define MAX_PARAM_DAYS 3650

typedef struct ParamDef
{
	const char *key;
	RuleParamKind	kind;
	size_t		offset;			/* in RuleParams */
	bool		optional;		/* may be left out: then 0, which is off */
} ParamDef;

typedef bool (*RuleFn) (const RuleParams *p, const PaymentFacts *f);

typedef struct RuleDef
{
	const char *name;
	RuleFn		fires;
	ParamDef	params[5];
	int			nparams;
} RuleDef;

#define P(key, kind) {#key, kind, offsetof(RuleParams, key), false}
#define P_OPTIONAL(key, kind) {#key, kind, offsetof(RuleParams, key), true}

static bool
amount_limit(const RuleParams *p, const PaymentFacts *f)
{
	return f->amount > p->max_amount;
}

/*
 * Whether count is above the account's normal for a window, for a payment
 * of amount.  The normal is the account's mean per day over the days it
 * has (at most BASELINE_DAYS), scaled to the window.  With baseline_days
 * of them, the count must exceed baseline_factor times the normal.  With
 * fewer, the history is too short to tell a new shop from a mule by counts
 * alone: the payment must be of at least short_history_min_amount (many
 * small payments are a shop's, many larger ones a mule's), and, once the
 * account has a day, the count must exceed the normal of the days there
 * are with baseline_days / days times the room.  With baseline_factor 0
 * the absolute limit alone decides.
 */
static bool
above_normal(const RuleParams *p, int64 count, int64 days, int64 day_total, double amount)
{
	if (p->baseline_factor <= 0)
		return true;
	if (p2pay_too_small_for_history(p, days, amount))
		return false;
	if (days < p->baseline_days && days <= 0)
		return true;
	return (double) count > p2pay_normal_limit(p, days, day_total);
}

/*
 * Whether a payment of amount is too small for an account with days of
 * history to be compared with its normal (short_history_min_amount), so
 * that the rule can't fire whatever the count.
 */
bool
p2pay_too_small_for_history(const RuleParams *p, int64 days, double amount)
{
	return days < p->baseline_days && amount < p->short_history_min_amount;
}

/*
 * The count above which a rule with a normal fires, for an account with
 * days of history (at least 1) and day_total of the counted figure over
 * them: baseline_factor times its mean per day scaled to the window, with
 * baseline_days / days times the room while days < baseline_days.  facts.c
 * counts up to it (baseline_cap).
 */
double
p2pay_normal_limit(const RuleParams *p, int64 days, int64 day_total)
{
	double		room = p->baseline_factor;

	if (days < p->baseline_days)
		room *= (double) p->baseline_days / (double) days;
	return (double) day_total / (double) days * ((double) p->window / (double) USECS_PER_DAY) * room;
}

static bool
payer_velocity_count(const RuleParams *p, const PaymentFacts *f)
{
	return f->velocity_count > p->max_count &&
		above_normal(p, f->velocity_count, f->payer_days, f->payer_day_payments,
					 f->amount);
}

static bool
payer_velocity_amount(const RuleParams *p, const PaymentFacts *f)
{
	return f->velocity_amount > p->max_amount;
}

static bool
payer_fan_out(const RuleParams *p, const PaymentFacts *f)
{
	return f->fan_out > p->max_payees &&
		above_normal(p, f->fan_out, f->payer_days, f->payer_day_payees, f->amount);
}

static bool
payee_fan_in(const RuleParams *p, const PaymentFacts *f)
{
	return f->fan_in > p->max_payers &&
		above_normal(p, f->fan_in, f->payee_days, f->payee_day_payers, f->amount);
}

static bool
structuring(const RuleParams *p, const PaymentFacts *f)
{
	return p2pay_in_structuring_band(p, f->amount) && f->band_count >= p->min_count;
}

/*
 * A pair p2pay has not seen is a new payee only if p2pay has known the
 * payer long enough to have seen it (min_known_days): a monthly rent shows
 * within 30 days.  payer_days is read for exactly the payments that could
 * fire (facts.c).
 */
static bool
new_payee_high_amount(const RuleParams *p, const PaymentFacts *f)
{
	return !f->pair_seen && f->amount > p->min_amount && f->payer_days >= p->min_known_days;
}

static bool
new_account_high_amount(const RuleParams *p, const PaymentFacts *f)
{
	return f->payer_created_at > f->created_at - p->max_age &&
		f->amount > p->min_amount;
}

static bool
round_trip(const RuleParams *p, const PaymentFacts *f)
{
	return f->amount >= p->min_amount && f->paid_back;
}

static bool
unregistered_method(const RuleParams *p, const PaymentFacts *f)
{
	return !f->method_registered;
}

static bool
amount_deviation(const RuleParams *p, const PaymentFacts *f)
{
	return f->out_count >= p->min_history && f->out_count > 0 &&
		f->amount > p->factor * (f->out_sum / (double) f->out_count);
}

static bool
dormant_reactivation(const RuleParams *p, const PaymentFacts *f)
{
	return f->has_previous && f->previous_at < f->created_at - p->idle &&
		f->amount > p->min_amount;
}

static bool
blocklist(const RuleParams *p, const PaymentFacts *f)
{
	return f->payer_blocked || f->payee_blocked;
}

static bool
pass_through(const RuleParams *p, const PaymentFacts *f)
{
	return f->amount >= p->min_amount && f->received_from >= p->min_payers &&
		f->received > 0 && f->amount >= p->share * f->received;
}

static bool
cycle(const RuleParams *p, const PaymentFacts *f)
{
	return f->amount >= p->min_amount && f->closes_cycle;
}

/*
 * A first large payment to an account opened recently: where money leaves
 * for mules and drops, whatever the payer's history in p2pay.
 */
static bool
young_payee_high_amount(const RuleParams *p, const PaymentFacts *f)
{
	return !f->pair_seen && f->payee_created_at > f->created_at - p->max_age &&
		f->amount > p->min_amount;
}

static const RuleDef rule_defs[RULE_COUNT] = {
	{"amount_limit", amount_limit, {P(max_amount, PARAM_AMOUNT)}, 1},
	{"payer_velocity_count", payer_velocity_count,
		{P(max_count, PARAM_COUNT), P(window, PARAM_INTERVAL),
	P(baseline_factor, PARAM_MULTIPLE), P(baseline_days, PARAM_DAYS),
	P_OPTIONAL(short_history_min_amount, PARAM_AMOUNT)}, 5},
	{"payer_velocity_amount", payer_velocity_amount,
	{P(max_amount, PARAM_AMOUNT), P(window, PARAM_INTERVAL)}, 2},
	{"payer_fan_out", payer_fan_out,
		{P(max_payees, PARAM_COUNT), P(window, PARAM_INTERVAL),
	P(baseline_factor, PARAM_MULTIPLE), P(baseline_days, PARAM_DAYS),
	P_OPTIONAL(short_history_min_amount, PARAM_AMOUNT)}, 5},
	{"payee_fan_in", payee_fan_in,
		{P(max_payers, PARAM_COUNT), P(window, PARAM_INTERVAL),
	P(baseline_factor, PARAM_MULTIPLE), P(baseline_days, PARAM_DAYS),
	P_OPTIONAL(short_history_min_amount, PARAM_AMOUNT)}, 5},
	{"structuring", structuring,
		{P(threshold, PARAM_AMOUNT), P(band, PARAM_FRACTION),
	P(min_count, PARAM_COUNT), P(window, PARAM_INTERVAL)}, 4},
	{"new_payee_high_amount", new_payee_high_amount,
	{P(min_amount, PARAM_AMOUNT), P_OPTIONAL(min_known_days, PARAM_DAYS)}, 2},
	{"new_account_high_amount", new_account_high_amount,
	{P(max_age, PARAM_INTERVAL), P(min_amount, PARAM_AMOUNT)}, 2},
	{"round_trip", round_trip,
	{P(window, PARAM_INTERVAL), P(min_amount, PARAM_AMOUNT)}, 2},
	{"unregistered_method", unregistered_method, {{0}}, 0},
	{"amount_deviation", amount_deviation,
	{P(factor, PARAM_FACTOR), P(min_history, PARAM_COUNT)}, 2},
	{"dormant_reactivation", dormant_reactivation,
	{P(idle, PARAM_INTERVAL), P(min_amount, PARAM_AMOUNT)}, 2},
	{"blocklist", blocklist, {{0}}, 0},
	{"pass_through", pass_through,
		{P(window, PARAM_INTERVAL), P(min_payers, PARAM_COUNT),
	P(share, PARAM_FRACTION), P(min_amount, PARAM_AMOUNT)}, 4},
	{"cycle", cycle,
		{P(window, PARAM_INTERVAL), P(min_amount, PARAM_AMOUNT),
	P(max_length, PARAM_LENGTH)}, 3},
	{"young_payee_high_amount", young_payee_high_amount,
	{P(max_age, PARAM_INTERVAL), P(min_amount, PARAM_AMOUNT)}, 2},
};

/* Name of a rule, for reasons and messages. */
const char *
p2pay_rule_name(RuleId rule)
{
	return rule_defs[rule].name;
}

/* Catalogue position of the rule called name, or -1. */
int
p2pay_rule_lookup(const char *name)
{
	for (int i = 0; i < RULE_COUNT; i++)
		if (strcmp(rule_defs[i].name, name) == 0)
			return i;
	return -1;
}

/* Whether an amount lies in the band just under the structuring threshold. */
bool
p2pay_in_structuring_band(const RuleParams *p, double amount)
{
	return amount >= p->threshold * (1.0 - p->band) && amount < p->threshold;
}

/* Reject a weight outside [0, 1]. */
void
p2pay_check_weight(const char *rule, double weight)
{
	if (isnan(weight) || weight < 0.0 || weight > 1.0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("weight of rule \"%s\" must be between 0 and 1", rule),
				 errdetail("The weight given was %g.", weight),
				 errhint("A rule that fires adds 1 - (1 - score) * (1 - weight) to the score.")));
}

/* The name of a jsonb value's type, for messages. */
static const char *
jsonb_type_name(const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "a string";
		case jbvNumeric:
			return "a number";
		case jbvBool:
			return "a boolean";
		default:
			return "an array or object";
	}
}

/* The range a numeric parameter must lie in, as the error message says it. */
static const char *
number_range(RuleParamKind kind)
{
	switch (kind)
	{
		case PARAM_COUNT:
			return "it must be a whole number from 0 to " CppAsString2(MAX_PARAM_COUNT);
		case PARAM_DAYS:
			return "it must be a whole number of days from 0 to " CppAsString2(BASELINE_DAYS) ", the days an account's normal is counted over";
		case PARAM_LENGTH:
			return "it must be 3 or 4";
		case PARAM_FRACTION:
			return "it must lie strictly between 0 and 1";
		case PARAM_FACTOR:
			return "it must be greater than 0 and at most " CppAsString2(MAX_PARAM_FACTOR);
		case PARAM_MULTIPLE:
			return "it must be from 0 (off) to " CppAsString2(MAX_PARAM_FACTOR);
		default:
			return "it must be an amount from 0 to 10^15";
	}
}

/* Whether d is a value of the kind. */
static bool
number_in_range(RuleParamKind kind, double d)
{
	if (isnan(d) || isinf(d) || d < 0.0)
		return false;
	switch (kind)
	{
		case PARAM_COUNT:
			return d == floor(d) && d <= MAX_PARAM_COUNT;
		case PARAM_DAYS:
			return d == floor(d) && d <= BASELINE_DAYS;
		case PARAM_LENGTH:
			return d == 3.0 || d == 4.0;
		case PARAM_FRACTION:
			return d > 0.0 && d < 1.0;
		case PARAM_FACTOR:
			return d > 0.0 && d <= MAX_PARAM_FACTOR;
		case PARAM_MULTIPLE:
			return d <= MAX_PARAM_FACTOR;
		default:
			return d <= MAX_PARAM_AMOUNT;
	}
}

/* Read a numeric parameter, rejecting values of the wrong type or range. */
static void
parse_number(const char *rule, const ParamDef *def, const JsonbValue *v, RuleParams *out)
{
	double		d;
	char	   *given;

	if (v->type != jbvNumeric)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameter \"%s\" of rule \"%s\" must be a number", def->key, rule),
				 errdetail("The value given is %s.", jsonb_type_name(v))));

	given = p2pay_echo(DatumGetCString(DirectFunctionCall1(numeric_out,
														   NumericGetDatum(v->val.numeric))));
	/* beyond 10^15 is out of every kind's range (and maybe float8's) */
	if (p2pay_numeric_is_special(v->val.numeric) ||
		DatumGetBool(DirectFunctionCall2(numeric_gt, NumericGetDatum(v->val.numeric),
										 DirectFunctionCall1(int8_numeric,
															 Int64GetDatum(INT64CONST(1000000000000000))))))
		d = NAN;
	else
		d = DatumGetFloat8(DirectFunctionCall1(numeric_float8,
											   NumericGetDatum(v->val.numeric)));
	if (!number_in_range(def->kind, d))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameter \"%s\" of rule \"%s\" is out of range", def->key, rule),
				 errdetail("The value given is %s; %s.", given, number_range(def->kind))));

	if (def->kind == PARAM_COUNT || def->kind == PARAM_LENGTH || def->kind == PARAM_DAYS)
		*(int64 *) ((char *) out + def->offset) = (int64) d;
	else
		*(double *) ((char *) out + def->offset) = d;
}

/* Error context: which parameter was being read. */
static void
param_error_context(void *arg)
{
	const char *const *what = (const char *const *) arg;

	errcontext("parameter \"%s\" of rule \"%s\"", what[0], what[1]);
}

/*
 * Read an interval parameter ("24 hours") as microseconds: positive, in
 * days and time only (months vary in length), at most MAX_PARAM_DAYS days,
 * computed without overflow.
 */
static void
parse_interval(const char *rule, const ParamDef *def, const JsonbValue *v, RuleParams *out)
{
	char	   *text;
	Interval   *iv;
	int64		usec;

	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameter \"%s\" of rule \"%s\" must be an interval such as \"24 hours\"",
						def->key, rule),
				 errdetail("The value given is %s.", jsonb_type_name(v))));

	/* no interval is written longer; PostgreSQL's own error would quote it whole */
	if (v->val.string.len > P2PAY_ECHO_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameter \"%s\" of rule \"%s\" must be an interval such as \"24 hours\"",
						def->key, rule),
				 errdetail("The value given is \"%s\".",
						   p2pay_echo(pnstrdup(v->val.string.val, v->val.string.len)))));
	text = pnstrdup(v->val.string.val, v->val.string.len);
	{
		const char *what[2] = {def->key, rule};
		ErrorContextCallback cb = {error_context_stack, param_error_context, what};

		error_context_stack = &cb;
		iv = DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(text),
												   ObjectIdGetDatum(InvalidOid),
												   Int32GetDatum(-1)));
		error_context_stack = cb.previous;
	}
	text = p2pay_echo(text);
	if (iv->month != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameter \"%s\" of rule \"%s\" must not use months or years", def->key, rule),
				 errdetail("The value given is \"%s\".", text),
				 errhint("Give the length in days, such as \"30 days\".")));
	if (pg_mul_s64_overflow((int64) iv->day, USECS_PER_DAY, &usec) ||
		pg_add_s64_overflow(usec, iv->time, &usec) ||
		usec > (int64) MAX_PARAM_DAYS * USECS_PER_DAY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameter \"%s\" of rule \"%s\" is out of range", def->key, rule),
				 errdetail("The value given is \"%s\"; it must be at most %d days.", text,
						   MAX_PARAM_DAYS)));
	if (usec <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("parameter \"%s\" of rule \"%s\" must be a positive interval", def->key, rule),
				 errdetail("The value given is \"%s\".", text)));
	*(int64 *) ((char *) out + def->offset) = usec;
}

/*
 * Parse a rule's params object into out: every key the rule takes must be
 * present with a value of its type (unless partial: then out holds the
 * values of the keys left out), and no other key may be.
 */
void
p2pay_parse_params(RuleId rule, Jsonb *params, RuleParams *out, bool partial)
{
	const RuleDef *def = &rule_defs[rule];
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (!partial)
		memset(out, 0, sizeof(RuleParams));

	if (!JB_ROOT_IS_OBJECT(params) || JB_ROOT_IS_SCALAR(params))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("params of rule \"%s\" must be a JSON object", def->name)));

	/* No key the rule does not take. */
	it = JsonbIteratorInit(&params->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		bool		known = false;

		if (tok != WJB_KEY)
			continue;
		for (int i = 0; i < def->nparams; i++)
			if (strlen(def->params[i].key) == (size_t) v.val.string.len &&
				strncmp(def->params[i].key, v.val.string.val, v.val.string.len) == 0)
				known = true;
		if (!known)
		{
			StringInfoData keys;

			initStringInfo(&keys);
			for (int i = 0; i < def->nparams; i++)
				appendStringInfo(&keys, "%s%s", i ? ", " : "", def->params[i].key);
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("rule \"%s\" has no parameter \"%s\"", def->name,
							p2pay_echo(pnstrdup(v.val.string.val, v.val.string.len))),
					 def->nparams ? errdetail("Its parameters are: %s.", keys.data) :
					 errdetail("It takes no parameters.")));
		}
	}

	/* Every key it does take. */
	for (int i = 0; i < def->nparams; i++)
	{
		const ParamDef *pd = &def->params[i];
		JsonbValue *found;

		found = getKeyJsonValueFromContainer(&params->root, pd->key, strlen(pd->key), NULL);
		if (found == NULL && (partial || pd->optional))
			continue;
		if (found == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("rule \"%s\" is missing parameter \"%s\"", def->name, pd->key),
					 errhint("Change one parameter with params = params || '{\"%s\": ...}'.",
							 pd->key)));
		if (pd->kind == PARAM_INTERVAL)
			parse_interval(def->name, pd, found, out);
		else
			parse_number(def->name, pd, found, out);
	}
}

/* The decision enum's values, looked up once per backend. */
static Oid	decision_typid = InvalidOid;
static Datum decision_values[3];

/* The datum of a decision in the enum type typid (p2pay.decision). */
Datum
p2pay_decision_datum(Oid typid, int decision)
{
	Assert(decision >= DECISION_APPROVE && decision <= DECISION_DECLINE);
	if (typid != decision_typid)
	{
		for (int i = 0; i < 3; i++)
			decision_values[i] = DirectFunctionCall2(enum_in,
													 CStringGetDatum(p2pay_decision_label(i)),
													 ObjectIdGetDatum(typid));
		decision_typid = typid;
	}
	return decision_values[decision];
}

/* The names of the rules marked in fired, in catalogue order, as a text[]. */
Datum
p2pay_rule_names(const bool *fired)
{
	Datum	   *names = palloc(sizeof(Datum) * RULE_COUNT);
	int			n = 0;

	for (int i = 0; i < RULE_COUNT; i++)
		if (fired[i])
			names[n++] = CStringGetTextDatum(p2pay_rule_name(i));
	return PointerGetDatum(construct_array(names, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/* The label of a decision, as in the p2pay.decision enum. */
const char *
p2pay_decision_label(int decision)
{
	switch (decision)
	{
		case DECISION_DECLINE:
			return "decline";
		case DECISION_REVIEW:
			return "review";
		default:
			return "approve";
	}
}

/* A score rounded to 12 decimals, so that a score equal to a threshold in
 * decimal reaches it: 1 - (1 - 0.2) is 0.19999999999999996 in binary. */
static double
round_score(double score)
{
	return rint(score * 1e12) / 1e12;
}

/* The decision for a score. */
static int
decide(const P2payConfig *cfg, double score, bool blocklisted, bool allowlisted)
{
	if (blocklisted)
		return DECISION_DECLINE;
	if (allowlisted)
		return DECISION_APPROVE;
	if (score >= cfg->decline_threshold)
		return DECISION_DECLINE;
	if (score >= cfg->review_threshold)
		return DECISION_REVIEW;
	return DECISION_APPROVE;
}

/*
 * Score a payment: 1 - product(1 - weight) over the active rules that fired,
 * rounded to 12 decimal places; and the same with the shadow rules counted
 * as active.  With a clock (the caller's last reading of it), each
 * evaluated rule's time goes into rule_ns, with one reading a rule, and
 * the clock is left at the last; the caller counts them (trigger.c).  A
 * rule snoozed for the payer or payee does not fire.  A payment
 * touching a blocklisted account is declined whatever the score; one with an
 * allowlisted payer or payee is otherwise approved.
 */
void
p2pay_evaluate(const P2payConfig *cfg, const PaymentFacts *facts, Verdict *verdict,
			   instr_time *clock, int64 *rule_ns)
{
	double		keep = 1.0;
	double		shadow_keep = 1.0;

	Assert((clock == NULL) == (rule_ns == NULL));
	for (int i = 0; i < RULE_COUNT; i++)
	{
		const RuleConfig *rc = &cfg->rules[i];
		bool		fired;

		verdict->fired[i] = false;
		verdict->shadow_fired[i] = false;
		if (!RULE_EVALUATED(rc))
			continue;

		fired = rule_defs[i].fires(&rc->p, facts) && (facts->snoozed & (1u << i)) == 0;
		if (clock != NULL)
		{
			instr_time	now;
			instr_time	elapsed;

			/* one reading a rule: its time is since the previous one */
			INSTR_TIME_SET_CURRENT(now);
			elapsed = now;
			INSTR_TIME_SUBTRACT(elapsed, *clock);
			rule_ns[i] = (int64) (INSTR_TIME_GET_DOUBLE(elapsed) * 1e9);
			*clock = now;
		}

		if (!fired)
			continue;
		shadow_keep *= 1.0 - rc->weight;
		if (rc->mode == RULE_ACTIVE)
		{
			verdict->fired[i] = true;
			keep *= 1.0 - rc->weight;
		}
		else
			verdict->shadow_fired[i] = true;
	}

	verdict->score = round_score(1.0 - keep);
	verdict->shadow_score = round_score(1.0 - shadow_keep);
	verdict->decision = decide(cfg, verdict->score, verdict->fired[RULE_BLOCKLIST],
							   facts->allowlisted);
	verdict->shadow_decision = decide(cfg, verdict->shadow_score,
									  verdict->fired[RULE_BLOCKLIST] ||
									  verdict->shadow_fired[RULE_BLOCKLIST],
									  facts->allowlisted);
}
