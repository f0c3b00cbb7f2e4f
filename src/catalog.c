/*
 * catalog.c: which objects are p2pay's own, what the C relies on them to
 * be, and running code as their owner without trusting the caller.
 *
 * p2pay's objects are found by OID from the extension's own schema (the
 * extnamespace of pg_extension's row), never by a name the caller's
 * search_path could resolve: a temporary table called payments is not
 * p2pay.payments, and a trigger function of p2pay's refuses to run on it.
 *
 * Layout: code that reads a column with DatumGetUUIDP, or scans an index
 * with uuid equality, crashes the backend if a DBA changed the column's
 * type or replaced the index.  Every such column and index is checked here
 * before it is used (and again after any DDL on its table, through each
 * caller's relcache invalidation): the column's type, NOT NULL where the
 * code reads it without a null test, an index's access method, key
 * columns, operator families and predicate.  A mismatch is an ERROR with a
 * SQLSTATE and a hint, never a crash.
 *
 * Owner context: the triggers, score() and backtest() read and write
 * p2pay's tables as the owner of p2pay.payments, as foreign-key checks do.
 * They do so as PostgreSQL's maintenance commands run code for a table's
 * owner: as a security-restricted operation, with search_path set to
 * pg_catalog, pg_temp in a GUC nest level of their own, so that nothing the
 * caller created (a type, domain, operator, function or cast in pg_temp or
 * in a schema first on its path) is resolved by p2pay's SQL.  The SQL text
 * names everything with its schema as well.
 *
 * Error fields: an error about a column of a payment names p2pay.payments
 * and the column in the error report's fields, whichever relation the
 * trigger fired on, so that an application finds the field without reading
 * the message.
 */
#include "postgres.h"

#include "p2pay.h"
#include "catalog.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/index.h"
#include "catalog/indexing.h"
#include "catalog/pg_am.h"
#include "catalog/partition.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_opclass.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

/* The extension's schema, or InvalidOid until looked up (again). */
static Oid	schema_oid = InvalidOid;
static bool schema_callback_registered = false;

/* Any change of a schema may be the extension's being dropped: look again. */
static void
schema_invalidate(Datum arg, int cacheid, uint32 hashvalue)
{
	schema_oid = InvalidOid;
}

/*
 * The schema of extension p2pay in this database, or InvalidOid when it is
 * not installed.
 */
Oid
p2pay_schema_if_installed(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			nspid = InvalidOid;

	if (OidIsValid(schema_oid))
		return schema_oid;
	if (!schema_callback_registered)
	{
		CacheRegisterSyscacheCallback(NAMESPACEOID, schema_invalidate, (Datum) 0);
		schema_callback_registered = true;
	}

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("p2pay"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		nspid = ((Form_pg_extension) GETSTRUCT(tup))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	schema_oid = nspid;
	return nspid;
}

/* The schema of extension p2pay in this database, or an error. */
Oid
p2pay_schema(void)
{
	Oid			nspid = p2pay_schema_if_installed();

	if (!OidIsValid(nspid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension p2pay is not installed in this database"),
				 errhint("CREATE EXTENSION p2pay installs it.")));
	return nspid;
}

/* The relation called name in p2pay's schema, or an error. */
Oid
p2pay_relid(const char *name)
{
	Oid			nspid = p2pay_schema();
	Oid			relid = get_relname_relid(name, nspid);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s.%s\" does not exist", get_namespace_name(nspid), name),
				 errhint("It belongs to the p2pay extension, which expects its objects as it created them.")));
	return relid;
}

/*
 * The fields of an error report that name the column of a payment that is
 * wrong (schema, table and column, as PostgreSQL's own not-null error
 * fills them), for use in ereport() as errtablecol() is.  They name
 * p2pay.payments, the table an application writes, whichever relation the
 * trigger fired on, and need no relation at all: score() reports its
 * arguments as the columns of the payment they stand for.
 */
int
p2pay_errpaymentcol(const char *column)
{
	err_generic_string(PG_DIAG_SCHEMA_NAME, get_namespace_name(p2pay_schema()));
	err_generic_string(PG_DIAG_TABLE_NAME, "payments");
	err_generic_string(PG_DIAG_COLUMN_NAME, column);
	return 0;					/* the value does not matter */
}

