/*
 * readers-bench - what checking every reader costs at decryption.
 *
 * usage: readers-bench SIZE ITERATIONS
 *
 * Encrypts a SIZE-byte text entity (AES-256-CBC) to four RSA-2048
 * recipients, then times, per message (open + decrypt + free):
 * smime_envelope_decrypt() with one candidate (what kmilter did before),
 * and smime_envelope_decrypt_readers() with 1..4 readers (one content
 * decryption each, plaintext digests compared).  Prints one line each.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "smime.h"

#define NREADERS 4

/* now - monotonic seconds */
static double
now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* self_signed - a throw-away certificate for key k, serial n */
static X509 *
self_signed(EVP_PKEY *k, long n)
{
	X509 *x = X509_new();
	X509_NAME *name;

	if (x == NULL)
		return NULL;
	ASN1_INTEGER_set(X509_get_serialNumber(x), n);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, k);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)"reader", -1, -1, 0);
	X509_set_issuer_name(x, name);
	if (X509_sign(x, k, EVP_sha256()) <= 0) {
		X509_free(x);
		return NULL;
	}
	return x;
}

/* message - DER of SIZE bytes encrypted to every certificate */
static unsigned char *
message(size_t size, STACK_OF(X509) *certs, int *len)
{
	char *ent = malloc(size + 64);
	unsigned char *der = NULL;
	CMS_ContentInfo *cms = NULL;
	BIO *in;
	int h;

	if (ent == NULL)
		return NULL;
	h = snprintf(ent, 64, "Content-Type: text/plain\r\n\r\n");
	memset(ent + h, 'a', size);
	if ((in = BIO_new_mem_buf(ent, h + (int)size)) != NULL)
		cms = CMS_encrypt(certs, in, EVP_aes_256_cbc(), CMS_BINARY);
	if (cms != NULL)
		*len = i2d_CMS_ContentInfo(cms, &der);
	CMS_ContentInfo_free(cms);
	BIO_free(in);
	free(ent);
	return der;
}

/* once - open, decrypt for nr readers (0: the old single call), free */
static int
once(const unsigned char *der, int len, const struct smime_reader *rd, int nr)
{
	struct smime_envelope *env;
	struct kmerr err = { 0 };
	int matched[NREADERS], failed;
	BIO *out = BIO_new(BIO_s_mem());
	enum km_status st;

	if (out == NULL || smime_envelope_open(NULL, (const char *)der, (size_t)len, &env,
	    &err) != KM_OK) {
		BIO_free(out);
		return -1;
	}
	if (nr == 0)
		st = smime_envelope_decrypt(env, rd[0].cands, 1, out, matched, &err);
	else
		st = smime_envelope_decrypt_readers(env, rd, (size_t)nr, out, &failed, matched,
		    &err);
	smime_envelope_free(env);
	BIO_free(out);
	if (st != KM_OK)
		fprintf(stderr, "readers-bench: %s\n", err.msg);
	return st == KM_OK ? 0 : -1;
}

int
main(int argc, char **argv)
{
	struct smime_keypair kp[NREADERS];
	struct smime_reader rd[NREADERS];
	STACK_OF(X509) *certs = sk_X509_new_null();
	unsigned char *der;
	size_t size;
	int iters, len = 0;

	if (argc != 3 || (size = strtoul(argv[1], NULL, 10)) == 0 ||
	    (iters = atoi(argv[2])) <= 0) {
		fprintf(stderr, "usage: readers-bench SIZE ITERATIONS\n");
		return 2;
	}
	for (int i = 0; i < NREADERS; i++) {
		if ((kp[i].key = EVP_RSA_gen(2048)) == NULL ||
		    (kp[i].cert = self_signed(kp[i].key, 100 + i)) == NULL ||
		    certs == NULL || !sk_X509_push(certs, kp[i].cert))
			return 1;
		rd[i].cands = &kp[i];
		rd[i].ncands = 1;
	}
	if ((der = message(size, certs, &len)) == NULL)
		return 1;
	for (int nr = 0; nr <= NREADERS; nr++) {
		double t0 = now();

		for (int i = 0; i < iters; i++)
			if (once(der, len, rd, nr) < 0)
				return 1;
		printf("size %zu: %s %d: %.2f ms/message\n", size, nr == 0 ?
		    "smime_envelope_decrypt, candidates" : "decrypt_readers, readers",
		    nr == 0 ? 1 : nr, (now() - t0) * 1000 / iters);
	}
	OPENSSL_free(der);
	for (int i = 0; i < NREADERS; i++) {
		X509_free(kp[i].cert);
		EVP_PKEY_free(kp[i].key);
	}
	sk_X509_free(certs);
	return 0;
}
