/*
 * trigger.c: the triggers on p2pay.payments: scoring each insert, keeping a
 * scored payment's facts fixed, and taking a deleted payment out of the
 * per-account state, unless it is archived.
 *
 * Every inserted row goes through four steps in the inserting transaction:
 * validate the input (nothing is read or locked for a bad row) and look its
 * references up (refs.c), lock the payer's and payee's accounts (locks.c),
 * read the facts and record the payment in the per-account state
 * (store.c, through facts.c's assembly), evaluate the rules (rules.c),
 * then write score, decision, reasons and amount_base onto the row.
 * Whatever the client put in those columns is overwritten.  The rule
 * statistics (stats.c) are counted here, with one clock reading for the
 * facts and one for each rule evaluated.
 *
 * The SPI work runs as the owner of payments (as foreign-key checks do), so
 * an application role needs INSERT on payments and nothing else.  The
 * returned tuple is built in the executor's per-row context, outside SPI.
 *
 * Deletes: p2pay.delete_mode says what a delete means.  A reversal takes
 * the payment out of the state and is a deleted event on the stream; an
 * archived payment stays in the state, as history the rules still count,
 * and the stream passes over its delete.  The stream can't read the
 * deleting session's settings, so the BEFORE DELETE trigger marks the
 * transaction in the WAL before the delete is logged: an archive mark
 * once, before its first archived delete, and a reverse mark before every
 * reversal, so that no mark a client wrote itself (pg_logical_emit_message
 * is anyone's) can hide a reversal from the stream.  A transaction
 * deletes payments in one mode, fixed by its first delete: a mark, and the
 * deletes after it, go with the subtransaction that wrote them if it rolls
 * back, and so does the fixed mode (transaction callbacks follow it).
 */
#include "postgres.h"

#include <math.h>

#include "p2pay.h"
#include "catalog.h"
#include "compat.h"
#include "conflict.h"
#include "facts.h"
#include "locks.h"
#include "refs.h"
#include "rules.h"
#include "stats.h"
#include "store.h"
#include "trigger.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "funcapi.h"
#include "replication/message.h"
#include "portability/instr_time.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgrprotos.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

/* How far in the future a payment's created_at may lie, in seconds. */
int			p2pay_future_tolerance = 300;

/*
 * What a delete of a payment does (DELETE_MODE_*): reverse it, or archive
 * it (trigger.c).  A transaction deletes payments in one mode, the one of
 * its first delete.
 */
int			p2pay_delete_mode = DELETE_MODE_REVERSE;

/* Columns the trigger reads or writes, by name. */
typedef enum PaymentColumn
{
	COL_PAYER_ID,
	COL_PAYEE_ID,
	COL_AMOUNT,
	COL_CURRENCY,
	COL_PAYMENT_METHOD_ID,
	COL_CREATED_AT,
	COL_RISK_SCORE,
	COL_DECISION,
	COL_IS_APPROVED,
	COL_REASONS,
	COL_AMOUNT_BASE,
	COL_TRANSACTION_ID,
	COL_RULESET_VERSION,
	COL_SHADOW_REASONS,
	COL_SHADOW_RISK_SCORE,
	COL_SHADOW_DECISION,
	NUM_COLUMNS
} PaymentColumn;

/*
 * The columns the triggers read or write, with the types they are read and
 * written as; checked once per relcache load of payments (see
 * payment_layout).  The input columns' nulls are tested as each row is
 * read.
 */
static const ColumnSpec payment_columns[NUM_COLUMNS] = {
	COLUMN("payer_id", UUIDOID),
	COLUMN("payee_id", UUIDOID),
	COLUMN("amount", NUMERICOID),
	COLUMN("currency", BPCHAROID),
	COLUMN("payment_method_id", UUIDOID),
	COLUMN("created_at", TIMESTAMPTZOID),
	COLUMN("risk_score", FLOAT8OID),
	OWN_TYPE_COLUMN("decision", "decision"),
	COLUMN("is_approved", BOOLOID),
	COLUMN("reasons", TEXTARRAYOID),
	COLUMN("amount_base", NUMERICOID),
	COLUMN("transaction_id", UUIDOID),
	COLUMN("ruleset_version", INT8OID),
	COLUMN("shadow_reasons", TEXTARRAYOID),
	COLUMN("shadow_risk_score", FLOAT8OID),
	OWN_TYPE_COLUMN("shadow_decision", "decision"),
};

#define column_names(col) (payment_columns[col].name)

/* The trigger functions of payments run on p2pay.payments alone. */
static const char *const payments_only[] = {"payments", NULL};

/*
 * What the triggers know of each table they fire on, p2pay.payments or one
 * of its partitions: where its columns are (their types checked, the
 * table checked to be p2pay's), and the sequence of the identity of
 * p2pay.payments; forgotten after any change to the table or to
 * p2pay.payments.
 */
typedef struct PaymentLayout
{
	Oid			relid;			/* hash key */
	bool		valid;
	int			attnums[NUM_COLUMNS];
	AttrNumber	id_att;			/* this table's id column, or 0 */
	Oid			id_seq;			/* the identity sequence of p2pay.payments */
	bool		is_partition;	/* a partition of p2pay.payments */
} PaymentLayout;

static HTAB *layouts = NULL;
static Oid	layouts_root = InvalidOid;	/* p2pay.payments, for the entries */

/* The table batch_payments() last found to be p2pay.payments, or invalid. */
static Oid	batch_table = InvalidOid;

