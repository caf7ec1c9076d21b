/*
 * test_ttlv.c - known-answer and malformed-input tests for keyclient/ttlv.c
 *
 * The hex vectors are real KMIP messages captured between the PyKMIP 0.10
 * client and server (see /work/shared/km/ttlv-samples.txt): requests must be
 * re-encoded byte for byte, responses must decode to the documented values.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ttlv.h"

static const char LOCATE_REQ_12[] =
    "42007801000000b04200770100000038420069010000002042006a0200000004"
    "000000010000000042006b0200000004000000020000000042000d0200000004"
    "000000010000000042000f010000006842005c05000000040000000800000000"
    "4200790100000050420008010000004842000a07000000044e616d6500000000"
    "42000b0100000030420055070000001873686172653a64617665406578616d70"
    "6c652e636f6d233242005405000000040000000100000000"
    ;
static const char LOCATE_RESP_12[] =
    "42007b01000000a042007a0100000048420069010000002042006a0200000004"
    "000000010000000042006b020000000400000002000000004200920900000008"
    "000000006b03faa042000d0200000004000000010000000042000f0100000048"
    "42005c0500000004000000080000000042007f05000000040000000000000000"
    "42007c0100000020420094070000000132000000000000004200940700000001"
    "3100000000000000"
    ;
static const char GET_REQ_12[] =
    "42007801000000704200770100000038420069010000002042006a0200000004"
    "000000010000000042006b0200000004000000020000000042000d0200000004"
    "000000010000000042000f010000002842005c05000000040000000a00000000"
    "420079010000001042009407000000013200000000000000"
    ;
static const char GET_RESP_12[] =
    "42007b010000010042007a0100000048420069010000002042006a0200000004"
    "000000010000000042006b020000000400000002000000004200920900000008"
    "000000006b03faa042000d0200000004000000010000000042000f01000000a8"
    "42005c05000000040000000a0000000042007f05000000040000000000000000"
    "42007c0100000080420057050000000400000007000000004200940700000001"
    "3200000000000000420085010000005842008605000000040000000200000000"
    "4200400100000040420042050000000400000002000000004200450100000028"
    "4200430800000020000102030405060708090a0b0c0d0e0f1011121314151617"
    "18191a1b1c1d1e1f"
    ;
static const char LOCATE_REQ_20[] =
    "42007801000000a04200770100000038420069010000002042006a0200000004"
    "000000020000000042006b0200000004000000000000000042000d0200000004"
    "000000010000000042000f010000005842005c05000000040000000800000000"
    "4200790100000040420125010000003842005301000000304200550700000018"
    "73686172653a64617665406578616d706c652e636f6d23324200540500000004"
    "0000000100000000"
    ;
static const char LOCATE_RESP_20[] =
    "42007b01000000b042007a0100000048420069010000002042006a0200000004"
    "000000020000000042006b020000000400000000000000004200920900000008"
    "000000006b03faa442000d0200000004000000010000000042000f0100000058"
    "42005c0500000004000000080000000042007f05000000040000000000000000"
    "42007c0100000030420094070000000133000000000000004200940700000001"
    "320000000000000042009407000000013100000000000000"
    ;
static const char GET_REQ_20[] =
    "42007801000000704200770100000038420069010000002042006a0200000004"
    "000000020000000042006b0200000004000000000000000042000d0200000004"
    "000000010000000042000f010000002842005c05000000040000000a00000000"
    "420079010000001042009407000000013300000000000000"
    ;
static const char GET_RESP_20[] =
    "42007b010000010042007a0100000048420069010000002042006a0200000004"
    "000000020000000042006b020000000400000000000000004200920900000008"
    "000000006b03faa442000d0200000004000000010000000042000f01000000a8"
    "42005c05000000040000000a0000000042007f05000000040000000000000000"
    "42007c0100000080420057050000000400000007000000004200940700000001"
    "3300000000000000420085010000005842008605000000040000000200000000"
    "4200400100000040420042050000000400000002000000004200450100000028"
    "4200430800000020000102030405060708090a0b0c0d0e0f1011121314151617"
    "18191a1b1c1d1e1f"
    ;

/* KMIP tags used below */
#define T_REQ_MSG	0x420078
#define T_RESP_MSG	0x42007B
#define T_REQ_HDR	0x420077
#define T_RESP_HDR	0x42007A
#define T_PROTO_VER	0x420069
#define T_VER_MAJOR	0x42006A
#define T_VER_MINOR	0x42006B
#define T_BATCH_COUNT	0x42000D
#define T_BATCH_ITEM	0x42000F
#define T_OPERATION	0x42005C
#define T_REQ_PAYLOAD	0x420079
#define T_RESP_PAYLOAD	0x42007C
#define T_RESULT_STATUS	0x42007F
#define T_TIME_STAMP	0x420092
#define T_UID		0x420094
#define T_ATTRIBUTE	0x420008
#define T_ATTR_NAME	0x42000A
#define T_ATTR_VALUE	0x42000B
#define T_NAME		0x420053
#define T_NAME_VALUE	0x420055
#define T_NAME_TYPE	0x420054
#define T_ATTRIBUTES	0x420125
#define T_OBJECT_TYPE	0x420057
#define T_SECRET_DATA	0x420085
#define T_SECRET_TYPE	0x420086
#define T_KEY_BLOCK	0x420040
#define T_KEY_FORMAT	0x420042
#define T_KEY_VALUE	0x420045
#define T_KEY_MATERIAL	0x420043

