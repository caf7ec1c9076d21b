/*
 * kmip_msg.c - KMIP 1.2 request builders and response decoders, without
 * I/O (see kmip_msg.h).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "kmip_msg.h"
#include "secmem.h"

/* Tags (KMIP 1.2 section 9.1.3.1). */
#define TAG_ATTRIBUTE		0x420008
#define TAG_ATTR_NAME		0x42000A
#define TAG_ATTR_VALUE		0x42000B
#define TAG_BATCH_COUNT		0x42000D
#define TAG_BATCH_ITEM		0x42000F
#define TAG_CERTIFICATE		0x420013
#define TAG_CERT_TYPE		0x42001D
#define TAG_CERT_VALUE		0x42001E
#define TAG_COMPROMISE_DATE	0x420021
#define TAG_CRYPTO_ALG		0x420028
#define TAG_CRYPTO_LEN		0x42002A
#define TAG_KEY_BLOCK		0x420040
#define TAG_KEY_FORMAT		0x420042
#define TAG_KEY_MATERIAL	0x420043
#define TAG_KEY_VALUE		0x420045
#define TAG_MAX_ITEMS		0x420052
#define TAG_NAME_TYPE		0x420054
#define TAG_NAME_VALUE		0x420055
#define TAG_OBJECT_TYPE		0x420057
#define TAG_OPERATION		0x42005C
#define TAG_PRIVATE_KEY		0x420064
#define TAG_PROTO_VERSION	0x420069
#define TAG_VER_MAJOR		0x42006A
#define TAG_VER_MINOR		0x42006B
#define TAG_PUBLIC_KEY		0x42006D
#define TAG_REQ_HEADER		0x420077
#define TAG_REQ_MESSAGE		0x420078
#define TAG_REQ_PAYLOAD		0x420079
#define TAG_RESP_HEADER		0x42007A
#define TAG_RESP_PAYLOAD	0x42007C
#define TAG_RESULT_MESSAGE	0x42007D
#define TAG_RESULT_REASON	0x42007E
#define TAG_RESULT_STATUS	0x42007F
#define TAG_REVOKE_MESSAGE	0x420080
#define TAG_REVOKE_REASON	0x420081
#define TAG_REVOKE_CODE		0x420082
#define TAG_SECRET_DATA		0x420085
#define TAG_SECRET_TYPE		0x420086
#define TAG_SYMMETRIC_KEY	0x42008F
#define TAG_TEMPLATE_ATTR	0x420091
#define TAG_UID			0x420094

#define KEY_FORMAT_OPAQUE	2
#define KEY_FORMAT_PKCS8	4
#define CERT_TYPE_X509		1
#define NAME_TYPE_TEXT		1

/* Result Reasons kmilter tells apart. */
#define RESULT_ITEM_NOT_FOUND	0x01
#define RESULT_PERMISSION_DENIED 0x0C
#define RESULT_ALREADY_EXISTS	0x18
#define RESULT_GENERAL_FAILURE	0x100

/* kmip_msg_op_name - printable name of an operation */
const char *
kmip_msg_op_name(enum kmip_op op)
{
	switch (op) {
	case KMIP_OP_REGISTER:		return "Register";
	case KMIP_OP_LOCATE:		return "Locate";
	case KMIP_OP_GET:		return "Get";
	case KMIP_OP_GET_ATTRIBUTES:	return "Get Attributes";
	case KMIP_OP_ACTIVATE:		return "Activate";
	case KMIP_OP_REVOKE:		return "Revoke";
	case KMIP_OP_DESTROY:		return "Destroy";
	case KMIP_OP_DISCOVER_VERSIONS:	return "Discover Versions";
	}
	return "Operation";
}