static void
layout_invalidate(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS seq;
	PaymentLayout *entry;

	batch_table = InvalidOid;
	if (layouts == NULL)
		return;
	if (OidIsValid(relid) && relid != layouts_root)
	{
		entry = hash_search(layouts, &relid, HASH_FIND, NULL);
		if (entry != NULL)
			entry->valid = false;
		return;
	}
	hash_seq_init(&seq, layouts);
	while ((entry = hash_seq_search(&seq)) != NULL)
		entry->valid = false;
}

/* Register layout_invalidate once. */
static void
register_layout_invalidate(void)
{
	static bool registered = false;

	if (!registered)
		CacheRegisterRelcacheCallback(layout_invalidate, (Datum) 0);
	registered = true;
}

/* The kind of identity of a column (pg_attribute.attidentity), or '\0'. */
static char
identity_of(Oid relid, AttrNumber attnum)
{
	HeapTuple	tup = SearchSysCache2(ATTNUM, ObjectIdGetDatum(relid), Int16GetDatum(attnum));
	char		identity = '\0';

	if (HeapTupleIsValid(tup))
	{
		identity = ((Form_pg_attribute) GETSTRUCT(tup))->attidentity;
		ReleaseSysCache(tup);
	}
	return identity;
}

/*
 * Refuse to run trigger function fn but as the row trigger it is (before
 * or after, on event: TRIGGER_EVENT_INSERT, ...), on p2pay.payments or a
 * partition of it, and return what is known of the table.
 */
static const PaymentLayout *
payment_layout(FunctionCallInfo fcinfo, const char *fn, bool before, uint32 event)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	Oid			relid;
	TupleDesc	desc;
	PaymentLayout *entry;
	bool		found;
	Oid			root;
	AttrNumber	root_id;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		(before ? !TRIGGER_FIRED_BEFORE(td->tg_event) : !TRIGGER_FIRED_AFTER(td->tg_event)) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		(td->tg_event & TRIGGER_EVENT_OPMASK) != event)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("p2pay.%s() must be fired %s %s FOR EACH ROW", fn,
						before ? "BEFORE" : "AFTER",
						event == TRIGGER_EVENT_INSERT ? "INSERT" :
						event == TRIGGER_EVENT_UPDATE ? "UPDATE" : "DELETE")));
	rel = td->tg_relation;
	relid = RelationGetRelid(rel);
	desc = RelationGetDescr(rel);

	if (layouts == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(PaymentLayout);
		ctl.hcxt = TopMemoryContext;
		layouts = hash_create("p2pay payment layouts", 16, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		register_layout_invalidate();
	}
	entry = hash_search(layouts, &relid, HASH_ENTER, &found);
	if (found && entry->valid)
		return entry;

	entry->valid = false;
	p2pay_require_trigger_table(td, fn, payments_only);
	for (int i = 0; i < NUM_COLUMNS; i++)
		entry->attnums[i] = p2pay_column(rel, &payment_columns[i]);

	/*
	 * The identity of p2pay.payments (a partition has none of its own): the
	 * sequence, and this table's id column.
	 */
	root = p2pay_relid("payments");
	layouts_root = root;
	entry->is_partition = relid != root;
	entry->id_att = InvalidAttrNumber;
	entry->id_seq = InvalidOid;
	root_id = get_attnum(root, "id");
	if (root_id != InvalidAttrNumber && identity_of(root, root_id) != '\0')
	{
		entry->id_seq = p2pay_identity_sequence(root, root_id, true);
		for (int i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (!att->attisdropped && att->atttypid == INT8OID &&
				strcmp(NameStr(att->attname), "id") == 0)
				entry->id_att = att->attnum;
		}
	}
	entry->valid = true;
	return entry;
}

/*
 * Whether trigger t fires now, as the executor decides it: by its enabled
 * state against session_replication_role.  Its WHEN condition, if any, is
 * taken to hold.
 */
static bool
trigger_fires_now(const Trigger *t)
{
	if (t->tgenabled == TRIGGER_DISABLED)
		return false;
	if (SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA)
		return t->tgenabled != TRIGGER_FIRES_ON_ORIGIN;
	return t->tgenabled != TRIGGER_FIRES_ON_REPLICA;
}

/*
 * Refuse to score a row that another BEFORE INSERT row trigger would see
 * after the scoring trigger: it could change the payment, or skip it, once
 * p2pay has counted it in the account state.  BEFORE triggers fire in the
 * order of their names (the relcache keeps them so).
 */
static void
refuse_later_triggers(TriggerData *td)
{
	TriggerDesc *trigdesc = td->tg_relation->trigdesc;
	bool		after_self = false;

	for (int i = 0; i < trigdesc->numtriggers; i++)
	{
		Trigger    *t = &trigdesc->triggers[i];

		if (t->tgoid == td->tg_trigger->tgoid)
			after_self = true;
		else if (after_self && TRIGGER_FOR_ROW(t->tgtype) && TRIGGER_FOR_BEFORE(t->tgtype) &&
				 TRIGGER_FOR_INSERT(t->tgtype) && trigger_fires_now(t))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("trigger \"%s\" fires after \"%s\" on inserts into p2pay.payments",
							t->tgname, td->tg_trigger->tgname),
					 errdetail("A BEFORE INSERT trigger that fires after p2pay's scoring trigger could change or skip a payment that p2pay has already scored and counted in the account state."),
					 errhint("BEFORE triggers fire in the order of their names: rename it so that its name sorts before \"%s\", or make it an AFTER trigger.",
							 td->tg_trigger->tgname),
					 errtable(td->tg_relation)));
	}
}

