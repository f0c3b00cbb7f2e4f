/*
 * store.c: the per-account state tables (pair_stats, account_stats,
 * account_daily) and the payments as the trigger reads them,
 * through the tables' indexes and the heap directly rather than through
 * SQL: the trigger's FactSource (facts.h), recording a payment in the
 * state with its index entries, and forgetting a reversed one.
 *
 * An ordinary insert probes about ten keys and index ranges, each bounded
 * by a limit, a day or an hour of one payer's rows or one key, and writes
 * five state rows (six in the 1.0/1.1 layout).  Through SPI most of that
 * time would go into starting and driving the executor for plans of some
 * thirty nodes; here each read is an index scan and each write a
 * heap_insert, heap_update or heap_delete with its index entries, the way
 * PostgreSQL maintains its own catalogs.  The money-flow facts
 * (pass_through's sum, cycle's loops) are read only for large payments, in
 * SQL (moneyflow.c).
 *
 * Recording a payment (record_payment) is the state's one derivation from
 * the payments: the trigger records each insert through it, and
 * rebuild_state() every stored payment, after emptying the state.  A
 * reversal (p2pay_forget_payment) takes a payment out again through the
 * same rows and changes (RowChange), inverted.
 *
 * Which facts are read, and where each count stops, is facts.c's to say;
 * this file answers its questions.  backtest.c answers the same questions
 * from the payments alone, and t/019_fact_agreement.pl compares the
 * verdicts payment by payment.
 *
 * Locking: every write here happens with the payment's accounts locked
 * (locks.c), taken before the facts are read.
 *
 * Snapshot: the facts are read with one snapshot taken after the accounts
 * are locked (a new one per payment under READ COMMITTED, the
 * transaction's under REPEATABLE READ), after a command-counter increment
 * so that the payments and state rows written earlier in the transaction,
 * and in the same statement, are seen.  The writes follow the reads.
 * Under REPEATABLE READ a state row changed since the snapshot is a
 * serialization failure, as for an UPDATE.
 *
 * The state tables' layout is checked when their descriptions are loaded
 * (once per backend, again after any DDL on them): the columns p2pay
 * created, in order, and plain indexes (no expressions or predicates), so
 * that index entries can be formed from the columns alone.  Triggers,
 * rules and row security on the state tables are not applied: the tables
 * are the extension's own bookkeeping.
 *
 * Two layouts are served.  1.2's keeps a payer's amounts per hour in its
 * account_daily row of each UTC day (out_hours, out_hour_sums): recording
 * a payment adds its amount to the row the payer's day count already
 * updates, and the velocity amount reads at most one row per day of its
 * window.  A schema still at 1.0/1.1 (until ALTER EXTENSION p2pay UPDATE)
 * keeps them in payer_hourly, one row per payer and UTC hour, which the
 * code below still reads and writes for it (cache.legacy).
 */
#include "postgres.h"

#include "p2pay.h"
#include "catalog.h"
#include "compat.h"
#include "conflict.h"
#include "facts.h"
#include "locks.h"
#include "moneyflow.h"
#include "rules.h"
#include "store.h"
#include "timeutil.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/spi.h"
#include "catalog/index.h"
#include "catalog/pg_am.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "partitioning/partdesc.h"
#include "storage/bufmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "catalog/pg_type.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/partcache.h"
#include "utils/syscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

/* The tables read or written, and the indexes scanned. */
typedef enum StateRel
{
	REL_PAYMENTS,
	REL_PAIR,
	REL_ACCOUNT,
	REL_DAILY,
	REL_HOURLY,
	NUM_RELS
} StateRel;

typedef enum StateIdx
{
	IDX_PAIR,					/* pair_stats (payer_id, payee_id) */
	IDX_PAIR_PAYER_LAST,		/* pair_stats (payer_id, last_at) */
	IDX_PAIR_PAYEE_LAST,		/* pair_stats (payee_id, last_at) */
	IDX_ACCOUNT,				/* account_stats (user_id) */
	IDX_DAILY,					/* account_daily (user_id, day) */
	IDX_HOURLY,					/* payer_hourly (payer_id, hour), 1.0/1.1 only */
	NUM_IDXS
} StateIdx;

/* For the counts that take a StateIdx: the payer's payments (see PaySource). */
#define IDX_PAYMENTS NUM_IDXS

static const char *const rel_names[NUM_RELS] = {
	"payments", "pair_stats", "account_stats", "account_daily", "payer_hourly"
};

/*
 * The state tables' indexes scanned, each with the key columns the scans'
 * keys are on (by attribute number in its table), and whether the code
 * relies on it being unique.  Payments are scanned through each table that
 * holds them (see PaySource).
 */
static const struct
{
	const char *name;
	StateRel	rel;
	int			nkeys;
	AttrNumber	keys[2];
	bool		unique;
}			idx_defs[NUM_IDXS] = {
	{"pair_stats_pkey", REL_PAIR, 2, {1, 2}, true},
	{"pair_stats_payer_last_idx", REL_PAIR, 2, {1, 4}, false},
	{"pair_stats_payee_last_idx", REL_PAIR, 2, {2, 4}, false},
	{"account_stats_pkey", REL_ACCOUNT, 1, {1}, true},
	{"account_daily_pkey", REL_DAILY, 2, {1, 2}, true},
	{"payer_hourly_pkey", REL_HOURLY, 2, {1, 2}, true},
};

/* The columns of payments that the scans of other payments read. */
static const ColumnSpec pay_cols[] = {
	COLUMN_NOT_NULL("payer_id", UUIDOID),
	COLUMN_NOT_NULL("payee_id", UUIDOID),
	COLUMN_NOT_NULL("created_at", TIMESTAMPTZOID),
	COLUMN("amount_base", NUMERICOID),
};

/*
 * The state tables' columns, in the order p2pay creates them: the writes
 * form whole rows and read every column without a null test.
 */
enum
{
	PAIR_PAYER = 1, PAIR_PAYEE, PAIR_FIRST_AT, PAIR_LAST_AT, PAIR_N, PAIR_TOTAL, PAIR_NATTS = PAIR_TOTAL
};
enum
{
	ACCT_USER = 1, ACCT_OUT_COUNT, ACCT_OUT_SUM, ACCT_IN_COUNT, ACCT_IN_SUM, ACCT_NATTS = ACCT_IN_SUM
};
enum
{
	DAILY_USER = 1, DAILY_DAY, DAILY_OUT_COUNT, DAILY_OUT_PAYEES, DAILY_IN_PAYERS,
	DAILY_OUT_HOURS, DAILY_OUT_HOUR_SUMS, DAILY_NATTS = DAILY_OUT_HOUR_SUMS,
	DAILY_NATTS_1_1 = DAILY_IN_PAYERS
};
enum
{
	HOURLY_PAYER = 1, HOURLY_HOUR, HOURLY_N, HOURLY_TOTAL, HOURLY_NATTS = HOURLY_TOTAL
};

static const ColumnSpec pair_cols[] = {
	COLUMN_NOT_NULL("payer_id", UUIDOID), COLUMN_NOT_NULL("payee_id", UUIDOID),
	COLUMN_NOT_NULL("first_at", TIMESTAMPTZOID), COLUMN_NOT_NULL("last_at", TIMESTAMPTZOID),
	COLUMN_NOT_NULL("n", INT8OID), COLUMN_NOT_NULL("total", NUMERICOID)
};
static const ColumnSpec acct_cols[] = {
	COLUMN_NOT_NULL("user_id", UUIDOID), COLUMN_NOT_NULL("out_count", INT8OID),
	COLUMN_NOT_NULL("out_sum", NUMERICOID), COLUMN_NOT_NULL("in_count", INT8OID),
	COLUMN_NOT_NULL("in_sum", NUMERICOID)
};
static const ColumnSpec daily_cols[] = {
	COLUMN_NOT_NULL("user_id", UUIDOID), COLUMN_NOT_NULL("day", DATEOID),
	COLUMN_NOT_NULL("out_count", INT8OID), COLUMN_NOT_NULL("out_payees", INT8OID),
	COLUMN_NOT_NULL("in_payers", INT8OID), COLUMN_NOT_NULL("out_hours", INT2ARRAYOID),
	COLUMN_NOT_NULL("out_hour_sums", NUMERICARRAYOID)
};
static const ColumnSpec hourly_cols[] = {
	COLUMN_NOT_NULL("payer_id", UUIDOID), COLUMN_NOT_NULL("hour", TIMESTAMPTZOID),
	COLUMN_NOT_NULL("n", INT8OID), COLUMN_NOT_NULL("total", NUMERICOID)
};

static const struct
{
	const ColumnSpec *cols;
	int			natts;
}			state_cols[NUM_RELS] = {
	{NULL, 0},
	{pair_cols, PAIR_NATTS},
	{acct_cols, ACCT_NATTS},
	{daily_cols, DAILY_NATTS},
	{hourly_cols, HOURLY_NATTS},
};

/*
 * The most columns of a state row p2pay writes: the size of the buffers
 * that hold one row's values, and (plus one, by attribute number) which of
 * them changed.
 */
#define STATE_MAX_NATTS 8
StaticAssertDecl(PAIR_NATTS <= STATE_MAX_NATTS && ACCT_NATTS <= STATE_MAX_NATTS &&
				 DAILY_NATTS <= STATE_MAX_NATTS && HOURLY_NATTS <= STATE_MAX_NATTS,
				 "a state row's values must fit STATE_MAX_NATTS");

/* One index of a state table, as the writes maintain it. */
typedef struct StateIndex
{
	Oid			oid;
	IndexInfo  *info;
} StateIndex;

/*
 * A table holding payments: p2pay.payments itself, or, when it is
 * partitioned, each of its leaf partitions, scanned through its own index
 * on (payer_id, created_at), with its own column numbers (a partition's
 * may differ from its parent's).  When every level above a partition is
 * range-partitioned on created_at, the partition holds only created_at in
 * [lo, hi), and a scan of a window skips the partitions outside it.
 */
typedef struct PaySource
{
	Oid			relid;
	Oid			index;
	AttrNumber	payer,
				payee,
				created_at,
				amount_base;
	bool		bounded;
	TimestampTz lo;
	TimestampTz hi;
} PaySource;

/* The name of the index on (payer_id, created_at) of a plain payments. */
#define PAYER_TIME_INDEX "payments_payer_time_idx"

/*
 * What is known of the tables, per backend, for the schema in nspid;
 * valid is cleared by any relcache invalidation of one of them (DDL,
 * VACUUM, ANALYZE) and everything is looked up again.
 */
static struct
{
	P2payCacheState state;
	Oid			nspid;
	Oid			rels[NUM_RELS];
	Oid			idxs[NUM_IDXS];
	int			nindexes[NUM_RELS];
	StateIndex *indexes[NUM_RELS];	/* the ones the writes maintain */
	PaySource  *sources;		/* bounded ones by lo, latest first, then the rest */
	int			nsources;
	bool		legacy;			/* the 1.0/1.1 layout: payer_hourly, see load_cache */
	MemoryContext cxt;
}			cache;

/*
 * How many columns p2pay writes in a state table: account_daily has its
 * hour arrays only in the 1.2 layout.
 */
static int
natts_of(StateRel r)
{
	if (r == REL_DAILY && cache.legacy)
		return DAILY_NATTS_1_1;
	return state_cols[r].natts;
}

/* Whether the tables of the layout in use hold a state table or index. */
static bool
rel_used(StateRel r)
{
	return r != REL_HOURLY || cache.legacy;
}

static bool
idx_used(StateIdx ix)
{
	return rel_used(idx_defs[ix].rel);
}

/*
 * Check, before a direct access that relies on it, that the layout loaded
 * is the one the access is written for (legacy: 1.0/1.1).
 */
static void
require_layout(bool legacy, const char *what)
{
	if (cache.legacy != legacy)
		elog(ERROR, "p2pay: %s needs the %s layout of the state", what, legacy ? "1.1" : "1.2");
}

static bool callback_registered = false;

static void
state_relcache_callback(Datum arg, Oid relid)
{
	if (!p2pay_cache_concerned(&cache.state, relid))
		return;
	for (int i = 0; i < NUM_RELS; i++)
		if (cache.rels[i] == relid)
			cache.state.valid = false;
	for (int i = 0; i < NUM_IDXS; i++)
		if (cache.idxs[i] == relid)
			cache.state.valid = false;
	for (int i = 0; i < cache.nsources; i++)
		if (cache.sources[i].relid == relid || cache.sources[i].index == relid)
			cache.state.valid = false;
}

/*
 * Check a state table: p2pay's columns in order, of their types and NOT
 * NULL, then only columns dropped since; and gather the indexes the
 * writes keep, refusing the kinds whose entries can't be formed from the
 * columns alone.
 */
static void
load_state_table(StateRel r)
{
	Relation	rel = p2pay_open_checked(cache.rels[r]);
	TupleDesc	desc = RelationGetDescr(rel);
	List	   *indexes;
	ListCell   *lc;
	int			n = 0;

	if (desc->natts < natts_of(r))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("p2pay.%s is not as p2pay created it", rel_names[r]),
				 errdetail("A table with the %d columns p2pay defines is expected.",
						   natts_of(r))));
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (i < natts_of(r))
		{
			const ColumnSpec *spec = &state_cols[r].cols[i];

			if (att->attisdropped || strcmp(NameStr(att->attname), spec->name) != 0)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("p2pay.%s is not as p2pay created it", rel_names[r]),
						 errdetail("Column %d should be \"%s\".", i + 1, spec->name),
						 errhint("The state tables are p2pay's own; restore the column, or count the state again after restoring the table from p2pay's script.")));
			(void) p2pay_column(rel, spec);
		}
		else if (!att->attisdropped)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("p2pay.%s is not as p2pay created it", rel_names[r]),
					 errdetail("It has a column \"%s\" that p2pay does not write.",
							   p2pay_echo(NameStr(att->attname))),
					 errhint("The state tables are p2pay's own; drop what was added to them.")));
	}

	indexes = RelationGetIndexList(rel);
	cache.indexes[r] = MemoryContextAlloc(cache.cxt, sizeof(StateIndex) * Max(list_length(indexes), 1));
	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);
		MemoryContext old = MemoryContextSwitchTo(cache.cxt);
		IndexInfo  *info = BuildIndexInfo(index);

		MemoryContextSwitchTo(old);
		if (info->ii_Expressions != NIL || info->ii_Predicate != NIL ||
			info->ii_ExclusionOps != NULL || !index->rd_index->indimmediate)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("index \"%s\" on p2pay.%s is not supported",
							p2pay_echo(RelationGetRelationName(index)), rel_names[r]),
					 errdetail("p2pay maintains the state tables' indexes itself: plain columns, no predicate, no exclusion, not deferrable."),
					 errhint("Drop the index.")));
		cache.indexes[r][n].oid = RelationGetRelid(index);
		cache.indexes[r][n].info = info;
		n++;
		index_close(index, AccessShareLock);
	}
	cache.nindexes[r] = n;
	list_free(indexes);

	for (int i = 0; i < NUM_IDXS; i++)
		if (idx_defs[i].rel == r)
			p2pay_check_scanned_index(cache.idxs[i], rel, idx_defs[i].keys, idx_defs[i].nkeys,
								idx_defs[i].unique);
	table_close(rel, AccessShareLock);
}

/* Check a table holding payments: its columns, and an index to scan them by. */
static void
load_source(Relation rel, PaySource *src)
{
	List	   *indexes;
	ListCell   *lc;
	AttrNumber	keys[2];
	const char *problem = "It has no index.";

	p2pay_require_heap(rel);
	src->relid = RelationGetRelid(rel);
	src->payer = p2pay_column(rel, &pay_cols[0]);
	src->payee = p2pay_column(rel, &pay_cols[1]);
	src->created_at = p2pay_column(rel, &pay_cols[2]);
	src->amount_base = p2pay_column(rel, &pay_cols[3]);
	keys[0] = src->payer;
	keys[1] = src->created_at;

	/* a plain payments: the index p2pay created; a partition: any that fits */
	src->index = InvalidOid;
	if (!rel->rd_rel->relispartition)
	{
		src->index = p2pay_relid(PAYER_TIME_INDEX);
		p2pay_check_scanned_index(src->index, rel, keys, 2, false);
		return;
	}
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);

		problem = p2pay_index_problem(index, rel, keys, 2, false);
		index_close(index, AccessShareLock);
		if (problem == NULL)
		{
			src->index = lfirst_oid(lc);
			break;
		}
	}
	list_free(indexes);
	if (!OidIsValid(src->index))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("partition %s of p2pay.payments has no index p2pay can scan",
						RelationGetRelationName(rel)),
				 errdetail("p2pay reads each partition through a B-tree index on (payer_id, created_at), ascending, without a predicate. %s",
						   problem),
				 errhint("An index on p2pay.payments (payer_id, created_at) gives every partition one: CREATE INDEX ON p2pay.payments (payer_id, created_at) INCLUDE (payee_id, amount_base).")));
}

/*
 * Narrow [*lo, *hi) to the created_at a partition of parent holds, when
 * parent is range-partitioned on created_at alone; *bounded tells whether
 * the range is known.  A default partition holds whatever its parent's
 * other partitions don't, within its parent's range.
 */
static void
narrow_bounds(Relation parent, AttrNumber created_at, Oid child, bool *bounded,
			  TimestampTz *lo, TimestampTz *hi)
{
	PartitionKey key = RelationGetPartitionKey(parent);
	HeapTuple	tup;
	Datum		d;
	bool		isnull;
	PartitionBoundSpec *spec;

	if (key == NULL || key->strategy != PARTITION_STRATEGY_RANGE || key->partnatts != 1 ||
		key->partattrs[0] != created_at || key->parttypid[0] != TIMESTAMPTZOID)
	{
		*bounded = false;
		return;
	}
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(child));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "p2pay: cache lookup failed for relation %u", child);
	d = SysCacheGetAttr(RELOID, tup, Anum_pg_class_relpartbound, &isnull);
	spec = isnull ? NULL : (PartitionBoundSpec *) stringToNode(TextDatumGetCString(d));
	ReleaseSysCache(tup);
	if (spec == NULL || spec->is_default || spec->strategy != PARTITION_STRATEGY_RANGE)
		return;

	{
		PartitionRangeDatum *lower = linitial_node(PartitionRangeDatum, spec->lowerdatums);
		PartitionRangeDatum *upper = linitial_node(PartitionRangeDatum, spec->upperdatums);

		if (lower->kind == PARTITION_RANGE_DATUM_VALUE)
			*lo = Max(*lo, DatumGetTimestampTz(castNode(Const, lower->value)->constvalue));
		else if (lower->kind == PARTITION_RANGE_DATUM_MAXVALUE)
			*lo = DT_NOEND;
		if (upper->kind == PARTITION_RANGE_DATUM_VALUE)
			*hi = Min(*hi, DatumGetTimestampTz(castNode(Const, upper->value)->constvalue));
		else if (upper->kind == PARTITION_RANGE_DATUM_MINVALUE)
			*hi = DT_NOBEGIN;
	}
}

