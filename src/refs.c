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
 *
 * The small tables (currencies, payment methods, the lists, the snoozes
 * and the rule-set version) are kept whole in backend memory for payments
 * scored with a new snapshot per statement (see Kept below); the users
 * and the registered methods are read by key for every payment.
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
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
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

/*
 * Kept.  Under READ COMMITTED, where each statement reads with a new
 * snapshot, the rows of the small tables are kept in backend memory, read
 * whole with one snapshot and used until one of the tables changes:
 *
 * - each of them has triggers, config_changed(), that queue a relcache
 *   invalidation of the table at every row inserted, updated or deleted,
 *   and at every TRUNCATE; at commit it reaches every backend, which takes
 *   it in before every lookup's snapshot, and within the changing
 *   transaction it applies at the next command, and again at a rollback;
 * - a table is kept only while it has such triggers, enabled ALWAYS (so
 *   that session_replication_role can't silence them), for all four
 *   events, with no column list and no condition; adding, changing,
 *   disabling or dropping a trigger invalidates the table too, and a table
 *   without them is read by key, as under REPEATABLE READ;
 * - and only while it holds at most KEPT_MAX_ROWS rows (a blocklist of a
 *   million users is read by key).
 *
 * So a payment is scored against the lists as of a snapshot no older than
 * its statement's start, less the instant between a change's commit
 * becoming visible and its invalidation being sent: a transaction that
 * begins after the change's COMMIT has returned sees it.  Under REPEATABLE
 * READ and SERIALIZABLE every table is read with the transaction's
 * snapshot, as before.
 */
#define KEPT_MAX_ROWS 10000
#define KEPT_CODE_LEN 16		/* a currency code's bytes, trailing blanks off */

typedef struct KeptCurrency
{
	char		code[KEPT_CODE_LEN];	/* the hash key: zero-padded */
	Numeric		rate;
} KeptCurrency;

typedef struct KeptListed
{
	pg_uuid_t	id;				/* the hash key */
	bool		forever;		/* expires_at is null */
	TimestampTz expires;
} KeptListed;

typedef struct KeptSnooze
{
	pg_uuid_t	user;
	int			rule;
	TimestampTz until;
} KeptSnooze;

static struct
{
	P2payCacheState state;
	Oid			nspid;
	MemoryContext cxt;			/* everything below; reset at each load */
	bool		kept[NUM_REFS]; /* which tables are kept */
	HTAB	   *currencies;		/* KeptCurrency */
	HTAB	   *methods;		/* pg_uuid_t */
	HTAB	   *blocked;		/* KeptListed */
	HTAB	   *allowed;		/* KeptListed */
	KeptSnooze *snoozes;		/* sorted by user */
	int			nsnoozes;
	int			maxsnoozes;
	int64		version;
}			kept;

static bool callback_registered = false;

static void
refs_relcache_callback(Datum arg, Oid relid)
{
	bool		layout = p2pay_cache_concerned(&cache.state, relid);
	bool		rows = p2pay_cache_concerned(&kept.state, relid);

	for (int i = 0; i < NUM_REFS; i++)
		if (cache.refs[i] == relid || cache.ref_idxs[i] == relid)
		{
			if (layout)
				cache.state.valid = false;
			if (rows)
				kept.state.valid = false;
		}
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
	 * caller then loads it again once its locks are taken).  The rows kept
	 * are read again too, from the tables as now described.
	 */
	p2pay_cache_begin_load(&cache.state);
	kept.state.valid = false;
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

/*
 * A currency code as the kept currencies' hash key: its bytes without the
 * trailing blanks, as char(n)'s equality compares them under a
 * deterministic collation; false if too long to keep.
 */
static bool
currency_key(Datum code, char *key)
{
	BpChar	   *b = DatumGetBpCharPP(code);
	const char *p = VARDATA_ANY(b);
	int			len = VARSIZE_ANY_EXHDR(b);

	while (len > 0 && p[len - 1] == ' ')
		len--;
	if (len >= KEPT_CODE_LEN)
		return false;
	memset(key, 0, KEPT_CODE_LEN);
	memcpy(key, p, len);
	return true;
}

/*
 * Whether rel has the triggers that announce each change of its rows to
 * every backend (see Kept): config_changed() (fn) after each row inserted,
 * updated or deleted, and after each TRUNCATE, enabled ALWAYS, with no
 * column list and no condition.  Row triggers, since logical replication
 * applies rows without firing statement triggers.
 */
