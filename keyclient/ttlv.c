/*
 * ttlv.c - strict KMIP TTLV decoder and padding-correct encoder (see ttlv.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secmem.h"
#include "ttlv.h"

struct ttlv_buf {
	unsigned char *p;
	size_t len, cap;
	size_t open[TTLV_MAX_DEPTH];	/* offsets of open structure headers */
	int depth;
	enum km_status err;
};

struct dec {
	const unsigned char *buf;
	struct ttlv_item *items;
	size_t nitems, maxitems;
	struct kmerr *err;
};

static enum km_status dec_fail(struct dec *, size_t off, const char *, ...)
    __attribute__((format(printf, 3, 4)));

/* dec_fail - record a decoding error with its offset */
static enum km_status
dec_fail(struct dec *d, size_t off, const char *fmt, ...)
{
	char msg[128];
	va_list ap;

	if (d->err == NULL)
		return KM_PROTO;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return kmerr_set(d->err, KM_PROTO, KMERR_BADINPUT,
	    "ttlv: %s at offset %zu", msg, off);
}

/* get_be - read an n-byte big-endian unsigned number */
static uint64_t
get_be(const unsigned char *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

/* check_size - check the value length a fixed-size type must have */
static enum km_status
check_size(struct dec *d, size_t off, enum ttlv_type type, uint32_t len)
{
	uint32_t want;

	switch (type) {
	case TTLV_STRUCTURE:
		if (len % 8 != 0)
			return dec_fail(d, off, "structure length %u not a "
			    "multiple of 8", len);
		return KM_OK;
	case TTLV_INTEGER:
	case TTLV_ENUMERATION:
	case TTLV_INTERVAL:
		want = 4;
		break;
	case TTLV_LONG_INTEGER:
	case TTLV_DATE_TIME:
	case TTLV_BOOLEAN:
		want = 8;
		break;
	case TTLV_BIG_INTEGER:
		if (len == 0 || len % 8 != 0)
			return dec_fail(d, off, "big integer length %u", len);
		return KM_OK;
	case TTLV_TEXT_STRING:
	case TTLV_BYTE_STRING:
		return KM_OK;
	default:
		return dec_fail(d, off, "unknown item type 0x%02x", (unsigned)type);
	}
	if (len != want)
		return dec_fail(d, off, "%s of length %u (must be %u)",
		    ttlv_type_name(type), len, want);
	return KM_OK;
}

/* parse_item - parse one item at off within [off, end); *used = padded size */
static enum km_status
parse_item(struct dec *d, size_t off, size_t end, int depth,
    struct ttlv_item **out, size_t *used)
{
	const unsigned char *h = d->buf + off;
	struct ttlv_item *it, **tail;
	enum km_status st;
	uint64_t padded;
	size_t voff, coff, cend, n;
	uint32_t len;

	if (depth > TTLV_MAX_DEPTH)
		return dec_fail(d, off, "nesting deeper than %d", TTLV_MAX_DEPTH);
	if (end - off < 8)
		return dec_fail(d, off, "truncated item header (%zu bytes)",
		    end - off);
	if (d->nitems >= d->maxitems)
		return dec_fail(d, off, "more than %zu items", d->maxitems);
	it = &d->items[d->nitems++];
	it->tag = (uint32_t)get_be(h, 3);
	it->type = (enum ttlv_type)h[3];
	len = (uint32_t)get_be(h + 4, 4);
	it->len = len;
	if ((st = check_size(d, off, it->type, len)) != KM_OK)
		return st;
	padded = ((uint64_t)len + 7) & ~(uint64_t)7;
	if (padded > end - off - 8)
		return dec_fail(d, off, "item 0x%06x length %u exceeds the %zu "
		    "bytes left", it->tag, len, end - off - 8);
	voff = off + 8;
	it->value = d->buf + voff;
	for (uint64_t i = len; i < padded; i++)
		if (d->buf[voff + i] != 0)
			return dec_fail(d, voff + (size_t)i, "non-zero padding "
			    "in item 0x%06x", it->tag);
	switch (it->type) {
	case TTLV_INTEGER:
		it->num = (int32_t)(uint32_t)get_be(it->value, 4);
		break;
	case TTLV_ENUMERATION:
	case TTLV_INTERVAL:
		it->num = (int64_t)get_be(it->value, 4);
		break;
	case TTLV_LONG_INTEGER:
	case TTLV_DATE_TIME:
		it->num = (int64_t)get_be(it->value, 8);
		break;
	case TTLV_BOOLEAN:
		it->num = (int64_t)get_be(it->value, 8);
		if (it->num != 0 && it->num != 1)
			return dec_fail(d, voff, "boolean value not 0 or 1");
		break;
	case TTLV_STRUCTURE:
		coff = voff;
		cend = voff + len;
		tail = &it->child;
		while (coff < cend) {
			struct ttlv_item *c;

			st = parse_item(d, coff, cend, depth + 1, &c, &n);
			if (st != KM_OK)
				return st;
			*tail = c;
			tail = &c->next;
			it->nchildren++;
			coff += n;
		}
		break;
	default:
		break;
	}
	*out = it;
	*used = 8 + (size_t)padded;
	return KM_OK;
}

/* ttlv_decode - decode one complete TTLV message into a tree */
enum km_status
ttlv_decode(const unsigned char *buf, size_t len, struct ttlv_item **root,
    struct kmerr *err)
{
	struct dec d;
	struct ttlv_item *top;
	enum km_status st;
	size_t used;

	*root = NULL;
	memset(&d, 0, sizeof(d));
	d.buf = buf;
	d.err = err;
	if (buf == NULL || len == 0)
		return dec_fail(&d, 0, "empty input");
	d.maxitems = len / 8;
	if (d.maxitems > TTLV_MAX_ITEMS)
		d.maxitems = TTLV_MAX_ITEMS;
	if (d.maxitems == 0)
		return dec_fail(&d, 0, "truncated item header (%zu bytes)", len);
	if ((d.items = calloc(d.maxitems, sizeof(*d.items))) == NULL) {
		return kmerr_set(err, KM_NOMEM, KMERR_NONE,
		    "ttlv: out of memory");
	}
	st = parse_item(&d, 0, len, 1, &top, &used);
	if (st == KM_OK && used != len)
		st = dec_fail(&d, used, "%zu trailing bytes after the message",
		    len - used);
	if (st != KM_OK) {
		free(d.items);
		return st;
	}
	*root = top;		/* == d.items */
	return KM_OK;
}

/* ttlv_free - free a decoded tree; returns NULL */
struct ttlv_item *
ttlv_free(struct ttlv_item *root)
{
	free(root);
	return NULL;
}

/* ttlv_find - first child of a structure with the given tag */
const struct ttlv_item *
ttlv_find(const struct ttlv_item *s, uint32_t tag)
{
	if (s == NULL || s->type != TTLV_STRUCTURE)
		return NULL;
	for (const struct ttlv_item *c = s->child; c; c = c->next)
		if (c->tag == tag)
			return c;
	return NULL;
}

/* ttlv_next - next sibling with the same tag */
const struct ttlv_item *
ttlv_next(const struct ttlv_item *it)
{
	if (it == NULL)
		return NULL;
	for (const struct ttlv_item *c = it->next; c; c = c->next)
		if (c->tag == it->tag)
			return c;
	return NULL;
}

/* ttlv_path - follow a 0-terminated list of tags down from s */
const struct ttlv_item *
ttlv_path(const struct ttlv_item *s, const uint32_t *tags)
{
	for (; s != NULL && *tags != 0; tags++)
		s = ttlv_find(s, *tags);
	return s;
}

/* ttlv_get_int - value of an Integer item */
enum km_status
ttlv_get_int(const struct ttlv_item *it, int32_t *v)
{
	if (it == NULL || it->type != TTLV_INTEGER)
		return KM_PROTO;
	*v = (int32_t)it->num;
	return KM_OK;
}

/* ttlv_get_enum - value of an Enumeration item */
enum km_status
ttlv_get_enum(const struct ttlv_item *it, uint32_t *v)
{
	if (it == NULL || it->type != TTLV_ENUMERATION)
		return KM_PROTO;
	*v = (uint32_t)it->num;
	return KM_OK;
}

/* ttlv_get_long - value of a Long Integer item */
enum km_status
ttlv_get_long(const struct ttlv_item *it, int64_t *v)
{
	if (it == NULL || it->type != TTLV_LONG_INTEGER)
		return KM_PROTO;
	*v = it->num;
	return KM_OK;
}

/* ttlv_get_bool - value of a Boolean item */
enum km_status
ttlv_get_bool(const struct ttlv_item *it, int *v)
{
	if (it == NULL || it->type != TTLV_BOOLEAN)
		return KM_PROTO;
	*v = (int)it->num;
	return KM_OK;
}

/* ttlv_get_datetime - value of a DateTime item (seconds since the epoch) */
enum km_status
ttlv_get_datetime(const struct ttlv_item *it, int64_t *v)
{
	if (it == NULL || it->type != TTLV_DATE_TIME)
		return KM_PROTO;
	*v = it->num;
	return KM_OK;
}

/* ttlv_get_text - pointer and length of a Text String item */
enum km_status
ttlv_get_text(const struct ttlv_item *it, const char **s, size_t *len)
{
	if (it == NULL || it->type != TTLV_TEXT_STRING)
		return KM_PROTO;
	*s = (const char *)it->value;
	*len = it->len;
	return KM_OK;
}

/* ttlv_copy_text - copy a Text String item into a NUL-terminated buffer */
enum km_status
ttlv_copy_text(const struct ttlv_item *it, char *out, size_t outlen)
{
	const char *s;
	size_t n;

	if (ttlv_get_text(it, &s, &n) != KM_OK || n >= outlen ||
	    memchr(s, '\0', n) != NULL)
		return KM_PROTO;
	memcpy(out, s, n);
	out[n] = '\0';
	return KM_OK;
}

/* ttlv_get_bytes - pointer and length of a Byte String item */
enum km_status
ttlv_get_bytes(const struct ttlv_item *it, const unsigned char **p, size_t *len)
{
	if (it == NULL || it->type != TTLV_BYTE_STRING)
		return KM_PROTO;
	*p = it->value;
	*len = it->len;
	return KM_OK;
}

/* ttlv_buf_new - an empty encoder buffer */
struct ttlv_buf *
ttlv_buf_new(void)
{
	return calloc(1, sizeof(struct ttlv_buf));
}

/* ttlv_buf_free - wipe and free an encoder buffer; returns NULL */
struct ttlv_buf *
ttlv_buf_free(struct ttlv_buf *b)
{
	if (b == NULL)
		return NULL;
	secmem_free(b->p, b->cap);
	free(b);
	return NULL;
}

/* reserve - make room for n more bytes, wiping the old copy on growth */
static int
reserve(struct ttlv_buf *b, size_t n)
{
	unsigned char *np;
	size_t ncap;

	if (b->err != KM_OK)
		return -1;
	if (n > (size_t)UINT32_MAX || b->len + n > (size_t)UINT32_MAX) {
		b->err = KM_PROTO;
		return -1;
	}
	if (b->len + n <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 256;
	while (ncap < b->len + n)
		ncap *= 2;
	if ((np = secmem_alloc(ncap)) == NULL) {
		b->err = KM_NOMEM;
		return -1;
	}
	if (b->p != NULL)
		memcpy(np, b->p, b->len);
	secmem_free(b->p, b->cap);
	b->p = np;
	b->cap = ncap;
	return 0;
}

/* put_be - write an n-byte big-endian number */
static void
put_be(unsigned char *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--) {
		p[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
}

/* add_item - append header, value and zero padding */
static void
add_item(struct ttlv_buf *b, uint32_t tag, enum ttlv_type type,
    const void *val, size_t len)
{
	size_t padded = (len + 7) & ~(size_t)7;

	if (reserve(b, 8 + padded) != 0)
		return;
	put_be(b->p + b->len, tag, 3);
	b->p[b->len + 3] = (unsigned char)type;
	put_be(b->p + b->len + 4, len, 4);
	if (len > 0)
		memcpy(b->p + b->len + 8, val, len);
	memset(b->p + b->len + 8 + len, 0, padded - len);
	b->len += 8 + padded;
}

/* ttlv_begin - open a Structure */
void
ttlv_begin(struct ttlv_buf *b, uint32_t tag)
{
	if (b->err != KM_OK)
		return;
	if (b->depth >= TTLV_MAX_DEPTH) {
		b->err = KM_PROTO;
		return;
	}
	b->open[b->depth] = b->len;
	add_item(b, tag, TTLV_STRUCTURE, NULL, 0);
	if (b->err == KM_OK)
		b->depth++;
}

/* ttlv_end - close the innermost Structure and patch its length */
void
ttlv_end(struct ttlv_buf *b)
{
	size_t start;

	if (b->err != KM_OK)
		return;
	if (b->depth == 0) {
		b->err = KM_PROTO;
		return;
	}
	start = b->open[--b->depth];
	put_be(b->p + start + 4, b->len - start - 8, 4);
}

/* ttlv_add_int - append an Integer */
void
ttlv_add_int(struct ttlv_buf *b, uint32_t tag, int32_t v)
{
	unsigned char x[4];

	put_be(x, (uint32_t)v, 4);
	add_item(b, tag, TTLV_INTEGER, x, 4);
}

/* ttlv_add_enum - append an Enumeration */
void
ttlv_add_enum(struct ttlv_buf *b, uint32_t tag, uint32_t v)
{
	unsigned char x[4];

	put_be(x, v, 4);
	add_item(b, tag, TTLV_ENUMERATION, x, 4);
}

/* ttlv_add_long - append a Long Integer */
void
ttlv_add_long(struct ttlv_buf *b, uint32_t tag, int64_t v)
{
	unsigned char x[8];

	put_be(x, (uint64_t)v, 8);
	add_item(b, tag, TTLV_LONG_INTEGER, x, 8);
}

/* ttlv_add_bool - append a Boolean */
void
ttlv_add_bool(struct ttlv_buf *b, uint32_t tag, int v)
{
	unsigned char x[8];

	put_be(x, v ? 1 : 0, 8);
	add_item(b, tag, TTLV_BOOLEAN, x, 8);
}

/* ttlv_add_datetime - append a DateTime (seconds since the epoch) */
void
ttlv_add_datetime(struct ttlv_buf *b, uint32_t tag, int64_t v)
{
	unsigned char x[8];

	put_be(x, (uint64_t)v, 8);
	add_item(b, tag, TTLV_DATE_TIME, x, 8);
}

/* ttlv_add_text - append a Text String */
void
ttlv_add_text(struct ttlv_buf *b, uint32_t tag, const char *s)
{
	add_item(b, tag, TTLV_TEXT_STRING, s, strlen(s));
}

/* ttlv_add_bytes - append a Byte String */
void
ttlv_add_bytes(struct ttlv_buf *b, uint32_t tag, const unsigned char *p,
    size_t len)
{
	add_item(b, tag, TTLV_BYTE_STRING, p, len);
}

/* ttlv_buf_status - sticky error state of an encoder buffer */
enum km_status
ttlv_buf_status(const struct ttlv_buf *b)
{
	return b->err;
}

/* ttlv_buf_data - the encoded message, or NULL if incomplete or failed */
const unsigned char *
ttlv_buf_data(const struct ttlv_buf *b, size_t *len)
{
	if (b->err != KM_OK || b->depth != 0 || b->len == 0)
		return NULL;
	*len = b->len;
	return b->p;
}

/* ttlv_type_name - printable name of an item type */
const char *
ttlv_type_name(enum ttlv_type t)
{
	switch (t) {
	case TTLV_STRUCTURE:	return "Structure";
	case TTLV_INTEGER:	return "Integer";
	case TTLV_LONG_INTEGER:	return "Long Integer";
	case TTLV_BIG_INTEGER:	return "Big Integer";
	case TTLV_ENUMERATION:	return "Enumeration";
	case TTLV_BOOLEAN:	return "Boolean";
	case TTLV_TEXT_STRING:	return "Text String";
	case TTLV_BYTE_STRING:	return "Byte String";
	case TTLV_DATE_TIME:	return "DateTime";
	case TTLV_INTERVAL:	return "Interval";
	}
	return "unknown";
}
