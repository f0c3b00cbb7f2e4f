/*
 * locks.c: the account locks that keep the per-account state exact under
 * concurrency.
 *
 * Locking: a payment takes a transaction-scoped advisory lock on its payer
 * and on its payee (and, for the cycle rule, on the accounts its payee
 * paid), all in one pass, lower key first, before it reads any state;
 * every writer of the state (insert and delete) goes through here, and an
 * insert that waited sees everything the other one committed (a commit is
 * visible before its locks are released).  A transaction that already
 * holds account locks (of an earlier payment, or an earlier row of the
 * same statement) waits in the lock manager only for a key above all of
 * them; for any other it tries, naps, and after
 * p2pay.multi_payment_lock_timeout gives way with 40001.  So whoever waits
 * in the lock manager for an account lock waits for a larger key than any
 * it holds, and these locks can't close a deadlock cycle: a transaction of
 * one payment never gets 40P01 from them, and one of several may get 40001
 * and be retried (so may a payment alone whose cycle-rule accounts keep
 * changing as it locks them: see p2pay_lock_payment).  What a transaction
 * holds is followed through its subtransactions by transaction callbacks.
 * The keys live in their own advisory namespace (field 4 =
 * P2PAY_LOCK_SPACE), so they can't collide with an application's
 * pg_advisory_lock keys.
 *
 * Escalation: one lock per account would fill the shared lock table
 * (max_locks_per_transaction x max_connections entries) with a load of
 * thousands of accounts in one transaction.  So every writer also holds,
 * from the end of its first pass to its end, the lock that covers every
 * account (ALL_ACCOUNTS, in a second namespace) in share mode; and a
 * transaction about to hold more than p2pay.lock_escalation_accounts
 * account locks takes that lock in exclusive mode instead, after which it
 * takes no account lock at all: no other writer holds one then, nor can
 * take one until it ends.  It never waits for it in the lock manager: it
 * tries, naps, and after deadlock_timeout goes on with account locks and
 * tries again once it holds twice as many.  Meanwhile it holds the
 * escalation token (ESCALATION), which a transaction's first pass waits for
 * (and lets go of at once), so that the writers drain rather than come and
 * go for ever.  A writer whose first pass waits for ALL_ACCOUNTS in share
 * mode, the exclusive one being held, holds account locks while it waits;
 * but the one holding it waits for no p2pay lock and runs to its end, so
 * that wait, too, can't close a cycle.  Only one transaction at a time tries
 * to escalate: another one past the threshold finding the token taken
 * gives way with 40001 if it holds account locks, since the first can't
 * have the lock while it does, nor it go on taking them for ever.
 */
#include "postgres.h"

#include "p2pay.h"
#include "catalog.h"
#include "compat.h"
#include "facts.h"
#include "locks.h"
#include "moneyflow.h"
#include "rules.h"

#include "access/xact.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#define P2PAY_LOCK_SPACE 0x7032
/* The namespace of the lock covering every account and its token. */
#define P2PAY_ESCALATION_SPACE 0x7033
#define ALL_ACCOUNTS 0
#define ESCALATION 1

/*
 * How long a transaction that holds account locks tries for one more that
 * it can't wait for in the lock manager (locks.c), in milliseconds.
 */
int			p2pay_multi_payment_lock_timeout = 10;

/*
 * How many account locks a transaction holds at most before it takes the
 * lock covering every account instead (p2pay.lock_escalation_accounts); -1
 * never.
 */
int			p2pay_lock_escalation_accounts = 64;

/* The lock key of an account. */
static uint64
account_key(const pg_uuid_t *id)
{
	return hash_bytes_extended(id->data, UUID_LEN, P2PAY_LOCK_SPACE);
}

