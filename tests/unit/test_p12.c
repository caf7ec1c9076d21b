/*
 * test_p12.c - keyclient/keymodel_p12.c: PKCS#12 files as Windows, NSS
 * and OpenSSL export them (RC2-40 or 3DES certificate encryption, AES),
 * DER or base64-armored; a wrong password told apart from an algorithm
 * this OpenSSL cannot decrypt.  The files are made here, in a library
 * context of their own that has the legacy provider; the default context
 * gets the legacy provider only in the last case, as kmctl loads it.
 * Also keymodel_p12_build() (kmctl export, both formats) and
 * keymodel_read_chain().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/provider.h>
#include <openssl/x509.h>

#include "fixture.h"
#include "harness.h"
#include "keymodel_p12.h"

#define PW	"s3cret-pw"

static OSSL_LIB_CTX *legacy_ctx;	/* where the RC2 files are made */
static OSSL_PROVIDER *made_with[2];	/* its providers */
static EVP_PKEY *key;
static X509 *cert;

/* setup - a key, its certificate and a library context with legacy */
static int
setup(void)
{
	struct fixture_cert spec = { .cn = "bob", .san = "bob@example.com",
	    .ku = "keyEncipherment", .eku = "emailProtection" };

	if (key != NULL)
		return 1;
	if ((legacy_ctx = OSSL_LIB_CTX_new()) == NULL ||
	    (made_with[0] = OSSL_PROVIDER_load(legacy_ctx, "default")) ==
	    NULL || (made_with[1] = OSSL_PROVIDER_load(legacy_ctx,
	    "legacy")) == NULL)
		return 0;
	key = EVP_RSA_gen(2048);
	cert = fixture_cert(key, &spec, NULL, NULL);
	return key != NULL && cert != NULL;
}

/* mkp12 - DER PKCS#12 of key+cert: certificate and key PBE as given (0:
 * the default), MAC or not; *len set; free with OPENSSL_free */
static unsigned char *
mkp12(int certpbe, int keypbe, int mac, int *len)
{
	PKCS12 *p12;
	unsigned char *der = NULL;

	p12 = PKCS12_create_ex(PW, "bob", key, cert, NULL, keypbe, certpbe,
	    0, mac ? 0 : -1, 0, legacy_ctx, NULL);
	if (p12 == NULL)
		return NULL;
	*len = i2d_PKCS12(p12, &der);
	PKCS12_free(p12);
	return *len > 0 ? der : NULL;
}

#define WRONG_PAIR	99	/* parsed, but not the key and certificate put in */

/* parse - keymodel_p12_parse; the key and certificate freed again */
static int
parse(const unsigned char *buf, size_t len, const char *pw, struct kmerr *e)
{
	EVP_PKEY *k = NULL;
	X509 *c = NULL;
	int st;

	kmerr_clear(e);
	st = keymodel_p12_parse(buf, len, pw, strlen(pw), &k, &c, e);
	if (st == KM_OK && (k == NULL || c == NULL || X509_cmp(c, cert) != 0 ||
	    EVP_PKEY_eq(k, key) != 1))
		st = WRONG_PAIR;
	EVP_PKEY_free(k);
	X509_free(c);
	return st;
}

TEST(aes_and_3des_import)
{
	struct kmerr e;
	unsigned char *der;
	int len;

	CHECK(setup());
	CHECK((der = mkp12(0, 0, 1, &len)) != NULL);	/* AES-256, PBKDF2 */
	CHECK(keymodel_p12_sniff(der, (size_t)len));
	CHECK_EQ_INT(parse(der, (size_t)len, PW, &e), KM_OK);
	OPENSSL_free(der);
	CHECK((der = mkp12(NID_pbe_WithSHA1And3_Key_TripleDES_CBC,
	    NID_pbe_WithSHA1And3_Key_TripleDES_CBC, 1, &len)) != NULL);
	CHECK_EQ_INT(parse(der, (size_t)len, PW, &e), KM_OK);
	OPENSSL_free(der);
}

