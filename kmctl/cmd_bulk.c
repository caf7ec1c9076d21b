/*
 * cmd_bulk.c - kmctl enroll --from FILE: enroll many addresses (one a
 * line, "-" for stdin; blank lines and # comments skipped) with --jobs N
 * workers (default 4) sharing the key model's connection pools.
 *
 * Resumable: an address that already has an Active generation is skipped
 * (keymodel_enroll() refuses it with KMERR_EXISTS), so a second run after
 * an interruption enrolls only the rest; an enrollment killed half-way
 * leaves nothing current (keymodel_admin.h) and does not stand in the way
 * of the next run once its leftovers are stale.  A failure is recorded
 * with its reason and the run goes on.  Every 2 s a progress line goes to
 * stderr (done/total, rate, failures); stdout gets a line per enrolled or
 * failed address, then a summary with counts and the failed addresses
 * with their reasons.  Exit code 0 when nothing failed, else EX_FAIL.
 * See cmd.h and kmctl.8.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd.h"
#include "conf.h"
#include "domain.h"
#include "keymodel.h"
#include "keymodel_admin.h"
#include "keymodel_name.h"
#include "keystore.h"
#include "kmctl.h"

#define PROGRESS_S	2		/* a progress line every ... */
#define LINE_MAX_	1024
#define WHY_MAX		(KMERR_MSG_MAX + 64)

enum outcome { TODO = 0, ENROLLED, SKIPPED, FAILED };

/* One address of the file. */
struct item {
	char		 addr[KEYMODEL_ADDR_MAX + 1];	/* as normalized */
	enum outcome	 outcome;
	char		 why[WHY_MAX];
	int		 line;
};

/* The run, shared by the workers under mu. */
struct bulk {
	const struct kmilter_conf *conf;
	const struct opts	*o;
	struct keymodel		*km;
	struct keystore		*ks;		/* cache invalidation, or NULL */
	X509			*ca;
	EVP_PKEY		*cakey;
	struct item		*v;
	size_t			 n, next, done;
	int			 enrolled, skipped, failed, uncached;
	int			 running;
	pthread_mutex_t		 mu;
	pthread_cond_t		 cv;
};

/* trim - s without leading and trailing blanks (in place) */
static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* add_item - one more address (already checked, or failed with why) */
static int
add_item(struct bulk *b, size_t *cap, const char *addr, int line,
    const char *why)
{
	struct item *it;

	if (b->n == *cap) {
		size_t nc = *cap ? *cap * 2 : 256;
		struct item *nv = realloc(b->v, nc * sizeof(*nv));

		if (nv == NULL)
			return -1;
		b->v = nv;
		*cap = nc;
	}
	it = &b->v[b->n++];
	memset(it, 0, sizeof(*it));
	snprintf(it->addr, sizeof(it->addr), "%s", addr);
	it->line = line;
	if (why != NULL) {
		it->outcome = FAILED;
		snprintf(it->why, sizeof(it->why), "%s", why);
	}
	return 0;
}

/* check_line - an address line: normalized into norm, or why it is not */
static int
check_line(const struct bulk *b, const char *s, char *norm, size_t len,
    char *why, size_t whylen)
{
	struct kmerr err;

	if (keymodel_addr_normalize(s, norm, len, &err) != KM_OK) {
		snprintf(why, whylen, "malformed address: %s", err.msg);
		return -1;
	}
	if (!b->o->force && !domain_internal(b->conf, norm)) {
		snprintf(why, whylen, "not in policy.internal_domains (--force "
		    "to enroll it anyway)");
		return -1;
	}
	return 0;
}

/* item_cmp - qsort: by address, case folded, then by line */
static int
item_cmp(const void *x, const void *y)
{
	const struct item *a = x, *b = y;
	int c = strcasecmp(a->addr, b->addr);

	return c != 0 ? c : (a->line > b->line) - (a->line < b->line);
}

/* line_cmp - qsort: back in file order */
static int
line_cmp(const void *x, const void *y)
{
	const struct item *a = x, *b = y;

	return (a->line > b->line) - (a->line < b->line);
}

