/*
 * hp.c - RFC 9788 header protection, both ways (see hp.h).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "entity.h"
#include "hp.h"
#include "log.h"
#include "mime.h"
#include "secmem.h"

#define HP_HIDDEN	"[...]"
#define HP_MAXVALUE	998

/* The user-facing fields kmilter protects, each at most once (RFC 5322 3.6). */
static const char *const hp_fields[] = {
	"From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To",
	"In-Reply-To", "References", NULL
};

/* A growing text buffer that is wiped when freed (it holds header values). */
struct hbuf {
	char	*p;
	size_t	 len, cap;
	int	 nomem;
};

/* hbuf_addn - append n bytes (any bytes; kept NUL-terminated); nomem is sticky */
static void
hbuf_addn(struct hbuf *b, const char *s, size_t n)
{
	char *np;

	if (b->nomem)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->len + n + 1) * 2;

		if ((np = secmem_alloc(cap)) == NULL) {
			b->nomem = 1;
			return;
		}
		if (b->p != NULL) {
			memcpy(np, b->p, b->len);
			secmem_free(b->p, b->cap);
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* hbuf_add - append a string */
static void
hbuf_add(struct hbuf *b, const char *s)
{
	hbuf_addn(b, s, strlen(s));
}

/* hbuf_free - wipe and free the buffer */
static void
hbuf_free(struct hbuf *b)
{
	if (b->p != NULL)
		secmem_free(b->p, b->cap);
	memset(b, 0, sizeof(*b));
}

/* hbuf_field - "Name: value\r\n" (prefix "HP-Outer: " when outer) */
static void
hbuf_field(struct hbuf *b, int outer, const char *name, const char *value)
{
	if (outer)
		hbuf_add(b, "HP-Outer: ");
	hbuf_add(b, name);
	hbuf_add(b, ": ");
	hbuf_add(b, value);
	hbuf_add(b, "\r\n");
}

/* list_add - append a word to a comma-separated list, cut at the buffer's end */
static void
list_add(char *buf, size_t len, const char *word)
{
	size_t o = strlen(buf);

	snprintf(buf + o, len - o, "%s%s", o ? "," : "", word);
}

/* list_has - is the word one of the list's? */
static int
list_has(const char *list, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = list; *p; p += strcspn(p, ","), p += *p == ',')
		if (strncmp(p, word, n) == 0 && (p[n] == ',' || p[n] == '\0'))
			return 1;
	return 0;
}

/* count_header - how many times the message has a header */
static int
count_header(const struct message *m, const char *name)
{
	int n = 0;

	for (int i = 0; i < m->nheaders; i++)
		n += strcasecmp(m->headers[i].name, name) == 0;
	return n;
}

/* nth_header - the value of the n-th (1-based) header of that name, or NULL */
static const char *
nth_header(const struct message *m, const char *name, int n)
{
	for (int i = 0; i < m->nheaders; i++)
		if (strcasecmp(m->headers[i].name, name) == 0 && --n == 0)
			return m->headers[i].value;
	return NULL;
}

/* ctype_hp - the hp parameter of a Content-Type value, copied into buf ("" if none) */
static int
ctype_hp(const char *ctype, char *buf, size_t len, int *is_text_plain)
{
	struct mime_ctype *ct = NULL;
	const char *hp;

	*buf = '\0';
	if (is_text_plain != NULL)
		*is_text_plain = ctype == NULL;
	if (ctype == NULL)
		return 0;
	if (mime_ctype_parse(ctype, &ct, NULL) != KM_OK)
		return -1;
	if ((hp = mime_ctype_param(ct, "hp")) != NULL)
		snprintf(buf, len, "%s", hp);
	if (is_text_plain != NULL)
		*is_text_plain = strcmp(mime_ctype_type(ct), "text") == 0 &&
		    strcmp(mime_ctype_subtype(ct), "plain") == 0;
	mime_ctype_free(ct);
	return 0;
}

/* subject_ok - a Subject a Legacy Display Element shows as written: printable ASCII */
static int
subject_ok(const char *subject)
{
	if (subject == NULL || strlen(subject) > 900 || strstr(subject, "=?"))
		return 0;
	for (const char *p = subject; *p; p++)
		if (!isprint((unsigned char)*p))
			return 0;
	return 1;
}

