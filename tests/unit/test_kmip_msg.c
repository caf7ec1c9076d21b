/*
 * test_kmip_msg.c - the KMIP request builders and response decoders
 * (keyclient/kmip_msg.c), without a server.
 *
 * The responses are the seeds of fuzz_kmip in tests/fuzz/corpus/kmip/
 * (written by tests/fuzz/kmip-corpus.py): the recorded PyKMIP 0.10
 * answers (locate-12, get-12, locate-20, get-20) and messages built in
 * their shape.  They are read from $KM_TOP (default: the current
 * directory, the top of the tree).  The requests are compared with the
 * bytes the PyKMIP client sent (/work/shared/km/ttlv-samples.txt).
 * Malformed responses (truncated, wrong tag, wrong type, lying lengths)
 * must give KM_PROTO and a clear message, never a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kmip_msg.h"
#include "secmem.h"

/* The PyKMIP client's Locate by Name and Get of uid 2 (KMIP 1.2). */
static const char LOCATE_REQ[] = "42007801000000b04200770100000038420069010000002042006a0200000004000000010000000042006b0200000004000000020000000042000d0200000004000000010000000042000f010000006842005c050000000400000008000000004200790100000050420008010000004842000a07000000044e616d650000000042000b0100000030420055070000001873686172653a64617665406578616d706c652e636f6d233242005405000000040000000100000000";
static const char GET_REQ[] = "42007801000000704200770100000038420069010000002042006a0200000004000000010000000042006b0200000004000000020000000042000d0200000004000000010000000042000f010000002842005c05000000040000000a00000000420079010000001042009407000000013200000000000000";

/* load - a seed of the corpus, malloc'ed; NULL if it cannot be read */
static unsigned char *
load(const char *name, size_t *len)
{
	const char *top = getenv("KM_TOP") ? getenv("KM_TOP") : ".";
	unsigned char *buf;
	char path[512];
	FILE *f;
	long n;

	snprintf(path, sizeof(path), "%s/tests/fuzz/corpus/kmip/%s", top, name);
	if ((f = fopen(path, "rb")) == NULL) {
		printf("    cannot open %s\n", path);
		return NULL;
	}
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	if (n <= 0 || (buf = malloc((size_t)n)) == NULL) {
		fclose(f);
		return NULL;
	}
	*len = fread(buf, 1, (size_t)n, f);
	fclose(f);
	return buf;
}

/* decode - decode a whole seed as the answer to op */
static enum km_status
decode(const unsigned char *buf, size_t len, enum kmip_op op,
    struct kmip_msg_reply *r, struct kmerr *err)
{
	kmerr_clear(err);
	return kmip_msg_reply_decode(buf, len, op, r, err);
}

/* answer - a seed decoded as the answer to op; the bytes (caller frees) */
static unsigned char *
answer(const char *file, enum kmip_op op, struct kmip_msg_reply *r,
    struct kmerr *err, enum km_status *st)
{
	unsigned char *buf;
	size_t len;

	*st = KM_NOMEM;			/* no seed: no case passes */
	memset(r, 0, sizeof(*r));
	if ((buf = load(file, &len)) != NULL)
		*st = decode(buf, len, op, r, err);
	return buf;
}

/* got - decode a Get seed down to its object; the bytes are secmem */
static enum km_status
got(const char *file, enum kmip_object_type *t, unsigned char **d,
    size_t *n)
{
	struct kmip_msg_reply r;
	struct kmerr err;
	unsigned char *buf;
	enum km_status st;

	buf = answer(file, KMIP_OP_GET, &r, &err, &st);
	if (st == KM_OK) {
		st = kmip_msg_dec_get(&r, t, d, n, &err);
		kmip_msg_reply_clear(&r);
	}
	free(buf);
	return st;
}

