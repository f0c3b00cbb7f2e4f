/*
 * refs.h: the lookup of a payment's references (refs.c): its currency,
 * users and method, and the facts concurrent payments can't change.
 */
#ifndef P2PAY_REFS_H
#define P2PAY_REFS_H

#include "facts.h"

extern void p2pay_lookup_references(Oid nspid, const PaymentInput *in, PaymentFacts *facts,
									MemoryContext result_cxt, int64 *version);

#endif							/* P2PAY_REFS_H */
