/*
 * p2pay-http.c: p2pay's HTTP front door.  A request authenticates with HTTP
 * Basic; the credentials are a PostgreSQL role's, checked by the server as
 * any login is, and the request runs under that role, so the database
 * decides who may do what, as it does for SQL.  The C is thin: each
 * endpoint is one fixed, parameterised statement calling one of the
 * extension's api_* functions, which parse the body (as jsonb) and build
 * the response; an error becomes a JSON object of its fields and an HTTP
 * status from its SQLSTATE.
 *
 * libmicrohttpd runs a thread per connection, up to --max-connections, each
 * with its own libpq connection for the request: a slow client or a slow
 * statement holds its own thread only.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <microhttpd.h>

static const char *progname = "p2pay-http";

typedef struct Options
{
	const char *dsn;			/* the server and database; no user or password */
	const char *listen;			/* HOST:PORT */
	unsigned	max_connections;
	unsigned	timeout;		/* seconds a connection may stay idle */
	size_t		max_body;		/* bytes */
} Options;

static Options opts;

/* What one request has gathered so far. */
typedef struct Request
{
	char	   *body;
	size_t		len;
	bool		too_large;
} Request;

static void
fail(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void
bad_usage(const char *msg)
{
	fprintf(stderr, "%s: %s\n\nTry \"%s --help\" for more information.\n", progname, msg, progname);
	exit(2);
}

static void
usage(void)
{
	printf("%s serves p2pay's HTTP API (/api/v1/) from a p2pay database.\n\n"
		   "Usage:\n  %s --dsn DSN [--listen HOST:PORT] [OPTION]...\n\n"
		   "Options:\n"
		   "  -d, --dsn DSN             the database, as a libpq connection string without user\n"
		   "                            or password: each request logs in with its own (env\n"
		   "                            P2PAY_DSN; libpq's PG* variables apply)\n"
		   "  -l, --listen HOST:PORT    the address to listen on (env P2PAY_HTTP_LISTEN;\n"
		   "                            default 127.0.0.1:8080)\n"
		   "      --max-connections N   clients served at once, each on its own thread (64)\n"
		   "      --timeout SECONDS     an idle connection is closed after it (30)\n"
		   "      --max-body BYTES      a larger request body is refused with 413 (65536)\n"
		   "      --help                show this help and exit\n\n"
		   "A request authenticates with HTTP Basic as a PostgreSQL role, and runs as it.\n",
		   progname, progname);
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
		bad_usage(msg);
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

static enum MHD_Result
respond(struct MHD_Connection *conn, unsigned status, const char *json, bool retry)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(strlen(json), (void *) json, MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
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
	fputs("\"}", buf);
	fclose(buf);
	ret = respond(conn, status, json, false);
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
	if (strcmp(state, "23503") == 0 || strcmp(state, "23505") == 0 || strcmp(state, "55000") == 0)
		return MHD_HTTP_CONFLICT;
	if (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0)
		return MHD_HTTP_BAD_REQUEST;
	if (strcmp(state, "42501") == 0)
		return MHD_HTTP_FORBIDDEN;
	if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 || strcmp(state, "53300") == 0)
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
	FILE	   *buf = open_memstream(&json, &len);
	bool		retry;
	unsigned	status = status_of(PQresultErrorField(res, PG_DIAG_SQLSTATE), &retry);
	enum MHD_Result ret;

	if (buf == NULL)
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

/* Log in to the database as the request's role. */
static PGconn *
connect_as(const char *user, const char *password, char **error)
{
	const char *keys[] = {"dbname", "user", "password", "application_name", "fallback_application_name", NULL};
	const char *values[] = {opts.dsn, user, password, "p2pay-http", "p2pay-http", NULL};
	PGconn	   *db = PQconnectdbParams(keys, values, 1);

	if (PQstatus(db) != CONNECTION_OK)
	{
		*error = strdup(PQerrorMessage(db));
		PQfinish(db);
		return NULL;
	}
	return db;
}

/* One endpoint: its method, its path (a trailing '*' takes one segment), its statement. */
typedef struct Endpoint
{
	const char *method;
	const char *path;
	const char *sql;
	unsigned	status;			/* on success */
	bool		takes_body;
	bool		null_is_404;
} Endpoint;

static const Endpoint endpoints[] = {
	{"POST", "/api/v1/payments", "SELECT p2pay.api_create_payment($1::jsonb)::text",
	MHD_HTTP_CREATED, true, false},
	{"GET", "/api/v1/payments/*", "SELECT p2pay.api_payment($1::uuid)::text",
	MHD_HTTP_OK, false, true},
	{"GET", "/api/v1/reviews", "SELECT p2pay.api_reviews(coalesce($1::integer, 50), $2::uuid)::text",
	MHD_HTTP_OK, false, false},
	{"POST", "/api/v1/reviews/*", "SELECT p2pay.api_resolve($1::uuid, $2::jsonb)::text",
	MHD_HTTP_OK, true, true},
};

/* Whether path matches pattern; *segment is the segment a '*' took. */
static bool
path_matches(const char *pattern, const char *path, const char **segment)
{
	size_t		n = strlen(pattern);

	*segment = NULL;
	if (n > 0 && pattern[n - 1] == '*')
	{
		if (strncmp(path, pattern, n - 1) != 0)
			return false;
		path += n - 1;
		if (*path == '\0' || strchr(path, '/') != NULL)
			return false;
		*segment = path;
		return true;
	}
	return strcmp(pattern, path) == 0;
}

static enum MHD_Result
serve(struct MHD_Connection *conn, const Endpoint *ep, const char *segment, const Request *req)
{
	char	   *user = NULL;
	char	   *password = NULL;
	char	   *error = NULL;
	PGconn	   *db;
	PGresult   *res;
	const char *params[2] = {NULL, NULL};
	int			nparams = 0;
	enum MHD_Result ret;

	user = MHD_basic_auth_get_username_password(conn, &password);
	if (user == NULL || password == NULL)
	{
		MHD_free(user);
		MHD_free(password);
		return respond_error(conn, MHD_HTTP_UNAUTHORIZED, "28000",
							 "log in with HTTP Basic as a PostgreSQL role");
	}
	db = connect_as(user, password, &error);
	MHD_free(user);
	MHD_free(password);
	if (db == NULL)
	{
		bool		auth = strstr(error, "authentication failed") != NULL ||
			strstr(error, "does not exist") != NULL;

		ret = respond_error(conn, auth ? MHD_HTTP_UNAUTHORIZED : MHD_HTTP_SERVICE_UNAVAILABLE,
							auth ? "28P01" : "08006",
							auth ? "the user name or password was not accepted" : error);
		free(error);
		return ret;
	}

	if (strcmp(ep->path, "/api/v1/reviews") == 0)
	{
		params[0] = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "limit");
		params[1] = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "after");
		nparams = 2;
	}
	else
	{
		if (segment != NULL)
			params[nparams++] = segment;
		if (ep->takes_body)
			params[nparams++] = req->body != NULL ? req->body : "";
	}
	res = PQexecParams(db, ep->sql, nparams, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		ret = respond_pg_error(conn, res);
	else if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
	{
		if (ep->null_is_404)
			ret = respond_error(conn, MHD_HTTP_NOT_FOUND, "P0002", "no payment has that transaction_id");
		else
			ret = respond_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "XX000", "the statement returned no row");
	}
	else
		ret = respond(conn, ep->status, PQgetvalue(res, 0, 0), false);
	PQclear(res);
	PQfinish(db);
	return ret;
}

