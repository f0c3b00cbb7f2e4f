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
 * Partitions: p2pay.payments is found by OID in the extension's schema.  A
 * change of one of its partitions, at any depth, is a change of payments,
 * its columns read by name from the partition's own descriptor.  A
 * TRUNCATE is an event only when it names payments itself, whose
 * partitions it truncates with it: truncating a partition, as dropping or
 * detaching one, is archiving.
 *
 * Archiving: the delete triggers mark a transaction in the WAL with
 * p2pay's logical decoding messages (trigger.c); a delete of a payment
 * that follows an archive mark in its transaction, with no reverse mark
 * since, is archived and emits nothing.
 *
 * Memory: each change is formatted in a context reset after the change, so
 * a transaction of any size decodes in flat memory.  What is known about a
 * relation (is it p2pay.payments or one of its partitions, where its
 * columns are, of which types, which enum values its decisions are) is
 * cached per relation id in a context that lives as long as the backend,
 * and forgotten when the relation or one of its ancestors changes (a
 * partition attached or detached).  The catalogs are read with decoding's
 * historic snapshot, as they were when the change was made.
 *
 * Trust: nothing about the table's shape is taken for granted.  A column is
 * read directly only when its type is the one p2pay created it with; any
 * other type (after an ALTER COLUMN ... TYPE) is written through that
 * type's output function, as a string.  The WAL record of an update lacks
 * the values TOAST kept unchanged out of line; they are taken from the old
 * row, which REPLICA IDENTITY FULL logs whole.  A value that is in neither
 * is written as null, with a WARNING that names the payment and the column.
 *
 * The format is versioned by the option format-version (only 1 exists); the
 * docs/stream.md documents version 1 field by field.
 *
 * Keys: with the option key (payer_id, payee_id or transaction_id), every
 * line starts with {"key":"<that column's text>", or {"key":null, and goes
 * on as the line without the option would, byte for byte after its "{".  A
 * consumer that partitions by the key (tools/p2pay-forward) reads it at a
 * fixed place, and drops that prefix to get the line as it is without the
 * option; the key is written only when its text needs no escape in JSON (a
 * uuid never does), so that it ends at the first quote after it.
 *
 * Assertions (USE_ASSERT_CHECKING) state what the callbacks rely on: the
 * session state set up at startup, a change formatted in its scratch
 * context, a row read only through a descriptor its columns fit.
 */
#include "postgres.h"

#include "p2pay.h"
#include "catalog.h"
#include "compat.h"
#include "json.h"

#include "access/htup_details.h"
#include "catalog/partition.h"
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

/*
 * The rank of a decision that is none of p2pay's three (a column whose type
 * was changed and holds some other text) or that the WAL doesn't hold: above
 * decline, so that every filter lets the payment through rather than lose it.
 */
#define DECISION_UNRANKED 3

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

/* How one column of payments is read. */
typedef struct ColumnInfo
{
	AttrNumber	attnum;			/* 0 where the table has no such column */
	Oid			typid;			/* its type when cached */
	bool		varlena;		/* its values may be TOAST pointers */
	bool		native;			/* its type is the one p2pay reads directly */
	FmgrInfo	output;			/* its type's output function */
} ColumnInfo;

/* What the plugin knows about one relation. */
typedef struct RelInfo
{
	Oid			relid;			/* hash key */
	bool		valid;			/* false once the relation changed */
	bool		is_payments;	/* p2pay.payments or one of its partitions */
	bool		is_root;		/* p2pay.payments itself */
	Oid		   *ancestors;		/* a partition's, in CacheMemoryContext */
	int			nancestors;
	/* the rest is set for p2pay.payments only */
	MemoryContext cxt;			/* the output functions' state */
	int			natts;			/* attributes of the descriptor cached */
	ColumnInfo	col[SC_COUNT];
	Oid			decision_oid[3];	/* enum value of each DECISION_*, if any */
} RelInfo;

/*
 * One payment's columns as a tuple of the WAL gives them; lost marks a value
 * the WAL record doesn't hold (written as null, and warned about).
 */
typedef struct PaymentRow
{
	Datum		value[SC_COUNT];
	bool		isnull[SC_COUNT];
	bool		lost[SC_COUNT];
} PaymentRow;

/* The options of one decoding session, and its scratch state. */
typedef struct StreamState
{
	int			key_column;		/* option key: an SC_*, or -1 for none */
	int			min_decision;	/* DECISION_REVIEW or DECISION_DECLINE */
	bool		include_approved;
	bool		include_xids;
	bool		include_lsn;
	bool		include_timestamp;
	MemoryContext change_cxt;	/* reset after every change */
	bool		wrote_in_txn;
	bool		archiving;		/* the transaction's deletes of payments are archived */
	int			skipped;		/* changes emitted nothing since the last report */
} StreamState;

static HTAB *relinfo_cache = NULL;
static bool relinfo_callback_registered = false;

void		_PG_output_plugin_init(OutputPluginCallbacks *cb);

/*
 * Forget what is known about a relation when it changes, and about every
 * partition it is an ancestor of: whether a partition belongs to payments
 * changes when a table above it is attached or detached, whether or not
 * PostgreSQL invalidates the partition itself then.
 */
static void
relinfo_invalidate(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS seq;
	RelInfo    *info;

	if (relinfo_cache == NULL)
		return;
	hash_seq_init(&seq, relinfo_cache);
	while ((info = hash_seq_search(&seq)) != NULL)
	{
		if (!OidIsValid(relid) || info->relid == relid)
			info->valid = false;
		for (int i = 0; i < info->nancestors && info->valid; i++)
			if (info->ancestors[i] == relid)
				info->valid = false;
	}
}

/*
 * Forget every relation's decision labels when an enum changes (a label
 * renamed or added): they are looked up by name once per relation.
 */
static void
relinfo_invalidate_enums(Datum arg, int cacheid, uint32 hashvalue)
{
	relinfo_invalidate(arg, InvalidOid);
}

/* Whether a column of base type typid is read directly, as p2pay made it. */
static bool
column_is_native(StreamColumn col, Oid typid)
{
	switch (col)
	{
		case SC_TRANSACTION_ID:
		case SC_PAYER_ID:
		case SC_PAYEE_ID:
		case SC_PAYMENT_METHOD_ID:
			return typid == UUIDOID;
		case SC_AMOUNT:
			return typid == NUMERICOID;
		case SC_CURRENCY:
			/* the string types share text's representation and output */
			return typid == BPCHAROID || typid == TEXTOID || typid == VARCHAROID;
		case SC_CREATED_AT:
			return typid == TIMESTAMPTZOID;
		case SC_RISK_SCORE:
			return typid == FLOAT8OID;
		case SC_DECISION:
			return type_is_enum(typid);
		case SC_REASONS:
			return typid == TEXTARRAYOID;
		default:
			return false;
	}
}

/*
 * Whether the cached columns still describe desc.  The relcache callback
 * forgets a relation when it changes; this also catches a descriptor that
 * is not the one cached (fewer or more attributes, a column dropped or of
 * another type) before any value is read with the wrong type.
 */
static bool
relinfo_fits(const RelInfo *info, TupleDesc desc)
{
	if (desc->natts != info->natts)
		return false;
	for (int col = 0; col < SC_COUNT; col++)
	{
		const ColumnInfo *ci = &info->col[col];
		Form_pg_attribute att;

		if (ci->attnum == 0)
			continue;
		att = TupleDescAttr(desc, ci->attnum - 1);
		if (att->attisdropped || att->atttypid != ci->typid)
			return false;
	}
	return true;
}

/* Where the columns of payments are, and how to read each. */
static void
relinfo_read_columns(RelInfo *info, TupleDesc desc)
{
	info->cxt = AllocSetContextCreate(CacheMemoryContext, "p2pay output columns",
									  ALLOCSET_SMALL_SIZES);
	info->natts = desc->natts;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		for (int col = 0; col < SC_COUNT; col++)
		{
			ColumnInfo *ci = &info->col[col];
			Oid			base;
			Oid			typoutput;
			bool		typisvarlena;

			if (strcmp(NameStr(att->attname), stream_column_names[col]) != 0)
				continue;
			ci->attnum = att->attnum;
			ci->typid = att->atttypid;
			ci->varlena = att->attlen == -1;
			/* a domain's values are its base type's */
			base = getBaseType(att->atttypid);
			ci->native = column_is_native(col, base);
			getTypeOutputInfo(att->atttypid, &typoutput, &typisvarlena);
			fmgr_info_cxt(typoutput, &ci->output, info->cxt);
			if (col == SC_DECISION && ci->native)
			{
				for (int d = 0; d < 3; d++)
					info->decision_oid[d] =
						GetSysCacheOid2(ENUMTYPOIDNAME, Anum_pg_enum_oid,
										ObjectIdGetDatum(base),
										CStringGetDatum(p2pay_decision_label(d)));
			}
		}
	}
}

/*
 * The OID of p2pay.payments, or InvalidOid in a database without the
 * extension (or without the table): read through the catalogs as the
 * historic snapshot shows them.
 */
static Oid
payments_relid(void)
{
	Oid			nspid = p2pay_schema_if_installed();

	return OidIsValid(nspid) ? get_relname_relid("payments", nspid) : InvalidOid;
}

/*
 * Whether rel is p2pay.payments or a partition of it, at any depth: the
 * partition's ancestors, which are kept to tell when one of them changes.
 */
static void
relinfo_classify(Relation rel, RelInfo *info)
{
	Oid			payments = payments_relid();

	info->is_root = OidIsValid(payments) && info->relid == payments;
	info->is_payments = info->is_root;
	if (rel->rd_rel->relispartition)
	{
		List	   *ancestors = get_partition_ancestors(info->relid);
		ListCell   *lc;

		info->ancestors = MemoryContextAlloc(CacheMemoryContext,
											 Max(list_length(ancestors), 1) * sizeof(Oid));
		foreach(lc, ancestors)
		{
			Oid			ancestor = lfirst_oid(lc);

			info->ancestors[info->nancestors++] = ancestor;
			if (OidIsValid(payments) && ancestor == payments)
				info->is_payments = true;
		}
		list_free(ancestors);
	}
}

/*
 * Whether rel is p2pay.payments or one of its partitions, and how to read
 * its columns; cached.  Catalog lookups allocate in the caller's context,
 * the change's.
 */
static RelInfo *
relinfo_get(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	RelInfo    *info;
	bool		found;

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
			CacheRegisterSyscacheCallback(ENUMOID, relinfo_invalidate_enums, (Datum) 0);
			relinfo_callback_registered = true;
		}
	}

	info = hash_search(relinfo_cache, &relid, HASH_ENTER, &found);
	if (found && info->valid &&
		(!info->is_payments || relinfo_fits(info, RelationGetDescr(rel))))
		return info;

	if (found && info->cxt != NULL)
		MemoryContextDelete(info->cxt);
	if (found && info->ancestors != NULL)
		pfree(info->ancestors);
	/* valid only once complete: an error half way leaves it to be redone */
	memset(((char *) info) + sizeof(Oid), 0, sizeof(RelInfo) - sizeof(Oid));

	relinfo_classify(rel, info);
	if (info->is_payments)
		relinfo_read_columns(info, RelationGetDescr(rel));
	info->valid = true;
	Assert(!info->is_payments || relinfo_fits(info, RelationGetDescr(rel)));
	Assert(!info->is_root || info->is_payments);
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
				 errdetail("The value given was \"%s\".", p2pay_echo(strVal(elem->arg)))));
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

