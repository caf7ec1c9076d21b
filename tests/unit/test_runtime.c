/*
 * test_runtime.c - the key store and the revocation checker a reload
 * replaces stay until the last message that pinned them is done
 * (milter/runtime.c over fake key stores and revocation checkers).
 */
#include <pthread.h>
#include <stdlib.h>

#include "conf.h"
#include "harness.h"
#include "keystore.h"
#include "revcheck.h"
#include "runtime.h"

/* ---- FAKE key stores and revocation checker (replace keyclient's at link time) ---- */

static int made, freed, fail_next;

struct keystore *
keystore_new(const struct kmilter_conf *c, struct kmerr *err)
{
	int *ks;

	(void)c;
	if (fail_next) {
		fail_next = 0;
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE, "fake: no key store");
		return NULL;
	}
	if ((ks = malloc(sizeof(*ks))) == NULL)
		abort();
	*ks = ++made;			/* which one: 1, 2, ... */
	return (struct keystore *)ks;
}

struct keystore *
keystore_free(struct keystore *ks)
{
	if (ks != NULL)
		freed++;
	free(ks);
	return NULL;
}

static int rc_made, rc_freed, rc_fail_next;

struct revcheck *
revcheck_new(const struct kmilter_conf *c, struct kmerr *err)
{
	int *rc;

	(void)c;
	if (rc_fail_next) {
		rc_fail_next = 0;
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE, "fake: no revocation checker");
		return NULL;
	}
	if ((rc = malloc(sizeof(*rc))) == NULL)
		abort();
	*rc = ++rc_made;
	return (struct revcheck *)rc;
}

struct revcheck *
revcheck_free(struct revcheck *rc)
{
	if (rc != NULL)
		rc_freed++;
	free(rc);
	return NULL;
}

/* which_rc - the number of the revocation checker runtime_revcheck() gives */
static int
which_rc(void)
{
	return *(int *)runtime_revcheck();
}

/* which - the number of the key store runtime_keystore() gives */
static int
which(void)
{
	return *(int *)runtime_keystore();
}

static struct kmilter_conf *conf;

/* setup - a minimal configuration and a running runtime */
static int
setup(void)
{
	char err[1024];
	struct kmerr kerr;

	made = freed = fail_next = 0;
	rc_made = rc_freed = rc_fail_next = 0;
	conf = conf_load_string("milter: { socket = \"unix:/tmp/x.sock\"; };", "t.conf",
	    err, sizeof(err));
	return conf != NULL && runtime_init(conf, &kerr) == 0;
}

static void
teardown(void)
{
	runtime_free();
	conf = conf_unref(conf);
}

/* A message pinned to the old key store keeps it through a reload; the last unpin frees it. */
TEST(reload_frees_after_last_unpin)
{
	struct kmerr kerr;

	CHECK(setup());
	runtime_pin();
	CHECK_EQ_INT(which(), 1);
	CHECK_EQ_INT(runtime_reload(conf, 1, 0, &kerr), 0);
	CHECK_EQ_INT(which(), 1);		/* still the message's own */
	CHECK_EQ_INT(freed, 0);
	runtime_unpin();
	CHECK_EQ_INT(freed, 1);			/* the old one, now */
	CHECK_EQ_INT(which(), 2);		/* new work gets the new one */
	runtime_pin();
	runtime_pin();				/* nested: one reference */
	CHECK_EQ_INT(which(), 2);
	runtime_unpin();
	CHECK_EQ_INT(runtime_reload(conf, 1, 0, &kerr), 0);
	CHECK_EQ_INT(which(), 2);
	runtime_unpin();
	CHECK_EQ_INT(freed, 2);
	teardown();
	CHECK_EQ_INT(freed, 3);
}

/* Without pins the old one goes at once. */
TEST(reload_unpinned_frees_at_once)
{
	struct kmerr kerr;

	CHECK(setup());
	CHECK_EQ_INT(runtime_reload(conf, 1, 0, &kerr), 0);
	CHECK_EQ_INT(freed, 1);
	CHECK_EQ_INT(which(), 2);
	teardown();
}

