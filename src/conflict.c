/*
 * conflict.c: payments inserted by INSERT ... ON CONFLICT.
 *
 * The scoring trigger runs before the executor looks for a conflicting
 * row: a row that ON CONFLICT then passes over (DO NOTHING) or turns into
 * an update of the stored one (DO UPDATE) was scored and counted in the
 * account state, though it was never stored.  So while such a statement
 * runs, the trigger looks first, with the accounts locked, for a stored
 * payment the row conflicts with on a unique index of its table, as the
 * executor will (seeing rows not yet committed, and the statement's own):
 * a row that conflicts is neither scored nor counted, and is left to ON
 * CONFLICT.
 *
 * Another transaction, inserting or deleting a payment of the same key
 * but other accounts, can still change the answer before the executor
 * looks; and an index whose entries the trigger can't form (on an
 * expression, partial, or NULLS NOT DISTINCT over a null) is not looked
 * at.  So the statement's closing trigger checks its rows as stored: each
 * one counted is there, and no row passed over is.  Otherwise the
 * statement fails with a serialization failure, and its retry decides
 * again.  The check needs the statement's triggers (store.c, Statements):
 * without them ON CONFLICT is refused.
 *
 * Which statements: an executor hook notes each one started with ON
 * CONFLICT in any part of its plan, until it ends.  In a backend that
 * loaded p2pay on demand, the statement that loaded it, and any begun
 * before, were started unseen: for the rest of that transaction every
 * insert is treated as one that may be passed over.
 */
#include "postgres.h"

#include "p2pay.h"
#include "compat.h"
#include "conflict.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "nodes/plannodes.h"
#include "utils/array.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

/* An executor running a statement with ON CONFLICT. */
typedef struct Running
{
	QueryDesc  *query;
	SubTransactionId subid;
} Running;

static Running *running;
static int	nrunning;
static int	maxrunning;

/* p2pay was loaded in this transaction: statements may have started unseen. */
static bool loaded_late;

static ExecutorStart_hook_type prev_executor_start;
static ExecutorEnd_hook_type prev_executor_end;

/* Whether a plan (the whole, or a data-modifying WITH's) has ON CONFLICT. */
static bool
modifies_on_conflict(Plan *plan)
{
	return plan != NULL && IsA(plan, ModifyTable) &&
		((ModifyTable *) plan)->onConflictAction != ONCONFLICT_NONE;
}

static bool
statement_on_conflict(PlannedStmt *stmt)
{
	ListCell   *lc;

	if (stmt->commandType != CMD_INSERT && !stmt->hasModifyingCTE)
		return false;
	if (modifies_on_conflict(stmt->planTree))
		return true;
	foreach(lc, stmt->subplans)
		if (modifies_on_conflict((Plan *) lfirst(lc)))
			return true;
	return false;
}

static void
conflict_executor_start(QueryDesc *query, int eflags)
{
	if (prev_executor_start)
		prev_executor_start(query, eflags);
	else
		standard_ExecutorStart(query, eflags);
	if ((eflags & EXEC_FLAG_EXPLAIN_ONLY) || !statement_on_conflict(query->plannedstmt))
		return;
	if (nrunning == maxrunning)
	{
		maxrunning = Max(8, maxrunning * 2);
		running = running == NULL
			? MemoryContextAlloc(TopMemoryContext, sizeof(Running) * maxrunning)
			: repalloc(running, sizeof(Running) * maxrunning);
	}
	running[nrunning].query = query;
	running[nrunning].subid = GetCurrentSubTransactionId();
	nrunning++;
}

static void
conflict_executor_end(QueryDesc *query)
{
	for (int i = nrunning - 1; i >= 0; i--)
		if (running[i].query == query)
		{
			memmove(&running[i], &running[i + 1], sizeof(Running) * (nrunning - i - 1));
			nrunning--;
			break;
		}
	if (prev_executor_end)
		prev_executor_end(query);
	else
		standard_ExecutorEnd(query);
}

static void
conflict_xact_callback(XactEvent event, void *arg)
{
	if (p2pay_xact_ends(event))
	{
		nrunning = 0;
		loaded_late = false;
	}
}

/* Executors of an aborted subtransaction end without ExecutorEnd. */
static void
conflict_subxact_callback(SubXactEvent event, SubTransactionId subid,
						  SubTransactionId parent_subid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		while (nrunning > 0 && running[nrunning - 1].subid >= subid)
			nrunning--;
}

/* Whether an insert now may be passed over by ON CONFLICT, and how known. */
ConflictWatch
p2pay_conflict_watch(void)
{
	if (nrunning > 0)
		return CONFLICT_KNOWN;
	return loaded_late ? CONFLICT_UNKNOWN : CONFLICT_NONE;
}

/*
 * Whether index idx of rel holds an entry equal to tup's, visible or being
 * written (dirty); false when the entry can't be formed from tup's columns.
 */
