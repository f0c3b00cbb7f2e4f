/*
 * p2pay-http.c: p2pay's HTTP front door.  A request authenticates with HTTP
 * Basic; the credentials are a PostgreSQL role's, checked by the server as
 * any login is, and the request runs under that role, so the database
 * decides who may do what, as it does for SQL.  The C is thin: each
 * endpoint is one fixed, parameterised statement calling one of the
 * extension's api_* functions, which parse the request (as jsonb) and build
 * the response; an error becomes a JSON object of its fields and an HTTP
 * status from its SQLSTATE.
 *
 * libmicrohttpd runs a thread per connection, up to --max-connections: a
 * slow client or a slow statement holds its own thread only.  Database
 * connections are kept in a pool, each for the role and password that
 * opened it and for --pool-max-age seconds at most, so that a changed
 * password or a revoked login takes effect within that time.
 *
 * The live feed (/api/v1/flagged) is one replication connection to a p2pay
 * slot, whose events are kept in a ring of the latest --feed-buffer and
 * sent to every browser as Server-Sent Events, each with its LSN as id: a
 * browser that reconnects with Last-Event-ID gets what it missed, as far as
 * the ring reaches back.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <microhttpd.h>

#include "common.h"			/* progname, logmsg, die, bad_usage */
#include "replication.h"		/* Lsn, message sizes, protocol helpers */

#ifndef P2PAY_HTTP_DIR
#define P2PAY_HTTP_DIR "http"
#endif


typedef struct Options
{
	const char *dsn;			/* the server and database; no user or password */
	const char *listen;			/* HOST:PORT */
	const char *static_dir;		/* the pages, openapi.json, swagger-ui/ */
	unsigned	max_connections;
	unsigned	max_per_ip;		/* 0: no limit */
	unsigned	timeout;		/* seconds a connection may stay idle */
	size_t		max_body;		/* bytes */
	unsigned	statement_timeout;	/* seconds */
	unsigned	pool_size;		/* idle connections kept */
	unsigned	pool_max_age;	/* seconds a connection is reused */
	const char *feed_dsn;		/* replication connection; NULL: no feed */
	const char *slot;
	bool		create_slot;
	unsigned	feed_buffer;	/* events kept for Last-Event-ID */
	unsigned	max_feeds;		/* browsers on the feed at once */
	const char *tls_cert;
	const char *tls_key;
} Options;

static Options opts;
static volatile sig_atomic_t stopping = 0;

/* What one request has gathered so far. */
typedef struct Request
{
	char	   *body;
	size_t		len;
	bool		too_large;
} Request;

static void
usage(void)
{
	printf("%s serves p2pay's HTTP API (/api/v1/), the payment form (/) and the\n"
		   "analysts' console (/console) from a p2pay database.\n\n"
		   "Usage:\n  %s --dsn DSN [--listen HOST:PORT] [OPTION]...\n\n"
		   "Options:\n"
		   "  -d, --dsn DSN             the database, as a libpq connection string without user\n"
		   "                            or password: each request logs in with its own (env\n"
		   "                            P2PAY_DSN; libpq's PG* variables apply)\n"
		   "  -l, --listen HOST:PORT    the address to listen on (env P2PAY_HTTP_LISTEN;\n"
		   "                            default 127.0.0.1:8080)\n"
		   "      --static-dir DIR      the pages, openapi.json and swagger-ui/ (default\n"
		   "                            %s)\n"
		   "      --max-connections N   clients served at once, each on its own thread (64)\n"
		   "      --max-per-ip N        clients served at once from one address (no limit)\n"
		   "      --timeout SECONDS     an idle connection is closed after it (30)\n"
		   "      --max-body BYTES      a larger request body is refused with 413 (65536)\n"
		   "      --statement-timeout SECONDS\n"
		   "                            a request's statement is cancelled after it (30)\n"
		   "      --pool-size N         idle database connections kept for reuse (16)\n"
		   "      --pool-max-age SECONDS\n"
		   "                            a database connection is reused for at most this (60)\n"
		   "      --feed-dsn DSN        a connection string for the live feed, as a role with\n"
		   "                            REPLICATION (env P2PAY_FEED_DSN; without it,\n"
		   "                            /api/v1/flagged answers 503)\n"
		   "      --slot NAME           the p2pay slot the feed reads (p2pay_http)\n"
		   "      --create-slot         create the slot at start if it does not exist\n"
		   "      --feed-buffer N       feed events kept for browsers that reconnect (1000)\n"
		   "      --max-feeds N         browsers on the live feed at once (32)\n"
		   "      --tls-cert FILE       serve HTTPS with this certificate (PEM) ...\n"
		   "      --tls-key FILE        ... and this key (PEM)\n"
		   "      --help                show this help and exit\n\n"
		   "A request authenticates with HTTP Basic as a PostgreSQL role, and runs as it.\n",
		   progname, progname, P2PAY_HTTP_DIR);
	exit(0);
}

static unsigned long
parse_count(const char *what, const char *s, unsigned long max)
{
	char	   *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v == 0 || v > max || s[0] == '-')
	{
		char		msg[200];

		snprintf(msg, sizeof(msg), "%s must be a whole number from 1 to %lu, not \"%.64s\"",
				 what, max, s);
		bad_usage("%s", msg);
	}
	return v;
}

/* Append s to buf as the inside of a JSON string. */
static void
json_escape(FILE *buf, const char *s)
{
	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
	{
		if (*p == '"' || *p == '\\')
			fprintf(buf, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(buf, "\\u%04x", *p);
		else
			fputc(*p, buf);
	}
}

/* Headers every response carries. */
static void
add_common_headers(struct MHD_Response *resp)
{
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "Cache-Control", "no-store");
}

