#ifndef KMILTER_KEYCLIENT_TLS_H
#define KMILTER_KEYCLIENT_TLS_H
/*
 * NAME
 *	tls - TLS client context and connections for the KMIP client
 * SUMMARY
 *	tls_ctx_new(), tls_ctx_free(), tls_connect(), tls_write(), tls_read(),
 *	tls_conn_stale(), tls_conn_peer_closed(), tls_conn_free()
 * DESCRIPTION
 *	tls_ctx_new() builds an SSL_CTX for a KMIP server: TLS 1.2 minimum
 *	(PyKMIP speaks only TLS 1.2 with CBC-SHA256/384 suites, so those are
 *	allowed next to the GCM ones), the CA file as the only trust anchor,
 *	the client certificate and key (a key file readable by group or
 *	others is refused), peer verification always on.
 *
 *	tls_connect() resolves host, connects with a non-blocking connect and
 *	poll() bounded by connect_timeout_ms (which also bounds the
 *	handshake), and checks the server certificate's chain and its host
 *	name (X509_VERIFY_PARAM_set1_host, with SNI) or IP address
 *	(X509_VERIFY_PARAM_set1_ip_asc) against host.
 *	tls_write()/tls_read() move exactly n bytes; each wait for the socket
 *	is bounded by io_timeout_ms.
 *
 *	The socket stays non-blocking.  Writing to a socket the peer closed
 *	can raise SIGPIPE: the process must ignore SIGPIPE (libmilter does;
 *	the tools do it themselves).
 * OWNERSHIP
 *	tls_ctx_new() returns an SSL_CTX the caller frees with tls_ctx_free()
 *	(SSL_CTX_free; NULL is fine; returns NULL).  tls_connect() takes its
 *	own reference on the ctx; the caller frees the connection with
 *	tls_conn_free() (NULL is fine; returns NULL), which sends a
 *	close_notify without waiting and closes the socket.
 * ERRORS
 *	Every function that can fail fills its struct kmerr (may be NULL)
 *	with the status it returns and a one-line message.
 *	tls_ctx_new(): NULL on failure, err KM_PERMFAIL (unreadable files,
 *	key/cert mismatch; an unsafe key file mode has reason KMERR_REFUSED).
 *	tls_connect(): KM_OK; KM_TEMPFAIL (resolution, refused, time-out,
 *	reset, EOF during handshake; reason KMERR_TIMEOUT for a time-out,
 *	KMERR_UNREACHABLE when nothing answered); KM_PERMFAIL (certificate verification
 *	failed: unknown CA, wrong host name, expired...; or the handshake was
 *	refused with a TLS alert); KM_NOMEM.
 *	tls_write()/tls_read(): KM_OK; KM_TEMPFAIL (time-out with reason
 *	KMERR_TIMEOUT, EOF, reset; see
 *	tls_conn_peer_closed()); KM_PROTO (TLS protocol error).
 *	The message never names the server (kmip.c adds that).
 * THREADS
 *	An SSL_CTX from tls_ctx_new() may be shared by many threads; a
 *	struct tls_conn is used by one thread at a time.
 */
#include <stddef.h>

#include <openssl/ssl.h>

#include "kmerr.h"

struct tls_conn;

SSL_CTX *tls_ctx_new(const char *ca_file, const char *cert_file,
    const char *key_file, struct kmerr *err);
SSL_CTX *tls_ctx_free(SSL_CTX *);

enum km_status tls_connect(SSL_CTX *, const char *host, int port,
    int connect_timeout_ms, int io_timeout_ms, struct tls_conn **out,
    struct kmerr *err);
enum km_status tls_write(struct tls_conn *, const void *, size_t,
    struct kmerr *err);
/* read exactly n bytes; *got (may be NULL) = bytes read before an error */
enum km_status tls_read(struct tls_conn *, void *, size_t n, size_t *got,
    struct kmerr *err);
/* 1 if the last error was EOF/reset/broken pipe from the peer */
int tls_conn_peer_closed(const struct tls_conn *);
/* 1 if an idle connection is unusable: the peer closed it or sent
 * something unasked for (checked with a zero-time poll) */
int tls_conn_stale(struct tls_conn *);
/* negotiated protocol and cipher, for diagnostics */
const char *tls_conn_cipher(const struct tls_conn *);
const char *tls_conn_version(const struct tls_conn *);
struct tls_conn *tls_conn_free(struct tls_conn *);

#endif