/*
 * The name of the foreign key of p2pay.payments that makes column reference
 * p2pay's table reftable, or NULL if there is none (a DBA dropped it).  Read
 * from pg_constraint, so that a renamed constraint is named as it is now.
 */
static char *
payment_foreign_key(const char *column, const char *reftable)
{
	Oid			nspid = p2pay_schema();
	Oid			relid = get_relname_relid("payments", nspid);
	Oid			refid = get_relname_relid(reftable, nspid);
	AttrNumber	attnum;
	Relation	conrel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	char	   *name = NULL;

	if (!OidIsValid(relid) || !OidIsValid(refid))
		return NULL;
	attnum = get_attnum(relid, column);
	if (attnum == InvalidAttrNumber)
		return NULL;

	conrel = table_open(ConstraintRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_constraint_conrelid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	scan = systable_beginscan(conrel, ConstraintRelidTypidNameIndexId, true, NULL, 1, &key);
	while (name == NULL && HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_constraint con = (Form_pg_constraint) GETSTRUCT(tup);
		bool		isnull;
		Datum		conkey;
		Datum	   *keys;
		bool	   *keynulls;
		int			nkeys;

		if (con->contype != CONSTRAINT_FOREIGN || con->confrelid != refid)
			continue;
		conkey = heap_getattr(tup, Anum_pg_constraint_conkey, RelationGetDescr(conrel), &isnull);
		if (isnull)
			continue;
		deconstruct_array(DatumGetArrayTypeP(conkey), INT2OID, sizeof(int16), true,
						  TYPALIGN_SHORT, &keys, &keynulls, &nkeys);
		if (nkeys == 1 && !keynulls[0] && DatumGetInt16(keys[0]) == attnum)
			name = pstrdup(NameStr(con->conname));
	}
	systable_endscan(scan);
	table_close(conrel, AccessShareLock);
	return name;
}

/*
 * p2pay_errpaymentcol's fields for a column whose value p2pay found missing
 * from the table it references, with the name of the payments foreign key
 * on that column, as PostgreSQL's foreign-key violation names it: p2pay
 * checks the reference before the constraint would, and an application
 * that maps constraint names to its own errors sees the same one.
 */
int
p2pay_errpaymentref(const char *column, const char *reftable)
{
	char	   *constraint = payment_foreign_key(column, reftable);

	p2pay_errpaymentcol(column);
	if (constraint != NULL)
		err_generic_string(PG_DIAG_CONSTRAINT_NAME, constraint);
	return 0;
}

/* The type called name in p2pay's schema (decision, rule_mode), or InvalidOid. */
Oid
p2pay_typid(const char *name)
{
	return GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid, CStringGetDatum(name),
						   ObjectIdGetDatum(p2pay_schema()));
}

/*
 * Refuse to run trigger function fn on any table but p2pay's tables named
 * in tables (NULL-terminated), or partitions of them, compared by OID.
 */
void
p2pay_require_trigger_table(TriggerData *td, const char *fn, const char *const *tables)
{
	Oid			relid = RelationGetRelid(td->tg_relation);
	Oid			nspid = p2pay_schema();
	StringInfoData names;

	for (int i = 0; tables[i] != NULL; i++)
		if (get_relname_relid(tables[i], nspid) == relid)
			return;

	/* a partition of one of them, at any depth */
	if (td->tg_relation->rd_rel->relispartition)
	{
		List	   *ancestors = get_partition_ancestors(relid);
		ListCell   *lc;

		foreach(lc, ancestors)
			for (int i = 0; tables[i] != NULL; i++)
				if (get_relname_relid(tables[i], nspid) == lfirst_oid(lc))
					return;
	}

	initStringInfo(&names);
	for (int i = 0; tables[i] != NULL; i++)
		appendStringInfo(&names, "%sp2pay.%s", i == 0 ? "" : tables[i + 1] ? ", " : " or ",
						 tables[i]);
	ereport(ERROR,
			(errcode(ERRCODE_WRONG_OBJECT_TYPE),
			 errmsg("trigger function p2pay.%s() can only run on %s", fn, names.data),
			 errdetail("It was fired on \"%s\".",
					   p2pay_echo(RelationGetRelationName(td->tg_relation))),
			 errhint("p2pay's trigger functions keep p2pay's own tables; drop this trigger.")));
}