/*
 * Read the session's options; unknown, repeated or bad ones are errors.
 * Messages quote a client's option names only once they are known ones,
 * and its values through p2pay_echo.
 */
static void
parse_options(List *options, StreamState *state)
{
	static const char *const known[] = {
		"format-version", "min-decision", "include-approved", "include-xids",
		"include-lsn", "include-timestamp", "key"
	};
	bool		seen[lengthof(known)] = {false};
	ListCell   *lc;

	state->key_column = -1;
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
					 errmsg("output plugin p2pay has no option \"%s\"", p2pay_echo(elem->defname)),
					 errhint("Its options are format-version, min-decision, include-approved, include-xids, include-lsn, include-timestamp and key.")));
		if (seen[which])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"%s\" of output plugin p2pay is given more than once",
							known[which])));
		seen[which] = true;

		switch (which)
		{
			case 0:
				if (strcmp(option_string(elem), "1") != 0)
					ereport(ERROR,
							(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
							 errmsg("output plugin p2pay has no format version \"%s\"",
									p2pay_echo(strVal(elem->arg))),
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
								 errdetail("The value given was \"%s\".", p2pay_echo(v))));
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
			case 6:
				{
					char	   *v = option_string(elem);

					if (strcmp(v, "payer_id") == 0)
						state->key_column = SC_PAYER_ID;
					else if (strcmp(v, "payee_id") == 0)
						state->key_column = SC_PAYEE_ID;
					else if (strcmp(v, "transaction_id") == 0)
						state->key_column = SC_TRANSACTION_ID;
					else
						ereport(ERROR,
								(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
								 errmsg("option \"key\" of output plugin p2pay must be \"payer_id\", \"payee_id\" or \"transaction_id\""),
								 errdetail("The value given was \"%s\".", p2pay_echo(v))));
					break;
				}
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
	state->archiving = false;
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

/*
 * A column's value in tup, or false when the WAL record doesn't hold it: a
 * TOAST pointer, which an update writes for a value it left unchanged out
 * of line (its chunks are not in the record, and may be gone by the time
 * the change is decoded, so it is never followed).
 */
static bool
tuple_value(HeapTuple tup, TupleDesc desc, const ColumnInfo *ci, Datum *value, bool *isnull)
{
	*value = heap_getattr(tup, ci->attnum, desc, isnull);
	return *isnull || !ci->varlena || !VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(*value));
}

