/*
 * test_pkcs8pw.c - unit tests of keyclient/pkcs8pw.c: round trips with RSA
 * and EC keys, the PBES2 parameters actually written, wrong passwords,
 * truncated and corrupted input, refused algorithms, plain vs encrypted
 * detection.
 */
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "harness.h"
#include "log.h"
#include "pkcs8pw.h"
#include "secmem.h"

static struct kmerr errbuf;
static const char PW[] = "correct horse battery staple";

/* key_rsa - a fresh RSA key (generated once) */
static EVP_PKEY *
key_rsa(void)
{
	static EVP_PKEY *k;

	if (k == NULL)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	return k;
}

/* key_ec - a fresh P-256 key (generated once) */
static EVP_PKEY *
key_ec(void)
{
	static EVP_PKEY *k;

	if (k == NULL)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	return k;
}

/* plain_der - DER PrivateKeyInfo of a key; caller frees with OPENSSL_free */
static unsigned char *
plain_der(EVP_PKEY *k, size_t *len)
{
	PKCS8_PRIV_KEY_INFO *inf = EVP_PKEY2PKCS8(k);
	unsigned char *der = NULL;
	int n;

	if (inf == NULL)
		return NULL;
	n = i2d_PKCS8_PRIV_KEY_INFO(inf, &der);
	PKCS8_PRIV_KEY_INFO_free(inf);
	*len = n > 0 ? (size_t)n : 0;
	return n > 0 ? der : NULL;
}

/* round_trip - wrap, detect, unwrap both ways, compare with the original */
static int
round_trip(EVP_PKEY *k)
{
	unsigned char *enc = NULL, *dec = NULL, *plain;
	size_t enclen = 0, declen = 0, plainlen = 0;
	EVP_PKEY *got = NULL;
	int ok = 0;

	if (k == NULL || (plain = plain_der(k, &plainlen)) == NULL)
		return 0;
	if (pkcs8pw_detect(plain, plainlen) != PKCS8PW_PLAIN)
		goto out;
	if (pkcs8pw_wrap(k, PW, strlen(PW), PKCS8PW_ITER_MIN, &enc, &enclen,
	    &errbuf) != KM_OK)
		goto out;
	if (pkcs8pw_detect(enc, enclen) != PKCS8PW_ENCRYPTED)
		goto out;
	/* The plaintext key must not appear in the encrypted blob. */
	if (enclen >= plainlen && memmem(enc, enclen, plain + plainlen - 32,
	    32) != NULL)
		goto out;
	if (pkcs8pw_unwrap(enc, enclen, PW, strlen(PW), &dec, &declen, &errbuf) != KM_OK)
		goto out;
	if (declen != plainlen || memcmp(dec, plain, plainlen) != 0)
		goto out;
	if (pkcs8pw_unwrap_pkey(enc, enclen, PW, strlen(PW), &got, &errbuf) != KM_OK)
		goto out;
	ok = EVP_PKEY_eq(k, got) == 1 && ERR_peek_error() == 0;
out:
	if (!ok)
		printf("    round trip: %s\n", errbuf.msg);
	EVP_PKEY_free(got);
	secmem_free(dec, declen);
	OPENSSL_free(enc);
	OPENSSL_clear_free(plain, plainlen);
	return ok;
}

TEST(round_trip_rsa)
{
	CHECK(key_rsa() != NULL);
	CHECK(round_trip(key_rsa()));
}

TEST(round_trip_ec)
{
	CHECK(key_ec() != NULL);
	CHECK(round_trip(key_ec()));
}

TEST(wrap_der_round_trip)
{
	unsigned char *plain, *enc = NULL, *dec = NULL;
	size_t plainlen = 0, enclen = 0, declen = 0;

	CHECK((plain = plain_der(key_ec(), &plainlen)) != NULL);
	CHECK_EQ_INT(pkcs8pw_wrap_der(plain, plainlen, "pw", 2,
	    PKCS8PW_ITER_MIN, &enc, &enclen, &errbuf), KM_OK);
	CHECK_EQ_INT(pkcs8pw_unwrap(enc, enclen, "pw", 2, &dec, &declen,
	    &errbuf), KM_OK);
	CHECK(declen == plainlen && memcmp(dec, plain, plainlen) == 0);
	secmem_free(dec, declen);
	OPENSSL_free(enc);
	/* Not a PrivateKeyInfo, trailing bytes, empty. */
	CHECK_EQ_INT(pkcs8pw_wrap_der(plain, plainlen - 1, "pw", 2,
	    PKCS8PW_ITER_MIN, &enc, &enclen, &errbuf), KM_PROTO);
	CHECK(enc == NULL);
	CHECK_EQ_INT(pkcs8pw_wrap_der((const unsigned char *)"\x30\x00", 2,
	    "pw", 2, 0, &enc, &enclen, &errbuf), KM_PROTO);
	CHECK_EQ_INT(pkcs8pw_wrap_der(plain, 0, "pw", 2, 0, &enc, &enclen,
	    &errbuf), KM_PROTO);
	CHECK_EQ_INT(ERR_peek_error(), 0);
	OPENSSL_clear_free(plain, plainlen);
}

