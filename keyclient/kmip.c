/*
 * kmip.c - KMIP 1.2 client operations over TLS, and a connection pool
 * (see kmip.h).  The messages are built and decoded by kmip_msg.c; this
 * file connects, sends, reads, retries and pools.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kmip.h"
#include "kmip_msg.h"
#include "log.h"
#include "secmem.h"
#include "tls.h"
#include "ttlv.h"

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
	struct kmip_msg_reply reply;	/* points into buf */
};

/* conn_create - a connection object; connects now if connect is set */
static struct kmip_conn *
conn_create(const struct kmip_server_opts *o, SSL_CTX *ctx, int connect,
    enum km_status *stp, struct kmerr *err)
{
	struct kmip_conn *c = NULL;
	const char *name;

	*stp = KM_PERMFAIL;
	if (o == NULL || o->host == NULL || o->port <= 0 || o->port > 65535) {
		kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
		    "kmip: server host and port are required");
		return NULL;
	}
	name = o->name ? o->name : o->host;
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->name = strdup(name)) == NULL ||
	    (c->host = strdup(o->host)) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "server %s: out of memory",
		    name);
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
	    o->key_file, err)) == NULL) {
		kmerr_prefix(err, "server %s: ", name);
		goto fail;
	}
	if (connect) {
		if ((*stp = tls_connect(c->ctx, c->host, c->port,
		    c->connect_timeout_ms, c->io_timeout_ms, &c->tls,
		    err)) != KM_OK) {
			kmerr_prefix(err, "server %s: ", name);
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
kmip_conn_new(const struct kmip_server_opts *o, struct kmerr *err)
{
	enum km_status st;

	return conn_create(o, NULL, 1, &st, err);
}

/* kmip_conn_open - kmip_conn_new() that also says why it failed */
enum km_status
kmip_conn_open(const struct kmip_server_opts *o, struct kmip_conn **out,
    struct kmerr *err)
{
	enum km_status st;

	*out = conn_create(o, NULL, 1, &st, err);
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

/* response_clear - free a response */
static void
response_clear(struct response *r)
{
	kmip_msg_reply_clear(&r->reply);
	r->buf = secmem_free(r->buf, r->len);
	r->len = 0;
}

/* drop - close the TLS connection so the next call reconnects */
static void
drop(struct kmip_conn *c)
{
	c->tls = tls_conn_free(c->tls);
}

/* op_fail - "server NAME: Operation: why" for the caller; returns status */
static enum km_status
op_fail(struct kmip_conn *c, enum kmip_op op, const struct kmerr *e,
    struct kmerr *err)
{
	return kmerr_set(err, e->status, e->reason, "server %s: %s: %s",
	    c->name, kmip_msg_op_name(op), e->msg);
}

/* read_response - read one length-bounded response message */
static enum km_status
read_response(struct kmip_conn *c, struct response *r, size_t *got,
    struct kmerr *e)
{
	unsigned char hdr[KMIP_MSG_HEADER];
	enum km_status st;
	size_t len;

	*got = 0;
	if ((st = tls_read(c->tls, hdr, sizeof(hdr), got, e)) != KM_OK)
		return st;
	if ((st = kmip_msg_header(hdr, &len, e)) != KM_OK)
		return st;
	r->len = sizeof(hdr) + len;
	if ((r->buf = secmem_alloc(r->len)) == NULL)
		return kmerr_set(e, KM_NOMEM, KMERR_NONE, "out of memory");
	memcpy(r->buf, hdr, sizeof(hdr));
	return tls_read(c->tls, r->buf + sizeof(hdr), len, NULL, e);
}

/* decode_response - decode and check what read_response() read */
static enum km_status
decode_response(struct kmip_conn *c, enum kmip_op op, struct response *r,
    struct kmerr *err)
{
	struct kmerr e;
	enum km_status st;

	st = kmip_msg_reply_decode(r->buf, r->len, op, &r->reply, &e);
	if (st == KM_OK)
		return KM_OK;
	/* the server's own error keeps the connection; garbage does not */
	if (st != KM_PERMFAIL && st != KM_TEMPFAIL)
		drop(c);
	response_clear(r);
	return op_fail(c, op, &e, err);
}

/* transact - send a request, read and check the response */
static enum km_status
transact(struct kmip_conn *c, enum kmip_op op, const struct ttlv_buf *b,
    int idempotent, struct response *r, struct kmerr *err)
{
	const unsigned char *req;
	size_t reqlen, got;
	enum km_status st;
	struct kmerr e;

	req = ttlv_buf_data(b, &reqlen);
	kmerr_clear(&e);
	if (c->tls != NULL && tls_conn_stale(c->tls)) {
		log_debug(2, "kmip: server %s: idle connection closed, "
		    "reconnecting", c->name);
		drop(c);
	}
	for (int attempt = 0; ; attempt++) {
		if (c->tls == NULL) {
			st = tls_connect(c->ctx, c->host, c->port,
			    c->connect_timeout_ms, c->io_timeout_ms, &c->tls,
			    &e);
			if (st != KM_OK)
				goto fail;
			c->connects++;
		}
		st = tls_write(c->tls, req, reqlen, &e);
		if (st != KM_OK) {
			/* an incompletely written request was not executed */
			if (attempt == 0 && tls_conn_peer_closed(c->tls)) {
				drop(c);
				continue;
			}
			goto fail;
		}
		st = read_response(c, r, &got, &e);
		if (st == KM_OK)
			break;
		if (attempt == 0 && idempotent && got == 0 &&
		    tls_conn_peer_closed(c->tls)) {
			log_debug(2, "kmip: server %s: %s: connection closed, "
			    "retrying once", c->name, kmip_msg_op_name(op));
			response_clear(r);
			drop(c);
			continue;
		}
		goto fail;
	}
	return decode_response(c, op, r, err);
fail:
	kmerr_set(err, st, e.reason, "server %s: %s: %s", c->name,
	    kmip_msg_op_name(op), e.msg);
	response_clear(r);
	drop(c);
	return st;
}

/* exchange - send the request built (or say why it was not), free it */
static enum km_status
exchange(struct kmip_conn *c, enum kmip_op op, enum km_status built,
    struct ttlv_buf *b, const struct kmerr *e, int idempotent,
    struct response *r, struct kmerr *err)
{
	enum km_status st;

	memset(r, 0, sizeof(*r));
	if (built != KM_OK)
		return op_fail(c, op, e, err);
	st = transact(c, op, b, idempotent, r, err);
	ttlv_buf_free(b);		/* wipes a Register's key bytes */
	return st;
}

/* finish - free the response; report a decoder's failure */
static enum km_status
finish(struct kmip_conn *c, enum kmip_op op, enum km_status st,
    struct response *r, const struct kmerr *e, struct kmerr *err)
{
	response_clear(r);
	return st == KM_OK ? KM_OK : op_fail(c, op, e, err);
}

/* kmip_discover_versions - the protocol versions the server supports */
enum km_status
kmip_discover_versions(struct kmip_conn *c, struct kmip_version *out,
    size_t max, size_t *nout, struct kmerr *err)
{
	const enum kmip_op op = KMIP_OP_DISCOVER_VERSIONS;
	struct ttlv_buf *b;
	struct response r;
	struct kmerr e;
	enum km_status st;

	*nout = 0;
	st = kmip_msg_req_discover_versions(&b, &e);
	if ((st = exchange(c, op, st, b, &e, 1, &r, err)) != KM_OK)
		return st;
	st = kmip_msg_dec_versions(&r.reply, out, max, nout, &e);
	return finish(c, op, st, &r, &e, err);
}

/* kmip_register - register a certificate, secret data or private key */
enum km_status
kmip_register(struct kmip_conn *c, const struct kmip_register_req *q,
    char uid[KMIP_UID_MAX], struct kmerr *err)
{
	const enum kmip_op op = KMIP_OP_REGISTER;
	struct ttlv_buf *b;
	struct response r;
	struct kmerr e;
	enum km_status st;

	uid[0] = '\0';
	st = kmip_msg_req_register(q, &b, &e);
	if ((st = exchange(c, op, st, b, &e, 0, &r, err)) != KM_OK)
		return st;
	st = kmip_msg_dec_register(&r.reply, uid, &e);
	return finish(c, op, st, &r, &e, err);
}

/* kmip_locate - unique identifiers of the objects matching all criteria */
enum km_status
kmip_locate(struct kmip_conn *c, const struct kmip_locate_req *q,
    struct kmip_uid_list **out, struct kmerr *err)
{
	const enum kmip_op op = KMIP_OP_LOCATE;
	struct ttlv_buf *b;
	struct response r;
	struct kmerr e;
	enum km_status st;

	*out = NULL;
	st = kmip_msg_req_locate(q, &b, &e);
	if ((st = exchange(c, op, st, b, &e, 1, &r, err)) != KM_OK)
		return st;
	st = kmip_msg_dec_locate(&r.reply, out, &e);
	return finish(c, op, st, &r, &e, err);
}

/* kmip_get - the bytes of one object */
enum km_status
kmip_get(struct kmip_conn *c, const char *uid, enum kmip_object_type *type,
    unsigned char **data, size_t *len, struct kmerr *err)
{
	const enum kmip_op op = KMIP_OP_GET;
	struct ttlv_buf *b;
	struct response r;
	struct kmerr e;
	enum km_status st;

	*data = NULL;
	*len = 0;
	*type = KMIP_OBJ_NONE;
	st = kmip_msg_req_uid(op, uid, &b, &e);
	if ((st = exchange(c, op, st, b, &e, 1, &r, err)) != KM_OK)
		return st;
	st = kmip_msg_dec_get(&r.reply, type, data, len, &e);
	return finish(c, op, st, &r, &e, err);
}

/* kmip_get_attributes - State, Name, Object Type and dates of an object */
enum km_status
kmip_get_attributes(struct kmip_conn *c, const char *uid,
    struct kmip_attrs *a, struct kmerr *err)
{
	const enum kmip_op op = KMIP_OP_GET_ATTRIBUTES;
	struct ttlv_buf *b;
	struct response r;
	struct kmerr e;
	enum km_status st;

	memset(a, 0, sizeof(*a));
	st = kmip_msg_req_get_attributes(uid, &b, &e);
	if ((st = exchange(c, op, st, b, &e, 1, &r, err)) != KM_OK)
		return st;
	st = kmip_msg_dec_attributes(&r.reply, a, &e);
	return finish(c, op, st, &r, &e, err);
}

/* simple_op - an operation whose response carries nothing kmilter reads */
static enum km_status
simple_op(struct kmip_conn *c, enum kmip_op op, enum km_status built,
    struct ttlv_buf *b, const struct kmerr *e, struct kmerr *err)
{
	struct response r;
	enum km_status st;

	st = exchange(c, op, built, b, e, 0, &r, err);
	if (st == KM_OK)
		response_clear(&r);
	return st;
}

/* kmip_activate - PRE_ACTIVE -> ACTIVE */
enum km_status
kmip_activate(struct kmip_conn *c, const char *uid, struct kmerr *err)
{
	struct ttlv_buf *b;
	struct kmerr e;
	enum km_status st;

	st = kmip_msg_req_uid(KMIP_OP_ACTIVATE, uid, &b, &e);
	return simple_op(c, KMIP_OP_ACTIVATE, st, b, &e, err);
}

/* kmip_destroy - destroy an object (not ACTIVE: revoke it first) */
enum km_status
kmip_destroy(struct kmip_conn *c, const char *uid, struct kmerr *err)
{
	struct ttlv_buf *b;
	struct kmerr e;
	enum km_status st;

	st = kmip_msg_req_uid(KMIP_OP_DESTROY, uid, &b, &e);
	return simple_op(c, KMIP_OP_DESTROY, st, b, &e, err);
}

/* kmip_revoke - revoke an object for a reason */
enum km_status
kmip_revoke(struct kmip_conn *c, const char *uid,
    enum kmip_revoke_reason reason, const char *message, struct kmerr *err)
{
	struct ttlv_buf *b;
	struct kmerr e;
	enum km_status st;

	st = kmip_msg_req_revoke(uid, reason, message, (int64_t)time(NULL), &b,
	    &e);
	return simple_op(c, KMIP_OP_REVOKE, st, b, &e, err);
}

/* kmip_pool_new - a pool of up to max connections to one server */
struct kmip_pool *
kmip_pool_new(const struct kmip_server_opts *o, int max, struct kmerr *err)
{
	struct kmip_pool *p;
	enum km_status st;

	if ((p = calloc(1, sizeof(*p))) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "kmip: out of memory");
		return NULL;
	}
	if ((p->tmpl = conn_create(o, NULL, 0, &st, err)) == NULL) {
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
kmip_pool_get(struct kmip_pool *p, struct kmip_conn **out, struct kmerr *err)
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
		return kmerr_set(err, KM_TEMPFAIL, KMERR_TIMEOUT, "server %s: "
		    "pool exhausted: %d connections busy for %d ms",
		    p->tmpl->name, p->max, p->tmpl->io_timeout_ms);
	}
	p->total++;
	pthread_mutex_unlock(&p->mtx);
	if ((c = conn_create(&p->opts, p->tmpl->ctx, 1, &st, err)) == NULL) {
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