/* reason_name - printable name of a KMIP Result Reason */
static const char *
reason_name(uint32_t r)
{
	static const char *names[] = {
		NULL, "ITEM_NOT_FOUND", "RESPONSE_TOO_LARGE",
		"AUTHENTICATION_NOT_SUCCESSFUL", "INVALID_MESSAGE",
		"OPERATION_NOT_SUPPORTED", "MISSING_DATA", "INVALID_FIELD",
		"FEATURE_NOT_SUPPORTED", "OPERATION_CANCELED_BY_REQUESTER",
		"CRYPTOGRAPHIC_FAILURE", "ILLEGAL_OPERATION",
		"PERMISSION_DENIED", "OBJECT_ARCHIVED", "INDEX_OUT_OF_BOUNDS",
		"APPLICATION_NAMESPACE_NOT_SUPPORTED",
		"KEY_FORMAT_TYPE_NOT_SUPPORTED",
		"KEY_COMPRESSION_TYPE_NOT_SUPPORTED", "ENCODING_OPTION_ERROR",
		"KEY_VALUE_NOT_PRESENT", "ATTESTATION_REQUIRED",
		"ATTESTATION_FAILED", "SENSITIVE", "NOT_EXTRACTABLE",
		"OBJECT_ALREADY_EXISTS"
	};

	if (r < sizeof(names) / sizeof(names[0]) && names[r] != NULL)
		return names[r];
	if (r == RESULT_GENERAL_FAILURE)
		return "GENERAL_FAILURE";
	return "UNKNOWN_REASON";
}

/* reason_code - the error reason a caller may tell apart */
static enum kmerr_reason
reason_code(uint32_t r)
{
	switch (r) {
	case RESULT_ITEM_NOT_FOUND:	return KMERR_NOTFOUND;
	case RESULT_PERMISSION_DENIED:	return KMERR_REFUSED;
	case RESULT_ALREADY_EXISTS:	return KMERR_EXISTS;
	}
	return KMERR_NONE;
}

/* bad - a malformed response; returns KM_PROTO */
static enum km_status
bad(struct kmerr *err, const char *what)
{
	return kmerr_set(err, KM_PROTO, KMERR_BADINPUT, "%s", what);
}

/* uid_ok - is uid a usable identifier */
static int
uid_ok(const char *uid)
{
	return uid != NULL && *uid != '\0' && strlen(uid) < KMIP_UID_MAX;
}

/* bad_uid - refuse a request for a bad identifier; returns KM_PERMFAIL */
static enum km_status
bad_uid(struct ttlv_buf **out, struct kmerr *err)
{
	*out = NULL;
	return kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
	    "bad unique identifier");
}

/* request_begin - start a request message with one batch item */
static struct ttlv_buf *
request_begin(enum kmip_op op)
{
	struct ttlv_buf *b = ttlv_buf_new();

	if (b == NULL)
		return NULL;
	ttlv_begin(b, TAG_REQ_MESSAGE);
	ttlv_begin(b, TAG_REQ_HEADER);
	ttlv_begin(b, TAG_PROTO_VERSION);
	ttlv_add_int(b, TAG_VER_MAJOR, 1);
	ttlv_add_int(b, TAG_VER_MINOR, 2);
	ttlv_end(b);
	ttlv_add_int(b, TAG_BATCH_COUNT, 1);
	ttlv_end(b);
	ttlv_begin(b, TAG_BATCH_ITEM);
	ttlv_add_enum(b, TAG_OPERATION, (uint32_t)op);
	ttlv_begin(b, TAG_REQ_PAYLOAD);
	return b;
}

/* request_end - close payload, batch item and message, and hand it out */
static enum km_status
request_end(struct ttlv_buf *b, struct ttlv_buf **out, struct kmerr *err)
{
	enum km_status st;
	size_t n;

	*out = NULL;
	if (b == NULL)
		return kmerr_set(err, KM_NOMEM, KMERR_NONE,
		    "cannot encode the request");
	ttlv_end(b);
	ttlv_end(b);
	ttlv_end(b);
	if (ttlv_buf_data(b, &n) == NULL) {
		st = ttlv_buf_status(b);
		ttlv_buf_free(b);
		if (st == KM_OK)
			st = KM_PROTO;
		return kmerr_set(err, st, st == KM_PROTO ? KMERR_BADINPUT :
		    KMERR_NONE, "cannot encode the request");
	}
	*out = b;
	return KM_OK;
}

/* kmip_msg_req_discover_versions - ask which protocol versions it speaks */
enum km_status
kmip_msg_req_discover_versions(struct ttlv_buf **out, struct kmerr *err)
{
	return request_end(request_begin(KMIP_OP_DISCOVER_VERSIONS), out, err);
}

/* add_name_attr - Attribute{ "Name", Name{value, text} } */
static void
add_name_attr(struct ttlv_buf *b, const char *name)
{
	ttlv_begin(b, TAG_ATTRIBUTE);
	ttlv_add_text(b, TAG_ATTR_NAME, "Name");
	ttlv_begin(b, TAG_ATTR_VALUE);
	ttlv_add_text(b, TAG_NAME_VALUE, name);
	ttlv_add_enum(b, TAG_NAME_TYPE, NAME_TYPE_TEXT);
	ttlv_end(b);
	ttlv_end(b);
}

