/*
 * sink_file.c: p2pay-forward's file sink, --to FILE or --to stdout.
 *
 * Each line is written and flushed before the next message is read, and
 * the file is fsynced before any position past it is confirmed
 * (file_sync, called by source.c before each status update).  A line is
 * delivered once written, so the confirmed position moves with the lines
 * and the queue is not used.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "forward.h"

/*
 * Open a file to append lines to.  Each line is flushed on its own, from a
 * buffer larger than any line, so that it reaches the file in one write()
 * and a kill can't leave half of it.  A line cut short anyway (it was never
 * confirmed, so it comes again) is ended first, so that the next line
 * starts on a line of its own.  Returns NULL with errno set on failure.
 */
FILE *
open_append(const char *path)
{
	FILE	   *file = fopen(path, "a+");

	if (file == NULL)
		return NULL;
	if (setvbuf(file, NULL, _IOFBF, 1 << 20) != 0)
	{
		fclose(file);
		errno = ENOMEM;
		return NULL;
	}
	if (fseek(file, -1, SEEK_END) == 0 && fgetc(file) != '\n')
	{
		if (fseek(file, 0, SEEK_END) != 0 || fputc('\n', file) == EOF || fflush(file) != 0)
		{
			fclose(file);
			return NULL;
		}
	}
	clearerr(file);
	return file;
}

/* Open --to's file (or take stdout); only a regular file is fsynced. */
void
file_open(Forwarder *f)
{
	struct stat st;

	if (strcmp(f->to, "-") == 0 || strcmp(f->to, "stdout") == 0)
	{
		f->out = stdout;
		return;
	}
	if ((f->out = open_append(f->to)) == NULL)
		die("could not open \"%s\": %s", f->to, strerror(errno));
	f->out_fsync = fstat(fileno(f->out), &st) == 0 && S_ISREG(st.st_mode);
}

/* Write one line: delivered, and its position may be confirmed once synced. */
void
file_write(Forwarder *f, const char *value, size_t len, Lsn lsn)
{
	/* written before the next read; fsynced before it is confirmed */
	if (fwrite(value, 1, len, f->out) != len || fputc('\n', f->out) == EOF ||
		fflush(f->out) != 0)
		die("could not write the output: %s", strerror(errno));
	f->out_dirty = true;
	f->delivered++;
	if (lsn > f->confirmed)
		f->confirmed = lsn;
}

/* Make what was written durable, before a position past it is confirmed. */
void
file_sync(Forwarder *f)
{
	if (!f->out_dirty)
		return;
	if (fflush(f->out) != 0 || (f->out_fsync && fsync(fileno(f->out)) != 0))
		die("could not write or fsync the output: %s", strerror(errno));
	f->out_dirty = false;
}

/* Close the file at exit (stdout is left to exit()). */
void
file_close(Forwarder *f)
{
	if (f->out != NULL && f->out != stdout && fclose(f->out) != 0)
		die("could not close \"%s\": %s", f->to, strerror(errno));
}
