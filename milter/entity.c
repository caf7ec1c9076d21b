/*
 * entity.c - the top-level MIME entity of a message (see entity.h).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/buffer.h>
#include <openssl/crypto.h>

#include "entity.h"
#include "log.h"
#include "mime.h"
#include "secmem.h"

/* entity_is_content_header - is this a Content-* header (part of the entity)? */
int
entity_is_content_header(const char *name)
{
	return strncasecmp(name, "Content-", 8) == 0;
}

/* put_crlf - append s to dst converting bare LF to CRLF; returns new length */
static size_t
put_crlf(char *dst, size_t o, const char *s)
{
	for (; *s; s++) {
		if (*s == '\n' && (o == 0 || dst[o - 1] != '\r'))
			dst[o++] = '\r';
		dst[o++] = *s;
	}
	return o;
}

/* entity_from_message - Content-* headers, an empty line, the body (CRLF) */
enum km_status
entity_from_message(const struct message *m, const unsigned char *body, size_t bodylen,
    char **out, size_t *outlen)
{
	struct entity_extra none = { 0 };

	return entity_build(m, &none, body, bodylen, out, outlen);
}

/*
 * entity_build - the message's entity with what header protection adds:
 * a parameter on the Content-Type, header lines after the Content-*
 * ones, text in front of the body (see entity.h).
 */
enum km_status
entity_build(const struct message *m, const struct entity_extra *x,
    const unsigned char *body, size_t bodylen, char **out, size_t *outlen)
{
	const char *deflt = "text/plain; charset=us-ascii";
	const char *param = x->ctype_param ? x->ctype_param : "";
	const char *lines = x->lines ? x->lines : "", *prefix = x->prefix ? x->prefix : "";
	size_t need = bodylen + 2 * (strlen(deflt) + strlen(param) + strlen(lines) +
	    strlen(prefix)) + 64, o = 0;
	int have_ctype = 0;
	char *buf;

	for (int i = 0; i < m->nheaders; i++)
		if (entity_is_content_header(m->headers[i].name))
			need += 2 * (strlen(m->headers[i].name) + strlen(m->headers[i].value)) + 6;
	if ((buf = secmem_alloc(need)) == NULL)
		return KM_NOMEM;
	for (int i = 0; i < m->nheaders; i++) {
		int first_ctype = !have_ctype &&
		    strcasecmp(m->headers[i].name, "Content-Type") == 0;

		if (!entity_is_content_header(m->headers[i].name))
			continue;
		have_ctype |= first_ctype;
		o = put_crlf(buf, o, m->headers[i].name);
		o = put_crlf(buf, o, ": ");
		o = put_crlf(buf, o, m->headers[i].value);
		if (first_ctype)
			o = put_crlf(buf, o, param);
		o = put_crlf(buf, o, "\r\n");
	}
	if (!have_ctype) {
		o = put_crlf(buf, o, "Content-Type: ");
		o = put_crlf(buf, o, deflt);
		o = put_crlf(buf, o, param);
		o = put_crlf(buf, o, "\r\n");
	}
	o = put_crlf(buf, o, lines);
	o = put_crlf(buf, o, "\r\n");
	o = put_crlf(buf, o, prefix);
	memcpy(buf + o, body, bodylen);
	*out = buf;
	*outlen = o + bodylen;
	return KM_OK;
}

/* note_dropped - add a header name (printable, bounded) to the list for the log */
static void
note_dropped(char *buf, size_t len, int *n, const char *name)
{
	size_t o = strlen(buf);

	(*n)++;
	if (o + 3 >= len)
		return;
	if (o > 0) {
		buf[o++] = ',';
		buf[o++] = ' ';
	}
	for (; *name && o + 4 < len; name++)
		buf[o++] = isalnum((unsigned char)*name) || *name == '-' || *name == '_' ?
		    *name : '?';
	if (*name)
		for (int k = 0; k < 3 && o + 1 < len; k++)
			buf[o++] = '.';
	buf[o] = '\0';
}