/*
 * Gather the leaf partitions under a partitioned rel (locked), each with
 * the range of created_at it holds as far as the partitioning tells.
 */
static void
gather_partitions(Relation rel, bool bounded, TimestampTz lo, TimestampTz hi, List **out)
{
	PartitionDesc pd = RelationGetPartitionDesc(rel, false);
	AttrNumber	created_at = p2pay_column(rel, &pay_cols[2]);

	for (int i = 0; i < pd->nparts; i++)
	{
		Relation	child = try_table_open(pd->oids[i], AccessShareLock);
		bool		child_bounded = bounded;
		TimestampTz child_lo = lo;
		TimestampTz child_hi = hi;

		if (child == NULL)
			continue;			/* dropped since the partitions were listed */
		narrow_bounds(rel, created_at, pd->oids[i], &child_bounded, &child_lo, &child_hi);
		if (child->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
			gather_partitions(child, child_bounded, child_lo, child_hi, out);
		else
		{
			PaySource  *src = MemoryContextAllocZero(cache.cxt, sizeof(PaySource));

			load_source(child, src);
			src->bounded = child_bounded;
			src->lo = child_lo;
			src->hi = child_hi;
			*out = lappend(*out, src);
		}
		table_close(child, AccessShareLock);
	}
}

/* Order of the payment sources: bounded ones, latest range first, then the rest. */
static int
source_cmp(const void *a, const void *b)
{
	const PaySource *sa = (const PaySource *) a;
	const PaySource *sb = (const PaySource *) b;

	if (sa->bounded != sb->bounded)
		return sa->bounded ? -1 : 1;
	if (!sa->bounded || sa->lo == sb->lo)
		return 0;
	return sa->lo > sb->lo ? -1 : 1;
}

/*
 * Find the tables holding payments: p2pay.payments, or its leaf partitions;
 * check each one's columns and the index it is scanned by.
 */
static void
load_payments(void)
{
	Relation	rel = table_open(cache.rels[REL_PAYMENTS], AccessShareLock);
	List	   *found = NIL;
	ListCell   *lc;
	int			n = 0;

	if (rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
	{
		(void) p2pay_column(rel, &pay_cols[0]);
		(void) p2pay_column(rel, &pay_cols[1]);
		(void) p2pay_column(rel, &pay_cols[3]);
		gather_partitions(rel, true, DT_NOBEGIN, DT_NOEND, &found);
	}
	else
	{
		PaySource  *src = MemoryContextAllocZero(cache.cxt, sizeof(PaySource));

		load_source(rel, src);
		src->bounded = false;
		found = lappend(found, src);
	}

	cache.sources = MemoryContextAlloc(cache.cxt, sizeof(PaySource) * Max(list_length(found), 1));
	foreach(lc, found)
		cache.sources[n++] = *(PaySource *) lfirst(lc);
	cache.nsources = n;
	qsort(cache.sources, n, sizeof(PaySource), source_cmp);
	list_free(found);
	table_close(rel, AccessShareLock);
}

/*
 * Whether the schema is still at the 1.0/1.1 layout, which a library of
 * 1.2 serves until ALTER EXTENSION p2pay UPDATE (docs/upgrading.md): a
 * payer's amounts per hour in payer_hourly, and account_daily without its
 * hour arrays.  A schema with neither is taken for 1.2, so that
 * load_state_table() names what account_daily lacks.
 */
static bool
legacy_layout(Oid nspid)
{
	Oid			daily = p2pay_relid(rel_names[REL_DAILY]);

	if (OidIsValid(get_attnum(daily, "out_hours")))
		return false;
	return OidIsValid(get_relname_relid(rel_names[REL_HOURLY], nspid));
}

static void
load_cache(Oid nspid)
{
	if (cache.state.valid && cache.nspid == nspid)
		return;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(state_relcache_callback, (Datum) 0);
		callback_registered = true;
	}
	if (cache.cxt == NULL)
		cache.cxt = AllocSetContextCreate(TopMemoryContext, "p2pay state tables",
										  ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(cache.cxt);

	/*
	 * Valid once loaded whole, unless an invalidation came meanwhile (the
	 * caller then loads it again once its locks are taken).
	 */
	p2pay_cache_begin_load(&cache.state);
	cache.nspid = nspid;
	cache.legacy = legacy_layout(nspid);
	for (int i = 0; i < NUM_RELS; i++)
		cache.rels[i] = rel_used(i) ? p2pay_relid(rel_names[i]) : InvalidOid;
	for (int i = 0; i < NUM_IDXS; i++)
		cache.idxs[i] = idx_used(i) ? p2pay_relid(idx_defs[i].name) : InvalidOid;
	load_payments();
	for (int r = REL_PAIR; r < NUM_RELS; r++)
		if (rel_used(r))
			load_state_table(r);
	p2pay_cache_end_load(&cache.state);
}

/* The tables and indexes open for one payment. */
typedef struct StateAccess
{
	Relation	rels[NUM_RELS];
	Relation	idxs[NUM_IDXS];
	TupleTableSlot *slots[NUM_RELS];	/* none for payments */
	Relation   *src_rels;		/* each PaySource, opened when first scanned */
	Relation   *src_idxs;
	TupleTableSlot **src_slots;
	Relation   *writes[NUM_RELS];	/* each state table's indexes, as cache.indexes */
	int			nwrites[NUM_RELS];	/* how many (0 for a dry run) */
	Snapshot	snapshot;
	LOCKMODE	lockmode;
	struct Deferred *deferred;	/* rebuilding: the rows written back */
} StateAccess;

/* Release what open_state took; the locks are kept to the end of the transaction. */
static void
release_state(StateAccess *sa)
{
	for (int r = REL_PAIR; r < NUM_RELS; r++)
		for (int k = 0; k < sa->nwrites[r]; k++)
			index_close(sa->writes[r][k], NoLock);
	for (int i = 0; i < NUM_IDXS; i++)
		if (sa->idxs[i] != NULL)
			index_close(sa->idxs[i], NoLock);
	for (int i = 0; i < cache.nsources; i++)
	{
		if (sa->src_rels[i] == NULL)
			continue;
		if (sa->src_slots[i] != NULL)
			ExecDropSingleTupleTableSlot(sa->src_slots[i]);
		index_close(sa->src_idxs[i], NoLock);
		table_close(sa->src_rels[i], NoLock);
	}
	for (int i = 0; i < NUM_RELS; i++)
	{
		if (sa->slots[i] != NULL)
			ExecDropSingleTupleTableSlot(sa->slots[i]);
		if (sa->rels[i] != NULL)
			table_close(sa->rels[i], NoLock);
	}
}

static void
open_state(StateAccess *sa, Oid nspid, bool record)
{
	sa->lockmode = record ? RowExclusiveLock : AccessShareLock;
	for (;;)
	{
		load_cache(nspid);
		for (int i = 0; i < NUM_RELS; i++)
		{
			sa->rels[i] = rel_used(i) ? table_open(cache.rels[i], sa->lockmode) : NULL;
			sa->slots[i] = i == REL_PAYMENTS || !rel_used(i)
				? NULL : table_slot_create(sa->rels[i], NULL);
			sa->nwrites[i] = 0;
		}
		sa->src_rels = palloc0(sizeof(Relation) * Max(cache.nsources, 1));
		sa->src_idxs = palloc0(sizeof(Relation) * Max(cache.nsources, 1));
		sa->src_slots = palloc0(sizeof(TupleTableSlot *) * Max(cache.nsources, 1));
		for (int i = 0; i < NUM_IDXS; i++)
			sa->idxs[i] = idx_used(i) ? index_open(cache.idxs[i], sa->lockmode) : NULL;
		for (int r = REL_PAIR; record && r < NUM_RELS; r++)
		{
			if (!rel_used(r))
				continue;
			sa->writes[r] = palloc(sizeof(Relation) * Max(cache.nindexes[r], 1));
			for (int k = 0; k < cache.nindexes[r]; k++)
				sa->writes[r][k] = index_open(cache.indexes[r][k].oid, RowExclusiveLock);
			sa->nwrites[r] = cache.nindexes[r];
		}

		/*
		 * Taking the locks took in the invalidations of DDL that committed
		 * before: had it changed a state table's indexes, the writes would
		 * miss one.  With the locks held, the cache loaded again stays
		 * right.
		 */
		if (cache.state.valid)
			break;
		release_state(sa);
	}

	/*
	 * As a statement of the trigger's own would: see everything this
	 * transaction wrote so far, with a new snapshot under READ COMMITTED.
	 */
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	sa->snapshot = GetActiveSnapshot();
}

static void
close_state(StateAccess *sa)
{
	PopActiveSnapshot();
	release_state(sa);
}

/*
 * Scans.  Keys are on the index's columns: the first is always an
 * account (uuid equality), the second, if any, a time or day bound.
 */
static IndexScanDesc
begin_scan(StateAccess *sa, StateIdx ix, ScanKey keys, int nkeys)
{
	IndexScanDesc scan = p2pay_index_beginscan(sa->rels[idx_defs[ix].rel], sa->idxs[ix],
											   sa->snapshot, nkeys, 0);

	index_rescan(scan, keys, nkeys, NULL, 0);
	return scan;
}

/* The next row of the scan in its table's slot, or NULL at the end. */
static TupleTableSlot *
next_row(StateAccess *sa, IndexScanDesc scan, StateIdx ix, ScanDirection dir)
{
	TupleTableSlot *slot = sa->slots[idx_defs[ix].rel];

	return index_getnext_slot(scan, dir, slot) ? slot : NULL;
}

static void
key_account(ScanKey key, const pg_uuid_t *id)
{
	ScanKeyInit(key, 1, BTEqualStrategyNumber, F_UUID_EQ, UUIDPGetDatum(id));
}

static void
key_second(ScanKey key, StrategyNumber strategy, RegProcedure proc, Datum value)
{
	ScanKeyInit(key, 2, strategy, proc, value);
}

/* The pair's key in pair_stats. */
static void
key_pair(ScanKey keys, const pg_uuid_t *payer, const pg_uuid_t *payee)
{
	key_account(&keys[0], payer);
	key_second(&keys[1], BTEqualStrategyNumber, F_UUID_EQ, UUIDPGetDatum(payee));
}

/* An account's key in account_daily. */
static void
key_day(ScanKey keys, const pg_uuid_t *id, DateADT day)
{
	key_account(&keys[0], id);
	key_second(&keys[1], BTEqualStrategyNumber, F_DATE_EQ, DateADTGetDatum(day));
}

/* A payer's key in payer_hourly. */
static void
key_hour(ScanKey keys, const pg_uuid_t *payer, TimestampTz hour)
{
	key_account(&keys[0], payer);
	key_second(&keys[1], BTEqualStrategyNumber, F_TIMESTAMPTZ_EQ, TimestampTzGetDatum(hour));
}

/* A scan of an account's rows since an instant (exclusive), in time order. */
static IndexScanDesc
scan_since(StateAccess *sa, StateIdx ix, const pg_uuid_t *account, TimestampTz after)
{
	ScanKeyData keys[2];

	key_account(&keys[0], account);
	key_second(&keys[1], BTGreaterStrategyNumber, F_TIMESTAMPTZ_GT, TimestampTzGetDatum(after));
	return begin_scan(sa, ix, keys, 2);
}

static TimestampTz
get_ts(TupleTableSlot *slot, AttrNumber att)
{
	bool		isnull;

	return DatumGetTimestampTz(slot_getattr(slot, att, &isnull));
}

static Datum
get_numeric(TupleTableSlot *slot, AttrNumber att)
{
	bool		isnull;

	return slot_getattr(slot, att, &isnull);
}

/*
 * Scans of payments: over each table holding them (one, or the leaf
 * partitions) whose range of created_at can meet [from, until], through
 * its index on (payer_id, created_at).  The order of the rows across
 * tables is not a time order; the counts, sums and searches below don't
 * need one.
 */
typedef struct PayScan
{
	StateAccess *sa;
	ScanKeyData keys[3];
	int			nkeys;
	TimestampTz from;
	TimestampTz until;
	int			next;			/* the next source to look at */
	int			cur;			/* the source scanned, or -1 */
	IndexScanDesc scan;
} PayScan;

/*
 * Open a source for this payment, once; false if it holds nothing: dropped
 * meanwhile, or, among partitions, never written (a default partition that
 * no payment fell into, or one made ahead of its dates, costs no index
 * descent).  The size is not asked of an unpartitioned payments: the
 * question, an lseek, would cost more than the descent it can save, and
 * only while the table is empty.
 */
static bool
open_source(StateAccess *sa, int i)
{
	if (sa->src_rels[i] != NULL)
		return sa->src_slots[i] != NULL;
	sa->src_rels[i] = try_table_open(cache.sources[i].relid, AccessShareLock);
	if (sa->src_rels[i] == NULL)
		return false;
	sa->src_idxs[i] = index_open(cache.sources[i].index, AccessShareLock);
	if (cache.nsources > 1 && RelationGetNumberOfBlocks(sa->src_rels[i]) == 0)
		return false;
	sa->src_slots[i] = table_slot_create(sa->src_rels[i], NULL);
	return true;
}

/* Whether source i can hold a payment created in [from, until]. */
static bool
source_meets(int i, TimestampTz from, TimestampTz until)
{
	const PaySource *src = &cache.sources[i];

	return !src->bounded || (src->hi > from && src->lo <= until);
}

/*
 * Begin a scan of the payer's payments with created_at in the range the
 * keys give (keys[1..]); from and until bound it for skipping sources.
 */
static void
pay_scan_begin(PayScan *ps, StateAccess *sa, const pg_uuid_t *payer, ScanKey time_keys,
			   int ntime_keys, TimestampTz from, TimestampTz until)
{
	ps->sa = sa;
	key_account(&ps->keys[0], payer);
	for (int i = 0; i < ntime_keys; i++)
		ps->keys[1 + i] = time_keys[i];
	ps->nkeys = 1 + ntime_keys;
	ps->from = from;
	ps->until = until;
	ps->next = 0;
	ps->cur = -1;
	ps->scan = NULL;
}

/* The next payment of the scan, and its source; NULL at the end. */
static TupleTableSlot *
pay_scan_next(PayScan *ps, const PaySource **src)
{
	StateAccess *sa = ps->sa;

	for (;;)
	{
		if (ps->scan != NULL)
		{
			TupleTableSlot *slot = sa->src_slots[ps->cur];

			if (index_getnext_slot(ps->scan, ForwardScanDirection, slot))
			{
				*src = &cache.sources[ps->cur];
				return slot;
			}
			index_endscan(ps->scan);
			ps->scan = NULL;
		}
		while (ps->next < cache.nsources &&
			   (!source_meets(ps->next, ps->from, ps->until) || !open_source(sa, ps->next)))
			ps->next++;
		if (ps->next >= cache.nsources)
			return NULL;
		ps->cur = ps->next++;
		ps->scan = p2pay_index_beginscan(sa->src_rels[ps->cur], sa->src_idxs[ps->cur],
										 sa->snapshot, ps->nkeys, 0);
		index_rescan(ps->scan, ps->keys, ps->nkeys, NULL, 0);
	}
}

static void
pay_scan_end(PayScan *ps)
{
	if (ps->scan != NULL)
		index_endscan(ps->scan);
	ps->scan = NULL;
}

/* A scan of the payer's payments created after an instant (exclusive). */
static void
pay_scan_since(PayScan *ps, StateAccess *sa, const pg_uuid_t *payer, TimestampTz after)
{
	ScanKeyData key;

	ScanKeyInit(&key, 2, BTGreaterStrategyNumber, F_TIMESTAMPTZ_GT, TimestampTzGetDatum(after));
	pay_scan_begin(ps, sa, payer, &key, 1, after, DT_NOEND);
}

/* How many of the payer's payments since an instant there are, stopping at limit. */
static int64
count_payments(StateAccess *sa, const pg_uuid_t *payer, TimestampTz after, int64 limit)
{
	PayScan		ps;
	const PaySource *src;
	int64		n = 0;

	if (limit <= 0)
		return 0;
	pay_scan_since(&ps, sa, payer, after);
	while (n < limit && pay_scan_next(&ps, &src) != NULL)
		n++;
	pay_scan_end(&ps);
	return n;
}

/*
 * How many rows of an account's range the scan finds, stopping at limit;
 * those whose uuid column skip_att equals skip don't count.
 */
static int64
count_range(StateAccess *sa, StateIdx ix, const pg_uuid_t *account, TimestampTz after,
			AttrNumber skip_att, const pg_uuid_t *skip, int64 limit)
{
	IndexScanDesc scan;
	TupleTableSlot *slot;
	int64		n = 0;

	if (ix == IDX_PAYMENTS)
		return count_payments(sa, account, after, limit);
	if (limit <= 0)
		return 0;
	scan = scan_since(sa, ix, account, after);
	while (n < limit && (slot = next_row(sa, scan, ix, ForwardScanDirection)) != NULL)
	{
		if (skip != NULL)
		{
			bool		isnull;
			pg_uuid_t  *id = DatumGetUUIDP(slot_getattr(slot, skip_att, &isnull));

			if (memcmp(id->data, skip->data, UUID_LEN) == 0)
				continue;
		}
		n++;
	}
	index_endscan(scan);
	Assert(n >= 0 && n <= Max(limit, 0));
	return n;
}

/*
 * The row of a key (one or two columns) in its table, copied, or NULL.
 *
 * The key is unique, so at most one version is visible, whichever way the
 * key's index entries are walked.  A transaction that writes a row many
 * times (a statement's flushes, see Deferred) leaves a version, and mostly
 * an index entry, per write, none of which can be pruned before it ends;
 * equal keys are ordered by heap position, and a new version is mostly
 * placed after the old ones, so the scan starts from the last entry: the
 * visible version is then mostly the first one fetched.
 */
static HeapTuple
fetch_stored(StateAccess *sa, StateIdx ix, ScanKey keys, int nkeys)
{
	IndexScanDesc scan;
	TupleTableSlot *slot;
	HeapTuple	row;

	Assert(idx_defs[ix].unique && nkeys == idx_defs[ix].nkeys);
	scan = begin_scan(sa, ix, keys, nkeys);
	slot = next_row(sa, scan, ix, BackwardScanDirection);
	row = slot ? ExecCopySlotHeapTuple(slot) : NULL;
	index_endscan(scan);
	return row;
}

/*
 * Rows written back rather than through: each row the recording writes is
 * kept in memory as it stands, and reaches its table at the end, in key
 * order, one version of it per flush.  Written through, every payment
 * would leave a version of each row it touches, which PostgreSQL can't
 * prune while the transaction runs, every later read of the row would walk
 * past all of them, and each rewrite of a row the transaction wrote itself
 * takes a combo command id, kept in backend memory to the transaction's
 * end.  The recording itself, what each payment changes, is the same.
 *
 * Two writers keep rows so:
 * - rebuild_state(), every row, flushed when the rows kept outgrow
 *   maintenance_work_mem and at the end.  A row not in memory is read from
 *   its table once rows have been flushed to it (the rebuild emptied it
 *   first).
 * - A statement that inserts payments (see "Statements" below), from its
 *   second payment on: the rows of account_stats and account_daily (and
 *   payer_hourly, 1.0/1.1), flushed when they outgrow work_mem and at the
 *   statement's end.  pair_stats is written through: a pair's row is
 *   rarely written twice in a load, and the money-flow facts read it in
 *   SQL.  A row not in memory is read from its table; the ranges the facts
 *   read (an account's days, a payer's hours) merge the rows kept with the
 *   table's.
 */
typedef struct DeferredKey
{
	int32		ix;				/* the StateIdx of the table's key */
	uint8		first[UUID_LEN];	/* the account */
	uint8		second[UUID_LEN];	/* the payee, or an int64 hour or day */
} DeferredKey;

typedef struct DeferredRow
{
	DeferredKey key;			/* first: the hash key */
	HeapTuple	tup;			/* the row as it stands */
	bool		stored;			/* a version of it is in its table, at tid */
	ItemPointerData tid;
} DeferredRow;

/* A statement's rows kept of one account in account_daily or payer_hourly. */
typedef struct DeferredListKey
{
	int32		ix;
	uint8		account[UUID_LEN];
} DeferredListKey;

typedef struct DeferredList
{
	DeferredListKey key;		/* first: the hash key */
	List	   *rows;			/* DeferredRow pointers (stable in dynahash) */
} DeferredList;

typedef struct Deferred
{
	MemoryContext cxt;			/* the rows and their hash tables */
	HTAB	   *rows;
	HTAB	   *lists;			/* a statement's: each account's kept rows */
	Size		budget;			/* the memory they may take, in bytes */
	bool		flushed[NUM_RELS];	/* whether rows were flushed to the table */
	bool		statement;		/* a statement's rows, not a rebuild's */
	SubTransactionId subid;		/* a statement's: the subtransaction they belong to */
	Oid			filenodes[NUM_RELS];	/* a statement's: each table's storage when begun */
	HTAB	   *versions;		/* a statement's: account_stats rows flushed (Flushed) */
} Deferred;

/*
 * Where a statement's flush wrote an account's row of account_stats.  A
 * row flushed leaves a version in its table per flush, none of which can
 * be pruned while the transaction runs, and the index holds an entry for
 * each; an account paid or paid by in a later flush's payments is read
 * here, at the version the flush wrote, rather than through them all.
 * Only a hint: the version is taken if the snapshot sees it and it is the
 * account's (the key is unique, so it is then the one the index would
 * give), else the index is read.  Its memory, one entry per account
 * flushed, lasts to the end of the transaction (its later statements read
 * through it too), or of the subtransaction the statement's rows belong
 * to, rolled back.
 */
typedef struct Flushed
{
	pg_uuid_t	id;				/* first: the hash key */
	ItemPointerData tid;
	Oid			filenode;		/* the table's storage it was written to */
} Flushed;

/* Begin keeping rows, with none kept. */
static void
deferred_begin(Deferred *d)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(DeferredKey);
	ctl.entrysize = sizeof(DeferredRow);
	ctl.hcxt = d->cxt;
	d->rows = hash_create("p2pay rows kept", 1024, &ctl,
						  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	d->lists = NULL;
	if (d->statement)
	{
		ctl.keysize = sizeof(DeferredListKey);
		ctl.entrysize = sizeof(DeferredList);
		ctl.hcxt = d->cxt;
		d->lists = hash_create("p2pay rows kept by account", 256, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
}

/* Whether rows of table r are kept rather than written through. */
static bool
deferring(const Deferred *d, StateRel r)
{
	return d != NULL && (!d->statement || r != REL_PAIR);
}

/*
 * A row's key: its index, its account, and the second column's len bytes
 * (the payee, or an int64 day or hour; none for account_stats).
 */
static void
deferred_key_of(DeferredKey *key, StateIdx ix, const pg_uuid_t *id, const void *second,
				size_t len)
{
	Assert(len <= sizeof(key->second));
	memset(key, 0, sizeof(DeferredKey));
	key->ix = ix;
	memcpy(key->first, id->data, UUID_LEN);
	if (len > 0)
		memcpy(key->second, second, len);
}

/* The key of a row, from the scan keys of its table's key index. */
static void
deferred_key(DeferredKey *key, StateIdx ix, ScanKey keys, int nkeys)
{
	const pg_uuid_t *id = DatumGetUUIDP(keys[0].sk_argument);
	int64		v;

	Assert(ix == IDX_PAIR || ix == IDX_ACCOUNT || ix == IDX_DAILY || ix == IDX_HOURLY);
	Assert(nkeys == (ix == IDX_ACCOUNT ? 1 : 2));
	if (ix == IDX_ACCOUNT)
		deferred_key_of(key, ix, id, NULL, 0);
	else if (ix == IDX_PAIR)
		deferred_key_of(key, ix, id, DatumGetUUIDP(keys[1].sk_argument)->data, UUID_LEN);
	else
	{
		v = ix == IDX_DAILY ? (int64) DatumGetDateADT(keys[1].sk_argument)
			: (int64) DatumGetTimestampTz(keys[1].sk_argument);
		deferred_key_of(key, ix, id, &v, sizeof(v));
	}
}

/*
 * The row kept of an account's day (account_daily) or hour (payer_hourly),
 * or NULL.
 */
static DeferredRow *
deferred_find(const Deferred *d, StateIdx ix, const pg_uuid_t *id, int64 second)
{
	DeferredKey key;

	Assert(ix == IDX_DAILY || ix == IDX_HOURLY);
	deferred_key_of(&key, ix, id, &second, sizeof(second));
	return hash_search(d->rows, &key, HASH_FIND, NULL);
}

/* The list of an account's kept rows in account_daily or payer_hourly. */
static DeferredList *
deferred_list(const Deferred *d, StateIdx ix, const uint8 *account, HASHACTION action,
			  bool *found)
{
	DeferredListKey key;

	Assert(d->statement && (ix == IDX_DAILY || ix == IDX_HOURLY));
	memset(&key, 0, sizeof(key));
	key.ix = ix;
	memcpy(key.account, account, UUID_LEN);
	return hash_search(d->lists, &key, action, found);
}

/* A statement's rows kept of an account in account_daily or payer_hourly. */
static List *
deferred_rows_of(const Deferred *d, StateIdx ix, const pg_uuid_t *id)
{
	DeferredList *list;

	if (d == NULL || !d->statement)
		return NIL;
	list = deferred_list(d, ix, id->data, HASH_FIND, NULL);
	return list != NULL ? list->rows : NIL;
}

/*
 * A statement's account_stats row of an account at the version its last
 * flush wrote (see Flushed), copied; NULL if there is none, if the table
 * was emptied since (its storage is another), or if the snapshot doesn't
 * see that version as the account's.
 */
static HeapTuple
fetch_flushed(StateAccess *sa, const pg_uuid_t *id)
{
	Deferred   *d = sa->deferred;
	Relation	rel = sa->rels[REL_ACCOUNT];
	Flushed    *at;
	HeapTupleData version;
	Buffer		buffer;
	HeapTuple	row = NULL;

	if (d->versions == NULL)
		return NULL;
	at = hash_search(d->versions, id, HASH_FIND, NULL);
	if (at == NULL || at->filenode != rel->rd_rel->relfilenode)
		return NULL;
	version.t_self = at->tid;
	if (heap_fetch(rel, sa->snapshot, &version, &buffer, false))
	{
		bool		isnull;
		Datum		user = heap_getattr(&version, ACCT_USER, RelationGetDescr(rel), &isnull);

		if (!isnull && memcmp(DatumGetUUIDP(user)->data, id->data, UUID_LEN) == 0)
			row = heap_copytuple(&version);
		ReleaseBuffer(buffer);
	}
	return row;
}

/* The row of a key as it stands, kept or read from its table; or NULL. */
static HeapTuple
deferred_fetch(StateAccess *sa, StateIdx ix, ScanKey keys, int nkeys)
{
	Deferred   *d = sa->deferred;
	DeferredKey key;
	DeferredRow *row;
	HeapTuple	flushed;

	deferred_key(&key, ix, keys, nkeys);
	row = hash_search(d->rows, &key, HASH_FIND, NULL);
	if (row != NULL)
		return row->tup;
	if (!d->statement && !d->flushed[idx_defs[ix].rel])
		return NULL;
	if (ix == IDX_ACCOUNT &&
		(flushed = fetch_flushed(sa, DatumGetUUIDP(keys[0].sk_argument))) != NULL)
		return flushed;
	return fetch_stored(sa, ix, keys, nkeys);
}

/*
 * The row of a key (one or two columns), or NULL: in its table, or, when
 * its rows are kept, as it stands.
 */
static HeapTuple
fetch_row(StateAccess *sa, StateIdx ix, ScanKey keys, int nkeys)
{
	if (deferring(sa->deferred, idx_defs[ix].rel))
		return deferred_fetch(sa, ix, keys, nkeys);
	return fetch_stored(sa, ix, keys, nkeys);
}

/*
 * The row of a key as last committed: an update that found the row
 * changed under it (which only a writer without the account's lock, such
 * as a manual UPDATE, can do) applies itself to this version, as an
 * UPDATE under READ COMMITTED would.
 */
static HeapTuple
fetch_latest(StateAccess *sa, StateIdx ix, ScanKey keys, int nkeys)
{
	Snapshot	saved = sa->snapshot;
	HeapTuple	row;

	sa->snapshot = GetLatestSnapshot();
	row = fetch_stored(sa, ix, keys, nkeys);
	sa->snapshot = saved;
	return row;
}

static HeapTuple
fetch_account(StateAccess *sa, const pg_uuid_t *id)
{
	ScanKeyData key;

	key_account(&key, id);
	return fetch_row(sa, IDX_ACCOUNT, &key, 1);
}

/*
 * An account's normal (see BASELINE_DAYS) and its row of the day, if any;
 * read only when a count reaches its limit (loaded).  In the 1.2 layout
 * (keep_recent), its rows from a day on are kept as read (recent, all the
 * rows of recent_from and later days), which serve the payer's velocity
 * count and amount and either account's counterparties (see account_days):
 * the normal's scan keeps those of the day before and later days, so that
 * one scan reads both.
 */
typedef struct DailyFacts
{
	const pg_uuid_t *id;
	DateADT		day;
	bool		loaded;
	bool		today_read;		/* today read, the normal not (see account_days) */
	bool		keep_recent;
	bool		has_recent;
	int64		days;
	int64		out_count;
	int64		out_payees;
	int64		in_payers;
	HeapTuple	today;
	DateADT		recent_from;
	List	   *recent;
} DailyFacts;

/* An account_daily row's day. */
static DateADT
daily_day(HeapTuple tup, TupleDesc desc)
{
	bool		isnull;

	return DatumGetDateADT(heap_getattr(tup, DAILY_DAY, desc, &isnull));
}

static int64
daily_count(HeapTuple tup, TupleDesc desc, AttrNumber att)
{
	bool		isnull;

	return DatumGetInt64(heap_getattr(tup, att, desc, &isnull));
}

/*
 * A payer's amounts per hour of one UTC day, as account_daily's hour arrays
 * hold them in the 1.2 layout: hours 0..23, ascending, each with the exact
 * sum of the payer's payments in it, present iff that sum is not 0, so
 * that the arrays are a function of the set of payments (rebuild_state()
 * and a recount agree, whatever order the payments came in).
 */
#define HOURS_PER_DAY 24

typedef struct DayHours
{
	int			n;
	int16		hour[HOURS_PER_DAY];
	Datum		sum[HOURS_PER_DAY];
} DayHours;

/* A numeric 0, to sum from (made once: sums are new values, never it). */
static Datum
numeric_zero(void)
{
	static Datum zero = (Datum) 0;

	if (zero == (Datum) 0)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		zero = DirectFunctionCall1(int8_numeric, Int64GetDatum(0));
		MemoryContextSwitchTo(old);
	}
	return zero;
}

/* Whether a numeric is 0. */
static bool
numeric_is_zero(Datum n)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, n, numeric_zero())) == 0;
}

