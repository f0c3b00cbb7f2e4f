/*
 * output.c: the "p2pay" logical decoding output plugin.
 *
 * Streams the payments of p2pay.payments as JSON lines, one per event, as
 * each change of a committed transaction is decoded (nothing is buffered
 * per transaction): inserts whose decision is flagged (or every insert, with
 * include-approved), decision changes, deletes and truncates.  Changes to
 * every other table emit nothing, and progress is reported through them so
 * that a quiet stream doesn't hold WAL back.
 *
 * Memory: each change is formatted in a context reset after the change, so
 * a transaction of any size decodes in flat memory.  What is known about a
 * relation (is it p2pay.payments, where its columns are, which enum values
 * its decisions are) is cached per relation id in a context that lives as
 * long as the decoding session, and forgotten when the relation changes.
 *
 * The format is versioned by the option format-version (only 1 exists); the
 * README documents version 1 field by field.
 */
#include "postgres.h"

#include "p2pay.h"
#include "compat.h"
#include "json.h"

#include "access/htup_details.h"
#include "catalog/pg_enum.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "replication/logical.h"
#include "replication/output_plugin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

/* Skipped changes between two progress reports. */
#define PROGRESS_EVERY 100

/* The columns of p2pay.payments an event carries. */
typedef enum StreamColumn
{
	SC_TRANSACTION_ID,
	SC_PAYER_ID,
	SC_PAYEE_ID,
	SC_AMOUNT,
	SC_CURRENCY,
	SC_PAYMENT_METHOD_ID,
	SC_CREATED_AT,
	SC_RISK_SCORE,
	SC_DECISION,
	SC_REASONS,
	SC_COUNT
} StreamColumn;

static const char *const stream_column_names[SC_COUNT] = {
	"transaction_id", "payer_id", "payee_id", "amount", "currency",
	"payment_method_id", "created_at", "risk_score", "decision", "reasons"
};

/* What the plugin knows about one relation. */
typedef struct RelInfo
{
	Oid			relid;			/* hash key */
	bool		valid;			/* false once the relation changed */
	bool		is_payments;
	AttrNumber	attnum[SC_COUNT];	/* 0 where the column is missing */
	Oid			decision_oid[3];	/* enum value of each DECISION_* */
} RelInfo;

/* The options of one decoding session, and its scratch state. */
typedef struct StreamState
{
	int			min_decision;	/* DECISION_REVIEW or DECISION_DECLINE */
	bool		include_approved;
	bool		include_xids;
	bool		include_lsn;
	bool		include_timestamp;
	MemoryContext change_cxt;	/* reset after every change */
	bool		wrote_in_txn;
	int			skipped;		/* changes emitted nothing since the last report */
} StreamState;

static HTAB *relinfo_cache = NULL;
static bool relinfo_callback_registered = false;

void		_PG_output_plugin_init(OutputPluginCallbacks *cb);

/* Forget what is known about a relation when it changes. */
static void
relinfo_invalidate(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS seq;
	RelInfo    *info;

	if (relinfo_cache == NULL)
		return;
	if (OidIsValid(relid))
	{
		info = hash_search(relinfo_cache, &relid, HASH_FIND, NULL);
		if (info != NULL)
			info->valid = false;
		return;
	}
	hash_seq_init(&seq, relinfo_cache);
	while ((info = hash_seq_search(&seq)) != NULL)
		info->valid = false;
}

