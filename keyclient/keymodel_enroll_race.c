/*
 * keymodel_enroll_race.c - two enrollments (or renewals) of one address at
 * once (two threads, two gateways) end with exactly one current generation.
 *
 * The rule, coordinated through the KM alone (no Redis, no lock): an
 * enrollment registers its objects Pre-Active, the certificate on server
 * 0 first; before activating them it Locates the address on server 0
 * again.  If a rival certificate (another object, Pre-Active or Active)
 * got a lower unique identifier there, that enrollment was first: this
 * one yields and destroys its own Pre-Active objects (nothing of it was
 * ever visible).  The server hands out identifiers in increasing order,
 * so of two enrollments that both register, the later one always sees the
 * earlier one's certificate and yields; the earlier one may or may not see
 * the later one, and never yields to it.  A Pre-Active certificate left by
 * an enrollment that crashed half-way would make later enrollments of that
 * address yield for ever: a rival that is
 * still Pre-Active and stale (registered longer ago than
 * keymodel_stale_after() seconds, far longer than any live enrollment
 * takes from its first Register to its last Activate) is no rival.
 *
 * Interrupted changes.  keymodel_admin_tidy() runs at the start of every
 * enrollment and renewal (and for kmctl maintain, keymodel_finish()): a
 * generation with stale Pre-Active objects either had all of its objects
 * registered and its activation begun (the process died while activating:
 * the rest is activated, the change goes forward), or it is removed (its
 * Pre-Active objects destroyed: nothing of it was ever visible).  A
 * complete Active generation made long enough ago whose older generations
 * are still Active (the process died before deactivating them) has them
 * deactivated, as keymodel_admin_install() would have done
 * (keymodel_admin_supersede(), which install uses too).
 */
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keymodel.h"
#include "keymodel_int.h"
#include "kmip.h"
#include "log.h"

#define STALE_AFTER_S	600	/* see keymodel_stale_after() */

/* all_digits - s is a non-empty string of decimal digits */
static int
all_digits(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (!isdigit((unsigned char)*s))
			return 0;
	return 1;
}

/*
 * keymodel_uid_before - whether unique identifier a was handed out before
 *	b: numerically when both are decimal (PyKMIP), else by strcmp.
 */
int
keymodel_uid_before(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (all_digits(a) && all_digits(b)) {
		while (la > 1 && *a == '0')
			a++, la--;
		while (lb > 1 && *b == '0')
			b++, lb--;
		if (la != lb)
			return la < lb;
	}
	return strcmp(a, b) < 0;
}

/* keymodel_admin_contend - KM_OK when no rival enrollment of a->name came
 * first (uid: ours on server 0), else KM_TEMPFAIL, KMERR_REFUSED */
enum km_status
keymodel_admin_contend(struct admin *a, const char *uid, struct kmerr *err)
{
	struct scan s;
	enum km_status st;
	char rival[KMIP_UID_MAX] = "";
	size_t j;

	if ((st = keymodel_scan_server(a->c[0], a->name, &s, err)) != KM_OK)
		return st;
	for (j = 0; j < s.n; j++) {
		const struct kobj *o = &s.v[j];

		if (o->kind != KEYMODEL_CERT || strcmp(o->uid, uid) == 0 ||
		    (o->state != KMIP_STATE_PRE_ACTIVE &&
		    o->state != KMIP_STATE_ACTIVE))
			continue;
		if (o->state == KMIP_STATE_PRE_ACTIVE &&
		    keymodel_stale(o, time(NULL))) {
			log_info("keymodel: %s: certificate %s is left from an "
			    "enrollment that did not finish: not a rival",
			    a->norm, o->uid);
			continue;
		}
		if (keymodel_uid_before(o->uid, uid) && (rival[0] == '\0' ||
		    keymodel_uid_before(o->uid, rival)))
			snprintf(rival, sizeof(rival), "%s", o->uid);
	}
	keymodel_scan_clear(&s);
	if (rival[0] == '\0')
		return KM_OK;
	log_info("keymodel: %s: another enrollment came first (certificate "
	    "%s before our %s): ours withdrawn", a->norm, rival, uid);
	return kmerr_set(err, KM_TEMPFAIL, KMERR_REFUSED,
	    "%s: another enrollment came first", a->norm);
}