/* A row of account_daily whose hour arrays p2pay can't have written: XX001. */
static void
hours_corrupted(const Datum *values, const char *problem)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("p2pay.account_daily holds a malformed row"),
			 errdetail("The hour arrays of account %s on %s: %s.",
					   DatumGetCString(DirectFunctionCall1(uuid_out, values[DAILY_USER - 1])),
					   DatumGetCString(DirectFunctionCall1(date_out, values[DAILY_DAY - 1])),
					   problem),
			 errhint("The state tables are p2pay's own; count the state again with p2pay.rebuild_state().")));
}

/*
 * The hours of an account_daily row of the 1.2 layout (values as
 * p2pay's columns), checked: one-dimensional arrays from 1 of equal
 * length, without nulls, hours 0..23 ascending, sums finite and not 0.
 */
static void
read_hours(const Datum *values, DayHours *out)
{
	ArrayType  *hours = DatumGetArrayTypeP(values[DAILY_OUT_HOURS - 1]);
	ArrayType  *sums = DatumGetArrayTypeP(values[DAILY_OUT_HOUR_SUMS - 1]);
	int			nh = ArrayGetNItems(ARR_NDIM(hours), ARR_DIMS(hours));
	int			ns = ArrayGetNItems(ARR_NDIM(sums), ARR_DIMS(sums));
	Datum	   *hd;
	Datum	   *sd;
	bool	   *nulls;
	int			n;

	require_layout(false, "reading account_daily's hours");
	out->n = 0;
	if (ARR_ELEMTYPE(hours) != INT2OID || ARR_ELEMTYPE(sums) != NUMERICOID)
		hours_corrupted(values, "their element types are not smallint and numeric");
	if (nh != ns)
		hours_corrupted(values, "out_hours and out_hour_sums differ in length");
	if (nh == 0)
		return;
	if (ARR_NDIM(hours) != 1 || ARR_NDIM(sums) != 1 ||
		ARR_LBOUND(hours)[0] != 1 || ARR_LBOUND(sums)[0] != 1)
		hours_corrupted(values, "they are not one-dimensional arrays numbered from 1");
	if (nh > HOURS_PER_DAY)
		hours_corrupted(values, "a day has 24 hours");
	if (ARR_HASNULL(hours) || ARR_HASNULL(sums))
		hours_corrupted(values, "they hold a null");
	deconstruct_array(hours, INT2OID, sizeof(int16), true, TYPALIGN_SHORT, &hd, &nulls, &n);
	Assert(n == nh);
	deconstruct_array(sums, NUMERICOID, -1, false, TYPALIGN_INT, &sd, &nulls, &n);
	Assert(n == ns);
	for (int i = 0; i < nh; i++)
	{
		int16		h = DatumGetInt16(hd[i]);
		Numeric		sum = DatumGetNumeric(sd[i]);

		if (h < 0 || h >= HOURS_PER_DAY || (i > 0 && h <= out->hour[i - 1]))
			hours_corrupted(values, "out_hours are not hours 0 to 23 in ascending order");
		if (numeric_is_nan(sum) || numeric_is_inf(sum) || numeric_is_zero(sd[i]))
			hours_corrupted(values, "an hour's sum is 0 or not finite");
		out->hour[i] = h;
		out->sum[i] = sd[i];
	}
	out->n = nh;
}

/*
 * Add by to an hour's sum (or, reversing, take it away): an hour whose sum
 * becomes 0 goes, and an hour with no sum to take from stays without one,
 * as a reversal with no row to change changes nothing.
 */
static void
add_to_hour(DayHours *h, int hour, Datum by, bool reverse)
{
	int			i = 0;

	Assert(hour >= 0 && hour < HOURS_PER_DAY);
	while (i < h->n && h->hour[i] < hour)
		i++;
	if (i < h->n && h->hour[i] == hour)
	{
		h->sum[i] = DirectFunctionCall2(reverse ? numeric_sub : numeric_add, h->sum[i], by);
		if (numeric_is_zero(h->sum[i]))
		{
			memmove(&h->hour[i], &h->hour[i + 1], sizeof(int16) * (h->n - i - 1));
			memmove(&h->sum[i], &h->sum[i + 1], sizeof(Datum) * (h->n - i - 1));
			h->n--;
		}
		return;
	}
	if (reverse || numeric_is_zero(by))
		return;
	Assert(h->n < HOURS_PER_DAY);
	memmove(&h->hour[i + 1], &h->hour[i], sizeof(int16) * (h->n - i));
	memmove(&h->sum[i + 1], &h->sum[i], sizeof(Datum) * (h->n - i));
	h->hour[i] = (int16) hour;
	h->sum[i] = by;
	h->n++;
}