/* The value of a NOT NULL input column, or a not-null error naming it. */
static Datum
required(HeapTuple tup, TupleDesc desc, const int *attnums, PaymentColumn col)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, attnums[col], desc, &isnull);

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("column %s of a payment must not be null", column_names(col)),
				 p2pay_errpaymentcol(column_names(col))));
	return d;
}

/* An amount as a message quotes it. */
static char *
amount_text(Numeric amount)
{
	return p2pay_echo(DatumGetCString(DirectFunctionCall1(numeric_out,
														  NumericGetDatum(amount))));
}

/* Reject amounts that are not a positive sum of money. */
static void
validate_amount(Numeric amount)
{
	Datum		zero = DirectFunctionCall1(int8_numeric, Int64GetDatum(0));
	Datum		max_amount = DirectFunctionCall1(int8_numeric,
												 Int64GetDatum(INT64CONST(1000000000000000)));
	Numeric		rounded;

	if (p2pay_numeric_is_special(amount))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("column amount must be a finite number"),
				 errdetail("The amount given was %s.", amount_text(amount)),
				 p2pay_errpaymentcol("amount")));

	if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(amount), zero)) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("column amount must be greater than zero"),
				 errdetail("The amount given was %s.", amount_text(amount)),
				 p2pay_errpaymentcol("amount")));

	if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(amount), max_amount)) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("column amount must not exceed 10^15"),
				 errdetail("The amount given was %s.", amount_text(amount)),
				 p2pay_errpaymentcol("amount")));

	rounded = DatumGetNumeric(DirectFunctionCall2(numeric_round, NumericGetDatum(amount),
												  Int32GetDatum(4)));
	if (!DatumGetBool(DirectFunctionCall2(numeric_eq, NumericGetDatum(amount),
										  NumericGetDatum(rounded))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("column amount must have at most 4 decimal places"),
				 errdetail("The amount given was %s.", amount_text(amount)),
				 p2pay_errpaymentcol("amount")));
}

/* Reject payment times that are not finite or lie too far in the future. */
static void
validate_created_at(TimestampTz t)
{
	TimestampTz limit;

	if (TIMESTAMP_NOT_FINITE(t))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("column created_at must be a finite time"),
				 p2pay_errpaymentcol("created_at")));

	limit = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										(int64) p2pay_future_tolerance * 1000);
	if (t > limit)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("column created_at lies more than %d seconds in the future",
						p2pay_future_tolerance),
				 errdetail("The time given was %s.", timestamptz_to_str(t)),
				 errhint("The tolerance is the setting p2pay.future_tolerance."),
				 p2pay_errpaymentcol("created_at")));
}

/* Check a payment's values, wherever they came from. */
static void
validate_payment(const PaymentInput *in)
{
	validate_amount(in->amount);
	if (memcmp(in->payer->data, in->payee->data, UUID_LEN) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("columns payer_id and payee_id must differ"),
				 errdetail("A user can't pay themselves."),
				 p2pay_errpaymentcol("payee_id")));
	validate_created_at(in->created_at);
}

/* Read and check the input columns of a new payment. */
static void
validate_input(HeapTuple tup, TupleDesc desc, const int *attnums, PaymentInput *in)
{
	in->payer = DatumGetUUIDP(required(tup, desc, attnums, COL_PAYER_ID));
	in->payee = DatumGetUUIDP(required(tup, desc, attnums, COL_PAYEE_ID));
	in->amount = DatumGetNumeric(required(tup, desc, attnums, COL_AMOUNT));
	in->currency = required(tup, desc, attnums, COL_CURRENCY);
	in->method = DatumGetUUIDP(required(tup, desc, attnums, COL_PAYMENT_METHOD_ID));
	in->created_at = DatumGetTimestampTz(required(tup, desc, attnums, COL_CREATED_AT));

	validate_payment(in);

	/*
	 * Only the trigger writes amount_base: a row that arrives with it is a
	 * scored row coming back from a dump.  Scoring it again would change its
	 * verdict and count it twice in the restored state, so refuse it and say
	 * how to restore.
	 */
	if (!heap_attisnull(tup, attnums[COL_AMOUNT_BASE], desc))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("column amount_base of a new payment must be left to p2pay"),
				 errdetail("A payment that arrives with amount_base set was scored already, as the rows of a dump were."),
				 errhint("Restore a dump of p2pay with session_replication_role = replica, which keeps each payment's verdict; new payments leave amount_base out."),
				 p2pay_errpaymentcol("amount_base")));
}

/* Connect to SPI and work as the owner of payments (see catalog.c). */
static void
begin_as_owner(Oid owner, OwnerContext *saved)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "p2pay: SPI_connect failed");
	p2pay_begin_as_owner(owner, saved);
}

/* Return to the caller's identity and settings, and disconnect from SPI. */
static void
end_as_owner(const OwnerContext *saved)
{
	p2pay_end_as_owner(saved);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "p2pay: SPI_finish failed");
}