static enum MHD_Result
handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
	   const char *version, const char *upload_data, size_t *upload_size, void **state)
{
	Request    *req = *state;
	const Endpoint *ep = NULL;
	const char *segment = NULL;
	bool		path_known = false;

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

	for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++)
		if (path_matches(endpoints[i].path, url, &segment))
		{
			path_known = true;
			if (strcmp(endpoints[i].method, method) == 0)
			{
				ep = &endpoints[i];
				break;
			}
		}
	if (ep == NULL)
		return path_known ?
			respond_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "405", "that method is not served here") :
			respond_error(conn, MHD_HTTP_NOT_FOUND, "404", "no such resource");
	return serve(conn, ep, segment, req);
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
		fail("can't listen on %s: %s", spec, gai_strerror(rc));
	return ai;
}

static volatile sig_atomic_t stopping = 0;

static void
on_signal(int sig)
{
	(void) sig;
	stopping = 1;
}

int
main(int argc, char **argv)
{
	static const struct option long_options[] = {
		{"dsn", required_argument, NULL, 'd'},
		{"listen", required_argument, NULL, 'l'},
		{"max-connections", required_argument, NULL, 'c'},
		{"timeout", required_argument, NULL, 't'},
		{"max-body", required_argument, NULL, 'b'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	struct addrinfo *ai;
	struct MHD_Daemon *daemon;
	int			c;

	opts.dsn = getenv("P2PAY_DSN");
	opts.listen = getenv("P2PAY_HTTP_LISTEN") ? getenv("P2PAY_HTTP_LISTEN") : "127.0.0.1:8080";
	opts.max_connections = 64;
	opts.timeout = 30;
	opts.max_body = 65536;
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
			case 'c':
				opts.max_connections = (unsigned) parse_count("--max-connections", optarg, 10000);
				break;
			case 't':
				opts.timeout = (unsigned) parse_count("--timeout", optarg, 86400);
				break;
			case 'b':
				opts.max_body = (size_t) parse_count("--max-body", optarg, 64 * 1024 * 1024);
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

	ai = resolve_listen(opts.listen);
	daemon = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
							  MHD_USE_ERROR_LOG | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0),
							  0, NULL, NULL, handle, NULL,
							  MHD_OPTION_SOCK_ADDR, ai->ai_addr,
							  MHD_OPTION_CONNECTION_LIMIT, opts.max_connections,
							  MHD_OPTION_CONNECTION_TIMEOUT, opts.timeout,
							  MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) 32 * 1024,
							  MHD_OPTION_NOTIFY_COMPLETED, request_done, NULL,
							  MHD_OPTION_END);
	if (daemon == NULL)
		fail("can't listen on %s", opts.listen);
	freeaddrinfo(ai);
	fprintf(stderr, "%s: listening on %s\n", progname, opts.listen);

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	while (!stopping)
		pause();
	MHD_stop_daemon(daemon);
	return 0;
}
