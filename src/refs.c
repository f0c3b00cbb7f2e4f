/*
 * refs.c: the lookup of a payment's references, through the tables'
 * primary keys and the heap directly rather than through SQL: that its
 * currency, users and method exist, and the facts concurrent payments
 * can't change (the rate, the accounts' ages, the registered methods, the
 * lists, the rule-set version they belong to).
 *
 * The lookup runs before the accounts are locked, with a snapshot of its
 * own taken after a command-counter increment (so that a user inserted
 * earlier in the statement is found).  The tables' layout (the columns
 * read and the primary keys scanned) is checked when their descriptions
 * are loaded, once per backend and again after any DDL on them.
 */
#include "postgres.h"

#include "p2pay.h"
#include "catalog.h"
#include "facts.h"
#include "refs.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

/*
 * The tables the lookup reads, by key through their primary key (the lists
 * and the rule-set version are scanned whole: snoozes are few, the
 * version one row), and the columns it reads.
 */
typedef enum RefRel
{
	REF_CURRENCIES,
	REF_USERS,
	REF_METHODS,
	REF_USER_METHODS,
	REF_BLOCKLIST,
	REF_ALLOWLIST,
	REF_SNOOZES,
	REF_RULESET,
	NUM_REFS
} RefRel;

typedef enum RefAtt
{
	ATT_CURRENCY_CODE,
	ATT_CURRENCY_RATE,
	ATT_USER_ID,
	ATT_USER_CREATED_AT,
	ATT_METHOD_ID,
	ATT_UPM_USER,
	ATT_UPM_METHOD,
	ATT_BLOCK_USER,
	ATT_BLOCK_EXPIRES,
	ATT_ALLOW_USER,
	ATT_ALLOW_EXPIRES,
	ATT_SNOOZE_RULE,
	ATT_SNOOZE_USER,
	ATT_SNOOZE_UNTIL,
	ATT_RULESET_VERSION,
	NUM_REF_ATTS
} RefAtt;

/* Each table's primary key: its columns, which the lookup's keys are on. */
static const struct
{
	const char *name;
	const char *pkey;
	int			nkeys;
	RefAtt		keys[2];
}			ref_defs[NUM_REFS] = {
	{"currencies", "currencies_pkey", 1, {ATT_CURRENCY_CODE}},
	{"users", "users_pkey", 1, {ATT_USER_ID}},
	{"payment_methods", "payment_methods_pkey", 1, {ATT_METHOD_ID}},
	{"user_payment_methods", "user_payment_methods_pkey", 2, {ATT_UPM_USER, ATT_UPM_METHOD}},
	{"blocklist", "blocklist_pkey", 1, {ATT_BLOCK_USER}},
	{"allowlist", "allowlist_pkey", 1, {ATT_ALLOW_USER}},
	{"snoozes", NULL, 0, {0}},
	{"ruleset", NULL, 0, {0}},
};

static const struct
{
	RefRel		rel;
	ColumnSpec	col;
}			ref_att_defs[NUM_REF_ATTS] = {
	{REF_CURRENCIES, COLUMN_NOT_NULL("code", BPCHAROID)},
	{REF_CURRENCIES, COLUMN_NOT_NULL("rate_to_base", NUMERICOID)},
	{REF_USERS, COLUMN_NOT_NULL("id", UUIDOID)},
	{REF_USERS, COLUMN_NOT_NULL("created_at", TIMESTAMPTZOID)},
	{REF_METHODS, COLUMN_NOT_NULL("id", UUIDOID)},
	{REF_USER_METHODS, COLUMN_NOT_NULL("user_id", UUIDOID)},
	{REF_USER_METHODS, COLUMN_NOT_NULL("payment_method_id", UUIDOID)},
	{REF_BLOCKLIST, COLUMN_NOT_NULL("user_id", UUIDOID)},
	{REF_BLOCKLIST, COLUMN("expires_at", TIMESTAMPTZOID)},
	{REF_ALLOWLIST, COLUMN_NOT_NULL("user_id", UUIDOID)},
	{REF_ALLOWLIST, COLUMN("expires_at", TIMESTAMPTZOID)},
	{REF_SNOOZES, COLUMN_NOT_NULL("rule", TEXTOID)},
	{REF_SNOOZES, COLUMN("user_id", UUIDOID)},
	{REF_SNOOZES, COLUMN_NOT_NULL("until", TIMESTAMPTZOID)},
	{REF_RULESET, COLUMN("version", INT8OID)},
};

