/*
 * p2pay.h: what every p2pay C file shares: the settings (p2pay.c), the
 * decisions and the delete modes, the stream's messages, and p2pay's own
 * objects and working as their owner (catalog.c).
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
 * Each subsystem has its header: facts.h (the facts, their sources and
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

/*
 * catalog.c: p2pay's own objects, the layout the C relies on, and working
 * as their owner.
 */
typedef struct ColumnSpec
{
	const char *name;
	Oid			typid;			/* InvalidOid: p2pay's own type typname */
	const char *typname;
	bool		notnull;		/* read without a null test: must be NOT NULL */
} ColumnSpec;

/* A column of a built-in type; the same, NOT NULL; one of p2pay's own type */
#define COLUMN(name, typid) {name, typid, NULL, false}
#define COLUMN_NOT_NULL(name, typid) {name, typid, NULL, true}
#define OWN_TYPE_COLUMN(name, typname) {name, InvalidOid, typname, false}

typedef struct OwnerContext
{
	Oid			userid;
	int			sec_context;
	int			nestlevel;
} OwnerContext;

struct TriggerData;
struct RelationData;

extern Oid	p2pay_schema(void);
extern Oid	p2pay_schema_if_installed(void);
extern Oid	p2pay_relid(const char *name);
extern Oid	p2pay_typid(const char *name);
extern int	p2pay_errpaymentcol(const char *column);
extern int	p2pay_errpaymentref(const char *column, const char *reftable);
extern void p2pay_require_trigger_table(struct TriggerData *td, const char *fn,
										const char *const *tables);
extern AttrNumber p2pay_column(struct RelationData *rel, const ColumnSpec *spec);
extern void p2pay_check_columns(const char *table, const ColumnSpec *columns);
extern void p2pay_require_heap(struct RelationData *rel);
extern const char *p2pay_index_problem(struct RelationData *index, struct RelationData *heap,
									   const AttrNumber *attnums, int nkeys, bool unique);
extern void p2pay_check_index(struct RelationData *index, struct RelationData *heap,
							  const AttrNumber *attnums, int nkeys, bool unique);
extern void p2pay_begin_as_owner(Oid owner, OwnerContext *saved);
extern struct RelationData *p2pay_open_checked(Oid relid);
extern void p2pay_check_scanned_index(Oid indexid, struct RelationData *heap,
									  const AttrNumber *keys, int nkeys, bool unique);
struct _SPI_plan;
extern struct _SPI_plan *p2pay_prepare_kept(const char *sql, int nargs, Oid *argtypes);

/*
 * Operators as p2pay's SQL text writes them: resolved in pg_catalog
 * whatever search_path says (see catalog.c).
 */
#define SQL_EQ " OPERATOR(pg_catalog.=) "
#define SQL_NE " OPERATOR(pg_catalog.<>) "
#define SQL_LT " OPERATOR(pg_catalog.<) "
#define SQL_LE " OPERATOR(pg_catalog.<=) "
#define SQL_GT " OPERATOR(pg_catalog.>) "
#define SQL_GE " OPERATOR(pg_catalog.>=) "
#define SQL_PLUS " OPERATOR(pg_catalog.+) "
#define SQL_MINUS " OPERATOR(pg_catalog.-) "
extern void p2pay_end_as_owner(const OwnerContext *saved);

/*
 * A per-backend cache of what p2pay reads of its tables (refs.c, store.c):
 * valid until a relcache invalidation of one of its relations; one that
 * comes while it is being loaded leaves it stale, and the caller loads it
 * again once its locks are taken.
 */
typedef struct P2payCacheState
{
	bool		valid;
	bool		loading;
	bool		stale;			/* an invalidation came while loading */
} P2payCacheState;

extern bool p2pay_cache_concerned(P2payCacheState *cs, Oid relid);
extern void p2pay_cache_begin_load(P2payCacheState *cs);
extern void p2pay_cache_end_load(P2payCacheState *cs);

/* rules.c: a decision's label, as in the p2pay.decision enum */
extern const char *p2pay_decision_label(int decision);

#endif							/* P2PAY_H */