static enum MHD_Result
respond(struct MHD_Connection *conn, unsigned status, const char *json, bool retry)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(strlen(json), (void *) json, MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	add_common_headers(resp);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	if (status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Basic realm=\"p2pay\", charset=\"UTF-8\"");
	if (retry)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* An error of the API's own (no SQLSTATE from the server). */
static enum MHD_Result
respond_error(struct MHD_Connection *conn, unsigned status, const char *code, const char *message)
{
	char	   *json = NULL;
	size_t		len = 0;
	FILE	   *buf = open_memstream(&json, &len);
	enum MHD_Result ret;

	if (buf == NULL)
		return MHD_NO;
	fprintf(buf, "{\"code\": \"%s\", \"message\": \"", code);
	json_escape(buf, message);
	fputs("\", \"detail\": null, \"hint\": null, \"column\": null}", buf);
	fclose(buf);
	ret = respond(conn, status, json, status == MHD_HTTP_SERVICE_UNAVAILABLE);
	free(json);
	return ret;
}

/*
 * The HTTP status of a server error, the way PostgREST maps them: bad input
 * 400, a conflict with what is stored 409, no privilege 403, a serialization
 * failure or deadlock 503 (retry), a missing row 404.
 */
static unsigned
status_of(const char *state, bool *retry)
{
	*retry = false;
	if (state == NULL)
		return MHD_HTTP_INTERNAL_SERVER_ERROR;
	if (strcmp(state, "23503") == 0 || strcmp(state, "23505") == 0 ||
		strcmp(state, "55000") == 0 || strcmp(state, "55P03") == 0)
		return MHD_HTTP_CONFLICT;
	if (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0)
		return MHD_HTTP_BAD_REQUEST;
	if (strcmp(state, "42501") == 0)
		return MHD_HTTP_FORBIDDEN;
	if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
		strcmp(state, "53300") == 0 || strcmp(state, "57014") == 0 ||
		strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
		strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0)
	{
		*retry = true;
		return MHD_HTTP_SERVICE_UNAVAILABLE;
	}
	if (strcmp(state, "P0002") == 0)
		return MHD_HTTP_NOT_FOUND;
	if (strncmp(state, "28", 2) == 0)
		return MHD_HTTP_UNAUTHORIZED;
	return MHD_HTTP_INTERNAL_SERVER_ERROR;
}

/* A failed statement: its error fields as JSON, with the status of its SQLSTATE. */
static enum MHD_Result
respond_pg_error(struct MHD_Connection *conn, const PGresult *res)
{
	static const struct
	{
		const char *key;
		int			field;
	}			fields[] = {
		{"code", PG_DIAG_SQLSTATE}, {"message", PG_DIAG_MESSAGE_PRIMARY},
		{"detail", PG_DIAG_MESSAGE_DETAIL}, {"hint", PG_DIAG_MESSAGE_HINT},
		{"column", PG_DIAG_COLUMN_NAME}
	};
	char	   *json = NULL;
	size_t		len = 0;
	FILE	   *buf;
	bool		retry;
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	unsigned	status;
	enum MHD_Result ret;

	/* a lost connection has no SQLSTATE from the server */
	if (state == NULL)
		return respond_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "08006",
							 "the connection to the database was lost");
	status = status_of(state, &retry);
	if ((buf = open_memstream(&json, &len)) == NULL)
		return MHD_NO;
	fputc('{', buf);
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
	{
		const char *v = PQresultErrorField(res, fields[i].field);

		fprintf(buf, "%s\"%s\": ", i ? ", " : "", fields[i].key);
		if (v == NULL)
			fputs("null", buf);
		else
		{
			fputc('"', buf);
			json_escape(buf, v);
			fputc('"', buf);
		}
	}
	fputc('}', buf);
	fclose(buf);
	ret = respond(conn, status, json, retry);
	free(json);
	return ret;
}

/*
 * The endpoints.  A '*' in a path takes one segment, passed as the
 * statement's first parameter; then, as the endpoint says, the query
 * string as one JSON object of strings, then the body (as text the
 * statement casts to jsonb).  A statement that returns NULL means no such
 * row: 404.
 */
#define TAKES_SEGMENT	0x1
#define TAKES_QUERY		0x2
#define TAKES_BODY		0x4

typedef struct Endpoint
{
	const char *method;
	const char *path;
	const char *sql;
	unsigned	takes;
	unsigned	status;			/* on success */
} Endpoint;

static const Endpoint endpoints[] = {
	{"GET", "/api/v1/currencies", "SELECT p2pay.api_currencies($1::jsonb)::text", TAKES_QUERY, MHD_HTTP_OK},
	{"POST", "/api/v1/currencies", "SELECT p2pay.api_create_currency($1::jsonb)::text", TAKES_BODY, MHD_HTTP_CREATED},
	{"GET", "/api/v1/currencies/*", "SELECT p2pay.api_currency($1)::text", TAKES_SEGMENT, MHD_HTTP_OK},
	{"GET", "/api/v1/payment-methods", "SELECT p2pay.api_payment_methods($1::jsonb)::text", TAKES_QUERY, MHD_HTTP_OK},
	{"POST", "/api/v1/payment-methods", "SELECT p2pay.api_create_payment_method($1::jsonb)::text", TAKES_BODY, MHD_HTTP_CREATED},
	{"GET", "/api/v1/payment-methods/*", "SELECT p2pay.api_payment_method($1::uuid)::text", TAKES_SEGMENT, MHD_HTTP_OK},
	{"GET", "/api/v1/users", "SELECT p2pay.api_users($1::jsonb)::text", TAKES_QUERY, MHD_HTTP_OK},
	{"POST", "/api/v1/users", "SELECT p2pay.api_create_user($1::jsonb)::text", TAKES_BODY, MHD_HTTP_CREATED},
	{"GET", "/api/v1/users/*", "SELECT p2pay.api_user($1::uuid)::text", TAKES_SEGMENT, MHD_HTTP_OK},
	{"GET", "/api/v1/users/*/payment-methods", "SELECT p2pay.api_user_payment_methods($1::uuid, $2::jsonb)::text",
	TAKES_SEGMENT | TAKES_QUERY, MHD_HTTP_OK},
	{"POST", "/api/v1/users/*/payment-methods", "SELECT p2pay.api_create_user_payment_method($1::uuid, $2::jsonb)::text",
	TAKES_SEGMENT | TAKES_BODY, MHD_HTTP_CREATED},
	{"GET", "/api/v1/payments", "SELECT p2pay.api_payments($1::jsonb)::text", TAKES_QUERY, MHD_HTTP_OK},
	{"POST", "/api/v1/payments", "SELECT p2pay.api_create_payment($1::jsonb)::text", TAKES_BODY, MHD_HTTP_CREATED},
	{"GET", "/api/v1/payments/*", "SELECT p2pay.api_payment($1::uuid)::text", TAKES_SEGMENT, MHD_HTTP_OK},
	{"GET", "/api/v1/reviews", "SELECT p2pay.api_reviews($1::jsonb)::text", TAKES_QUERY, MHD_HTTP_OK},
	{"POST", "/api/v1/reviews/*", "SELECT p2pay.api_resolve($1::uuid, $2::jsonb)::text",
	TAKES_SEGMENT | TAKES_BODY, MHD_HTTP_OK},
	{"POST", "/api/v1/reviews/*/claim", "SELECT p2pay.api_claim($1::uuid, $2::jsonb)::text",
	TAKES_SEGMENT | TAKES_BODY, MHD_HTTP_OK},
	{"DELETE", "/api/v1/reviews/*/claim", "SELECT p2pay.api_release($1::uuid)::text", TAKES_SEGMENT, MHD_HTTP_OK},
	{"GET", "/api/v1/rules", "SELECT p2pay.api_rules($1::jsonb)::text", TAKES_QUERY, MHD_HTTP_OK},
	{"POST", "/api/v1/backtest", "SELECT p2pay.api_backtest($1::jsonb)::text", TAKES_BODY, MHD_HTTP_OK},
};
#define NUM_ENDPOINTS (sizeof(endpoints) / sizeof(endpoints[0]))