/* log_dropped - say which inner headers stayed out of the message header */
static void
log_dropped(const struct message *m, const struct mime_headers *h, int n, const char *names)
{
	const char *ctype = mime_headers_get(h, "Content-Type");
	struct mime_ctype *ct = NULL;
	const char *hp = NULL, *why = "";

	if (ctype != NULL && mime_ctype_parse(ctype, &ct, NULL) == KM_OK)
		hp = mime_ctype_param(ct, "hp");
	if (hp != NULL && strcasecmp(hp, "cipher") == 0)
		why = "; RFC 9788 hp=cipher: the protected ones are applied by hp.c";
	else if (hp != NULL && strcasecmp(hp, "clear") == 0)
		why = "; RFC 9788 hp=clear: the protected ones are applied by hp.c";
	log_info("%s: %d header(s) inside the S/MIME content not made message headers "
	    "(only Content-* are%s): %s", message_qid(m), n, why, names);
	mime_ctype_free(ct);
}

/*
 * replace_headers - the header changes of entity_replace(): the old
 * Content-* headers deleted, the new entity's (its first hdr_len bytes)
 * added.  Only the entity's Content-* headers become message headers.
 * Whatever else a sender wrote inside encrypted or signed content (From,
 * Authentication-Results, X-Kmilter-*, Received, ...) must never look as
 * if the gateway or the sending MTA wrote it, so it is dropped; that
 * includes RFC 9788 protected headers (hp="cipher"/"clear"), which
 * hp_apply() sets on the message itself (hp.h).
 */
static enum km_status
replace_headers(struct verdict *v, const struct message *m, const char *entity,
    size_t hdr_len, struct kmerr *err)
{
	struct mime_headers *h = NULL;
	enum km_status st;
	char names[160] = "";
	int ndropped = 0;

	if ((st = mime_headers_parse(entity, hdr_len, &h, err)) != KM_OK)
		return st;
	/* Delete the old Content-* headers, last occurrence first, so the
	 * indexes of the ones still to delete do not move. */
	for (int i = m->nheaders - 1; i >= 0; i--) {
		int index = 0;

		if (!entity_is_content_header(m->headers[i].name))
			continue;
		for (int j = 0; j <= i; j++)
			index += strcasecmp(m->headers[j].name, m->headers[i].name) == 0;
		if ((st = verdict_header_change(v, m->headers[i].name, index, NULL)) != KM_OK)
			goto out;
	}
	if (message_header(m, "MIME-Version") == NULL &&
	    (st = verdict_header_add(v, "MIME-Version", "1.0")) != KM_OK)
		goto out;
	for (size_t i = 0; i < mime_headers_count(h); i++) {
		const char *name = mime_headers_name(h, i);

		if (strcasecmp(name, "MIME-Version") == 0)
			continue;
		if (!entity_is_content_header(name)) {
			note_dropped(names, sizeof(names), &ndropped, name);
			continue;
		}
		if ((st = verdict_header_add(v, name, mime_headers_value(h, i))) != KM_OK)
			goto out;
	}
	if (ndropped)
		log_dropped(m, h, ndropped, names);
	st = KM_OK;
out:
	mime_headers_free(h);
	if (st == KM_NOMEM)
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	return st;
}

/* entity_replace - verdict changes that make the message carry a new entity */
enum km_status
entity_replace(struct verdict *v, const struct message *m, const char *entity, size_t len,
    struct kmerr *err)
{
	size_t hdr_len, body_off;
	enum km_status st;
	unsigned char *body;

	if ((st = mime_entity_split(entity, len, &hdr_len, &body_off, err)) != KM_OK)
		return st;
	if ((st = replace_headers(v, m, entity, hdr_len, err)) != KM_OK)
		return st;
	if ((body = malloc(len - body_off + 1)) == NULL)
		return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	memcpy(body, entity + body_off, len - body_off);
	verdict_set_body(v, body, len - body_off);
	return KM_OK;
}

/* entity_replace_spool - the same with the header block in memory, the body in a spool */
enum km_status
entity_replace_spool(struct verdict *v, const struct message *m, const char *head,
    size_t headlen, struct spool *body, struct kmerr *err)
{
	size_t hdr_len, body_off;
	enum km_status st;

	if ((st = mime_entity_split(head, headlen, &hdr_len, &body_off, err)) != KM_OK)
		return st;
	if (body_off != headlen)
		return kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "entity: %zu bytes after the header block", headlen - body_off);
	if ((st = replace_headers(v, m, head, hdr_len, err)) != KM_OK)
		return st;
	verdict_set_body_spool(v, body);
	return KM_OK;
}