/*
 * The payment columns of tup (NULL: a tuple the WAL doesn't have).  whole
 * says whether tup is a whole row, where null means null: the new row of an
 * insert or update, or an old row under REPLICA IDENTITY FULL; otherwise
 * (an old row under another identity) it holds only the identity's columns
 * and the others are nulls that stand for values not logged.  A value
 * missing from tup is taken from fallback, the old row of an update, when
 * that holds it.
 */
static void
read_row(const RelInfo *info, TupleDesc desc, HeapTuple tup, bool whole,
		 HeapTuple fallback, PaymentRow *row)
{
	for (int col = 0; col < SC_COUNT; col++)
	{
		const ColumnInfo *ci = &info->col[col];
		Datum		value;
		bool		isnull;

		row->value[col] = (Datum) 0;
		row->isnull[col] = true;
		row->lost[col] = false;
		/* a column the table no longer has is null, not lost */
		if (ci->attnum == 0)
			continue;
		/* relinfo_get checked the cached columns against this descriptor */
		Assert(ci->attnum <= desc->natts &&
			   TupleDescAttr(desc, ci->attnum - 1)->atttypid == ci->typid);
		if (tup != NULL && tuple_value(tup, desc, ci, &value, &isnull) && (whole || !isnull))
		{
			row->value[col] = value;
			row->isnull[col] = isnull;
			continue;
		}
		if (fallback != NULL && tuple_value(fallback, desc, ci, &value, &isnull) && !isnull)
		{
			row->value[col] = value;
			row->isnull[col] = false;
			continue;
		}
		row->lost[col] = true;
	}
}