/* unhex - decode a hex string into a malloc'ed buffer */
static unsigned char *
unhex(const char *h, size_t *len)
{
	size_t n = strlen(h) / 2;
	unsigned char *p = malloc(n ? n : 1);

	for (size_t i = 0; i < n; i++) {
		unsigned int v;

		sscanf(h + 2 * i, "%2x", &v);
		p[i] = (unsigned char)v;
	}
	*len = n;
	return p;
}

/* reencode - encode a decoded tree back into b, generically */
static void
reencode(struct ttlv_buf *b, const struct ttlv_item *it)
{
	switch (it->type) {
	case TTLV_STRUCTURE:
		ttlv_begin(b, it->tag);
		for (const struct ttlv_item *c = it->child; c; c = c->next)
			reencode(b, c);
		ttlv_end(b);
		break;
	case TTLV_INTEGER:
		ttlv_add_int(b, it->tag, (int32_t)it->num);
		break;
	case TTLV_ENUMERATION:
		ttlv_add_enum(b, it->tag, (uint32_t)it->num);
		break;
	case TTLV_LONG_INTEGER:
		ttlv_add_long(b, it->tag, it->num);
		break;
	case TTLV_DATE_TIME:
		ttlv_add_datetime(b, it->tag, it->num);
		break;
	case TTLV_BOOLEAN:
		ttlv_add_bool(b, it->tag, (int)it->num);
		break;
	case TTLV_BYTE_STRING:
		ttlv_add_bytes(b, it->tag, it->value, it->len);
		break;
	case TTLV_TEXT_STRING: {
		char *s = strndup((const char *)it->value, it->len);

		ttlv_add_text(b, it->tag, s);
		free(s);
		break;
	}
	default:
		break;
	}
}

/* decode_hex - decode a hex vector; the caller frees both */
static enum km_status
decode_hex(const char *hex, unsigned char **buf, size_t *len,
    struct ttlv_item **root, struct kmerr *err)
{
	*buf = unhex(hex, len);
	return ttlv_decode(*buf, *len, root, err);
}

/* request_header - the 1.x/2.0 request header PyKMIP's client sends */
static void
request_header(struct ttlv_buf *b, int major, int minor)
{
	ttlv_begin(b, T_REQ_HDR);
	ttlv_begin(b, T_PROTO_VER);
	ttlv_add_int(b, T_VER_MAJOR, major);
	ttlv_add_int(b, T_VER_MINOR, minor);
	ttlv_end(b);
	ttlv_add_int(b, T_BATCH_COUNT, 1);
	ttlv_end(b);
}

