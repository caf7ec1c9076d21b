/*
 * test_ldapdir - keyclient/ldapdir.c without a directory: the filter
 * escaping (RFC 4515), what an attribute value may hold (a DER
 * certificate, a certs-only PKCS#7, anything else refused), which
 * certificate is picked, the configuration checks, and the back-off of a
 * directory that cannot be reached.  tests/e2e/t-ldap.py asks a real slapd.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include "clock.h"
#include "conf.h"
#include "fixture.h"
#include "harness.h"
#include "ldapdir.h"

static X509 *ca;
static EVP_PKEY *ca_key;

/* mkcert - an S/MIME encryption certificate for addr from the test CA;
 * valid from nb to na seconds from now (both 0: the fixture default) */
static X509 *
mkcert(const char *addr, const char *ku, long nb, long na, long serial)
{
	struct fixture_cert spec = { 0 };
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *c;

	if (k == NULL || (ca == NULL && !fixture_ca(&ca, &ca_key)))
		return NULL;
	spec.serial = serial;
	spec.cn = addr;
	spec.san = addr;
	spec.ku = ku != NULL ? ku : "critical,digitalSignature,keyAgreement";
	spec.eku = "emailProtection";
	spec.notbefore = nb;
	spec.notafter = na;
	c = fixture_cert(k, &spec, ca, ca_key);
	EVP_PKEY_free(k);
	return c;
}

/* der - the DER of a certificate (OPENSSL_free) */
static int
der(X509 *c, unsigned char **out)
{
	*out = NULL;
	return i2d_X509(c, out);
}

/* p7 - a certs-only PKCS#7 of the certificates (OPENSSL_free) */
static int
p7(X509 **certs, int n, unsigned char **out)
{
	PKCS7 *p = PKCS7_new();
	int len;

	*out = NULL;
	if (p == NULL || !PKCS7_set_type(p, NID_pkcs7_signed) ||
	    !PKCS7_content_new(p, NID_pkcs7_data))
		return -1;
	for (int i = 0; i < n; i++)
		if (!PKCS7_add_certificate(p, certs[i]))
			return -1;
	len = i2d_PKCS7(p, out);
	PKCS7_free(p);
	return len;
}

TEST(escape)
{
	char out[64];

	CHECK(ldapdir_escape("bob@partner.example", out, sizeof(out)) == 0);
	CHECK_EQ_STR(out, "bob@partner.example");
	CHECK(ldapdir_escape("a*)(mail=*", out, sizeof(out)) == 0);
	CHECK_EQ_STR(out, "a\\2a\\29\\28mail=\\2a");
	CHECK(ldapdir_escape("back\\slash\x01", out, sizeof(out)) == 0);
	CHECK_EQ_STR(out, "back\\5cslash\\01");
	CHECK(ldapdir_escape("\xc3\xa9t\xc3\xa9@x.example", out, sizeof(out)) == 0);
	CHECK_EQ_STR(out, "\xc3\xa9t\xc3\xa9@x.example");	/* UTF-8 as is */
	CHECK(ldapdir_escape("", out, sizeof(out)) == 0);
	CHECK_EQ_STR(out, "");
	/* too small: refused, never cut */
	CHECK(ldapdir_escape("abcdef", out, 6) == -1);
	CHECK(ldapdir_escape("abcde", out, 6) == 0);
	CHECK(ldapdir_escape("abcd*", out, 7) == -1);
	CHECK(ldapdir_escape("abc*", out, 8) == 0);
	CHECK_EQ_STR(out, "abc\\2a");
}

