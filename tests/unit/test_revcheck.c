/*
 * test_revcheck - the revocation answer cache, what OCSP responses and
 * CRLs (good, revoked, garbage, wrongly signed, expired) are taken to say,
 * and revcheck_cert() over a CRL file and an OCSP responder that does not
 * answer (soft, hard, back-off).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "conf.h"
#include "fixture.h"
#include "harness.h"
#include "revcheck.h"
#include "revcheck_cache.h"
#include "revcheck_parse.h"

static X509 *ca, *other, *leaf;
static EVP_PKEY *cakey, *otherkey, *leafkey;

/* pki - a CA, another CA and a leaf of the first; 0 on failure */
static int
pki(void)
{
	struct fixture_cert cs = { .cn = "rev CA", .bc = "critical,CA:TRUE",
	    .ku = "keyCertSign,cRLSign", .keyids = 1 };
	struct fixture_cert os = { .cn = "other CA", .bc = "critical,CA:TRUE",
	    .ku = "keyCertSign,cRLSign", .keyids = 1 };
	struct fixture_cert ls = { .serial = 4242, .email = "x@outside.example",
	    .san = "x@outside.example", .ku = "keyAgreement",
	    .eku = "emailProtection", .keyids = 1 };

	if (ca != NULL)
		return 1;
	cakey = EVP_EC_gen("P-256");
	otherkey = EVP_EC_gen("P-256");
	leafkey = EVP_EC_gen("P-256");
	ca = fixture_cert(cakey, &cs, NULL, NULL);
	other = fixture_cert(otherkey, &os, NULL, NULL);
	leaf = fixture_cert(leafkey, &ls, ca, cakey);
	return ca != NULL && other != NULL && leaf != NULL;
}

/* with_ext - a copy of leaf with one more extension, signed again */
static X509 *
with_ext(int nid, const char *value)
{
	X509 *x = X509_dup(leaf);
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, NULL, nid, value);

	if (x == NULL || e == NULL || X509_add_ext(x, e, -1) != 1 ||
	    X509_sign(x, cakey, EVP_sha256()) <= 0) {
		X509_free(x);
		x = NULL;
	}
	X509_EXTENSION_free(e);
	return x;
}

/* ocsp_der - a DER OCSP response about leaf, signed by sx/sk */
static int
ocsp_der(int status, long next, X509 *sx, EVP_PKEY *sk, unsigned char **der)
{
	OCSP_CERTID *id = OCSP_cert_to_id(NULL, leaf, ca);
	OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
	ASN1_TIME *now = X509_gmtime_adj(NULL, -10);
	ASN1_TIME *nu = X509_gmtime_adj(NULL, next);
	ASN1_TIME *rt = X509_gmtime_adj(NULL, -3600);
	OCSP_RESPONSE *r = NULL;
	int n = -1;

	if (OCSP_basic_add1_status(bs, id, status,
	    status == V_OCSP_CERTSTATUS_REVOKED ? OCSP_REVOKED_STATUS_KEYCOMPROMISE : -1,
	    rt, now, nu) != NULL &&
	    OCSP_basic_sign(bs, sx, sk, EVP_sha256(), NULL, 0) == 1 &&
	    (r = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs)) != NULL)
		n = i2d_OCSP_RESPONSE(r, der);
	OCSP_RESPONSE_free(r);
	OCSP_BASICRESP_free(bs);
	OCSP_CERTID_free(id);
	ASN1_TIME_free(now);
	ASN1_TIME_free(nu);
	ASN1_TIME_free(rt);
	return n;
}

/* make_crl - a CRL of ca's name signed by sk, listing leaf if revoke */
static X509_CRL *
make_crl(int revoke, long next, EVP_PKEY *sk)
{
	X509_CRL *crl = X509_CRL_new();
	ASN1_TIME *t0 = X509_gmtime_adj(NULL, -60), *t1 = X509_gmtime_adj(NULL, next);
	X509_REVOKED *r;

	X509_CRL_set_version(crl, 1);
	X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca));
	X509_CRL_set1_lastUpdate(crl, t0);
	X509_CRL_set1_nextUpdate(crl, t1);
	if (revoke && (r = X509_REVOKED_new()) != NULL) {
		X509_REVOKED_set_serialNumber(r,
		    (ASN1_INTEGER *)X509_get0_serialNumber(leaf));
		X509_REVOKED_set_revocationDate(r, t0);
		X509_CRL_add0_revoked(crl, r);
	}
	X509_CRL_sort(crl);
	X509_CRL_sign(crl, sk, EVP_sha256());
	ASN1_TIME_free(t0);
	ASN1_TIME_free(t1);
	return crl;
}

