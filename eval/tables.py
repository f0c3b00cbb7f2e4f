#!/usr/bin/python3
"""eval/tables.py: the make eval report, composed from the parts that
scripts/eval.sh collects.

The header, the rule configuration and the details of each mode come from
eval/report.sql as Markdown and are copied as they are (the details' headings
a level down).  What compares databases is composed here, from one line of
JSON per database (eval/summary.sql): the primary network's cold start and
warm figures side by side, and one row per network and mode in the table
across networks, with the figures that miss a target marked.

Debian's python3 alone: no package beyond the standard library.
"""

import argparse
import json
import re
import sys
from decimal import Decimal, ROUND_HALF_UP

# The targets: at most this share of honest payments flagged (%), at most
# this many payments flagged per 1,000, and at least this share of every
# typology's instances caught (%).
TARGET_FALSE_POSITIVES = Decimal('0.5')
TARGET_REVIEW_LOAD = Decimal('10')
TARGET_CAUGHT = Decimal('90')
MISS = ' ✗'

MODE_NAMES = {'cold': 'cold start', 'warm': 'warm'}
MODE_ORDER = ['cold', 'warm']


def ratio(part, whole, scale):
    """part / whole * scale to one decimal, rounded half up as SQL's round()
    does (the details' figures and these agree); None when whole is 0."""
    if not whole:
        return None
    return (Decimal(part) * scale / Decimal(whole)).quantize(Decimal('0.1'), ROUND_HALF_UP)


def pct(part, whole):
    return ratio(part, whole, 100)


def per_mille(part, whole):
    return ratio(part, whole, 1000)


def show(value, missed=False):
    """A figure as text, with the mark of a missed target."""
    if value is None:
        return ''
    return str(value) + (MISS if missed else '')


NUMBER = re.compile(r'^-?[0-9][0-9,]*(\.[0-9]+)?( %)?(' + MISS + ')?$')


def md_table(columns, rows):
    """A Markdown table padded to read in a terminal too; columns holding only
    figures are right-aligned."""
    width = [max(3, len(c)) for c in columns]
    numeric = [True] * len(columns)
    for row in rows:
        for j, cell in enumerate(row):
            width[j] = max(width[j], len(cell))
            if cell and not NUMBER.match(cell):
                numeric[j] = False
    lines = ['| ' + ' | '.join(c.ljust(width[j]) for j, c in enumerate(columns)) + ' |']
    lines.append('|' + '|'.join('-' * (width[j] + 1) + ':' if numeric[j] else '-' * (width[j] + 2)
                                for j in range(len(columns))) + '|')
    for row in rows:
        lines.append('| ' + ' | '.join(cell.rjust(width[j]) if numeric[j] else cell.ljust(width[j])
                                       for j, cell in enumerate(row)) + ' |')
    return '\n'.join(lines)


class Run:
    """One database's figures: a network replayed in one mode."""

    def __init__(self, summary):
        self.meta = summary['meta']
        self.mode = self.meta['mode']
        self.network = int(self.meta['network'])
        o = summary['overall']
        self.payments = o['payments']
        self.honest = o['honest']
        self.fraud = o['fraud']
        self.flagged = o['flagged']
        self.honest_flagged = o['honest_flagged']
        self.fraud_flagged = o['fraud_flagged']
        self.false_positives = pct(self.honest_flagged, self.honest)
        self.review_load = per_mille(self.flagged, self.payments)
        self.precision = pct(self.fraud_flagged, self.flagged)
        self.recall = pct(self.fraud_flagged, self.fraud)
        self.typologies = {t['typology']: t for t in summary['typologies']}
        self.typology_order = [t['typology'] for t in summary['typologies']]

    def caught(self, typology):
        t = self.typologies.get(typology)
        return pct(t['caught'], t['instances']) if t else None

    def flagged_share(self, typology):
        t = self.typologies.get(typology)
        return pct(t['flagged'], t['payments']) if t else None

    def fp_missed(self):
        return self.false_positives is not None and self.false_positives > TARGET_FALSE_POSITIVES

    def load_missed(self):
        return self.review_load is not None and self.review_load > TARGET_REVIEW_LOAD

    def caught_missed(self, typology):
        c = self.caught(typology)
        return c is not None and c < TARGET_CAUGHT

    def targets_met(self):
        return not (self.fp_missed() or self.load_missed()
                    or any(self.caught_missed(t) for t in self.typologies))

    def options(self):
        """The simulator's flags, the seed aside: what sets this network apart."""
        flags = self.meta.get('options', '').split()
        kept = []
        i = 0
        while i < len(flags):
            if flags[i] == '--seed':
                i += 2
                continue
            if flags[i].startswith('--seed='):
                i += 1
                continue
            kept.append(flags[i])
            i += 1
        return ' '.join(kept) or 'defaults'


