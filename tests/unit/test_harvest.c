/*
 * test_harvest.c - harvesting correspondents' certificates: the KM-side
 * rules (keymodel_harvest_decide), the Object Group, the choice and checks
 * of milter/harvest.c over fixture certificates with a fake store, and the
 * encKeyPref attribute read by smime_verify_certs().
 */
#include <string.h>

#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "conf.h"
#include "fixture.h"
#include "harness.h"
#include "harvest.h"
#include "keymodel_cert.h"
#include "keymodel_harvest.h"
#include "keymodel_name.h"
#include "kmip.h"
#include "log.h"
#include "revcheck.h"
#include "smime_verify.h"

#define ADDR "carol@partner.example"

/* ---- keymodel_harvest_decide: what the KM holds decides ---- */

static const struct keymodel_harvest_rules rules = { 0, 2 };

/* gen - one described generation */
static struct keymodel_harvest_gen
gen(int n, int state, int has_key, int harvested, const char *fp, time_t nb)
{
	struct keymodel_harvest_gen g;

	memset(&g, 0, sizeof(g));
	g.generation = n;
	g.state = state;
	g.has_key = has_key;
	g.harvested = harvested;
	snprintf(g.sha256, sizeof(g.sha256), "%s", fp);
	g.not_before = nb;
	return g;
}

/* decide - the status and reason for a candidate "NEW" of notBefore nb */
static enum km_status
decide(const struct keymodel_harvest_gen *v, size_t n, time_t nb,
    const struct keymodel_harvest_rules *r, enum kmerr_reason *why)
{
	struct kmerr e;
	enum km_status st;

	kmerr_clear(&e);
	st = keymodel_harvest_decide(v, n, ADDR, "NEW", nb, r, &e);
	*why = e.reason;
	return st;
}

TEST(decide_first_certificate_stored)
{
	enum kmerr_reason why;

	CHECK_EQ_INT(decide(NULL, 0, 100, &rules, &why), KM_OK);
}

TEST(decide_same_certificate_is_nothing)
{
	struct keymodel_harvest_gen v[2] = {
		gen(2, KMIP_STATE_ACTIVE, 0, 1, "OTHER", 200),
		gen(1, KMIP_STATE_DEACTIVATED, 0, 1, "NEW", 100) };
	enum kmerr_reason why;

	CHECK_EQ_INT(decide(v, 2, 100, &rules, &why), KM_PERMFAIL);
	CHECK_EQ_INT(why, KMERR_EXISTS);
	/* revoked by an administrator: never again */
	v[1].state = KMIP_STATE_COMPROMISED;
	CHECK_EQ_INT(decide(v, 2, 100, &rules, &why), KM_PERMFAIL);
	CHECK_EQ_INT(why, KMERR_REFUSED);
}

TEST(decide_newer_replaces_older_harvested)
{
	struct keymodel_harvest_gen v[1] = {
		gen(1, KMIP_STATE_ACTIVE, 0, 1, "OLD", 100) };
	enum kmerr_reason why;

	CHECK_EQ_INT(decide(v, 1, 101, &rules, &why), KM_OK);
	CHECK_EQ_INT(decide(v, 1, 100, &rules, &why), KM_PERMFAIL);
	CHECK_EQ_INT(why, KMERR_REFUSED);
	CHECK_EQ_INT(decide(v, 1, 50, &rules, &why), KM_PERMFAIL);
}

TEST(decide_imported_kept_unless_configured)
{
	struct keymodel_harvest_gen v[1] = {
		gen(1, KMIP_STATE_ACTIVE, 0, 0, "IMPORTED", 100) };
	struct keymodel_harvest_rules replace = { 1, 2 };
	enum kmerr_reason why;

	CHECK_EQ_INT(decide(v, 1, 200, &rules, &why), KM_PERMFAIL);
	CHECK_EQ_INT(why, KMERR_REFUSED);
	CHECK_EQ_INT(decide(v, 1, 200, &replace, &why), KM_OK);
}