TEST(parse_values)
{
	X509 *a = mkcert("a@x.example", NULL, 0, 0, 11);
	X509 *b = mkcert("b@x.example", NULL, 0, 0, 12);
	X509 *both[2] = { a, b };
	STACK_OF(X509) *st = sk_X509_new_null();
	unsigned char *d = NULL, *p = NULL, junk[300];
	int dl, pl;

	CHECK(a != NULL && b != NULL && st != NULL);
	CHECK((dl = der(a, &d)) > 0);
	CHECK((pl = p7(both, 2, &p)) > 0);
	CHECK_EQ_INT(ldapdir_parse_value(d, (size_t)dl, st), 1);
	CHECK_EQ_INT(ldapdir_parse_value(p, (size_t)pl, st), 2);
	CHECK_EQ_INT(sk_X509_num(st), 3);
	CHECK(X509_cmp(sk_X509_value(st, 2), b) == 0);
	/* a certs-only PKCS#7 without certificates: nothing, not garbage */
	OPENSSL_free(p);
	CHECK((pl = p7(NULL, 0, &p)) > 0);
	CHECK_EQ_INT(ldapdir_parse_value(p, (size_t)pl, st), 0);
	/* garbage, empty, cut, trailing bytes, huge */
	memset(junk, 0x41, sizeof(junk));
	CHECK_EQ_INT(ldapdir_parse_value(junk, sizeof(junk), st), -1);
	CHECK_EQ_INT(ldapdir_parse_value(junk, 0, st), -1);
	CHECK_EQ_INT(ldapdir_parse_value(NULL, 10, st), -1);
	CHECK_EQ_INT(ldapdir_parse_value(d, (size_t)dl - 1, st), -1);
	{
		unsigned char *longer = malloc((size_t)dl + 1);

		CHECK(longer != NULL);
		memcpy(longer, d, (size_t)dl);
		longer[dl] = 0;
		CHECK_EQ_INT(ldapdir_parse_value(longer, (size_t)dl + 1, st), -1);
		free(longer);
	}
	CHECK_EQ_INT(ldapdir_parse_value(d, 70000, st), -1);
	CHECK_EQ_INT(sk_X509_num(st), 3);
	OPENSSL_free(d);
	OPENSSL_free(p);
	sk_X509_pop_free(st, X509_free);
	X509_free(a);
	X509_free(b);
}

TEST(pick)
{
	const char *who = "bob@partner.example";
	X509 *older = mkcert(who, NULL, -7200, 86400, 21);
	X509 *newer = mkcert(who, NULL, -600, 86400, 22);
	X509 *other = mkcert("eve@partner.example", NULL, -60, 86400, 23);
	X509 *expired = mkcert(who, NULL, -86400, -3600, 24);
	X509 *future = mkcert(who, NULL, 3600, 86400, 25);
	X509 *signonly = mkcert(who, "critical,digitalSignature", -30, 86400, 26);
	STACK_OF(X509) *st = sk_X509_new_null();
	X509 *got = NULL;

	CHECK(older && newer && other && expired && future && signonly && st);
	/* the unusable ones are all newer than the usable ones */
	sk_X509_push(st, other);
	sk_X509_push(st, older);
	sk_X509_push(st, expired);
	sk_X509_push(st, future);
	sk_X509_push(st, newer);
	sk_X509_push(st, signonly);
	CHECK_EQ_INT(ldapdir_pick(st, who, "test", &got), KM_OK);
	CHECK(got != NULL && X509_cmp(got, newer) == 0);
	X509_free(got);
	/* case of the address does not matter */
	CHECK_EQ_INT(ldapdir_pick(st, "Bob@Partner.EXAMPLE", "test", &got),
	    KM_OK);
	X509_free(got);
	(void)sk_X509_delete_ptr(st, newer);
	(void)sk_X509_delete_ptr(st, older);
	CHECK_EQ_INT(ldapdir_pick(st, who, "test", &got), KM_PERMFAIL);
	CHECK(got == NULL);
	sk_X509_pop_free(st, X509_free);
	X509_free(newer);
	X509_free(older);
}

/* conf - a configuration with one directory */
static struct kmilter_conf *
conf(const char *ldap, const char *extra)
{
	char text[2048], errbuf[1024];
	struct kmilter_conf *c;

	snprintf(text, sizeof(text), "milter: { socket = \"unix:/tmp/x\"; };\n"
	    "directory: { ldap = ( { %s } ); %s };\n", ldap, extra);
	c = conf_load_string(text, "test", errbuf, sizeof(errbuf));
	if (c == NULL)
		printf("    %s\n", errbuf);
	return c;
}

TEST(config)
{
	struct kmilter_conf *c;
	struct kmerr err = { 0 };
	struct ldapdir *ld;

	c = conf("domains = [ \"x.example\" ]; uri = \"http://h/\";", "");
	CHECK(c != NULL);
	CHECK(ldapdir_new(c, &err) == NULL);
	CHECK(strstr(err.msg, "uri \"http://h/\"") != NULL);
	conf_unref(c);
	c = conf("domains = [ \"x.example\" ]; uri = \"ldaps://h/\"; "
	    "starttls = true;", "");
	CHECK(c != NULL && ldapdir_new(c, &err) == NULL);
	CHECK(strstr(err.msg, "starttls on ldaps") != NULL);
	conf_unref(c);
	c = conf("domains = [ \"x.example\" ]; uri = \"ldap://h/\"; "
	    "bind_dn = \"cn=x\"; password_file = \"/nonexistent/pw\";", "");
	CHECK(c != NULL && ldapdir_new(c, &err) == NULL);
	CHECK(strstr(err.msg, "/nonexistent/pw") != NULL);
	conf_unref(c);
	/* domains is required */
	CHECK(conf("uri = \"ldap://h/\";", "") == NULL);
	c = conf("domains = [ \"x.example\", \".y.example\" ]; "
	    "uri = \"ldap://127.0.0.1:1/\"; timeout_ms = 300;",
	    "backoff_ms = 5000;");
	CHECK(c != NULL && c->nldap == 1 && c->ldap[0].ndomains == 2);
	CHECK_EQ_INT(c->ldap[0].timeout_ms, 300);
	CHECK_EQ_INT(c->dir_backoff_ms, 5000);
	CHECK((ld = ldapdir_new(c, &err)) != NULL);
	CHECK_EQ_INT(ldapdir_count(ld), 1);
	ldapdir_free(ld);
	conf_unref(c);
}