TEST(wrong_password_said)
{
	struct kmerr e;
	unsigned char *der;
	int len;

	CHECK(setup());
	CHECK((der = mkp12(NID_pbe_WithSHA1And40BitRC2_CBC,
	    NID_pbe_WithSHA1And3_Key_TripleDES_CBC, 1, &len)) != NULL);
	CHECK_EQ_INT(parse(der, (size_t)len, "wrong", &e), KM_PERMFAIL);
	CHECK(kmerr_is(&e, KMERR_BADPASSWORD));
	CHECK(strstr(e.msg, "wrong password") != NULL);
	CHECK_EQ_INT(parse(der, (size_t)len, "", &e), KM_PERMFAIL);
	CHECK(kmerr_is(&e, KMERR_BADPASSWORD));
	OPENSSL_free(der);
}

TEST(armored_imports)
{
	struct kmerr e;
	unsigned char *der;
	char *pem = NULL;
	long pemlen;
	int len;
	BIO *b;

	CHECK(setup());
	CHECK((der = mkp12(0, 0, 1, &len)) != NULL);
	CHECK((b = BIO_new(BIO_s_mem())) != NULL);
	BIO_puts(b, "Bag Attributes: as some tools write them\n");
	CHECK(PEM_write_bio(b, "PKCS12", "", der, len) > 0);
	pemlen = BIO_get_mem_data(b, &pem);
	CHECK(strstr(pem, "-----BEGIN PKCS12-----") != NULL);
	CHECK(keymodel_p12_sniff((unsigned char *)pem, (size_t)pemlen));
	CHECK_EQ_INT(parse((unsigned char *)pem, (size_t)pemlen, PW, &e),
	    KM_OK);
	/* a certificate's armor is not PKCS#12 */
	CHECK(!keymodel_p12_sniff((const unsigned char *)
	    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
	    60));
	CHECK_EQ_INT(parse((const unsigned char *)"garbage", 7, PW, &e),
	    KM_PROTO);
	CHECK(strstr(e.msg, "not a PKCS#12 file") != NULL);
	BIO_free(b);
	OPENSSL_free(der);
}

TEST(malformed_refused_cleanly)
{
	static const char bad_armor[] = "-----BEGIN PKCS12-----\n"
	    "!!not base64!!\n-----END PKCS12-----\n";
	static const char junk_armor[] = "-----BEGIN PKCS12-----\n"
	    "aGVsbG8gd29ybGQ=\n-----END PKCS12-----\n";
	struct kmerr e;
	unsigned char *der;
	int len, cut;

	CHECK(setup());
	CHECK((der = mkp12(0, 0, 1, &len)) != NULL);
	for (cut = 1; cut < len; cut += 97) {
		CHECK(!keymodel_p12_sniff(der, (size_t)cut));
		CHECK_EQ_INT(parse(der, (size_t)cut, PW, &e), KM_PROTO);
	}
	OPENSSL_free(der);
	CHECK_EQ_INT(parse((const unsigned char *)bad_armor,
	    sizeof(bad_armor) - 1, PW, &e), KM_PROTO);
	CHECK_EQ_INT(parse((const unsigned char *)junk_armor,
	    sizeof(junk_armor) - 1, PW, &e), KM_PROTO);
	CHECK_EQ_INT(parse((const unsigned char *)"", 0, PW, &e), KM_PROTO);
	CHECK(ERR_peek_error() == 0);	/* nothing left in the queue */
}

/* mac_nid - the digest of a PKCS#12 file's MAC, or NID_undef */
static int
mac_nid(const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	const X509_ALGOR *alg = NULL;
	const ASN1_OBJECT *oid = NULL;
	PKCS12 *p12 = d2i_PKCS12(NULL, &p, (long)len);
	int nid = NID_undef;

	if (p12 != NULL && PKCS12_mac_present(p12)) {
		PKCS12_get0_mac(NULL, &alg, NULL, NULL, p12);
		X509_ALGOR_get0(&oid, NULL, NULL, alg);
		nid = OBJ_obj2nid(oid);
	}
	PKCS12_free(p12);
	return nid;
}