TEST(decide_own_key_pair_never_touched)
{
	struct keymodel_harvest_gen v[1] = {
		gen(1, KMIP_STATE_ACTIVE, 1, 0, "OWN", 100) };
	struct keymodel_harvest_rules replace = { 1, 2 };
	enum kmerr_reason why;

	CHECK_EQ_INT(decide(v, 1, 200, &replace, &why), KM_PERMFAIL);
	CHECK_EQ_INT(why, KMERR_REFUSED);
	/* even a Deactivated one */
	v[0].state = KMIP_STATE_DEACTIVATED;
	CHECK_EQ_INT(decide(v, 1, 200, &replace, &why), KM_PERMFAIL);
}

TEST(decide_per_address_limit_holds)
{
	struct keymodel_harvest_gen v[3] = {
		gen(3, KMIP_STATE_ACTIVE, 0, 1, "C", 300),
		gen(2, KMIP_STATE_DEACTIVATED, 0, 1, "B", 200),
		gen(1, KMIP_STATE_COMPROMISED, 0, 1, "A", 100) };
	struct keymodel_harvest_rules three = { 0, 3 };
	enum kmerr_reason why;

	/* two kept (the revoked one does not count), limit 2 */
	CHECK_EQ_INT(decide(v, 3, 400, &rules, &why), KM_PERMFAIL);
	CHECK_EQ_INT(why, KMERR_REFUSED);
	CHECK_EQ_INT(decide(v, 3, 400, &three, &why), KM_OK);
}

TEST(group_harvested_round_trip)
{
	char g[KEYMODEL_GROUP_MAX];
	enum keymodel_kind kind = KEYMODEL_SHARE;
	int n = 0, enh = 1;

	CHECK_EQ_INT(keymodel_group_format_harvested(7, g, sizeof(g)), KM_OK);
	CHECK_EQ_STR(g, "kmilter:gen:7:harvested");
	CHECK(keymodel_group_harvested(g));
	CHECK_EQ_INT(keymodel_group_parse(g, &kind, &n, &enh), KM_OK);
	CHECK_EQ_INT(kind, KEYMODEL_CERT);
	CHECK_EQ_INT(n, 7);
	CHECK_EQ_INT(enh, 0);
	CHECK(!keymodel_group_harvested("kmilter:gen:7"));
	CHECK(!keymodel_group_harvested("kmilter:gen:7:default"));
	CHECK(!keymodel_group_harvested(":harvested"));
	CHECK(keymodel_group_parse("kmilter:gen:7:harvestedX", &kind, &n,
	    &enh) != KM_OK);
	CHECK(keymodel_group_format_harvested(0, g, sizeof(g)) != KM_OK);
}

/* ---- harvest_signature: choice and checks, with a fake store ---- */

/*
 * revcheck_cert - FAKE: replaces keyclient/revcheck.c's at link time
 * (revcheck.o is then not taken from the library): serial 66 is revoked,
 * 67 has an unknown status under hard-fail, every other one is good.
 */
enum km_status
revcheck_cert(struct revcheck *rv, X509 *cert, STACK_OF(X509) *chain,
    X509_STORE *trust, struct kmerr *err)
{
	long serial = ASN1_INTEGER_get(X509_get0_serialNumber(cert));

	(void)rv;
	(void)chain;
	(void)trust;
	if (serial == 66)
		return kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
		    "by the test CA (fake)");
	if (serial == 67)
		return kmerr_set(err, KM_TEMPFAIL, KMERR_UNREACHABLE,
		    "no responder (fake)");
	kmerr_clear(err);
	return KM_OK;
}

static X509 *ca;
static EVP_PKEY *cakey;

/* The fake store: what it was given, in order. */
static X509 *stored[8];
static int nstored, store_calls;
static enum km_status store_answer = KM_OK;
static enum kmerr_reason store_reason = KMERR_UNREACHABLE;

static enum km_status
fake_store(void *arg, const char *addr, X509 *cert,
    const struct keymodel_harvest_rules *r, int *generation,
    struct kmerr *err)
{
	(void)arg;
	(void)r;
	store_calls++;
	if (store_answer != KM_OK)
		return kmerr_set(err, store_answer, store_reason,
		    "KM says no (fake)");
	if (strcmp(addr, ADDR) != 0 || nstored >= 8)
		return kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED, "fake");
	X509_up_ref(cert);
	stored[nstored++] = cert;
	*generation = nstored;
	return KM_OK;
}