/* add_text_attr - Attribute{ name, text } */
static void
add_text_attr(struct ttlv_buf *b, const char *attr, const char *v)
{
	ttlv_begin(b, TAG_ATTRIBUTE);
	ttlv_add_text(b, TAG_ATTR_NAME, attr);
	ttlv_add_text(b, TAG_ATTR_VALUE, v);
	ttlv_end(b);
}

/* add_enum_attr - Attribute{ name, enumeration } */
static void
add_enum_attr(struct ttlv_buf *b, const char *attr, uint32_t v)
{
	ttlv_begin(b, TAG_ATTRIBUTE);
	ttlv_add_text(b, TAG_ATTR_NAME, attr);
	ttlv_add_enum(b, TAG_ATTR_VALUE, v);
	ttlv_end(b);
}

/* key_params - algorithm and bit length of an unencrypted PKCS#8 DER key */
static int
key_params(const unsigned char *der, size_t len, int *alg, int *bits)
{
	const unsigned char *p = der;
	EVP_PKEY *pk = d2i_AutoPrivateKey(NULL, &p, (long)len);
	int ok = 0;

	if (pk == NULL)
		return 0;
	switch (EVP_PKEY_get_base_id(pk)) {
	case EVP_PKEY_RSA:
		*alg = KMIP_ALG_RSA;
		ok = 1;
		break;
	case EVP_PKEY_EC:
		*alg = KMIP_ALG_EC;
		ok = 1;
		break;
	}
	*bits = EVP_PKEY_get_bits(pk);
	EVP_PKEY_free(pk);
	return ok;
}

/* register_check - refuse what Register cannot send; find alg and bits */
static enum km_status
register_check(const struct kmip_register_req *q, int *alg, int *bits,
    struct kmerr *err)
{
	*alg = q->alg;
	*bits = q->bits;
	if (q->name == NULL || *q->name == '\0' ||
	    strlen(q->name) >= KMIP_NAME_MAX ||
	    (q->group != NULL && strlen(q->group) >= KMIP_NAME_MAX) ||
	    q->data == NULL || q->len == 0 || q->len > KMIP_MAX_RESPONSE / 2)
		return kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT, "a name (< %d "
		    "bytes) and 1..%d bytes of data are required",
		    KMIP_NAME_MAX, KMIP_MAX_RESPONSE / 2);
	if (q->type == KMIP_OBJ_PRIVATE_KEY && (*alg == 0 || *bits == 0) &&
	    !key_params(q->data, q->len, alg, bits))
		return kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT, "cannot read "
		    "the key's algorithm and size from the PKCS#8 data; give "
		    "them");
	if (q->type != KMIP_OBJ_CERTIFICATE && q->type != KMIP_OBJ_SECRET_DATA &&
	    q->type != KMIP_OBJ_PRIVATE_KEY)
		return kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT, "object type "
		    "%s not supported", kmip_object_type_name(q->type));
	return KM_OK;
}

/* add_register_attrs - the Template-Attribute of a Register */
static void
add_register_attrs(struct ttlv_buf *b, const struct kmip_register_req *q)
{
	ttlv_begin(b, TAG_TEMPLATE_ATTR);
	add_name_attr(b, q->name);
	if (q->group != NULL)
		add_text_attr(b, "Object Group", q->group);
	if (q->usage_mask != 0) {
		ttlv_begin(b, TAG_ATTRIBUTE);
		ttlv_add_text(b, TAG_ATTR_NAME, "Cryptographic Usage Mask");
		ttlv_add_int(b, TAG_ATTR_VALUE, (int32_t)q->usage_mask);
		ttlv_end(b);
	}
	ttlv_end(b);
}