/* same_hex - are the request's bytes the hex string */
static int
same_hex(const struct ttlv_buf *b, const char *hex)
{
	const unsigned char *p;
	size_t n;
	unsigned int x;

	if ((p = ttlv_buf_data(b, &n)) == NULL || strlen(hex) != 2 * n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (sscanf(hex + 2 * i, "%2x", &x) != 1 || p[i] != x)
			return 0;
	return 1;
}

TEST(recorded_locate_responses)
{
	static const struct { const char *file; size_t n; const char *first; }
	    v[] = { { "locate-12", 2, "2" }, { "locate-20", 3, "3" },
	    { "locate-none-12", 0, NULL } };
	struct kmip_msg_reply r;
	struct kmip_uid_list *l;
	struct kmerr err;
	unsigned char *buf;
	size_t len;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		CHECK((buf = load(v[i].file, &len)) != NULL);
		CHECK_EQ_INT(decode(buf, len, KMIP_OP_LOCATE, &r, &err), KM_OK);
		CHECK_EQ_INT(kmip_msg_dec_locate(&r, &l, &err), KM_OK);
		CHECK_EQ_INT(l->count, v[i].n);
		if (v[i].n > 0) {
			CHECK_EQ_STR(l->uids[0], v[i].first);
			CHECK_EQ_STR(l->uids[v[i].n - 1], "1");
		}
		kmip_uid_list_free(l);
		kmip_msg_reply_clear(&r);
		free(buf);
	}
}

TEST(recorded_get_responses)
{
	static const char *files[] = { "get-12", "get-20" };
	enum kmip_object_type t;
	unsigned char *d;
	size_t n;

	for (size_t i = 0; i < 2; i++) {
		CHECK_EQ_INT(got(files[i], &t, &d, &n), KM_OK);
		CHECK_EQ_INT(t, KMIP_OBJ_SECRET_DATA);
		CHECK_EQ_INT(n, 32);
		for (size_t k = 0; k < n; k++)
			CHECK_EQ_INT(d[k], k);
		secmem_free(d, n);
	}
}

TEST(private_key_get_response)
{
	enum kmip_object_type t;
	unsigned char *d;
	size_t n;

	CHECK_EQ_INT(got("get-privkey-12", &t, &d, &n), KM_OK);
	CHECK_EQ_INT(t, KMIP_OBJ_PRIVATE_KEY);
	CHECK_EQ_INT(n, 1218);
	CHECK(d[0] == 0x30 && d[1] == 0x82 && d[2] == 0x04 && d[3] == 0xbe);
	secmem_free(d, n);
}

TEST(certificate_get_response)
{
	struct kmip_msg_reply r;
	enum kmip_object_type t;
	struct kmerr err;
	unsigned char *buf, *d;
	size_t len, n;

	CHECK_EQ_INT(got("get-cert-12", &t, &d, &n), KM_OK);
	CHECK_EQ_INT(t, KMIP_OBJ_CERTIFICATE);
	CHECK_EQ_INT(n, 53);
	CHECK(d[0] == 0x30 && d[1] == 0x82);
	secmem_free(d, n);
	CHECK((buf = load("get-cert-12", &len)) != NULL);
	buf[len - 0x40 + 2] = 0x1f;	/* Certificate Value: another tag */
	CHECK_EQ_INT(decode(buf, len, KMIP_OP_GET, &r, &err), KM_OK);
	CHECK_EQ_INT(kmip_msg_dec_get(&r, &t, &d, &n, &err), KM_PROTO);
	CHECK(strstr(err.msg, "no object value as a byte string") != NULL);
	CHECK(d == NULL && n == 0 && t == KMIP_OBJ_NONE);
	kmip_msg_reply_clear(&r);
	free(buf);
}

