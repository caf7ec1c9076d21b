/*
 * autoenroll.c - enroll an internal address the first time kmilter sees
 * it.  See autoenroll.h.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "autoenroll.h"
#include "conf.h"
#include "domain.h"
#include "keystore.h"
#include "log.h"
#include "policy.h"
#include "runtime.h"
#include "session.h"
#include "verdict.h"

#define AE_ADDR_MAX	320
#define AE_PATH_MAX	1024
#define AE_DENIALS	256	/* addresses whose "no" is remembered */

/* One address being enrolled. */
struct ae_slot {
	char		 addr[AE_ADDR_MAX + 1];
	int		 used;
	int		 running;
	int		 waiters;
	int		 signer;	/* make the signing key too */
	enum km_status	 result;
};

/* What the background thread needs, copied. */
struct ae_job {
	int		 slot;
	int		 need_key;
	int		 mode;
	int		 deny_ttl;	/* policy.auto_enroll_deny_ttl */
	char		 addr[AE_ADDR_MAX + 1];
	char		 qid[64];
	char		 ca_cert[AE_PATH_MAX];
	char		 ca_key[AE_PATH_MAX];
};

/* An address the hook said no for, until when (CLOCK_MONOTONIC s). */
struct ae_denial {
	char		 addr[AE_ADDR_MAX + 1];
	time_t		 until;
};

static struct ae_slot slots[AUTOENROLL_SLOTS];
static struct ae_denial denials[AE_DENIALS];
static int nrunning;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

/* The organization CA, read at the first enrollment. */
static pthread_mutex_t ca_mu = PTHREAD_MUTEX_INITIALIZER;
static X509 *ca_cert;
static EVP_PKEY *ca_key;
static char ca_paths[2][AE_PATH_MAX];

/* autoenroll_decide - see autoenroll.h */
enum autoenroll_want
autoenroll_decide(int mode, int internal, enum km_status lookup,
    enum kmerr_reason reason)
{
	if (mode != AUTOENROLL_ON && mode != AUTOENROLL_HOOK)
		return AUTOENROLL_NO;
	if (!internal || lookup != KM_PERMFAIL || reason != KMERR_NOTFOUND)
		return AUTOENROLL_NO;
	return mode == AUTOENROLL_HOOK ? AUTOENROLL_ASK : AUTOENROLL_YES;
}