/* has_bytes - whether needle (n bytes) is in hay */
static int
has_bytes(const unsigned char *hay, size_t len, const unsigned char *needle,
    size_t n)
{
	for (size_t i = 0; i + n <= len; i++)
		if (memcmp(hay + i, needle, n) == 0)
			return 1;
	return 0;
}

/* keymodel_p12_build (kmctl export): both formats open with the
 * password, give back the key and certificate, carry the chain and a
 * SHA-256 MAC; the default format names PBKDF2's PRF hmacWithSHA256
 * (and AES-256-CBC), --legacy neither (PBKDF2's default PRF, HMAC-SHA1,
 * and AES-128-CBC); an empty password or one with a NUL is refused */
TEST(export_formats)
{
	static const unsigned char sha256_prf[] = { 0x06, 0x08, 0x2a, 0x86,
	    0x48, 0x86, 0xf7, 0x0d, 0x02, 0x09 };
	static const unsigned char aes256[] = { 0x06, 0x09, 0x60, 0x86, 0x48,
	    0x01, 0x65, 0x03, 0x04, 0x01, 0x2a };
	static const unsigned char aes128[] = { 0x06, 0x09, 0x60, 0x86, 0x48,
	    0x01, 0x65, 0x03, 0x04, 0x01, 0x02 };
	STACK_OF(X509) *chain, *got = NULL;
	const unsigned char *p;
	unsigned char *der;
	struct kmerr e;
	size_t len;
	PKCS12 *p12;
	EVP_PKEY *k;
	X509 *c;
	int legacy;

	CHECK(setup());
	CHECK((chain = sk_X509_new_null()) != NULL);
	CHECK(X509_up_ref(cert) && sk_X509_push(chain, cert));	/* any one */
	for (legacy = 0; legacy < 2; legacy++) {
		CHECK_EQ_INT(keymodel_p12_build(key, cert, chain,
		    "bob@example.com", legacy, PW, strlen(PW), &der, &len, &e),
		    KM_OK);
		CHECK_EQ_INT(parse(der, len, PW, &e), KM_OK);
		CHECK_EQ_INT(parse(der, len, "wrong", &e), KM_PERMFAIL);
		CHECK_EQ_INT(mac_nid(der, len), NID_sha256);
		CHECK_EQ_INT(has_bytes(der, len, sha256_prf,
		    sizeof(sha256_prf)), !legacy);
		CHECK_EQ_INT(has_bytes(der, len, aes256, sizeof(aes256)),
		    !legacy);
		CHECK_EQ_INT(has_bytes(der, len, aes128, sizeof(aes128)),
		    legacy);
		p = der;
		CHECK((p12 = d2i_PKCS12(NULL, &p, (long)len)) != NULL);
		k = NULL;
		c = NULL;
		CHECK(PKCS12_parse(p12, PW, &k, &c, &got) == 1);
		CHECK(got != NULL && sk_X509_num(got) == 1);
		sk_X509_pop_free(got, X509_free);
		got = NULL;
		EVP_PKEY_free(k);
		X509_free(c);
		PKCS12_free(p12);
		OPENSSL_free(der);
	}
	CHECK_EQ_INT(keymodel_p12_build(key, cert, chain, "bob", 0, "", 0,
	    &der, &len, &e), KM_PROTO);
	CHECK_EQ_INT(keymodel_p12_build(key, cert, chain, "bob", 0, "a\0b", 3,
	    &der, &len, &e), KM_PROTO);
	CHECK(der == NULL);
	sk_X509_pop_free(chain, X509_free);
	CHECK(ERR_peek_error() == 0);
}

/* keymodel_read_chain: every certificate of a PEM file, none for "",
 * NULL (with a message) for a missing file */