/* The hours as the row's two arrays, in values. */
static void
write_hours(const DayHours *h, Datum *values)
{
	Datum		hd[HOURS_PER_DAY];

	if (h->n == 0)
	{
		values[DAILY_OUT_HOURS - 1] = PointerGetDatum(construct_empty_array(INT2OID));
		values[DAILY_OUT_HOUR_SUMS - 1] = PointerGetDatum(construct_empty_array(NUMERICOID));
		return;
	}
	for (int i = 0; i < h->n; i++)
		hd[i] = Int16GetDatum(h->hour[i]);
	values[DAILY_OUT_HOURS - 1] =
		PointerGetDatum(construct_array(hd, h->n, INT2OID, sizeof(int16), true, TYPALIGN_SHORT));
	values[DAILY_OUT_HOUR_SUMS - 1] =
		PointerGetDatum(construct_array((Datum *) h->sum, h->n, NUMERICOID, -1, false, TYPALIGN_INT));
}

/*
 * The hours of an account_daily row (1.2 layout), checked, and the instant
 * its day begins.
 */
static TimestampTz
row_hours(HeapTuple tup, TupleDesc desc, DayHours *h)
{
	Datum		values[STATE_MAX_NATTS];

	for (int i = 0; i < DAILY_NATTS; i++)
	{
		bool		isnull;

		values[i] = heap_getattr(tup, i + 1, desc, &isnull);
	}
	read_hours(values, h);
	return (TimestampTz) DatumGetDateADT(values[DAILY_DAY - 1]) * USECS_PER_DAY;
}

/* Add to sum the hours of an account_daily row that begin at or after from. */
static Datum
sum_hours_from(HeapTuple tup, TupleDesc desc, TimestampTz from, Datum sum)
{
	DayHours	h;
	TimestampTz day_start = row_hours(tup, desc, &h);

	for (int i = 0; i < h.n; i++)
		if (day_start + h.hour[i] * USECS_PER_HOUR >= from)
			sum = DirectFunctionCall2(numeric_add, sum, h.sum[i]);
	return sum;
}

/* Whether account_daily rows hold an hour that begins in [from, until). */
static bool
hour_held(List *rows, TupleDesc desc, TimestampTz from, TimestampTz until)
{
	ListCell   *lc;

	foreach(lc, rows)
	{
		DayHours	h;
		TimestampTz day_start = row_hours(lfirst(lc), desc, &h);

		for (int i = 0; i < h.n; i++)
		{
			TimestampTz hour = day_start + h.hour[i] * USECS_PER_HOUR;

			if (hour >= from && hour < until)
				return true;
		}
	}
	return false;
}

/*
 * A statement's rows kept of an account in account_daily, with days in
 * [from, until], in day order; NULL with none.
 */
static HeapTuple *
kept_days(StateAccess *sa, const pg_uuid_t *id, DateADT from, DateADT until, int *n)
{
	List	   *rows = deferred_rows_of(sa->deferred, IDX_DAILY, id);
	HeapTuple  *out;
	ListCell   *lc;
	TupleDesc	desc = RelationGetDescr(sa->rels[REL_DAILY]);

	*n = 0;
	if (rows == NIL)
		return NULL;
	out = palloc(sizeof(HeapTuple) * list_length(rows));
	foreach(lc, rows)
	{
		HeapTuple	tup = ((DeferredRow *) lfirst(lc))->tup;
		DateADT		d = daily_day(tup, desc);

		if (d >= from && d <= until)
			out[(*n)++] = tup;
	}
	/* few rows: insertion sort by day */
	for (int i = 1; i < *n; i++)
		for (int j = i; j > 0 && daily_day(out[j - 1], desc) > daily_day(out[j], desc); j--)
		{
			HeapTuple	t = out[j];

			out[j] = out[j - 1];
			out[j - 1] = t;
		}
	return out;
}

/* read_daily()'s progress backwards through an account's days. */
typedef struct DaysRead
{
	DailyFacts *out;
	DateADT		first_counted;
	DateADT		first;			/* the earliest day seen */
	bool		keep;			/* keep the rows of the day before and later */
} DaysRead;

/*
 * Take in the next day back; false once it lies before the days counted.
 * A day after the payment's is only kept (keep_recent), not counted.
 */
static bool
read_day(DaysRead *read, HeapTuple tup, TupleDesc desc, bool stored)
{
	DailyFacts *out = read->out;
	DateADT		d = daily_day(tup, desc);

	if (read->keep && d >= out->day - 1)
	{
		if (stored)
			tup = heap_copytuple(tup);
		out->recent = lappend(out->recent, tup);
		stored = false;
	}
	if (d > out->day)
		return true;
	read->first = d;
	if (d < read->first_counted)
		return false;
	if (d == out->day)
	{
		out->today = stored ? heap_copytuple(tup) : tup;
		return true;
	}
	out->out_count += daily_count(tup, desc, DAILY_OUT_COUNT);
	out->out_payees += daily_count(tup, desc, DAILY_OUT_PAYEES);
	out->in_payers += daily_count(tup, desc, DAILY_IN_PAYERS);
	return true;
}

static void
read_daily(StateAccess *sa, DailyFacts *out)
{
	const pg_uuid_t *id = out->id;
	DateADT		day = out->day;
	ScanKeyData keys[2];
	IndexScanDesc scan;
	TupleTableSlot *slot;
	TupleDesc	desc = RelationGetDescr(sa->rels[REL_DAILY]);
	DaysRead	read = {out, day - BASELINE_DAYS, day, false};
	HeapTuple  *kept;
	int			nkept;
	int			k = 0;

	if (out->loaded)
		return;
	out->loaded = true;

	/*
	 * Backwards from the day (from the account's last day, for the payer
	 * whose recent rows are not read yet): its row, then the days counted;
	 * a row before them means the account has all BASELINE_DAYS of history,
	 * the end of the rows that its first day is the last one seen.  A
	 * statement's rows kept take the place of their versions in the table.
	 */
	read.keep = out->keep_recent && !(out->has_recent && out->recent_from <= day - 1);
	if (read.keep)
		out->recent = NIL;
	kept = kept_days(sa, id, DATEVAL_NOBEGIN, read.keep ? DATEVAL_NOEND : day, &nkept);
	key_account(&keys[0], id);
	key_second(&keys[1], BTLessEqualStrategyNumber, F_DATE_LE, DateADTGetDatum(day));
	scan = begin_scan(sa, IDX_DAILY, keys, read.keep ? 1 : 2);
	while ((slot = next_row(sa, scan, IDX_DAILY, BackwardScanDirection)) != NULL)
	{
		HeapTuple	tup = ExecFetchSlotHeapTuple(slot, false, NULL);
		DateADT		d = daily_day(tup, desc);

		if (nkept > 0 && deferred_find(sa->deferred, IDX_DAILY, id, d) != NULL)
			continue;
		for (; k < nkept && daily_day(kept[nkept - 1 - k], desc) > d; k++)
			if (!read_day(&read, kept[nkept - 1 - k], desc, false))
				goto done;
		if (!read_day(&read, tup, desc, true))
			goto done;
	}
	for (; k < nkept; k++)
		if (!read_day(&read, kept[nkept - 1 - k], desc, false))
			break;
done:
	index_endscan(scan);
	out->days = Min(BASELINE_DAYS, (int64) day - (int64) read.first);
	if (read.keep)
	{
		out->has_recent = true;
		out->recent_from = day - 1;
	}
}

/*
 * The payer's payments since an instant, until (exclusive), summed; the
 * sum is numeric, as the hours'.
 */
static Datum
sum_payments(StateAccess *sa, const pg_uuid_t *payer, TimestampTz after,
			 TimestampTz before, Datum sum)
{
	ScanKeyData keys[2];
	PayScan		ps;
	const PaySource *src;
	TupleTableSlot *slot;

	ScanKeyInit(&keys[0], 2, BTGreaterStrategyNumber, F_TIMESTAMPTZ_GT, TimestampTzGetDatum(after));
	ScanKeyInit(&keys[1], 2, BTLessStrategyNumber, F_TIMESTAMPTZ_LT, TimestampTzGetDatum(before));
	pay_scan_begin(&ps, sa, payer, keys, 2, after, before);
	while ((slot = pay_scan_next(&ps, &src)) != NULL)
	{
		bool		isnull;
		Datum		amount = slot_getattr(slot, src->amount_base, &isnull);

		if (!isnull)
			sum = DirectFunctionCall2(numeric_add, sum, amount);
	}
	pay_scan_end(&ps);
	return sum;
}

/*
 * An account's account_daily rows of day from and later days (a payment
 * inserted late counts those after it too), in the 1.2 layout, as
 * known->recent: read once per payment for the facts that ask.  A
 * statement's rows kept take the place of their versions in the table.
 * The rows the account's normal read serve if they reach back to from;
 * else the scan reads the payment's day too (from is on or before it), and
 * keeps that row for the recording (today_read).
 */
static List *
account_days(StateAccess *sa, DateADT from, DailyFacts *known)
{
	const pg_uuid_t *id = known->id;
	TupleDesc	desc = RelationGetDescr(sa->rels[REL_DAILY]);
	ScanKeyData keys[2];
	IndexScanDesc scan;
	TupleTableSlot *slot;
	int			nkept;
	HeapTuple  *kept;
	List	   *rows = NIL;

	Assert(known->keep_recent);
	if (known->has_recent && from >= known->recent_from)
		return known->recent;
	Assert(from <= known->day);
	kept = kept_days(sa, id, from, DATEVAL_NOEND, &nkept);
	if (!known->loaded)
	{
		known->today = NULL;
		known->today_read = true;
	}
	for (int k = 0; k < nkept; k++)
	{
		rows = lappend(rows, kept[k]);
		if (!known->loaded && daily_day(kept[k], desc) == known->day)
			known->today = kept[k];
	}
	key_account(&keys[0], id);
	key_second(&keys[1], BTGreaterEqualStrategyNumber, F_DATE_GE, DateADTGetDatum(from));
	scan = begin_scan(sa, IDX_DAILY, keys, 2);
	while ((slot = next_row(sa, scan, IDX_DAILY, ForwardScanDirection)) != NULL)
	{
		HeapTuple	tup = ExecFetchSlotHeapTuple(slot, false, NULL);
		DateADT		d = daily_day(tup, desc);

		if (nkept > 0 && deferred_find(sa->deferred, IDX_DAILY, id, d) != NULL)
			continue;
		tup = heap_copytuple(tup);
		rows = lappend(rows, tup);
		if (!known->loaded && d == known->day)
			known->today = tup;
	}
	index_endscan(scan);
	known->recent = rows;
	known->recent_from = from;
	known->has_recent = true;
	return rows;
}

/*
 * The payer's whole hours from first_whole_hour on, later ones included,
 * in the 1.2 layout: the hours of its rows from day from (that hour's day,
 * or the day before) on, at most one row per day.
 */
static Datum
paid_in_days(StateAccess *sa, DateADT from, TimestampTz first_whole_hour, DailyFacts *known)
{
	TupleDesc	desc = RelationGetDescr(sa->rels[REL_DAILY]);
	Datum		sum = numeric_zero();
	ListCell   *lc;

	Assert(from <= p2pay_date_of(first_whole_hour));
	foreach(lc, account_days(sa, from, known))
		sum = sum_hours_from(lfirst(lc), desc, first_whole_hour, sum);
	return sum;
}

/*
 * The same in the 1.0/1.1 layout: the payer's buckets in payer_hourly from
 * first_whole_hour on.
 */
static Datum
paid_in_buckets(StateAccess *sa, const pg_uuid_t *payer, TimestampTz first_whole_hour)
{
	ScanKeyData keys[2];
	IndexScanDesc scan;
	TupleTableSlot *slot;
	Datum		sum = numeric_zero();
	List	   *kept;
	TupleDesc	desc;
	ListCell   *lc;

	require_layout(true, "reading payer_hourly");
	kept = deferred_rows_of(sa->deferred, IDX_HOURLY, payer);
	desc = RelationGetDescr(sa->rels[REL_HOURLY]);

	/* a statement's rows kept take the place of their versions in the table */
	foreach(lc, kept)
	{
		HeapTuple	tup = ((DeferredRow *) lfirst(lc))->tup;
		bool		isnull;

		if (DatumGetTimestampTz(heap_getattr(tup, HOURLY_HOUR, desc, &isnull)) >= first_whole_hour)
			sum = DirectFunctionCall2(numeric_add, sum,
									  heap_getattr(tup, HOURLY_TOTAL, desc, &isnull));
	}
	key_account(&keys[0], payer);
	key_second(&keys[1], BTGreaterEqualStrategyNumber, F_TIMESTAMPTZ_GE,
			   TimestampTzGetDatum(first_whole_hour));
	scan = begin_scan(sa, IDX_HOURLY, keys, 2);
	while ((slot = next_row(sa, scan, IDX_HOURLY, ForwardScanDirection)) != NULL)
	{
		if (kept != NIL &&
			deferred_find(sa->deferred, IDX_HOURLY, payer, get_ts(slot, HOURLY_HOUR)) != NULL)
			continue;
		sum = DirectFunctionCall2(numeric_add, sum, get_numeric(slot, HOURLY_TOTAL));
	}
	index_endscan(scan);
	return sum;
}

/*
 * How many of the payer's payments since an instant lie in [lo, hi),
 * stopping at limit.
 */
static int64
count_band(StateAccess *sa, const pg_uuid_t *payer, TimestampTz after,
		   double lo, double hi, int64 limit)
{
	PayScan		ps;
	const PaySource *src;
	TupleTableSlot *slot;
	int64		n = 0;

	if (limit <= 0)
		return 0;
	pay_scan_since(&ps, sa, payer, after);
	while (n < limit && (slot = pay_scan_next(&ps, &src)) != NULL)
	{
		bool		isnull;
		Datum		amount = slot_getattr(slot, src->amount_base, &isnull);
		double		a;

		if (isnull)
			continue;
		a = p2pay_numeric_to_double(amount);
		if (a >= lo && a < hi)
			n++;
	}
	pay_scan_end(&ps);
	return n;
}

/* Whether from paid to at least min since an instant. */
static bool
paid_since(StateAccess *sa, const pg_uuid_t *from, const pg_uuid_t *to,
		   TimestampTz after, double min)
{
	PayScan		ps;
	const PaySource *src;
	TupleTableSlot *slot;
	bool		found = false;

	pay_scan_since(&ps, sa, from, after);
	while (!found && (slot = pay_scan_next(&ps, &src)) != NULL)
	{
		bool		isnull;
		pg_uuid_t  *payee = DatumGetUUIDP(slot_getattr(slot, src->payee, &isnull));
		Datum		amount;

		if (memcmp(payee->data, to->data, UUID_LEN) != 0)
			continue;
		amount = slot_getattr(slot, src->amount_base, &isnull);
		found = !isnull && p2pay_numeric_to_double(amount) >= min;
	}
	pay_scan_end(&ps);
	return found;
}

/* A scan of the payer's payments created in [from, until). */
static void
pay_scan_during(PayScan *ps, StateAccess *sa, const pg_uuid_t *payer, TimestampTz from,
				TimestampTz until)
{
	ScanKeyData keys[2];

	ScanKeyInit(&keys[0], 2, BTGreaterEqualStrategyNumber, F_TIMESTAMPTZ_GE, TimestampTzGetDatum(from));
	ScanKeyInit(&keys[1], 2, BTLessStrategyNumber, F_TIMESTAMPTZ_LT, TimestampTzGetDatum(until));
	pay_scan_begin(ps, sa, payer, keys, 2, from, until);
}

/* Whether payer paid payee in [from, until). */
static bool
paid_during(StateAccess *sa, const pg_uuid_t *payer, const pg_uuid_t *payee,
			TimestampTz from, TimestampTz until)
{
	PayScan		ps;
	const PaySource *src;
	TupleTableSlot *slot;
	bool		found = false;

	pay_scan_during(&ps, sa, payer, from, until);
	while (!found && (slot = pay_scan_next(&ps, &src)) != NULL)
	{
		bool		isnull;
		pg_uuid_t  *id = DatumGetUUIDP(slot_getattr(slot, src->payee, &isnull));

		found = memcmp(id->data, payee->data, UUID_LEN) == 0;
	}
	pay_scan_end(&ps);
	return found;
}

/*
 * The state's view of the payer's previous payment, which survives
 * archiving (a partition dropped, or payments deleted under
 * p2pay.delete_mode = archive): the latest last payment at or before t
 * among its pairs.  A real payment's time, so never later than the true
 * previous payment, and equal to it unless a pair was also paid after t.
 */
static bool
previous_archived(StateAccess *sa, const pg_uuid_t *payer, TimestampTz t, TimestampTz *at)
{
	ScanKeyData keys[2];
	IndexScanDesc scan;
	TupleTableSlot *slot;

	key_account(&keys[0], payer);
	key_second(&keys[1], BTLessEqualStrategyNumber, F_TIMESTAMPTZ_LE, TimestampTzGetDatum(t));
	scan = begin_scan(sa, IDX_PAIR_PAYER_LAST, keys, 2);
	slot = next_row(sa, scan, IDX_PAIR_PAYER_LAST, BackwardScanDirection);
	if (slot != NULL)
		*at = get_ts(slot, PAIR_LAST_AT);
	index_endscan(scan);
	return slot != NULL;
}

/*
 * The payer's payment nearest to t, at or after it (dir forward) or at or
 * before it (backward), to payee if not NULL: the nearest in each table
 * that can hold one (once one is found, tables whose range lies wholly
 * beyond it can't hold a nearer one).
 */