/*
 * The rank of a row's decision, and its text in *label: -1 and NULL for
 * null; DECISION_UNRANKED for a value that is none of p2pay's three labels
 * (label: its text) or that the WAL doesn't hold (label: NULL).  An enum
 * value is matched by oid, any other value by its output text.
 */
static int
decision_rank(RelInfo *info, const PaymentRow *row, const char **label)
{
	ColumnInfo *ci = &info->col[SC_DECISION];
	Datum		d = row->value[SC_DECISION];
	char	   *text;

	*label = NULL;
	if (row->lost[SC_DECISION])
		return DECISION_UNRANKED;
	if (row->isnull[SC_DECISION])
		return -1;
	if (ci->native)
	{
		for (int i = 0; i < 3; i++)
		{
			if (OidIsValid(info->decision_oid[i]) && DatumGetObjectId(d) == info->decision_oid[i])
			{
				*label = p2pay_decision_label(i);
				return i;
			}
		}
	}
	text = OutputFunctionCall(&ci->output, d);
	for (int i = 0; i < 3; i++)
	{
		if (strcmp(text, p2pay_decision_label(i)) == 0)
		{
			*label = p2pay_decision_label(i);
			return i;
		}
	}
	*label = text;
	return DECISION_UNRANKED;
}

/* A string-valued column's text: uuid, numeric and text directly, else by its type. */
static char *
column_text(RelInfo *info, StreamColumn col, Datum d)
{
	ColumnInfo *ci = &info->col[col];

	if (!ci->native)
		return OutputFunctionCall(&ci->output, d);
	switch (col)
	{
		case SC_TRANSACTION_ID:
		case SC_PAYER_ID:
		case SC_PAYEE_ID:
		case SC_PAYMENT_METHOD_ID:
			return DatumGetCString(DirectFunctionCall1(uuid_out, d));
		case SC_AMOUNT:
			return DatumGetCString(DirectFunctionCall1(numeric_out, d));
		case SC_CURRENCY:
			return TextDatumGetCString(d);
		default:
			return OutputFunctionCall(&ci->output, d);
	}
}

