/*
 * spool_bio.c - OpenSSL BIOs over a spool: spool_reader() reads the content
 * from its start with spool_read(), spool_writer() appends with
 * spool_append().  See spool.h.
 */
#include <limits.h>
#include <stdlib.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>

#include "spool.h"

/* What a spool BIO holds: the borrowed spool, its read offset, the last error. */
struct spool_bio {
	struct spool	*spool;
	size_t		 off;
	struct kmerr	 err;
	int		 failed;
};

static BIO_METHOD *reader_method;
static BIO_METHOD *writer_method;

/* bio_read - BIO read callback of a reader */
static int
bio_read(BIO *b, char *buf, int len)
{
	struct spool_bio *sb = BIO_get_data(b);
	size_t got;

	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	if (spool_read(sb->spool, sb->off, buf, (size_t)len, &got, &sb->err) != KM_OK) {
		sb->failed = 1;
		return -1;
	}
	sb->off += got;
	return (int)got;
}

/* bio_write - BIO write callback of a writer */
static int
bio_write(BIO *b, const char *buf, int len)
{
	struct spool_bio *sb = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	if (sb->failed || spool_append(sb->spool, buf, (size_t)len, &sb->err) != KM_OK) {
		sb->failed = 1;
		return -1;
	}
	return len;
}

/* bio_ctrl - what OpenSSL's filters ask of a source or sink */
static long
bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct spool_bio *sb = BIO_get_data(b);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_EOF:
		return sb->off >= spool_size(sb->spool);
	case BIO_CTRL_RESET:
		sb->off = 0;
		return 1;
	case BIO_CTRL_PENDING:
		return (long)(spool_size(sb->spool) - sb->off > LONG_MAX ?
		    LONG_MAX : spool_size(sb->spool) - sb->off);
	default:
		return 0;
	}
}

/* bio_create, bio_destroy - a BIO's private state */
static int
bio_create(BIO *b)
{
	struct spool_bio *sb = calloc(1, sizeof(*sb));

	if (sb == NULL)
		return 0;
	BIO_set_data(b, sb);
	BIO_set_init(b, 1);
	return 1;
}

static int
bio_destroy(BIO *b)
{
	free(BIO_get_data(b));
	BIO_set_data(b, NULL);
	return 1;
}

/* method - build a BIO_METHOD once (first use happens before threads race: see new_bio) */
static BIO_METHOD *
method(const char *name, int writer)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, name);

	if (m == NULL)
		return NULL;
	if (writer)
		BIO_meth_set_write(m, bio_write);
	else
		BIO_meth_set_read(m, bio_read);
	BIO_meth_set_ctrl(m, bio_ctrl);
	BIO_meth_set_create(m, bio_create);
	BIO_meth_set_destroy(m, bio_destroy);
	return m;
}

static CRYPTO_ONCE methods_once = CRYPTO_ONCE_STATIC_INIT;

static void
methods_init(void)
{
	reader_method = method("kmilter spool reader", 0);
	writer_method = method("kmilter spool writer", 1);
}

/* new_bio - a BIO of the given kind over s; NULL when out of memory */
static BIO *
new_bio(struct spool *s, int writer)
{
	BIO *b;

	if (!CRYPTO_THREAD_run_once(&methods_once, methods_init))
		return NULL;
	if ((writer ? writer_method : reader_method) == NULL)
		return NULL;
	if ((b = BIO_new(writer ? writer_method : reader_method)) == NULL)
		return NULL;
	((struct spool_bio *)BIO_get_data(b))->spool = s;
	return b;
}

/* spool_reader - a read BIO over the content from its start */
BIO *
spool_reader(struct spool *s)
{
	return new_bio(s, 0);
}

/* spool_writer - a write BIO that appends to s */
BIO *
spool_writer(struct spool *s)
{
	return new_bio(s, 1);
}

/* spool_writer_error - why the last write through a spool BIO failed (NULL if none did) */
const struct kmerr *
spool_writer_error(BIO *b)
{
	struct spool_bio *sb = BIO_get_data(b);

	return sb != NULL && sb->failed ? &sb->err : NULL;
}