TEST(cache_keeps_until_next_update_and_is_bounded)
{
	struct revcache *rc = revcache_new(2);
	struct revanswer a = { REV_REVOKED, "revoked" }, g = { REV_GOOD, "good" }, o;
	time_t now = time(NULL);

	CHECK(rc != NULL);
	CHECK(!revcache_get(rc, "k1", now, &o));
	revcache_put(rc, "k1", &a, now + 100);
	revcache_put(rc, "k2", &g, now + 50);
	CHECK(revcache_get(rc, "k1", now, &o));
	CHECK_EQ_INT(o.status, REV_REVOKED);
	CHECK_EQ_STR(o.why, "revoked");
	CHECK(revcache_get(rc, "k2", now, &o));
	CHECK_EQ_INT(o.status, REV_GOOD);
	/* full: the one expiring first (k2) makes room */
	revcache_put(rc, "k3", &g, now + 200);
	CHECK_EQ_INT(revcache_count(rc), 2);
	CHECK(!revcache_get(rc, "k2", now, &o));
	CHECK(revcache_get(rc, "k1", now, &o));
	CHECK(revcache_get(rc, "k3", now, &o));
	/* past its nextUpdate: gone */
	CHECK(!revcache_get(rc, "k3", now + 300, &o));
	CHECK(!revcache_get(rc, "k3", now, &o));
	/* an answer already stale is not kept; the same key is replaced */
	revcache_put(rc, "k4", &g, now - 1);
	CHECK(!revcache_get(rc, "k4", now, &o));
	revcache_put(rc, "k1", &g, now + 100);
	CHECK(revcache_get(rc, "k1", now, &o));
	CHECK_EQ_INT(o.status, REV_GOOD);
	revcache_free(rc);
}

TEST(ocsp_good_revoked_and_bad_answers)
{
	OCSP_CERTID *id;
	unsigned char *der = NULL, junk[] = "\x30\x03\x0a\x01\x00garbage";
	char why[160];
	time_t until;
	int n;

	CHECK(pki());
	id = OCSP_cert_to_id(NULL, leaf, ca);
	CHECK((n = ocsp_der(V_OCSP_CERTSTATUS_GOOD, 600, ca, cakey, &der)) > 0);
	CHECK_EQ_INT(revparse_ocsp(der, (size_t)n, id, ca, &until, why,
	    sizeof(why)), REV_GOOD);
	CHECK(until > time(NULL) + 500 && until < time(NULL) + 700);
	OPENSSL_free(der);
	der = NULL;
	CHECK((n = ocsp_der(V_OCSP_CERTSTATUS_REVOKED, 600, ca, cakey, &der)) > 0);
	CHECK_EQ_INT(revparse_ocsp(der, (size_t)n, id, ca, &until, why,
	    sizeof(why)), REV_REVOKED);
	CHECK(strstr(why, "keyCompromise") != NULL);
	/* cut short: malformed, never a crash */
	CHECK_EQ_INT(revparse_ocsp(der, (size_t)n / 2, id, ca, &until, why,
	    sizeof(why)), REV_UNKNOWN);
	CHECK(strstr(why, "malformed OCSP response") != NULL);
	OPENSSL_free(der);
	der = NULL;
	/* signed by another CA: not believed */
	CHECK((n = ocsp_der(V_OCSP_CERTSTATUS_REVOKED, 600, other, otherkey,
	    &der)) > 0);
	CHECK_EQ_INT(revparse_ocsp(der, (size_t)n, id, ca, &until, why,
	    sizeof(why)), REV_UNKNOWN);
	CHECK(strstr(why, "not signed by the issuer") != NULL);
	OPENSSL_free(der);
	der = NULL;
	/* stale (nextUpdate an hour ago) */
	CHECK((n = ocsp_der(V_OCSP_CERTSTATUS_GOOD, -3600, ca, cakey, &der)) > 0);
	CHECK_EQ_INT(revparse_ocsp(der, (size_t)n, id, ca, &until, why,
	    sizeof(why)), REV_UNKNOWN);
	CHECK(strstr(why, "not current") != NULL);
	OPENSSL_free(der);
	/* an OCSP error status ("tryLater" = 3) and plain garbage */
	CHECK_EQ_INT(revparse_ocsp((unsigned char *)"\x30\x03\x0a\x01\x03", 5,
	    id, ca, &until, why, sizeof(why)), REV_UNKNOWN);
	CHECK(strstr(why, "trylater") != NULL);
	CHECK_EQ_INT(revparse_ocsp(junk, sizeof(junk) - 1, id, ca, &until, why,
	    sizeof(why)), REV_UNKNOWN);
	CHECK_EQ_INT(revparse_ocsp(junk, 0, id, ca, &until, why, sizeof(why)),
	    REV_UNKNOWN);
	OCSP_CERTID_free(id);
}