TEST(register_attributes_versions)
{
	struct kmip_msg_reply r;
	struct kmip_version v[2];
	struct kmip_attrs a;
	struct kmerr err;
	unsigned char *buf;
	char uid[KMIP_UID_MAX];
	size_t len, n;

	CHECK((buf = load("register-12", &len)) != NULL);
	CHECK_EQ_INT(decode(buf, len, KMIP_OP_REGISTER, &r, &err), KM_OK);
	CHECK_EQ_INT(kmip_msg_dec_register(&r, uid, &err), KM_OK);
	CHECK_EQ_STR(uid, "13");
	kmip_msg_reply_clear(&r);
	free(buf);

	CHECK((buf = load("getattrs-12", &len)) != NULL);
	CHECK_EQ_INT(decode(buf, len, KMIP_OP_GET_ATTRIBUTES, &r, &err), KM_OK);
	CHECK_EQ_INT(kmip_msg_dec_attributes(&r, &a, &err), KM_OK);
	CHECK_EQ_INT(a.state, KMIP_STATE_ACTIVE);
	CHECK_EQ_INT(a.type, KMIP_OBJ_SECRET_DATA);
	CHECK_EQ_STR(a.name, "share:dave@example.com#2");
	CHECK_EQ_STR(a.group, "kmilter");
	CHECK(a.has_usage_mask && a.usage_mask == KMIP_USAGE_EXPORT);
	CHECK_EQ_INT(a.initial_date, 0x6B03FAA0 - 60);
	CHECK_EQ_INT(a.activation_date, 0);
	kmip_msg_reply_clear(&r);
	free(buf);

	CHECK((buf = load("discover-12", &len)) != NULL);
	CHECK_EQ_INT(decode(buf, len, KMIP_OP_DISCOVER_VERSIONS, &r, &err),
	    KM_OK);
	CHECK_EQ_INT(kmip_msg_dec_versions(&r, v, 2, &n, &err), KM_OK);
	CHECK_EQ_INT(n, 2);		/* the third does not fit */
	CHECK(v[0].major == 1 && v[0].minor == 2 && v[1].minor == 1);
	kmip_msg_reply_clear(&r);
	free(buf);
}

TEST(uid_only_responses)
{
	static const struct { const char *file; enum kmip_op op; } v[] = {
	    { "activate-12", KMIP_OP_ACTIVATE }, { "revoke-12", KMIP_OP_REVOKE },
	    { "destroy-12", KMIP_OP_DESTROY } };
	struct kmip_msg_reply r;
	struct kmerr err;
	enum km_status st;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		free(answer(v[i].file, v[i].op, &r, &err, &st));
		CHECK_EQ_INT(st, KM_OK);
		CHECK(r.payload != NULL);
		kmip_msg_reply_clear(&r);
		/* the same bytes answer no other operation */
		free(answer(v[i].file, KMIP_OP_GET, &r, &err, &st));
		CHECK_EQ_INT(st, KM_PROTO);
		CHECK_EQ_STR(err.msg, "bad response: answers another operation");
		CHECK(r.root == NULL);
	}
}

TEST(server_errors)
{
	static const struct {
		const char *file;
		enum kmip_op op;
		enum km_status st;
		enum kmerr_reason reason;
		const char *msg;
	} v[] = {
	    { "err-notfound-12", KMIP_OP_GET, KM_PERMFAIL, KMERR_NOTFOUND,
	      "ITEM_NOT_FOUND: Could not locate object: 99" },
	    { "err-general-12", KMIP_OP_LOCATE, KM_TEMPFAIL, KMERR_NONE,
	      "GENERAL_FAILURE: Internal server error?" },	/* \n made ? */
	    { "err-pending-12", KMIP_OP_GET, KM_PROTO, KMERR_BADINPUT,
	      "status not final, OPERATION_FAILED: " } };
	struct kmip_msg_reply r;
	struct kmerr err;
	enum km_status st;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		free(answer(v[i].file, v[i].op, &r, &err, &st));
		CHECK_EQ_INT(st, v[i].st);
		CHECK_EQ_INT(err.status, v[i].st);
		CHECK_EQ_INT(err.reason, v[i].reason);
		CHECK_EQ_STR(err.msg, v[i].msg);
		CHECK(r.root == NULL && r.payload == NULL);
	}
}

