/*
 * revcheck_cache.c - revocation answers until their nextUpdate.  See
 * revcheck_cache.h.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "revcheck_cache.h"

struct revent {
	char		 key[128];
	struct revanswer ans;
	time_t		 until;
	int		 used;
};

struct revcache {
	pthread_mutex_t	 mtx;
	struct revent	*ent;
	size_t		 max;
};

/* revcache_new - an empty table of at most max answers (max >= 1) */
struct revcache *
revcache_new(size_t max)
{
	struct revcache *rc;

	if (max == 0)
		max = 1;
	if ((rc = calloc(1, sizeof(*rc))) == NULL)
		return NULL;
	if ((rc->ent = calloc(max, sizeof(*rc->ent))) == NULL) {
		free(rc);
		return NULL;
	}
	rc->max = max;
	pthread_mutex_init(&rc->mtx, NULL);
	return rc;
}

/* revcache_free - free the table */
struct revcache *
revcache_free(struct revcache *rc)
{
	if (rc == NULL)
		return NULL;
	pthread_mutex_destroy(&rc->mtx);
	free(rc->ent);
	free(rc);
	return NULL;
}

/* find - the used entry of key, or NULL; under the lock */
static struct revent *
find(struct revcache *rc, const char *key)
{
	for (size_t i = 0; i < rc->max; i++)
		if (rc->ent[i].used && strcmp(rc->ent[i].key, key) == 0)
			return &rc->ent[i];
	return NULL;
}

/* victim - a free or expired slot, else the one expiring first */
static struct revent *
victim(struct revcache *rc, time_t now)
{
	struct revent *v = &rc->ent[0];

	for (size_t i = 0; i < rc->max; i++) {
		struct revent *e = &rc->ent[i];

		if (!e->used || e->until <= now)
			return e;
		if (e->until < v->until)
			v = e;
	}
	return v;
}

/* revcache_get - a live answer for key */
int
revcache_get(struct revcache *rc, const char *key, time_t now,
    struct revanswer *ans)
{
	struct revent *e;
	int found = 0;

	pthread_mutex_lock(&rc->mtx);
	if ((e = find(rc, key)) != NULL) {
		if (e->until > now) {
			*ans = e->ans;
			found = 1;
		} else
			e->used = 0;
	}
	pthread_mutex_unlock(&rc->mtx);
	return found;
}

/* revcache_put - keep ans for key until `until' */
void
revcache_put(struct revcache *rc, const char *key,
    const struct revanswer *ans, time_t until)
{
	time_t now = time(NULL);
	struct revent *e;

	if (until <= now)
		return;
	pthread_mutex_lock(&rc->mtx);
	if ((e = find(rc, key)) == NULL)
		e = victim(rc, now);
	snprintf(e->key, sizeof(e->key), "%s", key);
	e->ans = *ans;
	e->until = until;
	e->used = 1;
	pthread_mutex_unlock(&rc->mtx);
}

/* revcache_count - live entries, for tests and statistics */
size_t
revcache_count(struct revcache *rc)
{
	time_t now = time(NULL);
	size_t n = 0;

	pthread_mutex_lock(&rc->mtx);
	for (size_t i = 0; i < rc->max; i++)
		if (rc->ent[i].used && rc->ent[i].until > now)
			n++;
	pthread_mutex_unlock(&rc->mtx);
	return n;
}