/* add_register_object - the object a Register carries */
static void
add_register_object(struct ttlv_buf *b, const struct kmip_register_req *q,
    int alg, int bits)
{
	switch (q->type) {
	case KMIP_OBJ_CERTIFICATE:
		ttlv_begin(b, TAG_CERTIFICATE);
		ttlv_add_enum(b, TAG_CERT_TYPE, CERT_TYPE_X509);
		ttlv_add_bytes(b, TAG_CERT_VALUE, q->data, q->len);
		ttlv_end(b);
		break;
	case KMIP_OBJ_SECRET_DATA:
		ttlv_begin(b, TAG_SECRET_DATA);
		ttlv_add_enum(b, TAG_SECRET_TYPE, q->secret_type ?
		    (uint32_t)q->secret_type : KMIP_SECRET_SEED);
		ttlv_begin(b, TAG_KEY_BLOCK);
		ttlv_add_enum(b, TAG_KEY_FORMAT, KEY_FORMAT_OPAQUE);
		ttlv_begin(b, TAG_KEY_VALUE);
		ttlv_add_bytes(b, TAG_KEY_MATERIAL, q->data, q->len);
		ttlv_end(b);
		ttlv_end(b);
		ttlv_end(b);
		break;
	default:
		ttlv_begin(b, TAG_PRIVATE_KEY);
		ttlv_begin(b, TAG_KEY_BLOCK);
		ttlv_add_enum(b, TAG_KEY_FORMAT, KEY_FORMAT_PKCS8);
		ttlv_begin(b, TAG_KEY_VALUE);
		ttlv_add_bytes(b, TAG_KEY_MATERIAL, q->data, q->len);
		ttlv_end(b);
		ttlv_add_enum(b, TAG_CRYPTO_ALG, (uint32_t)alg);
		ttlv_add_int(b, TAG_CRYPTO_LEN, bits);
		ttlv_end(b);
		ttlv_end(b);
		break;
	}
}

/* kmip_msg_req_register - register a certificate, secret data or key */
enum km_status
kmip_msg_req_register(const struct kmip_register_req *q,
    struct ttlv_buf **out, struct kmerr *err)
{
	struct ttlv_buf *b;
	enum km_status st;
	int alg, bits;

	*out = NULL;
	if ((st = register_check(q, &alg, &bits, err)) != KM_OK)
		return st;
	if ((b = request_begin(KMIP_OP_REGISTER)) == NULL)
		return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	ttlv_add_enum(b, TAG_OBJECT_TYPE, (uint32_t)q->type);
	add_register_attrs(b, q);
	add_register_object(b, q, alg, bits);
	return request_end(b, out, err);	/* a failure wipes the key */
}

/* kmip_msg_req_locate - find the objects matching all criteria */
enum km_status
kmip_msg_req_locate(const struct kmip_locate_req *q, struct ttlv_buf **out,
    struct kmerr *err)
{
	struct ttlv_buf *b = request_begin(KMIP_OP_LOCATE);

	if (b != NULL) {
		if (q->max_items > 0)
			ttlv_add_int(b, TAG_MAX_ITEMS, q->max_items);
		if (q->type != KMIP_OBJ_NONE)
			add_enum_attr(b, "Object Type", (uint32_t)q->type);
		if (q->state != KMIP_STATE_NONE)
			add_enum_attr(b, "State", (uint32_t)q->state);
		if (q->name != NULL)
			add_name_attr(b, q->name);
		if (q->group != NULL)
			add_text_attr(b, "Object Group", q->group);
	}
	return request_end(b, out, err);
}

/* kmip_msg_req_uid - a request whose payload is just the unique identifier */
enum km_status
kmip_msg_req_uid(enum kmip_op op, const char *uid, struct ttlv_buf **out,
    struct kmerr *err)
{
	struct ttlv_buf *b;

	if (!uid_ok(uid))
		return bad_uid(out, err);
	if ((b = request_begin(op)) != NULL)
		ttlv_add_text(b, TAG_UID, uid);
	return request_end(b, out, err);
}

/* kmip_msg_req_get_attributes - the attributes struct kmip_attrs holds */
enum km_status
kmip_msg_req_get_attributes(const char *uid, struct ttlv_buf **out,
    struct kmerr *err)
{
	static const char *want[] = { "State", "Name", "Object Type",
	    "Initial Date", "Activation Date", "Object Group",
	    "Cryptographic Usage Mask" };
	struct ttlv_buf *b;

	if (!uid_ok(uid))
		return bad_uid(out, err);
	if ((b = request_begin(KMIP_OP_GET_ATTRIBUTES)) != NULL) {
		ttlv_add_text(b, TAG_UID, uid);
		for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++)
			ttlv_add_text(b, TAG_ATTR_NAME, want[k]);
	}
	return request_end(b, out, err);
}