TEST(header_checks)
{
	unsigned char h[8] = { 0x42, 0x00, 0x7b, 0x01, 0, 0, 0x01, 0x00 };
	struct kmerr err;
	size_t n;

	CHECK_EQ_INT(kmip_msg_header(h, &n, &err), KM_OK);
	CHECK_EQ_INT(n, 256);
	h[2] = 0x78;			/* a request, not a response */
	CHECK_EQ_INT(kmip_msg_header(h, &n, &err), KM_PROTO);
	CHECK_EQ_STR(err.msg, "not a KMIP response message (header 42007801)");
	CHECK_EQ_INT(n, 0);
	h[2] = 0x7b;
	h[3] = 0x02;			/* an Integer, not a Structure */
	CHECK_EQ_INT(kmip_msg_header(h, &n, &err), KM_PROTO);
	h[3] = 0x01;
	memset(h + 4, 0xff, 3);		/* 0xfffffff8: far over 1 MiB */
	h[7] = 0xf8;
	CHECK_EQ_INT(kmip_msg_header(h, &n, &err), KM_PROTO);
	CHECK_EQ_STR(err.msg, "response of 4294967288 bytes exceeds the "
	    "limit of 1048576");
	memset(h + 4, 0, 4);
	h[7] = 0x0c;
	CHECK_EQ_INT(kmip_msg_header(h, &n, &err), KM_PROTO);
	CHECK_EQ_STR(err.msg, "response length 12 not a multiple of 8");
}

TEST(every_truncation_is_refused)
{
	static const char *files[] = { "get-12", "locate-20", "getattrs-12",
	    "get-privkey-12", "err-notfound-12" };
	struct kmip_msg_reply r;
	struct kmerr err;
	unsigned char *buf;
	size_t len;

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		CHECK((buf = load(files[i], &len)) != NULL);
		for (size_t n = 0; n < len; n++) {
			CHECK_EQ_INT(decode(buf, n, KMIP_OP_GET, &r, &err),
			    KM_PROTO);
			CHECK(strncmp(err.msg, "bad response: ttlv: ", 20) == 0);
			CHECK_EQ_INT(err.reason, KMERR_BADINPUT);
			CHECK(r.root == NULL);
		}
		free(buf);
	}
}

/* patched - decode get-12 with one byte changed; the status */
static enum km_status
patched(size_t off, unsigned char v, enum kmip_op op, struct kmerr *err,
    enum km_status (*payload)(const struct kmip_msg_reply *, struct kmerr *))
{
	struct kmip_msg_reply r;
	unsigned char *buf;
	enum km_status st;
	size_t len;

	if ((buf = load("get-12", &len)) == NULL || off >= len)
		return KM_NOMEM;
	buf[off] = v;
	st = decode(buf, len, op, &r, err);
	if (st == KM_OK && payload != NULL) {
		st = payload(&r, err);
		kmip_msg_reply_clear(&r);
	} else if (st == KM_OK)
		kmip_msg_reply_clear(&r);
	free(buf);
	return st;
}

/* get_payload - kmip_msg_dec_get() with its outputs freed */
static enum km_status
get_payload(const struct kmip_msg_reply *r, struct kmerr *err)
{
	enum kmip_object_type t;
	unsigned char *d;
	enum km_status st;
	size_t n;

	st = kmip_msg_dec_get(r, &t, &d, &n, err);
	if (st != KM_OK && (d != NULL || n != 0 || t != KMIP_OBJ_NONE))
		return KM_NOMEM;	/* outputs not empty: a test failure */
	secmem_free(d, n);
	return st;
}

