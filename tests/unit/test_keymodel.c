/*
 * test_keymodel.c - unit tests for the pure parts of keyclient/keymodel.c:
 * address normalization and object naming, Object Group encoding, XOR
 * split/combine, key-versus-certificate check, certificate issuance,
 * re-wrapping a key between protection levels.
 */
#include <string.h>

#include <openssl/x509v3.h>

#include "fixture.h"
#include "harness.h"
#include "keymodel.h"
#include "keymodel_cert.h"
#include "keymodel_name.h"
#include "pkcs8pw.h"
#include "secmem.h"

/* norm - normalize into a static buffer; NULL on failure */
static const char *
norm(const char *addr)
{
	static char buf[KEYMODEL_ADDR_MAX + 1];
	struct kmerr err;

	return keymodel_addr_normalize(addr, buf, sizeof(buf), &err) == KM_OK ? buf : NULL;
}

TEST(addr_domain_lowercased_local_kept)
{
	CHECK_EQ_STR(norm("Alice@EXAMPLE.COM"), "Alice@example.com");
	CHECK_EQ_STR(norm("Bob.Smith+tag@Sub.Example.org"),
	    "Bob.Smith+tag@sub.example.org");
	CHECK_EQ_STR(norm("x@y"), "x@y");
}

TEST(addr_malformed_refused)
{
	static const char *bad[] = {
		"", "alice", "@example.com", "alice@", "a b@example.com",
		"alice@exa mple.com", "alice@@example.com", "a@b@example.com",
		"alice\n@example.com", "alice@example.com\r", "\"a\"@example.com",
		"alice@example..com", "alice@.example.com", "alice@example.com.",
		"alice@-example.com", "alice@example-.com", "alice@exa_mple.com",
		"<alice@example.com>", "al\x7fice@example.com",
		"al\xc3\xa9@example.com", NULL
	};
	char buf[KEYMODEL_ADDR_MAX + 1];
	struct kmerr err;
	int i;

	for (i = 0; bad[i] != NULL; i++) {
		kmerr_clear(&err);
		if (keymodel_addr_normalize(bad[i], buf, sizeof(buf), &err) != KM_PROTO || err.msg[0] == '\0') {
			printf("    accepted: \"%s\"\n", bad[i]);
			CHECK(0);
		}
	}
	CHECK(keymodel_addr_normalize(NULL, buf, sizeof(buf), &err) == KM_PROTO);
}

TEST(addr_length_limit)
{
	char a[300], buf[KEYMODEL_ADDR_MAX + 1];
	struct kmerr err;

	memset(a, 'a', sizeof(a));
	memcpy(a + 254 - 12, "@example.com", 13);	/* exactly 254 */
	CHECK_EQ_INT(strlen(a), 254);
	CHECK(keymodel_addr_normalize(a, buf, sizeof(buf), &err) == KM_OK);
	memset(a, 'a', sizeof(a));
	memcpy(a + 255 - 12, "@example.com", 13);	/* 255 */
	CHECK(keymodel_addr_normalize(a, buf, sizeof(buf), &err) == KM_PROTO);
	CHECK(strstr(err.msg, "too long") != NULL);
}

TEST(object_name_folds_case)
{
	char name[KEYMODEL_NAME_MAX];
	struct kmerr err;

	CHECK(keymodel_object_name("Alice@EXAMPLE.COM", name, sizeof(name),
	    &err) == KM_OK);
	CHECK_EQ_STR(name, "kmilter:enc:alice@example.com");
	CHECK(keymodel_object_name("alice", name, sizeof(name), &err) == KM_PROTO);
}

