/*
 * fuzz_kmip.c - libFuzzer target for the KMIP response decoders
 * (keyclient/kmip_msg.c)
 *
 * Build and run (from the repository root):
 *   make FUZZ=1 fuzzers && FUZZ_SECONDS=60 tests/fuzz/run kmip
 * or by hand:
 *   build-fuzz/fuzz/fuzz_kmip -max_total_time=60 /tmp/kmip-new \
 *       tests/fuzz/corpus/kmip
 * (the scratch directory first keeps the committed corpus unchanged; the
 * seeds are written by tests/fuzz/kmip-corpus.py).
 *
 * Each input is one response message as it would come off the wire.  Its
 * first 8 bytes go to kmip_msg_header(); the whole input is decoded as the
 * answer to every operation kmip.c sends, and every reply that decodes is
 * handed to every payload decoder.  Besides not crashing, leaking or
 * reading out of bounds, each call must keep its contract: a known
 * status, a printable error message on failure (it ends up in a log line),
 * empty outputs on failure, and outputs within their bounds on success.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kmip_msg.h"
#include "secmem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const enum kmip_op ops[] = {
	KMIP_OP_REGISTER, KMIP_OP_LOCATE, KMIP_OP_GET, KMIP_OP_GET_ATTRIBUTES,
	KMIP_OP_ACTIVATE, KMIP_OP_REVOKE, KMIP_OP_DESTROY,
	KMIP_OP_DISCOVER_VERSIONS
};

/* failed - check a failure's status and message; returns 1 if it failed */
static int
failed(enum km_status st, const struct kmerr *err)
{
	if (st == KM_OK)
		return 0;
	if (st != KM_PROTO && st != KM_PERMFAIL && st != KM_TEMPFAIL &&
	    st != KM_NOMEM)
		abort();
	if (err->status != st || err->msg[0] == '\0')
		abort();
	for (const char *p = err->msg; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			abort();
	return 1;
}

/* payloads - every payload decoder on one decoded reply */
static void
payloads(const struct kmip_msg_reply *r)
{
	struct kmip_version v[4];
	struct kmip_uid_list *l;
	struct kmip_attrs a;
	struct kmerr err;
	enum kmip_object_type t;
	unsigned char *d;
	char uid[KMIP_UID_MAX];
	size_t n;

	if (!failed(kmip_msg_dec_versions(r, v, 4, &n, &err), &err) && n > 4)
		abort();
	if (failed(kmip_msg_dec_register(r, uid, &err), &err) ?
	    uid[0] != '\0' : strlen(uid) == 0)
		abort();
	if (failed(kmip_msg_dec_locate(r, &l, &err), &err)) {
		if (l != NULL)
			abort();
	} else
		for (size_t i = 0; i < l->count; i++)
			if (*l->uids[i] == '\0' ||
			    strlen(l->uids[i]) >= KMIP_UID_MAX)
				abort();
	kmip_uid_list_free(l);
	if (failed(kmip_msg_dec_get(r, &t, &d, &n, &err), &err)) {
		if (d != NULL || n != 0 || t != KMIP_OBJ_NONE)
			abort();
	} else if (d == NULL || n == 0 || t == KMIP_OBJ_NONE)
		abort();
	secmem_free(d, n);
	if (!failed(kmip_msg_dec_attributes(r, &a, &err), &err) &&
	    (memchr(a.name, '\0', sizeof(a.name)) == NULL ||
	    memchr(a.group, '\0', sizeof(a.group)) == NULL))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kmip_msg_reply r;
	struct kmerr err;
	size_t body;

	if (size >= KMIP_MSG_HEADER &&
	    !failed(kmip_msg_header(data, &body, &err), &err) &&
	    (body % 8 != 0 || body > KMIP_MAX_RESPONSE - KMIP_MSG_HEADER))
		abort();
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (failed(kmip_msg_reply_decode(data, size, ops[i], &r, &err),
		    &err)) {
			if (r.root != NULL || r.payload != NULL)
				abort();
			continue;
		}
		payloads(&r);
		kmip_msg_reply_clear(&r);
	}
	return 0;
}