/* The name of a column's type as SQL writes it, for messages. */
static char *
type_name(Oid typid, int32 typmod)
{
	return format_type_with_typemod(typid, typmod);
}

/*
 * The attribute number of column spec in rel, after checking its type (and
 * that it is NOT NULL, if the code relies on it); an error otherwise.
 */
AttrNumber
p2pay_column(Relation rel, const ColumnSpec *spec)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Oid			want = OidIsValid(spec->typid) ? spec->typid : p2pay_typid(spec->typname);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || strcmp(NameStr(att->attname), spec->name) != 0)
			continue;
		if (att->atttypid != want)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column %s of p2pay.%s has type %s, not %s", spec->name,
							RelationGetRelationName(rel), type_name(att->atttypid, att->atttypmod),
							OidIsValid(want) ? type_name(want, -1) : spec->typname),
					 errdetail("p2pay reads this column directly, as the extension created it."),
					 errhint("Change the column back to its type, or restore the table from p2pay's script.")));
		if (spec->notnull && !att->attnotnull)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("column %s of p2pay.%s must be NOT NULL", spec->name,
							RelationGetRelationName(rel)),
					 errdetail("p2pay reads this column directly and relies on its NOT NULL constraint."),
					 errhint("ALTER TABLE p2pay.%s ALTER COLUMN %s SET NOT NULL restores it.",
							 RelationGetRelationName(rel), spec->name)));
		return att->attnum;
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("p2pay.%s has no column \"%s\"", RelationGetRelationName(rel), spec->name),
			 errhint("p2pay expects its tables as the extension created them.")));
	return InvalidAttrNumber;	/* keep the compiler quiet */
}

/*
 * Check the columns (a list ending with a NULL name) of p2pay's table
 * called table, which code reads through SPI as those types.  The lock
 * taken is kept to the end of the transaction, so that no DDL changes the
 * table between the check and the reading.
 */
void
p2pay_check_columns(const char *table, const ColumnSpec *columns)
{
	Relation	rel = table_open(p2pay_relid(table), AccessShareLock);

	for (const ColumnSpec *c = columns; c->name != NULL; c++)
		(void) p2pay_column(rel, c);
	table_close(rel, NoLock);
}

/* Refuse a table p2pay reads or writes directly unless it is a plain heap table. */
void
p2pay_require_heap(Relation rel)
{
	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relam != HEAP_TABLE_AM_OID)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("p2pay.%s must be an ordinary heap table", RelationGetRelationName(rel)),
				 errdetail("p2pay reads and writes it directly through its heap and indexes; a partitioned, foreign or other kind of table is not supported."),
				 errhint("Restore the table as p2pay's script creates it.")));
}

/*
 * What keeps an index from serving p2pay's scans with the default B-tree
 * operators of its key columns, or NULL if nothing does: it must be a
 * valid B-tree index on heap whose first keys are the columns named
 * (attnums), ascending, in their columns' collations, without a predicate;
 * unique if asked.
 */