static void
store_reset(void)
{
	while (nstored > 0)
		X509_free(stored[--nstored]);
	store_answer = KM_OK;
	store_reason = KMERR_UNREACHABLE;
	store_calls = 0;
	harvest_forget();
}

/* enc_cert - an EC certificate for san that can encrypt; issuer NULL:
 * the fixture CA; nb/na seconds from now (both 0: valid now) */
static X509 *
enc_cert(const char *san, X509 *issuer, EVP_PKEY *issuer_key, long nb,
    long na, long serial)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	struct fixture_cert spec = { .serial = serial, .cn = "enc", .san = san,
	    .ku = "critical,keyAgreement", .eku = "emailProtection",
	    .keyids = 1, .notbefore = nb, .notafter = na };
	X509 *x;

	if (k == NULL)
		return NULL;
	x = fixture_cert(k, &spec, issuer ? issuer : ca,
	    issuer ? issuer_key : cakey);
	EVP_PKEY_free(k);
	return x;
}

/* policy.internal_domains of run() */
static char *internal[1];
static int ninternal;

/* run - harvest_signature over a set; how many stored */
static int
run(int max_per_message, STACK_OF(X509) *set, X509 *pref)
{
	struct kmilter_conf c;
	struct smime_signer_certs sc = { set, pref, pref != NULL };
	X509_STORE *trust = X509_STORE_new();
	int n;

	memset(&c, 0, sizeof(c));
	c.in_harvest = 1;
	c.in_harvest_max_per_message = max_per_message;
	c.in_harvest_max_per_address = 4;
	c.internal_domains = internal;
	c.n_internal_domains = ninternal;
	X509_STORE_add_cert(trust, ca);
	n = harvest_signature(&c, trust, NULL, "QID", ADDR, &sc, fake_store,
	    NULL);
	X509_STORE_free(trust);
	return n;
}

/* set_of - a stack of the given certificates (new references) */
static STACK_OF(X509) *
set_of(X509 *a, X509 *b, X509 *c)
{
	STACK_OF(X509) *s = sk_X509_new_null();
	X509 *v[3] = { a, b, c };

	for (int i = 0; i < 3; i++)
		if (v[i] != NULL && X509_up_ref(v[i]))
			sk_X509_push(s, v[i]);
	return s;
}

/* setup - a CA of our own (the fixture's has no key identifiers) */
static int
setup(void)
{
	static const struct fixture_cert spec = { .cn = "harvest CA",
	    .bc = "critical,CA:TRUE", .ku = "critical,keyCertSign,cRLSign",
	    .keyids = 1 };

	if (ca == NULL && (cakey = EVP_EC_gen("P-256")) != NULL)
		ca = fixture_cert(cakey, &spec, NULL, NULL);
	return ca != NULL;
}

TEST(valid_certificate_stored)
{
	X509 *x;
	STACK_OF(X509) *s;

	CHECK(setup());
	x = enc_cert(ADDR, NULL, NULL, 0, 0, 10);
	s = set_of(x, ca, NULL);		/* the CA itself is skipped */
	CHECK_EQ_INT(run(2, s, NULL), 1);
	CHECK(nstored == 1 && X509_cmp(stored[0], x) == 0);
	store_reset();
	sk_X509_pop_free(s, X509_free);
	X509_free(x);
}