/* admin_elect - after registering generation gen (Pre-Active, certificate
 * mine on server 0): another process that registered a certificate of the
 * same generation first wins, and this one backs off (KM_PERMFAIL,
 * KMERR_EXISTS).  Registrations are numbered in order, so of two renewals
 * that scanned before either registered, exactly one goes on. */
static enum km_status
admin_elect(struct admin *a, int gen, const char *mine, struct kmerr *err)
{
	struct scan s;
	enum km_status st;
	size_t i;
	int lost = 0;

	memset(&s, 0, sizeof(s));
	if ((st = keymodel_scan_server(a->c[0], a->name, &s, err)) != KM_OK)
		return st;
	for (i = 0; i < s.n; i++)
		if (s.v[i].kind == KEYMODEL_CERT && s.v[i].gen == gen &&
		    strcmp(s.v[i].uid, mine) != 0 &&
		    keymodel_uid_before(s.v[i].uid, mine))
			lost = 1;
	keymodel_scan_clear(&s);
	if (lost)
		return kmerr_set(err, KM_PERMFAIL, KMERR_EXISTS,
		    "%s: generation %d is being made elsewhere", a->norm, gen);
	return KM_OK;
}

/* keymodel_admin_yield - after registering generation gen (nreg objects,
 * the certificate uid on server 0), before activating: a renewal backs off
 * when another registered the same generation first (a->elect), an
 * enrollment when a rival came first (a->contend); KM_OK goes on */
enum km_status
keymodel_admin_yield(struct admin *a, int gen, const char *uid, int nreg,
    struct kmerr *err)
{
	enum km_status st;

	if (a->elect && (st = admin_elect(a, gen, uid, err)) != KM_OK)
		return st;
	if (a->contend && nreg > 0)
		return keymodel_admin_contend(a, uid, err);
	return KM_OK;
}

/*
 * keymodel_stale_after - seconds after which a Pre-Active object is taken
 *	for the leftover of a crashed change: 600, or (tests only) the
 *	environment's KMILTER_TEST_STALE_S.  The comparison is between the
 *	KM server's clock (Initial Date) and ours: skew must stay well below.
 */
static long
keymodel_stale_after(void)
{
	const char *e = getenv("KMILTER_TEST_STALE_S");
	char *end;
	long v;

	if (e == NULL || *e == '\0')
		return STALE_AFTER_S;
	v = strtol(e, &end, 10);
	return *end == '\0' && v >= 0 ? v : STALE_AFTER_S;
}

/* keymodel_stale - o was made more than keymodel_stale_after() ago (an
 * object without Initial Date never is: its age is unknown) */
int
keymodel_stale(const struct kobj *o, time_t now)
{
	return o->created != 0 && now - o->created >= keymodel_stale_after();
}

/*
 * keymodel_test_pause - FOR TESTS ONLY: when the environment's
 *	KMILTER_TEST_PAUSE names step, say so on stderr and stop the process
 *	(SIGSTOP) so that a test can kill it there, or stop a KM server and
 *	let it go on (SIGCONT).  Steps: "registered" (every object of a new
 *	generation registered, none activated), "activating" (its shares
 *	activated, not its certificates), "activated" (all activated, the
 *	older generations not yet deactivated).
 */
void
keymodel_test_pause(const char *step)
{
	const char *e = getenv("KMILTER_TEST_PAUSE");

	if (e == NULL || strcmp(e, step) != 0)
		return;
	fprintf(stderr, "kmilter test pause: %s pid %ld\n", step,
	    (long)getpid());
	fflush(stderr);
	raise(SIGSTOP);
}

/* What one generation has on both servers, counted from the scans. */
struct census {
	int	 ncert[2], nshare[2];
	int	 active, preactive, stale, compromised;
	int	 old;		/* a certificate of it is stale */
	int	 oldshare;	/* a share of it is stale */
};

/* census - count generation gen's objects */
static void
census(const struct admin *a, int gen, time_t now, struct census *c)
{
	size_t j;
	int srv;

	memset(c, 0, sizeof(*c));
	for (srv = 0; srv < 2; srv++)
		for (j = 0; j < a->s[srv].n; j++) {
			const struct kobj *o = &a->s[srv].v[j];

			if (o->gen != gen ||
			    o->state == KMIP_STATE_DESTROYED ||
			    o->state == KMIP_STATE_DESTROYED_COMPROMISED)
				continue;
			if (o->kind == KEYMODEL_CERT) {
				c->ncert[srv]++;
				c->old |= keymodel_stale(o, now);
			} else {
				c->nshare[srv]++;
				c->oldshare |= keymodel_stale(o, now);
			}
			if (o->state == KMIP_STATE_ACTIVE)
				c->active++;
			else if (o->state == KMIP_STATE_PRE_ACTIVE) {
				c->preactive++;
				c->stale += keymodel_stale(o, now);
			} else if (o->state == KMIP_STATE_COMPROMISED)
				c->compromised++;
		}
}

