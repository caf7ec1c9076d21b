/*
 * test_smimea.c - keyclient/smimea.c without DNS: the owner name of an
 * address (RFC 8162 section 3, checked against the RFC 7929 example that
 * uses the same hashing) and which SMIMEA records give a certificate mail
 * may be encrypted to (usage 3, or usage 1 verified to a CA we trust;
 * selector 0, matching type 0, the whole
 * DER and nothing after it, valid now, for the address, a key that can
 * receive mail); everything else is refused with a reason.  The DNS part
 * (validation) is tested against nsd by tests/e2e/t-smimea.py; here, a
 * stub that never answers: four threads sharing one handle each give up
 * at their deadline, and the domain is then left alone (back-off).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "clock.h"
#include "fixture.h"
#include "harness.h"
#include "smimea.h"

/* rdata - an SMIMEA rdata: usage selector mtype and the DER of c */
static unsigned char *
rdata(int usage, int sel, int mtype, X509 *c, size_t extra, size_t *len)
{
	int n = i2d_X509(c, NULL);
	unsigned char *buf, *p;

	if (n <= 0 || (buf = calloc(1, 3 + (size_t)n + extra)) == NULL)
		return NULL;
	buf[0] = (unsigned char)usage;
	buf[1] = (unsigned char)sel;
	buf[2] = (unsigned char)mtype;
	p = buf + 3;
	i2d_X509(c, &p);
	*len = 3 + (size_t)n + extra;
	return buf;
}

/* test_ca - a CA (basicConstraints CA:TRUE, as PKIX wants), made once */
static int
test_ca(X509 **cert, EVP_PKEY **key)
{
	static const struct fixture_cert spec = { .cn = "smimea test CA",
	    .bc = "critical,CA:TRUE", .ku = "critical,keyCertSign" };
	static X509 *ca;
	static EVP_PKEY *cakey;

	if (ca == NULL && (cakey = EVP_EC_gen("P-256")) != NULL)
		ca = fixture_cert(cakey, &spec, NULL, NULL);
	*cert = ca;
	*key = cakey;
	return ca != NULL;
}

/* user_cert - an RSA certificate for addr valid from nb to na */
static X509 *
user_cert(const char *addr, long nb, long na)
{
	struct fixture_cert spec = { 0 };
	X509 *ca, *c;
	EVP_PKEY *cak, *k;

	if (!test_ca(&ca, &cak) || (k = EVP_RSA_gen(2048)) == NULL)
		return NULL;
	spec.cn = addr;
	spec.san = addr;
	spec.ku = "critical,digitalSignature,keyEncipherment";
	spec.notbefore = nb;
	spec.notafter = na;
	c = fixture_cert(k, &spec, ca, cak);
	EVP_PKEY_free(k);
	return c;
}

/* verdict_with - what smimea_rr_cert says of one record, given a CA store */
static enum km_status
verdict_with(const unsigned char *rd, size_t len, const char *addr,
    X509_STORE *pkix, struct kmerr *err)
{
	struct smimea_rr rr;
	enum km_status st;
	X509 *got = NULL;

	kmerr_clear(err);
	if ((st = smimea_rdata(rd, len, &rr, err)) != KM_OK)
		return st;
	st = smimea_rr_cert(&rr, addr, pkix, &got, err);
	if (st == KM_OK && got == NULL)
		return KM_PROTO;	/* OK without a certificate */
	X509_free(got);
	return st;
}

/* verdict - what smimea_rr_cert says of one record, no CA store */
static enum km_status
verdict(const unsigned char *rd, size_t len, const char *addr,
    struct kmerr *err)
{
	return verdict_with(rd, len, addr, NULL, err);
}

TEST(owner_name_rfc_example)
{
	char buf[SMIMEA_OWNER_MAX];

	/* RFC 7929 section 3's example, same hashing as RFC 8162 3 */
	CHECK(smimea_owner("hugh@example.com", buf, sizeof(buf)) == 0);
	CHECK_EQ_STR(buf, "c93f1e400f26708f98cb19d936620da35eec8f72e57f9eec01"
	    "c1afd6._smimecert.example.com");
	/* the last '@' separates the domain; the local part is hashed */
	CHECK(smimea_owner("\"a@b\"@example.com", buf, sizeof(buf)) == 0);
	CHECK(strstr(buf, "._smimecert.example.com") == buf + 56);
}