static bool
index_conflicts(Relation rel, Relation idx, HeapTuple tup, Snapshot dirty)
{
	Form_pg_index ix = idx->rd_index;
	int			nkeys = ix->indnkeyatts;
	ScanKeyData keys[INDEX_MAX_KEYS];
	IndexScanDesc scan;
	TupleTableSlot *slot;
	bool		found;

	if (!ix->indisunique || !ix->indimmediate || !ix->indisready ||
		idx->rd_rel->relam != BTREE_AM_OID ||
		!heap_attisnull(idx->rd_indextuple, Anum_pg_index_indpred, NULL))
		return false;
	for (int k = 0; k < nkeys; k++)
	{
		AttrNumber	att = ix->indkey.values[k];
		Oid			type = idx->rd_opcintype[k];
		Oid			eq;
		bool		isnull;
		Datum		value;

		if (att <= 0 || att > RelationGetDescr(rel)->natts)
			return false;		/* an expression, or a system column */
		value = heap_getattr(tup, att, RelationGetDescr(rel), &isnull);
		if (isnull)
			return false;		/* never equal, but with NULLS NOT DISTINCT */
		eq = get_opfamily_member(idx->rd_opfamily[k], type, type, BTEqualStrategyNumber);
		if (!OidIsValid(eq))
			return false;
		ScanKeyEntryInitialize(&keys[k], 0, k + 1, BTEqualStrategyNumber, InvalidOid,
							   idx->rd_indcollation[k], get_opcode(eq), value);
	}

	scan = p2pay_index_beginscan(rel, idx, dirty, nkeys, 0);
	index_rescan(scan, keys, nkeys, NULL, 0);
	slot = table_slot_create(rel, NULL);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	return found;
}

/*
 * Whether payment tup, about to be inserted into rel (payments or a leaf
 * partition), conflicts with a payment stored or being stored, on a unique
 * index of rel, as ON CONFLICT will see it; if so, index_name says which.
 */
bool
p2pay_payment_conflicts(Relation rel, HeapTuple tup, char **index_name)
{
	List	   *indexes = RelationGetIndexList(rel);
	SnapshotData dirty;
	ListCell   *lc;
	bool		conflict = false;

	InitDirtySnapshot(dirty);
	foreach(lc, indexes)
	{
		Relation	idx = index_open(lfirst_oid(lc), AccessShareLock);

		conflict = index_conflicts(rel, idx, tup, &dirty);
		if (conflict)
			*index_name = pstrdup(RelationGetRelationName(idx));
		index_close(idx, AccessShareLock);
		if (conflict)
			break;
	}
	list_free(indexes);
	return conflict;
}

static Datum
id_array(const int64 *ids, const bool *recorded, int n, bool which)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			k = 0;

	for (int i = 0; i < n; i++)
		if (recorded[i] == which)
			elems[k++] = Int64GetDatum(ids[i]);
	return PointerGetDatum(construct_array(elems, k, INT8OID, sizeof(int64), FLOAT8PASSBYVAL,
										   TYPALIGN_DOUBLE));
}

static const char *const verify_sql =
"SELECT (SELECT pg_catalog.count(*) FROM p2pay.payments p"
"         WHERE p.id OPERATOR(pg_catalog.=) ANY ($1)),"
"       (SELECT pg_catalog.count(*) FROM p2pay.payments p"
"         WHERE p.id OPERATOR(pg_catalog.=) ANY ($2))";

/*
 * The statement's closing check: of the payments (ids) its rows were to
 * become, each one scored and counted (recorded) is stored, and none
 * passed over is.  In SPI, as the owner of payments.
 */
void
p2pay_conflict_verify(const int64 *ids, const bool *recorded, int n)
{
	Oid			types[2] = {INT8ARRAYOID, INT8ARRAYOID};
	Datum		args[2];
	int64		counted = 0;
	int64		stored_counted;
	int64		stored_passed;
	bool		isnull;

	if (n == 0)
		return;
	for (int i = 0; i < n; i++)
		counted += recorded[i] ? 1 : 0;
	args[0] = id_array(ids, recorded, n, true);
	args[1] = id_array(ids, recorded, n, false);
	if (SPI_execute_with_args(verify_sql, 2, types, args, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "p2pay: checking the payments of an INSERT ... ON CONFLICT failed");
	stored_counted = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
												 1, &isnull));
	stored_passed = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
												2, &isnull));
	if (stored_counted != counted || stored_passed != 0)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent update"),
				 errdetail("Of the payments an INSERT ... ON CONFLICT scored, " INT64_FORMAT " of " INT64_FORMAT " were stored, and " INT64_FORMAT " it passed over as conflicting were stored: another transaction inserted or deleted a payment of the same key meanwhile, or a payment conflicts on a constraint p2pay does not look up before scoring (an exclusion constraint, or a unique index on an expression, with a predicate, or with NULLS NOT DISTINCT).",
						   stored_counted, counted, stored_passed),
				 errhint("Retry the transaction; if it fails again, name the conflict target (ON CONFLICT (transaction_id)).")));
}

/*
 * Install the executor hooks; loaded inside a transaction, statements of
 * it may have begun unseen.
 */
void
p2pay_conflict_register_hooks(void)
{
	prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = conflict_executor_start;
	prev_executor_end = ExecutorEnd_hook;
	ExecutorEnd_hook = conflict_executor_end;
	RegisterXactCallback(conflict_xact_callback, NULL);
	RegisterSubXactCallback(conflict_subxact_callback, NULL);
	loaded_late = IsTransactionState();
}