static int quiet;	/* same_as_hex: do not print a mismatch */

/* same_as_hex - does the encoder's output equal the hex vector */
static int
same_as_hex(struct ttlv_buf *b, const char *hex)
{
	size_t n, want_len;
	const unsigned char *p = ttlv_buf_data(b, &n);
	unsigned char *want = unhex(hex, &want_len);
	int same = p != NULL && n == want_len && memcmp(p, want, n) == 0;

	if (!same && p != NULL && !quiet) {
		printf("    got  %zu bytes:", n);
		for (size_t i = 0; i < n; i++)
			printf("%02x", p[i]);
		printf("\n");
	}
	free(want);
	return same;
}

TEST(decode_locate_response_12)
{
	unsigned char *buf;
	size_t len, n;
	struct ttlv_item *root;
	const struct ttlv_item *hdr, *bi, *pl, *u;
	const char *s;
	struct kmerr err;
	int32_t v;
	uint32_t e;
	int64_t ts;

	CHECK_EQ_INT(decode_hex(LOCATE_RESP_12, &buf, &len, &root, &err), KM_OK);
	CHECK_EQ_INT(len, 168);
	CHECK_EQ_INT(root->tag, T_RESP_MSG);
	CHECK_EQ_INT(root->type, TTLV_STRUCTURE);
	CHECK_EQ_INT(root->len, 160);
	CHECK_EQ_INT(root->nchildren, 2);
	hdr = ttlv_find(root, T_RESP_HDR);
	CHECK(hdr != NULL);
	CHECK_EQ_INT(ttlv_get_int(ttlv_find(ttlv_find(hdr, T_PROTO_VER),
	    T_VER_MAJOR), &v), KM_OK);
	CHECK_EQ_INT(v, 1);
	CHECK_EQ_INT(ttlv_get_int(ttlv_find(ttlv_find(hdr, T_PROTO_VER),
	    T_VER_MINOR), &v), KM_OK);
	CHECK_EQ_INT(v, 2);
	CHECK_EQ_INT(ttlv_get_datetime(ttlv_find(hdr, T_TIME_STAMP), &ts), KM_OK);
	CHECK_EQ_INT(ts, 1795422880);
	bi = ttlv_find(root, T_BATCH_ITEM);
	CHECK_EQ_INT(ttlv_get_enum(ttlv_find(bi, T_OPERATION), &e), KM_OK);
	CHECK_EQ_INT(e, 8);
	CHECK_EQ_INT(ttlv_get_enum(ttlv_find(bi, T_RESULT_STATUS), &e), KM_OK);
	CHECK_EQ_INT(e, 0);
	pl = ttlv_path(root, (const uint32_t[]){ T_BATCH_ITEM, T_RESP_PAYLOAD, 0 });
	CHECK(pl != NULL);
	CHECK_EQ_INT(pl->nchildren, 2);
	u = ttlv_find(pl, T_UID);
	CHECK_EQ_INT(ttlv_get_text(u, &s, &n), KM_OK);
	CHECK_EQ_INT(n, 1);
	CHECK(s[0] == '2');
	u = ttlv_next(u);
	CHECK_EQ_INT(ttlv_get_text(u, &s, &n), KM_OK);
	CHECK(n == 1 && s[0] == '1');
	CHECK(ttlv_next(u) == NULL);
	ttlv_free(root);
	free(buf);
}