/* cte_ok - text that can take lines in front of it as they are: 7bit or 8bit */
static int
cte_ok(const char *cte)
{
	return cte == NULL || strcasecmp(cte, "7bit") == 0 || strcasecmp(cte, "8bit") == 0;
}

/* legacy_part - the first part, its headers rewritten with the marker, the element, its body */
static void
legacy_part(struct hbuf *nb, const struct mime_headers *h, const char *subject,
    const char *pbody, size_t pblen)
{
	if (mime_headers_get(h, "Content-Type") == NULL)
		hbuf_add(nb, "Content-Type: text/plain; charset=us-ascii; hp-legacy-display=\"1\"\r\n");
	for (size_t i = 0; i < mime_headers_count(h); i++) {
		hbuf_add(nb, mime_headers_name(h, i));
		hbuf_add(nb, ": ");
		hbuf_add(nb, mime_headers_value(h, i));
		if (strcasecmp(mime_headers_name(h, i), "Content-Type") == 0)
			hbuf_add(nb, "; hp-legacy-display=\"1\"");
		hbuf_add(nb, "\r\n");
	}
	hbuf_add(nb, "\r\nSubject: ");
	hbuf_add(nb, subject);
	hbuf_add(nb, "\r\n\r\n");
	hbuf_addn(nb, pbody, pblen);
}

/*
 * legacy_first_part - a multipart/mixed body whose first part is text/plain
 * (7bit or 8bit, not marked yet) with the Legacy Display Element in that
 * part, in nb.  1 when made; 0 (nothing in nb) when the body is not so.
 */
static int
legacy_first_part(const char *ctype, const char *subject, const char *body, size_t len,
    struct hbuf *nb)
{
	struct mime_ctype *ct = NULL, *pct = NULL;
	struct mime_parts *parts = NULL;
	struct mime_headers *h = NULL;
	const char *boundary, *p, *pctype;
	size_t hl, bo;
	int done = 0;

	if (ctype == NULL || mime_ctype_parse(ctype, &ct, NULL) != KM_OK ||
	    strcmp(mime_ctype_type(ct), "multipart") != 0 ||
	    strcmp(mime_ctype_subtype(ct), "mixed") != 0 ||
	    (boundary = mime_ctype_param(ct, "boundary")) == NULL ||
	    mime_multipart_split(body, len, boundary, &parts, NULL) != KM_OK ||
	    parts->count == 0)
		goto out;
	p = body + parts->part[0].off;
	if (mime_entity_split(p, parts->part[0].len, &hl, &bo, NULL) != KM_OK ||
	    mime_headers_parse(p, hl, &h, NULL) != KM_OK ||
	    !cte_ok(mime_headers_get(h, "Content-Transfer-Encoding")))
		goto out;
	if ((pctype = mime_headers_get(h, "Content-Type")) != NULL &&
	    (mime_ctype_parse(pctype, &pct, NULL) != KM_OK ||
	    strcmp(mime_ctype_type(pct), "text") != 0 ||
	    strcmp(mime_ctype_subtype(pct), "plain") != 0 ||
	    mime_ctype_param(pct, "hp-legacy-display") != NULL))
		goto out;
	hbuf_addn(nb, body, parts->part[0].off);
	legacy_part(nb, h, subject, p + bo, parts->part[0].len - bo);
	hbuf_addn(nb, p + parts->part[0].len, len - parts->part[0].off - parts->part[0].len);
	done = !nb->nomem;
out:
	mime_headers_free(h);
	mime_parts_free(parts);
	mime_ctype_free(pct);
	mime_ctype_free(ct);
	return done;
}

