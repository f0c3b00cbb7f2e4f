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
#include "catalog.h"
#include "rules.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
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
static Oid	ruleset_relid = InvalidOid;

static const char *const mode_names[] = {"off", "shadow", "active"};

/* Forget the cache when the rule tables change, or on a full reset. */
static void
config_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == rules_relid || relid == settings_relid ||
		relid == ruleset_relid)
		config_valid = false;
}

/* Forget the cached configuration: the next payment loads it again. */
void
p2pay_config_forget(void)
{
	config_valid = false;
}

/* The mode called name, or an error. */
RuleMode
p2pay_rule_mode_from_name(const char *mode)
{
	for (int i = 0; i < (int) lengthof(mode_names); i++)
		if (strcmp(mode, mode_names[i]) == 0)
			return (RuleMode) i;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown rule mode \"%s\"", p2pay_echo(mode)),
			 errhint("A rule is active, shadow or off.")));
	return RULE_OFF;			/* keep the compiler quiet */
}

/* The name of a mode, as in the p2pay.rule_mode enum. */
const char *
p2pay_rule_mode_name(RuleMode mode)
{
	return mode_names[mode];
}

/* Register the invalidation callback; called once from _PG_init. */
void
p2pay_config_register_callbacks(void)
{
	CacheRegisterRelcacheCallback(config_relcache_callback, (Datum) 0);
}

/*
 * A column of a configuration row read through SPI, which must not be null.
 * The statements cast every column to the type the code reads it as, so a
 * column whose type a DBA changed is converted or refused by the cast.
 */
static Datum
config_value(HeapTuple tup, TupleDesc desc, int col, const char *table, const char *column)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("column %s of p2pay.%s must not be null", column, table),
				 errhint("Restore the column's NOT NULL constraint and value.")));
	return d;
}

/* The columns of the rule tables, of the types the code reads them as. */
static const ColumnSpec rule_columns[] = {
	COLUMN_NOT_NULL("name", TEXTOID),
	{"mode", InvalidOid, "rule_mode", true},
	COLUMN_NOT_NULL("enabled", BOOLOID),
	COLUMN("weight", FLOAT8OID),
	COLUMN("params", JSONBOID),
	{NULL}
};
static const ColumnSpec settings_columns[] = {
	COLUMN("review_threshold", FLOAT8OID),
	COLUMN("decline_threshold", FLOAT8OID),
	{NULL}
};
static const ColumnSpec ruleset_columns[] = {COLUMN("version", INT8OID), {NULL}};