static bool
nearest_payment(StateAccess *sa, const pg_uuid_t *payer, const pg_uuid_t *payee, TimestampTz t,
				ScanDirection dir, TimestampTz *at)
{
	bool		forward = ScanDirectionIsForward(dir);
	ScanKeyData keys[2];
	bool		found = false;

	key_account(&keys[0], payer);
	if (forward)
		key_second(&keys[1], BTGreaterEqualStrategyNumber, F_TIMESTAMPTZ_GE, TimestampTzGetDatum(t));
	else
		key_second(&keys[1], BTLessEqualStrategyNumber, F_TIMESTAMPTZ_LE, TimestampTzGetDatum(t));
	for (int i = 0; i < cache.nsources; i++)
	{
		const PaySource *src = &cache.sources[i];
		TupleTableSlot *slot;
		IndexScanDesc scan;

		if (!source_meets(i, forward ? t : DT_NOBEGIN, forward ? DT_NOEND : t) ||
			(found && src->bounded && (forward ? src->lo >= *at : src->hi <= *at)))
			continue;
		if (!open_source(sa, i))
			continue;
		slot = sa->src_slots[i];
		scan = p2pay_index_beginscan(sa->src_rels[i], sa->src_idxs[i], sa->snapshot, 2, 0);
		index_rescan(scan, keys, 2, NULL, 0);
		while (index_getnext_slot(scan, dir, slot))
		{
			TimestampTz ts = get_ts(slot, src->created_at);
			bool		isnull;

			if (found && (forward ? ts >= *at : ts <= *at))
				break;			/* no nearer one in this table */
			if (payee != NULL &&
				memcmp(DatumGetUUIDP(slot_getattr(slot, src->payee, &isnull))->data,
					   payee->data, UUID_LEN) != 0)
				continue;
			*at = ts;
			found = true;
			break;
		}
		index_endscan(scan);
	}
	return found;
}

/*
 * The payer's latest payment at or before t, in the payments; or, when the
 * latest were archived, what the pairs' last payments say.
 */
static bool
previous_payment(StateAccess *sa, const pg_uuid_t *payer, TimestampTz t, TimestampTz *at)
{
	bool		found = nearest_payment(sa, payer, NULL, t, BackwardScanDirection, at);
	TimestampTz archived;

	if (previous_archived(sa, payer, t, &archived) && (!found || archived > *at))
	{
		*at = archived;
		found = true;
	}
	return found;
}

/*
 * Writes.  The index entries are formed from the columns (the indexes are
 * plain, see load_state_table); a HOT update needs none.  An update's entry
 * in a unique index whose columns it leaves as they were is not checked
 * for a duplicate: the version it replaces held the key, and a writer that
 * changed that version meanwhile made the update fail before its entries
 * are made.  The check would fetch every version of the key (see
 * fetch_stored).
 */
static void
index_row(StateAccess *sa, StateRel r, HeapTuple tup, bool hot, bool update,
		  const bool *changed)
{
	Relation	rel = sa->rels[r];
	TupleDesc	desc = RelationGetDescr(rel);

	for (int k = 0; k < sa->nwrites[r]; k++)
	{
		IndexInfo  *info = cache.indexes[r][k].info;
		Datum		values[INDEX_MAX_KEYS];
		bool		isnull[INDEX_MAX_KEYS];
		bool		unchanged = update;

		if (!info->ii_ReadyForInserts || (hot && !p2pay_index_summarizing(info)))
			continue;
		for (int i = 0; i < info->ii_NumIndexAttrs; i++)
		{
			AttrNumber	att = info->ii_IndexAttrNumbers[i];

			values[i] = heap_getattr(tup, att, desc, &isnull[i]);
			if (changed[att])
				unchanged = false;
		}
		p2pay_index_insert(sa->writes[r][k], values, isnull, &tup->t_self, rel,
						   info->ii_Unique && !unchanged ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
						   unchanged, info);
	}
}

/*
 * A state row of the table's descriptor: p2pay's columns from values, any
 * column dropped after them null.
 */
static HeapTuple
form_row(StateAccess *sa, StateRel r, const Datum *values)
{
	TupleDesc	desc = RelationGetDescr(sa->rels[r]);
	Datum	   *all = palloc(sizeof(Datum) * desc->natts);
	bool	   *nulls = palloc(sizeof(bool) * desc->natts);

	for (int i = 0; i < desc->natts; i++)
	{
		nulls[i] = i >= natts_of(r);
		all[i] = nulls[i] ? (Datum) 0 : values[i];
	}
	return heap_form_tuple(desc, all, nulls);
}

/* Insert a row with values; where its version lies. */
static ItemPointerData
insert_row(StateAccess *sa, StateRel r, Datum *values)
{
	bool		changed[STATE_MAX_NATTS + 1] = {false};
	HeapTuple	tup = form_row(sa, r, values);

	heap_insert(sa->rels[r], tup, GetCurrentCommandId(true), 0, NULL);
	index_row(sa, r, tup, false, false, changed);
	return tup->t_self;
}

/* A state row changed since the transaction's snapshot was taken: 40001. */
static void
state_changed(StateRel r)
{
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not serialize access due to concurrent update"),
			 errdetail("The account state in p2pay.%s changed after this transaction's snapshot was taken.",
					   rel_names[r])));
}

/*
 * Whether a write of row old (as read with the snapshot) of table r went
 * through: false if old was changed meanwhile, under READ COMMITTED, when
 * the caller reads it again and retries.  Every writer of an account's
 * state holds its lock, so under REPEATABLE READ or SERIALIZABLE a newer
 * version means the snapshot is older than the lock.
 */
static bool
written(StateRel r, TM_Result result, const char *what)
{
	if (result == TM_Ok)
		return true;
	if ((result == TM_Updated || result == TM_Deleted) && !IsolationUsesXactSnapshot())
		return false;
	if (result == TM_Updated || result == TM_Deleted)
		state_changed(r);
	elog(ERROR, "p2pay: %s a row of p2pay.%s failed (%d)", what, rel_names[r], (int) result);
	return false;
}

/*
 * Replace the version of a row at tid by one with values, and index it if
 * that went through; changed marks the columns that differ.  The new
 * version's place is left in tid.
 */
static TM_Result
replace_row(StateAccess *sa, StateRel r, ItemPointer tid, Datum *values, const bool *changed)
{
	HeapTuple	tup = form_row(sa, r, values);
	TM_FailureData tmfd;
	TM_Result	result;

	result = p2pay_heap_update(sa->rels[r], tid, tup, GetCurrentCommandId(true), &tmfd);
	if (result == TM_Ok)
	{
		index_row(sa, r, tup, HeapTupleIsHeapOnly(tup), true, changed);
		*tid = tup->t_self;
	}
	return result;
}

/*
 * Replace row old (as read with the snapshot) by one with values; changed
 * marks the columns that differ.  False if old was changed meanwhile (see
 * written()).
 */
static bool
update_row(StateAccess *sa, StateRel r, HeapTuple old, Datum *values, const bool *changed)
{
	ItemPointerData tid = old->t_self;

	return written(r, replace_row(sa, r, &tid, values, changed), "updating");
}

/*
 * Delete row old (as read with the snapshot); its index entries stay for
 * vacuum to remove, as any delete's.  False if old was changed meanwhile
 * (see written()).
 */
static bool
delete_row(StateAccess *sa, StateRel r, HeapTuple old)
{
	TM_FailureData tmfd;

	return written(r, heap_delete(sa->rels[r], &old->t_self, GetCurrentCommandId(true),
								  InvalidSnapshot, true, &tmfd, false), "deleting");
}

/*
 * A state row to be written that the snapshot doesn't show: under
 * REPEATABLE READ one committed since would make the insert fail on the
 * key; say what it is instead.
 */
static void
check_absent(StateAccess *sa, StateIdx ix, ScanKey keys, int nkeys)
{
	if (IsolationUsesXactSnapshot() && fetch_latest(sa, ix, keys, nkeys) != NULL)
		state_changed(idx_defs[ix].rel);
}

/*
 * Keep the row of a key with values, in place of the one kept (which
 * values may point into); old is the row as read, NULL if there was none,
 * and the version to update if it came from the table.
 */
static void
defer_row(StateAccess *sa, StateIdx ix, ScanKey keys, int nkeys, Datum *values, HeapTuple old)
{
	Deferred   *d = sa->deferred;
	DeferredKey key;
	DeferredRow *row;
	HeapTuple	tup;
	MemoryContext oldcxt;
	bool		found;

	deferred_key(&key, ix, keys, nkeys);
	tup = form_row(sa, idx_defs[ix].rel, values);
	oldcxt = MemoryContextSwitchTo(d->cxt);
	row = hash_search(d->rows, &key, HASH_ENTER, &found);
	if (!found)
	{
		row->stored = old != NULL;
		if (old != NULL)
			row->tid = old->t_self;
		else
			ItemPointerSetInvalid(&row->tid);
		row->tup = NULL;
		if (d->statement && ix != IDX_ACCOUNT)
		{
			bool		listed;
			DeferredList *list = deferred_list(d, ix, key.first, HASH_ENTER, &listed);

			if (!listed)
				list->rows = NIL;
			list->rows = lappend(list->rows, row);
		}
	}
	if (row->tup != NULL)
		heap_freetuple(row->tup);
	row->tup = heap_copytuple(tup);
	MemoryContextSwitchTo(oldcxt);
}

/* Order of the rows flushed: by table, then by key, as the key index's. */
static int
deferred_cmp(const void *a, const void *b)
{
	const DeferredKey *ka = &(*(DeferredRow *const *) a)->key;
	const DeferredKey *kb = &(*(DeferredRow *const *) b)->key;
	int64		x;
	int64		y;
	int			c;

	if (ka->ix != kb->ix)
		return ka->ix < kb->ix ? -1 : 1;
	c = memcmp(ka->first, kb->first, UUID_LEN);
	if (c != 0 || ka->ix == IDX_PAIR)
		return c != 0 ? c : memcmp(ka->second, kb->second, UUID_LEN);
	memcpy(&x, ka->second, sizeof(x));
	memcpy(&y, kb->second, sizeof(y));
	return x < y ? -1 : (x > y ? 1 : 0);
}

/* The scan keys of a kept row's key, from its values; how many. */
static int
keys_of_row(StateIdx ix, const Datum *values, ScanKey keys)
{
	const pg_uuid_t *id = DatumGetUUIDP(values[0]);

	switch (ix)
	{
		case IDX_ACCOUNT:
			key_account(&keys[0], id);
			return 1;
		case IDX_PAIR:
			key_pair(keys, id, DatumGetUUIDP(values[1]));
			break;
		case IDX_DAILY:
			key_day(keys, id, DatumGetDateADT(values[1]));
			break;
		default:
			Assert(ix == IDX_HOURLY);
			key_hour(keys, id, DatumGetTimestampTz(values[1]));
			break;
	}
	return 2;
}

/*
 * A statement's row could not be written as kept: its version in the
 * table changed, or the table was emptied, during the statement, by
 * something else than p2pay's trigger.
 */
static void
statement_row_changed(StateRel r)
{
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not serialize access due to concurrent update"),
			 errdetail("A row of p2pay.%s changed, other than through p2pay's trigger, during a statement that inserted payments.",
					   rel_names[r]),
			 errhint("Change the state tables only through payments, or with rebuild_state(), outside such a statement.")));
}

/*
 * Whether the version of a row at tid (in a block below nblocks, the
 * table's size when the flush began) is still the row's latest: neither
 * updated nor deleted by this transaction (a function that a statement
 * inserting payments calls may have) nor by one committed since.  A
 * version another transaction is changing is: the update waits for it.
 */
static bool
version_latest(Relation rel, BlockNumber nblocks, ItemPointer tid)
{
	HeapTupleData tuple;
	Buffer		buf;

	if (ItemPointerGetBlockNumber(tid) >= nblocks)
		return false;
	tuple.t_self = *tid;
	if (!heap_fetch(rel, SnapshotSelf, &tuple, &buf, false))
		return false;
	ReleaseBuffer(buf);
	return true;
}

/*
 * Write the rows kept to their tables, in key order (an insert, or an
 * update of the version read), and keep none; each row's work in scratch,
 * reset after it.  Every row is written with one command id.
 */
static void
deferred_flush(StateAccess *sa, MemoryContext scratch)
{
	Deferred   *d = sa->deferred;
	long		n = hash_get_num_entries(d->rows);
	DeferredRow **rows;
	DeferredRow *row;
	HASH_SEQ_STATUS seq;
	long		i = 0;
	BlockNumber nblocks[NUM_RELS] = {0};

	if (n == 0)
		return;
	for (int r = 0; d->statement && r < NUM_RELS; r++)
		if (r != REL_PAYMENTS && sa->rels[r] != NULL)
		{
			if (sa->rels[r]->rd_rel->relfilenode != d->filenodes[r])
				statement_row_changed(r);
			/* the versions kept were read before: below the size now */
			nblocks[r] = RelationGetNumberOfBlocks(sa->rels[r]);
		}
	rows = MemoryContextAllocHuge(d->cxt, sizeof(DeferredRow *) * n);
	hash_seq_init(&seq, d->rows);
	while ((row = hash_seq_search(&seq)) != NULL)
		rows[i++] = row;
	Assert(i == n);
	qsort(rows, n, sizeof(DeferredRow *), deferred_cmp);

	for (i = 0; i < n; i++)
	{
		StateRel	r = idx_defs[rows[i]->key.ix].rel;
		TupleDesc	desc = RelationGetDescr(sa->rels[r]);
		MemoryContext old = MemoryContextSwitchTo(scratch);
		Datum		values[STATE_MAX_NATTS];
		ItemPointerData tid;

		for (int k = 0; k < natts_of(r); k++)
		{
			bool		isnull;

			values[k] = heap_getattr(rows[i]->tup, k + 1, desc, &isnull);
		}
		if (rows[i]->stored)
		{
			bool		changed[STATE_MAX_NATTS + 1];
			TM_Result	result;

			/* every column but the key may have changed since the version was read */
			memset(changed, true, sizeof(changed));
			for (int k = 0; k < idx_defs[rows[i]->key.ix].nkeys; k++)
				changed[idx_defs[rows[i]->key.ix].keys[k]] = false;
			if (d->statement && !version_latest(sa->rels[r], nblocks[r], &rows[i]->tid))
				statement_row_changed(r);
			tid = rows[i]->tid;
			result = replace_row(sa, r, &tid, values, changed);
			if (result != TM_Ok && d->statement)
				statement_row_changed(r);
			if (!written(r, result, "updating"))
				elog(ERROR, "p2pay: a row of p2pay.%s changed during rebuild_state()",
					 rel_names[r]);
		}
		else
		{
			if (d->statement)
			{
				ScanKeyData keys[2];
				int			nkeys = keys_of_row(rows[i]->key.ix, values, keys);

				check_absent(sa, rows[i]->key.ix, keys, nkeys);
			}
			tid = insert_row(sa, r, values);
		}
		if (d->versions != NULL && r == REL_ACCOUNT)
		{
			Flushed    *at = hash_search(d->versions, DatumGetUUIDP(values[ACCT_USER - 1]),
										 HASH_ENTER, NULL);

			at->tid = tid;
			at->filenode = sa->rels[r]->rd_rel->relfilenode;
		}
		d->flushed[r] = true;
		MemoryContextSwitchTo(old);
		MemoryContextReset(scratch);
		if (i % 10000 == 0)
			CHECK_FOR_INTERRUPTS();
	}
	MemoryContextReset(d->cxt);
	deferred_begin(d);
}

/*
 * How a payment changes a state row, recorded or reversed: the counts and
 * sums it adds to or takes from (an int8 count, or a numeric sum), a
 * reversal's count never below a floor (what the payments that remain
 * count); for a pair, first_at and last_at, stretched to the payment's
 * time, or, reversing, read again when they were its time; and, recording,
 * the row to insert if there is none.  A reversal with no row to take the
 * payment from changes nothing.
 */
typedef struct RowChange
{
	bool		reverse;
	Datum		fresh[STATE_MAX_NATTS];
	int			nadd;
	struct
	{
		AttrNumber	att;
		bool		numeric;
		Datum		by;
		bool		floored;
		int64		floor;
	}			add[4];
	bool		span;
	TimestampTz t;
	bool		hourly;			/* account_daily (1.2): an hour's sum changes */
	int			hour;			/* which, 0..23 */
	Datum		hour_by;		/* by how much */
} RowChange;

static void
add_to(RowChange *change, AttrNumber att, bool numeric, Datum by)
{
	change->add[change->nadd].att = att;
	change->add[change->nadd].numeric = numeric;
	change->add[change->nadd].by = by;
	change->add[change->nadd].floored = false;
	change->nadd++;
}

/* A reversal's count, taken down by by but not below floor. */
static void
take_from(RowChange *change, AttrNumber att, int64 by, int64 floor)
{
	add_to(change, att, false, Int64GetDatum(by));
	change->add[change->nadd - 1].floored = true;
	change->add[change->nadd - 1].floor = floor;
}

/*
 * The counts by which a reversal empties a row, which then goes, as
 * rebuild_state() would count none: a pair or an hour bucket (1.0/1.1)
 * when its count reaches 0 (or less), an account's totals or its day when
 * both its counts are 0 (a payer's day then holds no hours either: the
 * payments of the day were all reversed).  An empty day would otherwise
 * still count in the history that an account's normal needs.  Archived
 * payments still count, so their rows stay.
 */
static const struct
{
	int			n;
	AttrNumber	atts[2];
	bool		at_most;		/* below 0 empties too */
}			emptied_by[NUM_RELS] = {
	{0, {0}, false},
	{1, {PAIR_N}, true},
	{2, {ACCT_OUT_COUNT, ACCT_IN_COUNT}, false},
	{2, {DAILY_OUT_COUNT, DAILY_IN_PAYERS}, false},
	{1, {HOURLY_N}, true},
};

static bool
emptied(StateRel r, const Datum *values)
{
	for (int i = 0; i < emptied_by[r].n; i++)
	{
		int64		n = DatumGetInt64(values[emptied_by[r].atts[i] - 1]);

		if (emptied_by[r].at_most ? n > 0 : n != 0)
			return false;
	}
	return true;
}

/*
 * A pair's first and last times without its payment at t, given its row's
 * values: read again, when t was one of them, from the pair's payments
 * that remain (the first at or after t, the last at or before it); with
 * none on that side, the other one.
 */
