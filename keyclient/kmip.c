/*
 * kmip.c - KMIP 1.2 client operations over TLS, and a connection pool
 * (see kmip.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "kmip.h"
#include "log.h"
#include "secmem.h"
#include "tls.h"
#include "ttlv.h"

/* Tags (KMIP 1.2 section 9.1.3.1). */
#define TAG_ATTRIBUTE		0x420008
#define TAG_ATTR_INDEX		0x420009
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
#define TAG_NAME		0x420053
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
#define TAG_RESP_MESSAGE	0x42007B
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

/* Operations. */
#define OP_REGISTER		3
#define OP_LOCATE		8
#define OP_GET			10
#define OP_GET_ATTRIBUTES	11
#define OP_ACTIVATE		18
#define OP_REVOKE		19
#define OP_DESTROY		20
#define OP_DISCOVER_VERSIONS	30

#define KEY_FORMAT_OPAQUE	2
#define KEY_FORMAT_PKCS8	4
#define CERT_TYPE_X509		1
#define NAME_TYPE_TEXT		1
#define RESULT_GENERAL_FAILURE	0x100

struct kmip_conn {
	char *name, *host;
	int port;
	int connect_timeout_ms, io_timeout_ms;
	SSL_CTX *ctx;			/* own reference */
	struct tls_conn *tls;		/* NULL when closed */
	unsigned long connects;
	struct kmip_conn *next;		/* pool idle list */
};

struct kmip_pool {
	pthread_mutex_t mtx;
	pthread_cond_t cond;
	struct kmip_server_opts opts;	/* strings owned by the template */
	struct kmip_conn *tmpl;		/* not connected; holds copies */
	struct kmip_conn *idle;
	int total, max;
};

struct response {
	unsigned char *buf;		/* secmem: may hold key bytes */
	size_t len;
	struct ttlv_item *root;
	const struct ttlv_item *payload;	/* may be NULL */
};

static void seterr(char *, size_t, const char *, ...)
    __attribute__((format(printf, 3, 4)));

/* seterr - format into the caller's error buffer if there is one */
static void
seterr(char *errstr, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errstr == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(errstr, errlen, fmt, ap);
	va_end(ap);
}

/* op_name - printable name of an operation */
static const char *
op_name(int op)
{
	switch (op) {
	case OP_REGISTER:		return "Register";
	case OP_LOCATE:			return "Locate";
	case OP_GET:			return "Get";
	case OP_GET_ATTRIBUTES:		return "Get Attributes";
	case OP_ACTIVATE:		return "Activate";
	case OP_REVOKE:			return "Revoke";
	case OP_DESTROY:		return "Destroy";
	case OP_DISCOVER_VERSIONS:	return "Discover Versions";
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

/* kmip_object_type_name - printable name of an object type */
const char *
kmip_object_type_name(enum kmip_object_type t)
{
	switch (t) {
	case KMIP_OBJ_NONE:		return "none";
	case KMIP_OBJ_CERTIFICATE:	return "Certificate";
	case KMIP_OBJ_SYMMETRIC_KEY:	return "SymmetricKey";
	case KMIP_OBJ_PUBLIC_KEY:	return "PublicKey";
	case KMIP_OBJ_PRIVATE_KEY:	return "PrivateKey";
	case KMIP_OBJ_SPLIT_KEY:	return "SplitKey";
	case KMIP_OBJ_TEMPLATE:		return "Template";
	case KMIP_OBJ_SECRET_DATA:	return "SecretData";
	case KMIP_OBJ_OPAQUE:		return "OpaqueObject";
	}
	return "unknown";
}

/* kmip_state_name - printable name of a state */
const char *
kmip_state_name(enum kmip_state s)
{
	switch (s) {
	case KMIP_STATE_NONE:			return "none";
	case KMIP_STATE_PRE_ACTIVE:		return "PreActive";
	case KMIP_STATE_ACTIVE:			return "Active";
	case KMIP_STATE_DEACTIVATED:		return "Deactivated";
	case KMIP_STATE_COMPROMISED:		return "Compromised";
	case KMIP_STATE_DESTROYED:		return "Destroyed";
	case KMIP_STATE_DESTROYED_COMPROMISED:	return "DestroyedCompromised";
	}
	return "unknown";
}

/* conn_create - a connection object; connects now if connect is set */
static struct kmip_conn *
conn_create(const struct kmip_server_opts *o, SSL_CTX *ctx, int connect,
    enum km_status *stp, char *errstr, size_t errlen)
{
	struct kmip_conn *c = NULL;
	const char *name;
	char e[256];

	*stp = KM_PERMFAIL;
	if (o == NULL || o->host == NULL || o->port <= 0 || o->port > 65535) {
		seterr(errstr, errlen, "kmip: server host and port are required");
		return NULL;
	}
	name = o->name ? o->name : o->host;
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->name = strdup(name)) == NULL ||
	    (c->host = strdup(o->host)) == NULL) {
		seterr(errstr, errlen, "server %s: out of memory", name);
		*stp = KM_NOMEM;
		goto fail;
	}
	c->port = o->port;
	c->connect_timeout_ms = o->connect_timeout_ms > 0 ?
	    o->connect_timeout_ms : 5000;
	c->io_timeout_ms = o->io_timeout_ms > 0 ? o->io_timeout_ms : 5000;
	if (ctx != NULL) {
		SSL_CTX_up_ref(ctx);
		c->ctx = ctx;
	} else if ((c->ctx = tls_ctx_new(o->ca_file, o->cert_file,
	    o->key_file, e, sizeof(e))) == NULL) {
		seterr(errstr, errlen, "server %s: %s", name, e);
		goto fail;
	}
	if (connect) {
		if ((*stp = tls_connect(c->ctx, c->host, c->port,
		    c->connect_timeout_ms, c->io_timeout_ms, &c->tls, e,
		    sizeof(e))) != KM_OK) {
			seterr(errstr, errlen, "server %s: %s", name, e);
			goto fail;
		}
		c->connects++;
	}
	*stp = KM_OK;
	return c;
fail:
	kmip_conn_free(c);
	return NULL;
}