/*
 * What is known of the tables, per backend, for the schema in nspid;
 * valid is cleared by any relcache invalidation of one of them (DDL,
 * VACUUM, ANALYZE) and everything is looked up again.
 */
static struct
{
	P2payCacheState state;
	Oid			nspid;
	Oid			refs[NUM_REFS]; /* the tables the lookup reads */
	Oid			ref_idxs[NUM_REFS];
	AttrNumber	ref_atts[NUM_REF_ATTS];
	Oid			ref_collations[NUM_REF_ATTS];	/* the index's, for text keys */
}			cache;

static bool callback_registered = false;

static void
refs_relcache_callback(Datum arg, Oid relid)
{
	if (!p2pay_cache_concerned(&cache.state, relid))
		return;
	for (int i = 0; i < NUM_REFS; i++)
		if (cache.refs[i] == relid || cache.ref_idxs[i] == relid)
			cache.state.valid = false;
}

/* Check the tables the lookup reads: their columns and primary keys. */
static void
load_refs(Oid nspid)
{
	Relation	rels[NUM_REFS];

	for (int i = 0; i < NUM_REFS; i++)
	{
		cache.refs[i] = p2pay_relid(ref_defs[i].name);
		cache.ref_idxs[i] = ref_defs[i].pkey ? p2pay_relid(ref_defs[i].pkey) : InvalidOid;
		rels[i] = p2pay_open_checked(cache.refs[i]);
	}
	for (int i = 0; i < NUM_REF_ATTS; i++)
	{
		Relation	rel = rels[ref_att_defs[i].rel];

		cache.ref_atts[i] = p2pay_column(rel, &ref_att_defs[i].col);
		cache.ref_collations[i] =
			TupleDescAttr(RelationGetDescr(rel), cache.ref_atts[i] - 1)->attcollation;
	}
	for (int i = 0; i < NUM_REFS; i++)
	{
		if (ref_defs[i].pkey != NULL)
		{
			AttrNumber	keys[2];

			for (int k = 0; k < ref_defs[i].nkeys; k++)
				keys[k] = cache.ref_atts[ref_defs[i].keys[k]];
			p2pay_check_scanned_index(cache.ref_idxs[i], rels[i], keys, ref_defs[i].nkeys, true);
		}
		table_close(rels[i], AccessShareLock);
	}
}


static void
load_cache(Oid nspid)
{
	if (cache.state.valid && cache.nspid == nspid)
		return;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(refs_relcache_callback, (Datum) 0);
		callback_registered = true;
	}

	/*
	 * Valid once loaded whole, unless an invalidation came meanwhile (the
	 * caller then loads it again once its locks are taken).
	 */
	p2pay_cache_begin_load(&cache.state);
	cache.nspid = nspid;
	load_refs(nspid);
	p2pay_cache_end_load(&cache.state);
}

/*
 * The lookup: the references of a payment and the facts that concurrent
 * payments can't change.  Read with a snapshot of its own, before the
 * accounts are locked.
 */
typedef struct RefAccess
{
	Relation	rels[NUM_REFS];
	Snapshot	snapshot;
} RefAccess;

/* A copy of the row of rel whose primary key columns equal values, or NULL. */
static HeapTuple
ref_row(RefAccess *ra, RefRel r, int nkeys, const RefAtt *atts, const RegProcedure *procs,
		const Datum *values)
{
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tup;

	for (int i = 0; i < nkeys; i++)
	{
		ScanKeyInit(&keys[i], cache.ref_atts[atts[i]], BTEqualStrategyNumber, procs[i], values[i]);
		if (OidIsValid(cache.ref_collations[atts[i]]))
			keys[i].sk_collation = cache.ref_collations[atts[i]];
	}
	scan = systable_beginscan(ra->rels[r], cache.ref_idxs[r], true, ra->snapshot, nkeys, keys);
	tup = systable_getnext(scan);
	if (tup != NULL)
		tup = heap_copytuple(tup);
	systable_endscan(scan);
	return tup;
}

