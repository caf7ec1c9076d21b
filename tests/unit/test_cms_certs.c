/*
 * test_cms_certs.c - cms_certs_d2i() gives what d2i_CMS_ContentInfo()
 * gives, from kept certificates; declines what it does not handle, and
 * never accepts what d2i refuses or parses it differently.
 */
#include <pthread.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "cms_certs.h"
#include "fixture.h"
#include "harness.h"

static const char content[] = "Content-Type: text/plain\r\n\r\nhello, certificates\r\n";

static X509 *ca, *signer;
static EVP_PKEY *cakey, *skey;

/* setup - the CA and a signer it issued */
static int
setup(void)
{
	struct fixture_cert caspec = { .cn = "certs CA", .bc = "critical,CA:TRUE",
	    .ku = "keyCertSign,cRLSign" };
	struct fixture_cert spec = { .serial = 7, .cn = "Signer", .email = "s@example.com",
	    .san = "s@example.com", .ku = "digitalSignature", .eku = "emailProtection" };

	if (signer != NULL)
		return 1;
	if ((cakey = EVP_EC_gen("P-256")) == NULL ||
	    (ca = fixture_cert(cakey, &caspec, NULL, NULL)) == NULL ||
	    (skey = EVP_EC_gen("P-256")) == NULL)
		return 0;
	return (signer = fixture_cert(skey, &spec, ca, cakey)) != NULL;
}

/* signed_der - a SignedData over content (flags as CMS_sign; the CA too unless
   CMS_NOCERTS), DER; its length in *len */
static unsigned char *
signed_der(unsigned int flags, int *len)
{
	STACK_OF(X509) *chain = sk_X509_new_null();
	BIO *in = BIO_new_mem_buf(content, (int)sizeof(content) - 1);
	CMS_ContentInfo *cms;
	unsigned char *der = NULL;

	if (!(flags & CMS_NOCERTS))
		sk_X509_push(chain, ca);
	cms = CMS_sign(signer, skey, chain, in, flags | CMS_BINARY);
	*len = cms != NULL ? i2d_CMS_ContentInfo(cms, &der) : -1;
	CMS_ContentInfo_free(cms);
	sk_X509_free(chain);
	BIO_free(in);
	return *len > 0 ? der : NULL;
}

/* reencoded - i2d of a CMS (OPENSSL_free it); NULL on failure */
static unsigned char *
reencoded(CMS_ContentInfo *cms, int *len)
{
	unsigned char *der = NULL;

	*len = i2d_CMS_ContentInfo(cms, &der);
	return *len > 0 ? der : NULL;
}

/* plain - d2i_CMS_ContentInfo of the whole buffer */
static CMS_ContentInfo *
plain(const unsigned char *der, int len)
{
	const unsigned char *p = der;
	CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, len);

	ERR_clear_error();
	return cms;
}

/* same_parse - fast and plain parses of der agree: 1, or 0 with a reason printed */
static int
same_parse(const unsigned char *der, int len, int want_fast)
{
	CMS_ContentInfo *fast = NULL, *slow = plain(der, len);
	unsigned char *a = NULL, *b = NULL;
	int got = cms_certs_d2i(der, (size_t)len, &fast), alen = 0, blen = 0, ok = 1;

	if (want_fast >= 0 && got != want_fast) {
		printf("    fast path %s\n", got ? "taken" : "declined");
		ok = 0;
	} else if (got && slow == NULL) {
		printf("    fast path accepted what d2i refuses\n");
		ok = 0;
	} else if (got) {
		a = reencoded(fast, &alen);
		b = reencoded(slow, &blen);
		if (a == NULL || b == NULL || alen != blen || memcmp(a, b, (size_t)alen) != 0) {
			printf("    fast and plain parses re-encode differently\n");
			ok = 0;
		}
	}
	OPENSSL_free(a);
	OPENSSL_free(b);
	CMS_ContentInfo_free(fast);
	CMS_ContentInfo_free(slow);
	return ok;
}

/* verifies - the CMS checks out against the CA (detached: over content) */
static int
verifies(CMS_ContentInfo *cms, int detached)
{
	X509_STORE *st = X509_STORE_new();
	BIO *dc = detached ? BIO_new_mem_buf(content, (int)sizeof(content) - 1) : NULL;
	BIO *out = BIO_new(BIO_s_mem());
	int ok;

	X509_STORE_add_cert(st, ca);
	ok = CMS_verify(cms, NULL, st, dc, out, CMS_BINARY) == 1;
	if (!ok)
		ERR_print_errors_fp(stdout);
	ERR_clear_error();
	BIO_free(out);
	BIO_free(dc);
	X509_STORE_free(st);
	return ok;
}

/* a detached signature: parsed from kept certificates, the same as d2i, and it verifies */
TEST(detached_same_as_d2i)
{
	unsigned char *der;
	int len;
	CMS_ContentInfo *cms = NULL;
	STACK_OF(X509) *certs;

	CHECK(setup());
	cms_certs_flush();
	CHECK((der = signed_der(CMS_DETACHED, &len)) != NULL);
	CHECK(same_parse(der, len, 1));		/* parsed and kept */
	CHECK(same_parse(der, len, 1));		/* from the table */
	CHECK(cms_certs_d2i(der, (size_t)len, &cms) == 1);
	certs = CMS_get1_certs(cms);
	CHECK_EQ_INT(sk_X509_num(certs), 2);
	CHECK(X509_cmp(sk_X509_value(certs, 0), signer) == 0 ||
	    X509_cmp(sk_X509_value(certs, 1), signer) == 0);
	sk_X509_pop_free(certs, X509_free);
	CHECK(verifies(cms, 1));
	CMS_ContentInfo_free(cms);
	OPENSSL_free(der);
}

