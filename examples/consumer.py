#!/usr/bin/env python3
"""A consumer of p2pay's stream of flagged payments, in Python.

Reads a logical replication slot of the p2pay output plugin with psycopg2
(Debian: python3-psycopg2), hands every event it has not seen before to
handle(), and confirms to PostgreSQL only what it has durably processed.
It reconnects whenever the server goes away and runs until SIGINT or SIGTERM.

    consumer.py --dsn 'host=db dbname=mydb user=flagged' --slot flagged \\
                --create-slot --state flagged.sqlite --output flagged.jsonl

The DSN (or P2PAY_DSN) is a libpq connection string or URI; libpq's PG*
variables, ~/.pgpass and service files apply, so no password needs to be on
the command line.  -o NAME=VALUE passes an option to the plugin
(docs/stream.md: "Options").  --create-slot creates the slot on the first start only:
once the state file records events, a slot that is gone is an error, since
the events it held are lost and the output has to be reconciled with
p2pay.payments first.

Exactly once into --output: the server delivers at least once (docs/stream.md:
"Delivery").  Each event is keyed by (transaction_id, event, lsn), lsn being
the WAL position of its change; the state file (SQLite) holds the keys seen,
and a batch's new lines are appended to the output and fsynced before the
transaction that records their keys and the output's new length commits.  At
start the output is cut back to the length the state recorded, dropping
lines whose keys did not commit: those events were not confirmed, so the
server sends them again.  Only after the commit is the batch's position
confirmed, so the slot never moves past an event that is not in both files.
An output that exists when the state file is made is kept and appended to.
With --output - (standard output), a crash between writing and committing
can repeat lines.

To do something else with the events, replace handle(): anything it writes
through `db` commits with the keys; an effect elsewhere must itself be
idempotent on the key.  The key table grows by a row per event; a resend
reaches back no further than the slot's last save to disk, so rows far older
than that (say, a week) can be deleted.

Exit status: 0 after SIGINT or SIGTERM, 1 on an error that retrying cannot
change (a missing slot, a bad option, an unreadable state file, a first
connection that fails), 2 on a bad command line.
"""

import argparse
import json
import os
import select
import signal
import sqlite3
import sys
import time

import psycopg2
import psycopg2.extras

# SQLSTATE classes and codes worth a reconnect: connection exceptions,
# operator intervention (shutdown, crash, starting up), insufficient
# resources, and the slot still held by the walsender of a dead connection.
RETRY_CLASSES = ('08', '53', '57')
RETRY_CODES = ('55006',)

stopping = False


def log(message):
    print(time.strftime('%Y-%m-%d %H:%M:%S'), 'consumer:', message, file=sys.stderr, flush=True)


def on_signal(signum, frame):
    global stopping
    stopping = True


class Fatal(Exception):
    """An error that retrying cannot change."""


def lsn_text(lsn):
    return '%X/%X' % (lsn >> 32, lsn & 0xFFFFFFFF)


def open_state(path, output_size):
    """The state file: the keys of processed events and the output's length
    (at first, the length the output already has)."""
    db = sqlite3.connect(path, isolation_level='DEFERRED')
    db.execute('PRAGMA synchronous = FULL')
    db.executescript('''
        CREATE TABLE IF NOT EXISTS processed (
            transaction_id text NOT NULL, event text NOT NULL, lsn text NOT NULL,
            PRIMARY KEY (transaction_id, event, lsn));
        CREATE TABLE IF NOT EXISTS progress (
            one integer PRIMARY KEY CHECK (one = 1), output_size integer NOT NULL,
            last_lsn text, received integer NOT NULL, duplicates integer NOT NULL);
''')
    db.execute('INSERT OR IGNORE INTO progress VALUES (1, ?, NULL, 0, 0)', (output_size,))
    db.commit()
    return db


def cut_output(out, path, db):
    """Cut the output back to the length the state file committed."""
    size = db.execute('SELECT output_size FROM progress').fetchone()[0]
    if out.seek(0, os.SEEK_END) < size:
        raise Fatal('%s is shorter than the %d bytes the state file recorded' % (path, size))
    out.truncate(size)
    out.seek(size)


def handle(event, line, out, db):
    """What to do with a new event: here, append its line to the output."""
    out.write(line.encode() + b'\n')


def process(batch, out, db, counts):
    """Hand a batch's new events to handle(), then make them durable together."""
    duplicates = 0
    for msg in batch:
        event = json.loads(msg.payload)
        key = (event.get('transaction_id') or '', event['event'], lsn_text(msg.data_start))
        if db.execute('INSERT OR IGNORE INTO processed VALUES (?, ?, ?)', key).rowcount:
            handle(event, msg.payload, out, db)
        else:
            duplicates += 1
    out.flush()
    size = 0
    if out is not sys.stdout.buffer:
        os.fsync(out.fileno())
        size = out.seek(0, os.SEEK_END)
    db.execute('UPDATE progress SET output_size = ?, last_lsn = ?, received = received + ?,'
               ' duplicates = duplicates + ?',
               (size, lsn_text(batch[-1].data_start), len(batch), duplicates))
    db.commit()
    counts['received'] += len(batch)
    counts['duplicates'] += duplicates


