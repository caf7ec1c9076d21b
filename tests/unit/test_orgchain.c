/*
 * test_orgchain.c - milter/orgchain.c: every certificate of km.org_ca_cert
 * is loaded (a chain of two), an empty setting gives an empty chain, and a
 * file that does not load (garbage, missing, no certificate) is refused
 * with a message naming it while the chain already loaded stays.
 */
#include <stdio.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "conf.h"
#include "fixture.h"
#include "harness.h"
#include "orgchain.h"

/* write_file - path gets text, or the PEM of certs when text is NULL */
static int
write_file(const char *path, const char *text, X509 *const *certs, int n)
{
	FILE *f = fopen(path, "w");
	int ok = f != NULL;

	if (f != NULL && text != NULL)
		ok = fputs(text, f) >= 0;
	for (int i = 0; ok && text == NULL && i < n; i++)
		ok = PEM_write_X509(f, certs[i]) == 1;
	if (f != NULL && fclose(f) != 0)
		ok = 0;
	return ok;
}

/* chain_len - how many certificates orgchain_get() gives now */
static int
chain_len(void)
{
	STACK_OF(X509) *sk = orgchain_get();
	int n = sk ? sk_X509_num(sk) : -1;

	sk_X509_pop_free(sk, X509_free);
	return n;
}

TEST(load_empty_bad_keep)
{
	struct fixture_cert spec = { .org = "kmilter unit", .cn = "org CA",
	    .bc = "critical,CA:TRUE", .ku = "critical,keyCertSign,cRLSign" };
	char good[] = "/tmp/test_orgchain.XXXXXX", bad[64];
	struct kmilter_conf c = { 0 };
	struct kmerr err = { 0 };
	EVP_PKEY *k1 = EVP_EC_gen("P-256"), *k2 = EVP_EC_gen("P-256");
	X509 *certs[2];
	int fd;

	CHECK(k1 != NULL && k2 != NULL);
	spec.serial = 1;
	CHECK((certs[0] = fixture_cert(k1, &spec, NULL, NULL)) != NULL);
	spec.serial = 2;
	spec.cn = "org sub CA";
	CHECK((certs[1] = fixture_cert(k2, &spec, certs[0], k1)) != NULL);
	CHECK((fd = mkstemp(good)) >= 0);
	close(fd);
	snprintf(bad, sizeof(bad), "%s.bad", good);
	CHECK_EQ_INT(chain_len(), 0);			/* before any load */
	c.org_ca_cert = (char *)"";
	CHECK_EQ_INT(orgchain_load(&c, &err), 0);	/* unset: none */
	CHECK_EQ_INT(chain_len(), 0);
	CHECK(write_file(good, NULL, certs, 2));
	c.org_ca_cert = good;
	CHECK_EQ_INT(orgchain_load(&c, &err), 0);
	CHECK_EQ_INT(chain_len(), 2);
	/* garbage, a file without a certificate, a missing file: refused */
	static const char *texts[] = { "-----BEGIN CERTIFICATE-----\nnot base64\n"
	    "-----END CERTIFICATE-----\n", "just text\n", NULL };
	for (int i = 0; i < 3; i++) {
		unlink(bad);
		if (texts[i] != NULL)
			CHECK(write_file(bad, texts[i], NULL, 0));
		c.org_ca_cert = bad;
		CHECK_EQ_INT(orgchain_load(&c, &err), -1);
		CHECK(strstr(err.msg, "km.org_ca_cert") != NULL);
		CHECK(strstr(err.msg, bad) != NULL);
		CHECK_EQ_INT(chain_len(), 2);		/* the good one stays */
		CHECK(ERR_peek_error() == 0);
	}
	orgchain_free();
	CHECK_EQ_INT(chain_len(), 0);
	unlink(good);
	unlink(bad);
	X509_free(certs[0]);
	X509_free(certs[1]);
	EVP_PKEY_free(k1);
	EVP_PKEY_free(k2);
}

static const struct test_case tests[] = {
	T(load_empty_bad_keep),
	{ 0 }
};

int
main(int argc, char **argv)
{
	return harness_main(argc, argv, tests);
}
