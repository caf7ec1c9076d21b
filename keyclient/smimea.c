/*
 * smimea.c - certificates from DNSSEC-validated SMIMEA records.  See
 * smimea.h.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <unbound.h>

#include "certenc.h"
#include "clock.h"
#include "keystore_certcheck.h"
#include "log.h"
#include "smimea.h"

#define RR_TYPE_SMIMEA	53
#define RR_CLASS_IN	1
#define RCODE_NXDOMAIN	3
#define OWNER_HASH_LEN	28	/* octets of SHA2-256 kept (RFC 8162 3) */
#define NBACKOFF	64	/* domains remembered as not answering */

/* A domain whose servers did not answer: not asked again until "until". */
struct backoff {
	char	 domain[254];
	int64_t	 until;		/* clock_ms(); 0: free slot */
};

struct smimea {
	struct ub_ctx	*ctx;
	int		 timeout_ms;
	char		**domains;
	int		 ndomains;
	pthread_mutex_t	 mu;
	pthread_cond_t	 cv;
	int		 polling;	/* a thread is in poll()/ub_process() */
	int		 backoff_ms;
	struct backoff	 bo[NBACKOFF];	/* under mu */
	X509_STORE	*pkix;		/* for usage 1 (PKIX-EE); NULL: none */
};

/* One outstanding query: the asking thread and the callback meet here. */
struct query {
	struct smimea	*sm;
	int		 id;
	int		 done;
	int		 abandoned;	/* the asker gave up: callback frees */
	int		 err;
	struct ub_result *res;
};

/* host_name - whether s is a host name we may put in a query name */
static int
host_name(const char *s)
{
	size_t n = strlen(s), label = 0;

	if (n == 0 || n > 253 || s[0] == '.' || s[n - 1] == '.')
		return 0;
	for (; *s; s++) {
		if (*s == '.') {
			if (label == 0)
				return 0;
			label = 0;
			continue;
		}
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
			return 0;
		if (++label > 63)
			return 0;
	}
	return 1;
}

/* smimea_owner - the owner name of addr's SMIMEA records */
int
smimea_owner(const char *addr, char *buf, size_t len)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	const char *at = strrchr(addr, '@');
	size_t off = 0;

	if (at == NULL || at == addr || !host_name(at + 1))
		return -1;
	if (len < OWNER_HASH_LEN * 2 + strlen("._smimecert.") +
	    strlen(at + 1) + 1)
		return -1;
	if (EVP_Digest(addr, (size_t)(at - addr), md, &mdlen, EVP_sha256(),
	    NULL) != 1 || mdlen < OWNER_HASH_LEN)
		return -1;
	for (int i = 0; i < OWNER_HASH_LEN; i++)
		off += (size_t)snprintf(buf + off, len - off, "%02x", md[i]);
	snprintf(buf + off, len - off, "._smimecert.%s", at + 1);
	return 0;
}

/* smimea_rdata - the fields of one SMIMEA rdata */
enum km_status
smimea_rdata(const unsigned char *rdata, size_t len, struct smimea_rr *rr,
    struct kmerr *err)
{
	if (rdata == NULL || len < 4)
		return kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
		    "SMIMEA rdata of %zu octets", len);
	rr->usage = rdata[0];
	rr->selector = rdata[1];
	rr->mtype = rdata[2];
	rr->data = rdata + 3;
	rr->len = len - 3;
	return KM_OK;
}

/* check_pkix - usage 1 (PKIX-EE): the certificate must also verify to
 * one of our trust anchors for S/MIME encryption */
static enum km_status
check_pkix(X509 *c, X509_STORE *pkix, struct kmerr *err)
{
	enum km_status st;

	if (pkix == NULL)
		return kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
		    "usage 1 (PKIX-EE): no CA file to verify it with "
		    "(policy.inbound.ca_file)");
	if ((st = certenc_chain(c, NULL, pkix, X509_PURPOSE_SMIME_ENCRYPT,
	    err)) != KM_OK)
		kmerr_prefix(err, "usage 1 (PKIX-EE): ");
	return st;
}

