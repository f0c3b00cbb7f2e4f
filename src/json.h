/*
 * json.h: the JSON writer shared by everything in p2pay that emits JSON.
 *
 * A JsonWriter appends one object to a StringInfo, on one line, with keys in
 * the order they are written.  Strings are escaped; timestamps are ISO 8601
 * in UTC with microseconds, whatever the session's DateStyle and TimeZone;
 * money stays a string with its scale; doubles are written in their
 * shortest exact form.
 */
#ifndef P2PAY_JSON_H
#define P2PAY_JSON_H

#include "postgres.h"

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "lib/stringinfo.h"

typedef struct JsonWriter
{
	StringInfo	buf;
	bool		first;
} JsonWriter;

extern void json_begin(JsonWriter *w, StringInfo buf);
extern void json_end(JsonWriter *w);
extern void json_null(JsonWriter *w, const char *key);
extern void json_string(JsonWriter *w, const char *key, const char *value);
extern void json_int64(JsonWriter *w, const char *key, int64 value);
extern void json_uint64(JsonWriter *w, const char *key, uint64 value);
extern void json_double(JsonWriter *w, const char *key, double value);
extern void json_timestamp(JsonWriter *w, const char *key, TimestampTz value);
extern void json_lsn(JsonWriter *w, const char *key, XLogRecPtr lsn);
extern void json_text_array(JsonWriter *w, const char *key, Datum array);

#endif							/* P2PAY_JSON_H */