/* kmip_msg_req_revoke - revoke an object for a reason */
enum km_status
kmip_msg_req_revoke(const char *uid, enum kmip_revoke_reason reason,
    const char *message, int64_t now, struct ttlv_buf **out,
    struct kmerr *err)
{
	struct ttlv_buf *b;

	if (!uid_ok(uid))
		return bad_uid(out, err);
	if ((b = request_begin(KMIP_OP_REVOKE)) != NULL) {
		ttlv_add_text(b, TAG_UID, uid);
		ttlv_begin(b, TAG_REVOKE_REASON);
		ttlv_add_enum(b, TAG_REVOKE_CODE, (uint32_t)reason);
		if (message != NULL)
			ttlv_add_text(b, TAG_REVOKE_MESSAGE, message);
		ttlv_end(b);
		if (reason == KMIP_REVOKE_KEY_COMPROMISE)
			ttlv_add_datetime(b, TAG_COMPROMISE_DATE, now);
	}
	return request_end(b, out, err);
}

/* kmip_msg_header - check a response message's tag, type and length */
enum km_status
kmip_msg_header(const unsigned char *hdr, size_t *bodylen, struct kmerr *err)
{
	uint32_t len;

	*bodylen = 0;
	len = (uint32_t)hdr[4] << 24 | (uint32_t)hdr[5] << 16 |
	    (uint32_t)hdr[6] << 8 | hdr[7];
	if (hdr[0] != 0x42 || hdr[1] != 0x00 || hdr[2] != 0x7B ||
	    hdr[3] != 0x01)
		return kmerr_set(err, KM_PROTO, KMERR_BADINPUT, "not a KMIP "
		    "response message (header %02x%02x%02x%02x)", hdr[0],
		    hdr[1], hdr[2], hdr[3]);
	if (len > KMIP_MAX_RESPONSE - KMIP_MSG_HEADER)
		return kmerr_set(err, KM_PROTO, KMERR_BADINPUT, "response of "
		    "%u bytes exceeds the limit of %d", len, KMIP_MAX_RESPONSE);
	if (len % 8 != 0)
		return kmerr_set(err, KM_PROTO, KMERR_BADINPUT, "response "
		    "length %u not a multiple of 8", len);
	*bodylen = len;
	return KM_OK;
}