/*
 * Write one column of a payment: as p2pay made it, in the documented JSON
 * form; of any other type, as its type's output text; null and lost as null.
 */
static void
write_column(JsonWriter *w, RelInfo *info, const PaymentRow *row, StreamColumn col,
			 const char *decision)
{
	const char *key = stream_column_names[col];
	Datum		d = row->value[col];

	if (col == SC_DECISION)
	{
		json_string(w, key, decision);
		return;
	}
	if (row->isnull[col])
	{
		json_null(w, key);
		return;
	}
	if (!info->col[col].native)
	{
		json_string(w, key, column_text(info, col, d));
		return;
	}
	switch (col)
	{
		case SC_CREATED_AT:
			json_timestamp(w, key, DatumGetTimestampTz(d));
			break;
		case SC_RISK_SCORE:
			json_double(w, key, DatumGetFloat8(d));
			break;
		case SC_REASONS:
			json_text_array(w, key, d);
			break;
		default:
			json_string(w, key, column_text(info, col, d));
			break;
	}
}

/*
 * Whether a key's text can be written as a JSON string as it is, with no
 * escape: then it ends at the first quote, where a consumer looks for it.
 */
static bool
key_is_plain(const char *text)
{
	for (const unsigned char *p = (const unsigned char *) text; *p; p++)
		if (*p == '"' || *p == '\\' || *p < 0x20)
			return false;
	return true;
}

/*
 * The field every event starts with under the option key: the key
 * column's text, or null when the payment has none (a truncate, a null or
 * lost value, a text that would need escapes).
 */
