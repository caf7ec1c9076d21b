#ifndef KMILTER_KEYCLIENT_KMIP_H
#define KMILTER_KEYCLIENT_KMIP_H
/*
 * NAME
 *	kmip - KMIP 1.2 client operations over one TLS connection, and a pool
 * SUMMARY
 *	kmip_conn_new(), kmip_conn_open(), kmip_conn_free(),
 *	kmip_discover_versions(),
 *	kmip_register(), kmip_locate(), kmip_get(), kmip_get_attributes(),
 *	kmip_activate(), kmip_revoke(), kmip_destroy(),
 *	kmip_pool_new(), kmip_pool_get(), kmip_pool_put(), kmip_pool_free();
 *	and from kmip_types.h (included): the object types, states and
 *	request/result structs, kmip_uid_list_free(),
 *	kmip_object_type_name(), kmip_state_name()
 * DESCRIPTION
 *	A struct kmip_conn is one TLS connection (client certificate
 *	authentication, peer chain and host name/IP always verified) to one
 *	KMIP server.  Every operation sends one request with one batch item
 *	(protocol version 1.2) and reads one response: an 8-byte TTLV header,
 *	a length bounded by KMIP_MAX_RESPONSE (1 MiB; more is refused), then
 *	the body, decoded strictly by ttlv.c.  The messages are built and
 *	decoded by kmip_msg.c (pure); this module does the I/O around them.
 *
 *	Reconnection: before a request on a connection that has been idle,
 *	the connection is checked; if the server closed it, it is reopened.
 *	If the connection breaks (EOF/reset) while an idempotent operation
 *	(Discover Versions, Locate, Get, Get Attributes) is in flight, the
 *	client reconnects once and resends.  Register, Activate, Revoke and
 *	Destroy are never resent after the request went out.
 *
 *	Object naming is kmilter's convention, decided by the key model
 *	(keystore/kmctl); this layer passes names through unchanged.  Names
 *	are exact-match, case-sensitive strings on the server.
 *
 *	Time-outs: connect_timeout_ms bounds TCP connect + TLS handshake,
 *	io_timeout_ms bounds each wait for the socket to become readable or
 *	writable during a request.  0 or less means 5000 ms.
 * OWNERSHIP
 *	kmip_conn_new() and kmip_pool_new() copy everything in the opts (the
 *	caller's strings may be freed afterwards).  Caller frees with
 *	kmip_conn_free() / kmip_pool_free(); both accept NULL and return NULL.
 *	kmip_locate() returns a struct kmip_uid_list that the caller frees
 *	with kmip_uid_list_free().
 *	kmip_get() returns *data allocated with secmem_alloc() for EVERY object
 *	type (certificates included): the caller frees it with
 *	secmem_free(*data, *len), which wipes it.  This matters for
 *	SecretData and PrivateKey objects, whose bytes are secret.
 *	kmip_get_attributes() fills a caller-owned struct; nothing to free.
 *	kmip_pool_get() lends a connection; give it back with kmip_pool_put()
 *	(never kmip_conn_free() it).
 * ERRORS
 *	Every operation takes a struct kmerr * last (may be NULL), returns
 *	enum km_status and, unless KM_OK, fills err with that status, a
 *	reason and one line of the form
 *	  "server NAME: Operation: RESULT_REASON: server message"
 *	for an error the server reported, or
 *	  "server NAME: Operation: what went wrong"
 *	otherwise.  Never any key bytes.  Reasons: KMERR_NOTFOUND (Item
 *	Not Found), KMERR_REFUSED (Permission Denied), KMERR_EXISTS,
 *	KMERR_BADINPUT (garbage from the server, or an invalid argument),
 *	KMERR_TIMEOUT, KMERR_UNREACHABLE; KMERR_NONE otherwise.
 *	  KM_OK        success.
 *	  KM_PERMFAIL  the server answered with an error (Item Not Found,
 *	               Permission Denied, Invalid Field, ...), or TLS peer
 *	               verification failed (bad CA, wrong host name), or the
 *	               client key/certificate cannot be loaded or the key file
 *	               is group/world readable.
 *	  KM_TEMPFAIL  network error, connection refused, EOF/reset (after the
 *	               one retry where allowed), time-out, pool exhausted, or
 *	               the server answered GENERAL_FAILURE (a server-side
 *	               error that may pass).
 *	  KM_PROTO     the server sent garbage: bad TTLV, response too large,
 *	               missing fields, wrong operation echoed.  The connection
 *	               is closed (reopened on the next call).
 *	  KM_NOMEM     allocation failed.
 *	kmip_conn_new() returns NULL on failure (err says why); it
 *	connects at once, so an unreachable server fails here.
 *	Invalid arguments (no name, bad uid, unsupported object type) give
 *	KM_PERMFAIL without any network traffic.
 * THREADS
 *	A struct kmip_conn is used by one thread at a time.  A struct
 *	kmip_pool is thread-safe: many threads may kmip_pool_get() and
 *	kmip_pool_put() concurrently; each then owns its connection until
 *	it puts it back.  kmip_object_type_name()/kmip_state_name() return
 *	static strings and are thread-safe.
 */
