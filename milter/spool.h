#ifndef KMILTER_MILTER_SPOOL_H
#define KMILTER_MILTER_SPOOL_H
/*
 * NAME
 *	spool - a message body: in memory up to a limit, then in a temp file
 * SUMMARY
 *	spool_new(), spool_append(), spool_size(), spool_map(), spool_free(),
 *	spool_read(), spool_reader(), spool_writer(), spool_disk_limit(),
 *	spool_disk_used(), spool_disk_room()
 * DESCRIPTION
 *	spool_append() copies bytes (libmilter's body chunks are valid only
 *	during the callback).  Past memmax bytes the content moves to an
 *	unlinked 0600 file in the spool directory (O_TMPFILE where the file
 *	system has it), so memory stays bounded whatever the message size.
 *	spool_map() gives read access to the whole content as one byte range
 *	(the memory buffer, or an mmap of the file) valid until spool_free()
 *	or the next append; it maps the whole file, so the cryptographic
 *	path reads in bounded pieces instead: spool_read() copies from any
 *	offset (pread: no shared file position), spool_reader() is an
 *	OpenSSL read BIO over the content from its start, spool_writer() a
 *	write BIO whose BIO_write() is spool_append() (so a result written
 *	through it moves to disk past memmax like a received body).
 *	Disk budget: the bytes in spool files of every spool of the process
 *	are counted (the file's bytes, from the append that moves a spool
 *	to disk, until spool_free()); spool_disk_limit() sets the limit
 *	(0: none), spool_disk_used() tells the count.  An append that would
 *	pass the limit writes nothing and fails.  spool_disk_room() tells
 *	whether n more bytes fit now (a check, not a reservation: another
 *	message may take them first), so that work whose output would not
 *	fit is not started.
 * OWNERSHIP
 *	Caller frees with spool_free(), which returns NULL.  A BIO from
 *	spool_reader() or spool_writer() borrows the spool: free the BIO
 *	(BIO_free_all) before the spool; a reader sees the bytes present at
 *	each read, so do not append to a spool that is being read.
 * ERRORS
 *	KM_NOMEM when memory runs out; KM_TEMPFAIL when the spool directory
 *	is full or unwritable, or the disk budget would be passed ("spool
 *	full: ..."; err says which and why).  A writer BIO's
 *	BIO_write() returns -1 on those errors; spool_writer_error() then
 *	gives the kmerr of the failed append.  spool_read() at or past the
 *	end gives *got = 0 and KM_OK.
 * THREADS
 *	A spool belongs to one message, used by one thread at a time; the
 *	disk budget is shared by all (atomic counters).
 */
#include <stddef.h>

#include <openssl/bio.h>

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
enum km_status	 spool_read(struct spool *, size_t off, void *buf, size_t len,
		    size_t *got, struct kmerr *err);
BIO		*spool_reader(struct spool *);
BIO		*spool_writer(struct spool *);
const struct kmerr *spool_writer_error(BIO *);
void		 spool_disk_limit(size_t max);
size_t		 spool_disk_used(void);
enum km_status	 spool_disk_room(size_t n, struct kmerr *err);

#endif
