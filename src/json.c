/*
 * json.c: the JSON writer shared by everything in p2pay that emits JSON.
 *
 * Writes into the caller's StringInfo, allocating only there (and, for
 * arrays, in the current memory context, which callers reset per object).
 */
#include "postgres.h"

#include <math.h>

#include "json.h"

#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"

/* Start an object. */
void
json_begin(JsonWriter *w, StringInfo buf)
{
	w->buf = buf;
	w->first = true;
	appendStringInfoChar(buf, '{');
}

/* Close the object. */
void
json_end(JsonWriter *w)
{
	appendStringInfoChar(w->buf, '}');
}

/* Write a key and its colon, with the comma before it if needed. */
static void
json_key(JsonWriter *w, const char *key)
{
	if (!w->first)
		appendStringInfoChar(w->buf, ',');
	w->first = false;
	escape_json(w->buf, key);
	appendStringInfoChar(w->buf, ':');
}

void
json_null(JsonWriter *w, const char *key)
{
	json_key(w, key);
	appendStringInfoString(w->buf, "null");
}

/* A string value, escaped; NULL writes null. */
void
json_string(JsonWriter *w, const char *key, const char *value)
{
	json_key(w, key);
	if (value == NULL)
		appendStringInfoString(w->buf, "null");
	else
		escape_json(w->buf, value);
}

void
json_int64(JsonWriter *w, const char *key, int64 value)
{
	json_key(w, key);
	appendStringInfo(w->buf, INT64_FORMAT, value);
}

void
json_uint64(JsonWriter *w, const char *key, uint64 value)
{
	json_key(w, key);
	appendStringInfo(w->buf, UINT64_FORMAT, value);
}

/* A double in its shortest exact form; JSON has no NaN or infinities. */
void
json_double(JsonWriter *w, const char *key, double value)
{
	char		digits[DOUBLE_SHORTEST_DECIMAL_LEN];

	json_key(w, key);
	if (isnan(value) || isinf(value))
	{
		appendStringInfoString(w->buf, "null");
		return;
	}
	double_to_shortest_decimal_buf(value, digits);
	appendStringInfoString(w->buf, digits);
}

/* A time as "2026-11-26T03:00:00.123456Z": ISO 8601, UTC, microseconds. */
void
json_timestamp(JsonWriter *w, const char *key, TimestampTz value)
{
	struct pg_tm tm;
	fsec_t		fsec;

	json_key(w, key);
	if (TIMESTAMP_NOT_FINITE(value) ||
		timestamp2tm(value, NULL, &tm, &fsec, NULL, NULL) != 0)
	{
		appendStringInfoString(w->buf, TIMESTAMP_IS_NOBEGIN(value) ? "\"-infinity\"" :
							   TIMESTAMP_IS_NOEND(value) ? "\"infinity\"" : "null");
		return;
	}
	/* tm_year counts like ISO 8601: 0 is 1 BC, -1 is 2 BC */
	if (tm.tm_year >= 0)
		appendStringInfo(w->buf, "\"%04d", tm.tm_year);
	else
		appendStringInfo(w->buf, "\"-%04d", -tm.tm_year);
	appendStringInfo(w->buf, "-%02d-%02dT%02d:%02d:%02d.%06dZ\"",
					 tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
					 (int) fsec);
}

/* A WAL position as "0/16B3748". */
void
json_lsn(JsonWriter *w, const char *key, XLogRecPtr lsn)
{
	json_key(w, key);
	appendStringInfo(w->buf, "\"%X/%X\"", (uint32) (lsn >> 32), (uint32) lsn);
}

/* A text[] as an array of strings (NULL elements as null). */
void
json_text_array(JsonWriter *w, const char *key, Datum array)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	json_key(w, key);
	deconstruct_array(DatumGetArrayTypeP(array), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	appendStringInfoChar(w->buf, '[');
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(w->buf, ',');
		if (nulls[i])
			appendStringInfoString(w->buf, "null");
		else
			escape_json(w->buf, TextDatumGetCString(elems[i]));
	}
	appendStringInfoChar(w->buf, ']');
}
