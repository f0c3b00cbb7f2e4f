/*
 * catalog.h: p2pay's own objects, found by OID from the extension's schema;
 * the layout the C relies on in them, checked before use; working as their
 * owner; the operators of p2pay's SQL text, statements kept for the
 * backend, and the validity of the per-backend caches of its tables
 * (catalog.c).
 */
#ifndef P2PAY_CATALOG_H
#define P2PAY_CATALOG_H

#include "postgres.h"

#include "access/attnum.h"

/*
 * A column the C reads directly: its name, its type, and whether it is
 * read without a null test (then it must be NOT NULL).
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

/* What p2pay_begin_as_owner() saved, for p2pay_end_as_owner() to restore */
typedef struct OwnerContext
{
	Oid			userid;
	int			sec_context;
	int			nestlevel;
} OwnerContext;

struct TriggerData;
struct RelationData;
struct _SPI_plan;

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
extern void p2pay_end_as_owner(const OwnerContext *saved);
extern struct RelationData *p2pay_open_checked(Oid relid);
extern void p2pay_check_scanned_index(Oid indexid, struct RelationData *heap,
									  const AttrNumber *keys, int nkeys, bool unique);
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

#endif							/* P2PAY_CATALOG_H */