/* A key store that cannot be built leaves the running one in place. */
TEST(reload_failure_keeps_old)
{
	struct kmerr kerr;

	CHECK(setup());
	fail_next = 1;
	CHECK(runtime_reload(conf, 1, 0, &kerr) != 0);
	CHECK(strstr(kerr.msg, "fake: no key store") != NULL);
	CHECK_EQ_INT(which(), 1);
	CHECK_EQ_INT(freed, 0);
	teardown();
}

/* another thread's pin is its own: a message in flight elsewhere keeps the old one */
static int other_saw;
static pthread_mutex_t step = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int phase;

static void *
other(void *arg)
{
	(void)arg;
	runtime_pin();
	pthread_mutex_lock(&step);
	phase = 1;
	pthread_cond_broadcast(&cv);
	while (phase != 2)
		pthread_cond_wait(&cv, &step);
	pthread_mutex_unlock(&step);
	other_saw = which();
	runtime_unpin();
	return NULL;
}

TEST(pins_are_per_thread)
{
	struct kmerr kerr;
	pthread_t tid;

	CHECK(setup());
	phase = 0;
	CHECK(pthread_create(&tid, NULL, other, NULL) == 0);
	pthread_mutex_lock(&step);
	while (phase != 1)
		pthread_cond_wait(&cv, &step);
	pthread_mutex_unlock(&step);
	CHECK_EQ_INT(runtime_reload(conf, 1, 0, &kerr), 0);
	CHECK_EQ_INT(which(), 2);		/* this thread: the new one */
	CHECK_EQ_INT(freed, 0);			/* the other still holds 1 */
	pthread_mutex_lock(&step);
	phase = 2;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&step);
	pthread_join(tid, NULL);
	CHECK_EQ_INT(other_saw, 1);
	CHECK_EQ_INT(freed, 1);
	teardown();
}

/* A new revocation checker: the pinned one stays, the key store is not touched. */
TEST(reload_revcheck_after_last_unpin)
{
	struct kmerr kerr;

	CHECK(setup());
	runtime_pin();
	CHECK_EQ_INT(which_rc(), 1);
	CHECK_EQ_INT(runtime_reload(conf, 0, 1, &kerr), 0);
	CHECK_EQ_INT(which_rc(), 1);		/* still the message's own */
	CHECK_EQ_INT(rc_freed, 0);
	runtime_unpin();
	CHECK_EQ_INT(rc_freed, 1);
	CHECK_EQ_INT(which_rc(), 2);
	CHECK_EQ_INT(which(), 1);		/* the key store stays */
	CHECK_EQ_INT(made, 1);
	CHECK_EQ_INT(freed, 0);
	teardown();
	CHECK_EQ_INT(rc_freed, 2);
}

/* Both asked, one fails: neither is swapped, the one built is freed. */
TEST(reload_both_or_neither)
{
	struct kmerr kerr;

	CHECK(setup());
	rc_fail_next = 1;
	CHECK(runtime_reload(conf, 1, 1, &kerr) != 0);
	CHECK(strstr(kerr.msg, "fake: no revocation checker") != NULL);
	CHECK_EQ_INT(made, 2);			/* built ... */
	CHECK_EQ_INT(freed, 1);			/* ... and dropped */
	CHECK_EQ_INT(which(), 1);
	CHECK_EQ_INT(which_rc(), 1);
	CHECK_EQ_INT(runtime_reload(conf, 1, 1, &kerr), 0);
	CHECK_EQ_INT(which(), 3);
	CHECK_EQ_INT(which_rc(), 2);
	CHECK_EQ_INT(rc_freed, 1);
	teardown();
}

static const struct test_case tests[] = {
	T(reload_frees_after_last_unpin), T(reload_unpinned_frees_at_once),
	T(reload_failure_keeps_old), T(pins_are_per_thread),
	T(reload_revcheck_after_last_unpin), T(reload_both_or_neither), { 0 }
};

int
main(int argc, char **argv)
{
	return harness_main(argc, argv, tests);
}