/* Whether the privilege check of the live feed passes, as the request's role. */
static const char *feed_check_sql =
"SELECT pg_catalog.has_table_privilege('p2pay.payments', 'SELECT')";

/*
 * Whether path matches pattern, segment by segment; a '*' segment takes
 * one non-empty segment of path, returned in *segment (malloc'd).
 */
static bool
path_matches(const char *pattern, const char *path, char **segment)
{
	*segment = NULL;
	while (*pattern && *path)
	{
		if (pattern[0] == '*')
		{
			size_t		n = strcspn(path, "/");

			if (n == 0 || *segment != NULL)
				break;
			if ((*segment = strndup(path, n)) == NULL)
				return false;
			path += n;
			pattern++;
		}
		else if (*pattern == *path)
		{
			pattern++;
			path++;
		}
		else
			break;
	}
	if (*pattern == '\0' && *path == '\0')
		return true;
	free(*segment);
	*segment = NULL;
	return false;
}

/* ---------------------------------------------------------------------
 * The pool: idle connections, each with the role and password that opened
 * it.  A request takes one of its own role's, or opens one; afterwards it
 * gives it back unless the connection broke or is too old.
 * --------------------------------------------------------------------- */
typedef struct Pooled
{
	struct Pooled *next;
	char	   *user;
	char	   *password;
	PGconn	   *conn;
	time_t		opened;
	uint32_t	prepared;		/* endpoints whose statement is prepared */
	bool		feed_checked;	/* the feed's privilege check was prepared */
} Pooled;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static Pooled *pool_idle = NULL;
static unsigned pool_count = 0;

/* Equal strings, compared in time that depends on their lengths only. */
static bool
same_secret(const char *a, const char *b)
{
	size_t		la = strlen(a),
				lb = strlen(b);
	unsigned char diff = (unsigned char) (la != lb);

	for (size_t i = 0; i < la && i < lb; i++)
		diff |= (unsigned char) (a[i] ^ b[i]);
	return diff == 0;
}

static void
pooled_free(Pooled *p)
{
	if (p == NULL)
		return;
	if (p->conn != NULL)
		PQfinish(p->conn);
	if (p->password != NULL)
	{
		memset(p->password, 0, strlen(p->password));
		free(p->password);
	}
	free(p->user);
	free(p);
}

/*
 * Whether an idle connection is still usable.  An idle connection receives
 * nothing but a termination: the server's FATAL message and the end of the
 * socket when it shuts down or restarts.  Anything to read means it is
 * gone, found here before a statement is sent on it, since a statement
 * whose connection breaks may or may not have committed, and is not retried.
 */
static bool
still_up(PGconn *conn)
{
	struct pollfd pfd;

	if (PQstatus(conn) != CONNECTION_OK || PQtransactionStatus(conn) != PQTRANS_IDLE)
		return false;
	pfd.fd = PQsocket(conn);
	pfd.events = POLLIN;
	pfd.revents = 0;
	return pfd.fd >= 0 && poll(&pfd, 1, 0) == 0;
}

/*
 * Whether a connection failure is the login being refused (401), rather
 * than the server being down or full (503).
 */
static bool
login_refused(const char *error)
{
	static const char *const down[] = {
		"could not connect", "Connection refused", "No such file or directory",
		"starting up", "shutting down", "in recovery", "too many clients",
		"timeout expired", "could not translate host name", "Network is unreachable",
		"server closed the connection", "remaining connection slots"
	};

	for (size_t i = 0; i < sizeof(down) / sizeof(down[0]); i++)
		if (strstr(error, down[i]) != NULL)
			return false;
	return true;
}

/* A connection for user and password: an idle one of theirs, or a new one. */
static Pooled *
pool_take(const char *user, const char *password, char **error)
{
	Pooled	  **link;
	Pooled	   *p = NULL;
	time_t		now = time(NULL);
	char		options[64];

	pthread_mutex_lock(&pool_lock);
	link = &pool_idle;
	while (*link != NULL)
	{
		Pooled	   *cand = *link;

		if (strcmp(cand->user, user) == 0 && same_secret(cand->password, password))
		{
			*link = cand->next;
			pool_count--;
			if (now - cand->opened < (time_t) opts.pool_max_age && still_up(cand->conn))
			{
				p = cand;
				break;
			}
			pthread_mutex_unlock(&pool_lock);
			pooled_free(cand);
			pthread_mutex_lock(&pool_lock);
			link = &pool_idle;
			continue;
		}
		link = &cand->next;
	}
	pthread_mutex_unlock(&pool_lock);
	if (p != NULL)
		return p;

	if ((p = calloc(1, sizeof(Pooled))) == NULL ||
		(p->user = strdup(user)) == NULL || (p->password = strdup(password)) == NULL)
	{
		pooled_free(p);
		*error = strdup("out of memory");
		return NULL;
	}
	snprintf(options, sizeof(options), "-c statement_timeout=%us", opts.statement_timeout);
	{
		const char *keys[] = {"dbname", "user", "password", "passfile", "options",
		"fallback_application_name", NULL};
		const char *values[] = {opts.dsn, user, password, "/dev/null", options, "p2pay-http", NULL};

		p->conn = PQconnectdbParams(keys, values, 1);
	}
	p->opened = now;
	if (PQstatus(p->conn) != CONNECTION_OK)
	{
		*error = strdup(PQerrorMessage(p->conn));
		pooled_free(p);
		return NULL;
	}
	return p;
}

/* Give a connection back, or close it if it broke, is old, or the pool is full. */
static void
pool_give(Pooled *p)
{
	if (PQstatus(p->conn) == CONNECTION_OK && PQtransactionStatus(p->conn) == PQTRANS_IDLE &&
		time(NULL) - p->opened < (time_t) opts.pool_max_age)
	{
		pthread_mutex_lock(&pool_lock);
		if (pool_count < opts.pool_size)
		{
			p->next = pool_idle;
			pool_idle = p;
			pool_count++;
			p = NULL;
		}
		pthread_mutex_unlock(&pool_lock);
	}
	pooled_free(p);
}

/*
 * Run endpoint i's statement (or, for i == -1, the feed's privilege check)
 * on p, prepared once per connection.  A connection whose server went away
 * gives a result with no SQLSTATE.
 */