/* kmip_conn_new - load TLS material and connect to one server */
struct kmip_conn *
kmip_conn_new(const struct kmip_server_opts *o, char *errstr, size_t errlen)
{
	enum km_status st;

	return conn_create(o, NULL, 1, &st, errstr, errlen);
}

/* kmip_conn_open - kmip_conn_new() that also says why it failed */
enum km_status
kmip_conn_open(const struct kmip_server_opts *o, struct kmip_conn **out,
    char *errstr, size_t errlen)
{
	enum km_status st;

	*out = conn_create(o, NULL, 1, &st, errstr, errlen);
	return st;
}

/* kmip_conn_free - close and free a connection; returns NULL */
struct kmip_conn *
kmip_conn_free(struct kmip_conn *c)
{
	if (c == NULL)
		return NULL;
	tls_conn_free(c->tls);
	SSL_CTX_free(c->ctx);
	free(c->name);
	free(c->host);
	free(c);
	return NULL;
}

/* kmip_conn_name - the server name used in messages */
const char *
kmip_conn_name(const struct kmip_conn *c)
{
	return c->name;
}

/* kmip_conn_connects - how many TLS connections were opened */
unsigned long
kmip_conn_connects(const struct kmip_conn *c)
{
	return c->connects;
}

/* request_begin - start a request message with one batch item */
static struct ttlv_buf *
request_begin(int op)
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

/* request_end - close payload, batch item and message */
static void
request_end(struct ttlv_buf *b)
{
	ttlv_end(b);
	ttlv_end(b);
	ttlv_end(b);
}

/* response_clear - free a response */
static void
response_clear(struct response *r)
{
	r->root = ttlv_free(r->root);
	r->buf = secmem_free(r->buf, r->len);
	r->len = 0;
	r->payload = NULL;
}

/* drop - close the TLS connection so the next call reconnects */
static void
drop(struct kmip_conn *c)
{
	c->tls = tls_conn_free(c->tls);
}