TEST(group_roundtrip)
{
	char g[KEYMODEL_GROUP_MAX];
	enum keymodel_kind kind;
	int gen, enh;

	CHECK(keymodel_group_format(KEYMODEL_CERT, 3, 0, g, sizeof(g)) ==
	    KM_OK);
	CHECK_EQ_STR(g, "kmilter:gen:3");
	CHECK(keymodel_group_parse(g, &kind, &gen, &enh) == KM_OK);
	CHECK(kind == KEYMODEL_CERT && gen == 3 && enh == 0);
	CHECK(keymodel_group_format(KEYMODEL_SHARE, 12, 1, g, sizeof(g)) ==
	    KM_OK);
	CHECK_EQ_STR(g, "kmilter:gen:12:enhanced");
	CHECK(keymodel_group_parse(g, &kind, &gen, &enh) == KM_OK);
	CHECK(kind == KEYMODEL_SHARE && gen == 12 && enh == 1);
	CHECK(keymodel_group_parse("kmilter:gen:1:default", &kind, &gen,
	    &enh) == KM_OK && kind == KEYMODEL_SHARE && enh == 0);
	CHECK(keymodel_group_format(KEYMODEL_CERT, 0, 0, g, sizeof(g)) ==
	    KM_PROTO);
}

TEST(group_garbage_refused)
{
	static const char *bad[] = {
		"", "kmilter", "kmilter:gen:", "kmilter:gen:0", "kmilter:gen:01",
		"kmilter:gen:-1", "kmilter:gen:1x", "kmilter:gen:1:other",
		"kmilter:gen:1:default:x", "kmilter:gen:99999999999",
		"other:gen:1", NULL
	};
	enum keymodel_kind kind;
	int i, gen, enh;

	for (i = 0; bad[i] != NULL; i++)
		CHECK(keymodel_group_parse(bad[i], &kind, &gen, &enh) ==
		    KM_PROTO);
	CHECK(keymodel_group_parse(NULL, &kind, &gen, &enh) == KM_PROTO);
}

TEST(split_combine)
{
	unsigned char key[1217], *a, *b, *k;
	size_t klen, i, same_a = 0;
	struct kmerr err;

	for (i = 0; i < sizeof(key); i++)
		key[i] = (unsigned char)(i * 7 + 3);
	CHECK(keymodel_split(key, sizeof(key), &a, &b, &err) ==
	    KM_OK);
	for (i = 0; i < sizeof(key); i++)
		same_a += a[i] == key[i];
	CHECK(same_a < 40);		/* a is random, not the key */
	CHECK(memcmp(a, b, sizeof(key)) != 0);
	CHECK(keymodel_combine(a, sizeof(key), b, sizeof(key), &k, &klen,
	    &err) == KM_OK);
	CHECK_EQ_INT(klen, sizeof(key));
	CHECK(memcmp(k, key, klen) == 0);
	secmem_free(k, klen);
	/* XOR is symmetric: the order of the servers does not matter */
	CHECK(keymodel_combine(b, sizeof(key), a, sizeof(key), &k, &klen,
	    &err) == KM_OK && memcmp(k, key, klen) == 0);
	secmem_free(k, klen);
	CHECK(keymodel_combine(a, sizeof(key), b, sizeof(key) - 1, &k, &klen,
	    &err) == KM_PROTO);
	CHECK(k == NULL && strstr(err.msg, "differ in length") != NULL);
	CHECK(keymodel_combine(a, 0, b, 0, &k, &klen, &err) ==
	    KM_PROTO);
	secmem_free(a, sizeof(key));
	secmem_free(b, sizeof(key));
	CHECK(keymodel_split(key, 0, &a, &b, &err) == KM_PROTO);
}