static PGresult *
run_endpoint(Pooled *p, int i, int nparams, const char *const *params)
{
	char		name[16];
	const char *sql = i < 0 ? feed_check_sql : endpoints[i].sql;
	bool		prepared = i < 0 ? p->feed_checked : (p->prepared & (UINT32_C(1) << i)) != 0;

	snprintf(name, sizeof(name), "p2pay_http_%d", i < 0 ? 99 : i);
	if (!prepared)
	{
		PGresult   *res = PQprepare(p->conn, name, sql, nparams, NULL);

		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			return res;
		PQclear(res);
		if (i < 0)
			p->feed_checked = true;
		else
			p->prepared |= UINT32_C(1) << i;
	}
	return PQexecPrepared(p->conn, name, nparams, params, NULL, NULL, 0);
}

/*
 * The request's role, logged in: NULL after a response has been queued
 * (401 without credentials or with refused ones, 503 with the server down).
 */
static Pooled *
log_in(struct MHD_Connection *conn, enum MHD_Result *ret)
{
	char	   *user = NULL;
	char	   *password = NULL;
	char	   *error = NULL;
	Pooled	   *p;

	/*
	 * An empty name or password would let libpq fill it in from the
	 * daemon's own environment (PGUSER, PGPASSWORD, its password file: the
	 * feed's credentials, say): both must be the request's.
	 */
	user = MHD_basic_auth_get_username_password(conn, &password);
	if (user == NULL || password == NULL || user[0] == '\0' || password[0] == '\0')
	{
		MHD_free(user);
		MHD_free(password);
		*ret = respond_error(conn, MHD_HTTP_UNAUTHORIZED, "28000",
							 "log in with HTTP Basic as a PostgreSQL role");
		return NULL;
	}
	p = pool_take(user, password, &error);
	memset(password, 0, strlen(password));
	MHD_free(user);
	MHD_free(password);
	if (p == NULL)
	{
		if (login_refused(error))
			*ret = respond_error(conn, MHD_HTTP_UNAUTHORIZED, "28P01",
								 "the user name or password was not accepted");
		else
		{
			logmsg("can't connect to the database: %s", error);
			*ret = respond_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "08006",
								 "the database is not available");
		}
		free(error);
	}
	return p;
}

/* Append one query argument to the JSON object being built. */
static enum MHD_Result
add_query_argument(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	FILE	   *buf = cls;

	(void) kind;
	if (ftell(buf) > 1)
		fputs(", ", buf);
	fputc('"', buf);
	json_escape(buf, key);
	fputs("\": ", buf);
	if (value == NULL)
		fputs("null", buf);
	else
	{
		fputc('"', buf);
		json_escape(buf, value);
		fputc('"', buf);
	}
	return MHD_YES;
}

static enum MHD_Result
serve_endpoint(struct MHD_Connection *conn, int i, const char *segment, const Request *req)
{
	const Endpoint *ep = &endpoints[i];
	const char *params[3];
	int			nparams = 0;
	char	   *query = NULL;
	size_t		qlen = 0;
	Pooled	   *p;
	PGresult   *res;
	enum MHD_Result ret = MHD_NO;

	if ((p = log_in(conn, &ret)) == NULL)
		return ret;
	if (ep->takes & TAKES_SEGMENT)
		params[nparams++] = segment;
	if (ep->takes & TAKES_QUERY)
	{
		FILE	   *buf = open_memstream(&query, &qlen);

		if (buf == NULL)
		{
			pool_give(p);
			return MHD_NO;
		}
		fputc('{', buf);
		MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, add_query_argument, buf);
		fputc('}', buf);
		fclose(buf);
		params[nparams++] = query;
	}
	if (ep->takes & TAKES_BODY)
		params[nparams++] = req->body != NULL && req->len > 0 ? req->body : "{}";

	res = run_endpoint(p, i, nparams, params);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		ret = respond_pg_error(conn, res);
	else if (PQntuples(res) != 1)
		ret = respond_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "XX000", "the statement returned no row");
	else if (PQgetisnull(res, 0, 0))
		ret = respond_error(conn, MHD_HTTP_NOT_FOUND, "P0002", "no such resource");
	else
		ret = respond(conn, ep->status, PQgetvalue(res, 0, 0), false);
	PQclear(res);
	free(query);
	pool_give(p);
	return ret;
}

/* ---------------------------------------------------------------------
 * Files: the pages, their scripts, openapi.json and Swagger UI.
 * --------------------------------------------------------------------- */
static const char *
content_type_of(const char *name)
{
	static const struct
	{
		const char *ext;
		const char *type;
	}			types[] = {
		{".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
		{".css", "text/css; charset=utf-8"}, {".json", "application/json"},
		{".png", "image/png"}, {".svg", "image/svg+xml"}, {".map", "application/json"},
		{".ico", "image/x-icon"}
	};
	const char *dot = strrchr(name, '.');

	for (size_t i = 0; dot != NULL && i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(dot, types[i].ext) == 0)
			return types[i].type;
	return "application/octet-stream";
}

/* Whether a file name from a URL is one the daemon may serve: no path, no dot file. */
static bool
plain_file_name(const char *name)
{
	if (name[0] == '\0' || name[0] == '.' || strlen(name) > 100)
		return false;
	for (const char *c = name; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
			  (*c >= '0' && *c <= '9') || *c == '.' || *c == '-' || *c == '_'))
			return false;
	return true;
}