/* read_response - read one length-bounded response message */
static enum km_status
read_response(struct kmip_conn *c, struct response *r, size_t *got,
    char *e, size_t elen)
{
	unsigned char hdr[8];
	uint32_t len;
	enum km_status st;
	char te[200];

	*got = 0;
	if ((st = tls_read(c->tls, hdr, 8, got, e, elen)) != KM_OK)
		return st;
	len = (uint32_t)hdr[4] << 24 | (uint32_t)hdr[5] << 16 |
	    (uint32_t)hdr[6] << 8 | hdr[7];
	if (hdr[0] != 0x42 || hdr[1] != 0x00 || hdr[2] != 0x7B ||
	    hdr[3] != 0x01) {
		seterr(e, elen, "not a KMIP response message (header "
		    "%02x%02x%02x%02x)", hdr[0], hdr[1], hdr[2], hdr[3]);
		return KM_PROTO;
	}
	if (len > KMIP_MAX_RESPONSE - 8) {
		seterr(e, elen, "response of %u bytes exceeds the limit of %d",
		    len, KMIP_MAX_RESPONSE);
		return KM_PROTO;
	}
	if (len % 8 != 0) {
		seterr(e, elen, "response length %u not a multiple of 8", len);
		return KM_PROTO;
	}
	r->len = 8 + (size_t)len;
	if ((r->buf = secmem_alloc(r->len)) == NULL) {
		seterr(e, elen, "out of memory");
		return KM_NOMEM;
	}
	memcpy(r->buf, hdr, 8);
	if ((st = tls_read(c->tls, r->buf + 8, len, NULL, e, elen)) != KM_OK)
		return st;
	if ((st = ttlv_decode(r->buf, r->len, &r->root, te, sizeof(te))) !=
	    KM_OK) {
		seterr(e, elen, "bad response: %s", te);
		return st;
	}
	return KM_OK;
}