/* Whether rel is p2pay.payments, and where its columns are; cached. */
static RelInfo *
relinfo_get(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	RelInfo    *info;
	bool		found;
	TupleDesc	desc;
	char	   *nspname;

	if (relinfo_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(RelInfo);
		ctl.hcxt = CacheMemoryContext;
		relinfo_cache = hash_create("p2pay output relations", 64, &ctl,
									HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		if (!relinfo_callback_registered)
		{
			CacheRegisterRelcacheCallback(relinfo_invalidate, (Datum) 0);
			relinfo_callback_registered = true;
		}
	}

	info = hash_search(relinfo_cache, &relid, HASH_ENTER, &found);
	if (found && info->valid)
		return info;

	memset(((char *) info) + sizeof(Oid), 0, sizeof(RelInfo) - sizeof(Oid));
	info->valid = true;

	nspname = get_namespace_name(RelationGetNamespace(rel));
	info->is_payments = nspname != NULL && strcmp(nspname, "p2pay") == 0 &&
		strcmp(RelationGetRelationName(rel), "payments") == 0;
	if (!info->is_payments)
		return info;

	desc = RelationGetDescr(rel);
	for (int col = 0; col < SC_COUNT; col++)
	{
		for (int i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (!att->attisdropped && strcmp(NameStr(att->attname), stream_column_names[col]) == 0)
				info->attnum[col] = att->attnum;
		}
	}
	if (info->attnum[SC_DECISION] != 0)
	{
		Oid			typid = TupleDescAttr(desc, info->attnum[SC_DECISION] - 1)->atttypid;

		for (int d = 0; d < 3; d++)
			info->decision_oid[d] = GetSysCacheOid2(ENUMTYPOIDNAME, Anum_pg_enum_oid,
													ObjectIdGetDatum(typid),
													CStringGetDatum(p2pay_decision_label(d)));
	}
	return info;
}

/* A boolean option's value; an option given without a value means true. */
static bool
option_bool(DefElem *elem)
{
	bool		value;

	if (elem->arg == NULL)
		return true;
	if (!parse_bool(strVal(elem->arg), &value))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" of output plugin p2pay must be a boolean", elem->defname),
				 errdetail("The value given was \"%s\".", strVal(elem->arg))));
	return value;
}

/* A string option's value, which is required. */
static char *
option_string(DefElem *elem)
{
	if (elem->arg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" of output plugin p2pay requires a value", elem->defname)));
	return strVal(elem->arg);
}

/* Read the session's options; unknown, repeated or bad ones are errors. */
static void
parse_options(List *options, StreamState *state)
{
	static const char *const known[] = {
		"format-version", "min-decision", "include-approved", "include-xids",
		"include-lsn", "include-timestamp"
	};
	bool		seen[lengthof(known)] = {false};
	ListCell   *lc;

	state->min_decision = DECISION_REVIEW;
	state->include_approved = false;
	state->include_xids = true;
	state->include_lsn = true;
	state->include_timestamp = true;

	foreach(lc, options)
	{
		DefElem    *elem = lfirst(lc);
		int			which = -1;

		for (int i = 0; i < (int) lengthof(known); i++)
			if (strcmp(elem->defname, known[i]) == 0)
				which = i;
		if (which < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("output plugin p2pay has no option \"%s\"", elem->defname),
					 errhint("Its options are format-version, min-decision, include-approved, include-xids, include-lsn and include-timestamp.")));
		if (seen[which])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"%s\" of output plugin p2pay is given more than once",
							elem->defname)));
		seen[which] = true;

		switch (which)
		{
			case 0:
				if (strcmp(option_string(elem), "1") != 0)
					ereport(ERROR,
							(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
							 errmsg("output plugin p2pay has no format version \"%s\"",
									strVal(elem->arg)),
							 errdetail("This version of p2pay writes format version 1.")));
				break;
			case 1:
				{
					char	   *v = option_string(elem);

					if (strcmp(v, "review") == 0)
						state->min_decision = DECISION_REVIEW;
					else if (strcmp(v, "decline") == 0)
						state->min_decision = DECISION_DECLINE;
					else
						ereport(ERROR,
								(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
								 errmsg("option \"min-decision\" of output plugin p2pay must be \"review\" or \"decline\""),
								 errdetail("The value given was \"%s\".", v)));
					break;
				}
			case 2:
				state->include_approved = option_bool(elem);
				break;
			case 3:
				state->include_xids = option_bool(elem);
				break;
			case 4:
				state->include_lsn = option_bool(elem);
				break;
			case 5:
				state->include_timestamp = option_bool(elem);
				break;
		}
	}
}

/* Start a decoding session: check the options, set up memory. */
static void
stream_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt, bool is_init)
{
	StreamState *state = MemoryContextAllocZero(ctx->context, sizeof(StreamState));

	parse_options(ctx->output_plugin_options, state);
	state->change_cxt = AllocSetContextCreate(ctx->context, "p2pay change",
											  ALLOCSET_DEFAULT_SIZES);
	ctx->output_plugin_private = state;
	opt->output_type = OUTPUT_PLUGIN_TEXTUAL_OUTPUT;
	opt->receive_rewrites = false;
}