#include <stddef.h>
#include <stdint.h>

#include "kmip_types.h"
#include "kmerr.h"

struct kmip_server_opts {
	const char *name;		/* for messages, e.g. "km1" */
	const char *host;		/* IP literal or DNS name; checked
					   against the server certificate */
	int port;			/* e.g. 5696 */
	const char *ca_file;		/* PEM CA bundle that signs the server */
	const char *cert_file;		/* PEM client certificate (EKU
					   clientAuth; its CN is the owner) */
	const char *key_file;		/* PEM client key, mode 0600 or stricter */
	int connect_timeout_ms;
	int io_timeout_ms;
};

struct kmip_conn;
struct kmip_pool;

/* Connections. */
struct kmip_conn *kmip_conn_new(const struct kmip_server_opts *,
    struct kmerr *err);
/* the same, with the reason as a status: KM_OK and *out set, or
 * KM_TEMPFAIL (unreachable, time-out), KM_PERMFAIL (bad TLS material,
 * verification failed), KM_NOMEM, and *out NULL */
enum km_status kmip_conn_open(const struct kmip_server_opts *,
    struct kmip_conn **out, struct kmerr *err);
struct kmip_conn *kmip_conn_free(struct kmip_conn *);
const char *kmip_conn_name(const struct kmip_conn *);
/* How many TLS connections this conn has opened so far (1 + reconnects). */
unsigned long kmip_conn_connects(const struct kmip_conn *);

/* Operations.  See ERRORS above for every return value. */

/* Discover Versions: up to max versions the server supports, best first. */
enum km_status kmip_discover_versions(struct kmip_conn *,
    struct kmip_version *out, size_t max, size_t *nout,
    struct kmerr *err);

/* Register: on KM_OK uid (KMIP_UID_MAX bytes) holds the new object's id.
 * The new object is PRE_ACTIVE; call kmip_activate() to make it ACTIVE. */
enum km_status kmip_register(struct kmip_conn *,
    const struct kmip_register_req *, char uid[KMIP_UID_MAX],
    struct kmerr *err);

/* Locate: on KM_OK *out is a list (maybe count 0: nothing matches or the
 * caller may not see it); caller frees with kmip_uid_list_free(). */
enum km_status kmip_locate(struct kmip_conn *, const struct kmip_locate_req *,
    struct kmip_uid_list **out, struct kmerr *err);

/* Get: on KM_OK *type is the object type and *data, *len its bytes: the
 * X.509 DER of a Certificate, the PKCS#8 DER of a PrivateKey, the key
 * material of a SecretData/SymmetricKey.  *data is from secmem_alloc():
 * caller frees with secmem_free(*data, *len).  NOTE: PyKMIP returns the
 * bytes of a COMPROMISED object too; check the State attribute. */
enum km_status kmip_get(struct kmip_conn *, const char *uid,
    enum kmip_object_type *type, unsigned char **data, size_t *len,
    struct kmerr *err);

/* Get Attributes: asks for State, Name, Object Type, Initial Date,
 * Activation Date, Object Group and Cryptographic Usage Mask. */
enum km_status kmip_get_attributes(struct kmip_conn *, const char *uid,
    struct kmip_attrs *out, struct kmerr *err);

enum km_status kmip_activate(struct kmip_conn *, const char *uid,
    struct kmerr *err);
/* Revoke: KEY_COMPROMISE also sends Compromise Occurrence Date = now. */
enum km_status kmip_revoke(struct kmip_conn *, const char *uid,
    enum kmip_revoke_reason, const char *message,
    struct kmerr *err);
enum km_status kmip_destroy(struct kmip_conn *, const char *uid,
    struct kmerr *err);

/* Pool of warm connections to one server (shares one SSL_CTX).
 * kmip_pool_new() loads the TLS material but does not connect.
 * kmip_pool_get() returns an idle connection, or opens a new one if fewer
 * than max exist, or waits up to io_timeout_ms for one to be put back
 * (then KM_TEMPFAIL "pool exhausted").  kmip_pool_put(pool, NULL) is a
 * no-op; a connection that broke (KM_PROTO/KM_TEMPFAIL) is closed there
 * rather than kept. */
struct kmip_pool *kmip_pool_new(const struct kmip_server_opts *, int max,
    struct kmerr *err);
struct kmip_pool *kmip_pool_free(struct kmip_pool *);
enum km_status kmip_pool_get(struct kmip_pool *, struct kmip_conn **out,
    struct kmerr *err);
void kmip_pool_put(struct kmip_pool *, struct kmip_conn *);

#endif
