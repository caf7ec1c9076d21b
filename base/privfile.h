#ifndef KMILTER_BASE_PRIVFILE_H
#define KMILTER_BASE_PRIVFILE_H
/*
 * NAME
 *	privfile - write a private file whole or not at all
 * SUMMARY
 *	privfile_write()
 * DESCRIPTION
 *	privfile_write() writes the bytes to a temporary file beside path,
 *	named for this writer (PATH.PID.N.tmp: two threads may write the same
 *	path at once, each renames a whole file), created mode 0600 with
 *	O_EXCL, fsyncs it and renames it over
 *	path: a reader sees the old file or the new one, never half of one,
 *	and nobody else can read it at any moment.  On failure the
 *	temporary file is removed and path is left as it was.
 * OWNERSHIP
 *	Everything is borrowed.
 * ERRORS
 *	KM_OK; KM_PROTO path too long; KM_PERMFAIL "PATH: strerror" (errno
 *	kept).
 * THREADS
 *	Thread-safe, also for one path (the last rename wins).
 */
#include <stddef.h>

#include "kmerr.h"
#include "status.h"

enum km_status	 privfile_write(const char *path, const unsigned char *buf,
		    size_t len, struct kmerr *err);

#endif
