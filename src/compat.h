/*
 * compat.h: differences between the PostgreSQL major versions p2pay builds
 * against (13 to 18), gathered in one place.  Code elsewhere uses the names
 * defined here and never tests PG_VERSION_NUM itself.
 */
#ifndef P2PAY_COMPAT_H
#define P2PAY_COMPAT_H

#include "postgres.h"
#include "access/genam.h"
#include "access/heapam.h"
#include "access/relation.h"
#include "catalog/dependency.h"
#include "storage/lock.h"
#include "utils/guc.h"

/* MarkGUCPrefixReserved appeared in 15; older versions only warn. */
#if PG_VERSION_NUM < 150000
#define MarkGUCPrefixReserved(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

/* LockHeldByMe: 17 added orstronger. */
#if PG_VERSION_NUM >= 170000
#define p2pay_lock_held_by_me(tag, mode) LockHeldByMe(tag, mode, false)
#else
#define p2pay_lock_held_by_me(tag, mode) LockHeldByMe(tag, mode)
#endif

/* numeric NaN and infinities: 14 added infinities and numeric_is_inf. */
#if PG_VERSION_NUM >= 140000
#define p2pay_numeric_is_special(num) (numeric_is_nan(num) || numeric_is_inf(num))
#else
#define p2pay_numeric_is_special(num) numeric_is_nan(num)
#endif

/*
 * Logical decoding (output.c).  17 hands decoded tuples out as HeapTuple,
 * earlier versions wrapped in a ReorderBufferTupleBuf; 15 moved the commit
 * time into xact_time and gave OutputPluginUpdateProgress its skipped_xact
 * argument.
 */
#if PG_VERSION_NUM >= 170000
#define p2pay_change_newtuple(change) ((change)->data.tp.newtuple)
#define p2pay_change_oldtuple(change) ((change)->data.tp.oldtuple)
#else
#define p2pay_change_newtuple(change) \
	((change)->data.tp.newtuple ? &(change)->data.tp.newtuple->tuple : NULL)
#define p2pay_change_oldtuple(change) \
	((change)->data.tp.oldtuple ? &(change)->data.tp.oldtuple->tuple : NULL)
#endif

#if PG_VERSION_NUM >= 150000
#define p2pay_txn_commit_time(txn) ((txn)->xact_time.commit_time)
#define p2pay_update_progress(ctx, skipped_xact) OutputPluginUpdateProgress((ctx), (skipped_xact))
#else
#define p2pay_txn_commit_time(txn) ((txn)->commit_time)
#define p2pay_update_progress(ctx, skipped_xact) OutputPluginUpdateProgress(ctx)
#endif

/*
 * A transactional logical decoding message (trigger.c): 17 added the
 * argument that flushes a non-transactional one at once.
 */
#if PG_VERSION_NUM >= 170000
#define p2pay_log_message(prefix, message) \
	LogLogicalMessage((prefix), (message), strlen(message), true, false)
#else
#define p2pay_log_message(prefix, message) \
	LogLogicalMessage((prefix), (message), strlen(message), true)
#endif

/*
 * Shared memory of a preloaded library (stats.c): 15 added
 * shmem_request_hook and takes RequestAddinShmemSpace only from it; 13 and
 * 14 take the request straight from _PG_init.
 */
#if PG_VERSION_NUM >= 150000
#define P2PAY_HAVE_SHMEM_REQUEST_HOOK 1
#endif

/*
 * Writing the state tables (store.c).  16 gave heap_update an out argument
 * saying which indexes need entries, and lets a HOT update still need
 * entries in summarizing (BRIN) indexes; 14 gave index_insert its
 * indexUnchanged hint.
 */
#if PG_VERSION_NUM >= 160000
static inline TM_Result
p2pay_heap_update(Relation rel, ItemPointer otid, HeapTuple tup, CommandId cid,
				  TM_FailureData *tmfd)
{
	LockTupleMode lockmode;
	TU_UpdateIndexes update_indexes;

	return heap_update(rel, otid, tup, cid, InvalidSnapshot, true, tmfd, &lockmode,
					   &update_indexes);
}
#define p2pay_index_summarizing(info) ((info)->ii_Summarizing)
#else
static inline TM_Result
p2pay_heap_update(Relation rel, ItemPointer otid, HeapTuple tup, CommandId cid,
				  TM_FailureData *tmfd)
{
	LockTupleMode lockmode;

	return heap_update(rel, otid, tup, cid, InvalidSnapshot, true, tmfd, &lockmode);
}
#define p2pay_index_summarizing(info) false
#endif

/*
 * An index scan (store.c): 18 added the instrumentation an EXPLAIN ANALYZE
 * fills; p2pay's scans have none.
 */
#if PG_VERSION_NUM >= 180000
#define p2pay_index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), NULL, (nkeys), (norderbys))
#else
#define p2pay_index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), (nkeys), (norderbys))
#endif

#if PG_VERSION_NUM >= 140000
#define p2pay_index_insert(index, values, isnull, tid, heap, check, unchanged, info) \
	index_insert((index), (values), (isnull), (tid), (heap), (check), (unchanged), (info))
#else
#define p2pay_index_insert(index, values, isnull, tid, heap, check, unchanged, info) \
	index_insert((index), (values), (isnull), (tid), (heap), (check), (info))
#endif

/*
 * The sequence of an identity column (trigger.c): 17 takes the relation
 * rather than its OID.  The relation is opened only for the look-up, and its
 * lock held only as long, as 15's catalog-only look-up holds none past it.
 */
#if PG_VERSION_NUM >= 170000
static inline Oid
p2pay_identity_sequence(Oid relid, AttrNumber attnum, bool missing_ok)
{
	Relation	rel = relation_open(relid, AccessShareLock);
	Oid			seq = getIdentitySequence(rel, attnum, missing_ok);

	relation_close(rel, AccessShareLock);
	return seq;
}
#else
#define p2pay_identity_sequence(relid, attnum, missing_ok) \
	getIdentitySequence((relid), (attnum), (missing_ok))
#endif

#endif							/* P2PAY_COMPAT_H */