/* server_error - the error the server reported in a batch item */
static enum km_status
server_error(const struct ttlv_item *bi, uint32_t status, struct kmerr *err)
{
	uint32_t reason = 0;
	const char *msg = "";
	size_t msglen = 0;
	enum km_status st;

	(void)ttlv_get_enum(ttlv_find(bi, TAG_RESULT_REASON), &reason);
	(void)ttlv_get_text(ttlv_find(bi, TAG_RESULT_MESSAGE), &msg, &msglen);
	if (msglen > 200)
		msglen = 200;
	if (status == 1 && reason == RESULT_GENERAL_FAILURE)
		st = KM_TEMPFAIL;
	else
		st = status == 1 ? KM_PERMFAIL : KM_PROTO;
	kmerr_set(err, st, status == 1 ? reason_code(reason) : KMERR_BADINPUT,
	    "%s%s: %.*s", status == 1 ? "" : "status not final, ",
	    reason ? reason_name(reason) : "OPERATION_FAILED", (int)msglen,
	    msg);
	/* a server message may contain anything: keep the line printable */
	if (err != NULL)
		for (char *p = err->msg; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = '?';
	return st;
}

/* check_result - check the batch item's operation and result status */
static enum km_status
check_result(struct kmip_msg_reply *r, enum kmip_op op, struct kmerr *err)
{
	const struct ttlv_item *bi, *it;
	uint32_t v, status;
	int32_t count;

	if (ttlv_get_int(ttlv_path(r->root, (const uint32_t[]){ TAG_RESP_HEADER,
	    TAG_BATCH_COUNT, 0 }), &count) != KM_OK || count != 1 ||
	    (bi = ttlv_find(r->root, TAG_BATCH_ITEM)) == NULL ||
	    ttlv_next(bi) != NULL)
		return bad(err, "bad response: no header or not exactly one "
		    "batch item");
	if ((it = ttlv_find(bi, TAG_OPERATION)) != NULL &&
	    (ttlv_get_enum(it, &v) != KM_OK || v != (uint32_t)op))
		return bad(err, "bad response: answers another operation");
	if (ttlv_get_enum(ttlv_find(bi, TAG_RESULT_STATUS), &status) != KM_OK)
		return bad(err, "bad response: no result status");
	if (status != 0)
		return server_error(bi, status, err);
	r->payload = ttlv_find(bi, TAG_RESP_PAYLOAD);
	return KM_OK;
}

/* kmip_msg_reply_decode - decode a whole response message and check it */
enum km_status
kmip_msg_reply_decode(const unsigned char *buf, size_t len, enum kmip_op op,
    struct kmip_msg_reply *r, struct kmerr *err)
{
	enum km_status st;
	size_t bodylen;

	memset(r, 0, sizeof(*r));
	if (len >= KMIP_MSG_HEADER &&
	    (st = kmip_msg_header(buf, &bodylen, err)) != KM_OK)
		return st;
	if ((st = ttlv_decode(buf, len, &r->root, err)) != KM_OK)
		return kmerr_prefix(err, "bad response: ");
	if ((st = check_result(r, op, err)) != KM_OK)
		kmip_msg_reply_clear(r);
	return st;
}

/* kmip_msg_reply_clear - free the decoded tree (not the bytes) */
void
kmip_msg_reply_clear(struct kmip_msg_reply *r)
{
	r->root = ttlv_free(r->root);
	r->payload = NULL;
}

/* kmip_msg_dec_versions - the protocol versions a server listed */
enum km_status
kmip_msg_dec_versions(const struct kmip_msg_reply *r,
    struct kmip_version *out, size_t max, size_t *nout, struct kmerr *err)
{
	const struct ttlv_item *v;
	enum km_status st = KM_OK;
	int32_t ma, mi;
	size_t n = 0;

	for (v = ttlv_find(r->payload, TAG_PROTO_VERSION); v; v = ttlv_next(v)) {
		if (ttlv_get_int(ttlv_find(v, TAG_VER_MAJOR), &ma) != KM_OK ||
		    ttlv_get_int(ttlv_find(v, TAG_VER_MINOR), &mi) != KM_OK) {
			st = bad(err, "bad protocol version in response");
			break;
		}
		if (n < max) {
			out[n].major = ma;
			out[n].minor = mi;
			n++;
		}
	}
	*nout = n;
	return st;
}

/* kmip_msg_dec_register - the unique identifier of the new object */
enum km_status
kmip_msg_dec_register(const struct kmip_msg_reply *r, char uid[KMIP_UID_MAX],
    struct kmerr *err)
{
	if (ttlv_copy_text(ttlv_find(r->payload, TAG_UID), uid, KMIP_UID_MAX) !=
	    KM_OK || uid[0] == '\0') {
		uid[0] = '\0';
		return bad(err, "bad response: no unique identifier");
	}
	return KM_OK;
}

/* kmip_msg_dec_locate - the unique identifiers a Locate found */
enum km_status
kmip_msg_dec_locate(const struct kmip_msg_reply *r, struct kmip_uid_list **out,
    struct kmerr *err)
{
	struct kmip_uid_list *l = NULL;
	const struct ttlv_item *u;
	enum km_status st = KM_OK;
	size_t n = 0;
	char id[KMIP_UID_MAX];

	*out = NULL;
	for (u = ttlv_find(r->payload, TAG_UID); u; u = ttlv_next(u))
		n++;
	if ((l = calloc(1, sizeof(*l))) == NULL ||
	    (n > 0 && (l->uids = calloc(n, sizeof(char *))) == NULL)) {
		st = kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		goto out;
	}
	for (u = ttlv_find(r->payload, TAG_UID); u; u = ttlv_next(u)) {
		if (ttlv_copy_text(u, id, sizeof(id)) != KM_OK || id[0] == '\0') {
			st = bad(err, "bad unique identifier in response");
			goto out;
		}
		if ((l->uids[l->count] = strdup(id)) == NULL) {
			st = kmerr_set(err, KM_NOMEM, KMERR_NONE,
			    "out of memory");
			goto out;
		}
		l->count++;
	}
	*out = l;
	l = NULL;
out:
	kmip_uid_list_free(l);
	return st;
}

/* object_tag - the tag of an object type's structure, 0 if unsupported */
static uint32_t
object_tag(uint32_t t)
{
	switch (t) {
	case KMIP_OBJ_CERTIFICATE:	return TAG_CERTIFICATE;
	case KMIP_OBJ_SECRET_DATA:	return TAG_SECRET_DATA;
	case KMIP_OBJ_PRIVATE_KEY:	return TAG_PRIVATE_KEY;
	case KMIP_OBJ_SYMMETRIC_KEY:	return TAG_SYMMETRIC_KEY;
	case KMIP_OBJ_PUBLIC_KEY:	return TAG_PUBLIC_KEY;
	}
	return 0;
}

/* kmip_msg_dec_get - the type and bytes of the object a Get returned */
enum km_status
kmip_msg_dec_get(const struct kmip_msg_reply *r, enum kmip_object_type *type,
    unsigned char **data, size_t *len, struct kmerr *err)
{
	const struct ttlv_item *obj, *val;
	const unsigned char *p;
	uint32_t t, tag;
	size_t n;

	*data = NULL;
	*len = 0;
	*type = KMIP_OBJ_NONE;
	if (ttlv_get_enum(ttlv_find(r->payload, TAG_OBJECT_TYPE), &t) != KM_OK)
		return bad(err, "bad response: no object type");
	if ((tag = object_tag(t)) == 0)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE, "object type %u "
		    "not supported", t);
	if ((obj = ttlv_find(r->payload, tag)) == NULL)
		return kmerr_set(err, KM_PROTO, KMERR_BADINPUT, "bad response: "
		    "no %s object", kmip_object_type_name(t));
	if (t == KMIP_OBJ_CERTIFICATE)
		val = ttlv_find(obj, TAG_CERT_VALUE);
	else
		val = ttlv_path(obj, (const uint32_t[]){ TAG_KEY_BLOCK,
		    TAG_KEY_VALUE, TAG_KEY_MATERIAL, 0 });
	if (ttlv_get_bytes(val, &p, &n) != KM_OK || n == 0)
		return bad(err, "bad response: no object value as a byte string "
		    "(wrapped or structured keys are not supported)");
	if ((*data = secmem_alloc(n)) == NULL)
		return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	memcpy(*data, p, n);
	*len = n;
	*type = (enum kmip_object_type)t;
	return KM_OK;
}