/* whole - one certificate per server, and one share per server or none */
static int
whole(const struct census *c)
{
	return c->ncert[0] == 1 && c->ncert[1] == 1 &&
	    c->nshare[0] == c->nshare[1] && c->nshare[0] <= 1;
}

/* orphans - Active shares, made long enough ago, with no certificate left:
 * a rolled-back enrollment could not reach a server to remove them */
static int
orphans(const struct census *c)
{
	return c->ncert[0] + c->ncert[1] == 0 && c->active > 0 && c->oldshare;
}

/* finish_gen - gen's Pre-Active objects activated, shares before
 * certificates (a certificate is never Active before its key) */
static enum km_status
finish_gen(struct admin *a, int gen, struct kmerr *err)
{
	enum keymodel_kind order[2] = { KEYMODEL_SHARE, KEYMODEL_CERT };
	enum km_status st;
	size_t j;
	int k, srv;

	for (k = 0; k < 2; k++)
		for (srv = 1; srv >= 0; srv--)
			for (j = 0; j < a->s[srv].n; j++) {
				struct kobj *o = &a->s[srv].v[j];

				if (o->gen != gen || o->kind != order[k] ||
				    o->state != KMIP_STATE_PRE_ACTIVE)
					continue;
				if ((st = kmip_activate(a->c[srv], o->uid,
				    err)) != KM_OK)
					return st;
				o->state = KMIP_STATE_ACTIVE;
			}
	return keymodel_admin_supersede(a, gen, err);
}

/* drop_gen - gen's stale Pre-Active objects destroyed; *n counts them */
static enum km_status
drop_gen(struct admin *a, int gen, time_t now, int *n, struct kmerr *err)
{
	enum km_status st;
	size_t j;
	int srv;

	for (srv = 0; srv < 2; srv++)
		for (j = 0; j < a->s[srv].n; j++) {
			struct kobj *o = &a->s[srv].v[j];

			if (o->gen != gen || o->state != KMIP_STATE_PRE_ACTIVE ||
			    !keymodel_stale(o, now))
				continue;
			if ((st = kmip_destroy(a->c[srv], o->uid, err)) !=
			    KM_OK)
				return st;
			o->state = KMIP_STATE_DESTROYED;
			(*n)++;
		}
	return KM_OK;
}

/* drop_orphans - gen's Active shares revoked (Key Compromise) and
 * destroyed; *n counts them */
static enum km_status
drop_orphans(struct admin *a, int gen, int *n, struct kmerr *err)
{
	enum km_status st;
	size_t j;
	int srv;

	for (srv = 0; srv < 2; srv++)
		for (j = 0; j < a->s[srv].n; j++) {
			struct kobj *o = &a->s[srv].v[j];

			if (o->gen != gen || o->kind != KEYMODEL_SHARE ||
			    o->state != KMIP_STATE_ACTIVE)
				continue;
			if ((st = kmip_revoke(a->c[srv], o->uid,
			    KMIP_REVOKE_KEY_COMPROMISE, "half-made enrollment",
			    err)) != KM_OK ||
			    (st = kmip_destroy(a->c[srv], o->uid, err)) != KM_OK)
				return st;
			o->state = KMIP_STATE_DESTROYED_COMPROMISED;
			(*n)++;
		}
	return KM_OK;
}

/* older_active - a generation below gen still has Active objects */
static int
older_active(const struct admin *a, int gen)
{
	size_t j;
	int srv;

	for (srv = 0; srv < 2; srv++)
		for (j = 0; j < a->s[srv].n; j++)
			if (a->s[srv].v[j].gen < gen &&
			    a->s[srv].v[j].state == KMIP_STATE_ACTIVE)
				return 1;
	return 0;
}

/* tidy_gen - finish or remove generation gen if a crash left it half
 * made; appends what it did to what */