/* dedup - an address given twice is enrolled once (KMIP names fold case) */
static void
dedup(struct bulk *b)
{
	size_t i, j = 0;

	if (b->n == 0)
		return;
	qsort(b->v, b->n, sizeof(*b->v), item_cmp);
	for (i = 1; i < b->n; i++)
		if (strcasecmp(b->v[i].addr, b->v[j].addr) != 0)
			b->v[++j] = b->v[i];
	b->n = j + 1;
	qsort(b->v, b->n, sizeof(*b->v), line_cmp);
}

/* read_list - the addresses of path ("-": stdin); -1 after a message */
static int
read_list(struct bulk *b, const char *path)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	char buf[LINE_MAX_], norm[KEYMODEL_ADDR_MAX + 1], why[WHY_MAX];
	size_t cap = 0;
	int line = 0, rc = 0;

	if (f == NULL) {
		kmctl_warn("enroll --from %s: %s", path, strerror(errno));
		return -1;
	}
	while (rc == 0 && fgets(buf, sizeof(buf), f) != NULL) {
		char *s = trim(buf);

		line++;
		if (*s == '\0' || *s == '#')
			continue;
		if (strlen(buf) == sizeof(buf) - 1 && buf[sizeof(buf) - 2] != '\n')
			rc = add_item(b, &cap, "(too long)", line,
			    "line too long");
		else if (check_line(b, s, norm, sizeof(norm), why,
		    sizeof(why)) != 0)
			rc = add_item(b, &cap, s, line, why);
		else
			rc = add_item(b, &cap, norm, line, NULL);
	}
	if (ferror(f)) {
		kmctl_warn("enroll --from %s: %s", path, strerror(errno));
		rc = -1;
	} else if (rc != 0)
		kmctl_warn("enroll --from %s: out of memory", path);
	if (f != stdin)
		fclose(f);
	if (rc == 0)
		dedup(b);
	return rc;
}

/* enroll_item - enroll one address (no lock held); the outcome in it */
static void
enroll_item(struct bulk *b, struct item *it)
{
	struct kmerr err;
	enum km_status st;
	int gen = 0;

	st = keymodel_enroll(b->km, it->addr, b->ca, b->cakey, b->o->keytype,
	    b->o->days, &gen, &err);
	if (st == KM_OK) {
		it->outcome = ENROLLED;
		snprintf(it->why, sizeof(it->why), "generation %d", gen);
		if (b->ks != NULL && keystore_invalidate(b->ks, it->addr) !=
		    KM_OK) {
			pthread_mutex_lock(&b->mu);
			b->uncached++;
			pthread_mutex_unlock(&b->mu);
		}
	} else if (st == KM_PERMFAIL && kmerr_is(&err, KMERR_EXISTS)) {
		it->outcome = SKIPPED;
	} else {
		it->outcome = FAILED;
		snprintf(it->why, sizeof(it->why), "%s: %s",
		    km_status_name(st), err.msg);
	}
}

/* record - count one outcome and print its line (mu held) */
static void
record(struct bulk *b, const struct item *it)
{
	b->done++;
	switch (it->outcome) {
	case ENROLLED:
		b->enrolled++;
		printf("enrolled %s: %s\n", it->addr, it->why);
		break;
	case SKIPPED:
		b->skipped++;
		break;
	default:
		b->failed++;
		printf("failed %s: %s\n", it->addr, it->why);
		break;
	}
	fflush(stdout);
}

/* worker - take the next address until none is left */
static void *
worker(void *arg)
{
	struct bulk *b = arg;
	struct item *it;

	pthread_mutex_lock(&b->mu);
	for (;;) {
		while (b->next < b->n && b->v[b->next].outcome == FAILED)
			record(b, &b->v[b->next++]);	/* refused when read */
		if (b->next >= b->n)
			break;
		it = &b->v[b->next++];
		pthread_mutex_unlock(&b->mu);
		enroll_item(b, it);
		pthread_mutex_lock(&b->mu);
		record(b, it);
		pthread_cond_broadcast(&b->cv);
	}
	b->running--;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
	return NULL;
}

