/*
 * conflict.h: payments inserted by INSERT ... ON CONFLICT (conflict.c).
 */
#ifndef P2PAY_CONFLICT_H
#define P2PAY_CONFLICT_H

#include "utils/rel.h"

typedef enum ConflictWatch
{
	CONFLICT_NONE,				/* no statement running can pass a row over */
	CONFLICT_KNOWN,				/* an INSERT ... ON CONFLICT is running */
	CONFLICT_UNKNOWN			/* p2pay was loaded during this transaction */
} ConflictWatch;

extern ConflictWatch p2pay_conflict_watch(void);
extern bool p2pay_payment_conflicts(Relation rel, HeapTuple tup, char **index_name);
extern void p2pay_conflict_verify(const int64 *ids, const bool *recorded, int n);
extern void p2pay_conflict_register_hooks(void);

#endif							/* P2PAY_CONFLICT_H */