/*
 * The account locks this transaction holds, exact across savepoints: an
 * entry for each subtransaction nesting level at which a pass of locks
 * ended and whose locks are still held, the lowest level first, each with
 * what is held at its level or below: the largest key, how many account
 * locks, whether the lock covering every account is held exclusively.  A
 * subtransaction that rolls back releases the locks it took, and its entry
 * goes; one that commits hands them to its parent, and so does its entry;
 * the end of the transaction releases them all.  Kept in TopMemoryContext,
 * and room is made before a pass takes its first lock, so that a lock is
 * never held unrecorded.
 */
typedef struct HeldLevel
{
	int			level;			/* subtransaction nesting level */
	uint64		max_key;		/* the largest key held at this level or below */
	int64		count;			/* account locks held at this level or below */
	bool		escalated;		/* ALL_ACCOUNTS held exclusively */
} HeldLevel;

static HeldLevel *held = NULL;
static int	held_depth = 0;
static int	held_size = 0;

/*
 * How many account locks this transaction is to hold before it tries to
 * escalate again, after a try that failed.
 */
static int64 escalation_retry_at = 0;

/*
 * The role this transaction last found may not escalate (see may_escalate),
 * so that a load by such a role checks its privileges once, not on every
 * pass past the threshold.  A GRANT takes effect from its next transaction.
 */
static Oid	escalation_refused = InvalidOid;

/*
 * Whether this transaction holds an account lock and, if it does, the
 * largest key it holds.
 */
static bool
held_max(uint64 *max_key)
{
	if (held_depth == 0)
		return false;
	*max_key = held[held_depth - 1].max_key;
	return true;
}

/* Whether this transaction holds the lock covering every account. */
static bool
held_escalated(void)
{
	return held_depth > 0 && held[held_depth - 1].escalated;
}

/* How many account locks this transaction holds. */
static int64
held_count(void)
{
	return held_depth > 0 ? held[held_depth - 1].count : 0;
}

/* Make room for one more level, before a pass takes any lock. */
static void
reserve_held(void)
{
	if (held_depth < held_size)
		return;
	if (held == NULL)
	{
		held = MemoryContextAlloc(TopMemoryContext, 8 * sizeof(HeldLevel));
		held_size = 8;
		return;
	}
	held = repalloc(held, 2 * held_size * sizeof(HeldLevel));
	held_size *= 2;
}

/*
 * Make now (whose level is at or above the top entry's) what is held at its
 * level or below: it replaces the top entry if that is of its level, or
 * goes on top (room was made, or an entry above it was just dropped).
 */
static void
set_held(const HeldLevel *now)
{
	if (held_depth > 0 && held[held_depth - 1].level == now->level)
	{
		held[held_depth - 1] = *now;
		return;
	}
	Assert(held_depth < held_size);
	held[held_depth++] = *now;
}

/*
 * Record at level that this transaction holds, at that level or below, what
 * add says (room was made): key and added more account locks, or the lock
 * covering every account.
 */
static void
note_held_at(int level, const HeldLevel *add)
{
	HeldLevel	now = *add;

	if (held_depth > 0)
	{
		const HeldLevel *top = &held[held_depth - 1];

		now.max_key = Max(top->max_key, add->max_key);
		now.count = top->count + add->count;
		now.escalated = top->escalated || add->escalated;
	}
	now.level = level;
	set_held(&now);
}

/* The transaction ended: its locks are released (or handed to PREPARE). */
static void
held_xact_callback(XactEvent event, void *arg)
{
	if (p2pay_xact_ends(event))
	{
		held_depth = 0;
		escalation_retry_at = 0;
		escalation_refused = InvalidOid;
	}
}

/*
 * A subtransaction ended (the callback runs at its nesting level): rolled
 * back, the locks it took are released; committed, they pass to its parent.
 */
static void
held_subxact_callback(SubXactEvent event, SubTransactionId subid,
					  SubTransactionId parent_subid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	HeldLevel	top;

	if (event != SUBXACT_EVENT_COMMIT_SUB && event != SUBXACT_EVENT_ABORT_SUB)
		return;
	if (held_depth == 0 || held[held_depth - 1].level < level)
		return;
	top = held[held_depth - 1];
	while (held_depth > 0 && held[held_depth - 1].level >= level)
		held_depth--;
	if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		/* top counts what is below it: it replaces, rather than adds to */
		top.level = level - 1;
		set_held(&top);
	}
}