/* The row as inserted: the client's input with the verdict written on it. */
static HeapTuple
write_verdict(HeapTuple tup, TupleDesc desc, const int *attnums,
			  const PaymentFacts *facts, const Verdict *verdict, int64 version)
{
	Oid			decision_type = TupleDescAttr(desc, attnums[COL_DECISION] - 1)->atttypid;
	int			cols[9];
	Datum		values[9];
	bool		nulls[9] = {false};

	cols[0] = attnums[COL_RISK_SCORE];
	values[0] = Float8GetDatum(verdict->score);
	cols[1] = attnums[COL_DECISION];
	values[1] = p2pay_decision_datum(decision_type, verdict->decision);
	cols[2] = attnums[COL_IS_APPROVED];
	values[2] = BoolGetDatum(verdict->decision == DECISION_APPROVE);
	cols[3] = attnums[COL_REASONS];
	values[3] = p2pay_rule_names(verdict->fired);
	cols[4] = attnums[COL_AMOUNT_BASE];
	values[4] = NumericGetDatum(facts->amount_base);
	cols[5] = attnums[COL_RULESET_VERSION];
	values[5] = Int64GetDatum(version);
	cols[6] = attnums[COL_SHADOW_REASONS];
	values[6] = p2pay_rule_names(verdict->shadow_fired);
	cols[7] = attnums[COL_SHADOW_RISK_SCORE];
	values[7] = Float8GetDatum(verdict->shadow_score);
	cols[8] = attnums[COL_SHADOW_DECISION];
	values[8] = p2pay_decision_datum(decision_type, verdict->shadow_decision);

	return heap_modify_tuple_by_cols(tup, desc, 9, cols, values, nulls);
}

/*
 * The payment's id must be one the identity sequence handed out: a client
 * that chooses its own (INSERT ... OVERRIDING SYSTEM VALUE, or COPY) could
 * take the id the sequence gives next, and every later insert would fail
 * on the primary key.  An id at or below the sequence's last value can't
 * collide with one to come.  A row inserted straight into a partition of
 * p2pay.payments, which has no identity of its own, gets its id from
 * p2pay.payments' sequence here.  Run as the owner, who may use the
 * sequence; returns the id to write, if one is to be written.
 */
static bool
check_identity(const PaymentLayout *layout, HeapTuple tup, TupleDesc desc, Datum *assign)
{
	LOCAL_FCINFO(fcinfo, 1);
	bool		isnull;
	Datum		id;
	Datum		last;

	if (layout->id_att == InvalidAttrNumber || !OidIsValid(layout->id_seq))
		return false;
	id = heap_getattr(tup, layout->id_att, desc, &isnull);
	if (isnull)
	{
		if (!layout->is_partition)
			return false;		/* the primary key refuses it */
		*assign = DirectFunctionCall1(nextval_oid, ObjectIdGetDatum(layout->id_seq));
		return true;
	}

	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = ObjectIdGetDatum(layout->id_seq);
	fcinfo->args[0].isnull = false;
	last = pg_sequence_last_value(fcinfo);
	if (fcinfo->isnull || DatumGetInt64(id) > DatumGetInt64(last))
		ereport(ERROR,
				(errcode(ERRCODE_GENERATED_ALWAYS),
				 errmsg("column id of p2pay.payments can only be assigned by its identity sequence"),
				 errdetail("The id given was " INT64_FORMAT ", which the sequence has not handed out.",
						   DatumGetInt64(id)),
				 errhint("Leave id out of the INSERT (and don't use OVERRIDING SYSTEM VALUE)."),
				 p2pay_errpaymentcol("id")));
	return false;
}

/*
 * A row that INSERT ... ON CONFLICT may pass over (conflict.c): looked for
 * among the payments stored before it is scored; one that conflicts is
 * neither scored nor counted.
 */
typedef struct Passover
{
	Relation	rel;
	HeapTuple	tup;
	bool		conflicts;
	char	   *index_name;		/* the unique index it conflicts on */
} Passover;

/*
 * Score a validated payment, as the owner of payments (the caller switched):
 * load the configuration, look the references up, and, when recording (an
 * insert, by the role inserter), lock the accounts and record the payment
 * in the per-account state; then run the rules.  inserter is InvalidOid
 * when the payment is only scored (score()).  amount_base is computed into
 * result_cxt.  Returns the rule-set version the verdict was reached under.
 */
static int64
score(Oid nspid, const PaymentInput *in, Oid inserter, MemoryContext result_cxt,
	  PaymentFacts *facts, Verdict *verdict, Passover *passover)
{
	bool		record = OidIsValid(inserter);
	const P2payConfig *cfg;
	int64		version = 0;
	instr_time	start;
	instr_time	clock;
	int64		rule_ns[RULE_COUNT];
	bool		count = record && p2pay_stats_enabled();

	if (count)
		INSTR_TIME_SET_CURRENT(start);

	/*
	 * The lists are read with the lookup's snapshot; the rules come from the
	 * cache.  Should a change have committed in between, load the rules
	 * again, so that both belong to the version recorded.
	 */
	cfg = p2pay_config(nspid);
	for (int attempt = 0;; attempt++)
	{
		p2pay_lookup_references(nspid, in, facts, result_cxt, &version);
		if (version == cfg->version || attempt == 3)
			break;
		p2pay_config_forget();
		cfg = p2pay_config(nspid);
	}

	if (record)
		p2pay_lock_payment(nspid, cfg, in, facts, inserter);

	/*
	 * With the accounts locked, a payment of the same key and accounts is
	 * stored or gone for good.
	 */
	if (passover != NULL &&
		p2pay_payment_conflicts(passover->rel, passover->tup, &passover->index_name))
	{
		passover->conflicts = true;
		return cfg->version;
	}
	p2pay_read_facts(cfg, nspid, in, facts, record);

	if (!count)
	{
		p2pay_evaluate(cfg, facts, verdict, NULL, NULL);
		return cfg->version;
	}

	/*
	 * The statistics of an insert: the facts' time, then each rule's, one
	 * clock reading each.
	 */
	INSTR_TIME_SET_CURRENT(clock);
	{
		instr_time	elapsed = clock;

		INSTR_TIME_SUBTRACT(elapsed, start);
		p2pay_stats_count(STATS_FACTS, false, (int64) (INSTR_TIME_GET_DOUBLE(elapsed) * 1e9));
	}
	p2pay_evaluate(cfg, facts, verdict, &clock, rule_ns);
	for (int i = 0; i < RULE_COUNT; i++)
		if (RULE_EVALUATED(&cfg->rules[i]))
			p2pay_stats_count(i, verdict->fired[i] || verdict->shadow_fired[i], rule_ns[i]);
	return cfg->version;
}