/* check_result - check the batch item's operation and result status */
static enum km_status
check_result(struct kmip_conn *c, int op, struct response *r, char *errstr,
    size_t errlen)
{
	const struct ttlv_item *bi, *it;
	uint32_t v, status, reason = 0;
	const char *msg = "";
	size_t msglen = 0;
	int32_t count;

	if (ttlv_get_int(ttlv_path(r->root, (const uint32_t[]){ TAG_RESP_HEADER,
	    TAG_BATCH_COUNT, 0 }), &count) != KM_OK || count != 1 ||
	    (bi = ttlv_find(r->root, TAG_BATCH_ITEM)) == NULL ||
	    ttlv_next(bi) != NULL) {
		seterr(errstr, errlen, "server %s: %s: bad response: no header "
		    "or not exactly one batch item", c->name, op_name(op));
		return KM_PROTO;
	}
	if ((it = ttlv_find(bi, TAG_OPERATION)) != NULL &&
	    (ttlv_get_enum(it, &v) != KM_OK || v != (uint32_t)op)) {
		seterr(errstr, errlen, "server %s: %s: bad response: answers "
		    "another operation", c->name, op_name(op));
		return KM_PROTO;
	}
	if (ttlv_get_enum(ttlv_find(bi, TAG_RESULT_STATUS), &status) != KM_OK) {
		seterr(errstr, errlen, "server %s: %s: bad response: no result "
		    "status", c->name, op_name(op));
		return KM_PROTO;
	}
	if (status == 0) {
		r->payload = ttlv_find(bi, TAG_RESP_PAYLOAD);
		return KM_OK;
	}
	(void)ttlv_get_enum(ttlv_find(bi, TAG_RESULT_REASON), &reason);
	(void)ttlv_get_text(ttlv_find(bi, TAG_RESULT_MESSAGE), &msg, &msglen);
	if (msglen > 200)
		msglen = 200;
	seterr(errstr, errlen, "server %s: %s: %s%s: %.*s", c->name,
	    op_name(op), status == 1 ? "" : "status not final, ",
	    reason ? reason_name(reason) : "OPERATION_FAILED", (int)msglen, msg);
	/* a server message may contain anything: keep the line printable */
	if (errstr != NULL)
		for (char *p = errstr; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = '?';
	if (status == 1 && reason == RESULT_GENERAL_FAILURE)
		return KM_TEMPFAIL;
	return status == 1 ? KM_PERMFAIL : KM_PROTO;
}

/* transact - send a request, read and check the response */
static enum km_status
transact(struct kmip_conn *c, int op, struct ttlv_buf *b, int idempotent,
    struct response *r, char *errstr, size_t errlen)
{
	const unsigned char *req;
	size_t reqlen, got;
	enum km_status st;
	char e[256];

	memset(r, 0, sizeof(*r));
	if (b == NULL || (req = ttlv_buf_data(b, &reqlen)) == NULL) {
		st = b == NULL ? KM_NOMEM : ttlv_buf_status(b);
		seterr(errstr, errlen, "server %s: %s: cannot encode the request",
		    c->name, op_name(op));
		return st == KM_OK ? KM_PROTO : st;
	}
	if (c->tls != NULL && tls_conn_stale(c->tls)) {
		log_debug(2, "kmip: server %s: idle connection closed, "
		    "reconnecting", c->name);
		drop(c);
	}
	for (int attempt = 0; ; attempt++) {
		if (c->tls == NULL) {
			st = tls_connect(c->ctx, c->host, c->port,
			    c->connect_timeout_ms, c->io_timeout_ms, &c->tls,
			    e, sizeof(e));
			if (st != KM_OK)
				goto fail;
			c->connects++;
		}
		st = tls_write(c->tls, req, reqlen, e, sizeof(e));
		if (st != KM_OK) {
			/* an incompletely written request was not executed */
			if (attempt == 0 && tls_conn_peer_closed(c->tls)) {
				drop(c);
				continue;
			}
			goto fail;
		}
		st = read_response(c, r, &got, e, sizeof(e));
		if (st == KM_OK)
			break;
		if (attempt == 0 && idempotent && got == 0 &&
		    tls_conn_peer_closed(c->tls)) {
			log_debug(2, "kmip: server %s: %s: connection closed, "
			    "retrying once", c->name, op_name(op));
			response_clear(r);
			drop(c);
			continue;
		}
		goto fail;
	}
	st = check_result(c, op, r, errstr, errlen);
	if (st == KM_PROTO)
		drop(c);
	if (st != KM_OK)
		response_clear(r);
	return st;
fail:
	seterr(errstr, errlen, "server %s: %s: %s", c->name, op_name(op), e);
	response_clear(r);
	drop(c);
	return st;
}

/* uid_ok - is uid a usable identifier */
static int
uid_ok(const char *uid)
{
	return uid != NULL && *uid != '\0' && strlen(uid) < KMIP_UID_MAX;
}

/* kmip_discover_versions - the protocol versions the server supports */
enum km_status
kmip_discover_versions(struct kmip_conn *c, struct kmip_version *out,
    size_t max, size_t *nout, char *errstr, size_t errlen)
{
	struct ttlv_buf *b = request_begin(OP_DISCOVER_VERSIONS);
	struct response r;
	const struct ttlv_item *v;
	enum km_status st;
	int32_t ma, mi;
	size_t n = 0;

	*nout = 0;
	if (b != NULL)
		request_end(b);
	st = transact(c, OP_DISCOVER_VERSIONS, b, 1, &r, errstr, errlen);
	ttlv_buf_free(b);
	if (st != KM_OK)
		return st;
	for (v = ttlv_find(r.payload, TAG_PROTO_VERSION); v; v = ttlv_next(v)) {
		if (ttlv_get_int(ttlv_find(v, TAG_VER_MAJOR), &ma) != KM_OK ||
		    ttlv_get_int(ttlv_find(v, TAG_VER_MINOR), &mi) != KM_OK) {
			seterr(errstr, errlen, "server %s: Discover Versions: "
			    "bad protocol version in response", c->name);
			st = KM_PROTO;
			break;
		}
		if (n < max) {
			out[n].major = ma;
			out[n].minor = mi;
			n++;
		}
	}
	*nout = n;
	response_clear(&r);
	return st;
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

/* kmip_register - register a certificate, secret data or private key */
enum km_status
kmip_register(struct kmip_conn *c, const struct kmip_register_req *q,
    char uid[KMIP_UID_MAX], char *errstr, size_t errlen)
{
	struct ttlv_buf *b = NULL;
	struct response r;
	enum km_status st;
	int alg = q->alg, bits = q->bits;

	uid[0] = '\0';
	if (q->name == NULL || *q->name == '\0' ||
	    strlen(q->name) >= KMIP_NAME_MAX ||
	    (q->group != NULL && strlen(q->group) >= KMIP_NAME_MAX) ||
	    q->data == NULL || q->len == 0 || q->len > KMIP_MAX_RESPONSE / 2) {
		seterr(errstr, errlen, "server %s: Register: a name (< %d "
		    "bytes) and 1..%d bytes of data are required", c->name,
		    KMIP_NAME_MAX, KMIP_MAX_RESPONSE / 2);
		return KM_PERMFAIL;
	}
	if (q->type == KMIP_OBJ_PRIVATE_KEY && (alg == 0 || bits == 0) &&
	    !key_params(q->data, q->len, &alg, &bits)) {
		seterr(errstr, errlen, "server %s: Register: cannot read the "
		    "key's algorithm and size from the PKCS#8 data; give them",
		    c->name);
		return KM_PERMFAIL;
	}
	if (q->type != KMIP_OBJ_CERTIFICATE && q->type != KMIP_OBJ_SECRET_DATA &&
	    q->type != KMIP_OBJ_PRIVATE_KEY) {
		seterr(errstr, errlen, "server %s: Register: object type %s "
		    "not supported", c->name, kmip_object_type_name(q->type));
		return KM_PERMFAIL;
	}
	if ((b = request_begin(OP_REGISTER)) == NULL) {
		seterr(errstr, errlen, "server %s: Register: out of memory",
		    c->name);
		return KM_NOMEM;
	}
	ttlv_add_enum(b, TAG_OBJECT_TYPE, (uint32_t)q->type);
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
	request_end(b);
	st = transact(c, OP_REGISTER, b, 0, &r, errstr, errlen);
	ttlv_buf_free(b);		/* wipes the key bytes */
	if (st != KM_OK)
		return st;
	if (ttlv_copy_text(ttlv_find(r.payload, TAG_UID), uid, KMIP_UID_MAX) !=
	    KM_OK || uid[0] == '\0') {
		seterr(errstr, errlen, "server %s: Register: bad response: no "
		    "unique identifier", c->name);
		uid[0] = '\0';
		st = KM_PROTO;
	}
	response_clear(&r);
	return st;
}

/* kmip_uid_list_free - free a Locate result; returns NULL */
struct kmip_uid_list *
kmip_uid_list_free(struct kmip_uid_list *l)
{
	if (l == NULL)
		return NULL;
	for (size_t i = 0; i < l->count; i++)
		free(l->uids[i]);
	free(l->uids);
	free(l);
	return NULL;
}

/* kmip_locate - unique identifiers of the objects matching all criteria */
enum km_status
kmip_locate(struct kmip_conn *c, const struct kmip_locate_req *q,
    struct kmip_uid_list **out, char *errstr, size_t errlen)
{
	struct ttlv_buf *b = request_begin(OP_LOCATE);
	struct kmip_uid_list *l = NULL;
	const struct ttlv_item *u;
	struct response r;
	enum km_status st;
	size_t n = 0;
	char id[KMIP_UID_MAX];

	*out = NULL;
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
		request_end(b);
	}
	st = transact(c, OP_LOCATE, b, 1, &r, errstr, errlen);
	ttlv_buf_free(b);
	if (st != KM_OK)
		return st;
	for (u = ttlv_find(r.payload, TAG_UID); u; u = ttlv_next(u))
		n++;
	if ((l = calloc(1, sizeof(*l))) == NULL ||
	    (n > 0 && (l->uids = calloc(n, sizeof(char *))) == NULL)) {
		seterr(errstr, errlen, "server %s: Locate: out of memory",
		    c->name);
		st = KM_NOMEM;
		goto out;
	}
	for (u = ttlv_find(r.payload, TAG_UID); u; u = ttlv_next(u)) {
		if (ttlv_copy_text(u, id, sizeof(id)) != KM_OK || id[0] == '\0') {
			seterr(errstr, errlen, "server %s: Locate: bad unique "
			    "identifier in response", c->name);
			st = KM_PROTO;
			goto out;
		}
		if ((l->uids[l->count] = strdup(id)) == NULL) {
			seterr(errstr, errlen, "server %s: Locate: out of "
			    "memory", c->name);
			st = KM_NOMEM;
			goto out;
		}
		l->count++;
	}
	*out = l;
	l = NULL;
out:
	kmip_uid_list_free(l);
	response_clear(&r);
	return st;
}

/* uid_request - a request whose payload is just the unique identifier */
static struct ttlv_buf *
uid_request(int op, const char *uid)
{
	struct ttlv_buf *b = request_begin(op);

	if (b != NULL) {
		ttlv_add_text(b, TAG_UID, uid);
		request_end(b);
	}
	return b;
}

/* kmip_get - the bytes of one object */
enum km_status
kmip_get(struct kmip_conn *c, const char *uid, enum kmip_object_type *type,
    unsigned char **data, size_t *len, char *errstr, size_t errlen)
{
	struct ttlv_buf *b;
	struct response r;
	const struct ttlv_item *obj, *val;
	const unsigned char *p;
	enum km_status st;
	uint32_t t;
	size_t n;
	uint32_t tag;

	*data = NULL;
	*len = 0;
	*type = KMIP_OBJ_NONE;
	if (!uid_ok(uid)) {
		seterr(errstr, errlen, "server %s: Get: bad unique identifier",
		    c->name);
		return KM_PERMFAIL;
	}
	b = uid_request(OP_GET, uid);
	st = transact(c, OP_GET, b, 1, &r, errstr, errlen);
	ttlv_buf_free(b);
	if (st != KM_OK)
		return st;
	st = KM_PROTO;
	if (ttlv_get_enum(ttlv_find(r.payload, TAG_OBJECT_TYPE), &t) != KM_OK) {
		seterr(errstr, errlen, "server %s: Get: bad response: no object "
		    "type", c->name);
		goto out;
	}
	switch (t) {
	case KMIP_OBJ_CERTIFICATE:
		tag = TAG_CERTIFICATE;
		break;
	case KMIP_OBJ_SECRET_DATA:
		tag = TAG_SECRET_DATA;
		break;
	case KMIP_OBJ_PRIVATE_KEY:
		tag = TAG_PRIVATE_KEY;
		break;
	case KMIP_OBJ_SYMMETRIC_KEY:
		tag = TAG_SYMMETRIC_KEY;
		break;
	case KMIP_OBJ_PUBLIC_KEY:
		tag = TAG_PUBLIC_KEY;
		break;
	default:
		seterr(errstr, errlen, "server %s: Get: object type %u not "
		    "supported", c->name, t);
		st = KM_PERMFAIL;
		goto out;
	}
	if ((obj = ttlv_find(r.payload, tag)) == NULL) {
		seterr(errstr, errlen, "server %s: Get: bad response: no %s "
		    "object", c->name, kmip_object_type_name(t));
		goto out;
	}
	if (t == KMIP_OBJ_CERTIFICATE)
		val = ttlv_find(obj, TAG_CERT_VALUE);
	else
		val = ttlv_path(obj, (const uint32_t[]){ TAG_KEY_BLOCK,
		    TAG_KEY_VALUE, TAG_KEY_MATERIAL, 0 });
	if (ttlv_get_bytes(val, &p, &n) != KM_OK || n == 0) {
		seterr(errstr, errlen, "server %s: Get: bad response: no "
		    "object value as a byte string (wrapped or structured "
		    "keys are not supported)", c->name);
		goto out;
	}
	if ((*data = secmem_alloc(n)) == NULL) {
		seterr(errstr, errlen, "server %s: Get: out of memory", c->name);
		st = KM_NOMEM;
		goto out;
	}
	memcpy(*data, p, n);
	*len = n;
	*type = (enum kmip_object_type)t;
	st = KM_OK;
out:
	response_clear(&r);
	return st;
}

/* kmip_get_attributes - State, Name, Object Type and dates of an object */
enum km_status
kmip_get_attributes(struct kmip_conn *c, const char *uid,
    struct kmip_attrs *a, char *errstr, size_t errlen)
{
	static const char *want[] = { "State", "Name", "Object Type",
	    "Initial Date", "Activation Date", "Object Group",
	    "Cryptographic Usage Mask" };
	struct ttlv_buf *b;
	struct response r;
	const struct ttlv_item *at, *v;
	const char *an;
	enum km_status st;
	size_t anl;
	uint32_t e;
	int64_t d;
	int32_t i;

	memset(a, 0, sizeof(*a));
	if (!uid_ok(uid)) {
		seterr(errstr, errlen, "server %s: Get Attributes: bad unique "
		    "identifier", c->name);
		return KM_PERMFAIL;
	}
	if ((b = request_begin(OP_GET_ATTRIBUTES)) != NULL) {
		ttlv_add_text(b, TAG_UID, uid);
		for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++)
			ttlv_add_text(b, TAG_ATTR_NAME, want[k]);
		request_end(b);
	}
	st = transact(c, OP_GET_ATTRIBUTES, b, 1, &r, errstr, errlen);
	ttlv_buf_free(b);
	if (st != KM_OK)
		return st;
	for (at = ttlv_find(r.payload, TAG_ATTRIBUTE); at; at = ttlv_next(at)) {
		if (ttlv_get_text(ttlv_find(at, TAG_ATTR_NAME), &an, &anl) !=
		    KM_OK || (v = ttlv_find(at, TAG_ATTR_VALUE)) == NULL)
			goto bad;
#define IS(s) (anl == strlen(s) && memcmp(an, s, anl) == 0)
		if (IS("State")) {
			if (ttlv_get_enum(v, &e) != KM_OK)
				goto bad;
			a->state = (enum kmip_state)e;
		} else if (IS("Object Type")) {
			if (ttlv_get_enum(v, &e) != KM_OK)
				goto bad;
			a->type = (enum kmip_object_type)e;
		} else if (IS("Name")) {
			if (a->name[0] == '\0' && ttlv_copy_text(ttlv_find(v,
			    TAG_NAME_VALUE), a->name, sizeof(a->name)) != KM_OK)
				goto bad;
		} else if (IS("Object Group")) {
			if (a->group[0] == '\0' && ttlv_copy_text(v, a->group,
			    sizeof(a->group)) != KM_OK)
				goto bad;
		} else if (IS("Initial Date")) {
			if (ttlv_get_datetime(v, &d) != KM_OK)
				goto bad;
			a->initial_date = (time_t)d;
		} else if (IS("Activation Date")) {
			if (ttlv_get_datetime(v, &d) != KM_OK)
				goto bad;
			a->activation_date = (time_t)d;
		} else if (IS("Cryptographic Usage Mask")) {
			if (ttlv_get_int(v, &i) != KM_OK)
				goto bad;
			a->usage_mask = (uint32_t)i;
			a->has_usage_mask = 1;
		}
#undef IS
	}
	response_clear(&r);
	return KM_OK;
bad:
	seterr(errstr, errlen, "server %s: Get Attributes: bad response: "
	    "malformed attribute", c->name);
	response_clear(&r);
	return KM_PROTO;
}