TEST(decode_get_response_12)
{
	unsigned char *buf;
	size_t len, n;
	struct ttlv_item *root;
	const struct ttlv_item *pl, *sd;
	const unsigned char *km;
	struct kmerr err;
	char uid[8];
	uint32_t e;

	CHECK_EQ_INT(decode_hex(GET_RESP_12, &buf, &len, &root, &err), KM_OK);
	pl = ttlv_path(root, (const uint32_t[]){ T_BATCH_ITEM, T_RESP_PAYLOAD, 0 });
	CHECK_EQ_INT(ttlv_get_enum(ttlv_find(pl, T_OBJECT_TYPE), &e), KM_OK);
	CHECK_EQ_INT(e, 7);
	CHECK_EQ_INT(ttlv_copy_text(ttlv_find(pl, T_UID), uid, sizeof(uid)), KM_OK);
	CHECK_EQ_STR(uid, "2");
	sd = ttlv_find(pl, T_SECRET_DATA);
	CHECK_EQ_INT(ttlv_get_enum(ttlv_find(sd, T_SECRET_TYPE), &e), KM_OK);
	CHECK_EQ_INT(e, 2);
	CHECK_EQ_INT(ttlv_get_enum(ttlv_path(sd, (const uint32_t[]){ T_KEY_BLOCK,
	    T_KEY_FORMAT, 0 }), &e), KM_OK);
	CHECK_EQ_INT(e, 2);
	CHECK_EQ_INT(ttlv_get_bytes(ttlv_path(sd, (const uint32_t[]){ T_KEY_BLOCK,
	    T_KEY_VALUE, T_KEY_MATERIAL, 0 }), &km, &n), KM_OK);
	CHECK_EQ_INT(n, 32);
	for (size_t i = 0; i < n; i++)
		CHECK_EQ_INT(km[i], i);
	/* wrong-type accessors are refused */
	CHECK_EQ_INT(ttlv_get_int(ttlv_find(pl, T_OBJECT_TYPE), (int32_t[1]){0}),
	    KM_PROTO);
	CHECK_EQ_INT(ttlv_get_bytes(ttlv_find(pl, T_UID), &km, &n), KM_PROTO);
	CHECK_EQ_INT(ttlv_get_enum(NULL, &e), KM_PROTO);
	CHECK_EQ_INT(ttlv_copy_text(ttlv_find(pl, T_UID), uid, 1), KM_PROTO);
	ttlv_free(root);
	free(buf);
}

TEST(decode_locate_response_20)
{
	unsigned char *buf;
	size_t len;
	struct ttlv_item *root;
	const struct ttlv_item *pl, *u;
	struct kmerr err;
	char uid[8];
	int count = 0;

	CHECK_EQ_INT(decode_hex(LOCATE_RESP_20, &buf, &len, &root, &err), KM_OK);
	pl = ttlv_path(root, (const uint32_t[]){ T_BATCH_ITEM, T_RESP_PAYLOAD, 0 });
	for (u = ttlv_find(pl, T_UID); u; u = ttlv_next(u)) {
		CHECK_EQ_INT(ttlv_copy_text(u, uid, sizeof(uid)), KM_OK);
		CHECK_EQ_INT(uid[0], '3' - count);
		count++;
	}
	CHECK_EQ_INT(count, 3);
	ttlv_free(root);
	free(buf);
}

TEST(all_samples_reencode_identically)
{
	const char *v[] = { LOCATE_REQ_12, LOCATE_RESP_12, GET_REQ_12,
	    GET_RESP_12, LOCATE_REQ_20, LOCATE_RESP_20, GET_REQ_20,
	    GET_RESP_20 };

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		unsigned char *buf;
		size_t len;
		struct ttlv_item *root;
		struct ttlv_buf *b;
		struct kmerr err;

		CHECK_EQ_INT(decode_hex(v[i], &buf, &len, &root, &err), KM_OK);
		b = ttlv_buf_new();
		reencode(b, root);
		CHECK(same_as_hex(b, v[i]));
		ttlv_buf_free(b);
		ttlv_free(root);
		free(buf);
	}
}