static HeapTuple
ref_by_uuid(RefAccess *ra, RefRel r, RefAtt att, const pg_uuid_t *id)
{
	RegProcedure proc = F_UUID_EQ;
	Datum		value = UUIDPGetDatum(id);

	return ref_row(ra, r, 1, &att, &proc, &value);
}

static Datum
ref_att(RefAccess *ra, RefRel r, HeapTuple tup, RefAtt att, bool *isnull)
{
	return heap_getattr(tup, cache.ref_atts[att], RelationGetDescr(ra->rels[r]), isnull);
}

/* Whether a list (blocklist, allowlist) holds the user at time t. */
static bool
listed(RefAccess *ra, RefRel r, RefAtt user_att, RefAtt expires_att, const pg_uuid_t *id,
	   TimestampTz t)
{
	HeapTuple	tup = ref_by_uuid(ra, r, user_att, id);
	bool		isnull;
	Datum		expires;

	if (tup == NULL)
		return false;
	expires = ref_att(ra, r, tup, expires_att, &isnull);
	return isnull || DatumGetTimestampTz(expires) > t;
}

/* The rules snoozed for the payer or the payee at time t, a bit per rule. */
static uint32
snoozed(RefAccess *ra, const PaymentInput *in, TimestampTz t)
{
	SysScanDesc scan = systable_beginscan(ra->rels[REF_SNOOZES], InvalidOid, false,
										  ra->snapshot, 0, NULL);
	HeapTuple	tup;
	uint32		bits = 0;

	while ((tup = systable_getnext(scan)) != NULL)
	{
		bool		isnull;
		pg_uuid_t  *user = DatumGetUUIDP(ref_att(ra, REF_SNOOZES, tup, ATT_SNOOZE_USER, &isnull));
		int			rule;

		if (isnull || (memcmp(user->data, in->payer->data, UUID_LEN) != 0 &&
					   memcmp(user->data, in->payee->data, UUID_LEN) != 0))
			continue;
		if (DatumGetTimestampTz(ref_att(ra, REF_SNOOZES, tup, ATT_SNOOZE_UNTIL, &isnull)) <= t)
			continue;
		rule = p2pay_rule_lookup(TextDatumGetCString(ref_att(ra, REF_SNOOZES, tup,
															 ATT_SNOOZE_RULE, &isnull)));
		if (rule >= 0)
			bits |= 1u << rule;
	}
	systable_endscan(scan);
	return bits;
}

/* The rule-set version (0 if the row is missing). */
static int64
ruleset_version(RefAccess *ra)
{
	SysScanDesc scan = systable_beginscan(ra->rels[REF_RULESET], InvalidOid, false,
										  ra->snapshot, 0, NULL);
	HeapTuple	tup = systable_getnext(scan);
	int64		version = 0;

	if (tup != NULL)
	{
		bool		isnull;
		Datum		d = ref_att(ra, REF_RULESET, tup, ATT_RULESET_VERSION, &isnull);

		version = isnull ? 0 : DatumGetInt64(d);
	}
	systable_endscan(scan);
	return version;
}

static char *
uuid_text(const pg_uuid_t *id)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id)));
}

/*
 * Check that the payment's currency, users and method exist, and read the
 * facts that concurrent payments can't change: the rate, the payer's age,
 * the registered methods, the lists and the rule-set version they belong
 * to.  amount_base is computed into result_cxt.
 */
