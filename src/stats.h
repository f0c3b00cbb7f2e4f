/*
 * stats.h: per-rule statistics in shared memory (stats.c), counted by the
 * trigger (trigger.c) for each insert it scores; slot STATS_FACTS counts
 * the reading of the facts that all rules share.
 */
#ifndef P2PAY_STATS_H
#define P2PAY_STATS_H

#include "rules.h"

#define STATS_FACTS RULE_COUNT

extern int	p2pay_stats_databases;
extern void p2pay_stats_count(int slot, bool fired, int64 nanoseconds);
extern void p2pay_stats_count_decision(int decision);
extern bool p2pay_stats_enabled(void);
extern void p2pay_stats_init(void);

#endif							/* P2PAY_STATS_H */