TEST(owner_name_refuses_malformed)
{
	char buf[SMIMEA_OWNER_MAX];
	char big[400];

	CHECK(smimea_owner("nobody", buf, sizeof(buf)) == -1);
	CHECK(smimea_owner("@example.com", buf, sizeof(buf)) == -1);
	CHECK(smimea_owner("a@", buf, sizeof(buf)) == -1);
	CHECK(smimea_owner("a@exa mple.com", buf, sizeof(buf)) == -1);
	CHECK(smimea_owner("a@example..com", buf, sizeof(buf)) == -1);
	CHECK(smimea_owner("a@.example.com", buf, sizeof(buf)) == -1);
	CHECK(smimea_owner("a@example.com.", buf, sizeof(buf)) == -1);
	CHECK(smimea_owner("a@exa\\046mple.com", buf, sizeof(buf)) == -1);
	CHECK(smimea_owner("a@example.com", buf, 40) == -1);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[0] = 'x';
	big[1] = '@';
	CHECK(smimea_owner(big, buf, sizeof(buf)) == -1);	/* label > 63 */
}

TEST(rdata_too_short_refused)
{
	struct smimea_rr rr;
	struct kmerr err;
	const unsigned char three[] = { 3, 0, 0 };

	kmerr_clear(&err);
	CHECK(smimea_rdata(three, sizeof(three), &rr, &err) == KM_PERMFAIL);
	CHECK(kmerr_is(&err, KMERR_BADINPUT));
	CHECK(smimea_rdata(NULL, 0, &rr, &err) == KM_PERMFAIL);
}

TEST(dane_ee_full_cert_used)
{
	X509 *c = user_cert("carol@smimea.example", 0, 0);
	struct kmerr err;
	unsigned char *rd;
	size_t len;

	CHECK(c != NULL);
	CHECK((rd = rdata(3, 0, 0, c, 0, &len)) != NULL);
	CHECK(verdict(rd, len, "carol@smimea.example", &err) == KM_OK);
	CHECK(verdict(rd, len, "Carol@SMIMEA.example", &err) == KM_OK);
	free(rd);
	X509_free(c);
}

TEST(other_records_skipped_with_reason)
{
	X509 *c = user_cert("carol@smimea.example", 0, 0);
	struct kmerr err;
	unsigned char *rd;
	size_t len;

	CHECK(c != NULL);
	for (int u = 0; u <= 2; u++) {
		CHECK((rd = rdata(u, 0, 0, c, 0, &len)) != NULL);
		CHECK(verdict(rd, len, "carol@smimea.example", &err) ==
		    KM_PERMFAIL);
		CHECK(kmerr_is(&err, KMERR_REFUSED));
		CHECK(strstr(err.msg, "usage") != NULL);
		free(rd);
	}
	CHECK((rd = rdata(3, 1, 0, c, 0, &len)) != NULL);
	CHECK(verdict(rd, len, "carol@smimea.example", &err) == KM_PERMFAIL);
	CHECK(strstr(err.msg, "selector 1") != NULL);
	free(rd);
	CHECK((rd = rdata(3, 0, 1, c, 0, &len)) != NULL);
	CHECK(verdict(rd, len, "carol@smimea.example", &err) == KM_PERMFAIL);
	CHECK(strstr(err.msg, "matching type 1") != NULL);
	free(rd);
	X509_free(c);
}

TEST(garbage_and_trailing_bytes_refused)
{
	X509 *c = user_cert("carol@smimea.example", 0, 0);
	const unsigned char junk[] = { 3, 0, 0, 0x30, 0x82, 0x7f, 0xff, 1 };
	struct kmerr err;
	unsigned char *rd;
	size_t len;

	CHECK(c != NULL);
	CHECK(verdict(junk, sizeof(junk), "carol@smimea.example", &err) ==
	    KM_PERMFAIL);
	CHECK(kmerr_is(&err, KMERR_REFUSED));
	CHECK((rd = rdata(3, 0, 0, c, 5, &len)) != NULL);
	CHECK(verdict(rd, len, "carol@smimea.example", &err) == KM_PERMFAIL);
	CHECK(strstr(err.msg, "after the certificate") != NULL);
	/* cut short: not a certificate */
	CHECK(verdict(rd, len - 40, "carol@smimea.example", &err) ==
	    KM_PERMFAIL);
	free(rd);
	X509_free(c);
}