static enum km_status
tidy_gen(struct admin *a, int gen, time_t now, char *what, size_t whatlen,
    int *changed, struct kmerr *err)
{
	struct census c;
	enum km_status st;
	size_t l = strlen(what);
	int n = 0;

	census(a, gen, now, &c);
	if (c.stale > 0 && c.active > 0 && c.compromised == 0 && whole(&c)) {
		if ((st = finish_gen(a, gen, err)) != KM_OK)
			return st;
		snprintf(what + l, whatlen - l, "%sgeneration %d: an "
		    "interrupted activation finished", l ? "; " : "", gen);
	} else if (c.stale > 0 || orphans(&c)) {
		if (c.stale > 0 && (st = drop_gen(a, gen, now, &n, err)) !=
		    KM_OK)
			return st;
		if (n > 0)
			snprintf(what + l, whatlen - l, "%sgeneration %d: %d "
			    "Pre-Active object%s of an interrupted change "
			    "removed", l ? "; " : "", gen, n, n == 1 ? "" : "s");
		census(a, gen, now, &c);
		if (orphans(&c)) {
			size_t m = strlen(what);

			if ((st = drop_orphans(a, gen, &n, err)) != KM_OK)
				return st;
			snprintf(what + m, whatlen - m, "%sgeneration %d: "
			    "shares without a certificate revoked and removed",
			    m > l ? ", " : l ? "; " : "", gen);
		}
	} else if (c.active > 0 && c.preactive == 0 && whole(&c) &&
	    older_active(a, gen) && c.old) {
		if ((st = keymodel_admin_supersede(a, gen, err)) != KM_OK)
			return st;
		snprintf(what + l, whatlen - l, "%sgeneration %d: the older "
		    "generations deactivated (an interrupted change)",
		    l ? "; " : "", gen);
	} else
		return KM_OK;
	*changed = 1;
	log_warnx("keymodel: %s: %s", a->norm, what + l + (l ? 2 : 0));
	return KM_OK;
}

/* keymodel_admin_tidy - see keymodel_int.h */
enum km_status
keymodel_admin_tidy(struct admin *a, char *what, size_t whatlen,
    struct kmerr *err)
{
	struct genrec *recs;
	time_t now = time(NULL);
	enum km_status st;
	size_t nrecs;
	int gens[64], ngens = 0, i, changed = 0, srv;
	size_t j, k;

	what[0] = '\0';
	/* every generation of either server (recs skip Pre-Active shares) */
	for (srv = 0; srv < 2; srv++)
		for (j = 0; j < a->s[srv].n; j++) {
			for (k = 0; k < (size_t)ngens &&
			    gens[k] != a->s[srv].v[j].gen; k++)
				;
			if (k == (size_t)ngens && ngens < 64)
				gens[ngens++] = a->s[srv].v[j].gen;
		}
	for (i = 0; i < ngens; i++)
		if ((st = tidy_gen(a, gens[i], now, what, whatlen, &changed,
		    err)) != KM_OK)
			return st;
	if (!changed)
		return KM_OK;
	for (srv = 0; srv < 2; srv++) {
		keymodel_scan_clear(&a->s[srv]);
		if ((st = keymodel_scan_server(a->c[srv], a->name, &a->s[srv],
		    err)) != KM_OK)
			return st;
	}
	if (keymodel_build_gens(a->s, &recs, &nrecs) != KM_OK)
		return kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	free(a->recs);
	a->recs = recs;
	a->nrecs = nrecs;
	return KM_OK;
}

/* keymodel_admin_supersede - the Active objects older than generation gen
 * deactivated (Cessation of Operation) on both servers */
enum km_status
keymodel_admin_supersede(struct admin *a, int gen, struct kmerr *err)
{
	enum km_status st;
	size_t j;
	int srv;

	for (srv = 0; srv < 2; srv++) {
		for (j = 0; j < a->s[srv].n; j++) {
			struct kobj *o = &a->s[srv].v[j];

			if (o->state != KMIP_STATE_ACTIVE || o->gen >= gen)
				continue;
			if ((st = kmip_revoke(a->c[srv], o->uid,
			    KMIP_REVOKE_CESSATION_OF_OPERATION,
			    "superseded by a new generation", err)) != KM_OK) {
				log_warnx("keymodel: %s: generation %d stays "
				    "Active: %s", a->norm, o->gen,
				    err != NULL ? err->msg : "");
				return st;
			}
			o->state = KMIP_STATE_DEACTIVATED;
		}
	}
	return KM_OK;
}