/* Read the rules and thresholds through SPI; the caller is connected, as the owner. */
static void
load_config(Oid nspid)
{
	P2payConfig loaded;
	int			ret;

	memset(&loaded, 0, sizeof(loaded));
	/* of the types read: a weight of type real would score with float4 weights */
	p2pay_check_columns("rules", rule_columns);
	p2pay_check_columns("settings", settings_columns);
	p2pay_check_columns("ruleset", ruleset_columns);

	ret = SPI_execute("SELECT r.name::pg_catalog.text, r.mode::pg_catalog.text,"
					  " r.weight::pg_catalog.float8, r.params::pg_catalog.jsonb"
					  " FROM p2pay.rules r", true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "p2pay: reading p2pay.rules failed: %s", SPI_result_code_string(ret));

	for (uint64 row = 0; row < SPI_processed; row++)
	{
		HeapTuple	tup = SPI_tuptable->vals[row];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		int			rule = p2pay_rule_lookup(TextDatumGetCString(config_value(tup, desc, 1, "rules",
																			  "name")));
		RuleConfig *rc;

		/* check_rule lets no unknown rule in; one restored around it is inert */
		if (rule < 0)
			continue;
		rc = &loaded.rules[rule];
		rc->mode = p2pay_rule_mode_from_name(TextDatumGetCString(config_value(tup, desc, 2,
																			  "rules", "mode")));
		rc->weight = DatumGetFloat8(config_value(tup, desc, 3, "rules", "weight"));
		p2pay_check_weight(p2pay_rule_name(rule), rc->weight);
		p2pay_parse_params(rule, DatumGetJsonbP(config_value(tup, desc, 4, "rules", "params")),
						   &rc->p, false);
	}

	ret = SPI_execute("SELECT s.review_threshold::pg_catalog.float8,"
					  " s.decline_threshold::pg_catalog.float8 FROM p2pay.settings s",
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
		TupleDesc	desc = SPI_tuptable->tupdesc;

		loaded.review_threshold =
			DatumGetFloat8(config_value(tup, desc, 1, "settings", "review_threshold"));
		loaded.decline_threshold =
			DatumGetFloat8(config_value(tup, desc, 2, "settings", "decline_threshold"));
	}

	ret = SPI_execute("SELECT r.version::pg_catalog.int8 FROM p2pay.ruleset r", true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "p2pay: reading p2pay.ruleset failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		loaded.version = isnull ? 0 : DatumGetInt64(d);
	}

	config = loaded;
	config_nspid = nspid;
	rules_relid = get_relname_relid("rules", nspid);
	settings_relid = get_relname_relid("settings", nspid);
	ruleset_relid = get_relname_relid("ruleset", nspid);
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
 * Keep a rule row's enabled and mode in step: enabled is mode = 'active'.
 * A write that changes one of them sets the other; one that changes both
 * must change them to agree.
 */
static HeapTuple
keep_mode_and_enabled(TriggerData *td, HeapTuple newtup, TupleDesc desc, const char *name,
					  int mode_att, int enabled_att)
{
	char	   *mode_text = SPI_getvalue(newtup, desc, mode_att);
	bool		isnull;
	Datum		d = SPI_getbinval(newtup, desc, enabled_att, &isnull);
	bool		enabled = !isnull && DatumGetBool(d);
	RuleMode	mode;
	bool		mode_changed = true;
	bool		enabled_changed = true;

	if (mode_text == NULL || isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("mode and enabled of rule \"%s\" must not be null", name)));
	mode_text = p2pay_echo(mode_text);
	mode = p2pay_rule_mode_from_name(mode_text);

	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		mode_changed = strcmp(mode_text, SPI_getvalue(td->tg_trigtuple, desc, mode_att)) != 0;
		enabled_changed =
			DatumGetBool(SPI_getbinval(td->tg_trigtuple, desc, enabled_att, &isnull)) != enabled;
	}
	else
	{
		/* an insert names one of them at most; the default of the other gives way */
		mode_changed = mode != RULE_ACTIVE;
		enabled_changed = !enabled;
	}

	if (enabled == (mode == RULE_ACTIVE))
		return newtup;
	if (mode_changed && enabled_changed)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rule \"%s\" can't be %s with enabled = %s", name, mode_text,
						enabled ? "true" : "false"),
				 errdetail("enabled is true exactly when the mode is active."),
				 errhint("Set the mode alone: active, shadow or off.")));

	if (mode_changed)
	{
		Datum		value = BoolGetDatum(mode == RULE_ACTIVE);
		bool		null = false;

		return heap_modify_tuple_by_cols(newtup, desc, 1, &enabled_att, &value, &null);
	}
	else
	{
		Datum		value = DirectFunctionCall2(enum_in,
												CStringGetDatum(enabled ? "active" : "off"),
												ObjectIdGetDatum(TupleDescAttr(desc, mode_att - 1)->atttypid));
		bool		null = false;

		return heap_modify_tuple_by_cols(newtup, desc, 1, &mode_att, &value, &null);
	}
}

/* An error about the rules JSON given to backtest() or a similar caller. */
static void
bad_rules_json(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("rules must be a JSON array of rule rows: %s", what),
			 errhint("Each element is an object such as {\"name\": \"amount_limit\", \"mode\": \"active\", \"weight\": 0.5, \"params\": {\"max_amount\": 5000}}; fields left out keep their current values.")));
}

/*
 * Apply rule rows given as JSON on top of cfg: an array of objects with
 * name and any of mode (or enabled), weight and params (any of the rule's
 * parameters).  Everything is checked as a rule row is.
 */