static void
write_key(JsonWriter *w, RelInfo *info, const PaymentRow *row, StreamColumn col)
{
	char	   *text;

	Assert(w->first);
	if (row == NULL || row->isnull[col] || row->lost[col])
	{
		json_null(w, "key");
		return;
	}
	text = column_text(info, col, row->value[col]);
	/* uuid_out writes the 36 characters of the canonical form */
	Assert(!info->col[col].native || strlen(text) == 36);
	if (key_is_plain(text))
		json_string(w, "key", text);
	else
		json_null(w, "key");
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
 * Warn that an event went out with null for values the WAL doesn't hold,
 * naming the payment and the columns, so that whoever reads the server log
 * knows which payment to look up and how to stop it happening again.
 */
static void
warn_lost(RelInfo *info, const char *event, const PaymentRow *row, bool old_decision_lost)
{
	StringInfoData cols;

	initStringInfo(&cols);
	for (int col = 0; col < SC_COUNT; col++)
	{
		if (col == SC_DECISION && old_decision_lost)
			appendStringInfo(&cols, "%sold_decision", cols.len > 0 ? ", " : "");
		if (row->lost[col])
			appendStringInfo(&cols, "%s%s", cols.len > 0 ? ", " : "", stream_column_names[col]);
	}
	if (cols.len == 0)
		return;

	if (row->isnull[SC_TRANSACTION_ID])
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s event of a payment whose transaction_id is not in the WAL is missing %s",
						event, cols.data),
				 errdetail("The WAL record of the change does not hold these values of p2pay.payments; the event carries null in their place."),
				 errhint("Only REPLICA IDENTITY FULL logs the whole old row: ALTER TABLE p2pay.payments REPLICA IDENTITY FULL.")));
	else
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s event of payment %s is missing %s", event,
						p2pay_echo(column_text(info, SC_TRANSACTION_ID, row->value[SC_TRANSACTION_ID])),
						cols.data),
				 errdetail("The WAL record of the change does not hold these values of p2pay.payments; the event carries null in their place."),
				 errhint("Only REPLICA IDENTITY FULL logs the whole old row: ALTER TABLE p2pay.payments REPLICA IDENTITY FULL.")));
}

/*
 * Write one payment event: the columns of row with its decision's label,
 * and for a decision change (old: the old row) old_decision before decision.
 */
static void
emit_payment(LogicalDecodingContext *ctx, StreamState *state, ReorderBufferTXN *txn,
			 XLogRecPtr lsn, RelInfo *info, const char *event,
			 const PaymentRow *row, const char *decision,
			 const PaymentRow *old, const char *old_decision)
{
	JsonWriter	w;

	Assert(info->is_payments && info->valid);
	Assert(CurrentMemoryContext == state->change_cxt);
	Assert(old == NULL || strcmp(event, "decision_changed") == 0);
	OutputPluginPrepareWrite(ctx, true);
	json_begin(&w, ctx->out);
	if (state->key_column >= 0)
		write_key(&w, info, row, (StreamColumn) state->key_column);
	json_string(&w, "event", event);
	for (int col = 0; col < SC_COUNT; col++)
	{
		if (col == SC_DECISION && old != NULL)
			json_string(&w, "old_decision", old_decision);
		write_column(&w, info, row, col, decision);
	}
	write_position(&w, state, txn, lsn);
	json_end(&w);
	OutputPluginWrite(ctx, true);
	state->wrote_in_txn = true;

	warn_lost(info, event, row, old != NULL && old->lost[SC_DECISION]);
}

/* Whether two rows' decisions are known to be the same. */
static bool
same_decision(int rank, const char *label, int old_rank, const char *old_label)
{
	if (rank != old_rank)
		return false;
	if (rank != DECISION_UNRANKED)
		return true;
	return label != NULL && old_label != NULL && strcmp(label, old_label) == 0;
}