/* locate_request - build the captured Locate(Name) request */
static void
locate_request(struct ttlv_buf *b, int major, int minor, const char *name)
{
	ttlv_begin(b, T_REQ_MSG);
	request_header(b, major, minor);
	ttlv_begin(b, T_BATCH_ITEM);
	ttlv_add_enum(b, T_OPERATION, 8);
	ttlv_begin(b, T_REQ_PAYLOAD);
	if (major == 1) {
		ttlv_begin(b, T_ATTRIBUTE);
		ttlv_add_text(b, T_ATTR_NAME, "Name");
		ttlv_begin(b, T_ATTR_VALUE);
	} else {
		ttlv_begin(b, T_ATTRIBUTES);
		ttlv_begin(b, T_NAME);
	}
	ttlv_add_text(b, T_NAME_VALUE, name);
	ttlv_add_enum(b, T_NAME_TYPE, 1);
	ttlv_end(b);
	ttlv_end(b);
	ttlv_end(b);
	ttlv_end(b);
	ttlv_end(b);
}

/* get_request - build the captured Get request */
static void
get_request(struct ttlv_buf *b, int major, int minor, const char *uid)
{
	ttlv_begin(b, T_REQ_MSG);
	request_header(b, major, minor);
	ttlv_begin(b, T_BATCH_ITEM);
	ttlv_add_enum(b, T_OPERATION, 10);
	ttlv_begin(b, T_REQ_PAYLOAD);
	ttlv_add_text(b, T_UID, uid);
	ttlv_end(b);
	ttlv_end(b);
	ttlv_end(b);
}

TEST(encode_locate_request_12)
{
	struct ttlv_buf *b = ttlv_buf_new();

	locate_request(b, 1, 2, "share:dave@example.com#2");
	CHECK_EQ_INT(ttlv_buf_status(b), KM_OK);
	CHECK(same_as_hex(b, LOCATE_REQ_12));
	ttlv_buf_free(b);
}

TEST(encode_locate_request_20)
{
	struct ttlv_buf *b = ttlv_buf_new();

	locate_request(b, 2, 0, "share:dave@example.com#2");
	CHECK(same_as_hex(b, LOCATE_REQ_20));
	ttlv_buf_free(b);
}

TEST(encode_get_request_12_and_20)
{
	struct ttlv_buf *b = ttlv_buf_new();

	get_request(b, 1, 2, "2");
	CHECK(same_as_hex(b, GET_REQ_12));
	b = ttlv_buf_free(b);
	b = ttlv_buf_new();
	get_request(b, 2, 0, "3");
	CHECK(same_as_hex(b, GET_REQ_20));
	/* and a different uid gives different bytes */
	b = ttlv_buf_free(b);
	b = ttlv_buf_new();
	get_request(b, 1, 2, "3");
	quiet = 1;
	CHECK(!same_as_hex(b, GET_REQ_12));
	quiet = 0;
	ttlv_buf_free(b);
}

TEST(encode_all_types_and_padding)
{
	struct ttlv_buf *b = ttlv_buf_new();
	const unsigned char *p;
	unsigned char bytes[9] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
	struct ttlv_item *root;
	const struct ttlv_item *c;
	size_t n;
	struct kmerr err;

	ttlv_begin(b, 0x420001);
	ttlv_add_int(b, 0x420002, -5);
	ttlv_add_long(b, 0x420003, -1234567890123LL);
	ttlv_add_bool(b, 0x420004, 1);
	ttlv_add_datetime(b, 0x420005, 1795422880);
	ttlv_add_text(b, 0x420006, "");
	ttlv_add_text(b, 0x420007, "abcdefgh");
	ttlv_add_bytes(b, 0x420008, bytes, 9);
	ttlv_add_enum(b, 0x420009, 0xffffffffu);
	ttlv_end(b);
	p = ttlv_buf_data(b, &n);
	CHECK(p != NULL);
	/* 8 header + 8*(8+8) fixed/small + text "" (8) + text 8 (16) + bytes 9 (24) */
	CHECK_EQ_INT(n, 8 + 16 + 16 + 16 + 16 + 8 + 16 + 24 + 16);
	CHECK_EQ_INT(n % 8, 0);
	CHECK_EQ_INT(ttlv_decode(p, n, &root, &err), KM_OK);
	CHECK_EQ_INT(root->nchildren, 8);
	c = root->child;
	CHECK_EQ_INT(c->num, -5);
	c = c->next;
	CHECK_EQ_INT(c->num, -1234567890123LL);
	c = c->next;
	CHECK_EQ_INT(c->num, 1);
	c = c->next;
	CHECK_EQ_INT(c->num, 1795422880);
	c = c->next;
	CHECK_EQ_INT(c->len, 0);
	c = c->next;
	CHECK(c->len == 8 && memcmp(c->value, "abcdefgh", 8) == 0);
	c = c->next;
	CHECK(c->len == 9 && memcmp(c->value, bytes, 9) == 0);
	c = c->next;
	CHECK_EQ_INT(c->num, 0xffffffffLL);
	ttlv_free(root);
	ttlv_buf_free(b);
}

