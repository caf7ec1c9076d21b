/*
 * inbound_spool.c - check a large multipart/signed entity from its spool
 * in bounded pieces (see inbound_spool.h).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>

#include "inbound_spool.h"
#include "mime.h"
#include "secmem.h"

#define WINDOW		65536		/* octets scanned at a time */
#define SIG_MAX		(1024 * 1024)	/* the signature part, at most */

/* A range of a spool, read as a BIO. */
struct range {
	struct spool	*sp;
	size_t		 start, off, end;
	int		 failed;
};

/* range_read - BIO read callback: the next octets of the range */
static int
range_read(BIO *b, char *buf, int len)
{
	struct range *r = BIO_get_data(b);
	size_t n = r->end - r->off, got;
	struct kmerr err;

	BIO_clear_retry_flags(b);
	if (len <= 0 || n == 0)
		return 0;
	if ((size_t)len < n)
		n = (size_t)len;
	if (spool_read(r->sp, r->off, buf, n, &got, &err) != KM_OK || got == 0) {
		r->failed = 1;
		return -1;
	}
	r->off += got;
	return (int)got;
}

/* range_ctrl - BIO control callback */
static long
range_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct range *r = BIO_get_data(b);

	(void)num;
	(void)ptr;
	if (cmd == BIO_CTRL_EOF)
		return r->off >= r->end;
	if (cmd == BIO_CTRL_RESET) {	/* cms_stream reads its input twice */
		r->off = r->start;
		r->failed = 0;
		return 1;
	}
	return cmd == BIO_CTRL_FLUSH;
}

static BIO_METHOD *range_method;
static pthread_once_t range_once = PTHREAD_ONCE_INIT;

static void
range_method_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
	    "spool range");

	if (m != NULL) {
		BIO_meth_set_read(m, range_read);
		BIO_meth_set_ctrl(m, range_ctrl);
	}
	range_method = m;
}

/*
 * delim_at - is the line at q a delimiter line of boundary b?  1 with
 * *close (the last one) and *next (the octet after its line end); 0 if
 * not; -1 when the spool cannot be read.
 */
static int
delim_at(struct spool *sp, size_t q, const char *b, size_t bl, int *close, size_t *next,
    struct kmerr *err)
{
	char line[2 + 70 + 2 + 80 + 2];
	size_t n, i;