/* protect_lines - the protected fields, then (encrypted) the HP-Outer records */
static void
protect_lines(struct hbuf *b, const struct message *m, const struct hp_out *o)
{
	for (int pass = 0; pass < (o->cipher ? 2 : 1); pass++)
		for (int i = 0; i < m->nheaders; i++) {
			const char *name = NULL, *value = m->headers[i].value;

			for (int k = 0; hp_fields[k] != NULL; k++)
				if (strcasecmp(m->headers[i].name, hp_fields[k]) == 0)
					name = hp_fields[k];
			if (name == NULL)
				continue;
			if (strcmp(name, "Subject") == 0 && o->subject != NULL)
				value = o->subject;
			if (pass == 1 && strcmp(name, "Subject") == 0 && o->hide_subject)
				value = HP_HIDDEN;
			hbuf_field(b, pass, name, value);
		}
}

/* hp_protect - the entity to sign or encrypt, with its headers protected */
enum km_status
hp_protect(const struct message *m, const struct hp_out *o, const unsigned char *body,
    size_t bodylen, char **out, size_t *outlen, struct hp_report *rep, struct kmerr *err)
{
	struct entity_extra x = { 0 };
	struct hbuf lines = { 0 }, prefix = { 0 }, nb = { 0 };
	const char *subject = o->subject ? o->subject : message_header(m, "Subject");
	const char *ctype = message_header(m, "Content-Type");
	char have[16], param[64];
	int text_plain = 0, legacy = o->cipher && o->hide_subject && subject_ok(subject);
	enum km_status st;

	memset(rep, 0, sizeof(*rep));
	if (ctype_hp(ctype, have, sizeof(have), &text_plain) == 0 &&
	    *have != '\0') {
		log_info("%s: outbound: the client protected the headers already (hp=\"%.20s\")",
		    message_qid(m), have);
		return entity_build(m, &x, body, bodylen, out, outlen) == KM_OK ? KM_OK :
		    kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	}
	snprintf(rep->hp, sizeof(rep->hp), "%s", o->cipher ? "cipher" : "clear");
	protect_lines(&lines, m, o);
	/* The element: in front of a text/plain body, else in a
	   multipart/mixed body's first text/plain part. */
	text_plain &= legacy && cte_ok(message_header(m, "Content-Transfer-Encoding"));
	if (text_plain) {
		hbuf_add(&prefix, "Subject: ");
		hbuf_add(&prefix, subject);
		hbuf_add(&prefix, "\r\n\r\n");
	} else if (legacy && legacy_first_part(ctype, subject, (const char *)body, bodylen, &nb)) {
		body = (const unsigned char *)nb.p;
		bodylen = nb.len;
	}
	rep->legacy = text_plain || nb.p != NULL;
	snprintf(param, sizeof(param), "; hp=\"%s\"%s", rep->hp,
	    text_plain ? "; hp-legacy-display=\"1\"" : "");
	x.ctype_param = param;
	x.lines = lines.p;
	x.prefix = prefix.p;
	st = lines.nomem || prefix.nomem || nb.nomem ? KM_NOMEM :
	    entity_build(m, &x, body, bodylen, out, outlen);
	hbuf_free(&lines);
	hbuf_free(&prefix);
	hbuf_free(&nb);
	if (st != KM_OK)
		return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	return KM_OK;
}

/* hp_hide_outer - every outer Subject becomes "[...]" */
enum km_status
hp_hide_outer(struct verdict *v, const struct message *m, struct kmerr *err)
{
	int n = count_header(m, "Subject");

	for (int i = 1; i <= n; i++)
		if (verdict_header_change(v, "Subject", i, HP_HIDDEN) != KM_OK)
			return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	return KM_OK;
}

/* same_value - equal but for white space (folds, runs of blanks) */
static int
same_value(const char *a, const char *b)
{
	for (;;) {
		int wa = 0, wb = 0;

		while (isspace((unsigned char)*a))
			a++, wa = 1;
		while (isspace((unsigned char)*b))
			b++, wb = 1;
		if (*a == '\0' || *b == '\0')
			return *a == *b;
		if (wa != wb || *a != *b)
			return 0;
		a++;
		b++;
	}
}

/* addr_of - the addr-spec of a From value ("<...>" if any, else the value) */
static int
addr_of(const char *value, char *buf, size_t len)
{
	const char *lt = strrchr(value, '<'), *gt, *p;
	size_t n;

	if (lt != NULL && (gt = strchr(lt, '>')) != NULL)
		p = lt + 1, n = (size_t)(gt - lt - 1);
	else {
		for (p = value; isspace((unsigned char)*p); p++)
			;
		for (n = strlen(p); n > 0 && isspace((unsigned char)p[n - 1]); n--)
			;
	}
	if (n == 0 || n >= len || memchr(p, '@', n) == NULL)
		return -1;
	memcpy(buf, p, n);
	buf[n] = '\0';
	return 0;
}

