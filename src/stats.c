/*
 * stats.c: statistics in shared memory, per database: per-rule counters read
 * through the view p2pay.rule_stats (reset by p2pay.rule_stats_reset()), and
 * the decisions of committed payments read through p2pay.decision_stats
 * (reset by p2pay.decision_stats_reset()).
 *
 * Rules: every scoring by the trigger reads the facts once and evaluates
 * each rule that is not off; each is counted in a slot: slots
 * 0..RULE_COUNT-1 are the rules in catalogue order, slot STATS_FACTS the
 * reading of the facts.  A slot holds evaluations, fires, total and maximum
 * time in nanoseconds.  These figures are not transactional (a rolled-back
 * payment was still evaluated).
 *
 * Decisions: the trigger adds each payment's decision to a count in the
 * backend, kept per subtransaction; a subtransaction that rolls back drops
 * its counts, one that commits hands them to its parent, and at the top
 * transaction's commit (after its commit record is written) they are added
 * to shared memory.  A rolled-back or prepared (two-phase) transaction
 * counts nothing.  The counters only grow, until a reset or a restart.
 *
 * Memory: reserved when the server starts, so it exists only when p2pay is
 * in shared_preload_libraries.  Otherwise counting does nothing and the SQL
 * functions raise an error, while scoring works as ever.  The struct holds
 * p2pay.stats_databases blocks and one overflow block.  A database takes a
 * block the first time one of its backends counts or reads: the block of a
 * dropped database is taken back when no block is free.  Once every block
 * is taken, further databases share the overflow block, and their views say
 * so (column overflow, from p2pay.stats_overflow()); a LOG line tells the
 * server log.  From then on until a restart, no block is taken back, so that
 * a database counts into one block only.  A backend finds its database's
 * block once and keeps a pointer to it.
 *
 * Locking: a spinlock guards taking a block, and nothing else.  Every
 * counter is a 64-bit atomic, each slot on its own cache line: the insert
 * path adds with fetch-add and raises the maximum with a compare-exchange
 * loop, so inserts never wait for each other here.  A slot is written in the
 * order evaluations, fires, maximum, total and read in the order fires,
 * total, evaluations, maximum, so that a reading taken while inserts run
 * still has fires <= evaluations and mean <= maximum.  A reset writes its
 * timestamp, then zeros counter by counter: an evaluation in flight across a
 * reset may be counted in part, and the reader clamps the figures so that
 * both inequalities hold all the same.
 */
#include "postgres.h"

#include "p2pay.h"
#include "compat.h"
#include "rules.h"
#include "stats.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

/* Slots: the rules, then the reading of the facts. */
#define STATS_SLOTS (STATS_FACTS + 1)

/* Decisions counted: approve, review, decline. */
#define STATS_DECISIONS (DECISION_DECLINE + 1)

/* p2pay.stats_databases: the blocks reserved at start, besides the overflow block. */
int			p2pay_stats_databases = 64;

/* The counters of one slot. */
typedef struct StatsCounters
{
	pg_atomic_uint64 evaluations;
	pg_atomic_uint64 fires;
	pg_atomic_uint64 max_ns;
	pg_atomic_uint64 total_ns;
} StatsCounters;

/* A slot padded to a cache line, so that rules don't contend for one. */
typedef union StatsSlot
{
	StatsCounters c;
	char		pad[PG_CACHE_LINE_SIZE];
} StatsSlot;

/* The decision counters, on a cache line of their own (written at commit). */
typedef union StatsDecisions
{
	pg_atomic_uint64 n[STATS_DECISIONS];
	char		pad[PG_CACHE_LINE_SIZE];
} StatsDecisions;

/* Whose block it is and since when it counts, read rarely. */
typedef struct StatsOwner
{
	pg_atomic_uint32 dboid;		/* InvalidOid: free (or the overflow block) */
	pg_atomic_uint64 since;		/* TimestampTz of the rules' last reset */
	pg_atomic_uint64 decisions_since;	/* TimestampTz of the decisions' last reset */
} StatsOwner;