TEST(bad_certificates_never_stored)
{
	EVP_PKEY *other_key = EVP_EC_gen("P-256");
	struct fixture_cert ospec = { .cn = "other CA",
	    .bc = "critical,CA:TRUE", .ku = "critical,keyCertSign",
	    .keyids = 1 };
	X509 *other = fixture_cert(other_key, &ospec, NULL, NULL);
	X509 *expired = enc_cert(ADDR, NULL, NULL, -7200, -3600, 11);
	X509 *wrong = enc_cert("mallory@partner.example", NULL, NULL, 0, 0, 12);
	X509 *untrusted = enc_cert(ADDR, other, other_key, 0, 0, 13);
	STACK_OF(X509) *s;

	CHECK(setup() && other != NULL && expired && wrong && untrusted);
	s = set_of(expired, NULL, NULL);
	CHECK_EQ_INT(run(2, s, NULL), 0);
	sk_X509_pop_free(s, X509_free);
	/* not a candidate at all, and refused when encKeyPref names it */
	s = set_of(wrong, NULL, NULL);
	CHECK_EQ_INT(run(2, s, NULL), 0);
	CHECK_EQ_INT(run(2, s, wrong), 0);
	sk_X509_pop_free(s, X509_free);
	/* its issuer in the set does not make it trusted */
	s = set_of(untrusted, other, NULL);
	CHECK_EQ_INT(run(2, s, NULL), 0);
	sk_X509_pop_free(s, X509_free);
	CHECK_EQ_INT(nstored, 0);
	X509_free(other);
	EVP_PKEY_free(other_key);
	X509_free(expired);
	X509_free(wrong);
	X509_free(untrusted);
}

TEST(internal_address_never_harvested)
{
	X509 *x;
	STACK_OF(X509) *s;

	CHECK(setup());
	x = enc_cert(ADDR, NULL, NULL, 0, 0, 14);
	s = set_of(x, NULL, NULL);
	internal[0] = (char *)"partner.example";
	ninternal = 1;
	CHECK_EQ_INT(run(2, s, NULL), 0);
	ninternal = 0;
	CHECK_EQ_INT(nstored, 0);
	CHECK_EQ_INT(run(2, s, NULL), 1);
	store_reset();
	sk_X509_pop_free(s, X509_free);
	X509_free(x);
}

TEST(revoked_or_unknown_status_never_stored)
{
	X509 *rev, *unk;
	STACK_OF(X509) *s;

	CHECK(setup());
	rev = enc_cert(ADDR, NULL, NULL, 0, 0, 66);
	unk = enc_cert(ADDR, NULL, NULL, 0, 0, 67);
	s = set_of(rev, NULL, NULL);
	CHECK_EQ_INT(run(2, s, NULL), 0);
	sk_X509_pop_free(s, X509_free);
	s = set_of(unk, NULL, NULL);
	CHECK_EQ_INT(run(2, s, NULL), 0);
	sk_X509_pop_free(s, X509_free);
	CHECK_EQ_INT(store_calls, 0);
	X509_free(rev);
	X509_free(unk);
}

TEST(signing_only_certificate_not_a_candidate)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	struct fixture_cert spec = { .cn = "sign", .san = ADDR,
	    .ku = "critical,digitalSignature", .eku = "emailProtection",
	    .keyids = 1 };
	X509 *x;
	STACK_OF(X509) *s;

	CHECK(setup());
	x = fixture_cert(k, &spec, ca, cakey);
	s = set_of(x, NULL, NULL);
	CHECK_EQ_INT(run(2, s, NULL), 0);
	sk_X509_pop_free(s, X509_free);
	X509_free(x);
	EVP_PKEY_free(k);
}

TEST(per_message_limit_keeps_the_newest_stored_oldest_first)
{
	X509 *a, *b, *c;
	STACK_OF(X509) *s;

	CHECK(setup());
	a = enc_cert(ADDR, NULL, NULL, -3000, 86400, 21);
	b = enc_cert(ADDR, NULL, NULL, -2000, 86400, 22);
	c = enc_cert(ADDR, NULL, NULL, -1000, 86400, 23);
	s = set_of(b, c, a);
	CHECK_EQ_INT(run(2, s, NULL), 2);
	/* b then c: the newest is stored last and ends up current */
	CHECK(nstored == 2 && X509_cmp(stored[0], b) == 0 &&
	    X509_cmp(stored[1], c) == 0);
	store_reset();
	CHECK_EQ_INT(run(0, s, NULL), 0);
	sk_X509_pop_free(s, X509_free);
	X509_free(a);
	X509_free(b);
	X509_free(c);
}

TEST(enckeypref_chooses)
{
	X509 *a, *b;
	STACK_OF(X509) *s;

	CHECK(setup());
	a = enc_cert(ADDR, NULL, NULL, -3000, 86400, 31);
	b = enc_cert(ADDR, NULL, NULL, -1000, 86400, 32);
	s = set_of(a, b, NULL);
	CHECK_EQ_INT(run(2, s, a), 1);	/* the older one, as named */
	CHECK(nstored == 1 && X509_cmp(stored[0], a) == 0);
	store_reset();
	sk_X509_pop_free(s, X509_free);
	X509_free(a);
	X509_free(b);
}