/* an opaque signed-data (the content inside) likewise */
TEST(opaque_same_as_d2i)
{
	unsigned char *der;
	int len;
	CMS_ContentInfo *cms = NULL;

	CHECK(setup());
	CHECK((der = signed_der(0, &len)) != NULL);
	CHECK(same_parse(der, len, 1));
	CHECK(cms_certs_d2i(der, (size_t)len, &cms) == 1);
	CHECK(verifies(cms, 0));
	CMS_ContentInfo_free(cms);
	OPENSSL_free(der);
}

/* no certificates, indefinite lengths, another content type: declined (the caller parses) */
TEST(declines_what_it_does_not_handle)
{
	unsigned char *der, *ber = NULL;
	int len;
	CMS_ContentInfo *cms;
	BIO *in, *mem;
	STACK_OF(X509) *to;
	BUF_MEM *bm;

	CHECK(setup());
	CHECK((der = signed_der(CMS_DETACHED | CMS_NOCERTS, &len)) != NULL);
	CHECK(same_parse(der, len, 0));
	OPENSSL_free(der);
	/* streamed: BER with indefinite lengths */
	in = BIO_new_mem_buf(content, (int)sizeof(content) - 1);
	mem = BIO_new(BIO_s_mem());
	cms = CMS_sign(signer, skey, NULL, in, CMS_BINARY | CMS_STREAM);
	CHECK(cms != NULL && i2d_CMS_bio_stream(mem, cms, in, CMS_STREAM) == 1);
	BIO_get_mem_ptr(mem, &bm);
	CHECK(same_parse((unsigned char *)bm->data, (int)bm->length, 0));
	CMS_ContentInfo_free(cms);
	BIO_free(mem);
	BIO_free(in);
	/* enveloped-data */
	in = BIO_new_mem_buf(content, (int)sizeof(content) - 1);
	to = sk_X509_new_null();
	sk_X509_push(to, signer);
	cms = CMS_encrypt(to, in, EVP_aes_128_cbc(), CMS_BINARY);
	CHECK(cms != NULL && (len = i2d_CMS_ContentInfo(cms, &ber)) > 0);
	CHECK(same_parse(ber, len, 0));
	OPENSSL_free(ber);
	CMS_ContentInfo_free(cms);
	sk_X509_free(to);
	BIO_free(in);
}

/* every truncation and 4,000 random byte changes: declined, or parsed exactly as d2i does */
TEST(malformed_never_differs)
{
	unsigned char *der, *bad;
	unsigned char r[3];
	int len;

	CHECK(setup());
	CHECK((der = signed_der(CMS_DETACHED, &len)) != NULL);
	CHECK((bad = malloc((size_t)len)) != NULL);
	for (int n = 0; n < len; n++)
		CHECK(same_parse(der, n, -1));
	for (int i = 0; i < 4000; i++) {
		memcpy(bad, der, (size_t)len);
		CHECK(RAND_bytes(r, sizeof(r)) == 1);
		bad[((size_t)r[0] << 8 | r[1]) % (size_t)len] ^= (unsigned char)(r[2] | 1);
		CHECK(same_parse(bad, len, -1));
	}
	free(bad);
	OPENSSL_free(der);
}

/* parse - 300 parses of the DER from one thread, a flush half-way */
static void *
parse(void *arg)
{
	const unsigned char *der = arg;
	long bad = 0;

	for (int i = 0; i < 300; i++) {
		CMS_ContentInfo *cms = NULL;

		if (i == 150)
			cms_certs_flush();
		if (!cms_certs_d2i(der + sizeof(int), (size_t)*(const int *)der, &cms))
			bad++;
		CMS_ContentInfo_free(cms);
	}
	return (void *)bad;
}

/* four threads at once, flushing under each other: every parse succeeds */
TEST(threads)
{
	unsigned char *der, *arg;
	int len;
	pthread_t th[4];
	void *bad;
	long total = 0;

	CHECK(setup());
	CHECK((der = signed_der(CMS_DETACHED, &len)) != NULL);
	CHECK((arg = malloc(sizeof(int) + (size_t)len)) != NULL);
	memcpy(arg, &len, sizeof(int));
	memcpy(arg + sizeof(int), der, (size_t)len);
	for (int i = 0; i < 4; i++)
		CHECK(pthread_create(&th[i], NULL, parse, arg) == 0);
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], &bad);
		total += (long)bad;
	}
	CHECK_EQ_INT(total, 0);
	cms_certs_flush();
	free(arg);
	OPENSSL_free(der);
}

static const struct test_case tests[] = {
	T(detached_same_as_d2i),
	T(opaque_same_as_d2i),
	T(declines_what_it_does_not_handle),
	T(malformed_never_differs),
	T(threads),
	{ 0 }
};

int
main(int argc, char **argv)
{
	int rc = harness_main(argc, argv, tests);

	cms_certs_flush();
	X509_free(signer);
	EVP_PKEY_free(skey);
	X509_free(ca);
	EVP_PKEY_free(cakey);
	return rc;
}