TEST(wrong_address_expired_refused)
{
	X509 *c = user_cert("carol@smimea.example", 0, 0);
	X509 *old = user_cert("carol@smimea.example", -86400 * 10, -86400);
	X509 *later = user_cert("carol@smimea.example", 86400, 86400 * 10);
	struct kmerr err;
	unsigned char *rd;
	size_t len;

	CHECK(c != NULL && old != NULL && later != NULL);
	CHECK((rd = rdata(3, 0, 0, c, 0, &len)) != NULL);
	CHECK(verdict(rd, len, "mallory@smimea.example", &err) ==
	    KM_PERMFAIL);
	CHECK(strstr(err.msg, "does not name mallory@smimea.example") != NULL);
	free(rd);
	CHECK((rd = rdata(3, 0, 0, old, 0, &len)) != NULL);
	CHECK(verdict(rd, len, "carol@smimea.example", &err) == KM_PERMFAIL);
	CHECK(strstr(err.msg, "expired") != NULL);
	free(rd);
	CHECK((rd = rdata(3, 0, 0, later, 0, &len)) != NULL);
	CHECK(verdict(rd, len, "carol@smimea.example", &err) == KM_PERMFAIL);
	CHECK(strstr(err.msg, "not yet valid") != NULL);
	free(rd);
	X509_free(c);
	X509_free(old);
	X509_free(later);
}

TEST(pkix_ee_needs_a_ca_that_verifies_it)
{
	X509 *c = user_cert("carol@smimea.example", 0, 0), *ca, *other;
	struct fixture_cert spec = { 0 };
	X509_STORE *good = X509_STORE_new(), *bad = X509_STORE_new();
	EVP_PKEY *cak, *ok;
	struct kmerr err;
	enum km_status st;
	unsigned char *rd;
	size_t len;

	CHECK(c != NULL && good != NULL && bad != NULL);
	CHECK(test_ca(&ca, &cak));
	CHECK((ok = EVP_EC_gen("P-256")) != NULL);
	spec.cn = "another CA";
	spec.bc = "critical,CA:TRUE";
	spec.ku = "critical,keyCertSign";
	CHECK((other = fixture_cert(ok, &spec, NULL, NULL)) != NULL);
	X509_STORE_add_cert(good, ca);
	X509_STORE_add_cert(bad, other);
	CHECK((rd = rdata(1, 0, 0, c, 0, &len)) != NULL);
	st = verdict_with(rd, len, "carol@smimea.example", good, &err);
	if (st != KM_OK)
		printf("    %s\n", err.msg);
	CHECK(st == KM_OK);
	CHECK(verdict_with(rd, len, "carol@smimea.example", bad, &err) ==
	    KM_PERMFAIL);
	CHECK(strstr(err.msg, "usage 1 (PKIX-EE): ") != NULL);
	CHECK(verdict_with(rd, len, "carol@smimea.example", NULL, &err) ==
	    KM_PERMFAIL);
	CHECK(strstr(err.msg, "no CA file") != NULL);
	/* the CA itself as usage 1: not a certificate mail goes to */
	free(rd);
	CHECK((rd = rdata(1, 0, 0, ca, 0, &len)) != NULL);
	CHECK(verdict_with(rd, len, "carol@smimea.example", good, &err) ==
	    KM_PERMFAIL);
	free(rd);
	X509_free(c);
	X509_free(other);
	EVP_PKEY_free(ok);
	X509_STORE_free(good);
	X509_STORE_free(bad);
}