/* Offsets into get-12 (see the decoded dump in ttlv-samples.txt). */
#define OFF_BATCH_COUNT_TAG	0x4a	/* last tag byte of Batch Count */
#define OFF_RESULT_TAG		0x72	/* last tag byte of Result Status */
#define OFF_OBJTYPE_TYPE	0x8b	/* type byte of Object Type */
#define OFF_SECRET_TAG		0xaa	/* last tag byte of Secret Data */
#define OFF_MATERIAL_TYPE	0xe3	/* type byte of Key Material */
#define OFF_MATERIAL_LEN	0xe7	/* last length byte of Key Material */

TEST(wrong_tag_wrong_type_lying_length)
{
	struct kmerr err;

	CHECK_EQ_INT(patched(OFF_BATCH_COUNT_TAG, 0x0e, KMIP_OP_GET, &err,
	    NULL), KM_PROTO);
	CHECK_EQ_STR(err.msg, "bad response: no header or not exactly one "
	    "batch item");
	CHECK_EQ_INT(patched(OFF_RESULT_TAG, 0x7e, KMIP_OP_GET, &err, NULL),
	    KM_PROTO);
	CHECK_EQ_STR(err.msg, "bad response: no result status");
	CHECK_EQ_INT(patched(OFF_OBJTYPE_TYPE, 0x02, KMIP_OP_GET, &err,
	    get_payload), KM_PROTO);
	CHECK_EQ_STR(err.msg, "bad response: no object type");
	CHECK_EQ_INT(patched(OFF_SECRET_TAG, 0x86, KMIP_OP_GET, &err,
	    get_payload), KM_PROTO);
	CHECK_EQ_STR(err.msg, "bad response: no SecretData object");
	CHECK_EQ_INT(patched(OFF_MATERIAL_TYPE, 0x07, KMIP_OP_GET, &err,
	    get_payload), KM_PROTO);
	CHECK(strstr(err.msg, "no object value as a byte string") != NULL);
	CHECK_EQ_INT(patched(OFF_MATERIAL_LEN, 0x28, KMIP_OP_GET, &err,
	    get_payload), KM_PROTO);
	CHECK(strncmp(err.msg, "bad response: ttlv: ", 20) == 0);
	CHECK_EQ_INT(patched(OFF_MATERIAL_LEN, 0x20, KMIP_OP_GET, &err,
	    get_payload), KM_OK);	/* the unpatched byte: all is well */
}

TEST(locate_with_a_bad_uid)
{
	struct kmip_msg_reply r;
	struct kmip_uid_list *l = (struct kmip_uid_list *)&r;
	struct kmerr err;
	unsigned char *buf;
	size_t len;

	CHECK((buf = load("locate-12", &len)) != NULL);
	buf[0x8b] = 0x08;		/* first uid: a Byte String */
	CHECK_EQ_INT(decode(buf, len, KMIP_OP_LOCATE, &r, &err), KM_OK);
	CHECK_EQ_INT(kmip_msg_dec_locate(&r, &l, &err), KM_PROTO);
	CHECK_EQ_STR(err.msg, "bad unique identifier in response");
	CHECK(l == NULL);
	kmip_msg_reply_clear(&r);
	free(buf);
}

TEST(requests_as_pykmip_sends_them)
{
	struct kmip_locate_req q = { .name = "share:dave@example.com#2" };
	struct ttlv_buf *b;
	struct kmerr err;

	CHECK_EQ_INT(kmip_msg_req_uid(KMIP_OP_GET, "2", &b, &err), KM_OK);
	CHECK(same_hex(b, GET_REQ));
	ttlv_buf_free(b);
	CHECK_EQ_INT(kmip_msg_req_locate(&q, &b, &err), KM_OK);
	CHECK(same_hex(b, LOCATE_REQ));
	ttlv_buf_free(b);
}