/* smimea_rr_cert - the certificate of one record, if mail may use it */
enum km_status
smimea_rr_cert(const struct smimea_rr *rr, const char *addr,
    X509_STORE *pkix, X509 **cert, struct kmerr *err)
{
	const unsigned char *p = rr->data;
	enum km_status st;
	X509 *c;

	*cert = NULL;
	if (rr->usage != SMIMEA_USAGE_DANE_EE &&
	    rr->usage != SMIMEA_USAGE_PKIX_EE)
		return kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
		    "usage %d (a CA, not the address's certificate)",
		    rr->usage);
	if (rr->selector != 0 || rr->mtype != 0)
		return kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
		    "selector %d matching type %d: not a whole certificate",
		    rr->selector, rr->mtype);
	if (rr->len == 0 || rr->len > 65535 ||
	    (c = d2i_X509(NULL, &p, (long)rr->len)) == NULL) {
		kmerr_ossl(err, KM_PERMFAIL, "certificate");
		err->reason = KMERR_REFUSED;
		return KM_PERMFAIL;
	}
	if (p != rr->data + rr->len) {
		X509_free(c);
		return kmerr_set(err, KM_PERMFAIL, KMERR_REFUSED,
		    "%zu octets after the certificate",
		    (size_t)(rr->data + rr->len - p));
	}
	/* the key store's test: valid now, emailProtection, a key mail
	 * can be encrypted to, naming addr */
	st = keystore_cert_check(c, addr, err);
	if (st == KM_OK && rr->usage == SMIMEA_USAGE_PKIX_EE)
		st = check_pkix(c, pkix, err);
	if (st != KM_OK) {
		X509_free(c);
		/* a certificate's broken extensions can leave OpenSSL's
		 * complaint queued; err says why already */
		ERR_clear_error();
		if (st == KM_PERMFAIL)
			err->reason = KMERR_REFUSED;
		return st;
	}
	*cert = c;
	return KM_OK;
}

/* copy_domains - a copy of the domain list */
static int
copy_domains(struct smimea *sm, char **domains, int n)
{
	if (domains == NULL || n <= 0)
		return 0;
	if ((sm->domains = calloc((size_t)n, sizeof(char *))) == NULL)
		return -1;
	for (int i = 0; i < n; i++) {
		if ((sm->domains[i] = strdup(domains[i])) == NULL)
			return -1;
		sm->ndomains++;
	}
	return 0;
}

/* anchors - how many DS or DNSKEY records the trust anchor file has
 * (libunbound reads it only at the first query: say it is wrong now) */
static int
anchors(const char *path)
{
	char line[4096], *tok, *save;
	int n = 0;
	FILE *fp;

	if ((fp = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), fp) != NULL) {
		if ((tok = strchr(line, ';')) != NULL)
			*tok = '\0';
		for (tok = strtok_r(line, " \t\r\n", &save); tok != NULL;
		    tok = strtok_r(NULL, " \t\r\n", &save))
			if (strcmp(tok, "DS") == 0 ||
			    strcmp(tok, "DNSKEY") == 0) {
				n++;
				break;
			}
	}
	fclose(fp);
	return n;
}

