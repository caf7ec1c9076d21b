/*
 * tls.c - TLS client context and time-bounded connections (see tls.h).
 */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "clock.h"
#include "log.h"
#include "tls.h"

#define KMIP_CIPHERS \
	"ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384:AES128-SHA256:" \
	"ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"

struct tls_conn {
	SSL_CTX *ctx;
	SSL *ssl;
	int fd;
	int io_timeout_ms;
	int peer_closed;
};

/* ssl_reason - text of the first queued OpenSSL error; drains the queue */
static const char *
ssl_reason(char *buf, size_t len)
{
	unsigned long e, first = 0;
	char line[256];

	while ((e = ERR_get_error()) != 0) {
		if (first == 0)
			first = e;
		ERR_error_string_n(e, line, sizeof(line));
		log_debug(2, "tls: openssl: %s", line);
	}
	if (first == 0)
		snprintf(buf, len, "unknown TLS error");
	else {
		const char *r = ERR_reason_error_string(first);

		snprintf(buf, len, "%s", r ? r : "unknown TLS error");
	}
	return buf;
}

/* tls_ctx_new - an SSL_CTX for talking to one KMIP server */
SSL_CTX *
tls_ctx_new(const char *ca_file, const char *cert_file, const char *key_file,
    struct kmerr *err)
{
	SSL_CTX *ctx = NULL;
	struct stat sb;
	char r[160];

	if (ca_file == NULL || cert_file == NULL || key_file == NULL) {
		kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT, "CA file, "
		    "certificate and key are all "
		    "required");
		return NULL;
	}
	if (stat(key_file, &sb) == -1) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE, "key file %s: %s",
		    key_file, strerror(errno));
		return NULL;
	}
	if ((sb.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED, "key file %s is "
		    "group or world accessible (mode %04o): refusing it, "
		    "chmod 600 it",
		    key_file, (unsigned)(sb.st_mode & 07777));
		return NULL;
	}
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE, "SSL_CTX_new: %s",
		    ssl_reason(r, sizeof(r)));
		return NULL;
	}
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_cipher_list(ctx, KMIP_CIPHERS) != 1) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE, "TLS settings: %s",
		    ssl_reason(r, sizeof(r)));
		goto fail;
	}
	if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE, "CA file %s: %s",
		    ca_file,
		    ssl_reason(r, sizeof(r)));
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE, "certificate %s: %s",
		    cert_file,
		    ssl_reason(r, sizeof(r)));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE, "key file %s: %s",
		    key_file, ssl_reason(r, sizeof(r)));
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE, "key %s does not match "
		    "certificate %s",
		    key_file, cert_file);
		ssl_reason(r, sizeof(r));
		goto fail;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* tls_ctx_free - release a context; returns NULL */
SSL_CTX *
tls_ctx_free(SSL_CTX *ctx)
{
	SSL_CTX_free(ctx);
	return NULL;
}

/* wait_fd - poll fd for events until deadline; 1 ready, 0 timeout, -1 err */
static int
wait_fd(int fd, short events, long long deadline)
{
	struct pollfd pfd;
	long long left;
	int n;

	for (;;) {
		left = deadline - clock_ms();
		if (left <= 0)
			return 0;
		pfd.fd = fd;
		pfd.events = events;
		pfd.revents = 0;
		n = poll(&pfd, 1, (int)left);
		if (n > 0)
			return 1;
		if (n == 0)
			return 0;
		if (errno != EINTR)
			return -1;
	}
}

/* tcp_connect - non-blocking connect to host:port within the deadline */
static enum km_status
tcp_connect(const char *host, int port, long long deadline, int timeout_ms,
    int *fdp, struct kmerr *err)
{
	struct addrinfo hints, *res = NULL, *ai;
	char portstr[16];
	int fd = -1, rc, soerr, one = 1;
	socklen_t sl;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(portstr, sizeof(portstr), "%d", port);
	if ((rc = getaddrinfo(host, portstr, &hints, &res)) != 0) {
		kmerr_set(err, KM_TEMPFAIL, KMERR_UNREACHABLE, "cannot resolve "
		    "%s: %s", host,
		    gai_strerror(rc));
		return KM_TEMPFAIL;
	}
	kmerr_set(err, KM_TEMPFAIL, KMERR_UNREACHABLE, "no address for %s",
	    host);
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, ai->ai_protocol);
		if (fd == -1) {
			kmerr_set(err, KM_TEMPFAIL, KMERR_NONE, "socket: %s",
			    strerror(errno));
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno != EINPROGRESS) {
			kmerr_set(err, KM_TEMPFAIL, KMERR_UNREACHABLE,
			    "connect to %s port %d: %s", host, port,
			    strerror(errno));
			goto next;
		}
		rc = wait_fd(fd, POLLOUT, deadline);
		if (rc == 0) {
			kmerr_set(err, KM_TEMPFAIL, KMERR_TIMEOUT,
			    "connect to %s port %d timed out after %d ms",
			    host, port, timeout_ms);
			goto next;
		}
		sl = sizeof(soerr);
		if (rc < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr,
		    &sl) == -1)
			soerr = errno;
		if (soerr == 0)
			break;
		kmerr_set(err, KM_TEMPFAIL, KMERR_UNREACHABLE, "connect to %s "
		    "port %d: %s", host, port, strerror(soerr));
