/*
 * queue.c: the acknowledgement queue of p2pay-forward, and the position
 * it may confirm.
 *
 * The messages and keepalives of the stream enter the queue in the order
 * they arrive; a message is marked acknowledged when its delivery report
 * says so (sink_kafka.c), and the confirmed position is that of the last
 * entry of the queue's acknowledged head.  The server resends every
 * transaction that commits at or after the confirmed position, so a crash
 * of the forwarder, of PostgreSQL or of Kafka can repeat events but not
 * lose one.  Entries are numbered by sequence numbers that only grow; a
 * rewind (main.c) empties the queue by moving head and epoch to the tail,
 * so that reports of what was produced before it change nothing.
 */
#include "forward.h"

/*
 * The ring holds up to 2 * max_in_flight + 2 entries: at most max_in_flight
 * unacknowledged messages are let in, and reading stops while the ring
 * holds 2 * max_in_flight entries (acknowledged messages wait behind an
 * unacknowledged one; consecutive keepalives share an entry).
 */
uint64_t
queue_size(const Forwarder *f)
{
	return 2 * f->max_in_flight + 2;
}

/* The entry of sequence number seq (which must be in [head, tail)). */
Pending *
queue_entry(Forwarder *f, uint64_t seq)
{
	return &f->queue[seq % queue_size(f)];
}

/* How many entries the queue holds. */
uint64_t
queue_length(const Forwarder *f)
{
	return f->tail - f->head;
}

/* A message handed to the sink, not yet acknowledged: the next entry. */
void
queue_message(Forwarder *f, Lsn lsn)
{
	*queue_entry(f, f->tail++) = (Pending) {.lsn = lsn,.is_message = true,.acked = false};
	f->unacked++;
}

/*
 * Move the confirmed position over the acknowledged head of the queue.
 * The maximum, not the last: a transaction that began earlier and
 * committed later sends changes with lower positions after higher ones,
 * and confirming a higher position of an earlier-sent message is what
 * p2pay-stream does (the later transaction commits after it, so it is
 * resent whole if need be).
 */
void
advance_confirmed(Forwarder *f)
{
	while (f->head < f->tail && queue_entry(f, f->head)->acked)
	{
		Pending    *e = queue_entry(f, f->head);

		if (e->lsn > f->confirmed)
			f->confirmed = e->lsn;
		f->head++;
	}
}

/*
 * A keepalive's walEnd: every message of every transaction that committed
 * before it has arrived, so it may be confirmed once all of them are
 * delivered, that is, once everything queued before it is.  Consecutive
 * keepalives share one entry, so they can't fill the queue.
 */
void
queue_keepalive(Forwarder *f, Lsn walend)
{
	Pending    *last;

	if (queue_length(f) == 0)
	{
		if (walend > f->confirmed)
			f->confirmed = walend;
		return;
	}
	last = queue_entry(f, f->tail - 1);
	if (!last->is_message)
	{
		if (walend > last->lsn)
			last->lsn = walend;
		return;
	}
	if (queue_length(f) >= queue_size(f) - 1)
		return;					/* a later keepalive will do */
	last = queue_entry(f, f->tail++);
	*last = (Pending) {.lsn = walend,.is_message = false,.acked = true};
}
