/*
 * smime_b64.c - the b64crlf filter BIO: base64 in CRLF lines of 76
 * characters (see smime_b64.h).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>

#include "secmem.h"
#include "smime_b64.h"

#define B64_IN_LINE	57	/* bytes per 76-character base64 line */
#define B64_BATCH	64	/* lines encoded per write to the next BIO */

/*
 * The b64crlf filter BIO: base64 in lines of 76 characters ending in CRLF.
 * BIO_flush() passes through; smime_b64_finish() writes the last, padded line.
 */
struct b64ctx {
	unsigned char	 in[B64_IN_LINE];
	size_t		 n;
	unsigned char	 out[B64_BATCH * 78 + 1];
};

static BIO_METHOD *b64_method;
static pthread_once_t b64_once = PTHREAD_ONCE_INIT;

/* smime_b64_emit - write bytes to the next BIO completely */
int
smime_b64_emit(BIO *next, const unsigned char *p, size_t n)
{
	while (n > 0) {
		size_t w = 0;

		if (BIO_write_ex(next, p, n, &w) != 1 || w == 0)
			return 0;
		p += w;
		n -= w;
	}
	return 1;
}

/* b64_write - encode whole lines, keep the rest for later */
static int
b64_write(BIO *b, const char *data, size_t len, size_t *written)
{
	struct b64ctx *c = BIO_get_data(b);
	BIO *next = BIO_next(b);
	const unsigned char *p = (const unsigned char *)data;
	size_t left = len, o;

	*written = 0;
	if (c == NULL || next == NULL)
		return 0;
	/* Complete a pending line first. */
	if (c->n > 0) {
		size_t k = B64_IN_LINE - c->n;

		if (k > left)
			k = left;
		memcpy(c->in + c->n, p, k);
		c->n += k;
		p += k;
		left -= k;
		if (c->n < B64_IN_LINE) {
			*written = len;
			return 1;
		}
		o = (size_t)EVP_EncodeBlock(c->out, c->in, B64_IN_LINE);
		c->out[o++] = '\r';
		c->out[o++] = '\n';
		if (!smime_b64_emit(next, c->out, o))
			return 0;
		c->n = 0;
	}
	while (left >= B64_IN_LINE) {
		size_t lines = left / B64_IN_LINE;

		if (lines > B64_BATCH)
			lines = B64_BATCH;
		o = 0;
		for (size_t i = 0; i < lines; i++) {
			o += (size_t)EVP_EncodeBlock(c->out + o, p,
			    B64_IN_LINE);
			c->out[o++] = '\r';
			c->out[o++] = '\n';
			p += B64_IN_LINE;
			left -= B64_IN_LINE;
		}
		if (!smime_b64_emit(next, c->out, o))
			return 0;
	}
	memcpy(c->in, p, left);
	c->n = left;
	*written = len;
	return 1;
}

/* b64_ctrl - pass controls to the next BIO */
static long
b64_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	BIO *next = BIO_next(b);

	if (next == NULL)
		return 0;
	return BIO_ctrl(next, cmd, num, ptr);
}

/* b64_create - allocate the filter state */
static int
b64_create(BIO *b)
{
	struct b64ctx *c = secmem_alloc(sizeof(*c));

	if (c == NULL)
		return 0;
	BIO_set_data(b, c);
	BIO_set_init(b, 1);
	return 1;
}

/* b64_destroy - free the filter state (wiped: opaque signed-data passes
   through it with its content in clear) */
static int
b64_destroy(BIO *b)
{
	secmem_free(BIO_get_data(b), sizeof(struct b64ctx));
	BIO_set_data(b, NULL);
	return 1;
}

/* b64_method_init - build the BIO_METHOD once */
static void
b64_method_init(void)
{
	BIO_METHOD *m;
	int type = BIO_get_new_index();

	if (type == -1)
		return;
	m = BIO_meth_new(type | BIO_TYPE_FILTER, "kmilter base64 crlf");
	if (m == NULL)
		return;
	if (!BIO_meth_set_write_ex(m, b64_write) ||
	    !BIO_meth_set_ctrl(m, b64_ctrl) ||
	    !BIO_meth_set_create(m, b64_create) ||
	    !BIO_meth_set_destroy(m, b64_destroy)) {
		BIO_meth_free(m);
		return;
	}
	b64_method = m;
}

/* smime_b64_new - a new b64crlf filter pushed on next */
BIO *
smime_b64_new(BIO *next)
{
	BIO *b;

	if (pthread_once(&b64_once, b64_method_init) != 0 ||
	    b64_method == NULL)
		return NULL;
	if ((b = BIO_new(b64_method)) == NULL)
		return NULL;
	return BIO_push(b, next);
}

/* smime_b64_finish - write the last line (padded) and flush */
int
smime_b64_finish(BIO *b)
{
	struct b64ctx *c = BIO_get_data(b);
	size_t o;

	if (c->n > 0) {
		o = (size_t)EVP_EncodeBlock(c->out, c->in, (int)c->n);
		c->out[o++] = '\r';
		c->out[o++] = '\n';
		if (!smime_b64_emit(BIO_next(b), c->out, o))
			return 0;
		c->n = 0;
	}
	return BIO_flush(BIO_next(b)) == 1;
}

/* smime_b64_free - pop the filter from its chain and free it */
void
smime_b64_free(BIO *b)
{
	if (b != NULL) {
		BIO_pop(b);
		BIO_free(b);
	}
}