/* ca_load - new references to the CA certificate and key; -1 (err) if not */
static int
ca_load(const char *cpath, const char *kpath, X509 **c, EVP_PKEY **k,
    char *err, size_t errlen)
{
	X509 *nc = NULL;
	EVP_PKEY *nk = NULL;
	FILE *f;
	int rc = -1;

	pthread_mutex_lock(&ca_mu);
	if (ca_cert != NULL && strcmp(ca_paths[0], cpath) == 0 &&
	    strcmp(ca_paths[1], kpath) == 0)
		goto give;
	if (*cpath == '\0' || *kpath == '\0') {
		snprintf(err, errlen, "km.org_ca_cert and km.org_ca_key must "
		    "be set");
		goto out;
	}
	if ((f = fopen(cpath, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", cpath, strerror(errno));
		goto out;
	}
	nc = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if ((f = fopen(kpath, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s (kmilter must be able to read "
		    "the CA key for auto_enroll)", kpath, strerror(errno));
		X509_free(nc);
		goto out;
	}
	nk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	ERR_clear_error();
	if (nc == NULL || nk == NULL || X509_check_private_key(nc, nk) != 1) {
		ERR_clear_error();
		snprintf(err, errlen, "%s, %s: not a PEM CA certificate and "
		    "its key", cpath, kpath);
		X509_free(nc);
		EVP_PKEY_free(nk);
		goto out;
	}
	X509_free(ca_cert);
	EVP_PKEY_free(ca_key);
	ca_cert = nc;
	ca_key = nk;
	snprintf(ca_paths[0], sizeof(ca_paths[0]), "%s", cpath);
	snprintf(ca_paths[1], sizeof(ca_paths[1]), "%s", kpath);
give:
	X509_up_ref(ca_cert);
	EVP_PKEY_up_ref(ca_key);
	*c = ca_cert;
	*k = ca_key;
	rc = 0;
out:
	pthread_mutex_unlock(&ca_mu);
	return rc;
}

/* mono_now - seconds of CLOCK_MONOTONIC */
static time_t
mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* deny_remember - the hook's no for addr holds ttl seconds: the entry of
 * addr, else a free or expired one, else the one that ends first */
static void
deny_remember(const char *addr, int ttl)
{
	time_t now = mono_now();
	int i, pick = 0;

	if (ttl <= 0)
		return;
	pthread_mutex_lock(&mu);
	for (i = 0; i < AE_DENIALS; i++) {
		if (strcasecmp(denials[i].addr, addr) == 0) {
			pick = i;
			break;
		}
		if (denials[i].until < denials[pick].until)
			pick = i;
	}
	snprintf(denials[pick].addr, sizeof(denials[pick].addr), "%s", addr);
	denials[pick].until = now + ttl;
	pthread_mutex_unlock(&mu);
}

/* denied_recently - the hook said no for addr less than its ttl ago */
static int
denied_recently(const char *addr)
{
	time_t now = mono_now();
	int i, hit = 0;

	pthread_mutex_lock(&mu);
	for (i = 0; i < AE_DENIALS && !hit; i++)
		hit = denials[i].until > now &&
		    strcasecmp(denials[i].addr, addr) == 0;
	pthread_mutex_unlock(&mu);
	return hit;
}

/* enroll_key - the encryption key of j->addr; KM_OK when it has one */
static enum km_status
enroll_key(struct keystore *ks, const struct ae_job *j, X509 *c, EVP_PKEY *k)
{
	struct kmerr err = { 0 }, e2;
	enum km_status st;
	X509 *cert = NULL;
	char fp[96];
	int gen = 0;

	if (j->mode == AUTOENROLL_HOOK && (st = keystore_enroll_allowed(ks,
	    j->addr, j->qid, &err)) != KM_OK) {
		deny_remember(j->addr, j->deny_ttl);
		log_info("%s autoenroll: <%s>: not enrolled: %s (the hook is "
		    "asked again in %d s)", j->qid, j->addr, err.msg,
		    j->deny_ttl);
		return st;
	}
	st = keystore_enroll_key(ks, j->addr, c, k, &gen, fp, sizeof(fp),
	    &err);
	if (st == KM_OK) {
		log_info("%s autoenroll: <%s>: enrolled: generation %d, "
		    "certificate sha256 %s", j->qid, j->addr, gen, fp);
		return KM_OK;
	}
	/* a rival (thread, gateway, kmctl) may have enrolled it meanwhile */
	keystore_invalidate(ks, j->addr);
	if (keystore_get_cert(ks, j->addr, &cert, &e2) == KM_OK) {
		X509_free(cert);
		log_info("%s autoenroll: <%s>: enrolled by another enrollment "
		    "meanwhile (%s)", j->qid, j->addr, err.msg);
		return KM_OK;
	}
	log_warnx("%s autoenroll: <%s>: enrollment failed: %s", j->qid,
	    j->addr, err.msg);
	return st;
}

/* enroll_signer - this gateway's signing key for j->addr */
static enum km_status
enroll_signer(struct keystore *ks, const struct ae_job *j, X509 *c,
    EVP_PKEY *k)
{
	struct kmerr err = { 0 };
	enum km_status st;
	int made = 0;

	if ((st = keystore_enroll_signer(ks, j->addr, c, k, &made, &err)) !=
	    KM_OK)
		log_warnx("%s autoenroll: <%s>: signing key not made: %s",
		    j->qid, j->addr, err.msg);
	else if (made)
		log_info("%s autoenroll: <%s>: signing key made on this "
		    "gateway", j->qid, j->addr);
	return st;
}

/* slot_finish - record the result; the slot goes when nobody waits */
static void
slot_finish(int i, enum km_status st)
{
	pthread_mutex_lock(&mu);
	slots[i].running = 0;
	slots[i].result = st;
	if (slots[i].waiters == 0)
		slots[i].used = 0;
	nrunning--;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

/* ae_thread - one enrollment, in the background */
static void *
ae_thread(void *arg)
{
	struct ae_job *j = arg;
	struct keystore *ks;
	X509 *c = NULL;
	EVP_PKEY *k = NULL;
	char why[AE_PATH_MAX * 2 + 128];
	enum km_status st = KM_OK;
	int signer;

	runtime_pin();
	if ((ks = runtime_keystore()) == NULL)
		st = KM_TEMPFAIL;
	else if (ca_load(j->ca_cert, j->ca_key, &c, &k, why,
	    sizeof(why)) != 0) {
		log_warnx("%s autoenroll: <%s>: not enrolled: %s", j->qid,
		    j->addr, why);
		st = KM_PERMFAIL;
	} else if (j->need_key)
		st = enroll_key(ks, j, c, k);
	pthread_mutex_lock(&mu);
	signer = slots[j->slot].signer;
	pthread_mutex_unlock(&mu);
	if (st == KM_OK && signer)
		st = enroll_signer(ks, j, c, k);
	X509_free(c);
	EVP_PKEY_free(k);
	runtime_unpin();
	slot_finish(j->slot, st);
	free(j);
	return NULL;
}

/* slot_find - the slot of addr, or -1 (mu held) */
static int
slot_find(const char *addr)
{
	for (int i = 0; i < AUTOENROLL_SLOTS; i++)
		if (slots[i].used && strcmp(slots[i].addr, addr) == 0)
			return i;
	return -1;
}

/* slot_start - the running slot of addr, started now if need be; -1 when
 * the table is full or no thread starts (mu held) */
static int
slot_start(const struct session *s, const char *addr, int need_key,
    int signer)
{
	const struct kmilter_conf *c = s->conf;
	struct ae_job *j;
	pthread_attr_t at;
	pthread_t t;
	int i, rc;

	if ((i = slot_find(addr)) >= 0) {
		slots[i].signer |= signer;
		if (slots[i].running)
			return i;
		slots[i].used = slots[i].waiters > 0;	/* finished: again */
		if (slots[i].used)
			return i;
	}
	for (i = 0; i < AUTOENROLL_SLOTS && slots[i].used; i++)
		;
	if (i == AUTOENROLL_SLOTS || (j = calloc(1, sizeof(*j))) == NULL)
		return -1;
	j->slot = i;
	j->need_key = need_key;
	j->mode = c->auto_enroll;
	j->deny_ttl = c->auto_enroll_deny_ttl;
	snprintf(j->addr, sizeof(j->addr), "%s", addr);
	snprintf(j->qid, sizeof(j->qid), "%s", message_qid(s->msg));
	snprintf(j->ca_cert, sizeof(j->ca_cert), "%s", c->org_ca_cert);
	snprintf(j->ca_key, sizeof(j->ca_key), "%s", c->org_ca_key);
	memset(&slots[i], 0, sizeof(slots[i]));
	snprintf(slots[i].addr, sizeof(slots[i].addr), "%s", addr);
	slots[i].used = slots[i].running = 1;
	slots[i].signer = signer;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &at, ae_thread, j);
	pthread_attr_destroy(&at);
	if (rc != 0) {
		slots[i].used = slots[i].running = 0;
		free(j);
		return -1;
	}
	nrunning++;
	return i;
}

/* deadline_in - now + ms, for pthread_cond_timedwait */
static struct timespec
deadline_in(int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

/*
 * enroll - start (or join) the enrollment of addr and wait at most wait_ms
 *	(-1: do not wait).  1 done (whatever its result), 0 still running,
 *	-1 not started.
 */
static int
enroll(const struct session *s, const char *addr, int need_key, int signer,
    int wait_ms)
{
	struct timespec dl;
	int i, done;

	pthread_mutex_lock(&mu);
	if ((i = slot_start(s, addr, need_key, signer)) < 0) {
		pthread_mutex_unlock(&mu);
		log_warnx("%s autoenroll: <%s>: not started: %d enrollments "
		    "running already, or no thread", message_qid(s->msg), addr,
		    AUTOENROLL_SLOTS);
		return -1;
	}
	if (wait_ms < 0) {
		pthread_mutex_unlock(&mu);
		return 0;
	}
	dl = deadline_in(wait_ms);
	slots[i].waiters++;
	while (slots[i].running &&
	    pthread_cond_timedwait(&cv, &mu, &dl) != ETIMEDOUT)
		;
	slots[i].waiters--;
	done = !slots[i].running;
	if (done && slots[i].waiters == 0)
		slots[i].used = 0;
	pthread_mutex_unlock(&mu);
	return done;
}

/* need_key - autoenroll_decide() for addr's encryption key */
static enum autoenroll_want
need_key(const struct session *s, const char *addr)
{
	struct kmerr err = { 0 };
	enum km_status st;
	X509 *cert = NULL;

	if (s->conf->auto_enroll == AUTOENROLL_OFF ||
	    !domain_internal(s->conf, addr))
		return AUTOENROLL_NO;
	if (s->conf->auto_enroll == AUTOENROLL_HOOK &&
	    denied_recently(addr)) {
		log_debug(1, "%s autoenroll: <%s>: the hook said no recently: "
		    "not asked again", message_qid(s->msg), addr);
		return AUTOENROLL_NO;
	}
	st = keystore_get_cert(runtime_keystore(), addr, &cert, &err);
	X509_free(cert);
	return autoenroll_decide(s->conf->auto_enroll, 1, st, err.reason);
}

/* autoenroll_outbound - see autoenroll.h */
int
autoenroll_outbound(struct session *s, struct verdict *v)
{
	const char *from = s->msg->from;
	struct kmerr err = { 0 };
	X509 *cert = NULL;
	enum autoenroll_want key_want;
	int has_signer;

	if (s->conf->auto_enroll == AUTOENROLL_OFF || from == NULL ||
	    *from == '\0' || policy_signer(s->conf, s->auth_authen, from) !=
	    SIGNER_OK)
		return 0;
	if ((key_want = need_key(s, from)) == AUTOENROLL_NO) {
		/* enrolled already (or never): this gateway's signing key */
		if (keystore_get_cert(runtime_keystore(), from, &cert,
		    &err) != KM_OK)
			return 0;
		X509_free(cert);
		/* one protected by the user's password counts: the hook is
		 * asked once, by the signing itself */
		has_signer = keystore_has_signer(runtime_keystore(), from,
		    &err) == KM_OK;
		if (has_signer)
			return 0;
	}
	if (enroll(s, from, key_want != AUTOENROLL_NO, 1,
	    s->conf->auto_enroll_wait_ms) != 0)
		return 0;	/* done (or not started): as policy says */
	verdict_tempfail(v, "enrolling <%s>: not done within %d ms", from,
	    s->conf->auto_enroll_wait_ms);
	snprintf(v->xcode, sizeof(v->xcode), "4.7.1");
	snprintf(v->reply, sizeof(v->reply), "enrolling <%s>, try again", from);
	return -1;
}

/* autoenroll_inbound - see autoenroll.h */
void
autoenroll_inbound(struct session *s)
{
	struct message *m = s->msg;

	if (s->conf->auto_enroll == AUTOENROLL_OFF)
		return;
	for (int i = 0; i < m->nrcpts; i++)
		if (need_key(s, m->rcpts[i]) != AUTOENROLL_NO)
			enroll(s, m->rcpts[i], 1, 0, -1);
}

/* autoenroll_wait_idle - see autoenroll.h */
int
autoenroll_wait_idle(int ms)
{
	struct timespec dl = deadline_in(ms);
	int busy;

	pthread_mutex_lock(&mu);
	while (nrunning > 0 && pthread_cond_timedwait(&cv, &mu, &dl) !=
	    ETIMEDOUT)
		;
	busy = nrunning > 0;
	pthread_mutex_unlock(&mu);
	return busy ? -1 : 0;
}