typedef union StatsOwnerLine
{
	StatsOwner	o;
	char		pad[PG_CACHE_LINE_SIZE];
} StatsOwnerLine;

/* One database's counters. */
typedef struct StatsBlock
{
	StatsOwnerLine owner;
	StatsSlot	slots[STATS_SLOTS];
	StatsDecisions decisions;
} StatsBlock;

/* The shared struct's header, then nblocks blocks and the overflow block. */
typedef struct StatsHeader
{
	slock_t		mutex;			/* taken only to take a block */
	int			nblocks;
	bool		overflowed;		/* a database went to the overflow block */
} StatsHeader;

typedef union StatsHeaderLine
{
	StatsHeader h;
	char		pad[PG_CACHE_LINE_SIZE];
} StatsHeaderLine;

typedef struct StatsShared
{
	StatsHeaderLine header;
	StatsBlock	blocks[FLEXIBLE_ARRAY_MEMBER];	/* nblocks + 1 */
} StatsShared;

/* One slot as read, for a row of the view. */
typedef struct StatsReading
{
	uint64		evaluations;
	uint64		fires;
	uint64		max_ns;
	uint64		total_ns;
} StatsReading;

/* Every slot as read at the first row, so that the rows belong together. */
typedef struct StatsSnapshot
{
	TimestampTz since;
	StatsReading slots[STATS_SLOTS];
} StatsSnapshot;

/* The decision counters as read at the first row. */
typedef struct DecisionSnapshot
{
	TimestampTz since;
	uint64		n[STATS_DECISIONS];
} DecisionSnapshot;

/*
 * Decisions counted in this backend's transaction, not yet committed: one
 * entry per subtransaction that counted, innermost last.
 */
typedef struct PendingDecisions
{
	SubTransactionId subid;
	uint64		n[STATS_DECISIONS];
} PendingDecisions;

/* The shared struct; NULL unless p2pay was preloaded. */
static StatsShared *stats = NULL;

/* This backend's block (its database's, or the overflow block), once found. */
static StatsBlock *my_block = NULL;

static PendingDecisions *pending = NULL;
static int	pending_used = 0;
static int	pending_size = 0;

#ifdef P2PAY_HAVE_SHMEM_REQUEST_HOOK
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* The size of the shared struct for p2pay.stats_databases blocks. */
static Size
stats_size(void)
{
	return add_size(offsetof(StatsShared, blocks),
					mul_size(sizeof(StatsBlock), (Size) p2pay_stats_databases + 1));
}

/* The overflow block, shared by the databases that found none free. */
static inline StatsBlock *
overflow_block(void)
{
	return &stats->blocks[stats->header.h.nblocks];
}

/* Set a block's rule counters to zero and their since to now. */
static void
clear_rules(StatsBlock *b, TimestampTz now)
{
	pg_atomic_write_u64(&b->owner.o.since, (uint64) now);
	pg_memory_barrier();
	for (int i = 0; i < STATS_SLOTS; i++)
	{
		StatsCounters *c = &b->slots[i].c;

		pg_atomic_write_u64(&c->evaluations, 0);
		pg_atomic_write_u64(&c->fires, 0);
		pg_atomic_write_u64(&c->max_ns, 0);
		pg_atomic_write_u64(&c->total_ns, 0);
	}
	pg_memory_barrier();
}

/* Set a block's decision counters to zero and their since to now. */
static void
clear_decisions(StatsBlock *b, TimestampTz now)
{
	pg_atomic_write_u64(&b->owner.o.decisions_since, (uint64) now);
	pg_memory_barrier();
	for (int i = 0; i < STATS_DECISIONS; i++)
		pg_atomic_write_u64(&b->decisions.n[i], 0);
	pg_memory_barrier();
}

#ifdef P2PAY_HAVE_SHMEM_REQUEST_HOOK
/* Reserve the shared struct (from 15, requests are taken only here). */
static void
stats_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(stats_size());
}
#endif

