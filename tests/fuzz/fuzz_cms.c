/*
 * fuzz_cms.c - libFuzzer target for the S/MIME input side
 * (milter/smime_envelope.c, smime_verify.c, smime_cms.c)
 *
 * Build and run (from the repository root):
 *   make FUZZ=1 build-fuzz/fuzz/fuzz_cms
 *   build-fuzz/fuzz/fuzz_cms -max_total_time=30 /tmp/cms-new \
 *       tests/fuzz/corpus/cms
 *
 * Each input goes through smime_envelope_open() (listing and matching
 * RecipientInfos against a fixed certificate, and a decryption attempt
 * with its key) and smime_verify(), both as a full entity (or raw DER) and
 * as a body under each S/MIME Content-Type.  Nothing may crash or leak,
 * and the OpenSSL error queue must be empty afterwards.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "smime.h"
#include "smime_verify.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static X509 *cert;
static EVP_PKEY *key;

/* setup - a throwaway self-signed EC certificate for matching */
static void
setup(void)
{
	X509_NAME *n;

	if (cert != NULL)
		return;
	key = EVP_EC_gen("P-256");
	cert = X509_new();
	if (key == NULL || cert == NULL)
		abort();
	ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(cert), 0);
	X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
	X509_set_pubkey(cert, key);
	n = X509_get_subject_name(cert);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
	    (const unsigned char *)"fuzz", -1, -1, 0);
	X509_set_issuer_name(cert, n);
	if (X509_sign(cert, key, EVP_sha256()) <= 0)
		abort();
}

/* one - run every input-side entry point over one (ctype, body) */
static void
one(const char *ctype, const char *buf, size_t len)
{
	struct smime_envelope *env = NULL;
	struct smime_verify_result r;
	struct smime_keypair kp = { cert, key };
	BIO *out = BIO_new(BIO_s_mem());
	struct kmerr err = { 0 };
	size_t i;
	int m;

	if (smime_envelope_open(ctype, buf, len, &env, &err) ==
	    KM_OK) {
		for (i = 0; i < smime_envelope_count(env); i++)
			if (smime_envelope_rid(env, i) == NULL)
				abort();
		(void)smime_envelope_match(env, cert);
		(void)smime_envelope_decrypt(env, &kp, 1, out, &m, &err);
	}
	smime_envelope_free(env);
	(void)smime_verify(ctype, buf, len, NULL, "a@b.example", &r, out,
	    &err);
	BIO_free(out);
	if (ERR_peek_error() != 0)
		abort();
}

/* LLVMFuzzerTestOneInput - one input, copied so overreads are caught */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size ? size : 1);

	setup();
	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	one(NULL, buf, size);
	if (size > 0 && (data[0] & 3) == 1)
		one("application/pkcs7-mime; smime-type=enveloped-data", buf,
		    size);
	else if (size > 0 && (data[0] & 3) == 2)
		one("application/pkcs7-mime; smime-type=signed-data", buf,
		    size);
	else if (size > 0 && (data[0] & 3) == 3)
		one("multipart/signed; protocol=\"application/pkcs7-signature\";"
		    " boundary=b", buf, size);
	free(buf);
	return 0;
}
