/*
 * test_kmip.c - offline tests of keyclient/kmip.c and tls.c: argument
 * checks, unsafe key files, refused and silent servers, time-outs, pool
 * limits.  (The protocol round trips against PyKMIP and a hostile server
 * are in tests/e2e/t-kmip.sh.)
 */
#include <sys/socket.h>
#include <sys/stat.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "harness.h"
#include "kmip.h"
#include "tls.h"

static char dir[64], crt[96], key[96];

/* make_creds - a self-signed RSA certificate and its key (mode 0600) */
static int
make_creds(void)
{
	EVP_PKEY *pk;
	X509 *x;
	FILE *f;
	int ok = 0;

	if (dir[0] != '\0')
		return 1;
	pk = EVP_RSA_gen(2048);
	x = X509_new();
	strcpy(dir, "/tmp/test_kmip.XXXXXX");
	if (pk == NULL || x == NULL || mkdtemp(dir) == NULL)
		goto out;
	snprintf(crt, sizeof(crt), "%s/c.crt", dir);
	snprintf(key, sizeof(key), "%s/c.key", dir);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, pk);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	    (const unsigned char *)"test", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	if (X509_sign(x, pk, EVP_sha256()) == 0)
		goto out;
	if ((f = fopen(crt, "w")) == NULL)
		goto out;
	PEM_write_X509(f, x);
	fclose(f);
	umask(077);
	if ((f = fopen(key, "w")) == NULL)
		goto out;
	PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	ok = 1;
out:
	X509_free(x);
	EVP_PKEY_free(pk);
	return ok;
}

/* listener - a listening socket on 127.0.0.1 that never accepts */
static int
listener(int *port)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd == -1 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
	    listen(fd, 8) == -1 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) == -1)
		return -1;
	*port = ntohs(sa.sin_port);
	return fd;
}

/* opts_for - options pointing at the test credentials */
static struct kmip_server_opts
opts_for(int port, int ms)
{
	struct kmip_server_opts o = { "t", "127.0.0.1", port, crt, crt, key,
	    ms, ms };

	return o;
}

/* now_ms - monotonic milliseconds */
static long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

TEST(missing_host_is_refused)
{
	struct kmip_server_opts o = { 0 };
	struct kmerr err = { 0 };

	CHECK(kmip_conn_new(&o, &err) == NULL);
	CHECK(strstr(err.msg, "host and port are required") != NULL);
	CHECK(kmerr_is(&err, KMERR_BADINPUT));
	o.host = "127.0.0.1";
	o.port = 70000;
	CHECK(kmip_conn_new(&o, &err) == NULL);
	CHECK(kmip_conn_free(NULL) == NULL);
	CHECK(kmip_pool_free(NULL) == NULL);
	CHECK(kmip_uid_list_free(NULL) == NULL);
}

TEST(loose_key_file_is_refused)
{
	struct kmerr err = { 0 };
	SSL_CTX *ctx;

	CHECK(make_creds());
	CHECK((ctx = tls_ctx_new(crt, crt, key, &err)) != NULL);
	tls_ctx_free(ctx);
	CHECK(chmod(key, 0640) == 0);
	CHECK(tls_ctx_new(crt, crt, key, &err) == NULL);
	CHECK(strstr(err.msg, "group or world accessible (mode 0640)") != NULL);
	CHECK_EQ_INT(err.status, KM_PERMFAIL);
	CHECK(kmerr_is(&err, KMERR_REFUSED));
	CHECK(chmod(key, 0600) == 0);
	CHECK(tls_ctx_new(crt, crt, "/nonexistent/k", &err) == NULL);
	CHECK(strstr(err.msg, "No such file") != NULL);
	CHECK(tls_ctx_new(crt, key, key, &err) == NULL);
	CHECK(strstr(err.msg, "certificate") != NULL);
}

TEST(refused_port_is_tempfail)
{
	struct kmip_server_opts o;
	struct kmip_conn *c = (struct kmip_conn *)1;
	struct kmerr err = { 0 };
	int port, fd;

	CHECK(make_creds());
	CHECK((fd = listener(&port)) >= 0);
	close(fd);			/* nobody listens there now */
	o = opts_for(port, 1000);
	CHECK_EQ_INT(kmip_conn_open(&o, &c, &err), KM_TEMPFAIL);
	CHECK(c == NULL);
	CHECK(strstr(err.msg, "server t: connect to 127.0.0.1") != NULL);
	CHECK(strstr(err.msg, "Connection refused") != NULL);
	CHECK_EQ_INT(err.status, KM_TEMPFAIL);	/* the error says what it returned */
	CHECK(kmerr_is(&err, KMERR_UNREACHABLE));
}

TEST(silent_server_handshake_times_out)
{
	struct kmip_server_opts o;
	struct kmip_conn *c;
	struct kmerr err = { 0 };
	int port, fd;
	long t0, dt;

	CHECK(make_creds());
	CHECK((fd = listener(&port)) >= 0);
	o = opts_for(port, 300);
	t0 = now_ms();
	CHECK_EQ_INT(kmip_conn_open(&o, &c, &err), KM_TEMPFAIL);
	dt = now_ms() - t0;
	close(fd);
	CHECK(strstr(err.msg, "timed out after 300 ms") != NULL);
	CHECK(kmerr_is(&err, KMERR_TIMEOUT));
	CHECK(dt >= 290 && dt < 2000);
}

TEST(pool_reports_unreachable_server)
{
	struct kmip_server_opts o;
	struct kmip_pool *p;
	struct kmip_conn *c = (struct kmip_conn *)1;
	struct kmerr err = { 0 };
	int port, fd;

	CHECK(make_creds());
	CHECK((fd = listener(&port)) >= 0);
	close(fd);
	o = opts_for(port, 300);
	CHECK((p = kmip_pool_new(&o, 2, &err)) != NULL);
	for (int i = 0; i < 3; i++) {	/* failed opens give the slot back */
		CHECK_EQ_INT(kmip_pool_get(p, &c, &err), KM_TEMPFAIL);
		CHECK(c == NULL);
		CHECK(kmerr_is(&err, KMERR_UNREACHABLE));
	}
	kmip_pool_put(p, NULL);
	kmip_pool_free(p);
	o.key_file = "/nonexistent";
	CHECK(kmip_pool_new(&o, 2, &err) == NULL);
	CHECK(strstr(err.msg, "server t: key file /nonexistent") != NULL);
}

TEST(names)
{
	CHECK_EQ_STR(kmip_state_name(KMIP_STATE_COMPROMISED), "Compromised");
	CHECK_EQ_STR(kmip_state_name((enum kmip_state)99), "unknown");
	CHECK_EQ_STR(kmip_object_type_name(KMIP_OBJ_SECRET_DATA), "SecretData");
	CHECK_EQ_STR(kmip_object_type_name((enum kmip_object_type)42), "unknown");
}

static const struct test_case tests[] = {
	T(missing_host_is_refused),
	T(loose_key_file_is_refused),
	T(refused_port_is_tempfail),
	T(silent_server_handshake_times_out),
	T(pool_reports_unreachable_server),
	T(names),
	{ 0 }
};

int
main(int argc, char **argv)
{
	int rc;

	signal(SIGPIPE, SIG_IGN);
	rc = harness_main(argc, argv, tests);
	if (dir[0] != '\0') {
		unlink(crt);
		unlink(key);
		rmdir(dir);
	}
	return rc;
}