/* Create the shared struct at server start, or attach to it. */
static void
stats_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	stats = ShmemInitStruct("p2pay statistics", stats_size(), &found);
	if (!found)
	{
		TimestampTz now = GetCurrentTimestamp();

		SpinLockInit(&stats->header.h.mutex);
		stats->header.h.nblocks = p2pay_stats_databases;
		stats->header.h.overflowed = false;
		for (int b = 0; b <= p2pay_stats_databases; b++)
		{
			StatsBlock *block = &stats->blocks[b];

			pg_atomic_init_u32(&block->owner.o.dboid, InvalidOid);
			pg_atomic_init_u64(&block->owner.o.since, (uint64) now);
			pg_atomic_init_u64(&block->owner.o.decisions_since, (uint64) now);
			for (int i = 0; i < STATS_SLOTS; i++)
			{
				StatsCounters *c = &block->slots[i].c;

				pg_atomic_init_u64(&c->evaluations, 0);
				pg_atomic_init_u64(&c->fires, 0);
				pg_atomic_init_u64(&c->max_ns, 0);
				pg_atomic_init_u64(&c->total_ns, 0);
			}
			for (int i = 0; i < STATS_DECISIONS; i++)
				pg_atomic_init_u64(&block->decisions.n[i], 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Drop the pending decisions of subtransaction subid and those inside it. */
static void
pending_drop_from(SubTransactionId subid)
{
	while (pending_used > 0 && pending[pending_used - 1].subid >= subid)
		pending_used--;
}

/*
 * At commit, add the transaction's decisions to its database's block; at
 * abort or prepare, forget them.
 */
static void
stats_xact_callback(XactEvent event, void *arg)
{
	if (pending_used == 0)
		return;
	if (event == XACT_EVENT_COMMIT && my_block != NULL)
	{
		for (int e = 0; e < pending_used; e++)
			for (int i = 0; i < STATS_DECISIONS; i++)
				if (pending[e].n[i] > 0)
					pg_atomic_fetch_add_u64(&my_block->decisions.n[i], (int64) pending[e].n[i]);
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT)
		pending_used = 0;
}

/*
 * A subtransaction that commits hands its decisions to its parent; one that
 * rolls back drops them.
 */
static void
stats_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	PendingDecisions *last;

	if (pending_used == 0)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		pending_drop_from(mySubid);
		return;
	}
	if (event != SUBXACT_EVENT_COMMIT_SUB)
		return;
	last = &pending[pending_used - 1];
	if (last->subid != mySubid)
		return;
	if (pending_used > 1 && pending[pending_used - 2].subid == parentSubid)
	{
		for (int i = 0; i < STATS_DECISIONS; i++)
			pending[pending_used - 2].n[i] += last->n[i];
		pending_used--;
	}
	else
		last->subid = parentSubid;
}

/* Install the shared-memory hooks, when loaded by shared_preload_libraries. */
void
p2pay_stats_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

#ifdef P2PAY_HAVE_SHMEM_REQUEST_HOOK
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = stats_shmem_request;
#else
	RequestAddinShmemSpace(stats_size());
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = stats_shmem_startup;
	RegisterXactCallback(stats_xact_callback, NULL);
	RegisterSubXactCallback(stats_subxact_callback, NULL);
}

/* Whether statistics are kept (p2pay was preloaded): callers skip timing otherwise. */
bool
p2pay_stats_enabled(void)
{
	return stats != NULL;
}

/* The block that belongs to dboid, or NULL (no lock: owners only change under it). */
static StatsBlock *
find_block(Oid dboid)
{
	for (int b = 0; b < stats->header.h.nblocks; b++)
		if (pg_atomic_read_u32(&stats->blocks[b].owner.o.dboid) == dboid)
			return &stats->blocks[b];
	return NULL;
}

/*
 * This backend's block: its database's, taken on first use (a free one, else
 * one whose database was dropped), else the overflow block.  Called inside a
 * transaction (the check for dropped databases reads pg_database); never on
 * a path that must not fail, and it does not fail but for a catalog read.
 */