TEST(huge_set_not_looked_into_and_km_error_harmless)
{
	X509 *x;
	STACK_OF(X509) *s;

	CHECK(setup());
	x = enc_cert(ADDR, NULL, NULL, 0, 0, 41);
	s = set_of(x, NULL, NULL);
	for (int i = 0; i < HARVEST_SET_MAX; i++)
		if (X509_up_ref(ca))
			sk_X509_push(s, ca);
	CHECK_EQ_INT(run(2, s, NULL), 0);
	sk_X509_pop_free(s, X509_free);
	s = set_of(x, NULL, NULL);
	store_answer = KM_TEMPFAIL;
	CHECK_EQ_INT(run(2, s, NULL), 0);
	store_reset();
	sk_X509_pop_free(s, X509_free);
	X509_free(x);
}

TEST(km_answers_remembered_and_km_failure_backs_off)
{
	X509 *x, *y;
	STACK_OF(X509) *s, *t;

	CHECK(setup());
	store_reset();
	x = enc_cert(ADDR, NULL, NULL, 0, 0, 61);
	y = enc_cert(ADDR, NULL, NULL, 0, 0, 62);
	s = set_of(x, NULL, NULL);
	t = set_of(y, NULL, NULL);
	/* refused by the KM side (e.g. imported kept): asked once */
	store_answer = KM_PERMFAIL;
	store_reason = KMERR_REFUSED;
	CHECK_EQ_INT(run(2, s, NULL), 0);
	CHECK_EQ_INT(run(2, s, NULL), 0);
	CHECK_EQ_INT(store_calls, 1);
	/* another certificate is asked about */
	CHECK_EQ_INT(run(2, t, NULL), 0);
	CHECK_EQ_INT(store_calls, 2);
	harvest_forget();
	CHECK_EQ_INT(run(2, s, NULL), 0);
	CHECK_EQ_INT(store_calls, 3);
	/* KM down: nothing is asked during the back-off, whatever the
	 * certificate */
	harvest_forget();
	store_answer = KM_TEMPFAIL;
	store_reason = KMERR_UNREACHABLE;
	CHECK_EQ_INT(run(2, s, NULL), 0);
	CHECK_EQ_INT(run(2, t, NULL), 0);
	CHECK_EQ_INT(store_calls, 4);
	store_reset();
	CHECK_EQ_INT(run(2, t, NULL), 1);
	store_reset();
	sk_X509_pop_free(s, X509_free);
	sk_X509_pop_free(t, X509_free);
	X509_free(x);
	X509_free(y);
}

/* ---- smime_verify_certs: the encKeyPref attribute ---- */

/* signed_with_pref - opaque signed-data by signer, carrying extra, with
 * an encKeyPref naming extra by subject key identifier ([2]) */
static unsigned char *
signed_with_pref(X509 *signer, EVP_PKEY *key, X509 *extra, int *len)
{
	const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(extra);
	STACK_OF(X509) *certs = set_of(extra, NULL, NULL);
	BIO *in = BIO_new_mem_buf("hello\r\n", 7);
	CMS_ContentInfo *cms = NULL;
	CMS_SignerInfo *si;
	unsigned char v[80], *der = NULL;
	ASN1_OBJECT *oid = OBJ_txt2obj(SMIME_OID_ENCKEYPREF, 1);
	int n = skid != NULL ? ASN1_STRING_length(skid) : 0;

	*len = 0;
	if (n <= 0 || n > 64 || oid == NULL)
		goto out;
	v[0] = 0x82;			/* [2] SubjectKeyIdentifier */
	v[1] = (unsigned char)n;
	memcpy(v + 2, ASN1_STRING_get0_data(skid), (size_t)n);
	if ((cms = CMS_sign(signer, key, certs, NULL,
	    CMS_PARTIAL | CMS_BINARY)) == NULL ||
	    (si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms), 0)) ==
	    NULL ||
	    /* a SEQUENCE-typed value is written as it stands, tag included */
	    !CMS_signed_add1_attr_by_OBJ(si, oid, V_ASN1_SEQUENCE, v, n + 2) ||
	    !CMS_final(cms, in, NULL, CMS_BINARY))
		goto out;
	*len = i2d_CMS_ContentInfo(cms, &der);