	if (spool_read(sp, q, line, sizeof(line), &n, err) != KM_OK)
		return -1;
	if (n < 2 + bl || line[0] != '-' || line[1] != '-' || memcmp(line + 2, b, bl) != 0)
		return 0;
	i = 2 + bl;
	*close = i + 1 < n && line[i] == '-' && line[i + 1] == '-';
	if (*close)
		i += 2;
	while (i < n && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (i + 1 < n && line[i] == '\r' && line[i + 1] == '\n')
		i += 2;
	else if (i < n && line[i] == '\n')
		i++;
	else if (i < n)
		return 0;	/* a longer line ("--boundaryX") or padding past 80 */
	*next = q + i;
	return 1;
}

/*
 * next_delim - the first delimiter line at or after from (a line start):
 * its position (*d), whether it is the last, and where its line ends.
 * 1 found; 0 not before the end; -1 read error.
 */
static int
next_delim(struct spool *sp, size_t from, const char *b, size_t bl, size_t *d, int *close,
    size_t *next, struct kmerr *err)
{
	char pat[3 + 70], *win;
	size_t plen = 3 + bl, pos = from, got, size = spool_size(sp);
	int r = 0;

	if ((r = delim_at(sp, from, b, bl, close, next, err)) != 0) {
		*d = from;
		return r;
	}
	memcpy(pat, "\n--", 3);
	memcpy(pat + 3, b, bl);
	if ((win = malloc(WINDOW)) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		return -1;
	}
	while (r == 0 && pos < size) {
		const char *hit, *at;

		if (spool_read(sp, pos, win, WINDOW, &got, err) != KM_OK) {
			r = -1;
			break;
		}
		for (at = win; r == 0 && (hit = memmem(at, got - (size_t)(at - win), pat,
		    plen)) != NULL; at = hit + 1)
			if ((r = delim_at(sp, pos + (size_t)(hit - win) + 1, b, bl, close,
			    next, err)) == 1)
				*d = pos + (size_t)(hit - win) + 1;
		if (got < WINDOW)
			break;
		pos += got - (plen - 1);	/* a pattern across the edge */
	}
	free(win);
	return r;
}

/* part_end - where a part before the delimiter at d ends (no line break) */
static size_t
part_end(struct spool *sp, size_t start, size_t d)
{
	char two[2];
	size_t got;
	struct kmerr err;

	if (d >= start + 2 && spool_read(sp, d - 2, two, 2, &got, &err) == KM_OK && got == 2 &&
	    two[0] == '\r' && two[1] == '\n')
		return d - 2;
	if (d >= start + 1 && spool_read(sp, d - 1, two, 1, &got, &err) == KM_OK &&
	    got == 1 && two[0] == '\n')
		return d - 1;
	return d;
}

/* two_parts - the signed part and the signature part of the body from bo */
static enum km_status
two_parts(struct spool *sp, size_t bo, const char *b, size_t p[4], struct kmerr *err)
{
	size_t bl = b != NULL ? strlen(b) : 0, d, next;
	int close, r;

	if (bl == 0 || bl > 70)
		return kmerr_set(err, KM_PROTO, KMERR_BADINPUT, "multipart/signed "
		    "without a usable boundary");
	if ((r = next_delim(sp, bo, b, bl, &d, &close, &next, err)) <= 0 || close)
		goto bad;
	p[0] = next;
	if ((r = next_delim(sp, next, b, bl, &d, &close, &next, err)) <= 0 || close)
		goto bad;
	p[1] = part_end(sp, p[0], d) - p[0];
	p[2] = next;
	if ((r = next_delim(sp, next, b, bl, &d, &close, &next, err)) <= 0 || !close)
		goto bad;
	p[3] = part_end(sp, p[2], d) - p[2];
	return KM_OK;
bad:
	if (r < 0)
		return err->status == KM_NOMEM ? KM_NOMEM : KM_TEMPFAIL;
	return kmerr_set(err, KM_PROTO, KMERR_BADINPUT, "malformed multipart/signed: "
	    "%s", r == 0 ? "body truncated before the closing boundary" : "not 2 parts");
}

/* range_bio - a read BIO over [start, end) of a spool (rg is the caller's) */
static BIO *
range_bio(struct range *rg, struct spool *sp, size_t start, size_t end)
{
	BIO *b;

	pthread_once(&range_once, range_method_init);
	if (range_method == NULL || (b = BIO_new(range_method)) == NULL)
		return NULL;
	rg->sp = sp;
	rg->start = rg->off = start;
	rg->end = end;
	rg->failed = 0;
	BIO_set_data(b, rg);
	BIO_set_init(b, 1);
	return b;
}

/* verify_opaque - signed-data whose body starts at bo, read as a stream */
static enum km_status
verify_opaque(struct spool *sp, size_t bo, X509_STORE *store, struct revcheck *rv,
    const char *from, struct smime_verify_result *res, struct smime_signer_certs *sc,
    BIO *content_out, struct kmerr *err)
{
	struct range rg;
	enum km_status st;
	BIO *bio;

	if ((bio = range_bio(&rg, sp, bo, spool_size(sp))) == NULL)
		return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	st = smime_verify_stream(bio, CMS_IN_AUTO, store, rv, from, res, content_out, sc,
	    err);
	if (rg.failed && st == KM_OK)
		st = kmerr_set(err, KM_TEMPFAIL, KMERR_NONE, "reading the signed data "
		    "from the spool failed");
	BIO_free(bio);
	return st;
}

/* inbound_spool_verify - check a signed entity held in a spool */
enum km_status
inbound_spool_verify(struct spool *sp, size_t bo, const char *ctype, X509_STORE *store,
    struct revcheck *rv, const char *from, struct smime_verify_result *res,
    struct smime_signer_certs *sc, BIO *content_out, struct kmerr *err)
{
	struct mime_ctype *ct = NULL;
	struct range rg;
	char *sig = NULL;
	size_t p[4] = { 0, 0, 0, 0 }, got = 0;
	enum km_status st;
	BIO *bio = NULL;

