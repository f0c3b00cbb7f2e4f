/*
 * common.c: the messages and helpers p2pay's programs share (common.h).
 *
 * Threads: logmsg() writes each line with one call, so that the lines of
 * threads (p2pay-http's, librdkafka's in p2pay-forward) never mix;
 * pq_message() returns a static buffer and is for the main thread only.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"

const char *progname = "p2pay";

/*
 * Write "progname: [prefix]message\n" to stderr in one call, the message cut
 * to fit the line: what every message function below does.
 */
static void
write_line(const char *prefix, const char *fmt, va_list ap)
{
	char		line[2048];
	int			len = snprintf(line, sizeof(line), "%s: %s", progname, prefix);

	if (len < 0 || (size_t) len >= sizeof(line) - 1)
		len = 0;
	vsnprintf(line + len, sizeof(line) - (size_t) len - 1, fmt, ap);
	strcat(line, "\n");
	fputs(line, stderr);
}

/* Log one line to stderr, prefixed with the program's name, in one write. */
void
logmsg(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	write_line("", fmt, ap);
	va_end(ap);
}

/* Log "error: " and the message, and exit 1. */
void
die(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	write_line("error: ", fmt, ap);
	va_end(ap);
	exit(1);
}

/* Complain about the command line, point at --help, and exit 2. */
void
bad_usage(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	write_line("", fmt, ap);
	va_end(ap);
	fprintf(stderr, "Try \"%s --help\" for more information.\n", progname);
	exit(2);
}

/*
 * libpq's or the server's message on one line, to be followed by more
 * words: each line break, with the indentation after it, becomes a space.
 */
const char *
pq_message(const char *msg)
{
	static char buf[1024];
	size_t		len = 0;

	for (const char *p = msg; *p && len < sizeof(buf) - 1; p++)
	{
		if (*p != '\n')
			buf[len++] = *p;
		else
		{
			while (p[1] == '\t' || p[1] == ' ')
				p++;
			if (p[1] != '\0')
				buf[len++] = ' ';
		}
	}
	buf[len] = '\0';
	return buf;
}

/* Sleep usecs (less if a signal lands). */
void
nap(int64_t usecs)
{
	struct timespec ts = {.tv_sec = (time_t) (usecs / 1000000),
	.tv_nsec = (long) (usecs % 1000000) * 1000};

	nanosleep(&ts, NULL);
}