def start_stream(args, db):
    """Connect, check (or create) the slot and start streaming from it."""
    conn = psycopg2.connect(args.dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    cur = conn.cursor()
    cur.execute('SELECT plugin FROM pg_catalog.pg_replication_slots WHERE slot_name = %s',
                (args.slot,))
    row = cur.fetchone()
    if row is None:
        last = db.execute('SELECT last_lsn FROM progress').fetchone()[0]
        if last is not None:
            raise Fatal('slot "%s" is gone; events up to %s were processed, later ones may be lost: '
                        'reconcile the output with p2pay.payments, then start with a new state file'
                        % (args.slot, last))
        if not args.create_slot:
            raise Fatal('slot "%s" does not exist (--create-slot creates it)' % args.slot)
        cur.create_replication_slot(args.slot, output_plugin='p2pay')
        log('created slot "%s"' % args.slot)
    elif row[0] != 'p2pay':
        raise Fatal('slot "%s" belongs to output plugin %s, not p2pay' % (args.slot, row[0]))
    cur.start_replication(slot_name=args.slot, decode=True, options=args.options,
                          status_interval=args.status_interval)
    return conn, cur


def stream(cur, out, db, counts):
    """Read, process and confirm batches until stopped or the connection fails."""
    while not stopping:
        batch = []
        while len(batch) < 1000:
            msg = cur.read_message()
            if msg is None:
                break
            batch.append(msg)
        if batch:
            process(batch, out, db, counts)
            # Confirmed once durable; psycopg2 then confirms the WAL end of
            # the server's keepalives while nothing newer has been read.
            cur.send_feedback(flush_lsn=batch[-1].data_start)
        else:
            select.select([cur], [], [], 1.0)
    cur.send_feedback(force=True)


def retryable(error):
    code = getattr(error, 'pgcode', None)
    return code is None or code[:2] in RETRY_CLASSES or code in RETRY_CODES


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--dsn', default=os.environ.get('P2PAY_DSN'), help='libpq connection string')
    parser.add_argument('--slot', required=True, help='the logical replication slot')
    parser.add_argument('--create-slot', action='store_true', help='create the slot on the first start')
    parser.add_argument('--state', required=True, help='SQLite file of processed events')
    parser.add_argument('--output', required=True, help='file the new events are appended to, or -')
    parser.add_argument('-o', dest='option', action='append', default=[], metavar='NAME=VALUE',
                        help='an option of the p2pay output plugin, repeatable')
    parser.add_argument('--status-interval', type=float, default=10, help='seconds between reports')
    args = parser.parse_args()
    if not args.dsn:
        parser.error('--dsn or P2PAY_DSN is required')
    if any('=' not in o for o in args.option):
        parser.error('-o takes NAME=VALUE')
    args.options = dict(o.split('=', 1) for o in args.option)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    counts = {'received': 0, 'duplicates': 0}
    conn = None
    try:
        if args.output == '-':
            out = sys.stdout.buffer
            db = open_state(args.state, 0)
        else:
            out = open(args.output, 'a+b')
            db = open_state(args.state, out.seek(0, os.SEEK_END))
            cut_output(out, args.output, db)
        delay, streamed = 1, False
        while not stopping:
            try:
                conn, cur = start_stream(args, db)
                log('streaming slot "%s"%s' % (args.slot, ' again' if streamed else ''))
                streamed, delay = True, 1
                stream(cur, out, db, counts)
            except psycopg2.Error as e:
                # A first connection that fails is a mistake to show at once;
                # an error the server answered may pass (starting up, the slot
                # still held by a dead consumer's walsender).
                if not retryable(e) or (not streamed and e.pgcode is None):
                    raise Fatal(' '.join(str(e).split()))
                log('connection lost: %s; reconnecting in %d s' % (' '.join(str(e).split()), delay))
                deadline = time.monotonic() + delay
                while not stopping and time.monotonic() < deadline:
                    time.sleep(0.1)
                delay = min(delay * 2, 30)
            finally:
                if conn is not None:
                    conn.close()
                    conn = None
        total = db.execute('SELECT received, duplicates FROM progress').fetchone()
        log('stopped: %d events received, %d duplicates skipped (state file: %d received, %d duplicates)'
            % (counts['received'], counts['duplicates'], total[0], total[1]))
        return 0
    except (Fatal, sqlite3.Error, OSError) as e:
        log('error: %s' % e)
        return 1


if __name__ == '__main__':
    sys.exit(main())