static StatsBlock *
database_block(void)
{
	StatsBlock *block;
	Oid			stale[8];
	int			nstale = 0;
	TimestampTz now;

	if (my_block != NULL || stats == NULL || !OidIsValid(MyDatabaseId))
		return my_block;

	block = find_block(MyDatabaseId);
	if (block == NULL)
	{
		/*
		 * Blocks of dropped databases, looked up before the spinlock (no
		 * catalog access under it), in case no block is free.  A dropped
		 * database has no backend left to count into its block.  Once a
		 * database has gone to the overflow block, none is taken back, so
		 * that no database's figures are split between two blocks (the
		 * sessions already counting into the overflow block would go on).
		 */
		if (find_block(InvalidOid) == NULL && !stats->header.h.overflowed)
		{
			for (int b = 0; b < stats->header.h.nblocks && nstale < (int) lengthof(stale); b++)
			{
				Oid			owner = pg_atomic_read_u32(&stats->blocks[b].owner.o.dboid);

				if (OidIsValid(owner) &&
					!SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum(owner)))
					stale[nstale++] = owner;
			}
		}

		now = GetCurrentTimestamp();
		SpinLockAcquire(&stats->header.h.mutex);
		block = find_block(MyDatabaseId);
		if (block == NULL)
			block = find_block(InvalidOid);
		for (int s = 0; block == NULL && !stats->header.h.overflowed && s < nstale; s++)
			block = find_block(stale[s]);
		if (block == NULL)
			stats->header.h.overflowed = true;
		if (block != NULL && pg_atomic_read_u32(&block->owner.o.dboid) != MyDatabaseId)
		{
			/* zeroed before its owner is published: no count goes astray */
			clear_rules(block, now);
			clear_decisions(block, now);
			pg_write_barrier();
			pg_atomic_write_u32(&block->owner.o.dboid, MyDatabaseId);
		}
		SpinLockRelease(&stats->header.h.mutex);
	}

	if (block == NULL)
	{
		block = overflow_block();
		ereport(LOG,
				(errmsg("p2pay statistics of database \"%s\" share the overflow block",
						get_database_name(MyDatabaseId)),
				 errdetail("All %d blocks that p2pay.stats_databases reserves belong to other databases.",
						   stats->header.h.nblocks),
				 errhint("Raise p2pay.stats_databases and restart the server.")));
	}
	my_block = block;
	return my_block;
}

/* Whether this backend counts into the overflow block. */
static bool
in_overflow(void)
{
	return my_block == overflow_block();
}

/* Count one evaluation of a slot (the insert path: atomics only, no lock). */
void
p2pay_stats_count(int slot, bool fired, int64 nanoseconds)
{
	StatsCounters *c;
	StatsBlock *block;
	uint64		ns;
	uint64		max;

	if (stats == NULL || slot < 0 || slot >= STATS_SLOTS)
		return;
	block = database_block();
	if (block == NULL)
		return;

	c = &block->slots[slot].c;
	ns = nanoseconds > 0 ? (uint64) nanoseconds : 0;

	pg_atomic_fetch_add_u64(&c->evaluations, 1);
	if (fired)
		pg_atomic_fetch_add_u64(&c->fires, 1);
	max = pg_atomic_read_u64(&c->max_ns);
	while (ns > max && !pg_atomic_compare_exchange_u64(&c->max_ns, &max, ns))
		;						/* max now holds the value that won */
	pg_atomic_fetch_add_u64(&c->total_ns, (int64) ns);
}

/*
 * Count an inserted payment's decision, to be added at commit (backend
 * memory only; the array grows rarely, in TopMemoryContext).
 */
