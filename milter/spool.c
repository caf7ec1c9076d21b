/*
 * spool.c - message body spool: memory, then an unlinked temp file (see spool.h).
 */
#include <sys/mman.h>
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "secmem.h"
#include "spool.h"

struct spool {
	char		*dir;
	size_t		 memmax;
	unsigned char	*mem;
	size_t		 len;
	size_t		 cap;
	int		 fd;		/* -1 while in memory */
	void		*map;
	size_t		 maplen;
	size_t		 disk;		/* bytes counted against the disk budget */
};

/* The disk budget, over every spool of the process (0: none). */
static size_t	disk_used;
static size_t	disk_max;

/* spool_disk_limit - bytes of spool files allowed at once (0: no limit) */
void
spool_disk_limit(size_t max)
{
	__atomic_store_n(&disk_max, max, __ATOMIC_SEQ_CST);
}

/* spool_disk_used - bytes in spool files now */
size_t
spool_disk_used(void)
{
	return __atomic_load_n(&disk_used, __ATOMIC_SEQ_CST);
}

/* spool_disk_room - is there room for n more bytes now?  KM_OK, or KM_TEMPFAIL "spool full" */
enum km_status
spool_disk_room(size_t n, struct kmerr *err)
{
	size_t max = __atomic_load_n(&disk_max, __ATOMIC_SEQ_CST);
	size_t cur = __atomic_load_n(&disk_used, __ATOMIC_SEQ_CST);

	if (max == 0 || (n <= max && cur <= max - n))
		return KM_OK;
	return kmerr_set(err, KM_TEMPFAIL, KMERR_NONE,
	    "spool full: milter.spool_disk_max_mb (%zu MB) has %zu kB free, %zu kB needed",
	    max >> 20, cur < max ? (max - cur) >> 10 : 0, (n + 1023) >> 10);
}