static enum MHD_Result
serve_file(struct MHD_Connection *conn, const char *subdir, const char *name)
{
	char		path[PATH_MAX];
	struct stat st;
	struct MHD_Response *resp;
	enum MHD_Result ret;
	int			fd;

	if (!plain_file_name(name))
		return respond_error(conn, MHD_HTTP_NOT_FOUND, "404", "no such resource");
	snprintf(path, sizeof(path), "%s/%s%s%s", opts.static_dir, subdir, *subdir ? "/" : "", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
	{
		if (fd >= 0)
			close(fd);
		return respond_error(conn, MHD_HTTP_NOT_FOUND, "404",
							 *subdir ? "Swagger UI is not installed (build p2pay with npm available)" :
							 "no such resource");
	}
	resp = MHD_create_response_from_fd((uint64_t) st.st_size, fd);
	if (resp == NULL)
	{
		close(fd);
		return MHD_NO;
	}
	add_common_headers(resp);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type_of(name));
	MHD_add_response_header(resp, "Content-Security-Policy",
							"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
							"frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
	MHD_add_response_header(resp, "X-Frame-Options", "DENY");
	ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* ---------------------------------------------------------------------
 * The live feed.  One thread streams the slot into a ring of events; each
 * browser's connection thread waits on the ring for the next one.
 * --------------------------------------------------------------------- */
typedef struct FeedEvent
{
	Lsn			lsn;
	char	   *data;
} FeedEvent;

static struct
{
	pthread_mutex_t lock;
	pthread_cond_t grew;
	FeedEvent  *ring;
	uint64_t	next;			/* the number of the next event */
	char		state[512];		/* "streaming", or why not */
	bool		streaming;
	unsigned	watchers;
}			feed = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, "off", false, 0};

static void
feed_set_state(bool streaming, const char *fmt,...)
{
	va_list		ap;
	char		state[sizeof(feed.state)];
	bool		changed;

	va_start(ap, fmt);
	vsnprintf(state, sizeof(state), fmt, ap);
	va_end(ap);
	for (char *c = state; *c; c++)
		if (*c == '\n')
			*c = ' ';
	pthread_mutex_lock(&feed.lock);
	changed = strcmp(state, feed.state) != 0;
	strcpy(feed.state, state);
	feed.streaming = streaming;
	pthread_mutex_unlock(&feed.lock);
	if (changed)
		logmsg("live feed: %s", state);
}

static void
feed_add(Lsn lsn, const char *data, int len)
{
	char	   *copy;
	FeedEvent  *slot;

	while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
		len--;
	if ((copy = strndup(data, (size_t) len)) == NULL)
		return;
	/* an event is one line: a newline inside would end the SSE data field */
	for (char *c = copy; *c; c++)
		if (*c == '\n' || *c == '\r')
			*c = ' ';
	pthread_mutex_lock(&feed.lock);
	slot = &feed.ring[feed.next % opts.feed_buffer];
	free(slot->data);
	slot->lsn = lsn;
	slot->data = copy;
	feed.next++;
	pthread_cond_broadcast(&feed.grew);
	pthread_mutex_unlock(&feed.lock);
}

/* Sleep up to seconds, waking early when the daemon stops. */
static void
feed_nap(unsigned seconds)
{
	struct timespec tenth = {0, 100000000};

	for (unsigned i = 0; i < seconds * 10 && !stopping; i++)
		nanosleep(&tenth, NULL);
}

/* A message from the server on the feed's connection (such as why it ended): logged. */
static void
feed_notice(void *arg, const char *message)
{
	size_t		len = strlen(message);

	(void) arg;
	while (len > 0 && message[len - 1] == '\n')
		len--;
	logmsg("live feed: the server says: %.*s", (int) len, message);
}

/* Run a simple statement on the feed's connection; false (and the state set) on failure. */
static bool
feed_exec(PGconn *conn, const char *sql, ExecStatusType want, PGresult **out)
{
	PGresult   *res = PQexec(conn, sql);

	if (PQresultStatus(res) != want)
	{
		feed_set_state(false, "%s", PQerrorMessage(conn));
		PQclear(res);
		return false;
	}
	if (out != NULL)
		*out = res;
	else
		PQclear(res);
	return true;
}

/*
 * One session of the feed: connect, check the slot, stream until the
 * connection fails or the daemon stops.  *created says whether
 * --create-slot has been acted on: the slot is created at most once, so
 * that a slot dropped later, with its position, is not silently replaced.
 */
static void
feed_session(bool *created)
{
	const char *keys[] = {"dbname", "replication", "fallback_application_name", NULL};
	const char *values[] = {opts.feed_dsn, "database", "p2pay-http", NULL};
	char	   *const plugin_opts[] = {"format-version=1"};
	PGconn	   *conn = PQconnectdbParams(keys, values, 1);
	PGresult   *res;
	char	   *lit,
			   *sql,
			   *cmd;
	Lsn			confirmed = 0;
	int64_t		next_status = 0;
	bool		exists;

	if (PQstatus(conn) != CONNECTION_OK)
	{
		feed_set_state(false, "can't connect: %s", PQerrorMessage(conn));
		PQfinish(conn);
		return;
	}
	PQsetNoticeProcessor(conn, feed_notice, NULL);
	lit = PQescapeLiteral(conn, opts.slot, strlen(opts.slot));
	sql = lit ? malloc(strlen(lit) + 200) : NULL;
	if (sql == NULL)
	{
		PQfreemem(lit);
		PQfinish(conn);
		return;
	}
	sprintf(sql, "SELECT plugin FROM pg_catalog.pg_replication_slots WHERE slot_name = %s "
			"AND database = pg_catalog.current_database()", lit);
	PQfreemem(lit);
	if (!feed_exec(conn, sql, PGRES_TUPLES_OK, &res))
	{
		free(sql);
		PQfinish(conn);
		return;
	}
	free(sql);
	exists = PQntuples(res) == 1;
	if (exists && strcmp(PQgetvalue(res, 0, 0), "p2pay") != 0)
	{
		feed_set_state(false, "slot \"%s\" uses plugin %s, not p2pay", opts.slot, PQgetvalue(res, 0, 0));
		PQclear(res);
		PQfinish(conn);
		return;
	}
	PQclear(res);
	if (!exists)
	{
		char	   *create;

		if (!opts.create_slot || *created)
		{
			feed_set_state(false, "slot \"%s\" does not exist in this database%s", opts.slot,
						   *created ? " (it was dropped; create it again to resume the feed)" :
						   " (create it, or start p2pay-http with --create-slot)");
			PQfinish(conn);
			return;
		}
		if ((create = malloc(2 * strlen(opts.slot) + 64)) == NULL)
		{
			PQfinish(conn);
			return;
		}
		strcpy(create, "CREATE_REPLICATION_SLOT ");
		append_quoted(create + strlen(create), opts.slot, '"');
		strcat(create, " LOGICAL p2pay");
		if (!feed_exec(conn, create, PGRES_TUPLES_OK, NULL))
		{
			free(create);
			PQfinish(conn);
			return;
		}
		free(create);
		logmsg("live feed: created slot \"%s\"", opts.slot);
	}
	*created = true;

	if ((cmd = start_replication_command(opts.slot, 0, plugin_opts, 1)) == NULL ||
		!feed_exec(conn, cmd, PGRES_COPY_BOTH, NULL))
	{
		free(cmd);
		PQfinish(conn);
		return;
	}
	free(cmd);
	feed_set_state(true, "streaming");

	while (!stopping)
	{
		char	   *msg = NULL;
		int			len = PQgetCopyData(conn, &msg, 1);

		if (len > 0)
		{
			if (msg[0] == 'w' && len >= XLOGDATA_HEADER)
			{
				Lsn			pos = get_be64(msg + 1);

				feed_add(pos, msg + XLOGDATA_HEADER, len - XLOGDATA_HEADER);
				if (pos > confirmed)
					confirmed = pos;
			}
			else if (msg[0] == 'k' && len >= KEEPALIVE_SIZE)
			{
				/*
				 * Every message before walEnd has been taken into the ring
				 * (see tools/p2pay-stream.c): the slot may move past it.
				 */
				Lsn			pos = get_be64(msg + 1);

				if (pos > confirmed)
					confirmed = pos;
				if (msg[17])
					next_status = 0;
			}
			PQfreemem(msg);
		}
		else if (len == 0)
		{
			fd_set		ready;
			struct timeval tv = {1, 0};
			int			sock = PQsocket(conn);

			FD_ZERO(&ready);
			FD_SET(sock, &ready);
			if (select(sock + 1, &ready, NULL, NULL, &tv) < 0 && errno != EINTR)
				break;
			if (!PQconsumeInput(conn))
			{
				feed_set_state(false, "the replication connection failed: %s", PQerrorMessage(conn));
				break;
			}
		}
		else
		{
			const char *why;

			res = PQgetResult(conn);
			why = res && PQresultErrorMessage(res)[0] ? PQresultErrorMessage(res) : PQerrorMessage(conn);
			feed_set_state(false, "the stream ended: %s", why[0] ? why : "the server closed it");
			PQclear(res);
			break;
		}
		if (usecs_now(CLOCK_MONOTONIC) >= next_status)
		{
			if (!send_standby_status(conn, confirmed))
			{
				feed_set_state(false, "the replication connection failed: %s", PQerrorMessage(conn));
				break;
			}
			next_status = usecs_now(CLOCK_MONOTONIC) + 10 * 1000000;
		}
	}
	if (stopping && PQstatus(conn) == CONNECTION_OK)
		send_standby_status(conn, confirmed);
	PQfinish(conn);
}

static void *
feed_main(void *arg)
{
	bool		created = false;

	(void) arg;
	while (!stopping)
	{
		feed_session(&created);
		feed_nap(2);
	}
	pthread_mutex_lock(&feed.lock);
	pthread_cond_broadcast(&feed.grew);
	pthread_mutex_unlock(&feed.lock);
	return NULL;
}

/* One browser on the feed. */
typedef struct Watcher
{
	uint64_t	next;			/* the number of the next event to send */
	bool		gap;			/* events were missed before next */
	char	   *pending;		/* formatted, not yet sent */
	size_t		pending_len;
	size_t		pending_off;
} Watcher;

/* Fill the watcher's pending text: the next event, a gap, or a keepalive. */
static void
watcher_fill(Watcher *w)
{
	char	   *text = NULL;
	size_t		len = 0;
	FILE	   *buf = open_memstream(&text, &len);
	struct timespec until;

	if (buf == NULL)
		return;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 15;
	pthread_mutex_lock(&feed.lock);
	while (!stopping && w->next == feed.next && !w->gap)
		if (pthread_cond_timedwait(&feed.grew, &feed.lock, &until) == ETIMEDOUT)
			break;
	if (w->next < feed.next || w->gap)
	{
		uint64_t	oldest = feed.next > opts.feed_buffer ? feed.next - opts.feed_buffer : 0;

		if (w->next < oldest || w->gap)
		{
			/* the browser missed events: it may reload what it shows */
			if (w->next < oldest)
				fprintf(buf, "event: gap\ndata: {\"missed\": %llu}\n\n",
						(unsigned long long) (oldest - w->next));
			else
				fputs("event: gap\ndata: {\"missed\": null}\n\n", buf);
			w->next = w->next < oldest ? oldest : w->next;
			w->gap = false;
		}
		else
		{
			FeedEvent  *e = &feed.ring[w->next % opts.feed_buffer];

			fprintf(buf, "id: " LSN_FORMAT "\ndata: %s\n\n", LSN_ARGS(e->lsn), e->data);
			w->next++;
		}
	}
	else if (!stopping)
		fputs(": keepalive\n\n", buf);
	pthread_mutex_unlock(&feed.lock);
	fclose(buf);
	w->pending = text;
	w->pending_len = len;
	w->pending_off = 0;
}

static ssize_t
watcher_read(void *cls, uint64_t pos, char *out, size_t max)
{
	Watcher    *w = cls;
	size_t		n;

	(void) pos;
	while (w->pending == NULL || w->pending_off == w->pending_len)
	{
		free(w->pending);
		w->pending = NULL;
		if (stopping)
			return MHD_CONTENT_READER_END_OF_STREAM;
		watcher_fill(w);
		if (w->pending == NULL)
			return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	n = w->pending_len - w->pending_off;
	if (n > max)
		n = max;
	memcpy(out, w->pending + w->pending_off, n);
	w->pending_off += n;
	return (ssize_t) n;
}

static void
watcher_done(void *cls)
{
	Watcher    *w = cls;

	pthread_mutex_lock(&feed.lock);
	feed.watchers--;
	pthread_mutex_unlock(&feed.lock);
	free(w->pending);
	free(w);
}

static enum MHD_Result
serve_feed(struct MHD_Connection *conn)
{
	Pooled	   *p;
	PGresult   *res;
	enum MHD_Result ret = MHD_NO;
	bool		allowed;
	const char *last_id;
	Watcher    *w;
	struct MHD_Response *resp;
	char		why[sizeof(feed.state) + 64];

	if ((p = log_in(conn, &ret)) == NULL)
		return ret;
	res = run_endpoint(p, -1, 0, NULL);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		ret = respond_pg_error(conn, res);
		PQclear(res);
		pool_give(p);
		return ret;
	}
	allowed = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	pool_give(p);
	if (!allowed)
		return respond_error(conn, MHD_HTTP_FORBIDDEN, "42501",
							 "the live feed needs the privilege to read p2pay.payments");
	if (opts.feed_dsn == NULL)
		return respond_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "55000",
							 "the live feed is off: start p2pay-http with --feed-dsn");
	if ((w = calloc(1, sizeof(Watcher))) == NULL)
		return MHD_NO;

	last_id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Last-Event-ID");
	pthread_mutex_lock(&feed.lock);
	if (feed.watchers >= opts.max_feeds || !feed.streaming)
	{
		snprintf(why, sizeof(why), feed.streaming ? "the live feed has --max-feeds browsers" :
				 "the live feed is not streaming: %s", feed.state);
		pthread_mutex_unlock(&feed.lock);
		free(w);
		return respond_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "53300", why);
	}
	feed.watchers++;
	w->next = feed.next;
	if (last_id != NULL)
	{
		Lsn			lsn;
		uint64_t	oldest = feed.next > opts.feed_buffer ? feed.next - opts.feed_buffer : 0;

		/* the event after the one with that id; all the ring after a gap if it is gone */
		w->next = oldest;
		w->gap = true;
		if (parse_lsn(last_id, &lsn))
			for (uint64_t n = feed.next; n > oldest; n--)
				if (feed.ring[(n - 1) % opts.feed_buffer].lsn == lsn)
				{
					w->next = n;
					w->gap = false;
					break;
				}
	}
	pthread_mutex_unlock(&feed.lock);

	/* tell the browser how soon to reconnect */
	w->pending = strdup("retry: 2000\n\n");
	w->pending_len = w->pending ? strlen(w->pending) : 0;
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, watcher_read, w, watcher_done);
	if (resp == NULL)
	{
		watcher_done(w);
		return MHD_NO;
	}
	add_common_headers(resp);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
	MHD_add_response_header(resp, "X-Accel-Buffering", "no");
	ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* GET /api/v1/health: whether the database answers, and the feed's state; no login. */