TEST(crl_good_revoked_and_bad_answers)
{
	X509_CRL *crl, *back;
	unsigned char *der = NULL;
	char why[160];
	time_t until;
	int n;

	CHECK(pki());
	crl = make_crl(1, 600, cakey);
	CHECK_EQ_INT(revparse_crl(crl, leaf, ca, &until, why, sizeof(why)),
	    REV_REVOKED);
	CHECK(strstr(why, "revoked at") != NULL);
	CHECK(until > time(NULL));
	/* DER read back */
	CHECK((n = i2d_X509_CRL(crl, &der)) > 0);
	CHECK((back = revparse_crl_load(der, (size_t)n, why, sizeof(why))) != NULL);
	CHECK_EQ_INT(revparse_crl(back, leaf, ca, &until, why, sizeof(why)),
	    REV_REVOKED);
	X509_CRL_free(back);
	CHECK(revparse_crl_load(der, (size_t)n - 7, why, sizeof(why)) == NULL);
	CHECK(strstr(why, "malformed CRL") != NULL);
	CHECK(revparse_crl_load((unsigned char *)"-----BEGIN X509 CRL-----\nzz\n",
	    28, why, sizeof(why)) == NULL);
	OPENSSL_free(der);
	X509_CRL_free(crl);
	crl = make_crl(0, 600, cakey);
	CHECK_EQ_INT(revparse_crl(crl, leaf, ca, &until, why, sizeof(why)),
	    REV_GOOD);
	X509_CRL_free(crl);
	/* signed with another key, or stale: unknown, not "good" */
	crl = make_crl(1, 600, otherkey);
	CHECK_EQ_INT(revparse_crl(crl, leaf, ca, &until, why, sizeof(why)),
	    REV_UNKNOWN);
	CHECK(strstr(why, "signature does not verify") != NULL);
	X509_CRL_free(crl);
	crl = make_crl(0, -3600, cakey);
	CHECK_EQ_INT(revparse_crl(crl, leaf, ca, &until, why, sizeof(why)),
	    REV_UNKNOWN);
	CHECK(strstr(why, "expired") != NULL);
	X509_CRL_free(crl);
}

/* conf_with - a configuration with a revocation group */
static struct kmilter_conf *
conf_with(const char *rev)
{
	char text[1024], err[512];
	struct kmilter_conf *c;

	snprintf(text, sizeof(text), "milter: { socket = \"unix:/tmp/x.sock\"; };\n"
	    "revocation: { %s };\n", rev);
	if ((c = conf_load_string(text, "t.conf", err, sizeof(err))) == NULL)
		printf("    %s\n", err);
	return c;
}

