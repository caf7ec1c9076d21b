/*
 * fuzz_ttlv.c - libFuzzer target for the KMIP TTLV decoder (keyclient/ttlv.c)
 *
 * Build and run (from the repository root):
 *   clang -g -O1 -std=c11 -D_GNU_SOURCE -Imilter -Ikeyclient \
 *       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
 *       tests/fuzz/fuzz_ttlv.c keyclient/ttlv.c base/secmem.c base/log.c \
 *       -lcrypto -lpthread -o build/fuzz_ttlv
 *   build/fuzz_ttlv -max_total_time=30 -max_len=4096 tests/fuzz/corpus/ttlv
 * (give a scratch directory first to keep the committed corpus unchanged:
 *   build/fuzz_ttlv -max_total_time=30 /tmp/ttlv-new tests/fuzz/corpus/ttlv)
 *
 * Each input is decoded; a successful decode is walked with every accessor
 * and re-encoded, and the re-encoding must equal the input (the decoder is
 * strict, so whatever it accepts has exactly one encoding).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ttlv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int exact;	/* cleared when an item cannot be re-encoded as is */

/* walk - exercise the accessors and re-encode into b */
static void
walk(const struct ttlv_item *it, struct ttlv_buf *b)
{
	const unsigned char *p;
	const char *s;
	char text[64];
	size_t n;
	int32_t i;
	uint32_t e;
	int64_t l;
	int bo;

	switch (it->type) {
	case TTLV_STRUCTURE:
		ttlv_begin(b, it->tag);
		for (const struct ttlv_item *c = it->child; c; c = c->next) {
			(void)ttlv_find(it, c->tag);
			(void)ttlv_next(c);
			walk(c, b);
		}
		ttlv_end(b);
		break;
	case TTLV_INTEGER:
		if (ttlv_get_int(it, &i) != KM_OK)
			abort();
		ttlv_add_int(b, it->tag, i);
		break;
	case TTLV_ENUMERATION:
		if (ttlv_get_enum(it, &e) != KM_OK)
			abort();
		ttlv_add_enum(b, it->tag, e);
		break;
	case TTLV_LONG_INTEGER:
		if (ttlv_get_long(it, &l) != KM_OK)
			abort();
		ttlv_add_long(b, it->tag, l);
		break;
	case TTLV_DATE_TIME:
		if (ttlv_get_datetime(it, &l) != KM_OK)
			abort();
		ttlv_add_datetime(b, it->tag, l);
		break;
	case TTLV_BOOLEAN:
		if (ttlv_get_bool(it, &bo) != KM_OK)
			abort();
		ttlv_add_bool(b, it->tag, bo);
		break;
	case TTLV_TEXT_STRING:
		if (ttlv_get_text(it, &s, &n) != KM_OK)
			abort();
		(void)ttlv_copy_text(it, text, sizeof(text));
		if (memchr(s, '\0', n) == NULL) {
			char *z = strndup(s, n);

			if (z == NULL)
				abort();
			ttlv_add_text(b, it->tag, z);
			free(z);
		} else {
			exact = 0;
			ttlv_add_bytes(b, it->tag, (const unsigned char *)s, n);
		}
		break;
	case TTLV_BYTE_STRING:
		if (ttlv_get_bytes(it, &p, &n) != KM_OK)
			abort();
		ttlv_add_bytes(b, it->tag, p, n);
		break;
	default:
		/* Big Integer, Interval: no encoder; same size as bytes */
		exact = 0;
		ttlv_add_bytes(b, it->tag, it->value, it->len);
		break;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ttlv_item *root = NULL;
	struct ttlv_buf *b;
	const unsigned char *out;
	struct kmerr err;
	enum km_status st;
	size_t n;

	if ((st = ttlv_decode(data, size, &root, &err)) != KM_OK) {
		/* the error object carries the status returned; malformed
		 * input says so by its reason too */
		if (root != NULL || err.status != st ||
		    strncmp(err.msg, "ttlv: ", 6) != 0 ||
		    (st == KM_PROTO && !kmerr_is(&err, KMERR_BADINPUT)))
			abort();
		return 0;
	}
	if ((b = ttlv_buf_new()) == NULL)
		abort();
	exact = 1;
	walk(root, b);
	out = ttlv_buf_data(b, &n);
	if (out == NULL || n != size || (exact && memcmp(out, data, n) != 0))
		abort();
	ttlv_buf_free(b);
	ttlv_free(root);
	return 0;
}