/*
 * from_ok - may the protected From be shown?  Its address must be the
 * outer From's (the envelope sender's when there is none), ignoring case.
 */
static int
from_ok(const struct message *m, const char *inner)
{
	const char *outer = message_header(m, "From");
	char a[320], b[320];

	if (addr_of(inner, a, sizeof(a)) != 0)
		return 0;
	if (outer != NULL)
		return addr_of(outer, b, sizeof(b)) == 0 && strcasecmp(a, b) == 0;
	return m->from != NULL && strcasecmp(a, m->from) == 0;
}

/* Applying one entity's protection: the verdict, the message, the report. */
struct hp_job {
	struct verdict		*v;
	const struct message	*m;
	struct hp_report	*rep;
};

/* keep_outer - an outer value the protected one replaces stays as HP-Outer */
static enum km_status
keep_outer(struct hp_job *j, const char *name, const char *value)
{
	struct hbuf b = { 0 };
	enum km_status st;

	hbuf_add(&b, name);
	hbuf_add(&b, ": ");
	hbuf_add(&b, value);
	st = b.nomem ? KM_NOMEM : verdict_header_add(j->v, "HP-Outer", b.p);
	hbuf_free(&b);
	if (!list_has(j->rep->outer, name))
		list_add(j->rep->outer, sizeof(j->rep->outer), name);
	return st;
}

/* why_not - why a protected field is not applied, or NULL when it is */
static const char *
why_not(const struct hp_job *j, const struct mime_headers *h, const char *name,
    const char **value)
{
	int n = 0;

	for (size_t i = 0; i < mime_headers_count(h); i++)
		if (strcasecmp(mime_headers_name(h, i), name) == 0) {
			*value = mime_headers_value(h, i);
			n++;
		}
	if (n == 0)
		return "";
	if (n > 1)
		return "duplicate";
	if (strlen(*value) > HP_MAXVALUE || strpbrk(*value, "\r\n") != NULL)
		return "invalid value";
	if (strcmp(name, "From") == 0 && !from_ok(j->m, *value))
		return "differs from the outer From";
	return NULL;
}

/* apply_field - the protected value of one field replaces the outer one(s) */
static enum km_status
apply_field(struct hp_job *j, const char *name, const char *value)
{
	int n = count_header(j->m, name);
	const char *first = nth_header(j->m, name, 1);

	list_add(j->rep->applied, sizeof(j->rep->applied), name);
	if (n == 0)
		return verdict_header_add(j->v, name, value);
	for (int i = n; i >= 2; i--)
		if (keep_outer(j, name, nth_header(j->m, name, i)) != KM_OK ||
		    verdict_header_change(j->v, name, i, NULL) != KM_OK)
			return KM_NOMEM;
	if (same_value(first, value))
		return KM_OK;
	if (keep_outer(j, name, first) != KM_OK)
		return KM_NOMEM;
	return verdict_header_change(j->v, name, 1, value);
}

/* payload_root - the header block of the cryptographic payload's root */
static enum km_status
payload_root(const char *ent, size_t len, struct mime_headers **h, struct kmerr *err)
{
	struct mime_ctype *ct = NULL;
	struct mime_parts *parts = NULL;
	const char *ctype, *boundary;
	size_t hl, bo;
	enum km_status st;

	if ((st = mime_entity_split(ent, len, &hl, &bo, err)) != KM_OK ||
	    (st = mime_headers_parse(ent, hl, h, err)) != KM_OK)
		return st;
	ctype = mime_headers_get(*h, "Content-Type");
	if (ctype == NULL || mime_ctype_parse(ctype, &ct, NULL) != KM_OK ||
	    mime_smime_kind(ct) != MIME_SMIME_SIGNED_DETACHED ||
	    (boundary = mime_ctype_param(ct, "boundary")) == NULL) {
		mime_ctype_free(ct);
		return KM_OK;
	}
	/* Signed inside: the protected headers are the signed part's. */
	*h = mime_headers_free(*h);
	if ((st = mime_multipart_split(ent + bo, len - bo, boundary, &parts, err)) == KM_OK &&
	    parts->count > 0) {
		const char *p = ent + bo + parts->part[0].off;

		if ((st = mime_entity_split(p, parts->part[0].len, &hl, &bo, err)) == KM_OK)
			st = mime_headers_parse(p, hl, h, err);
	} else if (st == KM_OK)
		st = kmerr_set(err, KM_PROTO, KMERR_BADINPUT, "multipart/signed without parts");
	mime_parts_free(parts);
	mime_ctype_free(ct);
	return st;
}

