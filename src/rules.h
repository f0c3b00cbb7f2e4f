/*
 * rules.h: the rule catalogue (rules.c) and the configuration the rules are
 * evaluated under (config.c, cached per backend).
 *
 * A rule reads facts (facts.h) and decides; it reads no table.  The
 * catalogue's order is the order of reasons on a payment.
 */
#ifndef P2PAY_RULES_H
#define P2PAY_RULES_H

#include "p2pay.h"

#include "portability/instr_time.h"
#include "utils/jsonb.h"

struct PaymentFacts;

/* The rules, in catalogue order: the order of reasons on a payment. */
typedef enum RuleId
{
	RULE_AMOUNT_LIMIT,
	RULE_PAYER_VELOCITY_COUNT,
	RULE_PAYER_VELOCITY_AMOUNT,
	RULE_PAYER_FAN_OUT,
	RULE_PAYEE_FAN_IN,
	RULE_STRUCTURING,
	RULE_NEW_PAYEE_HIGH_AMOUNT,
	RULE_NEW_ACCOUNT_HIGH_AMOUNT,
	RULE_ROUND_TRIP,
	RULE_UNREGISTERED_METHOD,
	RULE_AMOUNT_DEVIATION,
	RULE_DORMANT_REACTIVATION,
	RULE_BLOCKLIST,
	RULE_PASS_THROUGH,
	RULE_CYCLE,
	RULE_YOUNG_PAYEE_HIGH_AMOUNT,
	RULE_COUNT
} RuleId;

/*
 * Every parameter any rule takes; each rule reads the ones it names in the
 * catalogue.  Amounts are in the base currency; intervals in microseconds.
 */
typedef struct RuleParams
{
	double		max_amount;
	double		min_amount;
	double		threshold;
	double		band;
	double		factor;
	double		share;
	double		baseline_factor;	/* 0: absolute limits only */
	double		short_history_min_amount;	/* 0: no amount asked of a new account */
	int64		max_count;
	int64		max_payees;
	int64		max_payers;
	int64		min_count;
	int64		min_history;
	int64		window;
	int64		max_age;
	int64		idle;
	int64		min_payers;
	int64		max_length;
	int64		baseline_days;	/* history needed before the baseline applies */
	int64		min_known_days; /* days the payer must be known: 0, off */
} RuleParams;

/*
 * A rule's mode: active rules decide; shadow rules are evaluated and
 * recorded (shadow_reasons, shadow score and decision) but decide nothing.
 */
typedef enum RuleMode
{
	RULE_OFF,
	RULE_SHADOW,
	RULE_ACTIVE
} RuleMode;

typedef struct RuleConfig
{
	RuleMode	mode;
	double		weight;
	RuleParams	p;
} RuleConfig;

/* Whether a rule is evaluated at all (active or shadow). */
#define RULE_EVALUATED(rc) ((rc)->mode != RULE_OFF)

/* The configuration every insert is scored under (config.c). */
typedef struct P2payConfig
{
	RuleConfig	rules[RULE_COUNT];
	double		review_threshold;
	double		decline_threshold;
	int64		version;		/* the rule-set version, p2pay.ruleset */
} P2payConfig;


/*
 * The result of scoring: what the active rules decided, and what the row
 * would have had with the shadow rules active too.
 */
typedef struct Verdict
{
	bool		fired[RULE_COUNT];	/* active rules that fired */
	bool		shadow_fired[RULE_COUNT];	/* shadow rules that fired */
	double		score;
	int			decision;		/* DECISION_* */
	double		shadow_score;
	int			shadow_decision;
} Verdict;

/* rules.c: the catalogue */
extern const char *p2pay_rule_name(RuleId rule);
extern int	p2pay_rule_lookup(const char *name);
extern void p2pay_parse_params(RuleId rule, Jsonb *params, RuleParams *out,
							   bool partial);
extern void p2pay_check_weight(const char *rule, double weight);
extern bool p2pay_in_structuring_band(const RuleParams *p, double amount);
extern double p2pay_normal_limit(const RuleParams *p, int64 days, int64 day_total);
extern bool p2pay_too_small_for_history(const RuleParams *p, int64 days, double amount);
extern void p2pay_evaluate(const P2payConfig *cfg, const struct PaymentFacts *facts,
						   Verdict *verdict, instr_time *clock, int64 *rule_ns);
extern Datum p2pay_decision_datum(Oid typid, int decision);
extern Datum p2pay_rule_names(const bool *fired);

/* config.c: the cached configuration */
extern const P2payConfig *p2pay_config(Oid nspid);
extern void p2pay_config_forget(void);
extern void p2pay_config_register_callbacks(void);
extern void p2pay_config_apply_json(P2payConfig *cfg, Jsonb *rules);
extern RuleMode p2pay_rule_mode_from_name(const char *mode);
extern const char *p2pay_rule_mode_name(RuleMode mode);

#endif							/* P2PAY_RULES_H */
