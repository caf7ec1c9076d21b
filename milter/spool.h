#ifndef KMILTER_MILTER_SPOOL_H
#define KMILTER_MILTER_SPOOL_H
/*
 * NAME
 *	spool - a message body: in memory up to a limit, then in a temp file
 * SUMMARY
 *	spool_new(), spool_append(), spool_size(), spool_map(), spool_free()
 * DESCRIPTION
 *	spool_append() copies bytes (libmilter's body chunks are valid only
 *	during the callback).  Past memmax bytes the content moves to an
 *	unlinked 0600 file in the spool directory (O_TMPFILE where the file
 *	system has it), so memory stays bounded whatever the message size.
 *	spool_map() gives read access to the whole content as one byte range
 *	(the memory buffer, or an mmap of the file) valid until spool_free()
 *	or the next append.
 * OWNERSHIP
 *	Caller frees with spool_free(), which returns NULL.
 * ERRORS
 *	KM_NOMEM when memory runs out; KM_TEMPFAIL when the spool directory
 *	is full or unwritable (err says which and why).
 * THREADS
 *	A spool belongs to one message, used by one thread at a time.
 */
#include <stddef.h>

#include "kmerr.h"

struct spool;

struct spool	*spool_new(const char *dir, size_t memmax);
struct spool	*spool_free(struct spool *);
enum km_status	 spool_append(struct spool *, const void *, size_t,
		    struct kmerr *err);
size_t		 spool_size(const struct spool *);
int		 spool_on_disk(const struct spool *);
enum km_status	 spool_map(struct spool *, const unsigned char **data, size_t *len,
		    struct kmerr *err);

#endif