TEST(encoder_misuse_is_an_error)
{
	struct ttlv_buf *b = ttlv_buf_new();
	size_t n;

	ttlv_begin(b, 0x420001);
	CHECK(ttlv_buf_data(b, &n) == NULL);		/* still open */
	ttlv_end(b);
	CHECK(ttlv_buf_data(b, &n) != NULL);
	ttlv_end(b);					/* unbalanced */
	CHECK_EQ_INT(ttlv_buf_status(b), KM_PROTO);
	CHECK(ttlv_buf_data(b, &n) == NULL);
	b = ttlv_buf_free(b);
	b = ttlv_buf_new();
	for (int i = 0; i < TTLV_MAX_DEPTH + 1; i++)
		ttlv_begin(b, 0x420001);
	CHECK_EQ_INT(ttlv_buf_status(b), KM_PROTO);
	ttlv_buf_free(b);
	CHECK(ttlv_buf_free(NULL) == NULL);
	CHECK(ttlv_free(NULL) == NULL);
}

/* expect_proto - decode must fail with KM_PROTO and mention want */
static int
expect_proto(const unsigned char *p, size_t n, const char *want)
{
	struct ttlv_item *root = (struct ttlv_item *)1;
	struct kmerr err = { 0 };
	enum km_status st = ttlv_decode(p, n, &root, &err);

	if (st != KM_PROTO || root != NULL || strstr(err.msg, want) == NULL) {
		printf("    status %s, error \"%s\", wanted \"%s\"\n",
		    km_status_name(st), err.msg, want);
		return 0;
	}
	return 1;
}

TEST(malformed_empty_and_short)
{
	unsigned char z[8] = { 0 };

	CHECK(expect_proto(NULL, 0, "empty"));
	CHECK(expect_proto(z, 0, "empty"));
	CHECK(expect_proto(z, 7, "truncated item header"));
}

TEST(malformed_every_truncation)
{
	unsigned char *buf;
	size_t len;

	buf = unhex(GET_RESP_12, &len);
	for (size_t n = 1; n < len; n++) {
		struct ttlv_item *root;
		struct kmerr err;

		CHECK_EQ_INT(ttlv_decode(buf, n, &root, &err),
		    KM_PROTO);
		CHECK(root == NULL);
	}
	free(buf);
}