TEST(parameters_written)
{
	unsigned char *enc = NULL, *enc2 = NULL;
	size_t enclen = 0, enclen2 = 0;
	const unsigned char *p;
	const X509_ALGOR *alg;
	X509_SIG *sig;
	PBE2PARAM *pbe2;
	PBKDF2PARAM *kdf;
	int prf;

	CHECK_EQ_INT(pkcs8pw_wrap(key_ec(), PW, strlen(PW), 0, &enc, &enclen,
	    &errbuf), KM_OK);
	p = enc;
	CHECK((sig = d2i_X509_SIG(NULL, &p, (long)enclen)) != NULL);
	X509_SIG_get0(sig, &alg, NULL);
	CHECK_EQ_INT(OBJ_obj2nid(alg->algorithm), NID_pbes2);
	CHECK((pbe2 = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBE2PARAM),
	    alg->parameter)) != NULL);
	CHECK_EQ_INT(OBJ_obj2nid(pbe2->keyfunc->algorithm), NID_id_pbkdf2);
	CHECK_EQ_INT(OBJ_obj2nid(pbe2->encryption->algorithm), NID_aes_256_cbc);
	CHECK((kdf = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBKDF2PARAM),
	    pbe2->keyfunc->parameter)) != NULL);
	CHECK_EQ_INT(ASN1_INTEGER_get(kdf->iter), PKCS8PW_ITER_DEFAULT);
	CHECK(PKCS8PW_ITER_DEFAULT >= 100000);
	CHECK_EQ_INT(kdf->salt->type, V_ASN1_OCTET_STRING);
	CHECK_EQ_INT(kdf->salt->value.octet_string->length, 16);
	prf = kdf->prf ? OBJ_obj2nid(kdf->prf->algorithm) : NID_hmacWithSHA1;
	CHECK_EQ_INT(prf, NID_hmacWithSHA256);
	PBKDF2PARAM_free(kdf);
	PBE2PARAM_free(pbe2);
	X509_SIG_free(sig);
	/* Random salt and IV: the same key and password never repeat. */
	CHECK_EQ_INT(pkcs8pw_wrap(key_ec(), PW, strlen(PW), PKCS8PW_ITER_MIN,
	    &enc2, &enclen2, &errbuf), KM_OK);
	CHECK(enclen != enclen2 || memcmp(enc, enc2, enclen) != 0);
	OPENSSL_free(enc);
	OPENSSL_free(enc2);
	/* Too few or too many iterations, empty password, no key. */
	CHECK_EQ_INT(pkcs8pw_wrap(key_ec(), PW, strlen(PW), 1000, &enc,
	    &enclen, &errbuf), KM_PROTO);
	CHECK(strstr(errbuf.msg, "iteration count") != NULL);
	CHECK_EQ_INT(pkcs8pw_wrap(key_ec(), PW, strlen(PW),
	    PKCS8PW_ITER_MAX + 1, &enc, &enclen, &errbuf),
	    KM_PROTO);
	CHECK_EQ_INT(pkcs8pw_wrap(key_ec(), "", 0, 0, &enc, &enclen, &errbuf), KM_PROTO);
	CHECK_EQ_INT(pkcs8pw_wrap(NULL, PW, strlen(PW), 0, &enc, &enclen,
	    &errbuf), KM_PROTO);
	CHECK(enc == NULL);
}

TEST(wrong_password)
{
	unsigned char *enc = NULL, *dec = NULL;
	size_t enclen = 0, declen = 0;
	EVP_PKEY *got = NULL;
	char longer[64];
	static const char *const wrong[] = { "correct horse battery stapl",
	    "Correct horse battery staple", "x", "correct horse battery "
	    "staple ", NULL };

	CHECK_EQ_INT(pkcs8pw_wrap(key_rsa(), PW, strlen(PW), PKCS8PW_ITER_MIN,
	    &enc, &enclen, &errbuf), KM_OK);
	for (int i = 0; wrong[i] != NULL; i++) {
		CHECK_EQ_INT(pkcs8pw_unwrap(enc, enclen, wrong[i],
		    strlen(wrong[i]), &dec, &declen, &errbuf),
		    KM_PERMFAIL);
		CHECK_EQ_STR(errbuf.msg, "wrong password");
		CHECK(kmerr_is(&errbuf, KMERR_BADPASSWORD));
		CHECK(dec == NULL && declen == 0);
		CHECK_EQ_INT(ERR_peek_error(), 0);	/* queue drained */
	}
	CHECK_EQ_INT(pkcs8pw_unwrap_pkey(enc, enclen, "nope", 4, &got, &errbuf), KM_PERMFAIL);
	CHECK(got == NULL);
	CHECK_EQ_INT(pkcs8pw_unwrap(enc, enclen, "", 0, &dec, &declen, &errbuf), KM_PERMFAIL);
	/* The password is pointer + length: a NUL-less buffer works. */
	memcpy(longer, PW, strlen(PW));
	memcpy(longer + strlen(PW), "trailing", 8);
	CHECK_EQ_INT(pkcs8pw_unwrap(enc, enclen, longer, strlen(PW),
	    &dec, &declen, &errbuf), KM_OK);
	secmem_free(dec, declen);
	OPENSSL_free(enc);
}