next:
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd == -1)
		return KM_TEMPFAIL;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	*fdp = fd;
	return KM_OK;
}

/* is_ip_literal - does host parse as an IPv4 or IPv6 address */
static int
is_ip_literal(const char *host)
{
	unsigned char a[16];

	return inet_pton(AF_INET, host, a) == 1 ||
	    inet_pton(AF_INET6, host, a) == 1;
}

/* tls_connect - connect, handshake and verify the server */
enum km_status
tls_connect(SSL_CTX *ctx, const char *host, int port, int connect_timeout_ms,
    int io_timeout_ms, struct tls_conn **out, struct kmerr *err)
{
	struct tls_conn *c;
	X509_VERIFY_PARAM *vp;
	enum km_status st;
	long long deadline;
	char r[160];
	int rc, e, w;
	long vr;

	*out = NULL;
	if (connect_timeout_ms <= 0)
		connect_timeout_ms = 5000;
	if (io_timeout_ms <= 0)
		io_timeout_ms = 5000;
	deadline = clock_ms() + connect_timeout_ms;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		return KM_NOMEM;
	}
	c->fd = -1;
	c->io_timeout_ms = io_timeout_ms;
	SSL_CTX_up_ref(ctx);
	c->ctx = ctx;
	st = tcp_connect(host, port, deadline, connect_timeout_ms, &c->fd,
	    err);
	if (st != KM_OK)
		goto fail;
	st = KM_NOMEM;
	if ((c->ssl = SSL_new(ctx)) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "SSL_new: %s",
		    ssl_reason(r, sizeof(r)));
		goto fail;
	}
	vp = SSL_get0_param(c->ssl);
	X509_VERIFY_PARAM_set_hostflags(vp,
	    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (is_ip_literal(host))
		rc = X509_VERIFY_PARAM_set1_ip_asc(vp, host);
	else
		rc = X509_VERIFY_PARAM_set1_host(vp, host, 0) &&
		    SSL_set_tlsext_host_name(c->ssl, host);
	if (rc != 1 || SSL_set_fd(c->ssl, c->fd) != 1) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "TLS setup for %s: %s",
		    host,
		    ssl_reason(r, sizeof(r)));
		goto fail;
	}
	for (;;) {
		ERR_clear_error();
		errno = 0;
		rc = SSL_connect(c->ssl);
		if (rc == 1)
			break;
		e = SSL_get_error(c->ssl, rc);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			w = wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN :
			    POLLOUT, deadline);
			if (w == 1)
				continue;
			kmerr_set(err, KM_TEMPFAIL, KMERR_TIMEOUT,
			    "TLS handshake with %s port %d timed out after "
			    "%d ms", host, port,
			    connect_timeout_ms);
			st = KM_TEMPFAIL;
			goto fail;
		}
		vr = SSL_get_verify_result(c->ssl);
		if (vr != X509_V_OK) {
			kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
			    "server certificate verification failed for %s: "
			    "%s", host,
			    X509_verify_cert_error_string(vr));
			ssl_reason(r, sizeof(r));
			st = KM_PERMFAIL;
		} else if (e == SSL_ERROR_SSL) {
			kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
			    "TLS handshake with %s port %d failed: %s", host,
			    port, ssl_reason(r, sizeof(r)));
			st = KM_PERMFAIL;
		} else {
			kmerr_set(err, KM_TEMPFAIL, KMERR_UNREACHABLE, "TLS "
			    "handshake with %s port %d: connection closed by "
			    "server%s%s", host, port,
			    errno ? ": " : "", errno ? strerror(errno) : "");
			ssl_reason(r, sizeof(r));
			st = KM_TEMPFAIL;
		}
		goto fail;
	}
	*out = c;
	return KM_OK;
fail:
	tls_conn_free(c);
	return st;
}