/* simple_op - an operation whose request and response are just the uid */
static enum km_status
simple_op(struct kmip_conn *c, int op, struct ttlv_buf *b, char *errstr,
    size_t errlen)
{
	struct response r;
	enum km_status st;

	st = transact(c, op, b, 0, &r, errstr, errlen);
	ttlv_buf_free(b);
	if (st == KM_OK)
		response_clear(&r);
	return st;
}

/* kmip_activate - PRE_ACTIVE -> ACTIVE */
enum km_status
kmip_activate(struct kmip_conn *c, const char *uid, char *errstr,
    size_t errlen)
{
	if (!uid_ok(uid)) {
		seterr(errstr, errlen, "server %s: Activate: bad unique "
		    "identifier", c->name);
		return KM_PERMFAIL;
	}
	return simple_op(c, OP_ACTIVATE, uid_request(OP_ACTIVATE, uid),
	    errstr, errlen);
}

/* kmip_destroy - destroy an object (not ACTIVE: revoke it first) */
enum km_status
kmip_destroy(struct kmip_conn *c, const char *uid, char *errstr,
    size_t errlen)
{
	if (!uid_ok(uid)) {
		seterr(errstr, errlen, "server %s: Destroy: bad unique "
		    "identifier", c->name);
		return KM_PERMFAIL;
	}
	return simple_op(c, OP_DESTROY, uid_request(OP_DESTROY, uid),
	    errstr, errlen);
}

