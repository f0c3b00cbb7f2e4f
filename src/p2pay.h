/*
 * p2pay.h: the types and entry points shared by p2pay's C files.
 *
 * A payment flows through the trigger (trigger.c) in four steps: its input is
 * validated, the payer's and payee's accounts are locked (state.c), the
 * facts the rules need are read and the per-account state is updated in one
 * statement (state.c), and the rules (rules.c) turn the facts into a score
 * and a decision under the cached configuration (config.c).
 */
#ifndef P2PAY_H
#define P2PAY_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/uuid.h"

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
	int64		max_count;
	int64		max_payees;
	int64		max_payers;
	int64		min_count;
	int64		min_history;
	int64		window;
	int64		max_age;
	int64		idle;
} RuleParams;

typedef struct RuleConfig
{
	bool		enabled;
	double		weight;
	RuleParams	p;
} RuleConfig;

/* The configuration every insert is scored under (config.c). */
typedef struct P2payConfig
{
	RuleConfig	rules[RULE_COUNT];
	double		review_threshold;
	double		decline_threshold;
} P2payConfig;

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
 * stop one past the limit the rule compares them with.
 */
typedef struct PaymentFacts
{
	Numeric		amount_base;	/* amount * rate_to_base, in the caller's context */
	double		amount;			/* the same, for comparisons */
	TimestampTz created_at;
	TimestampTz payer_created_at;
	bool		method_registered;
	bool		payer_blocked;
	bool		payee_blocked;
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
} PaymentFacts;

/* The result of scoring. */
typedef struct Verdict
{
	bool		fired[RULE_COUNT];
	int			nfired;
	double		score;
	int			decision;		/* DECISION_* */
} Verdict;

#define DECISION_APPROVE	0
#define DECISION_REVIEW		1
#define DECISION_DECLINE	2

/* p2pay.c: settings */
extern int	p2pay_future_tolerance;

/* rules.c: the catalogue */
extern const char *p2pay_rule_name(RuleId rule);
extern int	p2pay_rule_lookup(const char *name);
extern void p2pay_parse_params(RuleId rule, Jsonb *params, RuleParams *out);
extern void p2pay_check_weight(const char *rule, double weight);
extern bool p2pay_in_structuring_band(const RuleParams *p, double amount);
extern void p2pay_evaluate(const P2payConfig *cfg, const PaymentFacts *facts,
						   Verdict *verdict);
extern const char *p2pay_decision_label(int decision);

/* config.c: the cached configuration */
extern const P2payConfig *p2pay_config(Oid nspid);
extern void p2pay_config_register_callbacks(void);

/* state.c: per-account state and locking */
extern void p2pay_lookup_references(const PaymentInput *in, PaymentFacts *facts,
									MemoryContext result_cxt);
extern void p2pay_lock_accounts(const pg_uuid_t *a, const pg_uuid_t *b);
extern void p2pay_read_and_record(const P2payConfig *cfg, const PaymentInput *in,
								  PaymentFacts *facts);
extern void p2pay_forget_payment(const pg_uuid_t *payer, const pg_uuid_t *payee,
								 TimestampTz created_at, Numeric amount_base);

#endif							/* P2PAY_H */
