/*
 * test_signstore.c - unit tests for keyclient/signstore.c with real files
 * in a temporary state directory: a plain and a protected signing key,
 * signstore_load() refusing a protected key, signstore_open() handing it
 * over as it is, and signstore_rewrap() between the levels (the same
 * password is no change, another one is refused, nothing is lost).
 */
#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "fixture.h"
#include "harness.h"
#include "pkcs8pw.h"
#include "seal.h"
#include "secmem.h"
#include "signstore.h"

#define ADDR	"sam@example.org"
#define PW	"sam-Pass 1!"
#define PW2	"Zq-second-Pw9"

static const unsigned char ikm[SEAL_KEY_LEN] = "0123456789abcdef0123456789abcde";

/* state - a fresh state directory and the seal key */
static struct seal_key *
state(char *dir, size_t len)
{
	snprintf(dir, len, "/tmp/test_signstore.XXXXXX");
	if (mkdtemp(dir) == NULL)
		return NULL;
	return seal_key_from_bytes(ikm, SEAL_KEY_LEN, NULL);
}

/* cleanup - remove the state directory */
static void
cleanup(const char *dir)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		printf("    cannot remove %s\n", dir);
}

/* enroll - addr's signing key, protected by pw unless NULL */
static enum km_status
enroll(const char *dir, const struct seal_key *sk, const char *pw,
    struct kmerr *err)
{
	X509 *ca;
	EVP_PKEY *cakey;

	if (!fixture_ca(&ca, &cakey))
		return KM_NOMEM;
	return signstore_enroll_protected(dir, sk, ADDR, ca, cakey, "ec-p256",
	    0, pw, pw != NULL ? strlen(pw) : 0, err);
}

/* opened - signstore_open: 0 plain (key matches), 1 protected by pw, -1
 * neither */
static int
opened(const char *dir, const struct seal_key *sk, const char *pw)
{
	X509 *cert = NULL;
	EVP_PKEY *key = NULL, *k2 = NULL;
	unsigned char *enc = NULL;
	size_t enclen = 0;
	struct kmerr err;
	int r = -1;

	if (signstore_open(dir, sk, ADDR, &cert, &key, &enc, &enclen, NULL,
	    &err) != KM_OK)
		return -1;
	if (key != NULL && enc == NULL && X509_check_private_key(cert, key))
		r = 0;
	else if (key == NULL && enc != NULL && pw != NULL &&
	    pkcs8pw_unwrap_pkey(enc, enclen, pw, strlen(pw), &k2, &err) ==
	    KM_OK && X509_check_private_key(cert, k2))
		r = 1;
	EVP_PKEY_free(k2);
	EVP_PKEY_free(key);
	X509_free(cert);
	free(enc);
	return r;
}

TEST(plain_and_protected)
{
	char dir[64];
	struct seal_key *sk;
	X509 *cert = NULL;
	EVP_PKEY *key = NULL;
	struct kmerr err;

	CHECK((sk = state(dir, sizeof(dir))) != NULL);
	CHECK_EQ_INT(enroll(dir, sk, NULL, &err), KM_OK);
	CHECK_EQ_INT(opened(dir, sk, NULL), 0);
	CHECK_EQ_INT(signstore_load(dir, sk, ADDR, &cert, &key, NULL, &err),
	    KM_OK);
	X509_free(cert);
	EVP_PKEY_free(key);
	/* enrolled again, protected: load refuses it, open hands it over */
	CHECK_EQ_INT(enroll(dir, sk, PW, &err), KM_OK);
	CHECK_EQ_INT(opened(dir, sk, PW), 1);
	CHECK_EQ_INT(opened(dir, sk, PW2), -1);
	CHECK_EQ_INT(signstore_load(dir, sk, ADDR, &cert, &key, NULL, &err),
	    KM_PERMFAIL);
	CHECK(kmerr_is(&err, KMERR_LOCKED));
	CHECK(cert == NULL && key == NULL);
	seal_key_free(sk);
	cleanup(dir);
}

TEST(rewrap_levels)
{
	char dir[64];
	struct seal_key *sk;
	struct kmerr err;
	int changed = -1;

	CHECK((sk = state(dir, sizeof(dir))) != NULL);
	CHECK_EQ_INT(enroll(dir, sk, NULL, &err), KM_OK);
	/* plain to plain: nothing */
	CHECK_EQ_INT(signstore_rewrap(dir, sk, ADDR, NULL, 0, NULL, 0, &changed,
	    &err), KM_OK);
	CHECK_EQ_INT(changed, 0);
	/* set-password */
	CHECK_EQ_INT(signstore_rewrap(dir, sk, ADDR, NULL, 0, PW, strlen(PW),
	    &changed, &err), KM_OK);
	CHECK_EQ_INT(changed, 1);
	CHECK_EQ_INT(opened(dir, sk, PW), 1);
	/* the same password again: no change; another without the old one:
	 * refused and the file unchanged */
	CHECK_EQ_INT(signstore_rewrap(dir, sk, ADDR, NULL, 0, PW, strlen(PW),
	    &changed, &err), KM_OK);
	CHECK_EQ_INT(changed, 0);
	CHECK_EQ_INT(signstore_rewrap(dir, sk, ADDR, NULL, 0, PW2, strlen(PW2),
	    &changed, &err), KM_PERMFAIL);
	CHECK(kmerr_is(&err, KMERR_BADPASSWORD));
	CHECK_EQ_INT(changed, 0);
	CHECK_EQ_INT(opened(dir, sk, PW), 1);
	/* clear-password with a wrong password: refused */
	CHECK_EQ_INT(signstore_rewrap(dir, sk, ADDR, PW2, strlen(PW2), NULL, 0,
	    &changed, &err), KM_PERMFAIL);
	CHECK(strstr(err.msg, PW2) == NULL);
	CHECK_EQ_INT(opened(dir, sk, PW), 1);
	/* a password change, then back to plain */
	CHECK_EQ_INT(signstore_rewrap(dir, sk, ADDR, PW, strlen(PW), PW2,
	    strlen(PW2), &changed, &err), KM_OK);
	CHECK_EQ_INT(opened(dir, sk, PW2), 1);
	CHECK_EQ_INT(signstore_rewrap(dir, sk, ADDR, PW2, strlen(PW2), NULL, 0,
	    &changed, &err), KM_OK);
	CHECK_EQ_INT(changed, 1);
	CHECK_EQ_INT(opened(dir, sk, NULL), 0);
	/* no key at all */
	CHECK_EQ_INT(signstore_remove(dir, sk, ADDR, &err), KM_OK);
	CHECK_EQ_INT(signstore_rewrap(dir, sk, ADDR, NULL, 0, PW, strlen(PW),
	    &changed, &err), KM_PERMFAIL);
	CHECK(kmerr_is(&err, KMERR_NOTFOUND));
	seal_key_free(sk);
	cleanup(dir);
}

static const struct test_case tests[] = {
	T(plain_and_protected),
	T(rewrap_levels),
	{ 0 }
};

int
main(int argc, char **argv)
{
	return harness_main(argc, argv, tests);
}