/* kmip_revoke - revoke an object for a reason */
enum km_status
kmip_revoke(struct kmip_conn *c, const char *uid,
    enum kmip_revoke_reason reason, const char *message, char *errstr,
    size_t errlen)
{
	struct ttlv_buf *b;

	if (!uid_ok(uid)) {
		seterr(errstr, errlen, "server %s: Revoke: bad unique "
		    "identifier", c->name);
		return KM_PERMFAIL;
	}
	if ((b = request_begin(OP_REVOKE)) != NULL) {
		ttlv_add_text(b, TAG_UID, uid);
		ttlv_begin(b, TAG_REVOKE_REASON);
		ttlv_add_enum(b, TAG_REVOKE_CODE, (uint32_t)reason);
		if (message != NULL)
			ttlv_add_text(b, TAG_REVOKE_MESSAGE, message);
		ttlv_end(b);
		if (reason == KMIP_REVOKE_KEY_COMPROMISE)
			ttlv_add_datetime(b, TAG_COMPROMISE_DATE,
			    (int64_t)time(NULL));
		request_end(b);
	}
	return simple_op(c, OP_REVOKE, b, errstr, errlen);
}

/* kmip_pool_new - a pool of up to max connections to one server */
struct kmip_pool *
kmip_pool_new(const struct kmip_server_opts *o, int max, char *errstr,
    size_t errlen)
{
	struct kmip_pool *p;
	enum km_status st;

	if ((p = calloc(1, sizeof(*p))) == NULL) {
		seterr(errstr, errlen, "kmip: out of memory");
		return NULL;
	}
	if ((p->tmpl = conn_create(o, NULL, 0, &st, errstr, errlen)) == NULL) {
		free(p);
		return NULL;
	}
	p->opts = *o;
	p->opts.name = p->tmpl->name;
	p->opts.host = p->tmpl->host;
	p->opts.ca_file = p->opts.cert_file = p->opts.key_file = NULL;
	p->max = max > 0 ? max : 1;
	pthread_mutex_init(&p->mtx, NULL);
	pthread_cond_init(&p->cond, NULL);
	return p;
}