static void
unspan_pair(StateAccess *sa, TimestampTz t, Datum *values, bool *changed)
{
	const pg_uuid_t *payer = DatumGetUUIDP(values[PAIR_PAYER - 1]);
	const pg_uuid_t *payee = DatumGetUUIDP(values[PAIR_PAYEE - 1]);
	TimestampTz first_at = DatumGetTimestampTz(values[PAIR_FIRST_AT - 1]);
	TimestampTz last_at = DatumGetTimestampTz(values[PAIR_LAST_AT - 1]);
	TimestampTz at;

	if (first_at == t)
	{
		if (!nearest_payment(sa, payer, payee, t, ForwardScanDirection, &at))
			at = last_at;
		values[PAIR_FIRST_AT - 1] = TimestampTzGetDatum(at);
		changed[PAIR_FIRST_AT] = true;
	}
	if (last_at == t)
	{
		if (!nearest_payment(sa, payer, payee, t, BackwardScanDirection, &at))
			at = first_at;
		values[PAIR_LAST_AT - 1] = TimestampTzGetDatum(at);
		changed[PAIR_LAST_AT] = true;
	}
}

/*
 * Apply change to the row of keys (read before with the snapshot, or
 * NULL): insert it, update it, or, reversing, delete it once emptied;
 * again on the latest version if a writer without the account's lock
 * changed it meanwhile.
 */
static void
apply_change(StateAccess *sa, StateIdx ix, ScanKey keys, int nkeys, HeapTuple row,
			 RowChange *change)
{
	StateRel	r = idx_defs[ix].rel;
	TupleDesc	desc = RelationGetDescr(sa->rels[r]);

	/*
	 * a state row is written only with the accounts locked (or the whole
	 * state, by a rebuild, which reverses nothing), every index kept
	 */
	Assert(r != REL_PAYMENTS && sa->lockmode == RowExclusiveLock);
	Assert(sa->nwrites[r] == cache.nindexes[r]);
	Assert(p2pay_accounts_locked() || sa->deferred != NULL);
	Assert(!change->reverse || sa->deferred == NULL);

	for (;;)
	{
		Datum		values[STATE_MAX_NATTS];
		bool		changed[STATE_MAX_NATTS + 1] = {false};

		if (row == NULL && change->reverse)
			return;
		if (row == NULL && deferring(sa->deferred, r))
		{
			defer_row(sa, ix, keys, nkeys, change->fresh, NULL);
			return;
		}
		if (row == NULL)
		{
			check_absent(sa, ix, keys, nkeys);
			(void) insert_row(sa, r, change->fresh);
			return;
		}
		for (int i = 0; i < natts_of(r); i++)
		{
			bool		isnull;

			values[i] = heap_getattr(row, i + 1, desc, &isnull);
		}
		for (int i = 0; i < change->nadd; i++)
		{
			AttrNumber	att = change->add[i].att;

			if (change->add[i].numeric)
				values[att - 1] = DirectFunctionCall2(change->reverse ? numeric_sub : numeric_add,
													  values[att - 1], change->add[i].by);
			else
			{
				int64		n = DatumGetInt64(values[att - 1]);
				int64		by = DatumGetInt64(change->add[i].by);

				n = change->reverse ? n - by : n + by;
				if (change->add[i].floored)
					n = Max(n, change->add[i].floor);
				values[att - 1] = Int64GetDatum(n);
			}
			changed[att] = true;
		}
		if (change->hourly)
		{
			DayHours	h;

			Assert(r == REL_DAILY && !cache.legacy);
			read_hours(values, &h);
			add_to_hour(&h, change->hour, change->hour_by, change->reverse);
			write_hours(&h, values);
			changed[DAILY_OUT_HOURS] = changed[DAILY_OUT_HOUR_SUMS] = true;
		}
		if (change->reverse && emptied(r, values))
		{
			if (delete_row(sa, r, row))
				return;
			row = fetch_latest(sa, ix, keys, nkeys);
			continue;
		}
		if (change->span && change->reverse)
			unspan_pair(sa, change->t, values, changed);
		if (change->span && !change->reverse &&
			change->t < DatumGetTimestampTz(values[PAIR_FIRST_AT - 1]))
		{
			values[PAIR_FIRST_AT - 1] = TimestampTzGetDatum(change->t);
			changed[PAIR_FIRST_AT] = true;
		}
		if (change->span && !change->reverse &&
			change->t > DatumGetTimestampTz(values[PAIR_LAST_AT - 1]))
		{
			values[PAIR_LAST_AT - 1] = TimestampTzGetDatum(change->t);
			changed[PAIR_LAST_AT] = true;
		}
		if (deferring(sa->deferred, r))
		{
			defer_row(sa, ix, keys, nkeys, values, row);
			return;
		}
		if (update_row(sa, r, row, values, changed))
			return;
		row = fetch_latest(sa, ix, keys, nkeys);
	}
}

/* The pair's row, or NULL. */
static HeapTuple
fetch_pair(StateAccess *sa, const pg_uuid_t *payer, const pg_uuid_t *payee)
{
	ScanKeyData keys[2];

	key_pair(keys, payer, payee);
	return fetch_row(sa, IDX_PAIR, keys, 2);
}

/*
 * The pair's row (read before, or NULL): first and last time, count and
 * total, with the payment at t recorded or reversed.
 */
static void
record_pair(StateAccess *sa, const pg_uuid_t *payer, const pg_uuid_t *payee, TimestampTz t,
			HeapTuple row, Datum amount, bool reverse)
{
	ScanKeyData keys[2];
	RowChange	change = {.reverse = reverse,.span = true,.t = t};

	change.fresh[PAIR_PAYER - 1] = UUIDPGetDatum(payer);
	change.fresh[PAIR_PAYEE - 1] = UUIDPGetDatum(payee);
	change.fresh[PAIR_FIRST_AT - 1] = TimestampTzGetDatum(t);
	change.fresh[PAIR_LAST_AT - 1] = TimestampTzGetDatum(t);
	change.fresh[PAIR_N - 1] = Int64GetDatum(1);
	change.fresh[PAIR_TOTAL - 1] = amount;
	add_to(&change, PAIR_N, false, Int64GetDatum(1));
	add_to(&change, PAIR_TOTAL, true, amount);
	key_pair(keys, payer, payee);
	apply_change(sa, IDX_PAIR, keys, 2, row, &change);
}

/* The payer's bucket of the hour. */
static void
record_hour(StateAccess *sa, const pg_uuid_t *payer, TimestampTz hour, Datum amount,
			bool reverse)
{
	ScanKeyData keys[2];
	RowChange	change = {.reverse = reverse};

	require_layout(true, "writing payer_hourly");
	change.fresh[HOURLY_PAYER - 1] = UUIDPGetDatum(payer);
	change.fresh[HOURLY_HOUR - 1] = TimestampTzGetDatum(hour);
	change.fresh[HOURLY_N - 1] = Int64GetDatum(1);
	change.fresh[HOURLY_TOTAL - 1] = amount;
	add_to(&change, HOURLY_N, false, Int64GetDatum(1));
	add_to(&change, HOURLY_TOTAL, true, amount);
	key_hour(keys, payer, hour);
	apply_change(sa, IDX_HOURLY, keys, 2, fetch_row(sa, IDX_HOURLY, keys, 2), &change);
}

/*
 * The sides of a payment an account is on: its payer's, its payee's, or,
 * reversing a payment from an account to itself (loaded without the
 * trigger, which refuses them), both.
 */
#define SIDE_OUT 1
#define SIDE_IN 2

/*
 * An account's running totals (its row read before, or NULL): out for the
 * payer, in for the payee.
 */
static void
record_account(StateAccess *sa, const pg_uuid_t *id, HeapTuple row, int sides, Datum amount,
			   bool reverse)
{
	Datum		zero = DirectFunctionCall1(int8_numeric, Int64GetDatum(0));
	ScanKeyData key;
	RowChange	change = {.reverse = reverse};

	change.fresh[ACCT_USER - 1] = UUIDPGetDatum(id);
	change.fresh[ACCT_OUT_COUNT - 1] = change.fresh[ACCT_IN_COUNT - 1] = Int64GetDatum(0);
	change.fresh[ACCT_OUT_SUM - 1] = change.fresh[ACCT_IN_SUM - 1] = zero;
	for (int side = SIDE_OUT; side <= SIDE_IN; side++)
	{
		AttrNumber	count_att = side == SIDE_OUT ? ACCT_OUT_COUNT : ACCT_IN_COUNT;
		AttrNumber	sum_att = side == SIDE_OUT ? ACCT_OUT_SUM : ACCT_IN_SUM;

		if (!(sides & side))
			continue;
		change.fresh[count_att - 1] = Int64GetDatum(1);
		change.fresh[sum_att - 1] = amount;
		add_to(&change, count_att, false, Int64GetDatum(1));
		add_to(&change, sum_att, true, amount);
	}
	key_account(&key, id);
	apply_change(sa, IDX_ACCOUNT, &key, 1, row, &change);
}

/*
 * Whether the payment is its pair's first of the UTC day starting at
 * day_start, whatever order the pair's payments came in: the pair's row
 * (read before, or NULL) decides unless the day lies strictly between its
 * first and last payments, which only a payment older than the pair's last
 * can meet; then the payer's payments of that day are read for one to the
 * payee.
 */
static bool
first_of_day(StateAccess *sa, const PaymentInput *in, HeapTuple pair, TimestampTz day_start)
{
	TupleDesc	desc = RelationGetDescr(sa->rels[REL_PAIR]);
	TimestampTz day_end = day_start + USECS_PER_DAY;
	TimestampTz first_at;
	TimestampTz last_at;
	bool		isnull;

	if (pair == NULL)
		return true;
	first_at = DatumGetTimestampTz(heap_getattr(pair, PAIR_FIRST_AT, desc, &isnull));
	last_at = DatumGetTimestampTz(heap_getattr(pair, PAIR_LAST_AT, desc, &isnull));
	if (last_at < day_start || first_at >= day_end)
		return true;			/* none of the pair's payments is that day */
	if (first_at >= day_start || last_at < day_end)
		return false;			/* its first or its last is */
	return !paid_during(sa, in->payer, in->payee, day_start, day_end);
}

/*
 * In the 1.2 layout, the payer's change to its row of the day: amount in
 * the hour of the day; and the hours of the row if it is new.
 */
static void
change_hour(RowChange *change, int hour, Datum amount)
{
	DayHours	h = {0};

	if (cache.legacy)
		return;
	change->hourly = true;
	change->hour = hour;
	change->hour_by = amount;
	add_to_hour(&h, hour, amount, false);
	write_hours(&h, change->fresh);
}

/*
 * An account's row of the day (read with its normal, or now): out_count
 * and out_payees for the payer, in_payers for the payee; and, in the 1.2
 * layout, the payer's amount in the hour of the day.  The payee's row,
 * where it has one, changes only for a pair new that day: else it is not
 * written.
 */
static void
record_day(StateAccess *sa, DailyFacts *daily, bool out, bool new_pair, int hour,
		   Datum amount)
{
	int64		fresh = new_pair ? 1 : 0;
	ScanKeyData keys[2];
	RowChange	change = {0};
	DayHours	none = {0};
	HeapTuple	row;

	if (!cache.legacy)
		write_hours(&none, change.fresh);
	if (out)
		change_hour(&change, hour, amount);

	change.fresh[DAILY_USER - 1] = UUIDPGetDatum(daily->id);
	change.fresh[DAILY_DAY - 1] = DateADTGetDatum(daily->day);
	change.fresh[DAILY_OUT_COUNT - 1] = Int64GetDatum(out ? 1 : 0);
	change.fresh[DAILY_OUT_PAYEES - 1] = Int64GetDatum(out ? fresh : 0);
	change.fresh[DAILY_IN_PAYERS - 1] = Int64GetDatum(out ? 0 : fresh);
	if (out)
	{
		add_to(&change, DAILY_OUT_COUNT, false, Int64GetDatum(1));
		add_to(&change, DAILY_OUT_PAYEES, false, Int64GetDatum(fresh));
	}
	else
		add_to(&change, DAILY_IN_PAYERS, false, Int64GetDatum(fresh));
	key_day(keys, daily->id, daily->day);
	row = daily->loaded || daily->today_read ? daily->today : fetch_row(sa, IDX_DAILY, keys, 2);
	if (!out && !new_pair && row != NULL)
		return;
	apply_change(sa, IDX_DAILY, keys, 2, row, &change);
}


/*
 * The state tables as a FactSource (facts.h) for one payment: each answer
 * an index scan bounded by its limit, or one key.  The rows the recording
 * rewrites (the pair's, the payer's running totals, each account's row of
 * the day) are kept as they are read.
 */
typedef struct StateSource
{
	FactSource	src;			/* first: facts.c sees only this */
	StateAccess sa;
	const P2payConfig *cfg;
	Oid			nspid;
	const PaymentInput *in;
	bool		record;
	DailyFacts	payer_day;
	DailyFacts	payee_day;
	bool		pair_read;
	HeapTuple	pair;
	bool		payer_acct_read;
	HeapTuple	payer_acct;
	DateADT		unpruned;		/* first_unpruned_day(), once asked; else 0 */
} StateSource;

/*
 * The first of the days that prune_state() can't have deleted: it deletes
 * only days before its horizon's UTC date less 30, and it ran before now,
 * with a horizon at least 31 days before it, or 31 days less an hour
 * across a change of daylight saving time: a UTC date at most 30 days
 * before today's.  So days from 60 days before today on stay.
 */
static DateADT
first_unpruned_day(StateSource *ss)
{
	if (ss->unpruned == 0)
		ss->unpruned = p2pay_date_of(GetCurrentTimestamp()) - (30 + 30);
	return ss->unpruned;
}

/*
 * The first of the payer's days that its velocity amount reads (the day
 * its window begins), or day if the rule is off or begins later: one scan
 * of the payer's rows then serves the velocity count and amount both.
 */
static DateADT
amount_first_day(StateSource *ss, DateADT day)
{
	const RuleConfig *va = &ss->cfg->rules[RULE_PAYER_VELOCITY_AMOUNT];

	if (!RULE_EVALUATED(va))
		return day;
	return Min(day, p2pay_date_of(ss->in->created_at - va->p.window));
}

/*
 * Whether the payer may have made a payment in [from, until): not, in the
 * 1.2 layout, if its account_daily rows hold no hour that overlaps it.
 * Each of the payer's stored payments is in an hour of its day's row (an
 * amount is positive, and an hour is there while its sum is not 0), where
 * the state counts the stored payments (it equals rebuild_state()'s), on
 * the days prune_state() can't have deleted.  So the payments themselves
 * are read only for the hours the state says the payer paid in, or on days
 * that may have been pruned, or in the 1.0/1.1 layout.
 */
static bool
payer_may_have_paid(StateSource *ss, TimestampTz from, TimestampTz until)
{
	DateADT		day = p2pay_date_of(from);
	List	   *rows;

	if (cache.legacy || day < first_unpruned_day(ss))
		return true;
	rows = account_days(&ss->sa, amount_first_day(ss, day), &ss->payer_day);
	return hour_held(rows, RelationGetDescr(ss->sa.rels[REL_DAILY]), p2pay_hour_of(from), until);
}

static bool state_pair_seen(FactSource *src);

/*
 * What an account's account_daily rows of an instant's day and later days
 * count in att, in the 1.2 layout: a bound on the payer's payments after
 * the instant (out_count), or on the counterparties an account paid
 * (payer: out_payees) or was paid by (in_payers) in pairs whose last
 * payment is after it, less the payment's own pair's if less_pair.  A
 * payment after the instant is in the count of its day, one of those; a
 * pair whose last payment is after it was paid on one of those days, and
 * each day a pair pays counts it once on both sides (first_of_day); so
 * does the payment's own pair on the day of its last payment.  As for the
 * hours, where the state counts the stored payments, on the days
 * prune_state() can't have deleted; -1 on others and in the 1.0/1.1
 * layout.
 */
static int64
days_bound(StateSource *ss, bool payer, AttrNumber att, TimestampTz after, bool less_pair)
{
	DateADT		day = p2pay_date_of(after);
	TupleDesc	desc = RelationGetDescr(ss->sa.rels[REL_DAILY]);
	int64		counted = 0;
	ListCell   *lc;

	if (cache.legacy || day < first_unpruned_day(ss))
		return -1;
	foreach(lc, account_days(&ss->sa, payer ? amount_first_day(ss, day) : day,
							 payer ? &ss->payer_day : &ss->payee_day))
	{
		HeapTuple	tup = lfirst(lc);

		if (daily_day(tup, desc) >= day)
			counted += daily_count(tup, desc, att);
	}
	if (counted > 0 && less_pair && state_pair_seen(&ss->src))
	{
		bool		isnull;
		Datum		last_at = heap_getattr(ss->pair, PAIR_LAST_AT,
										   RelationGetDescr(ss->sa.rels[REL_PAIR]), &isnull);

		if (p2pay_date_of(DatumGetTimestampTz(last_at)) >= day)
			counted--;
	}
	return counted;
}

/* The payer's payments after an instant, stopping at limit (the velocity count). */
static int64
state_payments_after(FactSource *src, TimestampTz after, int64 limit)
{
	StateSource *ss = (StateSource *) src;

	if (limit > 0 && !payer_may_have_paid(ss, after, DT_NOEND))
		return 0;
	return count_range(&ss->sa, IDX_PAYMENTS, ss->in->payer, after, 0, NULL, limit);
}

/* The payer's payees other than the payment's, in pairs last paid after an instant. */
static int64
state_payees_after(FactSource *src, TimestampTz after, int64 limit)
{
	StateSource *ss = (StateSource *) src;

	return count_range(&ss->sa, IDX_PAIR_PAYER_LAST, ss->in->payer, after, PAIR_PAYEE,
					   ss->in->payee, limit);
}

/* The payee's payers other than the payment's, in pairs last paid after an instant. */
static int64
state_payers_after(FactSource *src, TimestampTz after, int64 limit)
{
	StateSource *ss = (StateSource *) src;

	return count_range(&ss->sa, IDX_PAIR_PAYEE_LAST, ss->in->payee, after, PAIR_PAYER,
					   ss->in->payer, limit);
}

/*
 * What the payer paid after an instant (the velocity amount): its whole
 * hours from the next hour on, from the state, and its payments in the
 * rest of the instant's hour, if it paid in that hour.
 */