/* setup_ctx - the libunbound context: resolver, stubs, trust anchor */
static enum km_status
setup_ctx(struct smimea *sm, const struct smimea_opts *o, struct kmerr *err)
{
	const char *what = "context";
	int rc = 0;

	if ((sm->ctx = ub_ctx_create()) == NULL)
		return kmerr_set(err, KM_NOMEM, KMERR_NONE,
		    "smimea: cannot create the resolver context");
	/* threads, not a forked process, for the asynchronous queries */
	if ((rc = ub_ctx_async(sm->ctx, 1)) != 0)
		goto fail;
	if ((o->resolver && *o->resolver) || (o->stub && *o->stub)) {
		what = "do-not-query-localhost";
		if ((rc = ub_ctx_set_option(sm->ctx, "do-not-query-localhost:",
		    "no")) != 0)
			goto fail;
	}
	if (o->resolver && *o->resolver) {
		what = o->resolver;
		if ((rc = ub_ctx_set_fwd(sm->ctx, o->resolver)) != 0)
			goto fail;
	}
	for (int i = 0; o->stub && *o->stub && i < sm->ndomains; i++) {
		what = o->stub;
		if ((rc = ub_ctx_set_stub(sm->ctx, sm->domains[i], o->stub,
		    0)) != 0)
			goto fail;
	}
	what = o->trust_anchor_file;
	if ((rc = anchors(o->trust_anchor_file)) <= 0)
		return kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
		    "smimea: trust anchor file %s: %s", o->trust_anchor_file,
		    rc < 0 ? strerror(errno) : "no DS or DNSKEY record");
	if ((rc = ub_ctx_add_ta_file(sm->ctx, o->trust_anchor_file)) != 0)
		goto fail;
	return KM_OK;
fail:
	return kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT, "smimea: %s: %s",
	    what, ub_strerror(rc));
}

/* smimea_new - a resolver for SMIMEA lookups */
struct smimea *
smimea_new(const struct smimea_opts *o, struct kmerr *err)
{
	pthread_condattr_t ca;
	struct smimea *sm;

	if ((sm = calloc(1, sizeof(*sm))) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&sm->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sm->cv, &ca);
	pthread_condattr_destroy(&ca);
	sm->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 2000;
	sm->backoff_ms = o->backoff_ms > 0 ? o->backoff_ms : 0;
	if (copy_domains(sm, o->domains, o->ndomains) != 0) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		return smimea_free(sm);
	}
	if (o->stub && *o->stub && sm->ndomains == 0) {
		kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
		    "smimea: a stub needs the domains it serves");
		return smimea_free(sm);
	}
	if (o->trust_anchor_file == NULL || *o->trust_anchor_file == '\0') {
		kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
		    "smimea: no trust anchor file: no answer could validate");
		return smimea_free(sm);
	}
	if (o->pkix_ca_file && *o->pkix_ca_file &&
	    ((sm->pkix = X509_STORE_new()) == NULL ||
	    X509_STORE_load_file(sm->pkix, o->pkix_ca_file) != 1)) {
		kmerr_ossl(err, KM_PERMFAIL, "smimea: CA file");
		kmerr_prefix(err, "%s: ", o->pkix_ca_file);
		return smimea_free(sm);
	}
	if (setup_ctx(sm, o, err) != KM_OK)
		return smimea_free(sm);
	return sm;
}

/* smimea_free - free the handle (queries still out are killed) */
struct smimea *
smimea_free(struct smimea *sm)
{
	if (sm == NULL)
		return NULL;
	if (sm->ctx)
		ub_ctx_delete(sm->ctx);
	X509_STORE_free(sm->pkix);
	for (int i = 0; i < sm->ndomains; i++)
		free(sm->domains[i]);
	free(sm->domains);
	pthread_cond_destroy(&sm->cv);
	pthread_mutex_destroy(&sm->mu);
	free(sm);
	return NULL;
}

/* smimea_wants - whether addr's domain is one to look up */
int
smimea_wants(const struct smimea *sm, const char *addr)
{
	const char *at = strrchr(addr, '@');

	if (sm == NULL || at == NULL)
		return 0;
	if (sm->ndomains == 0)
		return 1;
	for (int i = 0; i < sm->ndomains; i++)
		if (strcasecmp(sm->domains[i], at + 1) == 0)
			return 1;
	return 0;
}

/* answered - libunbound's callback: hand the answer to the asker */
static void
answered(void *arg, int err, struct ub_result *res)
{
	struct query *q = arg;
	struct smimea *sm = q->sm;

	pthread_mutex_lock(&sm->mu);
	if (q->abandoned) {
		pthread_mutex_unlock(&sm->mu);
		if (res)
			ub_resolve_free(res);
		free(q);
		return;
	}
	q->err = err;
	q->res = res;
	q->done = 1;
	pthread_cond_broadcast(&sm->cv);
	pthread_mutex_unlock(&sm->mu);
}