/*
 * BEFORE INSERT ROW trigger on p2pay.payments: score the payment and write
 * the verdict onto it.
 */
PG_FUNCTION_INFO_V1(p2pay_score_payment);
Datum
p2pay_score_payment(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	HeapTuple	tup;
	const PaymentLayout *layout;
	const int  *attnums;
	PaymentInput in;
	PaymentFacts facts;
	Verdict		verdict;
	int64		version;
	OwnerContext saved;
	MemoryContext row_cxt;
	Datum		id = (Datum) 0;
	bool		assign_id;
	ConflictWatch watch = p2pay_conflict_watch();
	Passover	passover = {0};
	bool		noted = false;

	layout = payment_layout(fcinfo, "score_payment", true, TRIGGER_EVENT_INSERT);
	rel = td->tg_relation;
	desc = RelationGetDescr(rel);
	tup = td->tg_trigtuple;
	attnums = layout->attnums;

	/* 1. validate */
	refuse_later_triggers(td);
	memset(&facts, 0, sizeof(facts));
	validate_input(tup, desc, attnums, &in);

	/* 2. lock, 3. evaluate; amount_base outlives SPI, in the row's context */
	row_cxt = CurrentMemoryContext;
	begin_as_owner(rel->rd_rel->relowner, &saved);
	assign_id = check_identity(layout, tup, desc, &id);
	if (watch != CONFLICT_NONE)
	{
		bool		isnull = true;

		if (assign_id)
			isnull = false;
		else if (layout->id_att != InvalidAttrNumber)
			id = heap_getattr(tup, layout->id_att, desc, &isnull);
		noted = !isnull && p2pay_statement_framed();
		if (!noted && watch == CONFLICT_KNOWN)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("p2pay can't score payments inserted by INSERT ... ON CONFLICT here"),
					 errdetail("A payment that ON CONFLICT passes over must not be counted; the check that none was is made by the statement triggers payments_batch_begin and payments_batch_end of p2pay.payments, which don't fire for this insert."),
					 errhint("Insert into p2pay.payments itself, with both triggers enabled.")));
		passover.rel = rel;
		passover.tup = tup;
	}
	version = score(p2pay_schema(), &in, saved.userid, row_cxt, &facts, &verdict,
					watch != CONFLICT_NONE ? &passover : NULL);
	if (noted)
		p2pay_statement_note(DatumGetInt64(id), !passover.conflicts);
	else if (passover.conflicts)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("duplicate key value violates unique constraint \"%s\"", passover.index_name),
				 errdetail("A payment with the same key is stored, or being stored."),
				 errtableconstraint(rel, passover.index_name)));
	end_as_owner(&saved);

	/* 4. write; a row left to ON CONFLICT, as it came */
	if (!passover.conflicts)
	{
		tup = write_verdict(tup, desc, attnums, &facts, &verdict, version);
		p2pay_stats_count_decision(verdict.decision);
	}
	if (assign_id)
	{
		bool		null = false;
		int			col = layout->id_att;

		tup = heap_modify_tuple_by_cols(tup, desc, 1, &col, &id, &null);
	}
	return PointerGetDatum(tup);
}

/*
 * Whether the trigger of the same function at the other end of the
 * statement (AFTER for BEFORE, BEFORE for AFTER) is on the table and fires
 * when this one does: the rows a statement keeps are written by its AFTER
 * trigger (store.c, Statements), so a frame is opened and closed only with
 * both.
 */
static bool
statement_pair_fires(TriggerData *td)
{
	TriggerDesc *trigdesc = td->tg_relation->trigdesc;
	bool		before = TRIGGER_FIRED_BEFORE(td->tg_event);

	for (int i = 0; trigdesc != NULL && i < trigdesc->numtriggers; i++)
	{
		Trigger    *t = &trigdesc->triggers[i];

		if (t->tgfoid == td->tg_trigger->tgfoid &&
			t->tgenabled == td->tg_trigger->tgenabled &&
			TRIGGER_FOR_INSERT(t->tgtype) && !TRIGGER_FOR_ROW(t->tgtype) &&
			(before ? TRIGGER_FOR_AFTER(t->tgtype) : TRIGGER_FOR_BEFORE(t->tgtype)))
			return true;
	}
	return false;
}