TEST(issue_and_check_pair)
{
	X509 *ca, *x = NULL;
	EVP_PKEY *cakey, *key = NULL, *other = NULL;
	GENERAL_NAMES *san;
	struct kmerr err;
	int ok_san = 0, i, days, secs;

	CHECK(fixture_ca(&ca, &cakey));	/* shared: not freed */
	CHECK(keymodel_keygen("rsa2048", &key, &err) == KM_OK);
	CHECK(keymodel_keygen("ec-p256", &other, &err) == KM_OK);
	CHECK(keymodel_issue_cert(key, "Alice@EXAMPLE.COM", ca, cakey, 0,
	    KEYMODEL_USE_ENCRYPT, &x, &err) == KM_OK);
	CHECK(X509_verify(x, cakey) == 1);
	CHECK(keymodel_check_pair(x, key, &err) == KM_OK);
	CHECK(keymodel_check_pair(x, other, &err) == KM_PROTO);
	CHECK(strstr(err.msg, "does not match") != NULL);
	CHECK((X509_get_key_usage(x) & KU_KEY_ENCIPHERMENT) != 0);
	CHECK((X509_get_key_usage(x) & KU_DIGITAL_SIGNATURE) == 0);
	CHECK((X509_get_extended_key_usage(x) & XKU_SMIME) != 0);
	CHECK(X509_get0_subject_key_id(x) != NULL);
	CHECK(X509_get_ext_by_NID(x, NID_authority_key_identifier, -1) >= 0);
	san = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	for (i = 0; san != NULL && i < sk_GENERAL_NAME_num(san); i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(san, i);

		if (g->type == GEN_EMAIL && strcmp((const char *)
		    ASN1_STRING_get0_data(g->d.rfc822Name),
		    "Alice@example.com") == 0)
			ok_san = 1;
	}
	GENERAL_NAMES_free(san);
	CHECK(ok_san);
	CHECK(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x),
	    X509_get0_notAfter(x)) == 1);
	CHECK(days >= KEYMODEL_DAYS_ENC && days <= KEYMODEL_DAYS_ENC + 1);
	X509_free(x);
	x = NULL;
	/* EC encryption key: keyAgreement; signing profile */
	CHECK(keymodel_issue_cert(other, "a@b.example", ca, cakey, 0,
	    KEYMODEL_USE_ENCRYPT, &x, &err) == KM_OK);
	CHECK((X509_get_key_usage(x) & KU_KEY_AGREEMENT) != 0);
	X509_free(x);
	x = NULL;
	CHECK(keymodel_issue_cert(other, "a@b.example", ca, cakey, 0,
	    KEYMODEL_USE_SIGN, &x, &err) == KM_OK);
	CHECK((X509_get_key_usage(x) & KU_DIGITAL_SIGNATURE) != 0);
	CHECK(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x),
	    X509_get0_notAfter(x)) == 1 && days == KEYMODEL_DAYS_SIGN);
	X509_free(x);
	x = NULL;
	/* wrong CA key, bad address, bad key type */
	CHECK(keymodel_issue_cert(key, "a@b.example", ca, other, 0,
	    KEYMODEL_USE_ENCRYPT, &x, &err) == KM_PERMFAIL);
	CHECK(x == NULL);
	CHECK(keymodel_issue_cert(key, "a b@example", ca, cakey, 0,
	    KEYMODEL_USE_ENCRYPT, &x, &err) == KM_PROTO);
	EVP_PKEY_free(other);
	CHECK(keymodel_keygen("dsa1024", &other, &err) == KM_PROTO);
	CHECK(other == NULL);
	EVP_PKEY_free(key);
}

TEST(fingerprint_format)
{
	X509 *ca;
	EVP_PKEY *cakey;
	char fp[96];

	CHECK(fixture_ca(&ca, &cakey));	/* shared: not freed */
	keymodel_cert_fingerprint(ca, fp, sizeof(fp));
	CHECK_EQ_INT(strlen(fp), 32 * 3 - 1);
	CHECK(fp[2] == ':' && fp[94] != ':');
	keymodel_cert_fingerprint(ca, fp, 10);	/* truncates, terminates */
	CHECK(strlen(fp) < 10);
}