/* ta_file - a temporary file holding text; its path in buf */
static int
ta_file(char *buf, const char *text)
{
	int fd;

	strcpy(buf, "/tmp/test_smimea.XXXXXX");
	if ((fd = mkstemp(buf)) < 0)
		return -1;
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

TEST(new_refuses_bad_settings)
{
	struct smimea_opts o = { 0 };
	char good[64], empty[64], dom[] = "smimea.example";
	char *doms[] = { dom };
	struct smimea *sm;
	struct kmerr err;

	CHECK(ta_file(good, "; the zone's KSK\nsmimea.example.\tIN\tDS\t"
	    "50862 13 2 8f9a87ceceb34199869f4dc13e5c364a9dab43ef807c124d67"
	    "39e5b8a82d8838\n") == 0);
	CHECK(ta_file(empty, "; DS would be here\n") == 0);
	kmerr_clear(&err);
	CHECK(smimea_new(&o, &err) == NULL);		/* no trust anchor */
	CHECK(strstr(err.msg, "no trust anchor") != NULL);
	o.trust_anchor_file = empty;
	CHECK(smimea_new(&o, &err) == NULL);
	CHECK(strstr(err.msg, "no DS or DNSKEY record") != NULL);
	o.trust_anchor_file = "/nonexistent/ta";
	CHECK(smimea_new(&o, &err) == NULL);
	o.trust_anchor_file = good;
	o.stub = "127.0.0.1@5353";
	CHECK(smimea_new(&o, &err) == NULL);		/* stub, no domains */
	CHECK(strstr(err.msg, "needs the domains") != NULL);
	o.domains = doms;
	o.ndomains = 1;
	o.pkix_ca_file = empty;				/* not certificates */
	CHECK(smimea_new(&o, &err) == NULL);
	o.pkix_ca_file = NULL;
	o.stub = "not an address";
	CHECK(smimea_new(&o, &err) == NULL);
	o.stub = "127.0.0.1@5353";
	CHECK((sm = smimea_new(&o, &err)) != NULL);
	CHECK(smimea_wants(sm, "carol@SMIMEA.example"));
	CHECK(!smimea_wants(sm, "carol@other.example"));
	CHECK(!smimea_wants(sm, "carol"));
	smimea_free(sm);
	unlink(good);
	unlink(empty);
}

/* silent_port - a UDP socket on 127.0.0.1 that never answers; its port */
static int
silent_port(int *fd)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((*fd = socket(AF_INET, SOCK_DGRAM, 0)) < 0 ||
	    bind(*fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
	    getsockname(*fd, (struct sockaddr *)&sin, &sl) != 0)
		return -1;
	return ntohs(sin.sin_port);
}

struct waiter {
	struct smimea	*sm;
	enum km_status	 st;
	int64_t		 ms;
};

/* lookup_thread - one lookup of carol's records, timed */
static void *
lookup_thread(void *p)
{
	struct waiter *w = p;
	struct kmerr err;
	X509 *c = NULL;
	int64_t t0 = clock_ms();

	kmerr_clear(&err);
	w->st = smimea_lookup(w->sm, "carol@smimea.example", &c, &err);
	w->ms = clock_ms() - t0;
	X509_free(c);
	return NULL;
}

TEST(silent_server_bounded_then_backoff)
{
	struct smimea_opts o = { 0 };
	char ta[64], stub[32], dom[] = "smimea.example";
	char *doms[] = { dom };
	struct waiter w[4];
	pthread_t th[4];
	struct smimea *sm;
	struct kmerr err;
	X509 *c = NULL;
	int fd, port;
	int64_t t0;

	CHECK((port = silent_port(&fd)) > 0);
	snprintf(stub, sizeof(stub), "127.0.0.1@%d", port);
	CHECK(ta_file(ta, "smimea.example. IN DS 50862 13 2 8f9a87ceceb341"
	    "99869f4dc13e5c364a9dab43ef807c124d6739e5b8a82d8838\n") == 0);
	o.trust_anchor_file = ta;
	o.stub = stub;
	o.domains = doms;
	o.ndomains = 1;
	o.timeout_ms = 300;
	o.backoff_ms = 60000;
	kmerr_clear(&err);
	CHECK((sm = smimea_new(&o, &err)) != NULL);
	/* four threads wait at once: each gives up at its own deadline */
	for (int i = 0; i < 4; i++) {
		w[i] = (struct waiter){ sm, KM_OK, 0 };
		CHECK(pthread_create(&th[i], NULL, lookup_thread, &w[i]) == 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 4; i++) {
		CHECK(w[i].st == KM_TEMPFAIL);
		CHECK(w[i].ms < 300 + 1000);
	}
	/* in its back-off period the domain is not asked */
	t0 = clock_ms();
	CHECK(smimea_lookup(sm, "dave@smimea.example", &c, &err) ==
	    KM_TEMPFAIL);
	CHECK(clock_ms() - t0 < 100);
	CHECK(strstr(err.msg, "did not answer") != NULL);
	CHECK(c == NULL);
	smimea_free(sm);
	close(fd);
	unlink(ta);
}

static const struct test_case tests[] = {
	T(owner_name_rfc_example),
	T(owner_name_refuses_malformed),
	T(rdata_too_short_refused),
	T(dane_ee_full_cert_used),
	T(other_records_skipped_with_reason),
	T(garbage_and_trailing_bytes_refused),
	T(wrong_address_expired_refused),
	T(pkix_ee_needs_a_ca_that_verifies_it),
	T(new_refuses_bad_settings),
	T(silent_server_bounded_then_backoff),
	{ NULL, NULL }
};

/* main - run the cases */
int
main(int argc, char **argv)
{
	return harness_main(argc, argv, tests);
}