/* Follow the transaction's account locks through its (sub)transactions. */
void
p2pay_lock_register_callbacks(void)
{
	RegisterXactCallback(held_xact_callback, NULL);
	RegisterSubXactCallback(held_subxact_callback, NULL);
}

static void
key_tag(LOCKTAG *tag, uint64 key)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) (key >> 32), (uint32) key,
						 P2PAY_LOCK_SPACE);
}

/*
 * Take the lock of key, waiting in the lock manager for as long as it takes;
 * whether this transaction did not hold it yet.
 */
static bool
lock_key(uint64 key)
{
	LOCKTAG		tag;

	key_tag(&tag, key);
	return LockAcquire(&tag, ExclusiveLock, false, false) == LOCKACQUIRE_OK;
}

/*
 * Give back this pass's lock of key; whether this transaction no longer
 * holds it at all (the pass had taken it first).
 */
static bool
unlock_key(uint64 key)
{
	LOCKTAG		tag;

	key_tag(&tag, key);
	(void) LockRelease(&tag, ExclusiveLock, false);
	return !p2pay_lock_held_by_me(&tag, ExclusiveLock);
}

/* The longest nap between two tries of a busy lock, in milliseconds. */
#define LOCK_NAP_MAX_MS 10

/*
 * Take the lock (tag, mode) without ever waiting for it in the lock manager:
 * try it, and while another transaction holds it (or waits for it first),
 * nap (1 ms, doubling up to LOCK_NAP_MAX_MS) and try again, for at most ms
 * milliseconds.  Returns LockAcquire's answer to the last try:
 * LOCKACQUIRE_NOT_AVAIL when the time ran out.
 */
static LockAcquireResult
try_lock_for(const LOCKTAG *tag, LOCKMODE mode, int ms)
{
	LockAcquireResult got = LockAcquire(tag, mode, false, true);
	TimestampTz start;
	long		nap = 1;

	if (got != LOCKACQUIRE_NOT_AVAIL)
		return got;
	start = GetCurrentTimestamp();
	for (;;)
	{
		long		waited = TimestampDifferenceMilliseconds(start, GetCurrentTimestamp());

		if (waited >= ms)
			return LOCKACQUIRE_NOT_AVAIL;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(nap, ms - waited), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		nap = Min(nap * 2, LOCK_NAP_MAX_MS);
		got = LockAcquire(tag, mode, false, true);
		if (got != LOCKACQUIRE_NOT_AVAIL)
			return got;
	}
}

/*
 * Take the lock of key without ever waiting for it in the lock manager, so
 * that this transaction can't be an edge of a deadlock cycle however many
 * locks it holds: try it, and while another transaction holds it (or waits
 * for it first), nap and try again, for at most
 * p2pay.multi_payment_lock_timeout; then give way with a serialization
 * failure: as the transaction aborts, its locks go to whoever waits for
 * them.  late: the key is one of a cycle candidate set that kept changing
 * (p2pay_lock_payment), not one taken after an earlier payment's locks.
 * Returns whether this transaction did not hold it yet.
 */
static bool
lock_key_or_give_way(uint64 key, bool late)
{
	LOCKTAG		tag;
	LockAcquireResult got;

	key_tag(&tag, key);
	got = try_lock_for(&tag, ExclusiveLock, p2pay_multi_payment_lock_timeout);
	if (got != LOCKACQUIRE_NOT_AVAIL)
		return got == LOCKACQUIRE_OK;
	if (late)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not lock an account of this payment's cycle check"),
				 errdetail("The accounts the cycle rule follows from this payment's payee kept changing while they were locked, and the last one found was held by another transaction for more than p2pay.multi_payment_lock_timeout (%d ms).",
						   p2pay_multi_payment_lock_timeout),
				 errhint("Retry the transaction.")));
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not lock an account of this payment while holding the account locks of earlier payments"),
			 errdetail("This transaction already holds the account locks of payments it inserted or deleted before, and another transaction held a lock this payment needs for more than p2pay.multi_payment_lock_timeout (%d ms); waiting for it could deadlock.",
					   p2pay_multi_payment_lock_timeout),
			 errhint("Retry the transaction.")));
	pg_unreachable();
}