/* kmip_pool_free - close every idle connection and free; returns NULL.
 * Connections still lent out must have been put back first. */
struct kmip_pool *
kmip_pool_free(struct kmip_pool *p)
{
	struct kmip_conn *c;

	if (p == NULL)
		return NULL;
	while ((c = p->idle) != NULL) {
		p->idle = c->next;
		kmip_conn_free(c);
	}
	kmip_conn_free(p->tmpl);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->mtx);
	free(p);
	return NULL;
}

/* kmip_pool_get - borrow a warm connection, or open one */
enum km_status
kmip_pool_get(struct kmip_pool *p, struct kmip_conn **out, char *errstr,
    size_t errlen)
{
	struct kmip_conn *c;
	struct timespec ts;
	enum km_status st;
	int rc = 0;

	*out = NULL;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += p->tmpl->io_timeout_ms / 1000;
	ts.tv_nsec += (long)(p->tmpl->io_timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&p->mtx);
	while (p->idle == NULL && p->total >= p->max && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&p->cond, &p->mtx, &ts);
	if ((c = p->idle) != NULL) {
		p->idle = c->next;
		c->next = NULL;
		pthread_mutex_unlock(&p->mtx);
		*out = c;
		return KM_OK;
	}
	if (p->total >= p->max) {
		pthread_mutex_unlock(&p->mtx);
		seterr(errstr, errlen, "server %s: pool exhausted: %d "
		    "connections busy for %d ms", p->tmpl->name, p->max,
		    p->tmpl->io_timeout_ms);
		return KM_TEMPFAIL;
	}
	p->total++;
	pthread_mutex_unlock(&p->mtx);
	if ((c = conn_create(&p->opts, p->tmpl->ctx, 1, &st, errstr,
	    errlen)) == NULL) {
		pthread_mutex_lock(&p->mtx);
		p->total--;
		pthread_cond_signal(&p->cond);
		pthread_mutex_unlock(&p->mtx);
		return st;
	}
	*out = c;
	return KM_OK;
}

/* kmip_pool_put - give a borrowed connection back */
void
kmip_pool_put(struct kmip_pool *p, struct kmip_conn *c)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&p->mtx);
	if (c->tls == NULL) {		/* broken: close it, free the slot */
		p->total--;
		kmip_conn_free(c);
	} else {
		c->next = p->idle;
		p->idle = c;
	}
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->mtx);
}