/* disk_claim - count n more bytes on disk for s, unless the budget would pass */
static enum km_status
disk_claim(struct spool *s, size_t n, struct kmerr *err)
{
	size_t max = __atomic_load_n(&disk_max, __ATOMIC_SEQ_CST);
	size_t cur = __atomic_load_n(&disk_used, __ATOMIC_SEQ_CST);

	do {
		if (max != 0 && (n > max || cur > max - n))
			return kmerr_set(err, KM_TEMPFAIL, KMERR_NONE,
			    "spool full: milter.spool_disk_max_mb (%zu MB) reached in %s "
			    "(%zu kB in spool files, %zu kB more needed)", max >> 20,
			    s->dir, cur >> 10, (n + 1023) >> 10);
	} while (!__atomic_compare_exchange_n(&disk_used, &cur, cur + n, 0,
	    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
	s->disk += n;
	return KM_OK;
}

/* spool_new - an empty spool that moves to dir past memmax bytes */
struct spool *
spool_new(const char *dir, size_t memmax)
{
	struct spool *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	if ((s->dir = strdup(dir)) == NULL) {
		free(s);
		return NULL;
	}
	s->memmax = memmax;
	s->fd = -1;
	return s;
}

/* unmap - drop a mapping made by spool_map */
static void
unmap(struct spool *s)
{
	if (s->map != NULL && s->map != MAP_FAILED)
		munmap(s->map, s->maplen);
	s->map = NULL;
	s->maplen = 0;
}

/* spool_free - release memory, close (and so remove) the temp file; returns NULL */
struct spool *
spool_free(struct spool *s)
{
	if (s == NULL)
		return NULL;
	unmap(s);
	if (s->fd >= 0)
		close(s->fd);
	if (s->disk > 0)
		__atomic_sub_fetch(&disk_used, s->disk, __ATOMIC_SEQ_CST);
	secmem_free(s->mem, s->cap);	/* a body is plaintext: wipe it */
	free(s->dir);
	free(s);
	return NULL;
}

/* open_tmp - an unlinked 0600 file in dir */
static int
open_tmp(const char *dir)
{
	char path[PATH_MAX];
	int fd;

#ifdef O_TMPFILE
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd;
#endif
	if (snprintf(path, sizeof(path), "%s/kmilter.XXXXXX", dir) >= (int)sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0)
		unlink(path);
	return fd;
}

/* write_all - write every byte or fail */
static int
write_all(int fd, const unsigned char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* grow - make room for need bytes in memory; the old buffer is wiped, never left to realloc */
static enum km_status
grow(struct spool *s, size_t need)
{
	size_t cap = s->cap ? s->cap : 16384;
	unsigned char *m;

	while (cap < need)
		cap *= 2;
	if (cap > s->memmax)
		cap = s->memmax;
	if ((m = malloc(cap)) == NULL)
		return KM_NOMEM;
	if (s->len > 0)
		memcpy(m, s->mem, s->len);
	secmem_free(s->mem, s->cap);
	s->mem = m;
	s->cap = cap;
	return KM_OK;
}

/* spool_append - add body bytes */
enum km_status
spool_append(struct spool *s, const void *data, size_t n, struct kmerr *err)
{
	unmap(s);
	if (s->fd < 0 && s->len + n <= s->memmax) {
		if (s->len + n > s->cap && grow(s, s->len + n) != KM_OK) {
			return kmerr_set(err, KM_NOMEM, KMERR_NONE,
			    "spool: out of memory");
		}
		memcpy(s->mem + s->len, data, n);
		s->len += n;
		return KM_OK;
	}
	if (disk_claim(s, s->fd < 0 ? s->len + n : n, err) != KM_OK)
		return KM_TEMPFAIL;
	if (s->fd < 0) {
		if ((s->fd = open_tmp(s->dir)) < 0) {
			return kmerr_set(err, KM_TEMPFAIL, KMERR_NONE,
			    "spool: cannot create a temporary file in %s: %s",
			    s->dir, strerror(errno));
		}
		if (write_all(s->fd, s->mem, s->len) < 0)
			goto fail;
		secmem_free(s->mem, s->cap);
		s->mem = NULL;
		s->cap = 0;
	}
	if (write_all(s->fd, data, n) < 0)
		goto fail;
	s->len += n;
	return KM_OK;
fail:
	return kmerr_set(err, KM_TEMPFAIL, KMERR_NONE,
	    "spool: cannot write to %s: %s",
	    s->dir, strerror(errno));
}

/* spool_size - bytes held */
size_t
spool_size(const struct spool *s)
{
	return s->len;
}

/* spool_on_disk - whether the content moved to a file */
int
spool_on_disk(const struct spool *s)
{
	return s->fd >= 0;
}

/* spool_map - the whole content as one readable byte range */
enum km_status
spool_map(struct spool *s, const unsigned char **data, size_t *len, struct kmerr *err)
{
	static const unsigned char empty[1];

	*len = s->len;
	if (s->fd < 0) {
		*data = s->mem ? s->mem : empty;
		return KM_OK;
	}
	if (s->map == NULL) {
		s->map = mmap(NULL, s->len, PROT_READ, MAP_SHARED, s->fd, 0);
		if (s->map == MAP_FAILED) {
			s->map = NULL;
			return kmerr_set(err, KM_TEMPFAIL, KMERR_NONE,
			    "spool: cannot map %zu bytes: %s", s->len,
			    strerror(errno));
		}
		s->maplen = s->len;
	}
	*data = s->map;
	return KM_OK;
}

/* spool_read - copy up to len bytes from offset off; *got = 0 at the end */
enum km_status
spool_read(struct spool *s, size_t off, void *buf, size_t len, size_t *got,
    struct kmerr *err)
{
	*got = 0;
	if (off >= s->len || len == 0)
		return KM_OK;
	if (len > s->len - off)
		len = s->len - off;
	if (s->fd < 0) {
		memcpy(buf, s->mem + off, len);
		*got = len;
		return KM_OK;
	}
	for (;;) {
		ssize_t r = pread(s->fd, buf, len, (off_t)off);

		if (r >= 0) {
			*got = (size_t)r;
			return KM_OK;
		}
		if (errno != EINTR)
			break;
	}
	return kmerr_set(err, KM_TEMPFAIL, KMERR_NONE,
	    "spool: cannot read the temporary file in %s: %s", s->dir,
	    strerror(errno));
}
