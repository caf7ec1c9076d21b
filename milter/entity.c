/*
 * entity.c - the top-level MIME entity of a message (see entity.h).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
	size_t need = bodylen + 64, o = 0;
	int have_ctype = 0;
	char *buf;

	for (int i = 0; i < m->nheaders; i++)
		if (entity_is_content_header(m->headers[i].name))
			need += 2 * (strlen(m->headers[i].name) + strlen(m->headers[i].value)) + 6;
	if ((buf = secmem_alloc(need)) == NULL)
		return KM_NOMEM;
	for (int i = 0; i < m->nheaders; i++) {
		if (!entity_is_content_header(m->headers[i].name))
			continue;
		have_ctype |= strcasecmp(m->headers[i].name, "Content-Type") == 0;
		o = put_crlf(buf, o, m->headers[i].name);
		o = put_crlf(buf, o, ": ");
		o = put_crlf(buf, o, m->headers[i].value);
		o = put_crlf(buf, o, "\r\n");
	}
	if (!have_ctype)
		o = put_crlf(buf, o, "Content-Type: text/plain; charset=us-ascii\r\n");
	o = put_crlf(buf, o, "\r\n");
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
		why = "; RFC 9788 hp=cipher protected headers are not shown yet";
	else if (hp != NULL && strcasecmp(hp, "clear") == 0)
		why = "; RFC 9788 hp=clear protected headers are not shown yet";
	log_info("%s: %d header(s) inside the S/MIME content not made message headers "
	    "(only Content-* are%s): %s", message_qid(m), n, why, names);
	mime_ctype_free(ct);
}

/*
 * entity_replace - verdict changes that make the message carry a new entity.
 * Only the entity's Content-* headers become message headers.  Whatever
 * else a sender wrote inside encrypted or signed content (From,
 * Authentication-Results, X-Kmilter-*, Received, ...) must never look as
 * if the gateway or the sending MTA wrote it, so it is dropped; that
 * includes RFC 9788 protected headers (hp="cipher"/"clear"), which a
 * later change may show to the user properly.  The body is left as it is.
 */
enum km_status
entity_replace(struct verdict *v, const struct message *m, const char *entity, size_t len,
    struct kmerr *err)
{
	struct mime_headers *h = NULL;
	size_t hdr_len, body_off;
	enum km_status st;
	unsigned char *body;
	char names[160] = "";
	int ndropped = 0;

	if ((st = mime_entity_split(entity, len, &hdr_len, &body_off, err)) != KM_OK)
		return st;
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
	if ((body = malloc(len - body_off + 1)) == NULL) {
		st = KM_NOMEM;
		goto out;
	}
	memcpy(body, entity + body_off, len - body_off);
	verdict_set_body(v, body, len - body_off);
	st = KM_OK;
out:
	mime_headers_free(h);
	if (st == KM_NOMEM)
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	return st;
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