TEST(revoke_carries_the_given_time)
{
	static const uint32_t date[] = { 0x42000F, 0x420079, 0x420021, 0 };
	struct ttlv_item *root;
	struct ttlv_buf *b;
	struct kmerr err;
	const unsigned char *p;
	int64_t when;
	size_t n;
	struct kmerr e;

	CHECK_EQ_INT(kmip_msg_req_revoke("7", KMIP_REVOKE_KEY_COMPROMISE,
	    "lost", 1795422880, &b, &err), KM_OK);
	CHECK((p = ttlv_buf_data(b, &n)) != NULL);
	CHECK_EQ_INT(ttlv_decode(p, n, &root, &e), KM_OK);
	CHECK_EQ_INT(ttlv_get_datetime(ttlv_path(root, date), &when), KM_OK);
	CHECK_EQ_INT(when, 1795422880);
	ttlv_free(root);
	ttlv_buf_free(b);
	CHECK_EQ_INT(kmip_msg_req_revoke("7",
	    KMIP_REVOKE_CESSATION_OF_OPERATION, NULL, 1795422880, &b, &err),
	    KM_OK);
	CHECK((p = ttlv_buf_data(b, &n)) != NULL);
	CHECK_EQ_INT(ttlv_decode(p, n, &root, &e), KM_OK);
	CHECK(ttlv_path(root, date) == NULL);
	ttlv_free(root);
	ttlv_buf_free(b);
}

TEST(bad_arguments_build_nothing)
{
	static const unsigned char junk[] = { 1, 2, 3 };
	char longuid[KMIP_UID_MAX + 1];
	struct kmip_register_req q = { .type = KMIP_OBJ_CERTIFICATE,
	    .data = junk, .len = sizeof(junk) };
	struct ttlv_buf *b = (struct ttlv_buf *)junk;
	struct kmerr err;

	memset(longuid, 'u', sizeof(longuid) - 1);
	longuid[sizeof(longuid) - 1] = '\0';
	CHECK_EQ_INT(kmip_msg_req_uid(KMIP_OP_GET, "", &b, &err), KM_PERMFAIL);
	CHECK_EQ_STR(err.msg, "bad unique identifier");
	CHECK(b == NULL);
	CHECK_EQ_INT(kmip_msg_req_get_attributes(longuid, &b, &err),
	    KM_PERMFAIL);
	CHECK_EQ_INT(kmip_msg_req_revoke(NULL, KMIP_REVOKE_KEY_COMPROMISE,
	    NULL, 0, &b, &err), KM_PERMFAIL);
	CHECK_EQ_INT(kmip_msg_req_register(&q, &b, &err), KM_PERMFAIL);
	CHECK(strncmp(err.msg, "a name (< 256 bytes)", 20) == 0);
	q.name = "x";
	q.type = KMIP_OBJ_PRIVATE_KEY;	/* no alg/bits, and not PKCS#8 */
	CHECK_EQ_INT(kmip_msg_req_register(&q, &b, &err), KM_PERMFAIL);
	CHECK(strncmp(err.msg, "cannot read the key's algorithm", 31) == 0);
	q.type = KMIP_OBJ_OPAQUE;
	CHECK_EQ_INT(kmip_msg_req_register(&q, &b, &err), KM_PERMFAIL);
	CHECK_EQ_STR(err.msg, "object type OpaqueObject not supported");
	CHECK(b == NULL);
	q.type = KMIP_OBJ_SECRET_DATA;
	CHECK_EQ_INT(kmip_msg_req_register(&q, &b, &err), KM_OK);
	CHECK(b != NULL);
	ttlv_buf_free(b);
}

static const struct test_case tests[] = {
	T(recorded_locate_responses),
	T(recorded_get_responses),
	T(private_key_get_response),
	T(certificate_get_response),
	T(register_attributes_versions),
	T(uid_only_responses),
	T(server_errors),
	T(header_checks),
	T(every_truncation_is_refused),
	T(wrong_tag_wrong_type_lying_length),
	T(locate_with_a_bad_uid),
	T(requests_as_pykmip_sends_them),
	T(revoke_carries_the_given_time),
	T(bad_arguments_build_nothing),
	{ 0 }
};

int
main(int argc, char **argv)
{
	return harness_main(argc, argv, tests);
}