static void
stream_shutdown(LogicalDecodingContext *ctx)
{
	StreamState *state = ctx->output_plugin_private;

	if (state != NULL)
		MemoryContextDelete(state->change_cxt);
}

static void
stream_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	StreamState *state = ctx->output_plugin_private;

	state->wrote_in_txn = false;
}

/*
 * Report progress through changes that emit nothing, so that the walsender
 * keeps its peer informed and a quiet stream lets the slot advance.
 */
static void
note_skipped(LogicalDecodingContext *ctx, StreamState *state)
{
	if (++state->skipped >= PROGRESS_EVERY)
	{
		p2pay_update_progress(ctx, false);
		state->skipped = 0;
	}
}

static void
stream_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, XLogRecPtr commit_lsn)
{
	StreamState *state = ctx->output_plugin_private;

	p2pay_update_progress(ctx, !state->wrote_in_txn);
	state->skipped = 0;
}

/* The rank of a decision value (an enum oid), or -1 when unknown. */
static int
decision_of(const RelInfo *info, HeapTuple tup, TupleDesc desc)
{
	bool		isnull;
	Datum		d;

	if (tup == NULL || info->attnum[SC_DECISION] == 0)
		return -1;
	d = heap_getattr(tup, info->attnum[SC_DECISION], desc, &isnull);
	if (isnull)
		return -1;
	for (int i = 0; i < 3; i++)
		if (DatumGetObjectId(d) == info->decision_oid[i])
			return i;
	return -1;
}

/* Write one column of a payment, by its type; NULL and missing as null. */
static void
write_column(JsonWriter *w, const RelInfo *info, HeapTuple tup, TupleDesc desc,
			 StreamColumn col)
{
	const char *key = stream_column_names[col];
	bool		isnull = true;
	Datum		d = (Datum) 0;

	if (info->attnum[col] != 0)
		d = heap_getattr(tup, info->attnum[col], desc, &isnull);
	/* a value left in TOAST by an update is not in the WAL record */
	if (!isnull && TupleDescAttr(desc, info->attnum[col] - 1)->attlen == -1 &&
		VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(d)))
		isnull = true;
	if (isnull)
	{
		json_null(w, key);
		return;
	}

	switch (col)
	{
		case SC_TRANSACTION_ID:
		case SC_PAYER_ID:
		case SC_PAYEE_ID:
		case SC_PAYMENT_METHOD_ID:
			json_string(w, key, DatumGetCString(DirectFunctionCall1(uuid_out, d)));
			break;
		case SC_AMOUNT:
			json_string(w, key, DatumGetCString(DirectFunctionCall1(numeric_out, d)));
			break;
		case SC_CURRENCY:
			json_string(w, key, TextDatumGetCString(d));
			break;
		case SC_CREATED_AT:
			json_timestamp(w, key, DatumGetTimestampTz(d));
			break;
		case SC_RISK_SCORE:
			json_double(w, key, DatumGetFloat8(d));
			break;
		case SC_DECISION:
			{
				int			rank = decision_of(info, tup, desc);

				json_string(w, key, rank < 0 ? NULL : p2pay_decision_label(rank));
				break;
			}
		case SC_REASONS:
			json_text_array(w, key, d);
			break;
		default:
			break;
	}
}

/* The fields every event ends with, as the options ask. */
static void
write_position(JsonWriter *w, const StreamState *state, ReorderBufferTXN *txn, XLogRecPtr lsn)
{
	if (state->include_xids)
		json_uint64(w, "xid", txn->xid);
	if (state->include_lsn)
		json_lsn(w, "lsn", lsn);
	if (state->include_timestamp)
		json_timestamp(w, "commit_time", p2pay_txn_commit_time(txn));
}

/*
 * Write one payment event: its columns from tup, with old_decision before
 * decision for a decision change.
 */
