#!/usr/bin/env python3
"""bench/trickle.py: the one-payment transactions that bench/bulk.sh runs
beside each bulk load.

  trickle.py ACCOUNTS METHOD INTERVAL STOP READY

Connects through libpq's environment (PGHOST, PGPORT, PGUSER, PGDATABASE),
creates the file READY, then inserts one payment per transaction, each
starting INTERVAL seconds after the one before (at once when that one took
longer), until the file STOP exists.  A payment goes from a random account
to another of accounts 1 .. ACCOUNTS (bench.uid(n), scripts/lib.sh's
bench_accounts_sql), in USD with payment method METHOD, an amount drawn as
make bench draws its history's.  Prints a line per payment as it ends,

  start end SQLSTATE

(Unix seconds; 00000 for one committed), and, before the first payment
that failed with an SQLSTATE, a line "message SQLSTATE text" with its
message.
An error is counted, not fatal: a connection that broke is opened again.
"""
import os
import random
import sys
import time

import psycopg2

INSERT = """INSERT INTO p2pay.payments (payer_id, payee_id, amount, currency, payment_method_id)
VALUES (bench.uid(%s), bench.uid(%s), %s, 'USD', %s)"""


def connect():
    """A connection in autocommit: each INSERT is its own transaction."""
    conn = psycopg2.connect("")
    conn.autocommit = True
    return conn


def main():
    accounts = int(sys.argv[1])
    method = sys.argv[2]
    interval = float(sys.argv[3])
    stop, ready = sys.argv[4], sys.argv[5]
    conn = connect()
    open(ready, "w").close()
    seen = set()
    while not os.path.exists(stop):
        payer = random.randint(1, accounts)
        payee = 1 + (payer - 1 + random.randint(1, accounts - 1)) % accounts
        amount = "%.2f" % (5 + 2000 * random.random() ** 6)
        start = time.time()
        code = "00000"
        try:
            if conn.closed:
                conn = connect()
            with conn.cursor() as cur:
                cur.execute(INSERT, (payer, payee, amount, method))
        except psycopg2.Error as e:
            code = e.pgcode or "08000"
            if code not in seen:
                seen.add(code)
                text = str(e).strip().splitlines()
                print("message %s %s" % (code, text[0] if text else type(e).__name__))
        end = time.time()
        print("%.6f %.6f %s" % (start, end, code), flush=True)
        time.sleep(max(0.0, start + interval - time.time()))


if __name__ == "__main__":
    main()