def ordered_typologies(runs):
    """Every typology of the runs, in the simulator's order."""
    seen = []
    for run in runs:
        for t in run.typology_order:
            if t not in seen:
                seen.append(t)
    return seen


def side_by_side(runs):
    """The primary network's modes, side by side."""
    names = [MODE_NAMES[r.mode] for r in runs]
    out = ['## Cold start and warm, side by side' if len(runs) > 1
           else '## The primary network, ' + names[0], '']
    about = {
        'cold': 'Cold start: only the payments of the scored period are replayed, so that no account '
                'has any history in p2pay before its first payment in it, as on the day p2pay is '
                'installed on a live system (account ages are the true ones).',
        'warm': 'Warm: the months before the period are replayed first, unscored, so that accounts '
                'have the history the rules read.',
    }
    out.append('  '.join(about[r.mode] for r in runs)
               + ('  The same network, the same payments scored.' if len(runs) > 1 else ''))
    out.append('')
    out.append('### Fraud caught, per typology')
    out.append('')
    out.append('Caught: instances with at least one payment flagged (review or decline); flagged: '
               'the share of the typology\'s payments flagged.  %s marks a typology caught in '
               'fewer than %s %% of its instances.' % (MISS.strip(), TARGET_CAUGHT))
    out.append('')
    typologies = ordered_typologies(runs)
    columns = ['typology', 'instances'] + ['caught %% %s' % n for n in names] \
        + ['flagged %% %s' % n for n in names]
    rows = []
    for t in typologies:
        first = next(r for r in runs if t in r.typologies)
        rows.append([t, str(first.typologies[t]['instances'])]
                    + [show(r.caught(t), r.caught_missed(t)) for r in runs]
                    + [show(r.flagged_share(t)) for r in runs])
    instances = [sum(x['instances'] for x in r.typologies.values()) for r in runs]
    caught = [sum(x['caught'] for x in r.typologies.values()) for r in runs]
    fraud_payments = [sum(x['payments'] for x in r.typologies.values()) for r in runs]
    fraud_flagged = [sum(x['flagged'] for x in r.typologies.values()) for r in runs]
    rows.append(['all fraud', str(instances[0])]
                + [show(pct(caught[i], instances[i])) for i in range(len(runs))]
                + [show(pct(fraud_flagged[i], fraud_payments[i])) for i in range(len(runs))])
    out.append(md_table(columns, rows))
    out.append('')
    out.append('### Overall')
    out.append('')
    figures = [
        ('payments scored', lambda r: (r.payments, False)),
        ('honest payments', lambda r: (r.honest, False)),
        ('fraudulent payments', lambda r: (r.fraud, False)),
        ('honest payments flagged', lambda r: (r.honest_flagged, False)),
        ('false-positive rate: honest flagged, %% of honest (target ≤ %s)' % TARGET_FALSE_POSITIVES,
         lambda r: (r.false_positives, r.fp_missed())),
        ('review load: flagged per 1,000 payments (target ≤ %s)' % TARGET_REVIEW_LOAD,
         lambda r: (r.review_load, r.load_missed())),
        ('share of flags that are fraud (precision), %', lambda r: (r.precision, False)),
        ('fraudulent payments flagged (recall), %', lambda r: (r.recall, False)),
        ('payments replayed', lambda r: (r.meta['replayed'], False)),
        ('replay time, s', lambda r: (r.meta['replay_seconds'], False)),
    ]
    rows = [[label] + [show(*f(r)) for r in runs] for label, f in figures]
    out.append(md_table(['figure'] + names, rows))
    return out