/*
 * BEFORE and AFTER INSERT statement trigger on p2pay.payments: a statement
 * inserting payments begins, or ends and writes the account state its
 * payments kept in memory.
 */
PG_FUNCTION_INFO_V1(p2pay_batch_payments);
Datum
p2pay_batch_payments(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	OwnerContext saved;

	if (!CALLED_AS_TRIGGER(fcinfo) || TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		TRIGGER_FIRED_INSTEAD(td->tg_event) || !TRIGGER_FIRED_BY_INSERT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("p2pay.batch_payments() must be fired BEFORE or AFTER INSERT FOR EACH STATEMENT")));
	/* it reads no column: the table is checked, not its layout */
	if (RelationGetRelid(td->tg_relation) != batch_table)
	{
		register_layout_invalidate();
		p2pay_require_trigger_table(td, "batch_payments", payments_only);
		batch_table = RelationGetRelid(td->tg_relation);
	}
	if (!statement_pair_fires(td))
	{
		/* rows are kept only between the two: write any left */
		if (TRIGGER_FIRED_AFTER(td->tg_event))
		{
			begin_as_owner(td->tg_relation->rd_rel->relowner, &saved);
			p2pay_write_pending();
			end_as_owner(&saved);
		}
		return PointerGetDatum(NULL);
	}
	if (TRIGGER_FIRED_BEFORE(td->tg_event))
	{
		p2pay_statement_begins();
		return PointerGetDatum(NULL);
	}
	begin_as_owner(td->tg_relation->rd_rel->relowner, &saved);
	p2pay_statement_ends();
	end_as_owner(&saved);
	return PointerGetDatum(NULL);
}

/*
 * An argument of p2pay.score, which must not be null.  Its error names the
 * column of payments it stands for, as every other error of score() does
 * (they come from the code the trigger runs): an application that checks a
 * payment with score() before inserting it maps both the same way.
 */
static Datum
score_arg(FunctionCallInfo fcinfo, int n, const char *name, const char *column)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("argument %s of p2pay.score must not be null", name),
				 p2pay_errpaymentcol(column)));
	return PG_GETARG_DATUM(n);
}

/*
 * p2pay.score(payer_id, payee_id, amount, currency, payment_method_id, at):
 * the verdict an insert of this payment would get now, through the same
 * code as the trigger, changing nothing (no lock is taken, no state
 * written).
 */
PG_FUNCTION_INFO_V1(p2pay_score);
Datum
p2pay_score(PG_FUNCTION_ARGS)
{
	PaymentInput in;
	PaymentFacts facts;
	Verdict		verdict;
	int64		version;
	Oid			nspid = p2pay_schema();
	Oid			payments = p2pay_relid("payments");
	TupleDesc	result_desc;
	Datum		values[7];
	bool		nulls[7] = {false};
	Oid			decision_type;

	if (get_call_result_type(fcinfo, NULL, &result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "p2pay_score: must return a row");

	in.payer = DatumGetUUIDP(score_arg(fcinfo, 0, "payer_id", "payer_id"));
	in.payee = DatumGetUUIDP(score_arg(fcinfo, 1, "payee_id", "payee_id"));
	in.amount = DatumGetNumeric(score_arg(fcinfo, 2, "amount", "amount"));
	in.currency = score_arg(fcinfo, 3, "currency", "currency");
	in.method = DatumGetUUIDP(score_arg(fcinfo, 4, "payment_method_id", "payment_method_id"));
	in.created_at = DatumGetTimestampTz(score_arg(fcinfo, 5, "at", "created_at"));

	memset(&facts, 0, sizeof(facts));
	validate_payment(&in);
	{
		Relation	rel = table_open(payments, AccessShareLock);
		OwnerContext saved;
		MemoryContext call_cxt = CurrentMemoryContext;

		begin_as_owner(rel->rd_rel->relowner, &saved);
		version = score(nspid, &in, InvalidOid, call_cxt, &facts, &verdict, NULL);
		end_as_owner(&saved);
		table_close(rel, AccessShareLock);
	}

	decision_type = TupleDescAttr(result_desc, 1)->atttypid;
	values[0] = Float8GetDatum(verdict.score);
	values[1] = p2pay_decision_datum(decision_type, verdict.decision);
	values[2] = p2pay_rule_names(verdict.fired);
	values[3] = Float8GetDatum(verdict.shadow_score);
	values[4] = p2pay_decision_datum(decision_type, verdict.shadow_decision);
	values[5] = p2pay_rule_names(verdict.shadow_fired);
	values[6] = Int64GetDatum(version);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(result_desc), values, nulls)));
}

/*
 * Under logical decoding the stream reports an update's old decision and a
 * delete's whole row from the old row the WAL carries, which only REPLICA
 * IDENTITY FULL (as p2pay sets it) puts there whole: refuse to change a
 * payment that would reach consumers with its fields missing.
 */
static void
require_full_identity(Relation rel, const char *what)
{
	if (XLogLogicalInfoActive() && rel->rd_rel->relreplident != REPLICA_IDENTITY_FULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("payments can't be %s while p2pay.payments lacks REPLICA IDENTITY FULL", what),
				 errdetail("With wal_level = logical, the stream of flagged payments reads the old row of every update and delete from the WAL, which holds it whole only with REPLICA IDENTITY FULL."),
				 errhint("ALTER TABLE p2pay.payments REPLICA IDENTITY FULL restores it.")));
}

