/*
 * config.c: the rule configuration cache.
 *
 * Every backend keeps the rules and thresholds it scores under in a static
 * struct, loaded through SPI the first time a payment needs it.  A change to
 * p2pay.rules or p2pay.settings fires a statement trigger that queues a
 * relcache invalidation for the changed table: at commit it reaches every
 * backend (which looks for it before every payment), and within the changing
 * transaction it is applied at the next command, so the next insert anywhere
 * scores under the new configuration and a rolled-back change is forgotten.  The cache holds no pointers, so
 * loading it allocates nothing that outlives the call.
 */
#include "postgres.h"

#include "p2pay.h"

#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

static P2payConfig config;
static bool config_valid = false;
static Oid	config_nspid = InvalidOid;
static Oid	rules_relid = InvalidOid;
static Oid	settings_relid = InvalidOid;

/* Forget the cache when the rule tables change, or on a full reset. */
static void
config_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == rules_relid || relid == settings_relid)
		config_valid = false;
}

/* Register the invalidation callback; called once from _PG_init. */
void
p2pay_config_register_callbacks(void)
{
	CacheRegisterRelcacheCallback(config_relcache_callback, (Datum) 0);
}

/* Read the rules and thresholds through SPI; the caller is connected. */
static void
load_config(Oid nspid)
{
	P2payConfig loaded;
	int			ret;

	memset(&loaded, 0, sizeof(loaded));

	ret = SPI_execute("SELECT name, enabled, weight, params FROM p2pay.rules", true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "p2pay: reading p2pay.rules failed: %s", SPI_result_code_string(ret));

	for (uint64 row = 0; row < SPI_processed; row++)
	{
		HeapTuple	tup = SPI_tuptable->vals[row];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *name = SPI_getvalue(tup, desc, 1);
		bool		isnull;
		int			rule = p2pay_rule_lookup(name);
		RuleConfig *rc;

		/* check_rule lets no unknown rule in; one restored around it is inert */
		if (rule < 0)
			continue;
		rc = &loaded.rules[rule];
		rc->enabled = DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull));
		rc->weight = DatumGetFloat8(SPI_getbinval(tup, desc, 3, &isnull));
		p2pay_parse_params(rule,
						   DatumGetJsonbP(SPI_getbinval(tup, desc, 4, &isnull)),
						   &rc->p);
	}

	ret = SPI_execute("SELECT review_threshold, decline_threshold FROM p2pay.settings",
					  true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "p2pay: reading p2pay.settings failed: %s", SPI_result_code_string(ret));
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("p2pay.settings must hold exactly one row"),
				 errdetail("It holds " UINT64_FORMAT " rows.", SPI_processed),
				 errhint("INSERT INTO p2pay.settings DEFAULT VALUES restores the default thresholds.")));
	else
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		bool		isnull;

		loaded.review_threshold =
			DatumGetFloat8(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
		loaded.decline_threshold =
			DatumGetFloat8(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
	}

	config = loaded;
	config_nspid = nspid;
	rules_relid = get_relname_relid("rules", nspid);
	settings_relid = get_relname_relid("settings", nspid);
	config_valid = true;
}

/*
 * The configuration to score under, loaded if it changed since the last
 * call.  nspid is the schema of p2pay's tables.  The caller is connected to
 * SPI.
 */
const P2payConfig *
p2pay_config(Oid nspid)
{
	/*
	 * A change committed elsewhere reaches a backend when it next takes a
	 * new lock; a long transaction that inserts payments may take none, so
	 * look for it here (cheap when there is none).
	 */
	AcceptInvalidationMessages();

	if (!config_valid || nspid != config_nspid)
		load_config(nspid);
	return &config;
}

/*
 * Trigger on p2pay.rules and p2pay.settings: a rule row must name a rule of
 * the catalogue, with a weight in [0, 1] and exactly the parameters the rule
 * takes; rules and the settings row can't be deleted.
 */
PG_FUNCTION_INFO_V1(p2pay_check_config);
Datum
p2pay_check_config(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	const char *table;
	HeapTuple	newtup;
	TupleDesc	desc;
	bool		isnull;
	char	   *name;
	int			rule;
	Datum		d;
	RuleParams	parsed;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event))
		elog(ERROR, "p2pay_check_config: not called as a BEFORE trigger");

	table = RelationGetRelationName(td->tg_relation);

	if (TRIGGER_FIRED_BY_DELETE(td->tg_event) || TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("rows of p2pay.%s cannot be deleted", table),
				 strcmp(table, "rules") == 0 ?
				 errhint("Set enabled = false to switch a rule off.") :
				 errhint("Update the row to change the thresholds.")));

	/* settings are checked by their CHECK constraints */
	if (strcmp(table, "rules") != 0)
		return PointerGetDatum(TRIGGER_FIRED_BY_UPDATE(td->tg_event) ?
							   td->tg_newtuple : td->tg_trigtuple);

	newtup = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
	desc = RelationGetDescr(td->tg_relation);

	name = SPI_getvalue(newtup, desc, SPI_fnumber(desc, "name"));
	rule = name ? p2pay_rule_lookup(name) : -1;
	if (rule < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown rule \"%s\"", name ? name : "(null)"),
				 errdetail("p2pay.rules holds one row for each rule of the catalogue."),
				 errhint("SELECT name FROM p2pay.rules lists them.")));

	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		char	   *oldname = SPI_getvalue(td->tg_trigtuple, desc, SPI_fnumber(desc, "name"));

		if (strcmp(oldname, name) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("rule \"%s\" cannot be renamed", oldname)));
	}

	d = SPI_getbinval(newtup, desc, SPI_fnumber(desc, "weight"), &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("weight of rule \"%s\" must not be null", name)));
	p2pay_check_weight(name, DatumGetFloat8(d));

	d = SPI_getbinval(newtup, desc, SPI_fnumber(desc, "params"), &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("params of rule \"%s\" must not be null", name)));
	p2pay_parse_params(rule, DatumGetJsonbP(d), &parsed);

	return PointerGetDatum(newtup);
}

/* Statement trigger: every session reloads the configuration before its next insert. */
PG_FUNCTION_INFO_V1(p2pay_config_changed);
Datum
p2pay_config_changed(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "p2pay_config_changed: not called as a trigger");

	CacheInvalidateRelcache(td->tg_relation);
	return PointerGetDatum(NULL);
}
