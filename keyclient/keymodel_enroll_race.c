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
 * an enrollment that crashed half-way makes later enrollments of that
 * address yield too, until kmctl revoke removes it (logged each time).
 */
#include <ctype.h>
#include <string.h>

#include "keymodel.h"
#include "keymodel_int.h"
#include "kmip.h"
#include "log.h"

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