/* Whether an UPDATE changes the column attnum (even only its binary form). */
static bool
column_changed(TriggerData *td, TupleDesc desc, int attnum)
{
	Form_pg_attribute att = TupleDescAttr(desc, attnum - 1);
	bool		oldnull,
				newnull;
	Datum		oldval = heap_getattr(td->tg_trigtuple, attnum, desc, &oldnull);
	Datum		newval = heap_getattr(td->tg_newtuple, attnum, desc, &newnull);

	return oldnull != newnull ||
		(!oldnull && !datum_image_eq(oldval, newval, att->attbyval, att->attlen));
}

/*
 * BEFORE UPDATE ROW trigger on p2pay.payments: the facts a payment was scored
 * and counted on can't change afterwards, and is_approved follows decision.
 */
PG_FUNCTION_INFO_V1(p2pay_guard_payment);
Datum
p2pay_guard_payment(PG_FUNCTION_ARGS)
{
	static const PaymentColumn facts[] = {
		COL_TRANSACTION_ID, COL_PAYER_ID, COL_PAYEE_ID, COL_AMOUNT, COL_CURRENCY,
		COL_PAYMENT_METHOD_ID, COL_CREATED_AT, COL_AMOUNT_BASE
	};
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	const int  *attnums;

	attnums = payment_layout(fcinfo, "guard_payment", true, TRIGGER_EVENT_UPDATE)->attnums;
	desc = RelationGetDescr(td->tg_relation);
	require_full_identity(td->tg_relation, "updated");

	for (size_t i = 0; i < lengthof(facts); i++)
	{
		if (column_changed(td, desc, attnums[facts[i]]))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("column %s of a scored payment cannot be changed",
							column_names(facts[i])),
					 errdetail("The payment was scored and counted in the account state with its original values."),
					 errhint("Insert a correcting payment instead."),
					 p2pay_errpaymentcol(column_names(facts[i]))));
	}

	/*
	 * The verdict is the trigger's, or an analyst's through resolve(), which
	 * runs as the owner: nobody else may change it.
	 */
	if (!has_privs_of_role(GetUserId(), td->tg_relation->rd_rel->relowner))
	{
		static const PaymentColumn verdict_cols[] = {
			COL_RISK_SCORE, COL_DECISION, COL_REASONS, COL_RULESET_VERSION,
			COL_SHADOW_REASONS, COL_SHADOW_RISK_SCORE, COL_SHADOW_DECISION
		};

		for (size_t i = 0; i < lengthof(verdict_cols); i++)
		{
			if (column_changed(td, desc, attnums[verdict_cols[i]]))
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("column %s of a payment is changed only by p2pay",
								column_names(verdict_cols[i])),
						 errdetail("The verdict is written by the scoring trigger; an analyst changes a decision under review with p2pay.resolve()."),
						 errhint("SELECT p2pay.resolve(transaction_id, 'approve', 'note') resolves a review."),
						 p2pay_errpaymentcol(column_names(verdict_cols[i]))));
		}
	}

	/* is_approved follows decision, whatever the UPDATE wrote into it */
	{
		bool		isnull;
		Datum		decision = heap_getattr(td->tg_newtuple, attnums[COL_DECISION], desc, &isnull);
		int			col = attnums[COL_IS_APPROVED];
		Datum		approved = BoolGetDatum(false);
		bool		approved_null = isnull;

		if (!isnull)
			approved = BoolGetDatum(decision ==
									p2pay_decision_datum(TupleDescAttr(desc, attnums[COL_DECISION] - 1)->atttypid,
												   DECISION_APPROVE));
		return PointerGetDatum(heap_modify_tuple_by_cols(td->tg_newtuple, desc, 1, &col,
														 &approved, &approved_null));
	}
}

/*
 * The mode this transaction deletes payments in (DELETE_MODE_*), fixed by
 * its first delete of a payment, or -1; and the lowest subtransaction
 * nesting level a delete fixed it at, whose rollback takes the deletes,
 * the archive mark and the fixed mode with it.
 */
static int	fixed_mode = -1;
static int	fixed_level = 0;

/* The mode this transaction deletes payments in, or -1: p2pay.c's check. */
int
p2pay_delete_mode_fixed(void)
{
	return fixed_mode;
}

/* The transaction ended: the next one fixes its own mode. */
static void
delete_mode_xact_callback(XactEvent event, void *arg)
{
	if (p2pay_xact_ends(event))
		fixed_mode = -1;
}

/*
 * A subtransaction ended (the callback runs at its nesting level): rolled
 * back, the deletes that fixed the mode are undone, and so is the archive
 * mark it wrote; committed, they pass to its parent.
 */
static void
delete_mode_subxact_callback(SubXactEvent event, SubTransactionId subid,
							 SubTransactionId parent_subid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();

	if (fixed_mode < 0 || fixed_level < level)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
		fixed_mode = -1;
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
		fixed_level = level - 1;
}

/* Follow the mode of the transaction's deletes through its subtransactions. */
void
p2pay_delete_mode_register_callbacks(void)
{
	RegisterXactCallback(delete_mode_xact_callback, NULL);
	RegisterSubXactCallback(delete_mode_subxact_callback, NULL);
}

/* Record that this transaction deletes payments in mode. */
static void
fix_delete_mode(int mode)
{
	int			level = GetCurrentTransactionNestLevel();

	if (fixed_mode < 0)
	{
		fixed_mode = mode;
		fixed_level = level;
	}
	else
		fixed_level = Min(fixed_level, level);
}