/* io_fail - classify an SSL I/O error */
static enum km_status
io_fail(struct tls_conn *c, int rc, const char *what, struct kmerr *err)
{
	int e = SSL_get_error(c->ssl, rc);
	char r[160];

	if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL &&
	    (errno == 0 || errno == ECONNRESET || errno == EPIPE)) ||
	    (e == SSL_ERROR_SSL && ERR_GET_REASON(ERR_peek_error()) ==
	    SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
		if (e == SSL_ERROR_SSL)
			errno = 0;
		c->peer_closed = 1;
		kmerr_set(err, KM_TEMPFAIL, KMERR_NONE, "%s: connection closed "
		    "by server%s%s",
		    what, errno ? ": " : "", errno ? strerror(errno) : "");
		ERR_clear_error();
		return KM_TEMPFAIL;
	}
	if (e == SSL_ERROR_SYSCALL) {
		kmerr_set(err, KM_TEMPFAIL, KMERR_NONE, "%s: %s", what,
		    strerror(errno));
		ERR_clear_error();
		return KM_TEMPFAIL;
	}
	kmerr_set(err, KM_PROTO, KMERR_NONE, "%s: TLS error: %s", what,
	    ssl_reason(r, sizeof(r)));
	return KM_PROTO;
}

/* tls_write - write all n bytes, each wait bounded by the I/O time-out */
enum km_status
tls_write(struct tls_conn *c, const void *buf, size_t n, struct kmerr *err)
{
	const unsigned char *p = buf;
	size_t done = 0, w;
	int rc, e;

	c->peer_closed = 0;
	while (done < n) {
		ERR_clear_error();
		errno = 0;
		rc = SSL_write_ex(c->ssl, p + done, n - done, &w);
		if (rc == 1) {
			done += w;
			continue;
		}
		e = SSL_get_error(c->ssl, rc);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			if (wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN :
			    POLLOUT, clock_ms() + c->io_timeout_ms) == 1)
				continue;
			kmerr_set(err, KM_TEMPFAIL, KMERR_TIMEOUT,
			    "write timed out after %d ms",
			    c->io_timeout_ms);
			return KM_TEMPFAIL;
		}
		return io_fail(c, rc, "write", err);
	}
	return KM_OK;
}

/* tls_read - read exactly n bytes, each wait bounded by the I/O time-out */
enum km_status
tls_read(struct tls_conn *c, void *buf, size_t n, size_t *got,
    struct kmerr *err)
{
	unsigned char *p = buf;
	size_t done = 0, r;
	enum km_status st = KM_OK;
	int rc, e;

	c->peer_closed = 0;
	while (done < n) {
		ERR_clear_error();
		errno = 0;
		rc = SSL_read_ex(c->ssl, p + done, n - done, &r);
		if (rc == 1) {
			done += r;
			continue;
		}
		e = SSL_get_error(c->ssl, rc);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			if (wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN :
			    POLLOUT, clock_ms() + c->io_timeout_ms) == 1)
				continue;
			kmerr_set(err, KM_TEMPFAIL, KMERR_TIMEOUT,
			    "read timed out after %d ms "
			    "(%zu of %zu bytes)", c->io_timeout_ms, done, n);
			st = KM_TEMPFAIL;
			break;
		}
		st = io_fail(c, rc, "read", err);
		break;
	}
	if (got != NULL)
		*got = done;
	return st;
}

/* tls_conn_peer_closed - did the last I/O fail because the peer closed */
int
tls_conn_peer_closed(const struct tls_conn *c)
{
	return c->peer_closed;
}

/* tls_conn_stale - is an idle connection closed or carrying unasked data */
int
tls_conn_stale(struct tls_conn *c)
{
	struct pollfd pfd;

	if (SSL_pending(c->ssl) > 0)
		return 1;
	pfd.fd = c->fd;
	pfd.events = POLLIN;
	pfd.revents = 0;
	if (poll(&pfd, 1, 0) != 0)
		return 1;	/* readable (EOF, close_notify, junk) or error */
	return 0;
}

/* tls_conn_cipher - negotiated cipher name */
const char *
tls_conn_cipher(const struct tls_conn *c)
{
	return SSL_get_cipher_name(c->ssl);
}

/* tls_conn_version - negotiated protocol version name */
const char *
tls_conn_version(const struct tls_conn *c)
{
	return SSL_get_version(c->ssl);
}

/* tls_conn_free - close a connection; returns NULL */
struct tls_conn *
tls_conn_free(struct tls_conn *c)
{
	int saved = errno;

	if (c == NULL)
		return NULL;
	if (c->ssl != NULL) {
		if (SSL_is_init_finished(c->ssl) && !c->peer_closed)
			(void)SSL_shutdown(c->ssl);	/* no wait for reply */
		SSL_free(c->ssl);
	}
	ERR_clear_error();
	if (c->fd != -1)
		close(c->fd);
	SSL_CTX_free(c->ctx);
	free(c);
	errno = saved;
	return NULL;
}