static enum MHD_Result
serve_health(struct MHD_Connection *conn)
{
	const char *keys[] = {"dbname", NULL};
	const char *values[] = {opts.dsn, NULL};
	bool		up = PQpingParams(keys, values, 1) == PQPING_OK;
	char	   *json = NULL;
	size_t		len = 0;
	FILE	   *buf = open_memstream(&json, &len);
	enum MHD_Result ret;

	if (buf == NULL)
		return MHD_NO;
	fprintf(buf, "{\"status\": \"%s\", \"feed\": \"", up ? "ok" : "unavailable");
	pthread_mutex_lock(&feed.lock);
	json_escape(buf, opts.feed_dsn == NULL ? "off" : feed.state);
	pthread_mutex_unlock(&feed.lock);
	fputs("\"}", buf);
	fclose(buf);
	ret = respond(conn, up ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, json, !up);
	free(json);
	return ret;
}

/* ---------------------------------------------------------------------
 * Dispatch.
 * --------------------------------------------------------------------- */
static enum MHD_Result
route(struct MHD_Connection *conn, const char *url, const char *method, const Request *req)
{
	bool		get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	bool		path_known = false;
	char	   *segment = NULL;
	enum MHD_Result ret;

	/* the pages and documents, served to anyone */
	if (strcmp(url, "/") == 0 || strcmp(url, "/console") == 0 ||
		strncmp(url, "/static/", 8) == 0 || strcmp(url, "/api/v1/openapi.json") == 0 ||
		strcmp(url, "/api/v1/docs") == 0 || strcmp(url, "/api/v1/docs/") == 0 ||
		strncmp(url, "/api/v1/docs/", 13) == 0 || strcmp(url, "/api/v1/health") == 0 ||
		strcmp(url, "/api/v1/flagged") == 0)
	{
		if (!get)
			return respond_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "405", "that method is not served here");
		if (strcmp(url, "/") == 0)
			return serve_file(conn, "", "index.html");
		if (strcmp(url, "/console") == 0)
			return serve_file(conn, "", "console.html");
		if (strncmp(url, "/static/", 8) == 0)
			return serve_file(conn, "", url + 8);
		if (strcmp(url, "/api/v1/openapi.json") == 0)
			return serve_file(conn, "", "openapi.json");
		if (strcmp(url, "/api/v1/health") == 0)
			return serve_health(conn);
		if (strcmp(url, "/api/v1/flagged") == 0)
			return serve_feed(conn);
		if (strcmp(url, "/api/v1/docs") == 0 || strcmp(url, "/api/v1/docs/") == 0)
			return serve_file(conn, "", "docs.html");
		return serve_file(conn, "swagger-ui", url + 13);
	}

	for (size_t i = 0; i < NUM_ENDPOINTS; i++)
		if (path_matches(endpoints[i].path, url, &segment))
		{
			path_known = true;
			if (strcmp(endpoints[i].method, method) == 0)
			{
				ret = serve_endpoint(conn, (int) i, segment, req);
				free(segment);
				return ret;
			}
			free(segment);
		}
	if (path_known)
		return respond_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "405", "that method is not served here");
	return respond_error(conn, MHD_HTTP_NOT_FOUND, "404", "no such resource");
}