/*
 * Take the locks of keys[from..n) (ascending, no repeats), the rest of a
 * pass whose keys below keys[from] are held.  Every lock this transaction
 * holds apart from the pass's own lower ones is at most prior_max (if
 * prior).  The lock manager is waited in only for a key above every
 * account lock held: so whoever waits there for an account lock waits for
 * a larger key than any it holds, and a cycle of such waits, whose keys
 * would have to grow all the way round, can't form.  A key at or below
 * one held is taken without waiting in the lock manager.  Returns how
 * many of them this transaction did not hold yet.
 */
static int
lock_keys(const uint64 *keys, int from, int n, bool prior, uint64 prior_max)
{
	int			added = 0;

	for (int i = from; i < n; i++)
	{
		if (!prior || keys[i] > prior_max)
			added += lock_key(keys[i]);
		else
			added += lock_key_or_give_way(keys[i], false);
	}
	return added;
}

static int
key_cmp(const void *a, const void *b)
{
	uint64		ka = *(const uint64 *) a;
	uint64		kb = *(const uint64 *) b;

	return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/* Sort keys and drop repeats; returns the new count. */
static int
sort_keys(uint64 *keys, int n)
{
	int			m = 0;

	qsort(keys, n, sizeof(uint64), key_cmp);
	for (int i = 0; i < n; i++)
		if (m == 0 || keys[m - 1] != keys[i])
			keys[m++] = keys[i];
	return m;
}

static void
escalation_tag(LOCKTAG *tag, uint32 which)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, 0, which, P2PAY_ESCALATION_SPACE);
}

/*
 * Give way to another transaction that is taking the lock covering every
 * account (it holds the token), when this one is past the threshold too:
 * it can't have that lock while this one holds the lock in share mode, and
 * this one can't go on taking account locks for ever.
 */
static void
give_way_to_escalation(const LOCKTAG *token)
{
	if (LockAcquire(token, ShareLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not lock every account: another transaction is doing so"),
				 errdetail("This transaction is about to hold more than p2pay.lock_escalation_accounts (%d) account locks, and another transaction, which holds as many, is taking the lock covering every account; it can't while this one holds account locks.",
						   p2pay_lock_escalation_accounts),
				 errhint("Retry the transaction.")));
	(void) LockRelease(token, ShareLock, false);
}

/*
 * Take the lock covering every account exclusively, without waiting for it
 * in the lock manager: holding the escalation token, try, nap, and give up
 * after deadlock_timeout.  Whether it is held.
 */