TEST(malformed_lying_lengths)
{
	unsigned char *buf;
	size_t len;

	buf = unhex(GET_RESP_12, &len);
	/* outer length claims more than the buffer */
	buf[7] = 0x08;	buf[6] = 0x01;			/* 0x108 > 0x100 */
	CHECK(expect_proto(buf, len, "exceeds"));
	buf[6] = 0x01;	buf[7] = 0x00;
	/* outer length claims less: trailing bytes */
	buf[7] = 0xf8;	buf[6] = 0x00;
	CHECK(expect_proto(buf, len, "exceeds"));	/* child overruns parent */
	buf[6] = 0x01;	buf[7] = 0x00;
	/* huge length */
	buf[4] = 0xff;	buf[5] = 0xff;	buf[6] = 0xff;	buf[7] = 0xf8;
	CHECK(expect_proto(buf, len, "exceeds"));
	free(buf);
	/* key material length (0x20 at the end) says 0x28 */
	buf = unhex(GET_RESP_12, &len);
	CHECK(buf[len - 33] == 0x20);
	buf[len - 33] = 0x28;
	CHECK(expect_proto(buf, len, "exceeds"));
	free(buf);
	/* two complete messages back to back: trailing bytes */
	{
		unsigned char two[240];
		unsigned char *g = unhex(GET_REQ_12, &len);

		memcpy(two, g, len);
		memcpy(two + len, g, len);
		CHECK(expect_proto(two, 2 * len, "trailing"));
		free(g);
	}
}

TEST(malformed_padding)
{
	unsigned char *buf;
	size_t len;

	buf = unhex(GET_REQ_12, &len);
	/* uid '2' is followed by 7 padding bytes: last byte of the message */
	buf[len - 1] = 0x41;
	CHECK(expect_proto(buf, len, "padding"));
	free(buf);
	buf = unhex(GET_REQ_12, &len);
	/* padding after Integer value of PROTOCOL_VERSION_MAJOR */
	CHECK(buf[40 + 12] == 0);
	buf[40 + 12] = 1;
	CHECK(expect_proto(buf, len, "padding"));
	free(buf);
}

/* item - write an 8-byte item header */
static void
item(unsigned char *p, uint32_t tag, int type, uint32_t len)
{
	p[0] = tag >> 16; p[1] = tag >> 8; p[2] = tag;
	p[3] = type;
	p[4] = len >> 24; p[5] = len >> 16; p[6] = len >> 8; p[7] = len;
}

TEST(malformed_too_deep)
{
	unsigned char buf[8 * 40];
	size_t total;

	/* 16 nested structures are fine, 17 are not */
	for (int depth = 16; depth <= 17; depth++) {
		struct ttlv_item *root;
		struct kmerr err;
		enum km_status st;

		total = 8 * depth;
		for (int i = 0; i < depth; i++)
			item(buf + 8 * i, 0x420001, 1, total - 8 * (i + 1));
		st = ttlv_decode(buf, total, &root, &err);
		if (depth == 16) {
			CHECK_EQ_INT(st, KM_OK);
			ttlv_free(root);
		} else {
			CHECK(expect_proto(buf, total, "nesting deeper"));
		}
	}
}

TEST(malformed_too_many_items)
{
	size_t n = TTLV_MAX_ITEMS + 1, total = 8 + 16 * n;
	unsigned char *buf = calloc(1, total);

	item(buf, 0x420001, 1, total - 8);
	for (size_t i = 0; i < n; i++)
		item(buf + 8 + 16 * i, 0x42000D, 2, 4);
	CHECK(expect_proto(buf, total, "more than"));
	/* one fewer is fine */
	{
		struct ttlv_item *root;
		struct kmerr err;

		item(buf, 0x420001, 1, total - 8 - 32);
		CHECK_EQ_INT(ttlv_decode(buf, total - 32, &root, &err), KM_OK);
		CHECK_EQ_INT(root->nchildren, TTLV_MAX_ITEMS - 1);
		ttlv_free(root);
	}
	free(buf);
}

