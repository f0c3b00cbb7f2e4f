/*
 * p2pay.h: what every p2pay C file shares: the settings (p2pay.c), the
 * decisions and the delete modes, the stream's messages.
 *
 * A payment flows through the trigger (trigger.c) in four steps: its input
 * is validated and its references looked up (refs.c), the payer's and
 * payee's accounts are locked (locks.c), the facts the rules need are
 * assembled (facts.c) from the per-account state (store.c; the money flow
 * of large payments in SQL, moneyflow.c) and the payment is recorded
 * there, and the rules (rules.c) turn the facts into a score and a
 * decision under the cached configuration (config.c); the trigger counts
 * the statistics (stats.c).  The backtest (backtest.c) assembles the same
 * facts from a replay of stored payments.  The output plugin (output.c)
 * streams the flagged payments.
 *
 * Each subsystem has its header: catalog.h (p2pay's own objects, their
 * layout, working as their owner), facts.h (the facts, their sources and
 * bounds), rules.h (the catalogue and the configuration), store.h,
 * refs.h, locks.h, moneyflow.h, stats.h, trigger.h, timeutil.h (UTC hours
 * and days), json.h, compat.h (PostgreSQL versions).
 */
#ifndef P2PAY_H
#define P2PAY_H

#include "postgres.h"

#include "access/attnum.h"
#include "access/xact.h"
#include "datatype/timestamp.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/uuid.h"

/* A payment's decision, as the p2pay.decision enum orders it (rules.c) */
#define DECISION_APPROVE	0
#define DECISION_REVIEW		1
#define DECISION_DECLINE	2

/*
 * What deleting a payment means (p2pay.delete_mode): a reversal, which
 * takes it out of the per-account state and is a deleted event on the
 * stream, or archiving, which keeps it in the state and is no event.
 */
#define DELETE_MODE_REVERSE 0
#define DELETE_MODE_ARCHIVE 1

/*
 * The transactional logical decoding messages the delete triggers write
 * (trigger.c) and the stream reads (output.c): the payment deletes that
 * follow an archive mark in its transaction, up to a reverse mark, are
 * archived.
 */
#define P2PAY_MESSAGE_PREFIX "p2pay"
#define P2PAY_MESSAGE_ARCHIVE "archive"
#define P2PAY_MESSAGE_REVERSE "reverse"

/* common.c: how messages quote input, which events end a transaction */
#define P2PAY_ECHO_MAX 64
extern char *p2pay_echo(const char *value);
extern bool p2pay_xact_ends(XactEvent event);

/* rules.c: a decision's label, as in the p2pay.decision enum */
extern const char *p2pay_decision_label(int decision);

#endif							/* P2PAY_H */