static bool
announces_changes(Relation rel, Oid fn)
{
	const int16 all = TRIGGER_TYPE_INSERT | TRIGGER_TYPE_UPDATE | TRIGGER_TYPE_DELETE |
		TRIGGER_TYPE_TRUNCATE;
	TriggerDesc *td = rel->trigdesc;
	int16		covered = 0;

	if (td == NULL || !OidIsValid(fn))
		return false;
	for (int i = 0; i < td->numtriggers; i++)
	{
		const Trigger *t = &td->triggers[i];

		if (t->tgfoid != fn || t->tgenabled != TRIGGER_FIRES_ALWAYS ||
			!TRIGGER_FOR_AFTER(t->tgtype) || t->tgnattr != 0 || t->tgqual != NULL)
			continue;
		if (TRIGGER_FOR_ROW(t->tgtype))
			covered |= t->tgtype & (TRIGGER_TYPE_INSERT | TRIGGER_TYPE_UPDATE |
									TRIGGER_TYPE_DELETE);
		else
			covered |= t->tgtype & TRIGGER_TYPE_TRUNCATE;
	}
	return (covered & all) == all;
}

static HTAB *
kept_hash(const char *name, Size keysize, Size entrysize)
{
	HASHCTL		ctl;

	ctl.keysize = keysize;
	ctl.entrysize = entrysize;
	ctl.hcxt = kept.cxt;
	return hash_create(name, 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

static int
snooze_cmp(const void *a, const void *b)
{
	return memcmp(((const KeptSnooze *) a)->user.data, ((const KeptSnooze *) b)->user.data,
				  UUID_LEN);
}

/*
 * Keep one row of table r (in kept.cxt); false if it can't be kept (a
 * currency code too long for the key, or a null where a value is
 * required), and then the table isn't.
 */
static bool
keep_row(RefAccess *ra, RefRel r, HeapTuple tup, int n)
{
	bool		isnull;
	bool		found;
	Datum		d;

	switch (r)
	{
		case REF_CURRENCIES:
			{
				char		key[KEPT_CODE_LEN];
				KeptCurrency *c;

				d = ref_att(ra, r, tup, ATT_CURRENCY_CODE, &isnull);
				if (isnull || !currency_key(d, key))
					return false;
				d = ref_att(ra, r, tup, ATT_CURRENCY_RATE, &isnull);
				if (isnull)
					return false;
				c = hash_search(kept.currencies, key, HASH_ENTER, &found);
				c->rate = DatumGetNumericCopy(d);
				return true;
			}
		case REF_METHODS:
			d = ref_att(ra, r, tup, ATT_METHOD_ID, &isnull);
			if (isnull)
				return false;
			(void) hash_search(kept.methods, DatumGetUUIDP(d), HASH_ENTER, &found);
			return true;
		case REF_BLOCKLIST:
		case REF_ALLOWLIST:
			{
				bool		block = r == REF_BLOCKLIST;
				KeptListed *l;

				d = ref_att(ra, r, tup, block ? ATT_BLOCK_USER : ATT_ALLOW_USER, &isnull);
				if (isnull)
					return false;
				l = hash_search(block ? kept.blocked : kept.allowed, DatumGetUUIDP(d),
								HASH_ENTER, &found);
				d = ref_att(ra, r, tup, block ? ATT_BLOCK_EXPIRES : ATT_ALLOW_EXPIRES, &isnull);
				l->forever = isnull;
				l->expires = isnull ? 0 : DatumGetTimestampTz(d);
				return true;
			}
		case REF_SNOOZES:
			{
				KeptSnooze *k;

				/* as snoozed() reads them: a row without a user snoozes nothing */
				d = ref_att(ra, r, tup, ATT_SNOOZE_USER, &isnull);
				if (isnull)
					return true;
				if (kept.nsnoozes == kept.maxsnoozes)
				{
					kept.maxsnoozes *= 2;
					kept.snoozes = repalloc(kept.snoozes, sizeof(KeptSnooze) * kept.maxsnoozes);
				}
				k = &kept.snoozes[kept.nsnoozes];
				memcpy(k->user.data, DatumGetUUIDP(d)->data, UUID_LEN);
				d = ref_att(ra, r, tup, ATT_SNOOZE_UNTIL, &isnull);
				if (isnull)
					return false;
				k->until = DatumGetTimestampTz(d);
				d = ref_att(ra, r, tup, ATT_SNOOZE_RULE, &isnull);
				if (isnull)
					return false;
				k->rule = p2pay_rule_lookup(TextDatumGetCString(d));
				if (k->rule >= 0)
					kept.nsnoozes++;
				return true;
			}
		case REF_RULESET:
			/* the first row, as ruleset_version() reads it */
			if (n == 1)
			{
				d = ref_att(ra, r, tup, ATT_RULESET_VERSION, &isnull);
				kept.version = isnull ? 0 : DatumGetInt64(d);
			}
			return true;
		default:
			return false;
	}
}

/* Read table r whole into kept (see Kept); false if it isn't kept. */
static bool
keep_table(RefAccess *ra, RefRel r)
{
	SysScanDesc scan;
	HeapTuple	tup;
	int			n = 0;
	bool		ok = true;
	MemoryContext old = MemoryContextSwitchTo(kept.cxt);

	switch (r)
	{
		case REF_CURRENCIES:
			kept.currencies = kept_hash("p2pay kept currencies", KEPT_CODE_LEN,
										sizeof(KeptCurrency));
			break;
		case REF_METHODS:
			kept.methods = kept_hash("p2pay kept methods", sizeof(pg_uuid_t), sizeof(pg_uuid_t));
			break;
		case REF_BLOCKLIST:
			kept.blocked = kept_hash("p2pay kept blocklist", sizeof(pg_uuid_t), sizeof(KeptListed));
			break;
		case REF_ALLOWLIST:
			kept.allowed = kept_hash("p2pay kept allowlist", sizeof(pg_uuid_t), sizeof(KeptListed));
			break;
		case REF_SNOOZES:
			kept.maxsnoozes = 16;
			kept.snoozes = palloc(sizeof(KeptSnooze) * kept.maxsnoozes);
			kept.nsnoozes = 0;
			break;
		default:
			break;
	}
	scan = systable_beginscan(ra->rels[r], InvalidOid, false, ra->snapshot, 0, NULL);
	while (ok && (tup = systable_getnext(scan)) != NULL)
		ok = ++n <= KEPT_MAX_ROWS && keep_row(ra, r, tup, n);
	systable_endscan(scan);
	if (ok && r == REF_SNOOZES)
		qsort(kept.snoozes, kept.nsnoozes, sizeof(KeptSnooze), snooze_cmp);
	MemoryContextSwitchTo(old);
	return ok;
}

/*
 * Read the small tables whole, with the lookup's snapshot, every table
 * open (see Kept).  The first payment after a change reads them by key
 * still; the next ones use what is kept.
 */
static void
load_kept(RefAccess *ra, Oid nspid)
{
	Oid			fn;
	Oid			code_collation = cache.ref_collations[ATT_CURRENCY_CODE];

	if (kept.cxt == NULL)
		kept.cxt = AllocSetContextCreate(CacheMemoryContext, "p2pay kept references",
										 ALLOCSET_DEFAULT_SIZES);
	else
		MemoryContextReset(kept.cxt);
	memset(kept.kept, 0, sizeof(kept.kept));
	kept.currencies = kept.methods = kept.blocked = kept.allowed = NULL;
	kept.snoozes = NULL;
	kept.nsnoozes = 0;
	kept.version = 0;

	p2pay_cache_begin_load(&kept.state);
	kept.nspid = nspid;
	fn = LookupFuncName(list_make2(makeString(get_namespace_name(nspid)),
								   makeString("config_changed")), 0, NULL, true);
	for (int r = 0; r < NUM_REFS; r++)
	{
		if (r == REF_USERS || r == REF_USER_METHODS || !announces_changes(ra->rels[r], fn))
			continue;
		/* a code equal under a nondeterministic collation isn't equal bytes */
		if (r == REF_CURRENCIES && OidIsValid(code_collation) &&
			!get_collation_isdeterministic(code_collation))
			continue;
		kept.kept[r] = keep_table(ra, (RefRel) r);
	}
	p2pay_cache_end_load(&kept.state);
}

/* Whether a list (blocklist, allowlist) holds the user at time t. */
static bool
listed(RefAccess *ra, RefRel r, RefAtt user_att, RefAtt expires_att, const pg_uuid_t *id,
	   TimestampTz t)
{
	HeapTuple	tup;
	bool		isnull;
	Datum		expires;

	if (ra->rels[r] == NULL)
	{
		KeptListed *l = hash_search(r == REF_BLOCKLIST ? kept.blocked : kept.allowed, id,
									HASH_FIND, NULL);

		return l != NULL && (l->forever || l->expires > t);
	}
	tup = ref_by_uuid(ra, r, user_att, id);
	if (tup == NULL)
		return false;
	expires = ref_att(ra, r, tup, expires_att, &isnull);
	return isnull || DatumGetTimestampTz(expires) > t;
}

/* The kept snoozes of a user at time t, a bit per rule. */
static uint32
kept_snoozes(const pg_uuid_t *user, TimestampTz t)
{
	int			lo = 0;
	int			hi = kept.nsnoozes;
	uint32		bits = 0;

	while (lo < hi)				/* the first at or after user */
	{
		int			mid = lo + (hi - lo) / 2;

		if (memcmp(kept.snoozes[mid].user.data, user->data, UUID_LEN) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < kept.nsnoozes &&
		 memcmp(kept.snoozes[lo].user.data, user->data, UUID_LEN) == 0; lo++)
		if (kept.snoozes[lo].until > t)
			bits |= 1u << kept.snoozes[lo].rule;
	return bits;
}

/* The rules snoozed for the payer or the payee at time t, a bit per rule. */
static uint32
snoozed(RefAccess *ra, const PaymentInput *in, TimestampTz t)
{
	SysScanDesc scan;
	HeapTuple	tup;
	uint32		bits = 0;

	if (ra->rels[REF_SNOOZES] == NULL)
		return kept_snoozes(in->payer, t) | kept_snoozes(in->payee, t);
	scan = systable_beginscan(ra->rels[REF_SNOOZES], InvalidOid, false, ra->snapshot, 0, NULL);
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
	SysScanDesc scan;
	HeapTuple	tup;
	int64		version = 0;

	if (ra->rels[REF_RULESET] == NULL)
		return kept.version;
	scan = systable_beginscan(ra->rels[REF_RULESET], InvalidOid, false, ra->snapshot, 0, NULL);
	tup = systable_getnext(scan);
	if (tup != NULL)
	{
		bool		isnull;
		Datum		d = ref_att(ra, REF_RULESET, tup, ATT_RULESET_VERSION, &isnull);

		version = isnull ? 0 : DatumGetInt64(d);
	}
	systable_endscan(scan);
	return version;
}

/* The currency's rate, or false if it is unknown. */
static bool
currency_rate(RefAccess *ra, Datum code, Datum *rate)
{
	RefAtt		att = ATT_CURRENCY_CODE;
	RegProcedure proc = F_BPCHAREQ;
	HeapTuple	tup;
	bool		isnull;

	if (ra->rels[REF_CURRENCIES] == NULL)
	{
		char		key[KEPT_CODE_LEN];
		KeptCurrency *c = currency_key(code, key)
			? hash_search(kept.currencies, key, HASH_FIND, NULL) : NULL;

		if (c == NULL)
			return false;
		*rate = NumericGetDatum(c->rate);
		return true;
	}
	tup = ref_row(ra, REF_CURRENCIES, 1, &att, &proc, &code);
	if (tup == NULL)
		return false;
	*rate = ref_att(ra, REF_CURRENCIES, tup, ATT_CURRENCY_RATE, &isnull);
	return true;
}

/* Whether the payment method exists. */
static bool
method_exists(RefAccess *ra, const pg_uuid_t *id)
{
	if (ra->rels[REF_METHODS] == NULL)
		return hash_search(kept.methods, id, HASH_FIND, NULL) != NULL;
	return ref_by_uuid(ra, REF_METHODS, ATT_METHOD_ID, id) != NULL;
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
	bool		use_kept = !IsolationUsesXactSnapshot();
	bool		reload = false;

	/*
	 * The statement's earlier commands and rows first, with the
	 * invalidations they queued.  Those other transactions sent are taken
	 * in after the tables are opened (the tables kept are not, so no lock
	 * takes them in), just before the snapshot: a change whose
	 * invalidation came by then is read, from the tables.
	 */
	CommandCounterIncrement();
	for (;;)
	{
		load_cache(nspid);
		reload = use_kept && !(kept.state.valid && kept.nspid == nspid);
		for (int i = 0; i < NUM_REFS; i++)
			ra.rels[i] = use_kept && !reload && kept.kept[i] ? NULL
				: table_open(cache.refs[i], AccessShareLock);
		AcceptInvalidationMessages();
		if (cache.state.valid && (reload || !use_kept || kept.state.valid))
			break;
		for (int i = 0; i < NUM_REFS; i++)
			if (ra.rels[i] != NULL)
				table_close(ra.rels[i], NoLock);
	}
	PushActiveSnapshot(GetTransactionSnapshot());
	ra.snapshot = GetActiveSnapshot();
	if (reload)
		load_kept(&ra, nspid);

	if (!currency_rate(&ra, in->currency, &rate))
		ereport(ERROR,
				(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
				 errmsg("unknown currency \"%s\" in column currency",
						p2pay_echo(TextDatumGetCString(in->currency))),
				 errhint("Add it to p2pay.currencies with its rate_to_base first."),
				 p2pay_errpaymentref("currency", "currencies")));

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
	if (!method_exists(&ra, in->method))
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
		if (ra.rels[i] != NULL)
			table_close(ra.rels[i], NoLock);
}