static void
emit_payment(LogicalDecodingContext *ctx, StreamState *state, ReorderBufferTXN *txn,
			 XLogRecPtr lsn, const RelInfo *info, TupleDesc desc, const char *event,
			 HeapTuple tup, HeapTuple oldtup)
{
	JsonWriter	w;

	OutputPluginPrepareWrite(ctx, true);
	json_begin(&w, ctx->out);
	json_string(&w, "event", event);
	for (int col = 0; col < SC_COUNT; col++)
	{
		if (col == SC_DECISION && oldtup != NULL)
		{
			int			old = decision_of(info, oldtup, desc);

			json_string(&w, "old_decision", old < 0 ? NULL : p2pay_decision_label(old));
		}
		else if (col == SC_DECISION && strcmp(event, "decision_changed") == 0)
			json_null(&w, "old_decision");
		write_column(&w, info, tup, desc, col);
	}
	write_position(&w, state, txn, lsn);
	json_end(&w);
	OutputPluginWrite(ctx, true);
	state->wrote_in_txn = true;
}

/* One decoded change: emit it if it is a payment event the options ask for. */
static void
stream_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, Relation rel,
			  ReorderBufferChange *change)
{
	StreamState *state = ctx->output_plugin_private;
	RelInfo    *info = relinfo_get(rel);
	TupleDesc	desc = RelationGetDescr(rel);
	MemoryContext old_cxt;
	HeapTuple	newtup = p2pay_change_newtuple(change);
	HeapTuple	oldtup = p2pay_change_oldtuple(change);
	bool		emitted = false;

	if (!info->is_payments)
	{
		note_skipped(ctx, state);
		return;
	}

	old_cxt = MemoryContextSwitchTo(state->change_cxt);

	switch (change->action)
	{
		case REORDER_BUFFER_CHANGE_INSERT:
			{
				int			rank = decision_of(info, newtup, desc);

				if (rank >= state->min_decision)
					emit_payment(ctx, state, txn, change->lsn, info, desc, "flagged", newtup, NULL);
				else if (rank == DECISION_APPROVE && state->include_approved)
					emit_payment(ctx, state, txn, change->lsn, info, desc, "approved", newtup, NULL);
				else
					break;
				emitted = true;
				break;
			}
		case REORDER_BUFFER_CHANGE_UPDATE:
			{
				int			rank = decision_of(info, newtup, desc);
				int			old_rank = decision_of(info, oldtup, desc);

				/* without the old row (replica identity changed) the old decision is unknown */
				if (oldtup != NULL && old_rank == rank)
					break;
				if (Max(rank, old_rank) < state->min_decision && !state->include_approved)
					break;
				emit_payment(ctx, state, txn, change->lsn, info, desc, "decision_changed",
							 newtup, oldtup);
				emitted = true;
				break;
			}
		case REORDER_BUFFER_CHANGE_DELETE:
			/* every delete, with as much of the row as the WAL holds */
			if (oldtup != NULL)
			{
				emit_payment(ctx, state, txn, change->lsn, info, desc, "deleted", oldtup, NULL);
				emitted = true;
			}
			break;
		default:
			break;
	}

	MemoryContextSwitchTo(old_cxt);
	MemoryContextReset(state->change_cxt);
	if (!emitted)
		note_skipped(ctx, state);
}

/* A TRUNCATE that includes p2pay.payments is an event of its own. */
static void
stream_truncate(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, int nrelations,
				Relation relations[], ReorderBufferChange *change)
{
	StreamState *state = ctx->output_plugin_private;
	MemoryContext old_cxt = MemoryContextSwitchTo(state->change_cxt);
	bool		emitted = false;

	for (int i = 0; i < nrelations && !emitted; i++)
	{
		if (relinfo_get(relations[i])->is_payments)
		{
			JsonWriter	w;

			OutputPluginPrepareWrite(ctx, true);
			json_begin(&w, ctx->out);
			json_string(&w, "event", "truncated");
			json_string(&w, "table", "p2pay.payments");
			write_position(&w, state, txn, change->lsn);
			json_end(&w);
			OutputPluginWrite(ctx, true);
			state->wrote_in_txn = true;
			emitted = true;
		}
	}

	MemoryContextSwitchTo(old_cxt);
	MemoryContextReset(state->change_cxt);
	if (!emitted)
		note_skipped(ctx, state);
}

/* Entry point: PostgreSQL looks this up when a slot names plugin p2pay. */
void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	cb->startup_cb = stream_startup;
	cb->begin_cb = stream_begin;
	cb->change_cb = stream_change;
	cb->truncate_cb = stream_truncate;
	cb->commit_cb = stream_commit;
	cb->shutdown_cb = stream_shutdown;
}
