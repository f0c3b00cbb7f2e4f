/*
 * p2pay.h: the types and entry points shared by p2pay's C files.
 *
 * A payment flows through the trigger (trigger.c) in four steps: its input is
 * validated, the payer's and payee's accounts are locked (state.c), the
 * facts the rules need are read and the per-account state is updated
 * through the state tables' indexes (facts.c), and the rules (rules.c) turn the facts into a score
 * and a decision under the cached configuration (config.c).
 */
#ifndef P2PAY_H
#define P2PAY_H

#include "postgres.h"

#include "access/attnum.h"
#include "access/xact.h"
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

/* How many days back an account's normal is measured. */
#define BASELINE_DAYS 30

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

#define DECISION_APPROVE	0
#define DECISION_REVIEW		1
#define DECISION_DECLINE	2

/* p2pay.c: settings, and how messages quote input */
extern int	p2pay_future_tolerance;
extern int	p2pay_multi_payment_lock_timeout;
extern int	p2pay_delete_mode;

/*
 * What deleting a payment means (p2pay.delete_mode): a reversal, which
 * takes it out of the per-account state and is a deleted event on the
 * stream, or archiving, which keeps it in the state and is no event.
 */
#define DELETE_MODE_REVERSE 0
#define DELETE_MODE_ARCHIVE 1

/*
 * The transactional logical decoding messages the delete triggers write
 * (trigger.c) and the stream reads (output.c): the payment deletes that
 * follow an archive mark in its transaction, up to a reverse mark, are
 * archived.
 */
#define P2PAY_MESSAGE_PREFIX "p2pay"
#define P2PAY_MESSAGE_ARCHIVE "archive"
#define P2PAY_MESSAGE_REVERSE "reverse"

#define P2PAY_ECHO_MAX 64
extern char *p2pay_echo(const char *value);
extern bool p2pay_xact_ends(XactEvent event);

/*
 * catalog.c: p2pay's own objects, the layout the C relies on, and working
 * as their owner.
 */
typedef struct ColumnSpec
{
	const char *name;
	Oid			typid;			/* InvalidOid: p2pay's own type typname */
	const char *typname;
	bool		notnull;		/* read without a null test: must be NOT NULL */
} ColumnSpec;

/* A column of a built-in type; the same, NOT NULL; one of p2pay's own type */
#define COLUMN(name, typid) {name, typid, NULL, false}
#define COLUMN_NOT_NULL(name, typid) {name, typid, NULL, true}
#define OWN_TYPE_COLUMN(name, typname) {name, InvalidOid, typname, false}

typedef struct OwnerContext
{
	Oid			userid;
	int			sec_context;
	int			nestlevel;
} OwnerContext;

struct TriggerData;
struct RelationData;

extern Oid	p2pay_schema(void);
extern Oid	p2pay_schema_if_installed(void);
extern Oid	p2pay_relid(const char *name);
extern Oid	p2pay_typid(const char *name);
extern int	p2pay_errpaymentcol(const char *column);
extern int	p2pay_errpaymentref(const char *column, const char *reftable);
extern void p2pay_require_trigger_table(struct TriggerData *td, const char *fn,
										const char *const *tables);
extern AttrNumber p2pay_column(struct RelationData *rel, const ColumnSpec *spec);
extern void p2pay_check_columns(const char *table, const ColumnSpec *columns);
extern void p2pay_require_heap(struct RelationData *rel);
extern const char *p2pay_index_problem(struct RelationData *index, struct RelationData *heap,
									   const AttrNumber *attnums, int nkeys, bool unique);
extern void p2pay_check_index(struct RelationData *index, struct RelationData *heap,
							  const AttrNumber *attnums, int nkeys, bool unique);
extern void p2pay_begin_as_owner(Oid owner, OwnerContext *saved);

/*
 * Operators as p2pay's SQL text writes them: resolved in pg_catalog
 * whatever search_path says (see catalog.c).
 */
#define SQL_EQ " OPERATOR(pg_catalog.=) "
#define SQL_NE " OPERATOR(pg_catalog.<>) "
#define SQL_LT " OPERATOR(pg_catalog.<) "
#define SQL_LE " OPERATOR(pg_catalog.<=) "
#define SQL_GT " OPERATOR(pg_catalog.>) "
#define SQL_GE " OPERATOR(pg_catalog.>=) "
#define SQL_PLUS " OPERATOR(pg_catalog.+) "
#define SQL_MINUS " OPERATOR(pg_catalog.-) "
extern void p2pay_end_as_owner(const OwnerContext *saved);

/* rules.c: the catalogue */
extern const char *p2pay_rule_name(RuleId rule);
extern int	p2pay_rule_lookup(const char *name);
extern void p2pay_parse_params(RuleId rule, Jsonb *params, RuleParams *out,
							   bool partial);
extern void p2pay_check_weight(const char *rule, double weight);
extern bool p2pay_in_structuring_band(const RuleParams *p, double amount);
extern double p2pay_normal_limit(const RuleParams *p, int64 days, int64 day_total);
extern void p2pay_evaluate(const P2payConfig *cfg, const PaymentFacts *facts,
						   Verdict *verdict, bool count);
extern const char *p2pay_decision_label(int decision);
extern Datum p2pay_decision_datum(Oid typid, int decision);
extern Datum p2pay_rule_names(const bool *fired);

/* config.c: the cached configuration */
extern const P2payConfig *p2pay_config(Oid nspid);
extern void p2pay_config_forget(void);
extern void p2pay_config_register_callbacks(void);
extern void p2pay_config_apply_json(P2payConfig *cfg, Jsonb *rules);
extern RuleMode p2pay_rule_mode_from_name(const char *mode);
extern const char *p2pay_rule_mode_name(RuleMode mode);

/* stats.c: per-rule statistics in shared memory; slot STATS_FACTS counts
 * the reading of the facts that all rules share */
#define STATS_FACTS RULE_COUNT
extern int	p2pay_stats_databases;
extern void p2pay_stats_count(int slot, bool fired, int64 nanoseconds);
extern void p2pay_stats_count_decision(int decision);
extern bool p2pay_stats_enabled(void);
extern void p2pay_stats_init(void);

/* state.c: per-account state and locking */
extern void p2pay_lock_register_callbacks(void);
extern void p2pay_lock_accounts(const pg_uuid_t *a, const pg_uuid_t *b);
extern void p2pay_lock_payment(const P2payConfig *cfg, const PaymentInput *in,
							   const PaymentFacts *facts);
extern void p2pay_read_money_flow(const P2payConfig *cfg, const PaymentInput *in,
								  PaymentFacts *facts, bool record, bool sum, bool loops,
								  bool cycle_on);

/* facts.c: the references, the facts from the per-account state, and recording a payment */
extern void p2pay_lookup_references(Oid nspid, const PaymentInput *in, PaymentFacts *facts,
									MemoryContext result_cxt, int64 *version);
extern void p2pay_read_facts(const P2payConfig *cfg, Oid nspid, const PaymentInput *in,
							 PaymentFacts *facts, bool record);
extern TimestampTz p2pay_hour_of(TimestampTz ts);
extern TimestampTz p2pay_day_of(TimestampTz ts);
extern void p2pay_forget_payment(const pg_uuid_t *payer, const pg_uuid_t *payee,
								 TimestampTz created_at, Numeric amount_base);

/* trigger.c: the mode this transaction deletes payments in */
extern int	p2pay_delete_mode_fixed(void);
extern void p2pay_delete_mode_register_callbacks(void);

#endif							/* P2PAY_H */