void
p2pay_config_apply_json(P2payConfig *cfg, Jsonb *rules)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (!JB_ROOT_IS_ARRAY(rules) || JB_ROOT_IS_SCALAR(rules))
		bad_rules_json("the value is not an array");

	it = JsonbIteratorInit(&rules->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		JsonbContainer *obj;
		JsonbValue *field;
		JsonbIterator *keys;
		JsonbValue	k;
		JsonbIteratorToken ktok;
		char	   *name;
		int			rule;
		RuleConfig *rc;

		if (tok != WJB_ELEM)
			continue;
		if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
			bad_rules_json("an element is not an object");
		obj = v.val.binary.data;

		field = getKeyJsonValueFromContainer(obj, "name", 4, NULL);
		if (field == NULL || field->type != jbvString)
			bad_rules_json("an element has no name");
		name = pnstrdup(field->val.string.val, field->val.string.len);
		rule = p2pay_rule_lookup(name);
		if (rule < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown rule \"%s\"", p2pay_echo(name)),
					 errhint("SELECT name FROM p2pay.rules lists them.")));
		rc = &cfg->rules[rule];

		keys = JsonbIteratorInit(obj);
		while ((ktok = JsonbIteratorNext(&keys, &k, true)) != WJB_DONE)
		{
			char	   *key;

			if (ktok != WJB_KEY)
				continue;
			key = pnstrdup(k.val.string.val, k.val.string.len);
			ktok = JsonbIteratorNext(&keys, &k, true);	/* its value */

			if (strcmp(key, "name") == 0 || strcmp(key, "description") == 0)
				continue;
			else if (strcmp(key, "mode") == 0 && k.type == jbvString)
				rc->mode = p2pay_rule_mode_from_name(pnstrdup(k.val.string.val, k.val.string.len));
			else if (strcmp(key, "enabled") == 0 && k.type == jbvBool)
				rc->mode = k.val.boolean ? RULE_ACTIVE : RULE_OFF;
			else if (strcmp(key, "weight") == 0 && k.type == jbvNumeric)
			{
				rc->weight = DatumGetFloat8(DirectFunctionCall1(numeric_float8,
																NumericGetDatum(k.val.numeric)));
				p2pay_check_weight(name, rc->weight);
			}
			else if (strcmp(key, "params") == 0 && k.type == jbvBinary)
			{
				JsonbValue	wrapped = k;

				p2pay_parse_params(rule, JsonbValueToJsonb(&wrapped), &rc->p, true);
			}
			else
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("rule row \"%s\" has a bad field \"%s\"", name, p2pay_echo(key)),
						 errdetail("A rule row has name, mode (active, shadow or off) or enabled (a boolean), weight (a number) and params (an object).")));
		}
	}
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
	static const char *const tables[] = {"rules", "settings", NULL};
	TriggerData *td = (TriggerData *) fcinfo->context;
	bool		is_rules;
	HeapTuple	newtup;
	TupleDesc	desc;
	bool		isnull;
	AttrNumber	atts[lengthof(rule_columns) - 1];
	char	   *name;
	int			rule;
	Datum		d;
	RuleParams	parsed;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("p2pay.check_config() must be fired BEFORE a change")));
	p2pay_require_trigger_table(td, "check_config", tables);
	is_rules = RelationGetRelid(td->tg_relation) == p2pay_relid("rules");

	if (TRIGGER_FIRED_BY_DELETE(td->tg_event) || TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("rows of p2pay.%s cannot be deleted", is_rules ? "rules" : "settings"),
				 is_rules ?
				 errhint("Set mode = 'off' to switch a rule off.") :
				 errhint("Update the row to change the thresholds.")));

	/* settings are checked by their CHECK constraints */
	if (!is_rules || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		return PointerGetDatum(TRIGGER_FIRED_BY_UPDATE(td->tg_event) ?
							   td->tg_newtuple : td->tg_trigtuple);

	newtup = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
	desc = RelationGetDescr(td->tg_relation);
	for (int i = 0; i < (int) lengthof(atts); i++)
		atts[i] = p2pay_column(td->tg_relation, &rule_columns[i]);

	name = SPI_getvalue(newtup, desc, atts[0]);
	rule = name ? p2pay_rule_lookup(name) : -1;
	name = p2pay_echo(name);
	if (rule < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown rule \"%s\"", name),
				 errdetail("p2pay.rules holds one row for each rule of the catalogue."),
				 errhint("SELECT name FROM p2pay.rules lists them.")));

	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		char	   *oldname = SPI_getvalue(td->tg_trigtuple, desc, atts[0]);

		if (oldname == NULL || strcmp(oldname, p2pay_rule_name(rule)) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("rule \"%s\" cannot be renamed", p2pay_echo(oldname))));
	}

	newtup = keep_mode_and_enabled(td, newtup, desc, name, atts[1], atts[2]);

	d = heap_getattr(newtup, atts[3], desc, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("weight of rule \"%s\" must not be null", name)));
	p2pay_check_weight(name, DatumGetFloat8(d));

	d = heap_getattr(newtup, atts[4], desc, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("params of rule \"%s\" must not be null", name)));
	p2pay_parse_params(rule, DatumGetJsonbP(d), &parsed, false);

	return PointerGetDatum(newtup);
}

/*
 * AFTER trigger, for each statement or each row: every session reloads the
 * configuration (rules, settings, ruleset) or the rows of the small
 * reference tables it keeps (refs.c) before its next insert.
 */
PG_FUNCTION_INFO_V1(p2pay_config_changed);
Datum
p2pay_config_changed(PG_FUNCTION_ARGS)
{
	static const char *const tables[] = {"rules", "settings", "ruleset", "currencies",
	"payment_methods", "blocklist", "allowlist", "snoozes", NULL};
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("p2pay.config_changed() must be fired as a trigger")));
	if (!TRIGGER_FIRED_AFTER(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("p2pay.config_changed() must be fired AFTER"),
				 errdetail("Fired BEFORE a row, it would skip the row.")));
	p2pay_require_trigger_table(td, "config_changed", tables);

	CacheInvalidateRelcache(td->tg_relation);
	return PointerGetDatum(NULL);
}