	memset(res, 0, sizeof(*res));
	if (sc != NULL)
		memset(sc, 0, sizeof(*sc));
	pthread_once(&range_once, range_method_init);
	if ((st = mime_ctype_parse(ctype, &ct, err)) != KM_OK)
		goto out;
	if (mime_smime_kind(ct) != MIME_SMIME_SIGNED_DETACHED) {
		st = verify_opaque(sp, bo, store, rv, from, res, sc, content_out, err);
		goto out;
	}
	if ((st = two_parts(sp, bo, mime_ctype_param(ct, "boundary"), p, err)) != KM_OK)
		goto out;
	if (p[3] > SIG_MAX) {
		st = kmerr_set(err, KM_PROTO, KMERR_BADINPUT, "malformed multipart/signed: "
		    "a signature part of %zu octets", p[3]);
		goto out;
	}
	if ((sig = secmem_alloc(p[3] + 1)) == NULL ||
	    (bio = range_bio(&rg, sp, p[0], p[0] + p[1])) == NULL) {
		st = kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		goto out;
	}
	if ((st = spool_read(sp, p[2], sig, p[3], &got, err)) != KM_OK)
		goto out;
	st = smime_verify_detached(sig, got, bio, store, rv, from, res, sc, err);
	if (rg.failed)
		st = kmerr_set(err, KM_TEMPFAIL, KMERR_NONE, "reading the signed part "
		    "from the spool failed");
out:
	BIO_free(bio);
	if (sig != NULL)
		secmem_free(sig, p[3] + 1);
	mime_ctype_free(ct);
	return st;
}

/* inbound_spool_part0_head - the header block of the signed part */
char *
inbound_spool_part0_head(struct spool *sp, size_t bo, const char *ctype, size_t *len)
{
	struct mime_ctype *ct = NULL;
	size_t p[4], got = 0, hl, body;
	struct kmerr err;
	char *h = NULL, *r = NULL;

	if (mime_ctype_parse(ctype, &ct, &err) == KM_OK &&
	    two_parts(sp, bo, mime_ctype_param(ct, "boundary"), p, &err) == KM_OK &&
	    (h = secmem_alloc(WINDOW)) != NULL &&
	    spool_read(sp, p[0], h, p[1] < WINDOW ? p[1] : WINDOW, &got, &err) == KM_OK &&
	    mime_entity_split(h, got, &hl, &body, &err) == KM_OK &&
	    (r = secmem_alloc(body + 1)) != NULL) {
		memcpy(r, h, body);
		r[body] = '\0';
		*len = body;
	}
	if (h != NULL)
		secmem_free(h, WINDOW);
	mime_ctype_free(ct);
	return r;
}

/*
 * The header splitter: what is written through it goes to the next BIO
 * (a spool writer) except the entity's header block, kept in memory.
 */
struct split {
	char	*head;		/* secmem, SPLIT_HEAD_MAX */
	size_t	 hlen;
	int	 done;		/* the empty line after the header block seen */
	int	 overflow;	/* none in the first SPLIT_HEAD_MAX octets */
};

static BIO_METHOD *split_method;
static pthread_once_t split_once = PTHREAD_ONCE_INIT;

/* head_end - where the body starts in h[0, n) (after the empty line), or 0 */
static size_t
head_end(const char *h, size_t n, size_t from)
{
	if (from == 0 && n >= 1 && h[0] == '\n')
		return 1;
	if (from == 0 && n >= 2 && h[0] == '\r' && h[1] == '\n')
		return 2;
	for (size_t i = from; i + 1 < n; i++) {
		if (h[i] != '\n')
			continue;
		if (h[i + 1] == '\n')
			return i + 2;
		if (i + 2 < n && h[i + 1] == '\r' && h[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* split_write - BIO write callback */
static int
split_write(BIO *b, const char *in, int inl)
{
	struct split *sp = BIO_get_data(b);
	BIO *next = BIO_next(b);
	size_t n = inl > 0 ? (size_t)inl : 0, k = 0, e, from;

	BIO_clear_retry_flags(b);
	if (next == NULL)
		return -1;
	if (!sp->done && !sp->overflow) {
		k = n < SPLIT_HEAD_MAX - sp->hlen ? n : SPLIT_HEAD_MAX - sp->hlen;
		from = sp->hlen >= 2 ? sp->hlen - 2 : 0;
		memcpy(sp->head + sp->hlen, in, k);
		sp->hlen += k;
		if ((e = head_end(sp->head, sp->hlen, from)) > 0) {
			sp->done = 1;
			if (e < sp->hlen && BIO_write(next, sp->head + e,
			    (int)(sp->hlen - e)) != (int)(sp->hlen - e))
				return -1;
			secmem_wipe(sp->head + e, sp->hlen - e);
			sp->hlen = e;
		} else if (sp->hlen == SPLIT_HEAD_MAX) {
			sp->overflow = 1;	/* malformed: the caller says so */
			if (BIO_write(next, sp->head, (int)sp->hlen) != (int)sp->hlen)
				return -1;
		}
	}
	if (k < n && BIO_write(next, in + k, (int)(n - k)) != (int)(n - k))
		return -1;
	return inl;
}

/* split_ctrl - BIO control callback: the rest is the next BIO's */
static long
split_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	return BIO_next(b) != NULL ? BIO_ctrl(BIO_next(b), cmd, num, ptr) : 0;
}

/* split_destroy - wipe and free what was not taken */
static int
split_destroy(BIO *b)
{
	struct split *sp = BIO_get_data(b);

	if (sp != NULL) {
		if (sp->head != NULL)
			secmem_free(sp->head, SPLIT_HEAD_MAX);
		free(sp);
	}
	BIO_set_data(b, NULL);
	return 1;
}

static void
split_method_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_FILTER,
	    "entity header splitter");

	if (m != NULL) {
		BIO_meth_set_write(m, split_write);
		BIO_meth_set_ctrl(m, split_ctrl);
		BIO_meth_set_destroy(m, split_destroy);
	}
	split_method = m;
}

/* inbound_split_new - a header splitter in front of next */
BIO *
inbound_split_new(BIO *next)
{
	struct split *sp;
	BIO *b;

	pthread_once(&split_once, split_method_init);
	if (split_method == NULL || (sp = calloc(1, sizeof(*sp))) == NULL)
		return NULL;
	if ((sp->head = secmem_alloc(SPLIT_HEAD_MAX)) == NULL ||
	    (b = BIO_new(split_method)) == NULL) {
		if (sp->head != NULL)
			secmem_free(sp->head, SPLIT_HEAD_MAX);
		free(sp);
		return NULL;
	}
	BIO_set_data(b, sp);
	BIO_set_init(b, 1);
	return BIO_push(b, next);
}

/*
 * inbound_split_head - take the header block (with its empty line) out of
 * a splitter: a secmem copy, NUL-terminated (secmem_free(p, *len + 1)), or
 * NULL when it did not end in the first SPLIT_HEAD_MAX octets (or memory
 * ran out)
 */
char *
inbound_split_head(BIO *b, size_t *len)
{
	struct split *sp = BIO_get_data(b);
	char *h;

	if (sp == NULL || !sp->done || (h = secmem_alloc(sp->hlen + 1)) == NULL)
		return NULL;
	memcpy(h, sp->head, sp->hlen);
	h[sp->hlen] = '\0';
	*len = sp->hlen;
	return h;
}