/* a closed port: TEMPFAIL, then TEMPFAIL at once while backing off; a
 * domain no directory covers is a "none" that costs nothing */
TEST(backoff)
{
	struct kmilter_conf *c;
	struct kmerr err = { 0 };
	struct ldapdir *ld;
	X509 *got = NULL;
	int64_t t0;

	c = conf("domains = [ \"x.example\", \".y.example\" ]; "
	    "uri = \"ldap://127.0.0.1:1/\"; timeout_ms = 300;",
	    "backoff_ms = 60000;");
	CHECK(c != NULL && (ld = ldapdir_new(c, &err)) != NULL);
	CHECK_EQ_INT(ldapdir_lookup(ld, "a@other.example", &got, &err),
	    KM_PERMFAIL);
	CHECK(kmerr_is(&err, KMERR_NOTFOUND));
	CHECK_EQ_INT(ldapdir_lookup(ld, "a@x.example", &got, &err),
	    KM_TEMPFAIL);
	CHECK(strstr(err.msg, "ldap://127.0.0.1:1/") != NULL);
	t0 = clock_ms();
	CHECK_EQ_INT(ldapdir_lookup(ld, "b@sub.y.example", &got, &err),
	    KM_TEMPFAIL);
	CHECK(strstr(err.msg, "not asked") != NULL);
	CHECK(clock_ms() - t0 < 50);
	CHECK(got == NULL);
	ldapdir_free(ld);
	conf_unref(c);
	/* no back-off: asked again */
	c = conf("domains = [ \"*\" ]; uri = \"ldap://127.0.0.1:1/\";",
	    "backoff_ms = 0;");
	CHECK(c != NULL && (ld = ldapdir_new(c, &err)) != NULL);
	CHECK_EQ_INT(ldapdir_lookup(ld, "a@any.example", &got, &err),
	    KM_TEMPFAIL);
	CHECK_EQ_INT(ldapdir_lookup(ld, "a@any.example", &got, &err),
	    KM_TEMPFAIL);
	CHECK(strstr(err.msg, "not asked") == NULL);
	ldapdir_free(ld);
	conf_unref(c);
}

static struct ldapdir *shared;
static int tempfails;
static pthread_mutex_t tf_mu = PTHREAD_MUTEX_INITIALIZER;

/* looker - lookups from one thread */
static void *
looker(void *arg)
{
	struct kmerr err;
	X509 *got = NULL;
	char addr[64];

	for (int i = 0; i < 25; i++) {
		snprintf(addr, sizeof(addr), "t%ld-%d@x.example", (long)arg, i);
		kmerr_clear(&err);
		if (ldapdir_lookup(shared, addr, &got, &err) == KM_TEMPFAIL) {
			pthread_mutex_lock(&tf_mu);
			tempfails++;
			pthread_mutex_unlock(&tf_mu);
		}
		X509_free(got);
	}
	return NULL;
}

/* one handle, 8 threads at once, against a directory that refuses and
 * with no back-off: every lookup a temporary failure, nothing shared
 * breaks (run under ASan by make SANITIZE=1 unit) */
TEST(threads)
{
	struct kmilter_conf *c;
	struct kmerr err = { 0 };
	pthread_t th[8];

	c = conf("domains = [ \"x.example\" ]; uri = \"ldap://127.0.0.1:1/\";",
	    "backoff_ms = 0;");
	CHECK(c != NULL && (shared = ldapdir_new(c, &err)) != NULL);
	for (long i = 0; i < 8; i++)
		CHECK(pthread_create(&th[i], NULL, looker, (void *)i) == 0);
	for (int i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	CHECK_EQ_INT(tempfails, 8 * 25);
	shared = ldapdir_free(shared);
	conf_unref(c);
}

static const struct test_case tests[] = {
	T(escape), T(parse_values), T(pick), T(config), T(backoff), T(threads),
	{ 0 }
};

int
main(int argc, char **argv)
{
	return harness_main(argc, argv, tests);
}