/* attr_value - store one attribute value; 0 if it is malformed */
static int
attr_value(struct kmip_attrs *a, const char *an, size_t anl,
    const struct ttlv_item *v)
{
	uint32_t e;
	int64_t d;
	int32_t i;

#define IS(s) (anl == strlen(s) && memcmp(an, s, anl) == 0)
	if (IS("State")) {
		if (ttlv_get_enum(v, &e) != KM_OK)
			return 0;
		a->state = (enum kmip_state)e;
	} else if (IS("Object Type")) {
		if (ttlv_get_enum(v, &e) != KM_OK)
			return 0;
		a->type = (enum kmip_object_type)e;
	} else if (IS("Name")) {
		if (a->name[0] == '\0' && ttlv_copy_text(ttlv_find(v,
		    TAG_NAME_VALUE), a->name, sizeof(a->name)) != KM_OK)
			return 0;
	} else if (IS("Object Group")) {
		if (a->group[0] == '\0' && ttlv_copy_text(v, a->group,
		    sizeof(a->group)) != KM_OK)
			return 0;
	} else if (IS("Initial Date")) {
		if (ttlv_get_datetime(v, &d) != KM_OK)
			return 0;
		a->initial_date = (time_t)d;
	} else if (IS("Activation Date")) {
		if (ttlv_get_datetime(v, &d) != KM_OK)
			return 0;
		a->activation_date = (time_t)d;
	} else if (IS("Cryptographic Usage Mask")) {
		if (ttlv_get_int(v, &i) != KM_OK)
			return 0;
		a->usage_mask = (uint32_t)i;
		a->has_usage_mask = 1;
	}
#undef IS
	return 1;
}

/* kmip_msg_dec_attributes - State, Name, Object Type, dates of an object */
enum km_status
kmip_msg_dec_attributes(const struct kmip_msg_reply *r, struct kmip_attrs *a,
    struct kmerr *err)
{
	const struct ttlv_item *at, *v;
	const char *an;
	size_t anl;

	memset(a, 0, sizeof(*a));
	for (at = ttlv_find(r->payload, TAG_ATTRIBUTE); at; at = ttlv_next(at))
		if (ttlv_get_text(ttlv_find(at, TAG_ATTR_NAME), &an, &anl) !=
		    KM_OK || (v = ttlv_find(at, TAG_ATTR_VALUE)) == NULL ||
		    !attr_value(a, an, anl, v))
			return bad(err, "bad response: malformed attribute");
	return KM_OK;
}