TEST(truncated_and_corrupted)
{
	unsigned char *enc = NULL, *dec = NULL, *bad;
	size_t enclen = 0, declen = 0;
	int permfail = 0, proto = 0;

	CHECK_EQ_INT(pkcs8pw_wrap(key_ec(), PW, strlen(PW), PKCS8PW_ITER_MIN,
	    &enc, &enclen, &errbuf), KM_OK);
	/* Every truncation is malformed, and found before any key stretch. */
	for (size_t n = 0; n < enclen; n++) {
		if (pkcs8pw_unwrap(enc, n, PW, strlen(PW), &dec, &declen,
		    &errbuf) != KM_PROTO) {
			printf("    truncated to %zu: %s\n", n, errbuf.msg);
			CHECK(0);
		}
		CHECK(pkcs8pw_detect(enc, n) == PKCS8PW_UNKNOWN);
	}
	/* Trailing garbage too. */
	CHECK((bad = malloc(enclen + 1)) != NULL);
	memcpy(bad, enc, enclen);
	bad[enclen] = 0;
	CHECK_EQ_INT(pkcs8pw_unwrap(bad, enclen + 1, PW, strlen(PW), &dec,
	    &declen, &errbuf), KM_PROTO);
	CHECK(pkcs8pw_detect(bad, enclen + 1) == PKCS8PW_UNKNOWN);
	/* Flipped bytes in the last cipher block: wrong password (the two
	 * cannot be told apart); flipped bytes anywhere: never KM_OK with a
	 * different key, never a crash. */
	for (size_t i = 0; i < enclen; i += (i + 5 < enclen - 4) ? 11 : 1) {
		enum km_status st;

		memcpy(bad, enc, enclen);
		bad[i] ^= 0x5a;
		st = pkcs8pw_unwrap(bad, enclen, PW, strlen(PW), &dec, &declen,
		    &errbuf);
		if (st == KM_OK) {
			dec = secmem_free(dec, declen);
			continue;	/* e.g. a flipped unused bit */
		}
		permfail += st == KM_PERMFAIL;
		proto += st == KM_PROTO;
		CHECK(st == KM_PERMFAIL || st == KM_PROTO);
		if (i >= enclen - 4)
			CHECK_EQ_INT(st, KM_PERMFAIL);
		CHECK_EQ_INT(ERR_peek_error(), 0);
	}
	printf("    corrupted: %d wrong-password, %d malformed\n", permfail,
	    proto);
	CHECK(permfail > 0 && proto > 0);
	free(bad);
	OPENSSL_free(enc);
}

/* forge_der - DER SEQUENCE { alg, OCTET STRING junk } */
static unsigned char *
forge_der(X509_ALGOR *alg, size_t *len)
{
	unsigned char *a = NULL, *der;
	unsigned char junk[64];
	int alen;
	size_t body, off = 0;

	*len = 0;
	if (alg == NULL || (alen = i2d_X509_ALGOR(alg, &a)) <= 0) {
		X509_ALGOR_free(alg);
		return NULL;
	}
	X509_ALGOR_free(alg);
	RAND_bytes(junk, sizeof(junk));
	body = (size_t)alen + 2 + sizeof(junk);
	if (body > 0xffff || (der = malloc(body + 4)) == NULL) {
		OPENSSL_free(a);
		return NULL;
	}
	der[off++] = 0x30;
	der[off++] = 0x82;
	der[off++] = (unsigned char)(body >> 8);
	der[off++] = (unsigned char)body;
	memcpy(der + off, a, (size_t)alen);
	off += (size_t)alen;
	der[off++] = 0x04;
	der[off++] = sizeof(junk);
	memcpy(der + off, junk, sizeof(junk));
	off += sizeof(junk);
	OPENSSL_free(a);
	*len = off;
	return der;
}