void
p2pay_stats_count_decision(int decision)
{
	SubTransactionId subid;

	if (stats == NULL || decision < 0 || decision >= STATS_DECISIONS)
		return;
	if (database_block() == NULL)
		return;

	subid = GetCurrentSubTransactionId();
	if (pending_used == 0 || pending[pending_used - 1].subid != subid)
	{
		if (pending_used == pending_size)
		{
			int			size = Max(pending_size * 2, 4);

			pending = pending == NULL
				? MemoryContextAlloc(TopMemoryContext, size * sizeof(PendingDecisions))
				: repalloc(pending, size * sizeof(PendingDecisions));
			pending_size = size;
		}
		pending[pending_used].subid = subid;
		memset(pending[pending_used].n, 0, sizeof(pending[pending_used].n));
		pending_used++;
	}
	pending[pending_used - 1].n[decision]++;
}

/* Raise the error of a statistics function called without the struct. */
static void
require_stats(const char *what)
{
	if (stats == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s needs p2pay in shared_preload_libraries", what),
				 errdetail("p2pay's statistics live in shared memory, which p2pay can only reserve when the server loads it at start."),
				 errhint("Add p2pay to shared_preload_libraries, keeping any library already listed there (for example ALTER SYSTEM SET shared_preload_libraries = 'p2pay'), and restart the server.")));
	if (database_block() == NULL)
		elog(ERROR, "p2pay: no statistics block for this backend");
}

/* Read one slot, in the order that keeps the reading consistent. */
static void
read_slot(StatsBlock *block, int slot, StatsReading *out)
{
	StatsCounters *c = &block->slots[slot].c;

	out->fires = pg_atomic_read_u64(&c->fires);
	out->total_ns = pg_atomic_read_u64(&c->total_ns);
	pg_read_barrier();
	out->evaluations = pg_atomic_read_u64(&c->evaluations);
	out->max_ns = pg_atomic_read_u64(&c->max_ns);

	/* Only a reset racing with an evaluation can break this (and mean <= max). */
	if (out->fires > out->evaluations)
		out->fires = out->evaluations;
}

/* Mean time of a slot in microseconds: at most its maximum, 0 when unused. */
static double
mean_us(const StatsReading *r)
{
	double		mean;

	if (r->evaluations == 0)
		return 0.0;
	mean = (double) r->total_ns / (double) r->evaluations;
	return Min(mean, (double) r->max_ns) / 1000.0;
}

/*
 * SQL p2pay.rule_stats_read(): a row per rule in catalogue order, then one
 * for the facts, of this database's block: evaluations, fires, mean and
 * maximum time in microseconds, and when the counting started.
 */
PG_FUNCTION_INFO_V1(p2pay_rule_stats);
Datum
p2pay_rule_stats(PG_FUNCTION_ARGS)
{
	FuncCallContext *funcctx;
	StatsSnapshot *snap;

	if (SRF_IS_FIRSTCALL())
	{
		MemoryContext oldcxt;
		TupleDesc	tupdesc;

		require_stats("p2pay.rule_stats");
		funcctx = SRF_FIRSTCALL_INIT();
		oldcxt = MemoryContextSwitchTo(funcctx->multi_call_memory_ctx);
		if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "p2pay: rule_stats_read must return a row type");
		funcctx->tuple_desc = BlessTupleDesc(tupdesc);

		snap = palloc(sizeof(StatsSnapshot));
		snap->since = (TimestampTz) pg_atomic_read_u64(&my_block->owner.o.since);
		pg_read_barrier();
		for (int i = 0; i < STATS_SLOTS; i++)
			read_slot(my_block, i, &snap->slots[i]);
		funcctx->user_fctx = snap;
		funcctx->max_calls = STATS_SLOTS;
		MemoryContextSwitchTo(oldcxt);
	}

	funcctx = SRF_PERCALL_SETUP();
	snap = funcctx->user_fctx;
	if (funcctx->call_cntr < funcctx->max_calls)
	{
		int			slot = (int) funcctx->call_cntr;
		StatsReading *r = &snap->slots[slot];
		Datum		values[6];
		bool		nulls[6] = {false, false, false, false, false, false};
		HeapTuple	tuple;

		values[0] = CStringGetTextDatum(slot < RULE_COUNT ? p2pay_rule_name((RuleId) slot) : "facts");
		values[1] = Int64GetDatum((int64) r->evaluations);
		values[2] = Int64GetDatum((int64) r->fires);
		values[3] = Float8GetDatum(mean_us(r));
		values[4] = Float8GetDatum((double) r->max_ns / 1000.0);
		values[5] = TimestampTzGetDatum(snap->since);
		tuple = heap_form_tuple(funcctx->tuple_desc, values, nulls);
		SRF_RETURN_NEXT(funcctx, HeapTupleGetDatum(tuple));
	}
	SRF_RETURN_DONE(funcctx);
}