/* drop_arrived_records - HP-Outer fields that came from outside say nothing */
static enum km_status
drop_arrived_records(struct hp_job *j)
{
	for (int i = count_header(j->m, "HP-Outer"); i >= 1; i--)
		if (verdict_header_change(j->v, "HP-Outer", i, NULL) != KM_OK)
			return KM_NOMEM;
	return KM_OK;
}

/* apply_fields - each protected field the payload holds */
static enum km_status
apply_fields(struct hp_job *j, const struct mime_headers *h)
{
	if (drop_arrived_records(j) != KM_OK)
		return KM_NOMEM;
	for (int k = 0; hp_fields[k] != NULL; k++) {
		const char *value = NULL, *why = why_not(j, h, hp_fields[k], &value);
		char item[96];

		if (why != NULL && *why != '\0') {
			snprintf(item, sizeof(item), "%s (%s)", hp_fields[k], why);
			list_add(j->rep->skipped, sizeof(j->rep->skipped), item);
		} else if (why == NULL && apply_field(j, hp_fields[k], value) != KM_OK)
			return KM_NOMEM;
	}
	return KM_OK;
}

/* hp_apply - the protected headers of a decrypted or unwrapped entity replace the outer ones */
enum km_status
hp_apply(struct verdict *v, const struct message *m, const char *entity, size_t len,
    struct hp_report *rep, struct kmerr *err)
{
	struct hp_job j = { .v = v, .m = m, .rep = rep };
	struct mime_headers *h = NULL;
	struct kmerr why;
	char hp[16];
	enum km_status st;

	memset(rep, 0, sizeof(*rep));
	kmerr_clear(&why);
	if ((st = payload_root(entity, len, &h, &why)) != KM_OK) {
		mime_headers_free(h);
		if (st == KM_NOMEM)
			return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		/* Not readable: nothing is protected, the outer headers stay. */
		snprintf(rep->hp, sizeof(rep->hp), "invalid");
		snprintf(rep->skipped, sizeof(rep->skipped), "all (%.200s)", why.msg);
		return KM_OK;
	}
	if (ctype_hp(mime_headers_get(h, "Content-Type"), hp, sizeof(hp), NULL) != 0 ||
	    *hp == '\0') {
		mime_headers_free(h);
		return KM_OK;
	}
	if (strcasecmp(hp, "cipher") != 0 && strcasecmp(hp, "clear") != 0) {
		snprintf(rep->hp, sizeof(rep->hp), "invalid");
		snprintf(rep->skipped, sizeof(rep->skipped), "all (unknown hp value)");
		mime_headers_free(h);
		return KM_OK;
	}
	snprintf(rep->hp, sizeof(rep->hp), "%s", strcasecmp(hp, "cipher") == 0 ? "cipher" :
	    "clear");
	st = apply_fields(&j, h);
	mime_headers_free(h);
	if (st != KM_OK)
		return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	return KM_OK;
}

/* hp_report_value - "hp=cipher; applied=...; not-applied=...; hp-outer=..." */
void
hp_report_value(const struct hp_report *r, char *buf, size_t len)
{
	snprintf(buf, len, "hp=%s; applied=%s%s%s%s%s", r->hp, *r->applied ? r->applied : "none",
	    *r->skipped ? "; not-applied=" : "", r->skipped, *r->outer ? "; hp-outer=" : "",
	    r->outer);
}
