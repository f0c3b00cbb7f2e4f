/*
 * stats.c: per-rule statistics in shared memory, read through the view
 * p2pay.rule_stats and set back to zero by p2pay.rule_stats_reset().
 *
 * Every scoring (an insert, or a dry run) reads the facts once and evaluates
 * each rule that is not off; each of these is counted in a slot of one
 * struct in shared memory: slots 0..RULE_COUNT-1 are the rules in catalogue
 * order, slot STATS_FACTS the reading of the facts.  A slot holds
 * evaluations, fires, total and maximum time in nanoseconds.  The figures
 * are cluster-wide and not transactional (a rolled-back payment was still
 * evaluated), and start from zero when the server starts (or restarts after
 * a crash).
 *
 * Memory: the struct is reserved when the server starts, so it exists only
 * when p2pay is in shared_preload_libraries.  Otherwise (the library loaded
 * on first use) there is none: counting does nothing and the SQL functions
 * raise an error, while scoring works as ever.  Nothing is allocated on the
 * insert path.
 *
 * Locking: none.  Every counter is a 64-bit atomic, each slot on its own
 * cache line: the insert path adds with fetch-add and raises the maximum
 * with a compare-exchange loop, so inserts never wait for each other here.
 * A slot is written in the order evaluations, fires, maximum, total and read
 * in the order fires, total, evaluations, maximum, so that a reading taken
 * while inserts run still has fires <= evaluations and mean <= maximum.  A
 * reset writes its timestamp, then zeros counter by counter: an evaluation
 * in flight across a reset may be counted in part, and the reader clamps the
 * figures so that both inequalities hold all the same.
 */
#include "postgres.h"

#include "p2pay.h"
#include "compat.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

/* Slots: the rules, then the reading of the facts. */
#define STATS_SLOTS (STATS_FACTS + 1)

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

/* The shared struct: one slot per rule and one for the facts. */
typedef struct StatsShared
{
	StatsSlot	slots[STATS_SLOTS];
	pg_atomic_uint64 since;		/* TimestampTz of the last reset */
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

/* The shared struct; NULL unless p2pay was preloaded. */
static StatsShared *stats = NULL;

#ifdef P2PAY_HAVE_SHMEM_REQUEST_HOOK
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Set every counter to zero and since to now. */
static void
stats_clear(void)
{
	pg_atomic_write_u64(&stats->since, (uint64) GetCurrentTimestamp());
	pg_memory_barrier();
	for (int i = 0; i < STATS_SLOTS; i++)
	{
		StatsCounters *c = &stats->slots[i].c;

		pg_atomic_write_u64(&c->evaluations, 0);
		pg_atomic_write_u64(&c->fires, 0);
		pg_atomic_write_u64(&c->max_ns, 0);
		pg_atomic_write_u64(&c->total_ns, 0);
	}
	pg_memory_barrier();
}

#ifdef P2PAY_HAVE_SHMEM_REQUEST_HOOK
/* Reserve the shared struct (from 15, requests are taken only here). */
static void
stats_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(sizeof(StatsShared));
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
	stats = ShmemInitStruct("p2pay rule_stats", sizeof(StatsShared), &found);
	if (!found)
	{
		for (int i = 0; i < STATS_SLOTS; i++)
		{
			StatsCounters *c = &stats->slots[i].c;

			pg_atomic_init_u64(&c->evaluations, 0);
			pg_atomic_init_u64(&c->fires, 0);
			pg_atomic_init_u64(&c->max_ns, 0);
			pg_atomic_init_u64(&c->total_ns, 0);
		}
		pg_atomic_init_u64(&stats->since, (uint64) GetCurrentTimestamp());
	}
	LWLockRelease(AddinShmemInitLock);
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
	RequestAddinShmemSpace(sizeof(StatsShared));
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = stats_shmem_startup;
}

/* Whether statistics are kept (p2pay was preloaded): callers skip timing otherwise. */
bool
p2pay_stats_enabled(void)
{
	return stats != NULL;
}

/* Count one evaluation of a slot (the insert path: atomics only, no lock). */
void
p2pay_stats_count(int slot, bool fired, int64 nanoseconds)
{
	StatsCounters *c;
	uint64		ns;
	uint64		max;

	if (stats == NULL || slot < 0 || slot >= STATS_SLOTS)
		return;

	c = &stats->slots[slot].c;
	ns = nanoseconds > 0 ? (uint64) nanoseconds : 0;

	pg_atomic_fetch_add_u64(&c->evaluations, 1);
	if (fired)
		pg_atomic_fetch_add_u64(&c->fires, 1);
	max = pg_atomic_read_u64(&c->max_ns);
	while (ns > max && !pg_atomic_compare_exchange_u64(&c->max_ns, &max, ns))
		;						/* max now holds the value that won */
	pg_atomic_fetch_add_u64(&c->total_ns, (int64) ns);
}

/* Raise the error of a statistics function called without the struct. */
static void
require_stats(const char *what)
{
	if (stats == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s needs p2pay in shared_preload_libraries", what),
				 errdetail("The per-rule statistics live in shared memory, which p2pay can only reserve when the server loads it at start."),
				 errhint("Add p2pay to shared_preload_libraries, keeping any library already listed there (for example ALTER SYSTEM SET shared_preload_libraries = 'p2pay'), and restart the server.")));
}

/* Read one slot, in the order that keeps the reading consistent. */
static void
read_slot(int slot, StatsReading *out)
{
	StatsCounters *c = &stats->slots[slot].c;

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
 * for the facts: evaluations, fires, mean and maximum time in microseconds,
 * and when the counting started.
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
		snap->since = (TimestampTz) pg_atomic_read_u64(&stats->since);
		pg_read_barrier();
		for (int i = 0; i < STATS_SLOTS; i++)
			read_slot(i, &snap->slots[i]);
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

/* SQL p2pay.rule_stats_reset(): every counter to zero, since to now. */
PG_FUNCTION_INFO_V1(p2pay_rule_stats_reset);
Datum
p2pay_rule_stats_reset(PG_FUNCTION_ARGS)
{
	require_stats("p2pay.rule_stats_reset()");
	stats_clear();
	PG_RETURN_VOID();
}