void
p2pay_lookup_references(Oid nspid, const PaymentInput *in, PaymentFacts *facts,
						MemoryContext result_cxt, int64 *version)
{
	RefAccess	ra;
	HeapTuple	tup;
	bool		isnull;
	Datum		rate;
	TimestampTz t = in->created_at;
	MemoryContext old;

	for (;;)
	{
		load_cache(nspid);
		for (int i = 0; i < NUM_REFS; i++)
			ra.rels[i] = table_open(cache.refs[i], AccessShareLock);
		if (cache.state.valid)
			break;
		for (int i = 0; i < NUM_REFS; i++)
			table_close(ra.rels[i], NoLock);
	}
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	ra.snapshot = GetActiveSnapshot();

	{
		RefAtt		att = ATT_CURRENCY_CODE;
		RegProcedure proc = F_BPCHAREQ;

		tup = ref_row(&ra, REF_CURRENCIES, 1, &att, &proc, &in->currency);
	}
	if (tup == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
				 errmsg("unknown currency \"%s\" in column currency",
						p2pay_echo(TextDatumGetCString(in->currency))),
				 errhint("Add it to p2pay.currencies with its rate_to_base first."),
				 p2pay_errpaymentref("currency", "currencies")));
	rate = ref_att(&ra, REF_CURRENCIES, tup, ATT_CURRENCY_RATE, &isnull);

	tup = ref_by_uuid(&ra, REF_USERS, ATT_USER_ID, in->payer);
	if (tup == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
				 errmsg("unknown user %s in column payer_id", uuid_text(in->payer)),
				 errdetail("Payments are made between users of p2pay.users."),
				 p2pay_errpaymentref("payer_id", "users")));
	facts->payer_created_at =
		DatumGetTimestampTz(ref_att(&ra, REF_USERS, tup, ATT_USER_CREATED_AT, &isnull));
	tup = ref_by_uuid(&ra, REF_USERS, ATT_USER_ID, in->payee);
	if (tup == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
				 errmsg("unknown user %s in column payee_id", uuid_text(in->payee)),
				 errdetail("Payments are made between users of p2pay.users."),
				 p2pay_errpaymentref("payee_id", "users")));
	facts->payee_created_at =
		DatumGetTimestampTz(ref_att(&ra, REF_USERS, tup, ATT_USER_CREATED_AT, &isnull));
	if (ref_by_uuid(&ra, REF_METHODS, ATT_METHOD_ID, in->method) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
				 errmsg("unknown payment method %s in column payment_method_id",
						uuid_text(in->method)),
				 errhint("SELECT id, name FROM p2pay.payment_methods lists them."),
				 p2pay_errpaymentref("payment_method_id", "payment_methods")));
	{
		RefAtt		atts[2] = {ATT_UPM_USER, ATT_UPM_METHOD};
		RegProcedure procs[2] = {F_UUID_EQ, F_UUID_EQ};
		Datum		values[2] = {UUIDPGetDatum(in->payer), UUIDPGetDatum(in->method)};

		facts->method_registered = ref_row(&ra, REF_USER_METHODS, 2, atts, procs, values) != NULL;
	}
	facts->payer_blocked = listed(&ra, REF_BLOCKLIST, ATT_BLOCK_USER, ATT_BLOCK_EXPIRES, in->payer, t);
	facts->payee_blocked = listed(&ra, REF_BLOCKLIST, ATT_BLOCK_USER, ATT_BLOCK_EXPIRES, in->payee, t);
	facts->allowlisted =
		listed(&ra, REF_ALLOWLIST, ATT_ALLOW_USER, ATT_ALLOW_EXPIRES, in->payer, t) ||
		listed(&ra, REF_ALLOWLIST, ATT_ALLOW_USER, ATT_ALLOW_EXPIRES, in->payee, t);
	facts->snoozed = snoozed(&ra, in, t);
	*version = ruleset_version(&ra);

	old = MemoryContextSwitchTo(result_cxt);
	facts->amount_base = DatumGetNumeric(DirectFunctionCall2(numeric_mul,
															 NumericGetDatum(in->amount),
															 rate));
	MemoryContextSwitchTo(old);
	facts->amount = p2pay_numeric_to_double(NumericGetDatum(facts->amount_base));
	facts->created_at = t;

	PopActiveSnapshot();
	for (int i = 0; i < NUM_REFS; i++)
		table_close(ra.rels[i], NoLock);
}