TEST(read_chain)
{
	char path[] = "/tmp/test_p12.XXXXXX";
	STACK_OF(X509) *sk;
	struct kmerr e;
	FILE *fp;
	int fd;

	CHECK(setup());
	CHECK((fd = mkstemp(path)) >= 0);
	CHECK((fp = fdopen(fd, "w")) != NULL);
	CHECK(PEM_write_X509(fp, cert) && PEM_write_X509(fp, cert));
	fclose(fp);
	CHECK((sk = keymodel_read_chain(path, &e)) != NULL);
	CHECK_EQ_INT(sk_X509_num(sk), 2);
	sk_X509_pop_free(sk, X509_free);
	CHECK((sk = keymodel_read_chain("", &e)) != NULL);
	CHECK_EQ_INT(sk_X509_num(sk), 0);
	sk_X509_pop_free(sk, X509_free);
	unlink(path);
	CHECK(keymodel_read_chain(path, &e) == NULL);
	CHECK(strstr(e.msg, path) != NULL);
}

/* must run last: loads the legacy provider into the default context */
TEST(rc2_needs_legacy_and_says_so)
{
	OSSL_PROVIDER *dflt, *legacy;
	struct kmerr e;
	unsigned char *der;
	int len, st;

	CHECK(setup());
	CHECK(!OSSL_PROVIDER_available(NULL, "legacy"));
	CHECK((der = mkp12(NID_pbe_WithSHA1And40BitRC2_CBC,
	    NID_pbe_WithSHA1And3_Key_TripleDES_CBC, 1, &len)) != NULL);
	CHECK_EQ_INT(parse(der, (size_t)len, PW, &e), KM_PERMFAIL);
	/* not "wrong password": the right one, an algorithm we lack */
	CHECK(!kmerr_is(&e, KMERR_BADPASSWORD));
	CHECK(strstr(e.msg, "wrong password") == NULL);
	CHECK(strstr(e.msg, "password is right") != NULL);
	CHECK(strstr(e.msg, "pbeWithSHA1And40BitRC2-CBC") != NULL);
	CHECK(strstr(e.msg, "legacy provider not loaded") != NULL);
	/* as kmctl does: default, then legacy */
	CHECK((dflt = OSSL_PROVIDER_load(NULL, "default")) != NULL);
	CHECK((legacy = OSSL_PROVIDER_load(NULL, "legacy")) != NULL);
	st = parse(der, (size_t)len, PW, &e);
	OSSL_PROVIDER_unload(legacy);
	OSSL_PROVIDER_unload(dflt);
	CHECK_EQ_INT(st, KM_OK);
	OPENSSL_free(der);
	/* no MAC (openssl pkcs12 -nomac): OpenSSL opens none with a
	 * password; said so, not "wrong password" */
	CHECK((der = mkp12(NID_pbe_WithSHA1And40BitRC2_CBC,
	    NID_pbe_WithSHA1And3_Key_TripleDES_CBC, 0, &len)) != NULL);
	CHECK_EQ_INT(parse(der, (size_t)len, PW, &e), KM_PERMFAIL);
	CHECK(strstr(e.msg, "no integrity check") != NULL);
	CHECK(strstr(e.msg, "wrong password") == NULL);
	OPENSSL_free(der);
	/* a loaded provider outlives its library context (and leaks) unless
	 * it is unloaded first */
	OSSL_PROVIDER_unload(made_with[1]);
	OSSL_PROVIDER_unload(made_with[0]);
	OSSL_LIB_CTX_free(legacy_ctx);
	legacy_ctx = NULL;
}

static const struct test_case tests[] = {
	T(aes_and_3des_import),
	T(wrong_password_said),
	T(armored_imports),
	T(malformed_refused_cleanly),
	T(export_formats),
	T(read_chain),
	T(rc2_needs_legacy_and_says_so),
	{ NULL, NULL }
};

/* main - run the cases */
int
main(int argc, char **argv)
{
	return harness_main(argc, argv, tests);
}