static double
state_paid_after(FactSource *src, TimestampTz after)
{
	StateSource *ss = (StateSource *) src;
	const pg_uuid_t *payer = ss->in->payer;
	TimestampTz first_whole_hour = p2pay_hour_of(after) + USECS_PER_HOUR;
	Datum		sum = cache.legacy ? paid_in_buckets(&ss->sa, payer, first_whole_hour)
		: paid_in_days(&ss->sa, p2pay_date_of(after), first_whole_hour, &ss->payer_day);

	if (payer_may_have_paid(ss, after, first_whole_hour))
		sum = sum_payments(&ss->sa, payer, after, first_whole_hour, sum);
	return p2pay_numeric_to_double(sum);
}

static int64
state_band_after(FactSource *src, TimestampTz after, double lo, double hi, int64 limit)
{
	StateSource *ss = (StateSource *) src;

	return count_band(&ss->sa, ss->in->payer, after, lo, hi, limit);
}

static bool
state_pair_seen(FactSource *src)
{
	StateSource *ss = (StateSource *) src;

	if (!ss->pair_read)
	{
		ss->pair = fetch_pair(&ss->sa, ss->in->payer, ss->in->payee);
		ss->pair_read = true;
	}
	return ss->pair != NULL;
}

static bool
state_paid_back(FactSource *src, TimestampTz after, double min)
{
	StateSource *ss = (StateSource *) src;

	return paid_since(&ss->sa, ss->in->payee, ss->in->payer, after, min);
}

/* The payer's row of account_stats, read once. */
static HeapTuple
payer_account(StateSource *ss)
{
	if (!ss->payer_acct_read)
	{
		ss->payer_acct = fetch_account(&ss->sa, ss->in->payer);
		ss->payer_acct_read = true;
	}
	return ss->payer_acct;
}

static void
state_account(FactSource *src, int64 *out_count, double *out_sum)
{
	StateSource *ss = (StateSource *) src;
	HeapTuple	row = payer_account(ss);

	*out_count = 0;
	*out_sum = 0;
	if (row != NULL)
	{
		TupleDesc	desc = RelationGetDescr(ss->sa.rels[REL_ACCOUNT]);
		bool		isnull;

		*out_count = DatumGetInt64(heap_getattr(row, ACCT_OUT_COUNT, desc, &isnull));
		*out_sum = p2pay_numeric_to_double(heap_getattr(row, ACCT_OUT_SUM, desc, &isnull));
	}
}

static void
state_normal(FactSource *src, bool payer, AccountNormal *out)
{
	StateSource *ss = (StateSource *) src;
	DailyFacts *daily = payer ? &ss->payer_day : &ss->payee_day;

	read_daily(&ss->sa, daily);
	out->days = daily->days;
	out->out_count = daily->out_count;
	out->out_payees = daily->out_payees;
	out->in_payers = daily->in_payers;
}

/*
 * The same sum where days_bound() can't tell (the payment's window reaches
 * days prune_state() may have deleted, or the 1.0/1.1 layout), for the
 * payer's out_payees or the payee's in_payers, as the table holds them; -1
 * past DAY_BOUND_ROWS rows (a window of weeks, or payments inserted long
 * after later ones).  Only a count past its limit takes it: a payment older
 * than its keep is compared with its normal without the days deleted, as
 * the normal itself is counted.
 */
#define DAY_BOUND_ROWS 8

static int64
table_day_bound(StateSource *ss, bool payer, AttrNumber att, TimestampTz after)
{
	const pg_uuid_t *id = payer ? ss->in->payer : ss->in->payee;
	DateADT		from = p2pay_date_of(after);
	TupleDesc	desc = RelationGetDescr(ss->sa.rels[REL_DAILY]);
	ScanKeyData keys[2];
	IndexScanDesc scan;
	TupleTableSlot *slot;
	int64		sum = 0;
	int			nkept;
	HeapTuple  *kept = kept_days(&ss->sa, id, from, DATEVAL_NOEND, &nkept);
	int			rows = nkept;

	/* a statement's rows kept take the place of their versions in the table */
	for (int k = 0; k < nkept; k++)
		sum += daily_count(kept[k], desc, att);
	key_account(&keys[0], id);
	key_second(&keys[1], BTGreaterEqualStrategyNumber, F_DATE_GE, DateADTGetDatum(from));
	scan = begin_scan(&ss->sa, IDX_DAILY, keys, 2);
	while (rows <= DAY_BOUND_ROWS &&
		   (slot = next_row(&ss->sa, scan, IDX_DAILY, ForwardScanDirection)) != NULL)
	{
		HeapTuple	tup = ExecFetchSlotHeapTuple(slot, false, NULL);

		if (nkept > 0 &&
			deferred_find(ss->sa.deferred, IDX_DAILY, id, daily_day(tup, desc)) != NULL)
			continue;
		rows++;
		sum += daily_count(tup, desc, att);
	}
	index_endscan(scan);
	return rows > DAY_BOUND_ROWS ? -1 : sum;
}

static int64
state_day_bound(FactSource *src, DayTotal which, TimestampTz after, bool *whole)
{
	StateSource *ss = (StateSource *) src;
	bool		payer = which != TOTAL_IN_PAYERS;
	AttrNumber	att = which == TOTAL_OUT_COUNT ? DAILY_OUT_COUNT
		: payer ? DAILY_OUT_PAYEES : DAILY_IN_PAYERS;
	int64		bound = days_bound(ss, payer, att, after, which != TOTAL_OUT_COUNT);

	*whole = bound >= 0;
	if (bound >= 0 || which == TOTAL_OUT_COUNT)
		return bound;
	return table_day_bound(ss, payer, att, after);
}

static bool
state_previous(FactSource *src, TimestampTz *at)
{
	StateSource *ss = (StateSource *) src;

	return previous_payment(&ss->sa, ss->in->payer, ss->in->created_at, at);
}

/*
 * The payer's payers other than except (NULL: any), in pairs last paid
 * after an instant, stopping at limit; its days asked first.
 */
static int64
payers_of_payer_after(StateSource *ss, TimestampTz after, const pg_uuid_t *except, int64 limit)
{
	if (limit > 0 && days_bound(ss, true, DAILY_IN_PAYERS, after, false) == 0)
		return 0;
	return count_range(&ss->sa, IDX_PAIR_PAYEE_LAST, ss->in->payer, after,
					   except != NULL ? PAIR_PAYER : 0, except, limit);
}

static int64
state_payers_of_payer_after(FactSource *src, TimestampTz after, int64 limit)
{
	return payers_of_payer_after((StateSource *) src, after, NULL, limit);
}

/*
 * Whether an account other than except paid account after the time after,
 * by pair_stats' index on (payee_id, last_at), with a new snapshot under
 * READ COMMITTED as a statement of the trigger's own would take (latest:
 * the latest snapshot, under any isolation level): the question the
 * cycle's statements (moneyflow.c) ask first, answered without running
 * them.  A pair's last_at is its latest payment's time, and prune_state()
 * keeps every pair, so an answer of false is the statement's own.  The
 * accounts may not be locked yet: only the index and its table are
 * opened, in the mode the payment's own writes take.
 */
bool
p2pay_paid_after(Oid nspid, const pg_uuid_t *account, const pg_uuid_t *except,
				 TimestampTz after, bool latest)
{
	StateAccess sa;
	int64		n;

	memset(&sa, 0, sizeof(sa));
	sa.lockmode = RowExclusiveLock;
	for (;;)
	{
		load_cache(nspid);
		sa.rels[REL_PAIR] = table_open(cache.rels[REL_PAIR], sa.lockmode);
		sa.idxs[IDX_PAIR_PAYEE_LAST] = index_open(cache.idxs[IDX_PAIR_PAYEE_LAST], sa.lockmode);
		if (cache.state.valid)
			break;
		index_close(sa.idxs[IDX_PAIR_PAYEE_LAST], NoLock);
		table_close(sa.rels[REL_PAIR], NoLock);
	}
	sa.slots[REL_PAIR] = table_slot_create(sa.rels[REL_PAIR], NULL);
	PushActiveSnapshot(latest ? GetLatestSnapshot() : GetTransactionSnapshot());
	sa.snapshot = GetActiveSnapshot();
	n = count_range(&sa, IDX_PAIR_PAYEE_LAST, account, after, PAIR_PAYER, except, 1);
	PopActiveSnapshot();
	ExecDropSingleTupleTableSlot(sa.slots[REL_PAIR]);
	index_close(sa.idxs[IDX_PAIR_PAYEE_LAST], NoLock);
	table_close(sa.rels[REL_PAIR], NoLock);
	return n > 0;
}

/*
 * The money-flow facts, in SQL (moneyflow.c), with the same snapshot.  A
 * loop the payment closes needs someone other than the payee to have paid
 * the payer in cycle's window, which its days and the index tell first:
 * its last leg comes from an account the payee paid, or one that account
 * paid, other than the payee (the trigger refuses a payment to oneself,
 * and the statement's third leg leaves the payee out).
 */
static void
state_money_flow(FactSource *src, bool sum, bool loops, bool cycle_on, PaymentFacts *facts)
{
	StateSource *ss = (StateSource *) src;
	const RuleConfig *cy = &ss->cfg->rules[RULE_CYCLE];

	loops = loops &&
		payers_of_payer_after(ss, ss->in->created_at - cy->p.window, ss->in->payee, 1) > 0;
	p2pay_read_money_flow(ss->cfg, ss->nspid, ss->in, facts, ss->record, sum, loops, cycle_on);
}

/* The state's answers, in FactSource's order. */
static const FactSource state_functions = {
	.payments_after = state_payments_after,
	.payees_after = state_payees_after,
	.payers_after = state_payers_after,
	.paid_after = state_paid_after,
	.band_after = state_band_after,
	.pair_seen = state_pair_seen,
	.paid_back = state_paid_back,
	.account = state_account,
	.normal = state_normal,
	.day_bound = state_day_bound,
	.previous = state_previous,
	.payers_of_payer_after = state_payers_of_payer_after,
	.money_flow = state_money_flow,
};

/* Set ss to answer for the payment in, none of its rows read yet. */
static void
begin_payment(StateSource *ss, const PaymentInput *in)
{
	DateADT		day = p2pay_date_of(in->created_at);

	ss->in = in;
	memset(&ss->payer_day, 0, sizeof(DailyFacts));
	memset(&ss->payee_day, 0, sizeof(DailyFacts));
	ss->payer_day.id = in->payer;
	ss->payee_day.id = in->payee;
	ss->payer_day.day = ss->payee_day.day = day;
	ss->payer_day.keep_recent = ss->payee_day.keep_recent = !cache.legacy;
	ss->pair_read = false;
	ss->pair = NULL;
	ss->payer_acct_read = false;
	ss->payer_acct = NULL;
	ss->unpruned = 0;
}

/*
 * Record the payment in the per-account state: the one derivation of the
 * state from a payment, for the trigger and for rebuild_state() alike.
 * The rows the facts read already are taken as they were read.
 */
static void
record_payment(StateSource *ss, Numeric amount_base)
{
	const PaymentInput *in = ss->in;
	TimestampTz t = in->created_at;
	Datum		amount = NumericGetDatum(amount_base);
	HeapTuple	pair;
	bool		new_today;

	Assert(ss->sa.lockmode == RowExclusiveLock);
	Assert(p2pay_accounts_locked() || ss->sa.deferred != NULL);

	(void) state_pair_seen(&ss->src);
	pair = ss->pair;

	/* the pair's first payment of the day counts a new payee and payer */
	new_today = first_of_day(&ss->sa, in, pair, p2pay_day_of(t));

	record_pair(&ss->sa, in->payer, in->payee, t, pair, amount, false);
	if (cache.legacy)
		record_hour(&ss->sa, in->payer, p2pay_hour_of(t), amount, false);
	record_account(&ss->sa, in->payer, payer_account(ss), SIDE_OUT, amount, false);
	record_account(&ss->sa, in->payee, fetch_account(&ss->sa, in->payee), SIDE_IN, amount, false);
	record_day(&ss->sa, &ss->payer_day, true, new_today, p2pay_hour_of_day(t), amount);
	record_day(&ss->sa, &ss->payee_day, false, new_today, 0, (Datum) 0);
}

/*
 * Statements.  A statement that inserts payments into p2pay.payments
 * fires batch_payments() before and after it (FOR EACH STATEMENT): each
 * opens and closes a frame.  From the second payment of a frame on, the
 * rows of account_stats and account_daily (and payer_hourly) are kept in
 * memory (see Deferred) and written at the frame's end, or when they
 * outgrow work_mem: a COPY or INSERT ... SELECT of a million payments
 * writes each account's rows once per flush, not once per payment.  Each
 * payment is still scored against everything before it, the statement's
 * earlier payments included, and under the same account locks, held to
 * the transaction's end.
 *
 * The rows kept belong to the subtransaction they were kept in: rolled
 * back, it takes them with it; and they are written only in it.  Whatever
 * else writes the state, a payment without a frame (one inserted into a
 * partition directly, or in a subtransaction begun inside the statement),
 * a reversal, rebuild_state(), first writes the rows kept, or, from
 * another subtransaction, can't (0A000).  A commit with rows kept (only
 * possible if the statement's closing trigger did not run) fails.
 */
typedef struct Frame
{
	SubTransactionId subid;		/* the subtransaction the statement runs in */
	int64		payments;		/* how many it recorded so far */
	/* an INSERT ... ON CONFLICT's payments (conflict.c), in TopTransactionContext */
	int64	   *ids;
	bool	   *recorded;		/* each scored and counted, or passed over */
	int			nids;
	int			maxids;
} Frame;

static Frame *frames;			/* in TopMemoryContext */
static int	nframes;
static int	maxframes;
static Deferred *pending;		/* the rows kept, in TopTransactionContext */

static bool
pending_rows(void)
{
	return pending != NULL && hash_get_num_entries(pending->rows) > 0;
}

/* Begin keeping a statement's rows, in this subtransaction. */
static Deferred *
pending_begin(StateAccess *sa)
{
	if (pending == NULL)
	{
		HASHCTL		ctl;

		pending = MemoryContextAllocZero(TopTransactionContext, sizeof(Deferred));
		pending->cxt = AllocSetContextCreate(TopTransactionContext, "p2pay statement rows",
											 ALLOCSET_DEFAULT_SIZES);
		pending->statement = true;
		deferred_begin(pending);
		ctl.keysize = sizeof(pg_uuid_t);
		ctl.entrysize = sizeof(Flushed);
		ctl.hcxt = TopTransactionContext;
		pending->versions = hash_create("p2pay account rows flushed", 1024, &ctl,
										HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	if (!pending_rows())
	{
		pending->subid = GetCurrentSubTransactionId();
		pending->budget = (Size) work_mem * 1024;
		for (int r = 0; r < NUM_RELS; r++)
			pending->filenodes[r] = sa->rels[r] != NULL ? sa->rels[r]->rd_rel->relfilenode
				: InvalidOid;
	}
	Assert(pending->subid == GetCurrentSubTransactionId());
	return pending;
}

/* Forget the rows kept. */
static void
pending_drop(void)
{
	if (pending == NULL)
		return;
	MemoryContextDelete(pending->cxt);
	hash_destroy(pending->versions);
	pfree(pending);
	pending = NULL;
}

/* Write the rows kept, through sa (open for recording). */
static void
pending_flush_with(StateAccess *sa)
{
	MemoryContext scratch = AllocSetContextCreate(CurrentMemoryContext, "p2pay flush row",
												  ALLOCSET_SMALL_SIZES);
	Deferred   *saved = sa->deferred;

	sa->deferred = pending;
	deferred_flush(sa, scratch);
	sa->deferred = saved;
	MemoryContextDelete(scratch);
}

/*
 * Write the rows kept before the state is written otherwise; from a
 * subtransaction other than theirs, refuse.  As the owner of payments.
 */
void
p2pay_write_pending(void)
{
	StateAccess sa;

	if (!pending_rows())
		return;
	if (pending->subid != GetCurrentSubTransactionId())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("p2pay can't change the account state in a subtransaction begun inside a statement that inserts payments"),
				 errdetail("The statement keeps the state's rows in memory until it ends; a payment inserted, reversed or rebuilt in a subtransaction begun within it (an exception block of a function it calls) would change them out of turn."),
				 errhint("Insert the payments of such a function in a statement of their own.")));
	memset(&sa, 0, sizeof(sa));
	open_state(&sa, p2pay_schema(), true);
	pending_flush_with(&sa);
	close_state(&sa);
}

/* BEFORE ... FOR EACH STATEMENT: a statement that inserts payments begins. */
void
p2pay_statement_begins(void)
{
	if (nframes == maxframes)
	{
		maxframes = Max(8, maxframes * 2);
		frames = frames == NULL
			? MemoryContextAlloc(TopMemoryContext, sizeof(Frame) * maxframes)
			: repalloc(frames, sizeof(Frame) * maxframes);
	}
	frames[nframes].subid = GetCurrentSubTransactionId();
	frames[nframes].payments = 0;
	frames[nframes].ids = NULL;
	frames[nframes].recorded = NULL;
	frames[nframes].nids = 0;
	frames[nframes].maxids = 0;
	nframes++;
}

/* Whether a frame is open for the statement running (see Statements). */
bool
p2pay_statement_framed(void)
{
	return nframes > 0 && frames[nframes - 1].subid == GetCurrentSubTransactionId();
}

/*
 * Note payment id of the statement running, scored and counted (recorded)
 * or passed over as conflicting, for its closing check (conflict.c); false
 * when no frame is open for it.
 */
bool
p2pay_statement_note(int64 id, bool recorded)
{
	Frame	   *f;

	if (!p2pay_statement_framed())
		return false;
	f = &frames[nframes - 1];
	if (f->nids == f->maxids)
	{
		f->maxids = Max(64, f->maxids * 2);
		if (f->ids == NULL)
		{
			f->ids = MemoryContextAllocHuge(TopTransactionContext, sizeof(int64) * f->maxids);
			f->recorded = MemoryContextAllocHuge(TopTransactionContext, sizeof(bool) * f->maxids);
		}
		else
		{
			f->ids = repalloc_huge(f->ids, sizeof(int64) * f->maxids);
			f->recorded = repalloc_huge(f->recorded, sizeof(bool) * f->maxids);
		}
	}
	f->ids[f->nids] = id;
	f->recorded[f->nids] = recorded;
	f->nids++;
	return true;
}