/* Refuse a delete in another mode than the one this transaction deletes in. */
static void
require_delete_mode(int mode)
{
	if (fixed_mode < 0 || fixed_mode == mode)
		return;
	if (fixed_mode == DELETE_MODE_ARCHIVE)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("payments can't be reversed in a transaction that archived payments"),
				 errdetail("The stream passes over the deletes of payments that follow an archive in its transaction: a reversal there would not reach it."),
				 errhint("Reverse payments in a transaction of their own, or roll back to a savepoint taken before the archiving.")));
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("payments can't be archived in a transaction that reversed payments"),
			 errdetail("A transaction deletes payments in one p2pay.delete_mode, the one of its first delete."),
			 errhint("Archive payments in a transaction of their own.")));
}

/*
 * Only the owner of p2pay.payments (or a member of its role) archives: an
 * archived delete reaches no consumer of the stream, and a role that may
 * delete payments to reverse them must not be able to hide a reversal.
 */
static void
require_archiver(void)
{
	Oid			payments = p2pay_relid("payments");
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(payments));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "p2pay: cache lookup failed for relation %u", payments);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("payments can be archived only by the owner of p2pay.payments"),
				 errdetail("An archived payment stays in the per-account state and its delete is no event on the stream."),
				 errhint("Archive as the owner of p2pay.payments; with p2pay.delete_mode = reverse a delete reverses the payment.")));
}

/*
 * BEFORE DELETE ROW trigger on p2pay.payments: fix the transaction's delete
 * mode at its first delete, refuse a delete in the other mode, and mark
 * the transaction in the WAL for the stream before the delete is logged:
 * an archive mark once, before the first archived payment; a reverse mark
 * before each reversed one.
 */
PG_FUNCTION_INFO_V1(p2pay_mark_delete_trigger);
Datum
p2pay_mark_delete_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	int			mode = p2pay_delete_mode;

	(void) payment_layout(fcinfo, "mark_delete", true, TRIGGER_EVENT_DELETE);
	require_delete_mode(mode);
	if (mode == DELETE_MODE_ARCHIVE)
	{
		require_archiver();
		if (fixed_mode < 0 && XLogLogicalInfoActive())
			(void) p2pay_log_message(P2PAY_MESSAGE_PREFIX, P2PAY_MESSAGE_ARCHIVE);
	}
	else if (XLogLogicalInfoActive())
		(void) p2pay_log_message(P2PAY_MESSAGE_PREFIX, P2PAY_MESSAGE_REVERSE);
	fix_delete_mode(mode);
	return PointerGetDatum(td->tg_trigtuple);
}

/*
 * AFTER DELETE ROW trigger on p2pay.payments: a reversed payment stops
 * counting in the per-account state, as if it had never been inserted; an
 * archived one changes nothing.
 */
PG_FUNCTION_INFO_V1(p2pay_forget_payment_trigger);
Datum
p2pay_forget_payment_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	HeapTuple	tup;
	const int  *attnums;
	bool		nulls[4];
	Datum		amount_base,
				payer,
				payee,
				created_at;
	OwnerContext saved;
	int			mode = p2pay_delete_mode;

	attnums = payment_layout(fcinfo, "forget_payment", false, TRIGGER_EVENT_DELETE)->attnums;
	rel = td->tg_relation;
	desc = RelationGetDescr(rel);
	tup = td->tg_trigtuple;

	/*
	 * An archived payment needs the mark that keeps its delete off the
	 * stream: p2pay 1.0 has no trigger to write it, and a DBA may have
	 * disabled it.
	 */
	if (mode == DELETE_MODE_ARCHIVE)
	{
		if (fixed_mode != DELETE_MODE_ARCHIVE)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("payments can't be archived without p2pay's trigger payments_mark_delete"),
					 errdetail("With p2pay.delete_mode = archive, the BEFORE DELETE trigger marks the transaction for the stream; it did not run: the extension is at version 1.0, or the trigger is disabled."),
					 errhint("ALTER EXTENSION p2pay UPDATE installs it; with p2pay.delete_mode = reverse a delete reverses the payment.")));
		return PointerGetDatum(NULL);
	}
	require_delete_mode(mode);
	fix_delete_mode(mode);
	require_full_identity(rel, "deleted");

	/*
	 * A row restored without scoring (replication role replica) counted
	 * nowhere; nor did one without the facts the trigger requires.
	 */
	amount_base = heap_getattr(tup, attnums[COL_AMOUNT_BASE], desc, &nulls[0]);
	payer = heap_getattr(tup, attnums[COL_PAYER_ID], desc, &nulls[1]);
	payee = heap_getattr(tup, attnums[COL_PAYEE_ID], desc, &nulls[2]);
	created_at = heap_getattr(tup, attnums[COL_CREATED_AT], desc, &nulls[3]);
	if (nulls[0] || nulls[1] || nulls[2] || nulls[3])
		return PointerGetDatum(NULL);

	begin_as_owner(rel->rd_rel->relowner, &saved);
	p2pay_lock_accounts(DatumGetUUIDP(payer), DatumGetUUIDP(payee), saved.userid);
	p2pay_forget_payment(DatumGetUUIDP(payer), DatumGetUUIDP(payee),
						 DatumGetTimestampTz(created_at), DatumGetNumeric(amount_base));
	end_as_owner(&saved);
	return PointerGetDatum(NULL);
}
