/*
 * fuzz_mime.c - libFuzzer target for the MIME parsers (milter/mime.c,
 * mime_ctype.c, mime_body.c)
 *
 * Build and run (from the repository root):
 *   make FUZZ=1 build-fuzz/fuzz/fuzz_mime
 *   build-fuzz/fuzz/fuzz_mime -max_total_time=30 /tmp/mime-new \
 *       tests/fuzz/corpus/mime
 *
 * Each input is an entity: it is split into header block and body, the
 * headers parsed and every accessor used, every header value parsed as a
 * Content-Type, the body split at the boundary (when there is one) and
 * each part parsed again as an entity, and the body base64-decoded.  The
 * parsers must never crash, overread or leak, and what they return must be
 * consistent (part ranges inside the body, decoded length bounds, an
 * error object that says the status returned, KMERR_BADINPUT for KM_PROTO).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* said - st, once the error object is seen to agree with it */
static enum km_status
said(enum km_status st, const struct kmerr *err)
{
	if (st != KM_OK && (err->status != st ||
	    (st == KM_PROTO && !kmerr_is(err, KMERR_BADINPUT))))
		abort();
	return st;
}

/* entity - parse one entity; recurse into multipart bodies */
static void
entity(const char *buf, size_t len, int depth)
{
	struct mime_headers *h = NULL;
	struct mime_ctype *ct = NULL;
	struct mime_parts *ps = NULL;
	unsigned char *dec = NULL;
	size_t hl = 0, bo = 0, dl = 0, i;
	struct kmerr err = { 0 };

	if (said(mime_entity_split(buf, len, &hl, &bo, &err), &err) != KM_OK) {
		hl = len;
		bo = len;
	}
	if (hl > len || bo > len || hl > bo)
		abort();
	if (said(mime_headers_parse(buf, hl, &h, &err), &err) == KM_OK) {
		for (i = 0; i < mime_headers_count(h); i++) {
			struct mime_ctype *c = NULL;

			if (mime_headers_name(h, i) == NULL ||
			    mime_headers_value(h, i) == NULL)
				abort();
			if (said(mime_ctype_parse(mime_headers_value(h, i), &c,
			    &err), &err) == KM_OK) {
				(void)mime_smime_kind_name(mime_smime_kind(c));
				(void)mime_ctype_param(c, "boundary");
			}
			mime_ctype_free(c);
		}
		if (mime_headers_get(h, "content-type") != NULL &&
		    said(mime_ctype_parse(mime_headers_get(h, "content-type"),
		    &ct, &err), &err) == KM_OK &&
		    said(mime_multipart_split(buf + bo, len - bo,
		    mime_ctype_param(ct, "boundary"), &ps, &err), &err) ==
		    KM_OK) {
			for (i = 0; i < ps->count; i++) {
				if (ps->part[i].off > len - bo ||
				    ps->part[i].len > len - bo - ps->part[i].off)
					abort();
				if (depth < 3)
					entity(buf + bo + ps->part[i].off,
					    ps->part[i].len, depth + 1);
			}
		}
	}
	if (said(mime_base64_decode(buf + bo, len - bo, &dec, &dl, &err),
	    &err) == KM_OK && dl > (len - bo) / 4 * 3 + 3)
		abort();
	free(dec);
	mime_parts_free(ps);
	mime_ctype_free(ct);
	mime_headers_free(h);
}

/* LLVMFuzzerTestOneInput - one input, copied so overreads are caught */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size ? size : 1);

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	entity(buf, size, 0);
	free(buf);
	return 0;
}