static bool
escalate(const LOCKTAG *token)
{
	LOCKTAG		all;
	bool		got;

	escalation_tag(&all, ALL_ACCOUNTS);
	if (LockAcquire(token, ExclusiveLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
		return false;
	got = try_lock_for(&all, ExclusiveLock, DeadlockTimeout) != LOCKACQUIRE_NOT_AVAIL;
	(void) LockRelease(token, ExclusiveLock, false);
	return got;
}

/*
 * Whether caller (the role inserting or deleting the payment, not the
 * owner the trigger runs as) may take the lock covering every account.
 * That lock makes every other writer of payments wait until this
 * transaction ends, as LOCK TABLE p2pay.payments IN EXCLUSIVE MODE would;
 * so it is for the roles PostgreSQL lets take that lock: with UPDATE,
 * DELETE or TRUNCATE on payments (its owner, a superuser, a loading role
 * granted one of them).  A role with only INSERT (p2pay_app's rights)
 * goes on with account locks, which hold up only the writers of its own
 * accounts, however long it leaves its transaction open.
 */
static bool
may_escalate(Oid caller)
{
	if (caller == escalation_refused)
		return false;
	if (pg_class_aclmask(p2pay_relid("payments"), caller,
						 ACL_UPDATE | ACL_DELETE | ACL_TRUNCATE, ACLMASK_ANY) != 0)
		return true;
	escalation_refused = caller;
	return false;
}

/*
 * Before a pass that is to lock needed accounts for caller: whether the
 * lock covering every account is held exclusively (already, or now), so
 * that the pass takes no lock.  A first pass waits for the escalation token
 * to be free (it holds no lock another transaction's escalation waits for).
 * A pass that would take this transaction past
 * p2pay.lock_escalation_accounts account locks gives way (40001) to another
 * transaction taking the covering lock, if this one holds account locks
 * (which keep the other from having it), or else tries to take it if caller
 * may; after a try that failed (writers of the moment were still open after
 * deadlock_timeout), it tries again only once it holds twice as many.
 */
static bool
escalated_before_pass(int needed, Oid caller)
{
	int64		count = held_count();
	LOCKTAG		token;
	HeldLevel	add = {0};

	if (held_escalated())
		return true;
	escalation_tag(&token, ESCALATION);
	if (held_depth == 0)
	{
		(void) LockAcquire(&token, ShareLock, false, false);
		(void) LockRelease(&token, ShareLock, false);
	}
	if (p2pay_lock_escalation_accounts < 0 ||
		count + needed <= p2pay_lock_escalation_accounts)
		return false;
	if (held_depth > 0)
		give_way_to_escalation(&token);
	if (count < escalation_retry_at || !may_escalate(caller))
		return false;
	reserve_held();
	if (!escalate(&token))
	{
		escalation_retry_at = Max(2 * count, (int64) p2pay_lock_escalation_accounts);
		escalation_retry_at = Max(escalation_retry_at, 1);
		return false;
	}
	add.escalated = true;
	note_held_at(GetCurrentTransactionNestLevel(), &add);
	return true;
}

/*
 * A pass took its account locks, added of them new, the largest max_key:
 * record them and, after a first pass, hold the lock covering every account
 * in share mode until the transaction ends (waiting while a transaction
 * that escalated holds it).
 */
static void
pass_done(uint64 max_key, int added)
{
	HeldLevel	add = {0};

	if (held_depth == 0)
	{
		LOCKTAG		all;

		escalation_tag(&all, ALL_ACCOUNTS);
		(void) LockAcquire(&all, ShareLock, false, false);
	}
	add.max_key = max_key;
	add.count = added;
	note_held_at(GetCurrentTransactionNestLevel(), &add);
}

/*
 * Serialize this transaction with every other one that touches account a or
 * b, until it ends: both locks in one ascending pass.  caller: the role
 * writing the payment (see may_escalate).
 */
void
p2pay_lock_accounts(const pg_uuid_t *a, const pg_uuid_t *b, Oid caller)
{
	uint64		keys[2];
	uint64		prior_max = 0;
	bool		prior = held_max(&prior_max);
	int			n;

	keys[0] = account_key(a);
	keys[1] = account_key(b);
	n = sort_keys(keys, 2);
	if (escalated_before_pass(n, caller))
		return;
	reserve_held();
	pass_done(keys[n - 1], lock_keys(keys, 0, n, prior, prior_max));
}

/*
 * Add the keys of the cycle candidates (moneyflow.c) not in keys[0..n),
 * read with a new snapshot under READ COMMITTED (so that, under the
 * payee's lock, the set is the one the facts will see), the transaction's
 * under REPEATABLE READ, as the facts are.
 */
static int
add_cycle_candidates(Oid nspid, const PaymentInput *in, const RuleParams *cy, uint64 *keys,
					 int n)
{
	uint64		found_n = p2pay_cycle_candidates(nspid, in, in->created_at - cy->window,
												 cy->min_amount);

	Assert(n >= 2);
	for (uint64 i = 0; i < found_n; i++)
	{
		bool		isnull;
		uint64		key = account_key(DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[i],
																  SPI_tuptable->tupdesc, 1, &isnull)));
		bool		found = false;

		for (int k = 0; k < n && !found; k++)
			found = keys[k] == key;
		if (!found)
			keys[n++] = key;
	}
	return n;
}