out:
	ASN1_OBJECT_free(oid);
	CMS_ContentInfo_free(cms);
	BIO_free(in);
	sk_X509_pop_free(certs, X509_free);
	return der;
}

TEST(enckeypref_read_from_signature)
{
	EVP_PKEY *sk = EVP_EC_gen("P-256");
	struct fixture_cert spec = { .cn = "sign", .san = ADDR,
	    .ku = "critical,digitalSignature", .eku = "emailProtection",
	    .keyids = 1 };
	X509 *signer, *a, *b;
	struct smime_verify_result r;
	struct smime_signer_certs sc;
	struct kmerr e;
	X509_STORE *trust = X509_STORE_new();
	unsigned char *der;
	int len = 0;

	CHECK(setup());
	X509_STORE_add_cert(trust, ca);
	signer = fixture_cert(sk, &spec, ca, cakey);
	a = enc_cert(ADDR, NULL, NULL, 0, 0, 51);
	b = enc_cert(ADDR, NULL, NULL, 0, 0, 52);
	der = signed_with_pref(signer, sk, b, &len);
	CHECK(der != NULL && len > 0);
	CHECK_EQ_INT(smime_verify_certs(NULL, (const char *)der, (size_t)len,
	    trust, ADDR, &r, NULL, &sc, &e), KM_OK);
	CHECK(r.sig_ok && r.chain_ok && r.from_match);
	CHECK(sc.has_pref && sc.pref != NULL && X509_cmp(sc.pref, b) == 0);
	CHECK(sc.certs != NULL && sk_X509_num(sc.certs) == 2);
	smime_signer_certs_clear(&sc);
	CHECK(sc.certs == NULL && sc.pref == NULL);
	/* no attribute: no preference */
	OPENSSL_free(der);
	{
		STACK_OF(X509) *certs = set_of(a, NULL, NULL);
		BIO *in = BIO_new_mem_buf("x", 1);
		CMS_ContentInfo *cms = CMS_sign(signer, sk, certs, in,
		    CMS_BINARY);

		der = NULL;
		len = cms != NULL ? i2d_CMS_ContentInfo(cms, &der) : 0;
		CMS_ContentInfo_free(cms);
		BIO_free(in);
		sk_X509_pop_free(certs, X509_free);
	}
	CHECK_EQ_INT(smime_verify_certs(NULL, (const char *)der, (size_t)len,
	    trust, ADDR, &r, NULL, &sc, &e), KM_OK);
	CHECK(!sc.has_pref && sc.pref == NULL);
	smime_signer_certs_clear(&sc);
	OPENSSL_free(der);
	X509_STORE_free(trust);
	X509_free(signer);
	X509_free(a);
	X509_free(b);
	EVP_PKEY_free(sk);
}

static const struct test_case tests[] = {
	T(decide_first_certificate_stored),
	T(decide_same_certificate_is_nothing),
	T(decide_newer_replaces_older_harvested),
	T(decide_imported_kept_unless_configured),
	T(decide_own_key_pair_never_touched),
	T(decide_per_address_limit_holds),
	T(group_harvested_round_trip),
	T(valid_certificate_stored),
	T(bad_certificates_never_stored),
	T(internal_address_never_harvested),
	T(revoked_or_unknown_status_never_stored),
	T(signing_only_certificate_not_a_candidate),
	T(per_message_limit_keeps_the_newest_stored_oldest_first),
	T(enckeypref_chooses),
	T(huge_set_not_looked_into_and_km_error_harmless),
	T(km_answers_remembered_and_km_failure_backs_off),
	T(enckeypref_read_from_signature),
	{ NULL, NULL }
};

/* main - run the cases */
int
main(int argc, char **argv)
{
	log_init("test_harvest", 0, 1, 0);
	return harness_main(argc, argv, tests);
}