/*
 * AFTER ... FOR EACH STATEMENT: the statement ends; its rows are written.
 * As the owner of payments.
 */
void
p2pay_statement_ends(void)
{
	if (nframes > 0 && frames[nframes - 1].subid == GetCurrentSubTransactionId())
	{
		nframes--;
		p2pay_conflict_verify(frames[nframes].ids, frames[nframes].recorded, frames[nframes].nids);
	}
	p2pay_write_pending();
}

/* Whether this payment's rows are kept (see Statements). */
static bool
keeps_rows(void)
{
	SubTransactionId subid = GetCurrentSubTransactionId();

	if (nframes == 0 || frames[nframes - 1].subid != subid)
		return false;
	return ++frames[nframes - 1].payments > 1 && (!pending_rows() || pending->subid == subid);
}

/* The transaction ends: nothing kept may be left behind. */
static void
statement_xact_callback(XactEvent event, void *arg)
{
	if ((event == XACT_EVENT_PRE_COMMIT || event == XACT_EVENT_PARALLEL_PRE_COMMIT ||
		 event == XACT_EVENT_PRE_PREPARE) && pending_rows())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("p2pay: a statement that inserted payments ended without writing the account state"),
				 errdetail("The trigger payments_batch_end of p2pay.payments did not fire at the statement's end."),
				 errhint("Enable the triggers payments_batch_begin and payments_batch_end together, or neither, and keep session_replication_role as it is during such a statement.")));
	if (p2pay_xact_ends(event))
	{
		pending = NULL;			/* its memory went with the transaction's */
		nframes = 0;
	}
}

/*
 * A subtransaction ends: rolled back, the frames it opened close, and the
 * rows kept in it are forgotten; committed, both pass to its parent.
 */
static void
statement_subxact_callback(SubXactEvent event, SubTransactionId subid,
						   SubTransactionId parent_subid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		while (nframes > 0 && frames[nframes - 1].subid >= subid)
			nframes--;
		if (pending != NULL && pending->subid >= subid)
			pending_drop();
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		for (int i = 0; i < nframes; i++)
			if (frames[i].subid == subid)
				frames[i].subid = parent_subid;
		if (pending != NULL && pending->subid == subid)
			pending->subid = parent_subid;
	}
}

void
p2pay_statement_register_callbacks(void)
{
	RegisterXactCallback(statement_xact_callback, NULL);
	RegisterSubXactCallback(statement_subxact_callback, NULL);
}

/*
 * Read the facts that depend on other payments, as they were before this
 * one (facts.c decides which), and, if record, record this payment in the
 * per-account state.  When recording, the accounts are locked.
 */
void
p2pay_read_facts(const P2payConfig *cfg, Oid nspid, const PaymentInput *in,
				 PaymentFacts *facts, bool record)
{
	StateSource ss;
	bool		keep = record && keeps_rows();

	Assert(facts->created_at == in->created_at);
	if (record && !keep)
		p2pay_write_pending();
	memset(&ss, 0, sizeof(ss));
	ss.src = state_functions;
	ss.cfg = cfg;
	ss.nspid = nspid;
	ss.record = record;
	begin_payment(&ss, in);

	open_state(&ss.sa, nspid, record);
	if (keep)
		ss.sa.deferred = pending_begin(&ss.sa);
	else if (pending_rows())
		ss.sa.deferred = pending;	/* read them (score()), never write */
	p2pay_assemble_facts(cfg, &ss.src, facts);

	if (record)
	{
		Assert(p2pay_accounts_locked());
		record_payment(&ss, facts->amount_base);
		if (keep && MemoryContextMemAllocated(pending->cxt, true) > pending->budget)
			pending_flush_with(&ss.sa);
	}

	close_state(&ss.sa);
}

/*
 * rebuild_state(): the per-account state counted again from the stored
 * payments, each recorded through record_payment() as the trigger records
 * an insert, so that the state has one derivation.  The state tables are
 * emptied first, and payments are held still meanwhile (SHARE ROW
 * EXCLUSIVE, on every partition), so no account lock is taken: the state
 * tables, truncated in this transaction, are this transaction's alone.
 *
 * Payments are read in (payer_id, created_at) order: each pair's in time
 * order, so that first_of_day() decides from the pair's row alone (a
 * payment is never older than its pair's last one recorded), and a
 * payer's rows are written one after the other.  Each payment is its own
 * command, so that it sees the rows the one before wrote.
 */
static const char *const rebuild_lock_sql =
"LOCK TABLE p2pay.payments IN SHARE ROW EXCLUSIVE MODE";
static const char *const rebuild_truncate_sql =
"TRUNCATE p2pay.account_stats, p2pay.pair_stats, p2pay.account_daily";
static const char *const rebuild_truncate_1_1_sql =
"TRUNCATE p2pay.account_stats, p2pay.pair_stats, p2pay.payer_hourly, p2pay.account_daily";
static const char *const rebuild_read_sql =
"SELECT p.payer_id, p.payee_id, p.created_at, p.amount_base FROM p2pay.payments p"
" ORDER BY p.payer_id, p.created_at";

/* Payments read per fetch of the rebuild's cursor. */
#define REBUILD_BATCH 1000

/*
 * Check a stored payment before it is recorded; errors as the trigger's.
 * An amount_base that is not finite would be summed into the payer's hours,
 * which are then refused when read (see read_hours).
 */
static void
check_stored(const PaymentInput *in, bool no_amount_base, Datum amount_base)
{
	if (no_amount_base)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("p2pay: payments without amount_base can't be counted"),
				 errhint("Set amount_base (amount * the currency's rate_to_base) on payments loaded without the trigger.")));
	if (numeric_is_nan(DatumGetNumeric(amount_base)) || numeric_is_inf(DatumGetNumeric(amount_base)))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("p2pay: a payment whose amount_base is not a finite number can't be counted"),
				 errdetail("A payment by %s was loaded without the trigger, which refuses such amounts.",
						   DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(in->payer)))),
				 errhint("Delete the payment, or correct its amount and amount_base, and rebuild again.")));
	if (memcmp(in->payer->data, in->payee->data, UUID_LEN) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("p2pay: a payment from an account to itself can't be counted"),
				 errdetail("A payment by %s to itself was loaded without the trigger, which refuses such payments.",
						   DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(in->payer)))),
				 errhint("Delete the payment, or correct its payer_id or payee_id, and rebuild again.")));
	if (TIMESTAMP_NOT_FINITE(in->created_at))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("p2pay: a payment whose created_at is not finite can't be counted"),
				 errdetail("A payment by %s was loaded without the trigger, which refuses such times.",
						   DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(in->payer)))),
				 errhint("Delete the payment, or correct its created_at, and rebuild again.")));
}

/* Record every payment the cursor returns; SPI is connected, as the owner. */
static void
record_all(Portal portal, Oid nspid)
{
	StateSource ss;
	Deferred	deferred = {0};
	MemoryContext row_cxt = AllocSetContextCreate(CurrentMemoryContext, "p2pay rebuild row",
												  ALLOCSET_DEFAULT_SIZES);

	deferred.cxt = AllocSetContextCreate(CurrentMemoryContext, "p2pay rebuild rows",
										 ALLOCSET_DEFAULT_SIZES);
	deferred.budget = (Size) maintenance_work_mem * 1024;
	deferred_begin(&deferred);

	memset(&ss, 0, sizeof(ss));
	ss.src = state_functions;
	ss.record = true;
	open_state(&ss.sa, nspid, true);
	ss.sa.deferred = &deferred;

	for (;;)
	{
		SPI_cursor_fetch(portal, true, REBUILD_BATCH);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			MemoryContext old;
			PaymentInput in = {0};
			bool		isnull[4];
			Datum		amount;

			if (MemoryContextMemAllocated(deferred.cxt, true) > deferred.budget)
				deferred_flush(&ss.sa, row_cxt);
			old = MemoryContextSwitchTo(row_cxt);

			in.payer = DatumGetUUIDP(SPI_getbinval(tup, desc, 1, &isnull[0]));
			in.payee = DatumGetUUIDP(SPI_getbinval(tup, desc, 2, &isnull[1]));
			in.created_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull[2]));
			amount = SPI_getbinval(tup, desc, 4, &isnull[3]);
			if (isnull[0] || isnull[1] || isnull[2])
				elog(ERROR, "p2pay: a payment without payer_id, payee_id or created_at");
			check_stored(&in, isnull[3], amount);

			/* a command of its own, that sees the rows flushed before */
			CommandCounterIncrement();
			UpdateActiveSnapshotCommandId();
			begin_payment(&ss, &in);
			record_payment(&ss, DatumGetNumeric(amount));

			MemoryContextSwitchTo(old);
			MemoryContextReset(row_cxt);
		}
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_freetuptable(SPI_tuptable);

	deferred_flush(&ss.sa, row_cxt);
	close_state(&ss.sa);
	MemoryContextDelete(row_cxt);
	MemoryContextDelete(deferred.cxt);
}

/*
 * p2pay.rebuild_state(): empty the per-account state and record every
 * stored payment in it, as the owner of payments (see catalog.c).
 */
PG_FUNCTION_INFO_V1(p2pay_rebuild_state);
Datum
p2pay_rebuild_state(PG_FUNCTION_ARGS)
{
	Oid			nspid = p2pay_schema();
	Oid			owner;
	OwnerContext saved;
	Portal		portal;
	int			ret;

	{
		Relation	rel = table_open(p2pay_relid("payments"), AccessShareLock);

		owner = rel->rd_rel->relowner;
		table_close(rel, NoLock);
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "p2pay: SPI_connect failed");
	p2pay_begin_as_owner(owner, &saved);
	p2pay_write_pending();

	/* no payment may come or go while the state is counted */
	ret = SPI_execute(rebuild_lock_sql, false, 0);
	if (ret != SPI_OK_UTILITY)
		elog(ERROR, "p2pay: locking payments failed: %s", SPI_result_code_string(ret));
	ret = SPI_execute(legacy_layout(nspid) ? rebuild_truncate_1_1_sql : rebuild_truncate_sql,
					  false, 0);
	if (ret != SPI_OK_UTILITY)
		elog(ERROR, "p2pay: emptying the state failed: %s", SPI_result_code_string(ret));

	/* read to its end, with a snapshot taken after the lock */
	(void) set_config_option("cursor_tuple_fraction", "1", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	portal = SPI_cursor_open_with_args(NULL, rebuild_read_sql, 0, NULL, NULL, NULL, false, 0);
	if (portal == NULL)
		elog(ERROR, "p2pay: rebuild_state could not open a cursor: %s",
			 SPI_result_code_string(SPI_result));
	record_all(portal, nspid);
	SPI_cursor_close(portal);

	p2pay_end_as_owner(&saved);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "p2pay: SPI_finish failed");
	PG_RETURN_VOID();
}

/*
 * Reversing a payment: the inverse of recording it, through the same rows
 * and writes, exact whatever else was archived (deleted with
 * p2pay.delete_mode = archive, which leaves the state as it was).  The
 * counts and sums subtract the payment: a bucket that held only it goes,
 * and so does a pair whose count reaches 0 (archived payments still count
 * in it).  A pair's first and last times are read again only when the
 * payment was its first or its last, from the pair's payments that remain
 * (the first one at or after it, or the last one at or before it, through
 * the payer's index); when none remains, as when the pair's other payments
 * were all archived, whose exact times are not known any more, the bound
 * moves to the other one.  A multi-row DELETE has removed every row before
 * the first reversal runs, and each row's reversal sees the pair as the
 * previous one left it, so the times come out as if the rows had been
 * deleted one by one.
 *
 * The payment's UTC day in account_daily: out_count goes down by one, and
 * out_payees (the payer's distinct payees that day) and in_payers (the
 * payee's distinct payers that day) go down by one when no payment of the
 * pair remains that day; none of them below what the payments that remain
 * that day count (the payee's distinct payers through the pairs paid since
 * the day began).  Without archived payments that day this is exact,
 * including after a multi-row DELETE, whose rows' reversals all see what
 * the whole statement left.  With archived payments that day, which the
 * payments that remain can't show, the distinct counts are never higher
 * than they should be and at most one lower per payment reversed: a pair
 * whose only payments left that day are archived stops counting.
 *
 * The rows that no payment counts in any more go (see emptied_by): the
 * payer's and payee's row of the day and their running totals, as
 * rebuild_state() would count none.
 *
 * Every read of the state and of the payments that remain is made with one
 * snapshot, taken before any of the writes, as one statement's would be.
 */

/*
 * What the payer's payments that remain on the reversed payment's day
 * count: how many, to how many payees, and whether one is to its payee.
 */
typedef struct DayLeft
{
	int64		out_count;
	int64		out_payees;
	bool		pair_left;
} DayLeft;

static int
payee_cmp(const void *a, const void *b)
{
	return memcmp(a, b, UUID_LEN);
}

static void
payments_of_day(StateAccess *sa, const pg_uuid_t *payer, const pg_uuid_t *payee,
				TimestampTz day_start, DayLeft *left)
{
	PayScan		ps;
	const PaySource *src;
	TupleTableSlot *slot;
	Size		size = 16;
	pg_uuid_t  *payees = palloc(sizeof(pg_uuid_t) * size);

	memset(left, 0, sizeof(DayLeft));
	pay_scan_during(&ps, sa, payer, day_start, day_start + USECS_PER_DAY);
	while ((slot = pay_scan_next(&ps, &src)) != NULL)
	{
		bool		isnull;
		pg_uuid_t  *id = DatumGetUUIDP(slot_getattr(slot, src->payee, &isnull));

		if ((Size) left->out_count == size)
		{
			size *= 2;
			payees = repalloc_huge(payees, sizeof(pg_uuid_t) * size);
		}
		payees[left->out_count++] = *id;
		if (memcmp(id->data, payee->data, UUID_LEN) == 0)
			left->pair_left = true;
	}
	pay_scan_end(&ps);
	qsort(payees, left->out_count, sizeof(pg_uuid_t), payee_cmp);
	for (int64 i = 0; i < left->out_count; i++)
		if (i == 0 || payee_cmp(&payees[i], &payees[i - 1]) != 0)
			left->out_payees++;
	pfree(payees);
}

/*
 * How many payers paid payee on the UTC day starting at day_start: of the
 * pairs paid since it began, those whose payer's payments show one.
 */
static int64
payers_of_day(StateAccess *sa, const pg_uuid_t *payee, TimestampTz day_start)
{
	ScanKeyData keys[2];
	IndexScanDesc scan;
	TupleTableSlot *slot;
	int64		n = 0;

	key_account(&keys[0], payee);
	key_second(&keys[1], BTGreaterEqualStrategyNumber, F_TIMESTAMPTZ_GE,
			   TimestampTzGetDatum(day_start));
	scan = begin_scan(sa, IDX_PAIR_PAYEE_LAST, keys, 2);
	while ((slot = next_row(sa, scan, IDX_PAIR_PAYEE_LAST, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		pg_uuid_t	payer = *DatumGetUUIDP(slot_getattr(slot, PAIR_PAYER, &isnull));

		if (paid_during(sa, &payer, payee, day_start, day_start + USECS_PER_DAY))
			n++;
	}
	index_endscan(scan);
	return n;
}

/*
 * An account's row of the reversed payment's day, on the payment's sides:
 * out_count down by one, out_payees and in_payers by one when no payment
 * of the pair remains that day, none below what the payments that remain
 * count.
 */
static void
forget_day(StateAccess *sa, const pg_uuid_t *id, TimestampTz created_at, int sides,
		   const DayLeft *left, Datum amount)
{
	TimestampTz day_start = p2pay_day_of(created_at);
	int64		gone = left->pair_left ? 0 : 1;
	ScanKeyData keys[2];
	RowChange	change = {.reverse = true};
	HeapTuple	row;

	key_day(keys, id, p2pay_date_of(day_start));
	row = fetch_row(sa, IDX_DAILY, keys, 2);
	if (row == NULL)
		return;
	if (sides & SIDE_OUT)
	{
		take_from(&change, DAILY_OUT_COUNT, 1, left->out_count);
		take_from(&change, DAILY_OUT_PAYEES, gone, left->out_payees);
		change_hour(&change, p2pay_hour_of_day(created_at), amount);
	}
	if (sides & SIDE_IN)
		take_from(&change, DAILY_IN_PAYERS, gone, payers_of_day(sa, id, day_start));
	apply_change(sa, IDX_DAILY, keys, 2, row, &change);
}

/*
 * Take a reversed payment out of the per-account state, so that no rule
 * counts it any more.  The accounts are locked.
 */
void
p2pay_forget_payment(const pg_uuid_t *payer, const pg_uuid_t *payee,
					 TimestampTz created_at, Numeric amount_base)
{
	Datum		amount = NumericGetDatum(amount_base);
	TimestampTz day_start = p2pay_day_of(created_at);
	bool		self = memcmp(payer->data, payee->data, UUID_LEN) == 0;
	int			payer_sides = self ? SIDE_OUT | SIDE_IN : SIDE_OUT;
	StateAccess sa;
	DayLeft		left;

	Assert(p2pay_accounts_locked());
	p2pay_write_pending();
	memset(&sa, 0, sizeof(sa));
	open_state(&sa, p2pay_schema(), true);

	/* the days first: the payee's payers are counted from the pairs as they were */
	payments_of_day(&sa, payer, payee, day_start, &left);
	forget_day(&sa, payer, created_at, payer_sides, &left, amount);
	if (!self)
		forget_day(&sa, payee, created_at, SIDE_IN, &left, amount);

	record_pair(&sa, payer, payee, created_at, fetch_pair(&sa, payer, payee), amount, true);
	if (cache.legacy)
		record_hour(&sa, payer, p2pay_hour_of(created_at), amount, true);
	record_account(&sa, payer, fetch_account(&sa, payer), payer_sides, amount, true);
	if (!self)
		record_account(&sa, payee, fetch_account(&sa, payee), SIDE_IN, amount, true);

	close_state(&sa);
}