/*
 * How many times the cycle candidates may change under a payment before
 * the ones that came last are locked out of order (without waiting in the
 * lock manager).
 */
#define LOCK_ROUNDS 3

/*
 * Lock the accounts the payment's facts depend on: its payer and payee
 * and, when the cycle rule follows loops of four for it, the accounts a
 * middle leg can start from (see p2pay_cycle_candidates).  Those are known
 * only by reading, and the reading is final only under the payer's and
 * payee's locks (only payments of theirs change it); so they are read first
 * without locks, every key is taken in ascending order, and they are read
 * again.  Should accounts have come in meanwhile, this pass's locks above
 * the smallest newcomer are given back, those below kept, and the pass
 * goes on up from there: still in ascending order, so a transaction of one
 * payment never waits for a lock below one it holds.  The set can change
 * again only if the payer's or payee's lock was given back; after
 * LOCK_ROUNDS changes, the newcomers are taken as they are, above locks
 * already held, without waiting in the lock manager (40001 if one stays
 * busy), never at the risk of a deadlock.  nspid: p2pay's schema; caller:
 * the role inserting the payment (see may_escalate).
 */
void
p2pay_lock_payment(Oid nspid, const P2payConfig *cfg, const PaymentInput *in,
				   const PaymentFacts *facts, Oid caller)
{
	const RuleConfig *cy = &cfg->rules[RULE_CYCLE];
	uint64		keys[2 + (LOCK_ROUNDS + 2) * CYCLE_FANOUT];
	uint64		prior_max = 0;
	bool		prior;
	int			n;
	int			from = 0;
	int			added = 0;

	if (!(RULE_EVALUATED(cy) && facts->amount >= cy->p.min_amount && cy->p.max_length >= 4))
	{
		p2pay_lock_accounts(in->payer, in->payee, caller);
		return;
	}

	if (held_escalated())
		return;
	prior = held_max(&prior_max);
	keys[0] = account_key(in->payer);
	keys[1] = account_key(in->payee);
	n = sort_keys(keys, add_cycle_candidates(nspid, in, &cy->p, keys, 2));
	if (escalated_before_pass(n, caller))
		return;
	reserve_held();

	for (int round = 0;; round++)
	{
		int			more;
		uint64		first_new;

		added += lock_keys(keys, from, n, prior, prior_max);
		more = add_cycle_candidates(nspid, in, &cy->p, keys, n);
		if (more == n)
			break;

		if (round == LOCK_ROUNDS)
		{
			/*
			 * The payer's and payee's locks are held: no more can come.  A
			 * newcomer above every lock held can still be waited for.
			 */
			uint64		top = prior ? Max(prior_max, keys[n - 1]) : keys[n - 1];

			qsort(keys + n, more - n, sizeof(uint64), key_cmp);
			for (int i = n; i < more; i++)
			{
				if (keys[i] > top)
				{
					added += lock_key(keys[i]);
					top = keys[i];
				}
				else
					added += lock_key_or_give_way(keys[i], true);
			}
			n = sort_keys(keys, more);
			break;
		}

		first_new = keys[n];
		for (int i = n + 1; i < more; i++)
			first_new = Min(first_new, keys[i]);
		for (int i = n - 1; i >= 0 && keys[i] > first_new; i--)
			added -= unlock_key(keys[i]);
		n = sort_keys(keys, more);
		for (from = 0; keys[from] < first_new; from++)
			;
	}
	pass_done(keys[n - 1], added);
}

/* Whether this transaction holds an account lock (for assertions). */
bool
p2pay_accounts_locked(void)
{
	return held_depth > 0;
}
