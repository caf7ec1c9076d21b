/*
 * test_certenc.c - keyclient/certenc.c: which certificates a message can
 * be encrypted to (key type and keyUsage: a DSA certificate claiming
 * keyEncipherment is refused), and address matching as clients do it
 * (case-insensitive, local part included).
 */
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certenc.h"
#include "fixture.h"
#include "harness.h"

/* keygen - a key of an OpenSSL algorithm name ("DSA", "ED25519", ...) */
static EVP_PKEY *
keygen(const char *alg)
{
	EVP_PKEY_CTX *pc = NULL, *kc = NULL;
	EVP_PKEY *params = NULL, *k = NULL;

	if (strcmp(alg, "RSA") == 0)
		return EVP_RSA_gen(2048);
	if (strcmp(alg, "EC") == 0)
		return EVP_EC_gen("P-256");
	if (strcmp(alg, "DSA") == 0) {
		/* DSA needs domain parameters first */
		if ((pc = EVP_PKEY_CTX_new_from_name(NULL, "DSA", NULL)) ==
		    NULL || EVP_PKEY_paramgen_init(pc) <= 0 ||
		    EVP_PKEY_CTX_set_dsa_paramgen_bits(pc, 2048) <= 0 ||
		    EVP_PKEY_paramgen(pc, &params) <= 0 ||
		    (kc = EVP_PKEY_CTX_new_from_pkey(NULL, params, NULL)) ==
		    NULL || EVP_PKEY_keygen_init(kc) <= 0)
			goto out;
		EVP_PKEY_keygen(kc, &k);
		goto out;
	}
	k = EVP_PKEY_Q_keygen(NULL, NULL, alg);
out:
	EVP_PKEY_CTX_free(pc);
	EVP_PKEY_CTX_free(kc);
	EVP_PKEY_free(params);
	return k;
}

/* cert_for - a CA-issued certificate for addr with the given keyUsage */
static X509 *
cert_for(EVP_PKEY *k, const char *san, const char *email, const char *ku)
{
	struct fixture_cert spec = { .cn = "user", .san = san, .email = email,
	    .ku = ku, .eku = "emailProtection" };
	X509 *ca;
	EVP_PKEY *cakey;

	if (k == NULL || !fixture_ca(&ca, &cakey))
		return NULL;
	return fixture_cert(k, &spec, ca, cakey);
}

/* verdict - certenc_check on a fresh certificate; err filled */
static enum km_status
verdict(const char *alg, const char *ku, struct kmerr *err)
{
	EVP_PKEY *k = keygen(alg);
	X509 *x = cert_for(k, "bob@example.com", NULL, ku);
	enum km_status st;

	kmerr_clear(err);
	st = x != NULL ? certenc_check(x, err) : KM_NOMEM;
	X509_free(x);
	EVP_PKEY_free(k);
	return st;
}

TEST(rsa_and_ec_that_may_encrypt_pass)
{
	struct kmerr e;

	CHECK_EQ_INT(verdict("RSA", "digitalSignature,keyEncipherment", &e),
	    KM_OK);
	CHECK_EQ_INT(verdict("RSA", NULL, &e), KM_OK);	/* no keyUsage: any */
	CHECK_EQ_INT(verdict("EC", "keyAgreement", &e), KM_OK);
	CHECK_EQ_INT(verdict("EC", NULL, &e), KM_OK);
}

TEST(dsa_claiming_key_encipherment_refused)
{
	struct kmerr e;

	CHECK_EQ_INT(verdict("DSA", "digitalSignature,keyEncipherment", &e),
	    KM_PERMFAIL);
	CHECK(kmerr_is(&e, KMERR_REFUSED));
	CHECK(strstr(e.msg, "cannot encrypt") != NULL);
	CHECK(strstr(e.msg, "DSA") != NULL);
	CHECK(strstr(e.msg, "claims otherwise") != NULL);
	CHECK_EQ_INT(verdict("DSA", NULL, &e), KM_PERMFAIL);
}

TEST(signing_only_keys_refused)
{
	struct kmerr e;

	CHECK_EQ_INT(verdict("ED25519", "digitalSignature", &e), KM_PERMFAIL);
	CHECK(strstr(e.msg, "ED25519") != NULL);
	/* X25519 can agree, but OpenSSL 3.0's CMS cannot encrypt to it */
	CHECK_EQ_INT(verdict("X25519", "keyAgreement", &e), KM_PERMFAIL);
}

TEST(key_usage_must_fit_the_key_type)
{
	struct kmerr e;

	/* the old check took keyEncipherment OR keyAgreement for any key */
	CHECK_EQ_INT(verdict("RSA", "keyAgreement", &e), KM_PERMFAIL);
	CHECK(strstr(e.msg, "lacks keyEncipherment") != NULL);
	CHECK_EQ_INT(verdict("RSA", "digitalSignature", &e), KM_PERMFAIL);
	CHECK_EQ_INT(verdict("EC", "keyEncipherment", &e), KM_PERMFAIL);
	CHECK(strstr(e.msg, "lacks keyAgreement") != NULL);
	CHECK_EQ_INT(verdict("EC", "digitalSignature", &e), KM_PERMFAIL);
}

TEST(names_case_insensitive)
{
	EVP_PKEY *k = keygen("EC");
	X509 *san = cert_for(k, "bob@example.com", NULL, "keyAgreement");
	X509 *subj = cert_for(k, NULL, "Carol@Example.ORG", "keyAgreement");

	CHECK(san != NULL && subj != NULL);
	CHECK(certenc_names(san, "bob@example.com"));
	CHECK(certenc_names(san, "Bob@Example.COM"));
	CHECK(certenc_names(san, "BOB@EXAMPLE.COM"));
	CHECK(certenc_names(subj, "carol@example.org"));
	CHECK(!certenc_names(san, "bob@example.co"));
	CHECK(!certenc_names(san, "bobb@example.com"));
	CHECK(!certenc_names(san, "ob@example.com"));
	CHECK(!certenc_names(san, "carol@example.org"));
	X509_free(san);
	X509_free(subj);
	EVP_PKEY_free(k);
}

TEST(names_embedded_nul_refused)
{
	EVP_PKEY *k = keygen("EC");
	X509 *x = cert_for(k, "bob@example.com", NULL, "keyAgreement");
	GENERAL_NAMES *gns = NULL;
	GENERAL_NAME *gn;
	ASN1_IA5STRING *s;

	CHECK(x != NULL);
	/* a SAN "bob@example.com\0.evil" must not match bob@example.com */
	gns = sk_GENERAL_NAME_new_null();
	gn = GENERAL_NAME_new();
	s = ASN1_IA5STRING_new();
	ASN1_STRING_set(s, "bob@example.com\0.evil", 21);
	GENERAL_NAME_set0_value(gn, GEN_EMAIL, s);
	sk_GENERAL_NAME_push(gns, gn);
	X509_add1_ext_i2d(x, NID_subject_alt_name, gns, 0, X509V3_ADD_REPLACE);
	GENERAL_NAMES_free(gns);
	CHECK(!certenc_names(x, "bob@example.com"));
	X509_free(x);
	EVP_PKEY_free(k);
}

static const struct test_case tests[] = {
	T(rsa_and_ec_that_may_encrypt_pass),
	T(dsa_claiming_key_encipherment_refused),
	T(signing_only_keys_refused),
	T(key_usage_must_fit_the_key_type),
	T(names_case_insensitive),
	T(names_embedded_nul_refused),
	{ NULL, NULL }
};

/* main - run the cases */
int
main(int argc, char **argv)
{
	return harness_main(argc, argv, tests);
}