TEST(refused_algorithms_forged)
{
	unsigned char salt[16] = { 1 }, *der, *dec = NULL;
	size_t len = 0, declen = 0;
	struct timespec t0, t1;
	long ms;

	/* Too many iterations: refused before running PBKDF2. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	der = forge_der(PKCS5_pbe2_set_iv_ex(EVP_aes_256_cbc(), 2000000000,
	    salt, sizeof(salt), NULL, NID_hmacWithSHA256, NULL), &len);
	CHECK(der != NULL);
	CHECK(pkcs8pw_detect(der, len) == PKCS8PW_ENCRYPTED);
	CHECK_EQ_INT(pkcs8pw_unwrap(der, len, PW, strlen(PW), &dec, &declen,
	    &errbuf), KM_PROTO);
	CHECK(strstr(errbuf.msg, "iteration count") != NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	CHECK(ms < 500);
	free(der);
	/* PBES1 (legacy 3DES). */
	der = forge_der(PKCS5_pbe_set(NID_pbe_WithSHA1And3_Key_TripleDES_CBC,
	    2048, salt, 8), &len);
	CHECK(der != NULL);
	CHECK_EQ_INT(pkcs8pw_unwrap(der, len, PW, strlen(PW), &dec, &declen,
	    &errbuf), KM_PROTO);
	CHECK(strstr(errbuf.msg, "not a PBES2") != NULL);
	CHECK(kmerr_is(&errbuf, KMERR_BADINPUT));
	free(der);
	/* scrypt. */
	der = forge_der(PKCS5_pbe2_set_scrypt(EVP_aes_256_cbc(), salt,
	    sizeof(salt), NULL, 16384, 8, 1), &len);
	CHECK(der != NULL);
	CHECK_EQ_INT(pkcs8pw_unwrap(der, len, PW, strlen(PW), &dec, &declen,
	    &errbuf), KM_PROTO);
	CHECK(strstr(errbuf.msg, "only PBKDF2") != NULL);
	free(der);
	/* A cipher other than AES-CBC. */
	der = forge_der(PKCS5_pbe2_set_iv_ex(EVP_des_ede3_cbc(), 2048, salt,
	    sizeof(salt), NULL, NID_hmacWithSHA256, NULL), &len);
	CHECK(der != NULL);
	CHECK_EQ_INT(pkcs8pw_unwrap(der, len, PW, strlen(PW), &dec, &declen,
	    &errbuf), KM_PROTO);
	CHECK(strstr(errbuf.msg, "only AES-CBC") != NULL);
	CHECK(kmerr_is(&errbuf, KMERR_BADINPUT));
	free(der);
	CHECK(dec == NULL);
	CHECK_EQ_INT(ERR_peek_error(), 0);
}

TEST(detect_kinds)
{
	unsigned char *plain, rnd[200];
	size_t plainlen = 0;
	unsigned int seed = 7;
	int unknown = 0;

	CHECK((plain = plain_der(key_rsa(), &plainlen)) != NULL);
	CHECK(pkcs8pw_detect(plain, plainlen) == PKCS8PW_PLAIN);
	CHECK(pkcs8pw_detect(plain, plainlen - 1) == PKCS8PW_UNKNOWN);
	CHECK(pkcs8pw_detect(plain, 0) == PKCS8PW_UNKNOWN);
	CHECK(pkcs8pw_detect(NULL, 10) == PKCS8PW_UNKNOWN);
	CHECK(pkcs8pw_detect((const unsigned char *)"\x30\x00", 2) ==
	    PKCS8PW_UNKNOWN);
	for (int i = 0; i < 2000; i++) {
		size_t n = 1 + (size_t)rand_r(&seed) % sizeof(rnd);

		for (size_t j = 0; j < n; j++)
			rnd[j] = (unsigned char)rand_r(&seed);
		if (i % 2)
			rnd[0] = 0x30;	/* looks like a SEQUENCE */
		unknown += pkcs8pw_detect(rnd, n) == PKCS8PW_UNKNOWN;
	}
	CHECK_EQ_INT(unknown, 2000);
	CHECK_EQ_STR(pkcs8pw_kind_name(PKCS8PW_ENCRYPTED), "encrypted");
	CHECK_EQ_STR(pkcs8pw_kind_name(PKCS8PW_PLAIN), "plain");
	CHECK_EQ_INT(ERR_peek_error(), 0);
	OPENSSL_clear_free(plain, plainlen);
}

static const struct test_case tests[] = {
	T(round_trip_rsa),
	T(round_trip_ec),
	T(wrap_der_round_trip),
	T(parameters_written),
	T(wrong_password),
	T(truncated_and_corrupted),
	T(refused_algorithms_forged),
	T(detect_kinds),
	{ 0 }
};

/* main - run the cases, logging to stderr */
int
main(int argc, char **argv)
{
	log_init("test_pkcs8pw", 0, 1, 0);
	return harness_main(argc, argv, tests);
}