TEST(malformed_type_sizes)
{
	unsigned char buf[40];
	static const struct { int type; uint32_t len; const char *err; } c[] = {
		{ 2, 8, "Integer of length 8" },
		{ 2, 0, "Integer of length 0" },
		{ 5, 2, "Enumeration of length 2" },
		{ 3, 4, "Long Integer of length 4" },
		{ 9, 4, "DateTime of length 4" },
		{ 6, 1, "Boolean of length 1" },
		{ 10, 8, "Interval of length 8" },
		{ 4, 5, "big integer length 5" },
		{ 0x0c, 8, "unknown item type 0x0c" },
		{ 0x00, 8, "unknown item type 0x00" },
		{ 1, 4, "not a multiple of 8" },
	};

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		memset(buf, 0, sizeof(buf));
		item(buf, 0x420001, 1, 16);
		item(buf + 8, 0x420002, c[i].type, c[i].len);
		CHECK(expect_proto(buf, 24, c[i].err));
	}
	/* Boolean must be 0 or 1 */
	memset(buf, 0, sizeof(buf));
	item(buf, 0x420006, 6, 8);
	buf[15] = 2;
	CHECK(expect_proto(buf, 16, "boolean value"));
}

TEST(unknown_tags_are_kept)
{
	unsigned char buf[48];
	struct ttlv_item *root;
	const struct ttlv_item *x;
	struct kmerr err;
	int32_t v;

	memset(buf, 0, sizeof(buf));
	item(buf, 0x42007B, 1, 32);
	item(buf + 8, 0x54FFFF, 7, 3);		/* vendor extension tag */
	memcpy(buf + 16, "abc", 3);
	item(buf + 24, 0x42000D, 2, 4);
	buf[35] = 7;
	CHECK_EQ_INT(ttlv_decode(buf, 40, &root, &err), KM_OK);
	x = ttlv_find(root, 0x54FFFF);
	CHECK(x != NULL && x->len == 3);
	CHECK_EQ_INT(ttlv_get_int(ttlv_find(root, 0x42000D), &v), KM_OK);
	CHECK_EQ_INT(v, 7);
	CHECK(ttlv_find(root, 0x420099) == NULL);
	CHECK(ttlv_find(x, 0x42000D) == NULL);		/* not a structure */
	ttlv_free(root);
}

TEST(random_mutations_never_crash)
{
	const char *v[] = { LOCATE_RESP_12, GET_RESP_12, LOCATE_REQ_20 };
	uint32_t seed = 12345;
	int ok = 0, bad = 0;

	for (size_t k = 0; k < 3; k++) {
		size_t len;
		unsigned char *orig = unhex(v[k], &len);
		unsigned char *m = malloc(len);

		for (int round = 0; round < 3000; round++) {
			struct ttlv_item *root;
			struct kmerr err;
			int flips;

			memcpy(m, orig, len);
			seed = seed * 1103515245u + 12345u;
			flips = 1 + (seed >> 16) % 4;
			for (int f = 0; f < flips; f++) {
				seed = seed * 1103515245u + 12345u;
				m[(seed >> 8) % len] ^= (unsigned char)(1u <<
				    ((seed >> 4) % 8));
			}
			if (ttlv_decode(m, len, &root, &err) == KM_OK) {
				ok++;
				ttlv_free(root);
			} else {
				CHECK(root == NULL && strncmp(err.msg, "ttlv: ", 6) == 0);
				bad++;
			}
		}
		free(m);
		free(orig);
	}
	/* both outcomes happen: flips in values decode, in headers do not */
	CHECK(ok > 0);
	CHECK(bad > 0);
}

static const struct test_case tests[] = {
	T(decode_locate_response_12),
	T(decode_get_response_12),
	T(decode_locate_response_20),
	T(all_samples_reencode_identically),
	T(encode_locate_request_12),
	T(encode_locate_request_20),
	T(encode_get_request_12_and_20),
	T(encode_all_types_and_padding),
	T(encoder_misuse_is_an_error),
	T(malformed_empty_and_short),
	T(malformed_every_truncation),
	T(malformed_lying_lengths),
	T(malformed_padding),
	T(malformed_too_deep),
	T(malformed_too_many_items),
	T(malformed_type_sizes),
	T(unknown_tags_are_kept),
	T(random_mutations_never_crash),
	{ 0 }
};

int
main(int argc, char **argv)
{
	return harness_main(argc, argv, tests);
}
