#!/usr/bin/env python3
"""eval/simulate.py: a seeded peer-to-peer payment network with planted fraud.

Writes, into --out, the CSV files scripts/eval.sh loads (make eval):

  users.csv                 id, first_name, last_name, email_address, created_at
  user_payment_methods.csv  user_id, payment_method_id, details
  accounts.csv              user_id, role (person, tenant, occasional, landlord,
                            business, or the fraud side's accounts)
  payments.csv              seq, transaction_id, payer_id, payee_id, amount,
                            currency, payment_method_id, created_at, typology,
                            instance, step, is_fraud, in_period
  meta.tsv                  the parameters and the counts, one "key<TAB>value"
                            a line

payments.csv is in created_at order (seq is that order): the order to replay
it in.  Honest payments have typology "honest" and a step naming their kind
(friends_split, rent, business, ...); planted fraud has its typology, an
instance number and a step (mule: fan_in then cash_out, ...).  Payments
before the evaluation period (the warm-up, and months of sparse history for
occasional users) have in_period false: they give accounts the history the
rules read (known payees, running means, last payment) and are not scored.

Everything comes from one random.Random(seed), and nothing iterates over a
hashed set, so the same seed and options give byte-identical files.
"""

import argparse
import bisect
import calendar
import csv
import datetime as dt
import math
import os
import random
import sys
import uuid

DAY, HOUR, MINUTE = 86400, 3600, 60

METHODS = {
    "bank": "00000000-0000-4000-8000-000000000001",
    "card": "00000000-0000-4000-8000-000000000002",
    "check": "00000000-0000-4000-8000-000000000003",
    "cash": "00000000-0000-4000-8000-000000000004",
}
METHOD_KEYS = ["bank", "card", "check", "cash"]
RATES = {"USD": 1.0, "EUR": 1.08}    # as p2pay.currencies seeds them

TYPOLOGIES = ["mule", "structuring", "account_takeover", "new_account_cash_out",
              "round_trip", "layering_cycle", "dormant_takeover", "large_to_stranger"]

FIRST_NAMES = """James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth
William Barbara Richard Susan Joseph Jessica Thomas Sarah Charles Karen Daniel Lisa
Matthew Nancy Anthony Betty Mark Sandra Donald Ashley Steven Kimberly Andrew Emily
Paul Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian Melissa George Deborah
Timothy Stephanie Ronald Rebecca Jason Sharon Edward Laura Jeffrey Cynthia Ryan Amy
Jacob Kathleen Gary Angela Nicholas Shirley Eric Anna Jonathan Brenda Larry Pamela
Noa Yosef Miriam Amir Leila Omar Sofia Luca Giulia Mateo Lucia Hugo Chloe Lena Jonas
Aisha Kenji Yuki Priya Arjun Mei Wei Olga Ivan Zofia Piotr Ines Tiago Freya Emil""".split()
LAST_NAMES = """Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez
Hernandez Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez
Thompson White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King
Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell
Mitchell Carter Roberts Cohen Levi Mizrahi Peretz Rossi Bianchi Muller Schmidt Dubois
Moreau Novak Kowalski Silva Santos Tanaka Sato Patel Sharma Chen Wang Ivanov Larsen
Nielsen Berg Okafor Mensah Haddad Khalil""".split()

# Business kinds: weekday factors (Mon..Sun), opening hours with weights,
# and the median and spread of a ticket in USD.
BUSINESS_KINDS = [
    ("Corner Cafe", [1, 1, 1, 1, 1.1, 1.25, 0.8],
     {7: 8, 8: 10, 9: 7, 10: 5, 11: 5, 12: 7, 13: 6, 14: 4, 15: 4, 16: 3, 17: 2}, 7, 0.5, 2.5, 45),
    ("Bakery", [1, 1, 1, 1, 1.1, 1.3, 0.6],
     {6: 5, 7: 9, 8: 10, 9: 7, 10: 5, 11: 4, 12: 4, 13: 3}, 9, 0.55, 2, 60),
    ("Barbershop", [0, 0.8, 1, 1, 1.1, 1.3, 0],
     {9: 4, 10: 6, 11: 6, 12: 5, 13: 5, 14: 6, 15: 6, 16: 6, 17: 7, 18: 5}, 35, 0.35, 15, 120),
    ("Grocery", [1, 1, 1, 1, 1.15, 1.3, 0.7],
     {8: 3, 9: 4, 10: 5, 11: 6, 12: 6, 13: 5, 14: 5, 15: 5, 16: 6, 17: 8, 18: 8, 19: 6, 20: 3},
     28, 0.8, 3, 250),
    ("Lunch Truck", [1, 1, 1, 1, 1, 0.5, 0],
     {11: 6, 12: 10, 13: 8, 14: 3}, 12, 0.3, 6, 40),
]