TEST(crl_file_revoked_then_cached)
{
	char path[] = "/tmp/test_revcheck.XXXXXX", rev[256];
	struct kmilter_conf *c;
	struct revcheck *rv;
	struct kmerr e;
	X509_STORE *trust = X509_STORE_new();
	X509_CRL *crl;
	unsigned long o, n;
	FILE *f;
	int fd;

	CHECK(pki());
	CHECK((fd = mkstemp(path)) >= 0);
	CHECK((f = fdopen(fd, "w")) != NULL);
	crl = make_crl(1, 600, cakey);
	PEM_write_X509_CRL(f, crl);
	fclose(f);
	X509_CRL_free(crl);
	X509_STORE_add_cert(trust, ca);
	snprintf(rev, sizeof(rev), "check = \"hard\"; crl_files = [ \"%s\" ];", path);
	CHECK((c = conf_with(rev)) != NULL);
	CHECK((rv = revcheck_new(c, &e)) != NULL);
	CHECK_EQ_INT(revcheck_cert(rv, leaf, NULL, trust, &e), KM_PERMFAIL);
	CHECK(kmerr_is(&e, KMERR_REFUSED));
	CHECK(strstr(e.msg, "revoked at") != NULL);
	CHECK(strstr(e.msg, path) != NULL);
	revcheck_stats(rv, &o, &n);
	CHECK_EQ_INT(n, 1);
	/* the answer is kept: the file is not read again */
	unlink(path);
	CHECK_EQ_INT(revcheck_cert(rv, leaf, NULL, trust, &e), KM_PERMFAIL);
	revcheck_stats(rv, &o, &n);
	CHECK_EQ_INT(n, 1);
	CHECK_EQ_INT(o, 0);
	/* the issuer found in the chain rather than the store */
	rv = revcheck_free(rv);
	conf_unref(c);
	X509_STORE_free(trust);
}

TEST(unreachable_responder_soft_hard_backoff)
{
	struct kmilter_conf *cs, *ch, *coff;
	struct revcheck *soft, *hard, *off;
	STACK_OF(X509) *chain = sk_X509_new_null();
	X509 *x;
	struct kmerr e;
	unsigned long o, n;

	CHECK(pki());
	/* port 9 on loopback: nobody listens, refused at once */
	CHECK((x = with_ext(NID_info_access, "OCSP;URI:http://127.0.0.1:9/")) != NULL);
	sk_X509_push(chain, ca);
	CHECK((cs = conf_with("check = \"soft\"; timeout_ms = 1000;")) != NULL);
	CHECK((ch = conf_with("check = \"hard\"; timeout_ms = 1000;")) != NULL);
	CHECK((coff = conf_with("")) != NULL);
	CHECK((soft = revcheck_new(cs, &e)) != NULL);
	CHECK((hard = revcheck_new(ch, &e)) != NULL);
	CHECK((off = revcheck_new(coff, &e)) != NULL);
	CHECK_EQ_INT(revcheck_cert(off, x, chain, NULL, &e), KM_OK);
	CHECK_EQ_INT(revcheck_cert(soft, x, chain, NULL, &e), KM_OK);
	CHECK_EQ_INT(e.reason, KMERR_UNREACHABLE);
	CHECK(strstr(e.msg, "soft-fail") != NULL);
	CHECK_EQ_INT(revcheck_cert(hard, x, chain, NULL, &e), KM_TEMPFAIL);
	CHECK(strstr(e.msg, "revocation status unknown") != NULL);
	CHECK(strstr(e.msg, "127.0.0.1:9") != NULL);
	revcheck_stats(hard, &o, &n);
	CHECK_EQ_INT(o, 1);
	/* within the back-off the responder is not asked again */
	CHECK_EQ_INT(revcheck_cert(hard, x, chain, NULL, &e), KM_TEMPFAIL);
	revcheck_stats(hard, &o, &n);
	CHECK_EQ_INT(o, 1);
	/* no issuer anywhere: unknown; self-signed: nothing to ask */
	CHECK_EQ_INT(revcheck_cert(hard, x, NULL, NULL, &e), KM_TEMPFAIL);
	CHECK(strstr(e.msg, "issuer") != NULL);
	CHECK_EQ_INT(revcheck_cert(hard, other, NULL, NULL, &e), KM_OK);
	/* a certificate that names no source is not revoked as far as we know */
	CHECK_EQ_INT(revcheck_cert(hard, leaf, chain, NULL, &e), KM_OK);
	revcheck_free(soft);
	revcheck_free(hard);
	revcheck_free(off);
	conf_unref(cs);
	conf_unref(ch);
	conf_unref(coff);
	sk_X509_free(chain);
	X509_free(x);
}

static const struct test_case tests[] = {
	T(cache_keeps_until_next_update_and_is_bounded),
	T(ocsp_good_revoked_and_bad_answers),
	T(crl_good_revoked_and_bad_answers),
	T(crl_file_revoked_then_cached),
	T(unreachable_responder_soft_hard_backoff),
	{ NULL, NULL }
};

/* main - run the cases */
int
main(int argc, char **argv)
{
	return harness_main(argc, argv, tests);
}