/*
 * The split writer: a sink BIO that sends what is written to it up to and
 * including the first empty line (CRLF CRLF) to one BIO, the rest to
 * another.  What kmilter writes starts with a small header block.
 */
struct split {
	BIO	*head;
	BIO	*body;
	int	 state;		/* bytes of "\r\n\r\n" matched; 4: in the body */
	size_t	 headlen;
};

static BIO_METHOD *split_method;
static CRYPTO_ONCE split_once = CRYPTO_ONCE_STATIC_INIT;

/* split_write - the BIO write callback */
static int
split_write(BIO *b, const char *buf, int len)
{
	struct split *sp = BIO_get_data(b);
	static const char blank[] = "\r\n\r\n";
	int i = 0;

	BIO_clear_retry_flags(b);
	for (; i < len && sp->state < 4; i++) {
		sp->state = buf[i] == blank[sp->state] ? sp->state + 1 :
		    buf[i] == '\r' ? 1 : 0;
		sp->headlen++;
	}
	if ((i > 0 && (sp->headlen > ENTITY_HEAD_MAX ||
	    BIO_write(sp->head, buf, i) != i)) ||
	    (i < len && BIO_write(sp->body, buf + i, len - i) != len - i))
		return -1;
	return len;
}

/* split_ctrl - flush passes to both; nothing else is asked of a sink */
static long
split_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct split *sp = BIO_get_data(b);

	(void)num;
	(void)ptr;
	if (cmd != BIO_CTRL_FLUSH)
		return 0;
	return BIO_flush(sp->head) == 1 && BIO_flush(sp->body) == 1;
}

/* split_create, split_destroy - a split writer's state */
static int
split_create(BIO *b)
{
	struct split *sp = calloc(1, sizeof(*sp));

	if (sp == NULL)
		return 0;
	BIO_set_data(b, sp);
	BIO_set_init(b, 1);
	return 1;
}

static int
split_destroy(BIO *b)
{
	free(BIO_get_data(b));
	BIO_set_data(b, NULL);
	return 1;
}

static void
split_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
	    "kmilter entity split");

	if (m == NULL)
		return;
	BIO_meth_set_write(m, split_write);
	BIO_meth_set_ctrl(m, split_ctrl);
	BIO_meth_set_create(m, split_create);
	BIO_meth_set_destroy(m, split_destroy);
	split_method = m;
}

/* entity_split_writer - a BIO: the header block to head, the rest to body */
BIO *
entity_split_writer(BIO *head, BIO *body)
{
	struct split *sp;
	BIO *b;

	if (!CRYPTO_THREAD_run_once(&split_once, split_init) || split_method == NULL ||
	    (b = BIO_new(split_method)) == NULL)
		return NULL;
	sp = BIO_get_data(b);
	sp->head = head;
	sp->body = body;
	return b;
}

/* entity_bio_sized - a memory BIO with room for about hint bytes */
BIO *
entity_bio_sized(size_t hint)
{
	BIO *b = BIO_new(BIO_s_mem());
	BUF_MEM *bm;

	if (b == NULL || hint == 0)
		return b;
	/* BUF_MEM_grow_clean allocates 4/3 of what it is asked for */
	if ((bm = BUF_MEM_new()) == NULL || BUF_MEM_grow_clean(bm, hint / 4 * 3 + 3) == 0) {
		BUF_MEM_free(bm);
		BIO_free(b);
		return NULL;
	}
	bm->length = 0;
	BIO_set_mem_buf(b, bm, BIO_CLOSE);	/* frees the BIO's empty buffer */
	return b;
}

/* entity_from_bio - a memory BIO's bytes in a secmem, NUL-terminated buffer */
char *
entity_from_bio(BIO *b, size_t *len)
{
	char *data, *copy;
	long n = BIO_get_mem_data(b, &data);

	if (n < 0 || (copy = secmem_alloc((size_t)n + 1)) == NULL)
		return NULL;
	memcpy(copy, data, (size_t)n);
	copy[n] = '\0';
	*len = (size_t)n;
	return copy;
}