# When friends pay each other, by hour (weekdays, weekends).
FRIEND_HOURS_WEEKDAY = [1, .5, .3, .2, .2, .3, 1, 2, 3, 3, 3, 4, 6, 6, 4, 3, 3, 4, 6, 8, 9, 8, 5, 2]
FRIEND_HOURS_WEEKEND = [2, 1.5, .8, .4, .2, .2, .4, 1, 2, 4, 6, 7, 8, 8, 7, 6, 6, 7, 8, 9, 9, 8, 6, 4]
FRIEND_WEEKDAY = [0.8, 0.85, 0.9, 1.0, 1.35, 1.45, 1.1]


class Account:
    __slots__ = ("idx", "id", "role", "created", "methods", "currency", "activity",
                 "friends", "occasional", "first", "last")

    def __init__(self, idx, uid, role, created, methods, currency, first, last):
        self.idx, self.id, self.role, self.created = idx, uid, role, created
        self.methods, self.currency = methods, currency
        self.activity, self.friends, self.occasional = 1.0, [], False
        self.first, self.last = first, last


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="directory to write the CSV files into")
    p.add_argument("--seed", type=int, default=1, help="the random seed: same seed and options, same files")
    p.add_argument("--start", default="2025-03-01",
                   help="first day of the evaluation period (UTC); it must end in the past")
    p.add_argument("--days", type=int, default=30, help="length of the evaluation period")
    p.add_argument("--warmup-days", type=int, default=35,
                   help="days of honest traffic before the period, replayed but not scored")
    p.add_argument("--people", type=int, default=1500, help="people in friend circles (at least 100)")
    p.add_argument("--tenants", type=int, default=300, help="people among --people who pay rent")
    p.add_argument("--landlords", type=int, default=60, help="landlords the tenants pay rent to")
    p.add_argument("--businesses", type=int, default=5, help="small businesses whose customers are people of the network")
    p.add_argument("--customers", default="40-60",
                   help="distinct customers per business per ordinary weekday, MIN-MAX")
    p.add_argument("--busy-businesses", type=int, default=2,
                   help="established businesses with --busy-customers a weekday")
    p.add_argument("--busy-customers", default="100-180",
                   help="distinct customers per busy business per ordinary weekday, MIN-MAX")
    p.add_argument("--new-businesses", type=int, default=3,
                   help="businesses that open during the period, busy from their first day")
    p.add_argument("--new-customers", default="50-150",
                   help="distinct customers per new business per ordinary weekday, MIN-MAX")
    p.add_argument("--friend-rate", type=float, default=1.0,
                   help="multiplier on how often friends pay each other")
    p.add_argument("--large-per-day", type=float, default=1.5,
                   help="honest large payments (car, family loan, deposit) to known people per day")
    p.add_argument("--marketplace-rate", type=float, default=0.012,
                   help="honest purchases from strangers per person per day")
    p.add_argument("--occasional-share", type=float, default=0.08,
                   help="share of people who pay only every few months")
    p.add_argument("--unregistered-share", type=float, default=0.015,
                   help="share of honest payments made with a method the payer never registered")
    p.add_argument("--eur-share", type=float, default=0.05, help="share of people who pay in EUR")
    p.add_argument("--instances", type=int, default=10, help="fraud instances per typology")
    p.add_argument("--instances-of", default="",
                   help="per-typology counts overriding --instances, e.g. mule=30,layering_cycle=10")
    a = p.parse_args(argv)
    for opt in ("customers", "busy_customers", "new_customers"):
        try:
            lo, hi = (int(x) for x in getattr(a, opt).split("-"))
            assert 0 < lo <= hi
        except (ValueError, AssertionError):
            p.error("--%s must be MIN-MAX, e.g. 40-60" % opt.replace("_", "-"))
        setattr(a, opt + "_range", (lo, hi))
    if min(a.busy_businesses, a.new_businesses) < 0:
        p.error("--busy-businesses and --new-businesses can't be negative")
    a.counts = {t: a.instances for t in TYPOLOGIES}
    for item in filter(None, a.instances_of.split(",")):
        name, _, n = item.partition("=")
        if name.strip() not in a.counts or not n.strip().isdigit():
            p.error("--instances-of: unknown typology or count in %r (typologies: %s)"
                    % (item, ", ".join(TYPOLOGIES)))
        a.counts[name.strip()] = int(n)
    if a.people < 100 or a.days < 3 or a.warmup_days < 0:
        p.error("need --people >= 100, --days >= 3, --warmup-days >= 0")
    a.tenants = min(a.tenants, a.people // 2)
    return a


def epoch_of(day):
    d = dt.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
    return int(d.timestamp())


def stamp(t):
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S+00")


class Sim:
    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        self.start = epoch_of(a.start)
        self.end = self.start + a.days * DAY
        self.warm = self.start - a.warmup_days * DAY
        if self.end > dt.datetime.now(dt.timezone.utc).timestamp():
            sys.exit("simulate.py: the period must end in the past (--start, --days)")
        self.accounts = []
        self.payments = []      # (t, gen, payer, payee, usd, method, typology, instance, step, fraud)
        self.gen = 0
        self.payer_times = None    # payer index -> sorted payment times, once indexed

    # -- random helpers -----------------------------------------------------

    def lognormal(self, median, sigma, lo, hi):
        return min(hi, max(lo, median * math.exp(self.rng.gauss(0, sigma))))

    def poisson(self, lam):
        if lam <= 0:
            return 0
        if lam > 30:
            return max(0, int(round(self.rng.gauss(lam, math.sqrt(lam)))))
        n, p, limit = 0, self.rng.random(), math.exp(-lam)
        while p > limit:
            n += 1
            p *= self.rng.random()
        return n

    def hour_in(self, day0, weights):
        hours = list(weights) if isinstance(weights, dict) else list(range(24))
        w = [weights[h] for h in hours]
        h = self.rng.choices(hours, w)[0]
        return day0 + h * HOUR + self.rng.randrange(HOUR)

    def weighted_sample(self, items, weights, k):
        """k distinct items, each drawn with probability proportional to its weight."""
        keys = [(self.rng.random() ** (1.0 / w), i) for i, w in zip(range(len(items)), weights)]
        keys.sort(reverse=True)
        return [items[i] for _, i in keys[:k]]

    def new_id(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    # -- accounts -----------------------------------------------------------

    def add_account(self, role, created, methods=None, currency="USD", first=None, last=None):
        if methods is None:
            methods = self.person_methods()
        if first is None:
            first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        acct = Account(len(self.accounts), self.new_id(), role, int(created), methods,
                       currency, first, last)
        self.accounts.append(acct)
        return acct

    def person_methods(self):
        m = [k for k, share in (("bank", 0.85), ("card", 0.7), ("check", 0.05), ("cash", 0.08))
             if self.rng.random() < share]
        return m or [self.rng.choice(["bank", "card"])]

    def person_created(self):
        """Most accounts are months or years old; a few open during the warm-up or the period."""
        r = self.rng.random()
        if r < 0.70:
            return self.start - self.rng.uniform(180, 1500) * DAY
        if r < 0.92:
            return self.start - self.rng.uniform(40, 180) * DAY
        if r < 0.97:
            return self.rng.uniform(self.warm, self.start)
        return self.rng.uniform(self.start, self.end - 3 * DAY)

    def build_network(self):
        a, rng = self.a, self.rng
        self.people = []
        for _ in range(a.people):
            cur = "EUR" if rng.random() < a.eur_share else "USD"
            p = self.add_account("person", self.person_created(), currency=cur)
            p.activity = math.exp(rng.gauss(0, 0.7))
            self.people.append(p)
        # Occasional users: old accounts that pay every few months.
        old = [p for p in self.people if p.created < self.start - 420 * DAY]
        for p in rng.sample(old, min(len(old), int(a.people * a.occasional_share))):
            p.occasional, p.role = True, "occasional"
        regular = [p for p in self.people if not p.occasional]

        # Friend circles of 5-15; a quarter of the people belong to a second one.
        order = self.people[:]
        rng.shuffle(order)
        self.circles, i = [], 0
        while i < len(order):
            size = rng.randint(5, 15)
            if len(order) - (i + size) < 5:
                size = len(order) - i
            self.circles.append(order[i:i + size])
            i += size
        for p in self.people:
            if rng.random() < 0.25 and len(self.circles) > 1:
                c = rng.choice(self.circles)
                if p not in c:
                    c.append(p)
        friends = {p.idx: [] for p in self.people}
        for c in self.circles:
            for p in c:
                friends[p.idx].extend(q.idx for q in c if q is not p and q.idx not in friends[p.idx])
        for p in self.people:
            p.friends = friends[p.idx]

        # Tenants and their landlords; a few landlords let many flats.
        self.landlords = [self.add_account("landlord", self.start - rng.uniform(400, 3000) * DAY,
                                           methods=["bank"]) for _ in range(a.landlords)]
        lweights = [(i + 1) ** -0.65 for i in range(len(self.landlords))]
        self.tenancies = []
        for t in rng.sample(regular, min(len(regular), a.tenants)):
            t.role = "tenant"
            landlord = rng.choices(self.landlords, lweights)[0] if self.landlords else None
            if landlord is None:
                break
            rent = round(self.lognormal(1400, 0.35, 650, 3500) / 10) * 10
            habit = rng.choices([0, -1, -2, -3, 1, 2, 3, 5], [55, 10, 8, 7, 8, 6, 4, 2])[0]
            self.tenancies.append((t, landlord, rent, habit, rng.random() < 0.3))

        # Businesses, each with a pool of customers from the network: small
        # ones, busy ones, and ones that open during the period and are busy
        # from their first day.
        self.businesses = []
        specs = ([("business", a.customers_range, None)] * a.businesses +
                 [("busy_business", a.busy_customers_range, None)] * a.busy_businesses +
                 [("new_business", a.new_customers_range, True)] * a.new_businesses)
        for b, (role, customers, opens) in enumerate(specs):
            kind = BUSINESS_KINDS[b % len(BUSINESS_KINDS)]
            name = kind[0] if b < len(BUSINESS_KINDS) else "%s %d" % (kind[0], b // len(BUSINESS_KINDS) + 1)
            if opens:
                created = rng.uniform(self.start, self.end - 7 * DAY)
            else:
                created = self.start - rng.uniform(300, 2500) * DAY
            acct = self.add_account(role, created, methods=["bank"], first=name, last="LLC")
            pool_size = min(len(regular), rng.randint(5, 9) * sum(customers) // 2)
            pool = rng.sample(regular, pool_size)
            loyalty = [math.exp(rng.gauss(0, 1)) for _ in pool]
            self.businesses.append((acct, kind, pool, loyalty, customers))

        # The fraud side's standing accounts: collectors of mule money, drops
        # that receive stolen money, accomplices.
        self.collectors = [self.add_account("fraud_collector", self.start - rng.uniform(60, 400) * DAY,
                                            methods=["bank"]) for _ in range(4)]
        self.drops = [self.add_account("fraud_drop", self.start - rng.uniform(5, 120) * DAY,
                                       methods=[rng.choice(["bank", "card"])]) for _ in range(15)]

    # -- payments -----------------------------------------------------------

    def method_for(self, payer, prefer, honest=True):
        rng = self.rng
        if honest and rng.random() < self.a.unregistered_share:
            others = [m for m in METHOD_KEYS if m not in payer.methods]
            if others:
                return rng.choice(others)
        if prefer in payer.methods and rng.random() < 0.85:
            return prefer
        return rng.choice(payer.methods)

    def pay(self, t, payer, payee, usd, step, typology="honest", instance=None,
            method=None, prefer="bank", whole=False):
        """Record one payment; honest ones that fall outside the simulated time are dropped."""
        t = int(t)
        if payer is payee or t >= self.end or t < payer.created or t < payee.created:
            if typology != "honest":
                raise AssertionError("fraud payment out of bounds: %s %s" % (typology, step))
            return None
        if t < self.warm and not (payer.occasional and step == "occasional"):
            return None
        if method is None:
            method = self.method_for(payer, prefer, honest=(typology == "honest"))
        amount = usd / RATES[payer.currency]
        amount = float(round(amount)) if whole else round(amount, 2)
        if amount < 0.01:
            amount = 0.01
        self.gen += 1
        rec = (t, self.gen, payer.idx, payee.idx, amount, method, typology, instance, step,
               typology != "honest")
        self.payments.append(rec)
        if self.payer_times is not None:     # planting fraud: keep the index current
            bisect.insort(self.payer_times.setdefault(payer.idx, []), t)
        return rec

    def honest_traffic(self):
        a, rng = self.a, self.rng
        day0 = self.warm - (self.warm % DAY)
        days = []
        while day0 < self.end:
            days.append(day0)
            day0 += DAY
        regular = [p for p in self.people if not p.occasional]

        for d in days:
            wd = dt.datetime.fromtimestamp(d, dt.timezone.utc).weekday()
            hours = FRIEND_HOURS_WEEKEND if wd >= 5 else FRIEND_HOURS_WEEKDAY
            wf = FRIEND_WEEKDAY[wd] * a.friend_rate
            # Friends: shared bills paid back to whoever paid, and direct payments.
            for circle in self.circles:
                payers = [m for m in circle if not m.occasional and m.created <= d + DAY]
                if len(payers) < 2:
                    continue
                for _ in range(self.poisson(0.08 * len(payers) * wf)):
                    self.split_bill(d, hours, circle, payers)
                for _ in range(self.poisson(0.29 * len(payers) * wf)):
                    self.direct(d, hours, payers)
            # Purchases from strangers (second-hand goods, tickets).
            for _ in range(self.poisson(a.marketplace_rate * len(regular) * FRIEND_WEEKDAY[wd])):
                buyer = rng.choice(regular)
                seller = rng.choice(self.people)
                if seller is buyer or seller.idx in buyer.friends:
                    continue
                usd = self.lognormal(70, 1.0, 5, 2500)
                self.pay(self.hour_in(d, hours), buyer, seller, usd, "marketplace",
                         prefer="card", whole=rng.random() < 0.6)
            # Businesses: their customers a weekday, their own weekly rhythm.
            for acct, kind, pool, loyalty, customers in self.businesses:
                factor = kind[1][wd]
                if factor == 0 or acct.created >= d + DAY:
                    continue
                n = int(round(rng.uniform(*customers) * factor))
                open_pool = [(c, w) for c, w in zip(pool, loyalty) if c.created <= d]
                for c in self.weighted_sample([c for c, _ in open_pool], [w for _, w in open_pool], n):
                    usd = self.lognormal(kind[3], kind[4], kind[5], kind[6])
                    t = self.hour_in(d, kind[2])
                    self.pay(t, c, acct, usd, acct.role, prefer="card")
                    if rng.random() < 0.03:       # back for another one
                        self.pay(t + rng.randint(20, 240) * MINUTE, c, acct,
                                 self.lognormal(kind[3], kind[4], kind[5], kind[6]),
                                 acct.role, prefer="card")
            # Occasional users, now and then.
            for p in self.people:
                if p.occasional and rng.random() < 0.006:
                    self.occasional_payment(self.hour_in(d, hours), p)

        self.rent()
        self.occasional_history()

    def split_bill(self, d, hours, circle, payers):
        rng = self.rng
        organiser = rng.choices(payers, [p.activity for p in payers])[0]
        others = [p for p in payers if p is not organiser]
        k = min(len(others), rng.choices([1, 2, 3, 4, 5, 6], [25, 25, 20, 15, 10, 5])[0])
        t0 = self.hour_in(d, hours)
        per_head = self.lognormal(25, 0.6, 5, 180)
        whole = rng.random() < 0.5
        for p in rng.sample(others, k):
            r = rng.random()
            if r < 0.6:
                delay = self.lognormal(25 * MINUTE, 1.0, MINUTE, 3 * HOUR)
            elif r < 0.9:
                delay = rng.uniform(2 * HOUR, DAY)
            else:
                delay = rng.uniform(DAY, 4 * DAY)
            self.pay(t0 + delay, p, organiser, per_head * rng.uniform(0.85, 1.15),
                     "friends_split", whole=whole)

    def direct(self, d, hours, payers):
        rng, acc = self.rng, self.accounts
        a = rng.choices(payers, [p.activity for p in payers])[0]
        if not a.friends:
            return
        b = acc[rng.choice(a.friends)]
        t = self.hour_in(d, hours)
        if rng.random() < 0.97:
            usd = self.lognormal(20, 0.9, 2, 500)
        else:
            usd = rng.uniform(300, 1200)
        whole = rng.random() < 0.5
        if self.pay(t, a, b, usd, "friends_direct", whole=whole) and not b.occasional \
                and rng.random() < 0.25:
            back = usd if rng.random() < 0.6 else self.lognormal(20, 0.9, 2, 500)
            self.pay(t + self.lognormal(DAY, 1.2, 10 * MINUTE, 7 * DAY), b, a, back,
                     "friends_payback", whole=whole)

    def occasional_payment(self, t, p):
        rng = self.rng
        friends = [f for f in p.friends if self.accounts[f].created <= t]
        if not friends:
            return None
        usd = rng.uniform(1000, 3000) if rng.random() < 0.12 else self.lognormal(40, 0.8, 5, 600)
        return self.pay(t, p, self.accounts[rng.choice(friends)], usd, "occasional",
                        whole=rng.random() < 0.6)

    def occasional_history(self):
        """Months of sparse history before the warm-up, so that some accounts are dormant."""
        rng = self.rng
        for p in self.people:
            if not p.occasional:
                continue
            last = self.start - rng.uniform(20, 380) * DAY
            times = [last] + [last - rng.uniform(10, 300) * DAY for _ in range(rng.randint(0, 3))]
            for t in times:
                if t > p.created:
                    self.occasional_payment(int(t), p)

    def rent(self):
        rng = self.rng
        y, m = dt.datetime.fromtimestamp(self.warm - 10 * DAY, dt.timezone.utc).timetuple()[:2]
        while True:
            first = calendar.timegm((y, m, 1, 0, 0, 0))
            if first > self.end + 10 * DAY:
                break
            for tenant, landlord, amount, habit, scheduled in self.tenancies:
                off = habit if rng.random() < 0.8 else habit + rng.choice([-2, -1, 1, 2])
                day = first + off * DAY
                if scheduled and off == habit:
                    t = day + 6 * HOUR + rng.randrange(10 * MINUTE)
                else:
                    t = self.hour_in(day, FRIEND_HOURS_WEEKDAY)
                self.pay(t, tenant, landlord, amount, "rent", prefer="bank", whole=True)
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)

    # -- indexes over the honest traffic ------------------------------------

    def index(self):
        self.payments.sort()
        self.payer_times = {}
        self.first_paid = {}
        for rec in self.payments:
            t, payer, payee = rec[0], rec[2], rec[3]
            self.payer_times.setdefault(payer, []).append(t)
            self.first_paid.setdefault((payer, payee), t)

    def payments_before(self, acct, t):
        return bisect.bisect_left(self.payer_times.get(acct.idx, []), t)

    def last_before(self, acct, t):
        times = self.payer_times.get(acct.idx, [])
        i = bisect.bisect_left(times, t)
        return times[i - 1] if i else None

    def large_known(self):
        """Now and then a large honest payment to someone the payer has paid before."""
        rng, acc = self.rng, self.accounts
        regular = [p for p in self.people if not p.occasional]
        day0 = self.warm - (self.warm % DAY)
        while day0 < self.end:
            for _ in range(self.poisson(self.a.large_per_day)):
                t = self.hour_in(day0, FRIEND_HOURS_WEEKDAY)
                for _ in range(20):
                    a = rng.choice(regular)
                    known = [f for f in a.friends if self.first_paid.get((a.idx, f), t) < t - HOUR]
                    if known:
                        break
                else:
                    continue
                b = acc[rng.choice(known)]
                kind = rng.choices(["car", "family_loan", "deposit"], [25, 45, 30])[0]
                if kind == "car":
                    usd = round(rng.uniform(3000, 18000) / 100) * 100
                elif kind == "family_loan":
                    usd = round(rng.uniform(1000, 9000) / 50) * 50
                else:
                    usd = rng.uniform(1000, 3000)
                if not self.pay(t, a, b, usd, "large_known", whole=True):
                    continue
                if kind == "family_loan":
                    r = rng.random()
                    if r < 0.15:        # paid back in full the same day
                        self.pay(t + rng.uniform(2, 20) * HOUR, b, a, usd, "loan_repayment", whole=True)
                    elif r < 0.6:       # in instalments
                        n = rng.randint(2, 4)
                        for i in range(n):
                            self.pay(t + (i + 1) * rng.uniform(5, 10) * DAY, b, a, usd / n,
                                     "loan_repayment", whole=True)
            day0 += DAY

    # -- planted fraud ------------------------------------------------------

    def fraud_time(self, tail=2 * DAY):
        return self.rng.uniform(self.start + 6 * HOUR, self.end - tail)

    def strangers(self, of, t, k):
        """k distinct network people who are not the account's friends and existed at t."""
        cands = [p for p in self.people if p is not of and p.idx not in of.friends and p.created <= t]
        return self.rng.sample(cands, min(k, len(cands)))

    def established(self, t, used, min_payments=15):
        for _ in range(5000):
            p = self.rng.choice(self.people)
            if (not p.occasional and p.idx not in used and p.created < t - 365 * DAY
                    and self.payments_before(p, t) >= min_payments):
                used.add(p.idx)
                return p
        raise SystemExit("simulate.py: no established account left; raise --people")

    def fraud_account(self, role, created):
        return self.add_account(role, created, methods=[self.rng.choice(["bank", "card"])])

    def plant_fraud(self):
        used = set()        # network people already used as a fraud account or victim of takeover
        self.short = {}
        for typ in TYPOLOGIES:
            made = 0
            for inst in range(1, self.a.counts[typ] + 1):
                if getattr(self, "fraud_" + typ)(inst, used) is False:
                    break
                made += 1
            if made < self.a.counts[typ]:
                self.short[typ] = made

    def fraud_mule(self, inst, used):
        rng = self.rng
        t = self.fraud_time()
        if rng.random() < 0.5:
            mule = self.fraud_account("fraud_mule", t - rng.uniform(15, 200) * DAY)
        else:
            mule = self.established(t, used, min_payments=5)
        victims = self.strangers(mule, t, rng.randint(20, 40))
        span = rng.uniform(1.5, 8) * HOUR
        times = sorted(t + rng.uniform(0, span) for _ in victims)
        total = 0.0
        for v, tv in zip(victims, times):
            usd = self.lognormal(250, 0.6, 40, 1500)
            usd = float(round(usd, -1)) if rng.random() < 0.5 else round(usd, 2)
            self.pay(tv, v, mule, usd, "fan_in", "mule", inst, prefer="bank")
            total += usd
        out = round(total * rng.uniform(0.80, 0.95))
        self.pay(times[-1] + rng.uniform(0.3, 6) * HOUR, mule, rng.choice(self.collectors), out,
                 "cash_out", "mule", inst, method=rng.choice(mule.methods), whole=True)

    def fraud_structuring(self, inst, used):
        rng = self.rng
        t = self.fraud_time()
        if rng.random() < 0.6:
            payer = self.established(t, used)
        else:
            payer = self.fraud_account("fraud_structurer", t - rng.uniform(30, 300) * DAY)
        payees = [self.fraud_account("fraud_accomplice", t - rng.uniform(20, 300) * DAY)
                  for _ in range(rng.randint(1, 3))]
        span = rng.uniform(2, 20) * HOUR
        for tp in sorted(t + rng.uniform(0, span) for _ in range(rng.randint(3, 5))):
            usd = rng.uniform(9100, 9990) if rng.random() < 0.85 else rng.uniform(8500, 9100)
            self.pay(tp, payer, rng.choice(payees), usd,
                     "just_under", "structuring", inst, method=rng.choice(payer.methods),
                     whole=rng.random() < 0.5)

    def fraud_account_takeover(self, inst, used):
        rng = self.rng
        t = self.fraud_time()
        victim = self.established(t, used)
        method = rng.choice([m for m in METHOD_KEYS if m not in victim.methods])
        drops = rng.sample(self.drops, rng.randint(1, 4))
        span = rng.uniform(15, 90) * MINUTE
        for tp in sorted(t + rng.uniform(0, span) for _ in range(rng.randint(4, 10))):
            self.pay(tp, victim, rng.choice(drops), self.lognormal(700, 0.6, 100, 3000),
                     "burst", "account_takeover", inst, method=method, whole=rng.random() < 0.5)

    def fraud_new_account_cash_out(self, inst, used):
        rng = self.rng
        t = self.fraud_time()
        acct = self.fraud_account("fraud_new_account", t - rng.uniform(0.5, 6) * DAY)
        drops = rng.sample(self.drops, rng.randint(1, 2))
        span = rng.uniform(1, 36) * HOUR
        for tp in sorted(t + rng.uniform(0, span) for _ in range(rng.randint(1, 4))):
            self.pay(tp, acct, rng.choice(drops), rng.uniform(1500, 9500), "cash_out",
                     "new_account_cash_out", inst, method=acct.methods[0], whole=rng.random() < 0.5)

    def fraud_round_trip(self, inst, used):
        rng = self.rng
        t = self.fraud_time()
        if rng.random() < 0.5:
            a = self.established(t, used)
        else:
            a = self.fraud_account("fraud_accomplice", t - rng.uniform(20, 300) * DAY)
        b = self.fraud_account("fraud_accomplice", t - rng.uniform(20, 300) * DAY)
        usd = rng.uniform(2000, 9500)
        self.pay(t, a, b, usd, "out", "round_trip", inst, method=rng.choice(a.methods), whole=True)
        self.pay(t + rng.uniform(0.5, 20) * HOUR, b, a, usd * rng.uniform(0.9, 1.0), "back",
                 "round_trip", inst, method=b.methods[0], whole=rng.random() < 0.5)

    def fraud_layering_cycle(self, inst, used):
        rng = self.rng
        t = self.fraud_time()
        ring = [self.fraud_account("fraud_accomplice", t - rng.uniform(30, 400) * DAY)
                for _ in range(rng.choice([3, 4]))]
        if rng.random() < 0.3:
            ring[0] = self.established(t, used)
        usd = rng.uniform(3000, 14000)
        for i, payer in enumerate(ring):
            payee = ring[(i + 1) % len(ring)]
            self.pay(t, payer, payee, usd, "hop", "layering_cycle", inst,
                     method=rng.choice(payer.methods), whole=rng.random() < 0.5)
            t += rng.uniform(15, 150) * MINUTE
            usd *= rng.uniform(0.96, 0.995)

    def fraud_dormant_takeover(self, inst, used):
        rng = self.rng
        for _ in range(200):
            t = self.fraud_time()
            cands = []
            for p in self.people:
                if p.occasional and p.idx not in used:
                    last = self.last_before(p, t)
                    if last is not None and last < t - 91 * DAY:
                        cands.append(p)
            if cands:
                break
        else:
            return False
        victim = rng.choice(cands)
        used.add(victim.idx)
        unreg = [m for m in METHOD_KEYS if m not in victim.methods]
        method = rng.choice(unreg) if rng.random() < 0.3 else rng.choice(victim.methods)
        self.pay(t, victim, rng.choice(self.drops), rng.uniform(1500, 9000), "wake",
                 "dormant_takeover", inst, method=method, whole=rng.random() < 0.5)
        for _ in range(rng.randint(0, 2)):
            t += rng.uniform(1, 6) * HOUR
            self.pay(t, victim, rng.choice(self.drops), rng.uniform(1000, 6000), "follow",
                     "dormant_takeover", inst, method=method, whole=rng.random() < 0.5)

    def fraud_large_to_stranger(self, inst, used):
        rng = self.rng
        t = self.fraud_time()
        payer = self.established(t, used)
        if rng.random() < 0.6:
            payee = self.fraud_account("fraud_scammer", t - rng.uniform(10, 200) * DAY)
        else:
            payee = (self.strangers(payer, t, 1) or [self.fraud_account("fraud_scammer", t - DAY)])[0]
        usd = self.lognormal(18000, 0.5, 10500, 60000)
        self.pay(t, payer, payee, usd, "payment", "large_to_stranger", inst,
                 method=self.method_for(payer, "bank", honest=False), whole=True)

    # -- output -------------------------------------------------------------

    def write(self):
        a, out = self.a, self.a.out
        os.makedirs(out, exist_ok=True)
        self.payments.sort()
        acc = self.accounts

        def writer(name, header):
            f = open(os.path.join(out, name), "w", newline="", encoding="utf-8")
            w = csv.writer(f, lineterminator="\n")
            w.writerow(header)
            return f, w

        f, w = writer("users.csv", ["id", "first_name", "last_name", "email_address", "created_at"])
        emails = {}
        for x in acc:
            base = "%s.%s" % (x.first.lower().replace(" ", ""), x.last.lower())
            emails[base] = emails.get(base, 0) + 1
            mail = "%s%s@example.com" % (base, "" if emails[base] == 1 else emails[base])
            w.writerow([x.id, x.first, x.last, mail, stamp(x.created)])
        f.close()

        f, w = writer("user_payment_methods.csv", ["user_id", "payment_method_id", "details"])
        for x in acc:
            for m in x.methods:
                detail = {"bank": "account ****%04d", "card": "card ****%04d",
                          "check": "checkbook %04d", "cash": "cash at agent %04d"}[m]
                w.writerow([x.id, METHODS[m], detail % self.rng.randrange(10000)])
        f.close()

        f, w = writer("accounts.csv", ["user_id", "role"])
        for x in acc:
            w.writerow([x.id, x.role])
        f.close()

        counts = {}
        f, w = writer("payments.csv", ["seq", "transaction_id", "payer_id", "payee_id", "amount",
                                       "currency", "payment_method_id", "created_at", "typology",
                                       "instance", "step", "is_fraud", "in_period"])
        for seq, (t, _, payer, payee, amount, method, typ, inst, step, fraud) in \
                enumerate(self.payments, 1):
            in_period = t >= self.start
            key = ("period" if in_period else "before", typ)
            counts[key] = counts.get(key, 0) + 1
            w.writerow([seq, self.new_id(), acc[payer].id, acc[payee].id, "%.2f" % amount,
                        acc[payer].currency, METHODS[method], stamp(t), typ,
                        "" if inst is None else inst, step, "t" if fraud else "f",
                        "t" if in_period else "f"])
        f.close()

        period = sum(v for (ph, _), v in counts.items() if ph == "period")
        honest = counts.get(("period", "honest"), 0)
        meta = [
            ("seed", a.seed), ("start", a.start), ("days", a.days),
            ("period", "%s to %s" % (stamp(self.start), stamp(self.end))),
            ("period_start", stamp(self.start)), ("period_end", stamp(self.end)),
            ("warmup_days", a.warmup_days), ("people", a.people), ("tenants", len(self.tenancies)),
            ("landlords", a.landlords), ("businesses", a.businesses),
            ("customers", a.customers), ("busy_businesses", a.busy_businesses),
            ("busy_customers", a.busy_customers), ("new_businesses", a.new_businesses),
            ("new_customers", a.new_customers), ("friend_rate", a.friend_rate),
            ("large_per_day", a.large_per_day), ("marketplace_rate", a.marketplace_rate),
            ("occasional_share", a.occasional_share), ("unregistered_share", a.unregistered_share),
            ("eur_share", a.eur_share),
            ("instances", ",".join("%s=%d" % (t, self.short.get(t, a.counts[t])) for t in TYPOLOGIES)),
            ("users", len(acc)), ("payments", len(self.payments)),
            ("payments_before_period", len(self.payments) - period),
            ("payments_in_period", period), ("honest_in_period", honest),
            ("fraud_in_period", period - honest),
        ]
        with open(os.path.join(out, "meta.tsv"), "w", encoding="utf-8") as f:
            for k, v in meta:
                f.write("%s\t%s\n" % (k, v))
        return meta


def main(argv):
    a = parse_args(argv)
    sim = Sim(a)
    sim.build_network()
    sim.honest_traffic()
    sim.index()
    sim.large_known()
    sim.index()
    sim.plant_fraud()
    meta = sim.write()
    for typ, n in sim.short.items():
        print("simulate.py: only %d instances of %s could be planted" % (n, typ), file=sys.stderr)
    m = dict(meta)
    print("simulate.py: seed %s, %s users, %s payments (%s before the period, %s in it: "
          "%s honest, %s fraud)" % (m["seed"], m["users"], m["payments"], m["payments_before_period"],
                                    m["payments_in_period"], m["honest_in_period"],
                                    m["fraud_in_period"]), file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