static enum MHD_Result
handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
	   const char *version, const char *upload_data, size_t *upload_size, void **state)
{
	Request    *req = *state;

	(void) cls;
	(void) version;
	if (req == NULL)
	{
		req = calloc(1, sizeof(Request));
		if (req == NULL)
			return MHD_NO;
		*state = req;
		return MHD_YES;
	}
	if (*upload_size > 0)
	{
		/* gather the body, refusing it past --max-body */
		if (!req->too_large && req->len + *upload_size <= opts.max_body)
		{
			char	   *grown = realloc(req->body, req->len + *upload_size + 1);

			if (grown == NULL)
				return MHD_NO;
			memcpy(grown + req->len, upload_data, *upload_size);
			req->len += *upload_size;
			grown[req->len] = '\0';
			req->body = grown;
		}
		else
			req->too_large = true;
		*upload_size = 0;
		return MHD_YES;
	}
	if (req->too_large)
		return respond_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, "54000",
							 "the request body is larger than --max-body");
	if (req->body != NULL && strlen(req->body) != req->len)
		return respond_error(conn, MHD_HTTP_BAD_REQUEST, "22021", "the request body contains a zero byte");
	return route(conn, url, method, req);
}

static void
request_done(void *cls, struct MHD_Connection *conn, void **state, enum MHD_RequestTerminationCode why)
{
	Request    *req = *state;

	(void) cls;
	(void) conn;
	(void) why;
	if (req != NULL)
	{
		free(req->body);
		free(req);
		*state = NULL;
	}
}

/*
 * libmicrohttpd's messages, logged, except that of a browser leaving the
 * live feed, which is how every feed ends.
 */
static void
log_mhd(void *cls, const char *fmt, va_list ap)
{
	char		msg[1024];

	(void) cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (strstr(msg, "chunked response body") != NULL)
		return;
	logmsg("%s", msg);
}

/* A whole file, in a malloc'd string (for the TLS certificate and key). */
static char *
read_file(const char *path)
{
	FILE	   *f = fopen(path, "r");
	char	   *text = NULL;
	size_t		len = 0;
	FILE	   *buf;
	char		chunk[4096];
	size_t		n;

	if (f == NULL)
		die("can't read %s: %s", path, strerror(errno));
	if ((buf = open_memstream(&text, &len)) == NULL)
		die("out of memory");
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		fwrite(chunk, 1, n, buf);
	if (ferror(f))
		die("can't read %s: %s", path, strerror(errno));
	fclose(f);
	fclose(buf);
	return text;
}
/* HOST:PORT (or [HOST]:PORT) as a socket address. */
static struct addrinfo *
resolve_listen(const char *spec)
{
	char		host[256];
	const char *colon = strrchr(spec, ':');
	struct addrinfo hints = {0};
	struct addrinfo *ai = NULL;
	size_t		hlen;
	int			rc;

	if (colon == NULL || colon == spec || colon[1] == '\0')
		bad_usage("--listen must be HOST:PORT, such as 127.0.0.1:8080");
	hlen = (size_t) (colon - spec);
	if (spec[0] == '[' && hlen >= 2 && spec[hlen - 1] == ']')
	{
		spec++;
		hlen -= 2;
	}
	if (hlen >= sizeof(host))
		bad_usage("the host of --listen is too long");
	memcpy(host, spec, hlen);
	host[hlen] = '\0';
	parse_count("the port of --listen", colon + 1, 65535);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host, colon + 1, &hints, &ai);
	if (rc != 0)
		die("can't listen on %s: %s", spec, gai_strerror(rc));
	return ai;
}

