#!/usr/bin/env python3
"""bench/floor_profile.py: the samples of `perf script` (on stdin, call
chains unwound) by step of the insert, as Markdown tables: the backend's
samples by step (the trigger's parts, the foreign-key checks, the payment's
own row and index entries, the commit, the client), then the trigger's
samples by what PostgreSQL did for it (index descents, heap fetches,
pruning, writes).  bench/floor.sh runs it on its profile.

A sample belongs to the first step its chain holds, in the order of the
lists below; names are functions, exported by postgres or in p2pay.so
(built with -g, so that its inlined functions have frames too)."""
import collections
import re
import sys

# The trigger's parts: a sample under p2pay_score_payment goes to the first
# whose functions its chain holds.
TRIGGER = [
    ("money-flow SQL and the cycle's lock candidates (payments of 1,000 or more)",
     {"p2pay_read_money_flow", "p2pay_cycle_candidates"}),
    ("recording: account_daily, the two rows of the day and the payer's hour", {"record_day"}),
    ("recording: payer_hourly, the payer's hour (1.0/1.1 schemas)", {"record_hour"}),
    ("recording: pair_stats, the pair's row", {"record_pair"}),
    ("recording: account_stats, the payer's and payee's totals",
     {"record_account", "record_payment"}),
    ("facts: first-seen pair", {"state_pair_seen"}),
    ("facts: the accounts' day rows in the windows, and whether they show payments or pairs",
     {"account_days", "hour_held", "payer_may_have_paid", "counterparties_since"}),
    ("facts: velocity count (the payer's payments in the hour)", {"count_payments"}),
    ("facts: velocity amount, the payments of the hour at the window's edge", {"sum_payments"}),
    ("facts: velocity amount, the hours of the payer's day rows",
     {"paid_in_days", "paid_in_buckets", "state_paid_after"}),
    ("facts: fan-out (pair_stats by payer and last_at)", {"state_payees_after"}),
    ("facts: fan-in (pair_stats by payee and last_at)", {"state_payers_after"}),
    ("facts: the payer's running mean (account_stats)", {"state_account"}),
    ("facts: an account's normal (account_daily, at a limit)", {"state_normal"}),
    ("facts: reads of payments of 1,000 or more (round trip, dormant, pass-through)",
     {"paid_since", "count_band", "state_previous", "state_payers_of_payer_after"}),
    ("facts: other", {"p2pay_assemble_facts"}),
    ("lookup: blocklist and allowlist", {"listed"}),
    ("lookup: snoozes and rule-set version (scanned whole)", {"snoozed", "ruleset_version"}),
    ("lookup: currency, users, method, its registration", {"p2pay_lookup_references"}),
    ("account locks", {"p2pay_lock_payment", "p2pay_lock_accounts"}),
    ("opening and closing the state tables", {"open_state", "close_state"}),
    ("switching to the owner and back", {"begin_as_owner", "end_as_owner"}),
    ("rules", {"p2pay_evaluate"}),
]

# The rest of the backend.
OUTSIDE = [
    ("foreign-key checks (after the row)", {"AfterTriggerEndQuery"}),
    ("the payment's index entries", {"ExecInsertIndexTuples"}),
    ("the payment's heap row", {"heap_insert"}),
    ("commit", {"CommitTransactionCommand"}),
    ("client I/O", {"secure_read", "secure_write", "pq_getbyte", "pq_flush"}),
]

# What PostgreSQL did: the first of these from the leaf up.
PRIMITIVES = [
    ("page pruning (heap_page_prune_opt)", {"heap_page_prune_opt"}),
    ("btree insertion", {"_bt_doinsert", "btinsert"}),
    ("btree descent and read (_bt_first, _bt_next)", {"_bt_first", "_bt_next", "btgettuple"}),
    ("heap fetch through an index", {"index_fetch_heap", "heap_hot_search_buffer"}),
    ("heap write (insert, update, lock)", {"heap_update", "heap_insert", "heap_lock_tuple"}),
    ("WAL insertion", {"XLogInsert"}),
    ("relation size (lseek)", {"RelationGetNumberOfBlocksInFork", "smgrnblocks"}),
    ("relation opens and locks",
     {"LockAcquireExtended", "LockRelease", "LockReleaseAll", "relation_open", "index_open",
      "RelationIdGetRelation", "try_table_open", "relation_close"}),
    ("executor start and end (SPI)",
     {"standard_ExecutorStart", "standard_ExecutorEnd", "GetCachedPlan", "ExecInitNode"}),
    ("snapshots", {"GetSnapshotData", "CommandCounterIncrement", "GetLatestSnapshot"}),
]

FRAME = re.compile(r"^\s+[0-9a-f]+ (\S+?)(?:\+0x[0-9a-f]+)? \(")


def samples(lines):
    """Each sample's chain of function names, leaf first."""
    chain = None
    for line in lines:
        if not line.strip():
            if chain is not None:
                yield chain
            chain = None
        elif not line[0].isspace():
            chain = []
        elif chain is not None:
            m = FRAME.match(line)
            if m:
                chain.append(m.group(1))
    if chain:
        yield chain


def first(chain, table, default):
    names = set(chain)
    for label, funcs in table:
        if names & funcs:
            return label
    return default


def leafward(chain, table, default):
    for name in chain:
        for label, funcs in table:
            if name in funcs:
                return label
    return default


def main():
    chains = list(samples(sys.stdin))
    total = len(chains)
    if total == 0:
        print("(no samples)")
        return
    steps = collections.Counter()
    prims = collections.Counter()
    for chain in chains:
        if "p2pay_score_payment" in chain:
            steps["trigger: " + first(chain, TRIGGER, "other")] += 1
            prims[leafward(chain, PRIMITIVES, "other")] += 1
        else:
            steps[first(chain, OUTSIDE, "parse, bind, executor and the rest")] += 1
    pct = lambda n: "%.1f %%" % (100.0 * n / total)
    trig = sum(n for k, n in steps.items() if k.startswith("trigger: "))
    print("| step | share of the backend's samples |")
    print("|---|--:|")
    for label, n in steps.most_common():
        print("| %s | %s |" % (label, pct(n)))
    print("| **the trigger, all** | **%s** |" % pct(trig))
    print()
    print("The trigger's samples by what PostgreSQL did for it (the first of these from the leaf up):")
    print()
    print("| primitive | share of the backend's samples |")
    print("|---|--:|")
    for label, n in prims.most_common():
        print("| %s | %s |" % (label, pct(n)))
    print()
    print("%d samples." % total)


if __name__ == "__main__":
    main()