/* elapsed - seconds since t0 */
static double
elapsed(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) +
	    (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* progress - one progress line on stderr (mu held) */
static void
progress(const struct bulk *b, const struct timespec *t0)
{
	double s = elapsed(t0);

	fprintf(stderr, "kmctl: enroll: %zu/%zu done, %.1f/min, %d enrolled, "
	    "%d already enrolled, %d failed\n", b->done, b->n,
	    s > 0 ? (double)b->done * 60 / s : 0.0, b->enrolled, b->skipped,
	    b->failed);
}

/* run_workers - the workers, and a progress line every PROGRESS_S */
static void
run_workers(struct bulk *b, int jobs, const struct timespec *t0)
{
	pthread_t th[64];
	struct timespec dl;
	int i, started = 0;

	pthread_mutex_lock(&b->mu);
	for (i = 0; i < jobs; i++) {
		if (pthread_create(&th[started], NULL, worker, b) != 0)
			break;
		started++;
		b->running++;
	}
	pthread_mutex_unlock(&b->mu);
	if (started == 0) {
		b->running = 1;
		worker(b);		/* no thread: do it here */
	}
	pthread_mutex_lock(&b->mu);
	clock_gettime(CLOCK_REALTIME, &dl);
	while (b->running > 0) {
		dl.tv_sec += PROGRESS_S;
		while (b->running > 0 &&
		    pthread_cond_timedwait(&b->cv, &b->mu, &dl) == 0)
			;
		if (b->running > 0)
			progress(b, t0);
	}
	pthread_mutex_unlock(&b->mu);
	for (i = 0; i < started; i++)
		pthread_join(th[i], NULL);
}

/* summary - the counts, then each failed address with its reason */
static void
summary(const struct bulk *b, const struct timespec *t0)
{
	double s = elapsed(t0);
	size_t i;

	printf("enroll: %zu addresses, %d enrolled, %d already enrolled, "
	    "%d failed (%.1f s, %.1f enrolled/min)\n", b->n, b->enrolled,
	    b->skipped, b->failed, s, s > 0 ? b->enrolled * 60 / s : 0.0);
	if (b->failed > 0) {
		printf("failed addresses (run again to retry them):\n");
		for (i = 0; i < b->n; i++)
			if (b->v[i].outcome == FAILED)
				printf("  line %d: %s: %s\n", b->v[i].line,
				    b->v[i].addr, b->v[i].why);
	}
	if (b->uncached > 0)
		kmctl_warn("enroll: the cache invalidation of %d enrolled "
		    "addresses was not published (gateways keep their "
		    "\"no key\" answers until they expire; kmctl flush ADDR)",
		    b->uncached);
}

/* cmd_enroll_bulk - kmctl enroll --from FILE [--jobs N] */
int
cmd_enroll_bulk(const struct kmilter_conf *conf, const struct opts *o)
{
	struct bulk b;
	struct kmerr err;
	struct timespec t0;
	int rc = EX_FAIL, jobs = o->jobs > 0 ? o->jobs : KMCTL_BULK_JOBS;

	memset(&b, 0, sizeof(b));
	b.conf = conf;
	b.o = o;
	pthread_mutex_init(&b.mu, NULL);
	pthread_cond_init(&b.cv, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (read_list(&b, o->from) != 0 ||
	    kmctl_load_org_ca(conf, &b.ca, &b.cakey) != 0 ||
	    (b.km = kmctl_open_km(conf)) == NULL)
		goto out;
	if ((b.ks = keystore_new(conf, &err)) == NULL)
		kmctl_warn("enroll: cache not invalidated: %s", err.msg);
	if (jobs > 64)
		jobs = 64;
	if ((size_t)jobs > b.n)
		jobs = b.n > 0 ? (int)b.n : 1;
	run_workers(&b, jobs, &t0);
	summary(&b, &t0);
	rc = b.failed > 0 || b.uncached > 0 || (b.ks == NULL &&
	    b.enrolled > 0) ? EX_FAIL : EX_OK_;
out:
	keystore_free(b.ks);
	keymodel_free(b.km);
	X509_free(b.ca);
	EVP_PKEY_free(b.cakey);
	free(b.v);
	pthread_cond_destroy(&b.cv);
	pthread_mutex_destroy(&b.mu);
	return rc;
}