/* timed_wait - wait on the condition until deadline (monotonic ms) */
static void
timed_wait(struct smimea *sm, int64_t rem)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += rem / 1000;
	ts.tv_nsec += (rem % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&sm->cv, &sm->mu, &ts);
}

/* wait_answer - wait for q until deadline; one waiting thread at a time
 * polls the context's descriptor and runs the callbacks.  With sm->mu
 * held on entry and on return. */
static void
wait_answer(struct smimea *sm, struct query *q, int64_t deadline)
{
	struct pollfd pfd;
	int64_t rem;

	while (!q->done && (rem = deadline - clock_ms()) > 0) {
		if (sm->polling) {
			timed_wait(sm, rem);
			continue;
		}
		sm->polling = 1;
		pthread_mutex_unlock(&sm->mu);
		pfd.fd = ub_fd(sm->ctx);
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (poll(&pfd, 1, (int)rem) > 0)
			ub_process(sm->ctx);
		pthread_mutex_lock(&sm->mu);
		sm->polling = 0;
		pthread_cond_broadcast(&sm->cv);
	}
}

/* resolve - the SMIMEA answer for owner within the timeout */
static enum km_status
resolve(struct smimea *sm, const char *owner, struct ub_result **res,
    struct kmerr *err)
{
	struct query *q;
	int rc, id;

	*res = NULL;
	if ((q = calloc(1, sizeof(*q))) == NULL)
		return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	q->sm = sm;
	if ((rc = ub_resolve_async(sm->ctx, owner, RR_TYPE_SMIMEA,
	    RR_CLASS_IN, q, answered, &q->id)) != 0) {
		free(q);
		return kmerr_set(err, KM_TEMPFAIL, KMERR_UNREACHABLE,
		    "resolver: %s", ub_strerror(rc));
	}
	pthread_mutex_lock(&sm->mu);
	wait_answer(sm, q, clock_ms() + sm->timeout_ms);
	if (!q->done) {
		q->abandoned = 1;
		id = q->id;
		pthread_mutex_unlock(&sm->mu);
		/* cancelled: no callback will come; else it frees q */
		if (ub_cancel(sm->ctx, id) == 0)
			free(q);
		return kmerr_set(err, KM_TEMPFAIL, KMERR_TIMEOUT,
		    "no answer in %d ms", sm->timeout_ms);
	}
	pthread_mutex_unlock(&sm->mu);
	rc = q->err;
	*res = q->res;
	free(q);
	if (rc != 0)
		return kmerr_set(err, KM_TEMPFAIL, KMERR_UNREACHABLE,
		    "resolver: %s", ub_strerror(rc));
	return KM_OK;
}

/* pick - the first usable certificate of a validated answer */
static enum km_status
pick(struct smimea *sm, const struct ub_result *res, const char *addr,
    X509 **cert, struct kmerr *err)
{
	struct smimea_rr rr;
	struct kmerr why;
	enum km_status st;
	int n = 0;

	for (int i = 0; res->havedata && res->data[i] != NULL; i++, n++) {
		kmerr_clear(&why);
		st = smimea_rdata((const unsigned char *)res->data[i],
		    (size_t)res->len[i], &rr, &why);
		if (st == KM_OK)
			st = smimea_rr_cert(&rr, addr, sm->pkix, cert, &why);
		if (st == KM_OK)
			return KM_OK;
		if (st == KM_NOMEM)
			return kmerr_set(err, st, KMERR_NONE, "%s", why.msg);
		log_debug(1, "smimea: %s: record %d skipped: %s", addr, i + 1,
		    why.msg);
	}
	return kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
	    "SMIMEA: %s for %s", n ? "no usable record" : "no record", addr);
}