const char *
p2pay_index_problem(Relation index, Relation heap, const AttrNumber *attnums, int nkeys,
					bool unique)
{
	Form_pg_index ind = index->rd_index;

	if (index->rd_rel->relkind != RELKIND_INDEX || ind == NULL)
		return "It is not a plain index.";
	if (ind->indrelid != RelationGetRelid(heap))
		return "It belongs to another table.";
	if (index->rd_rel->relam != BTREE_AM_OID)
		return "It is not a B-tree index.";
	if (!ind->indisvalid || !ind->indisready || !ind->indislive)
		return "It is not valid (a failed or unfinished CREATE INDEX CONCURRENTLY or REINDEX).";
	if (unique && !ind->indisunique)
		return "It is not unique.";
	if (!heap_attisnull(index->rd_indextuple, Anum_pg_index_indpred, NULL))
		return "It has a predicate.";
	if (ind->indnkeyatts < nkeys)
		return "It has fewer key columns than p2pay scans.";
	for (int i = 0; i < nkeys; i++)
	{
		Form_pg_attribute att;
		Oid			opclass;

		if (ind->indkey.values[i] != attnums[i])
			return "Its key columns are not the ones p2pay scans.";
		att = TupleDescAttr(RelationGetDescr(heap), attnums[i] - 1);
		if (index->rd_indoption[i] != 0)
			return "Its key columns are not in ascending order with nulls last.";
		if (index->rd_indcollation[i] != att->attcollation)
			return "Its collation is not its column's.";
		opclass = GetDefaultOpClass(att->atttypid, BTREE_AM_OID);
		if (!OidIsValid(opclass) || get_opclass_family(opclass) != index->rd_opfamily[i])
			return "Its operator class is not the default one of its column's type.";
	}
	return NULL;
}

/* Refuse an index p2pay scans unless p2pay_index_problem finds nothing. */
void
p2pay_check_index(Relation index, Relation heap, const AttrNumber *attnums, int nkeys,
				  bool unique)
{
	const char *problem = p2pay_index_problem(index, heap, attnums, nkeys, unique);

	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("index %s of p2pay.%s is not as p2pay created it",
						RelationGetRelationName(index), RelationGetRelationName(heap)),
				 errdetail("%s", problem),
				 errhint("p2pay scans this index directly; drop it and create it again as p2pay's script does.")));
}

/*
 * Work as owner: a security-restricted operation with search_path pinned
 * to pg_catalog, pg_temp, until p2pay_end_as_owner.  An error in between
 * needs nothing undone by the caller: aborting the (sub)transaction
 * restores the user and the settings.
 */
void
p2pay_begin_as_owner(Oid owner, OwnerContext *saved)
{
	GetUserIdAndSecContext(&saved->userid, &saved->sec_context);
	SetUserIdAndSecContext(owner,
						   saved->sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION | SECURITY_NOFORCE_RLS);
	saved->nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
}

/* Back to the caller's identity and settings. */
void
p2pay_end_as_owner(const OwnerContext *saved)
{
	AtEOXact_GUC(false, saved->nestlevel);
	SetUserIdAndSecContext(saved->userid, saved->sec_context);
}

/* Open a table p2pay reads directly, checking that it is a heap table. */
Relation
p2pay_open_checked(Oid relid)
{
	Relation	rel = table_open(relid, AccessShareLock);

	p2pay_require_heap(rel);
	return rel;
}

/* Check an index that a lookup or a count scans (see p2pay_check_index). */
void
p2pay_check_scanned_index(Oid indexid, Relation heap, const AttrNumber *keys, int nkeys,
						  bool unique)
{
	Relation	index = index_open(indexid, AccessShareLock);

	p2pay_check_index(index, heap, keys, nkeys, unique);
	index_close(index, AccessShareLock);
}

/* Prepare a statement once for the life of the backend. */
SPIPlanPtr
p2pay_prepare_kept(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan;

	/* a generic plan from the start: the shape never depends on the values */
	plan = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "p2pay: SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "p2pay: SPI_keepplan failed");
	return plan;
}

/*
 * Whether an invalidation of relid (InvalidOid: of every relation) can
 * concern a valid cache: the caller then compares relid with its
 * relations.  One that comes while the cache is loading leaves it stale.
 */
bool
p2pay_cache_concerned(P2payCacheState *cs, Oid relid)
{
	if (cs->loading)
	{
		cs->stale = true;
		return false;
	}
	if (!cs->valid)
		return false;
	if (!OidIsValid(relid))
	{
		cs->valid = false;
		return false;
	}
	return true;
}

/* Start loading a cache: invalid until loaded whole. */
void
p2pay_cache_begin_load(P2payCacheState *cs)
{
	cs->valid = false;
	cs->loading = true;
	cs->stale = false;
}

/* A cache loaded whole: valid unless an invalidation came meanwhile. */
void
p2pay_cache_end_load(P2payCacheState *cs)
{
	Assert(cs->loading);
	cs->loading = false;
	cs->valid = !cs->stale;
}
