/*
 * mock.c: p2pay-forward's test-only code, compiled into test builds alone
 * (-DP2PAY_FORWARD_TESTING: tools/p2pay-forward-test, which t/007_forward.pl
 * runs); the installed p2pay-forward has none of it.
 *
 * With -X test.mock.num.brokers=N, librdkafka starts an in-process mock
 * cluster of N brokers in place of real ones, speaking the Kafka protocol
 * on local sockets.  Here: the topic is made on it (six partitions, each
 * on every broker), and three options use its API (rdkafka_mock.h):
 *   --mock-dump FILE     append every acknowledged message to FILE
 *                        (partition, offset, key, value; fsynced before
 *                        the position past it is confirmed)
 *   --mock-outage N:FILE take every broker down after N acknowledgements,
 *                        until FILE exists
 *   --mock-fail COUNT@N  make the next COUNT produce requests after N
 *                        acknowledgements fail with a permanent error
 */
#ifndef P2PAY_FORWARD_TESTING
#error "mock.c is for test builds only: compile it with -DP2PAY_FORWARD_TESTING"
#endif

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "forward.h"

/* after rdkafka.h, which forward.h includes */
#include <librdkafka/rdkafka_mock.h>

/* Kafka's Produce request, for the mock cluster's error injection. */
#define KAFKA_API_PRODUCE 0

/* The mock cluster and what the options asked of it. */
static struct
{
	int			brokers;		/* test.mock.num.brokers; 0: real brokers */
	const char *dump_path;
	FILE	   *dump;
	bool		dump_dirty;
	long		outage_after;	/* 0: no outage */
	const char *outage_until;
	int			outage_state;	/* 0 not yet, 1 down, 2 over */
	long		fail_after;		/* 0: no injected failure */
	int			fail_count;
	bool		fail_done;
} mock;

/* One test-only option: 0 --mock-dump, 1 --mock-outage, 2 --mock-fail. */
void
mock_option(int opt, char *arg)
{
	if (opt == 0)
		mock.dump_path = arg;
	else if (opt == 1)
	{
		char	   *colon = strchr(arg, ':');

		if (colon == NULL || colon[1] == '\0')
			bad_usage("--mock-outage wants COUNT:FILE, not \"%s\"", arg);
		*colon = '\0';
		mock.outage_after = parse_count(arg, "--mock-outage count", 0, LONG_MAX);
		mock.outage_until = colon + 1;
	}
	else
	{
		char	   *at = strchr(arg, '@');

		if (at == NULL)
			bad_usage("--mock-fail wants COUNT@AFTER, not \"%s\"", arg);
		*at = '\0';
		mock.fail_count = (int) parse_count(arg, "--mock-fail count", 1, 1000);
		mock.fail_after = parse_count(at + 1, "--mock-fail position", 0, LONG_MAX);
	}
}

/* Whether a test-only option was given. */
bool
mock_options_given(void)
{
	return mock.dump_path != NULL || mock.outage_after > 0 || mock.fail_after > 0;
}

/* Whether librdkafka runs a mock cluster. */
bool
mock_cluster(void)
{
	return mock.brokers > 0;
}

/* Read test.mock.num.brokers; the options need it.  Opens the dump. */
void
mock_configure(Forwarder *f)
{
	char		value[64];
	size_t		vlen = sizeof(value);

	if (rd_kafka_conf_get(f->kconf, "test.mock.num.brokers", value, &vlen) == RD_KAFKA_CONF_OK)
		mock.brokers = atoi(value);
	if (mock.brokers == 0 && mock_options_given())
		bad_usage("--mock-dump, --mock-outage and --mock-fail are for tests, with"
				  " -X test.mock.num.brokers=N");
	if (mock.dump_path != NULL && (mock.dump = open_append(mock.dump_path)) == NULL)
		die("could not open \"%s\": %s", mock.dump_path, strerror(errno));
}

/* A producer was made: make the topic on its mock cluster. */
void
mock_created(Forwarder *f)
{
	rd_kafka_mock_cluster_t *mc;

	if (mock.brokers == 0)
		return;
	if ((mc = rd_kafka_handle_mock_cluster(f->rk)) == NULL)
		die("test.mock.num.brokers is set but librdkafka made no mock cluster");
	/* six partitions, each on every broker, so that keys spread */
	if (rd_kafka_mock_topic_create(mc, f->topic, 6, mock.brokers) != 0)
		die("could not create topic \"%s\" in the mock cluster", f->topic);
}

/*
 * An acknowledged message, into the dump whatever its epoch (it is on the
 * topic); a null key as \N, so that it can't pass for the empty key.
 */
void
mock_delivered(const rd_kafka_message_t *msg)
{
	if (mock.dump == NULL)
		return;
	fprintf(mock.dump, "%d\t%lld\t%.*s\t%.*s\n",
			(int) msg->partition, (long long) msg->offset,
			msg->key ? (int) msg->key_len : 2, msg->key ? (const char *) msg->key : "\\N",
			(int) msg->len, (const char *) msg->payload);
	if (fflush(mock.dump) != 0)
		die("could not write the mock dump: %s", strerror(errno));
	mock.dump_dirty = true;
}

/* Make the dump durable before a position past it is confirmed. */
void
mock_sync(void)
{
	if (!mock.dump_dirty)
		return;
	if (fflush(mock.dump) != 0 || fsync(fileno(mock.dump)) != 0)
		die("could not write or fsync the mock dump: %s", strerror(errno));
	mock.dump_dirty = false;
}

/* The scheduled outage and failures, checked from the main loop. */
void
mock_events(Forwarder *f)
{
	rd_kafka_mock_cluster_t *mc;

	if (mock.brokers == 0 || f->rk == NULL)
		return;
	mc = rd_kafka_handle_mock_cluster(f->rk);
	if (mock.outage_after > 0 && mock.outage_state == 0 && f->delivered >= mock.outage_after)
	{
		for (int id = 1; id <= mock.brokers; id++)
			rd_kafka_mock_broker_set_down(mc, id);
		mock.outage_state = 1;
		logmsg("mock: all %d brokers down after %ld deliveries, until %s exists",
			   mock.brokers, f->delivered, mock.outage_until);
	}
	if (mock.outage_state == 1 && access(mock.outage_until, F_OK) == 0)
	{
		for (int id = 1; id <= mock.brokers; id++)
			rd_kafka_mock_broker_set_up(mc, id);
		mock.outage_state = 2;
		logmsg("mock: brokers up again");
	}
	if (mock.fail_after > 0 && !mock.fail_done && f->delivered >= mock.fail_after)
	{
		rd_kafka_resp_err_t *errs = calloc((size_t) mock.fail_count, sizeof(*errs));

		if (errs == NULL)
			die("out of memory");
		for (int i = 0; i < mock.fail_count; i++)
			errs[i] = RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED;
		rd_kafka_mock_push_request_errors_array(mc, KAFKA_API_PRODUCE,
												(size_t) mock.fail_count, errs);
		free(errs);
		mock.fail_done = true;
		logmsg("mock: the next %d produce requests fail (after %ld deliveries)",
			   mock.fail_count, f->delivered);
	}
}

/* Close the dump at exit. */
void
mock_close(void)
{
	if (mock.dump != NULL && fclose(mock.dump) != 0)
		die("could not close \"%s\": %s", mock.dump_path, strerror(errno));
}