/* backoff_left - ms domain stays in its back-off period (0: none) */
static int64_t
backoff_left(struct smimea *sm, const char *domain)
{
	int64_t left = 0, now = clock_ms();

	pthread_mutex_lock(&sm->mu);
	for (int i = 0; i < NBACKOFF; i++)
		if (sm->bo[i].until > now &&
		    strcasecmp(sm->bo[i].domain, domain) == 0)
			left = sm->bo[i].until - now;
	pthread_mutex_unlock(&sm->mu);
	return left;
}

/* backoff_set - start domain's back-off period (on) or end it (!on); a
 * new entry takes a free or expired slot, else the one ending first */
static void
backoff_set(struct smimea *sm, const char *domain, int on)
{
	int64_t now = clock_ms();
	int slot = -1;

	if (sm->backoff_ms == 0)
		return;
	pthread_mutex_lock(&sm->mu);
	for (int i = 0; i < NBACKOFF; i++) {
		if (sm->bo[i].until != 0 &&
		    strcasecmp(sm->bo[i].domain, domain) == 0) {
			slot = i;
			break;
		}
		if (slot < 0 || sm->bo[i].until < sm->bo[slot].until)
			slot = i;
	}
	if (on) {
		snprintf(sm->bo[slot].domain, sizeof(sm->bo[slot].domain),
		    "%s", domain);
		sm->bo[slot].until = now + sm->backoff_ms;
	} else if (sm->bo[slot].until != 0 &&
	    strcasecmp(sm->bo[slot].domain, domain) == 0)
		sm->bo[slot].until = 0;
	pthread_mutex_unlock(&sm->mu);
}

/* answer - what a resolved answer means for addr */
static enum km_status
answer(struct smimea *sm, const struct ub_result *res, const char *addr,
    const char *owner, X509 **cert, struct kmerr *err)
{
	enum km_status st;

	if (res->bogus) {
		log_warnx("smimea: %s: answer for %s does not validate, not "
		    "used: %s", addr, owner,
		    res->why_bogus ? res->why_bogus : "bogus");
		return kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
		    "SMIMEA: %s: answer does not validate", addr);
	}
	if (res->rcode != 0 && res->rcode != RCODE_NXDOMAIN)
		return kmerr_set(err, KM_TEMPFAIL, KMERR_UNREACHABLE,
		    "SMIMEA %s: rcode %d", owner, res->rcode);
	if (!res->secure) {
		log_debug(1, "smimea: %s: answer for %s is not DNSSEC "
		    "signed, not used", addr, owner);
		return kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
		    "SMIMEA: %s: insecure answer", addr);
	}
	if ((st = pick(sm, res, addr, cert, err)) == KM_OK)
		log_info("smimea: %s: certificate from SMIMEA %s", addr,
		    owner);
	return st;
}

/* smimea_lookup - addr's certificate from its validated SMIMEA records */
enum km_status
smimea_lookup(struct smimea *sm, const char *addr, X509 **cert,
    struct kmerr *err)
{
	char owner[SMIMEA_OWNER_MAX];
	struct ub_result *res;
	enum km_status st;
	const char *domain;
	int64_t left;

	*cert = NULL;
	if (smimea_owner(addr, owner, sizeof(owner)) != 0) {
		log_debug(1, "smimea: %s: not an address to look up", addr);
		return kmerr_set(err, KM_PERMFAIL, KMERR_NOTFOUND,
		    "SMIMEA: %s is not an address to look up", addr);
	}
	domain = strrchr(addr, '@') + 1;
	if ((left = backoff_left(sm, domain)) > 0)
		return kmerr_set(err, KM_TEMPFAIL, KMERR_UNREACHABLE,
		    "SMIMEA: %s did not answer, not asked for %lld ms more",
		    domain, (long long)left);
	log_debug(1, "smimea: %s: looking up %s", addr, owner);
	if ((st = resolve(sm, owner, &res, err)) == KM_OK) {
		st = answer(sm, res, addr, owner, cert, err);
		ub_resolve_free(res);
	} else
		kmerr_prefix(err, "SMIMEA %s: ", owner);
	if (st != KM_NOMEM)
		backoff_set(sm, domain, st == KM_TEMPFAIL);
	return st;
}