int
main(int argc, char **argv)
{
	static const struct option long_options[] = {
		{"dsn", required_argument, NULL, 'd'},
		{"listen", required_argument, NULL, 'l'},
		{"static-dir", required_argument, NULL, 's'},
		{"max-connections", required_argument, NULL, 'c'},
		{"max-per-ip", required_argument, NULL, 'i'},
		{"timeout", required_argument, NULL, 't'},
		{"max-body", required_argument, NULL, 'b'},
		{"statement-timeout", required_argument, NULL, 'T'},
		{"pool-size", required_argument, NULL, 'p'},
		{"pool-max-age", required_argument, NULL, 'a'},
		{"feed-dsn", required_argument, NULL, 'f'},
		{"slot", required_argument, NULL, 'S'},
		{"create-slot", no_argument, NULL, 'C'},
		{"feed-buffer", required_argument, NULL, 'B'},
		{"max-feeds", required_argument, NULL, 'F'},
		{"tls-cert", required_argument, NULL, 'x'},
		{"tls-key", required_argument, NULL, 'k'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	struct addrinfo *ai;
	struct MHD_Daemon *daemon;
	pthread_t	feed_thread;
	char	   *cert = NULL,
			   *key = NULL;
	unsigned	flags;
	sigset_t	stop_signals;
	int			c;

	progname = "p2pay-http";
	opts.dsn = getenv("P2PAY_DSN");
	opts.listen = getenv("P2PAY_HTTP_LISTEN") ? getenv("P2PAY_HTTP_LISTEN") : "127.0.0.1:8080";
	opts.feed_dsn = getenv("P2PAY_FEED_DSN");
	opts.static_dir = P2PAY_HTTP_DIR;
	opts.max_connections = 64;
	opts.timeout = 30;
	opts.max_body = 65536;
	opts.statement_timeout = 30;
	opts.pool_size = 16;
	opts.pool_max_age = 60;
	opts.slot = "p2pay_http";
	opts.feed_buffer = 1000;
	opts.max_feeds = 32;
	while ((c = getopt_long(argc, argv, "d:l:", long_options, NULL)) != -1)
	{
		switch (c)
		{
			case 'd':
				opts.dsn = optarg;
				break;
			case 'l':
				opts.listen = optarg;
				break;
			case 's':
				opts.static_dir = optarg;
				break;
			case 'c':
				opts.max_connections = (unsigned) parse_count("--max-connections", optarg, 10000);
				break;
			case 'i':
				opts.max_per_ip = (unsigned) parse_count("--max-per-ip", optarg, 10000);
				break;
			case 't':
				opts.timeout = (unsigned) parse_count("--timeout", optarg, 86400);
				break;
			case 'b':
				opts.max_body = (size_t) parse_count("--max-body", optarg, 64 * 1024 * 1024);
				break;
			case 'T':
				opts.statement_timeout = (unsigned) parse_count("--statement-timeout", optarg, 86400);
				break;
			case 'p':
				opts.pool_size = (unsigned) parse_count("--pool-size", optarg, 10000);
				break;
			case 'a':
				opts.pool_max_age = (unsigned) parse_count("--pool-max-age", optarg, 86400);
				break;
			case 'f':
				opts.feed_dsn = optarg;
				break;
			case 'S':
				if (optarg[0] == '\0' || strlen(optarg) > 63)
					bad_usage("--slot must be a slot name of 1 to 63 bytes");
				opts.slot = optarg;
				break;
			case 'C':
				opts.create_slot = true;
				break;
			case 'B':
				opts.feed_buffer = (unsigned) parse_count("--feed-buffer", optarg, 1000000);
				break;
			case 'F':
				opts.max_feeds = (unsigned) parse_count("--max-feeds", optarg, 10000);
				break;
			case 'x':
				opts.tls_cert = optarg;
				break;
			case 'k':
				opts.tls_key = optarg;
				break;
			case 'h':
				usage();
				break;
			default:
				fprintf(stderr, "Try \"%s --help\" for more information.\n", progname);
				exit(2);
		}
	}
	if (optind < argc)
		bad_usage("too many arguments");
	if (opts.dsn == NULL)
		bad_usage("no database given: name it with --dsn (or P2PAY_DSN)");
	if ((opts.tls_cert == NULL) != (opts.tls_key == NULL))
		bad_usage("--tls-cert and --tls-key go together");
	if (opts.max_feeds >= opts.max_connections)
		bad_usage("--max-feeds must be less than --max-connections, to leave room for the API");
	if (opts.tls_cert != NULL)
	{
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
			die("this libmicrohttpd was built without TLS");
		cert = read_file(opts.tls_cert);
		key = read_file(opts.tls_key);
	}

	/* the feed's ring, and its thread */
	if ((feed.ring = calloc(opts.feed_buffer, sizeof(FeedEvent))) == NULL)
		die("out of memory");
	/*
	 * Every thread is started with SIGINT and SIGTERM blocked; the main
	 * thread waits for them.
	 */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	if (opts.feed_dsn != NULL && pthread_create(&feed_thread, NULL, feed_main, NULL) != 0)
		die("can't start the live feed's thread");

	ai = resolve_listen(opts.listen);
	flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
		(ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0) | (cert != NULL ? MHD_USE_TLS : 0);
	daemon = MHD_start_daemon(flags, 0, NULL, NULL, handle, NULL,
							  MHD_OPTION_EXTERNAL_LOGGER, log_mhd, NULL,
							  MHD_OPTION_SOCK_ADDR, ai->ai_addr,
							  MHD_OPTION_CONNECTION_LIMIT, opts.max_connections,
							  MHD_OPTION_PER_IP_CONNECTION_LIMIT, opts.max_per_ip,
							  MHD_OPTION_CONNECTION_TIMEOUT, opts.timeout,
							  MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) 32 * 1024,
							  MHD_OPTION_NOTIFY_COMPLETED, request_done, NULL,
							  cert != NULL ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, cert,
							  MHD_OPTION_HTTPS_MEM_KEY, key,
							  MHD_OPTION_END);
	if (daemon == NULL)
		die("can't listen on %s", opts.listen);
	freeaddrinfo(ai);
	logmsg("listening on %s%s", opts.listen, cert != NULL ? " (HTTPS)" : "");

	while (sigwait(&stop_signals, &c) != 0)
		;
	stopping = 1;
	logmsg("stopping");
	pthread_mutex_lock(&feed.lock);
	pthread_cond_broadcast(&feed.grew);
	pthread_mutex_unlock(&feed.lock);
	MHD_stop_daemon(daemon);
	if (opts.feed_dsn != NULL)
		pthread_join(feed_thread, NULL);
	free(cert);
	free(key);
	return 0;
}