def across_networks(runs):
    """One row per network and mode, the targets' misses marked."""
    out = ['## Across networks', '']
    out.append('The primary network and others the rules were not tuned on (other seeds, sizes, '
               'start dates and mixes; eval/README.md), each in the same modes.  Per typology, the '
               'share of its instances caught.  Targets: false positives ≤ %s %%, review load ≤ %s '
               'per 1,000 payments, every typology caught in ≥ %s %% of its instances; %s marks a '
               'figure that misses its target.'
               % (TARGET_FALSE_POSITIVES, TARGET_REVIEW_LOAD, TARGET_CAUGHT, MISS.strip()))
    out.append('')
    typologies = ordered_typologies(runs)
    columns = ['seed', 'options', 'mode', 'payments scored', 'false positives %',
               'flagged per 1,000'] + typologies + ['targets met']
    rows = []
    for r in runs:
        options = r.options() + (' (primary)' if r.network == 0 else '')
        rows.append([r.meta['seed'], options,
                     MODE_NAMES[r.mode], str(r.payments),
                     show(r.false_positives, r.fp_missed()), show(r.review_load, r.load_missed())]
                    + [show(r.caught(t), r.caught_missed(t)) for t in typologies]
                    + ['yes' if r.targets_met() else 'no'])
    out.append(md_table(columns, rows))
    met = sum(r.targets_met() for r in runs)
    out.append('')
    out.append('Targets met in %d of %d replays.' % (met, len(runs)))
    return out


def demoted(text):
    """Markdown with every heading a level down."""
    return '\n'.join('#' + line if line.startswith('#') else line for line in text.split('\n'))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--summaries', required=True, help='one line of JSON per database (eval/summary.sql)')
    ap.add_argument('--header', required=True, help='eval/report.sql part=header')
    ap.add_argument('--config', required=True, help='eval/report.sql part=config')
    ap.add_argument('--details', action='append', default=[], metavar='MODE=FILE',
                    help='eval/report.sql part=details of the primary network in MODE')
    ap.add_argument('--seconds', default='', help='PRIMARY,NETWORKS: how long each part took')
    args = ap.parse_args()

    with open(args.summaries) as f:
        runs = [Run(json.loads(line)) for line in f if line.strip()]
    runs.sort(key=lambda r: (r.network, MODE_ORDER.index(r.mode)))
    primary = [r for r in runs if r.network == 0]
    if not primary:
        sys.exit('eval/tables.py: no summary of the primary network in ' + args.summaries)
    others = len({r.network for r in runs}) - 1

    with open(args.header) as f:
        out = [f.read().rstrip('\n'), '']
    seconds = args.seconds.split(',') if args.seconds else []
    timing = 'Replays of the primary network: ' + '; '.join(
        '%s, %s payments in %s s' % (MODE_NAMES[r.mode], r.meta['replayed'], r.meta['replay_seconds'])
        for r in primary) + '.'
    if len(seconds) == 2:
        timing += '  The primary network took %s s in all (generation, replays, reports)' % seconds[0]
        timing += (', the %d other networks %s s.' % (others, seconds[1]) if others
                   else '; no other network was replayed.')
    out += [timing, '']
    out += side_by_side(primary) + ['']
    if others:
        out += across_networks(runs) + ['']
    with open(args.config) as f:
        out.append(f.read().strip('\n'))
    for spec in args.details:
        mode, _, path = spec.partition('=')
        with open(path) as f:
            out += ['', '## Details: ' + MODE_NAMES.get(mode, mode), '', demoted(f.read().strip('\n'))]
    print('\n'.join(out))


if __name__ == '__main__':
    main()
