#ifndef KMILTER_KEYCLIENT_TTLV_H
#define KMILTER_KEYCLIENT_TTLV_H
/*
 * NAME
 *	ttlv - KMIP TTLV (Tag, Type, Length, Value) encoder and decoder
 * SUMMARY
 *	ttlv_decode(), ttlv_free(), ttlv_find(), ttlv_next(), ttlv_get_int(),
 *	ttlv_get_enum(), ttlv_get_long(), ttlv_get_bool(), ttlv_get_text(),
 *	ttlv_get_bytes(), ttlv_get_datetime(), ttlv_buf_new(), ttlv_buf_free(),
 *	ttlv_begin(), ttlv_end(), ttlv_add_int(), ttlv_add_enum(),
 *	ttlv_add_long(), ttlv_add_bool(), ttlv_add_text(), ttlv_add_bytes(),
 *	ttlv_add_datetime(), ttlv_buf_data(), ttlv_type_name()
 * DESCRIPTION
 *	Pure code: no I/O, no OpenSSL except for wiping.
 *
 *	Decoder: ttlv_decode() parses exactly one top-level item that must
 *	fill the whole buffer.  It is strict: every length is checked against
 *	the space its parent has left; padding must be zero bytes up to the
 *	next multiple of 8; fixed-size types must have their size (Integer,
 *	Enumeration, Interval 4; Long Integer, DateTime, Boolean 8; Boolean
 *	0 or 1); Big Integer a multiple of 8; an unknown type byte is an
 *	error; nesting deeper than TTLV_MAX_DEPTH or more than TTLV_MAX_ITEMS
 *	items are errors.  Unknown tags are kept in the tree (callers ignore
 *	what they do not look for).
 *
 *	Encoder: a growable buffer; ttlv_begin()/ttlv_end() open and close a
 *	Structure (its length is patched at ttlv_end()).  Every item is padded
 *	to 8 bytes with zeros.  Errors (out of memory, too deep, unbalanced)
 *	are sticky: ttlv_buf_data() then returns NULL.
 * OWNERSHIP
 *	ttlv_decode() returns a tree whose items point INTO the input buffer
 *	for text and byte strings (not NUL-terminated; use the length): keep
 *	the buffer alive and unchanged while using the tree.  Caller frees the
 *	tree with ttlv_free() (NULL is fine; returns NULL); it does not free
 *	or wipe the input buffer.
 *	ttlv_buf_new() returns a buffer the caller frees with ttlv_buf_free(),
 *	which wipes its contents (requests may carry key material).
 *	ttlv_buf_data() returns a pointer owned by the buffer, valid until the
 *	next add or ttlv_buf_free().
 * ERRORS
 *	ttlv_decode(): KM_OK, KM_PROTO (malformed: err has reason
 *	KMERR_BADINPUT and says what and at which offset), KM_NOMEM.
 *	ttlv_get_*(): KM_OK, or KM_PROTO when the item is NULL or of another
 *	type (so a missing or mistyped field is one check).
 *	Encoder: ttlv_buf_status() returns KM_OK, KM_NOMEM or KM_PROTO.
 * THREADS
 *	No shared state: thread-safe on distinct objects.
 */
#include <stddef.h>
#include <stdint.h>

#include "kmerr.h"

#define TTLV_MAX_DEPTH	16
#define TTLV_MAX_ITEMS	4096

enum ttlv_type {
	TTLV_STRUCTURE = 0x01,
	TTLV_INTEGER = 0x02,
	TTLV_LONG_INTEGER = 0x03,
	TTLV_BIG_INTEGER = 0x04,
	TTLV_ENUMERATION = 0x05,
	TTLV_BOOLEAN = 0x06,
	TTLV_TEXT_STRING = 0x07,
	TTLV_BYTE_STRING = 0x08,
	TTLV_DATE_TIME = 0x09,
	TTLV_INTERVAL = 0x0A
};

struct ttlv_item {
	uint32_t tag;			/* 24 bits, e.g. 0x420078 */
	enum ttlv_type type;
	uint32_t len;			/* value length without padding */
	const unsigned char *value;	/* into the input buffer */
	int64_t num;			/* Integer/Enumeration/Interval (as
					   unsigned 32 for Enum/Interval),
					   Long Integer, DateTime, Boolean */
	struct ttlv_item *child;	/* first child of a Structure */
	struct ttlv_item *next;		/* next sibling */
	size_t nchildren;
};

struct ttlv_buf;

/* Decoder. */
enum km_status ttlv_decode(const unsigned char *buf, size_t len,
    struct ttlv_item **root, struct kmerr *err);
struct ttlv_item *ttlv_free(struct ttlv_item *root);
/* first child of s with tag, or NULL; s may be NULL */
const struct ttlv_item *ttlv_find(const struct ttlv_item *s, uint32_t tag);
/* next sibling after it with the same tag, or NULL */
const struct ttlv_item *ttlv_next(const struct ttlv_item *it);
/* follow a path of tags from s, e.g. {BATCH_ITEM, RESPONSE_PAYLOAD}, 0-ended */
const struct ttlv_item *ttlv_path(const struct ttlv_item *s, const uint32_t *tags);
enum km_status ttlv_get_int(const struct ttlv_item *, int32_t *);
enum km_status ttlv_get_enum(const struct ttlv_item *, uint32_t *);
enum km_status ttlv_get_long(const struct ttlv_item *, int64_t *);
enum km_status ttlv_get_bool(const struct ttlv_item *, int *);
enum km_status ttlv_get_datetime(const struct ttlv_item *, int64_t *);
/* text: *s points into the buffer, not NUL-terminated */
enum km_status ttlv_get_text(const struct ttlv_item *, const char **s, size_t *len);
/* copy text into out (outlen bytes incl. NUL); KM_PROTO if it does not fit
 * or contains a NUL byte */
enum km_status ttlv_copy_text(const struct ttlv_item *, char *out, size_t outlen);
enum km_status ttlv_get_bytes(const struct ttlv_item *, const unsigned char **p,
    size_t *len);

/* Encoder. */
struct ttlv_buf *ttlv_buf_new(void);
struct ttlv_buf *ttlv_buf_free(struct ttlv_buf *);
void ttlv_begin(struct ttlv_buf *, uint32_t tag);
void ttlv_end(struct ttlv_buf *);
void ttlv_add_int(struct ttlv_buf *, uint32_t tag, int32_t v);
void ttlv_add_enum(struct ttlv_buf *, uint32_t tag, uint32_t v);
void ttlv_add_long(struct ttlv_buf *, uint32_t tag, int64_t v);
void ttlv_add_bool(struct ttlv_buf *, uint32_t tag, int v);
void ttlv_add_datetime(struct ttlv_buf *, uint32_t tag, int64_t v);
void ttlv_add_text(struct ttlv_buf *, uint32_t tag, const char *s);
void ttlv_add_bytes(struct ttlv_buf *, uint32_t tag, const unsigned char *p,
    size_t len);
enum km_status ttlv_buf_status(const struct ttlv_buf *);
/* the encoded bytes, or NULL after an error or with a structure still open */
const unsigned char *ttlv_buf_data(const struct ttlv_buf *, size_t *len);

const char *ttlv_type_name(enum ttlv_type);

#endif