/*
 * SQL p2pay.stats_overflow(): whether this database's statistics are the
 * overflow block's, shared with every other database that found no block.
 */
PG_FUNCTION_INFO_V1(p2pay_stats_overflow);
Datum
p2pay_stats_overflow(PG_FUNCTION_ARGS)
{
	require_stats("p2pay.stats_overflow()");
	PG_RETURN_BOOL(in_overflow());
}

/* SQL p2pay.rule_stats_reset(): this database's rule counters to zero, since to now. */
PG_FUNCTION_INFO_V1(p2pay_rule_stats_reset);
Datum
p2pay_rule_stats_reset(PG_FUNCTION_ARGS)
{
	require_stats("p2pay.rule_stats_reset()");
	clear_rules(my_block, GetCurrentTimestamp());
	PG_RETURN_VOID();
}

/*
 * SQL p2pay.decision_stats_read(): per decision (approve, review, decline)
 * the payments of this database that committed with it, and since when.
 */
PG_FUNCTION_INFO_V1(p2pay_decision_stats);
Datum
p2pay_decision_stats(PG_FUNCTION_ARGS)
{
	FuncCallContext *funcctx;
	DecisionSnapshot *snap;

	if (SRF_IS_FIRSTCALL())
	{
		MemoryContext oldcxt;
		TupleDesc	tupdesc;

		require_stats("p2pay.decision_stats");
		funcctx = SRF_FIRSTCALL_INIT();
		oldcxt = MemoryContextSwitchTo(funcctx->multi_call_memory_ctx);
		if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE || tupdesc->natts != 3)
			elog(ERROR, "p2pay: decision_stats_read must return a row of 3 columns");
		funcctx->tuple_desc = BlessTupleDesc(tupdesc);

		snap = palloc(sizeof(DecisionSnapshot));
		snap->since = (TimestampTz) pg_atomic_read_u64(&my_block->owner.o.decisions_since);
		pg_read_barrier();
		for (int i = 0; i < STATS_DECISIONS; i++)
			snap->n[i] = pg_atomic_read_u64(&my_block->decisions.n[i]);
		funcctx->user_fctx = snap;
		funcctx->max_calls = STATS_DECISIONS;
		MemoryContextSwitchTo(oldcxt);
	}

	funcctx = SRF_PERCALL_SETUP();
	snap = funcctx->user_fctx;
	if (funcctx->call_cntr < funcctx->max_calls)
	{
		int			i = (int) funcctx->call_cntr;
		Datum		values[3];
		bool		nulls[3] = {false, false, false};
		HeapTuple	tuple;

		values[0] = CStringGetTextDatum(p2pay_decision_label(i));
		values[1] = Int64GetDatum((int64) snap->n[i]);
		values[2] = TimestampTzGetDatum(snap->since);
		tuple = heap_form_tuple(funcctx->tuple_desc, values, nulls);
		SRF_RETURN_NEXT(funcctx, HeapTupleGetDatum(tuple));
	}
	SRF_RETURN_DONE(funcctx);
}

/* SQL p2pay.decision_stats_reset(): this database's decision counters to zero. */
PG_FUNCTION_INFO_V1(p2pay_decision_stats_reset);
Datum
p2pay_decision_stats_reset(PG_FUNCTION_ARGS)
{
	require_stats("p2pay.decision_stats_reset()");
	clear_decisions(my_block, GetCurrentTimestamp());
	PG_RETURN_VOID();
}