/* One decoded change: emit it if it is a payment event the options ask for. */
static void
stream_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, Relation rel,
			  ReorderBufferChange *change)
{
	StreamState *state = ctx->output_plugin_private;
	RelInfo    *info;
	TupleDesc	desc = RelationGetDescr(rel);
	MemoryContext old_cxt = MemoryContextSwitchTo(state->change_cxt);
	HeapTuple	newtup = p2pay_change_newtuple(change);
	HeapTuple	oldtup = p2pay_change_oldtuple(change);
	bool		old_whole = rel->rd_rel->relreplident == REPLICA_IDENTITY_FULL;
	PaymentRow	row;
	PaymentRow	old;
	const char *label;
	const char *old_label;
	bool		emitted = false;

	Assert(state != NULL && state->change_cxt != NULL);
	info = relinfo_get(rel);
	Assert(info->valid);
	if (!info->is_payments)
	{
		MemoryContextSwitchTo(old_cxt);
		MemoryContextReset(state->change_cxt);
		note_skipped(ctx, state);
		return;
	}

	switch (change->action)
	{
		case REORDER_BUFFER_CHANGE_INSERT:
			{
				int			rank;

				read_row(info, desc, newtup, true, NULL, &row);
				rank = decision_rank(info, &row, &label);
				if (rank >= state->min_decision)
					emit_payment(ctx, state, txn, change->lsn, info, "flagged", &row, label, NULL, NULL);
				else if (rank == DECISION_APPROVE && state->include_approved)
					emit_payment(ctx, state, txn, change->lsn, info, "approved", &row, label, NULL, NULL);
				else
					break;
				emitted = true;
				break;
			}
		case REORDER_BUFFER_CHANGE_UPDATE:
			{
				int			rank;
				int			old_rank;

				read_row(info, desc, newtup, true, oldtup, &row);
				read_row(info, desc, oldtup, old_whole, NULL, &old);
				rank = decision_rank(info, &row, &label);
				old_rank = decision_rank(info, &old, &old_label);
				/* an old decision the WAL doesn't hold is unknown: emitted if it passes */
				if (old.lost[SC_DECISION])
				{
					old_rank = -1;
					old_label = NULL;
				}
				else if (same_decision(rank, label, old_rank, old_label))
					break;
				if (Max(rank, old_rank) < state->min_decision && !state->include_approved)
					break;
				emit_payment(ctx, state, txn, change->lsn, info, "decision_changed",
							 &row, label, &old, old_label);
				emitted = true;
				break;
			}
		case REORDER_BUFFER_CHANGE_DELETE:
			/* every reversal, with as much of the row as the WAL holds */
			if (state->archiving)
				break;
			read_row(info, desc, oldtup, old_whole, NULL, &row);
			decision_rank(info, &row, &label);
			emit_payment(ctx, state, txn, change->lsn, info, "deleted", &row, label, NULL, NULL);
			emitted = true;
			break;
		default:
			break;
	}

	MemoryContextSwitchTo(old_cxt);
	MemoryContextReset(state->change_cxt);
	if (!emitted)
		note_skipped(ctx, state);
}

/*
 * A TRUNCATE of p2pay.payments is an event of its own.  Its partitions,
 * which it truncates with it, are listed beside it; a partition truncated
 * alone is not an event.
 */
static void
stream_truncate(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, int nrelations,
				Relation relations[], ReorderBufferChange *change)
{
	StreamState *state = ctx->output_plugin_private;
	MemoryContext old_cxt = MemoryContextSwitchTo(state->change_cxt);
	bool		emitted = false;

	for (int i = 0; i < nrelations && !emitted; i++)
	{
		if (relinfo_get(relations[i])->is_root)
		{
			JsonWriter	w;

			OutputPluginPrepareWrite(ctx, true);
			json_begin(&w, ctx->out);
			if (state->key_column >= 0)
				write_key(&w, NULL, NULL, (StreamColumn) state->key_column);
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

/*
 * A message of p2pay's delete triggers: whether the deletes of payments
 * that follow in the transaction are archived.  Other messages, and
 * non-transactional ones, are not p2pay's.
 */
static void
stream_message(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, XLogRecPtr lsn,
			   bool transactional, const char *prefix, Size size, const char *message)
{
	StreamState *state = ctx->output_plugin_private;

	if (transactional && strcmp(prefix, P2PAY_MESSAGE_PREFIX) == 0)
	{
		if (size == strlen(P2PAY_MESSAGE_ARCHIVE) &&
			memcmp(message, P2PAY_MESSAGE_ARCHIVE, size) == 0)
			state->archiving = true;
		else if (size == strlen(P2PAY_MESSAGE_REVERSE) &&
				 memcmp(message, P2PAY_MESSAGE_REVERSE, size) == 0)
			state->archiving = false;
	}
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
	cb->message_cb = stream_message;
	cb->commit_cb = stream_commit;
	cb->shutdown_cb = stream_shutdown;
}