TEST(rewrap_levels)
{
	X509 *ca, *x = NULL, *y = NULL;
	EVP_PKEY *cakey, *key = NULL, *other = NULL;
	unsigned char *p8 = NULL, *enc = NULL, *back = NULL, *tmp = NULL;
	size_t enclen = 0, backlen = 0, tmplen = 0;
	PKCS8_PRIV_KEY_INFO *pki;
	int p8len;
	struct kmerr err;

	CHECK(fixture_ca(&ca, &cakey));	/* shared: not freed */
	CHECK(keymodel_keygen("ec-p256", &key, &err) == KM_OK);
	CHECK(keymodel_keygen("ec-p256", &other, &err) == KM_OK);
	CHECK(keymodel_issue_cert(key, "a@example.com", ca, cakey, 0,
	    KEYMODEL_USE_ENCRYPT, &x, &err) == KM_OK);
	CHECK(keymodel_issue_cert(other, "a@example.com", ca, cakey, 0,
	    KEYMODEL_USE_ENCRYPT, &y, &err) == KM_OK);
	CHECK((pki = EVP_PKEY2PKCS8(key)) != NULL);
	CHECK((p8len = i2d_PKCS8_PRIV_KEY_INFO(pki, &p8)) > 0);
	PKCS8_PRIV_KEY_INFO_free(pki);
	/* default -> enhanced */
	CHECK(keymodel_rewrap(x, p8, (size_t)p8len, NULL, 0, "pw-one-1", 8,
	    PKCS8PW_ITER_MIN, &enc, &enclen, &err) == KM_OK);
	CHECK(pkcs8pw_detect(enc, enclen) == PKCS8PW_ENCRYPTED);
	/* a plain key where an encrypted one is expected, and vice versa */
	CHECK(keymodel_rewrap(x, p8, (size_t)p8len, "pw-one-1", 8, NULL, 0,
	    0, &tmp, &tmplen, &err) == KM_PROTO);
	CHECK(keymodel_rewrap(x, enc, enclen, NULL, 0, "x", 1, 0, &tmp,
	    &tmplen, &err) == KM_PROTO);
	/* wrong password: PERMFAIL, nothing out, no password in errstr */
	CHECK(keymodel_rewrap(x, enc, enclen, "pw-two-2", 8, NULL, 0, 0,
	    &tmp, &tmplen, &err) == KM_PERMFAIL);
	CHECK(tmp == NULL && tmplen == 0);
	CHECK(strstr(err.msg, "pw-two-2") == NULL);
	/* the key does not match this certificate */
	CHECK(keymodel_rewrap(y, enc, enclen, "pw-one-1", 8, NULL, 0, 0,
	    &tmp, &tmplen, &err) == KM_PROTO);
	CHECK(strstr(err.msg, "does not match") != NULL);
	/* enhanced -> default gives the very same PKCS#8 back */
	CHECK(keymodel_rewrap(x, enc, enclen, "pw-one-1", 8, NULL, 0, 0,
	    &back, &backlen, &err) == KM_OK);
	CHECK(backlen == (size_t)p8len && memcmp(back, p8, backlen) == 0);
	/* a password change in one step; NULL certificate: no check */
	CHECK(keymodel_rewrap(NULL, enc, enclen, "pw-one-1", 8, "pw-two-2", 8,
	    PKCS8PW_ITER_MIN, &tmp, &tmplen, &err) == KM_OK);
	CHECK(pkcs8pw_detect(tmp, tmplen) == PKCS8PW_ENCRYPTED);
	secmem_free(tmp, tmplen);
	OPENSSL_free(p8);
	secmem_free(enc, enclen);
	secmem_free(back, backlen);
	EVP_PKEY_free(key);
	EVP_PKEY_free(other);
	X509_free(x);
	X509_free(y);
}

static const struct test_case tests[] = {
	T(addr_domain_lowercased_local_kept),
	T(addr_malformed_refused),
	T(addr_length_limit),
	T(object_name_folds_case),
	T(group_roundtrip),
	T(group_garbage_refused),
	T(split_combine),
	T(issue_and_check_pair),
	T(fingerprint_format),
	T(rewrap_levels),
	{ NULL, NULL }
};

/* main - run the cases */
int
main(int argc, char **argv)
{
	return harness_main(argc, argv, tests);
}
