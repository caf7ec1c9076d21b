/*
 * test_autoenroll.c - unit tests of automatic enrollment's decisions:
 * milter/autoenroll.c (when an address is enrolled), the race rule of
 * keyclient/keymodel_enroll_race.c (which enrollment came first), the
 * hook event enroll (hook_proto.c, hook.c: a failure is a deny whatever
 * hook.on_failure says) and keystore_enroll_allowed() (no hook, allow,
 * deny, failure) over a fake back end.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autoenroll.h"
#include "conf.h"
#include "harness.h"
#include "hook.h"
#include "keymodel_int.h"
#include "keystore.h"

TEST(decide_off_never)
{
	CHECK(autoenroll_decide(AUTOENROLL_OFF, 1, KM_PERMFAIL,
	    KMERR_NOTFOUND) == AUTOENROLL_NO);
}

TEST(decide_on_and_hook)
{
	CHECK(autoenroll_decide(AUTOENROLL_ON, 1, KM_PERMFAIL,
	    KMERR_NOTFOUND) == AUTOENROLL_YES);
	CHECK(autoenroll_decide(AUTOENROLL_HOOK, 1, KM_PERMFAIL,
	    KMERR_NOTFOUND) == AUTOENROLL_ASK);
}

TEST(decide_outside_never)
{
	CHECK(autoenroll_decide(AUTOENROLL_ON, 0, KM_PERMFAIL,
	    KMERR_NOTFOUND) == AUTOENROLL_NO);
	CHECK(autoenroll_decide(AUTOENROLL_HOOK, 0, KM_PERMFAIL,
	    KMERR_NOTFOUND) == AUTOENROLL_NO);
}

TEST(decide_only_on_not_found)
{
	/* enrolled already, KM down, a refusal, bad data: never enroll */
	CHECK(autoenroll_decide(AUTOENROLL_ON, 1, KM_OK, KMERR_NONE) ==
	    AUTOENROLL_NO);
	CHECK(autoenroll_decide(AUTOENROLL_ON, 1, KM_TEMPFAIL,
	    KMERR_UNREACHABLE) == AUTOENROLL_NO);
	CHECK(autoenroll_decide(AUTOENROLL_ON, 1, KM_PERMFAIL,
	    KMERR_REFUSED) == AUTOENROLL_NO);
	CHECK(autoenroll_decide(AUTOENROLL_ON, 1, KM_PROTO,
	    KMERR_NOTFOUND) == AUTOENROLL_NO);
	CHECK(autoenroll_decide(99, 1, KM_PERMFAIL, KMERR_NOTFOUND) ==
	    AUTOENROLL_NO);
}

TEST(race_uid_order)
{
	CHECK(keymodel_uid_before("9", "10"));
	CHECK(!keymodel_uid_before("10", "9"));
	CHECK(!keymodel_uid_before("12", "12"));
	CHECK(keymodel_uid_before("007", "8"));
	CHECK(keymodel_uid_before("99", "100"));
	CHECK(!keymodel_uid_before("100", "099"));
	/* not decimal: byte order, still a strict order */
	CHECK(keymodel_uid_before("a-1", "b-0"));
	CHECK(!keymodel_uid_before("b-0", "a-1"));
	CHECK(!keymodel_uid_before("x", "x"));
}

TEST(hook_event_enroll_proto)
{
	struct hook_request rq = { .event = HOOK_EVENT_ENROLL,
	    .address = "new@example.com", .queue_id = "Q1" };
	struct hook_answer a = { 0 };
	struct kmerr err;
	char buf[1024];
	size_t n = 0;

	CHECK(strcmp(hook_event_name(HOOK_EVENT_ENROLL), "enroll") == 0);
	CHECK(hook_action_valid(HOOK_EVENT_ENROLL, HOOK_ACTION_ALLOW));
	CHECK(hook_action_valid(HOOK_EVENT_ENROLL, HOOK_ACTION_DENY));
	CHECK(!hook_action_valid(HOOK_EVENT_ENROLL, HOOK_ACTION_PASSWORD));
	CHECK(!hook_action_valid(HOOK_EVENT_ENROLL, HOOK_ACTION_TEMPFAIL));
	CHECK(hook_request_format(&rq, buf, sizeof(buf), &n, &err) == KM_OK);
	CHECK(strncmp(buf, "event=enroll\naddress=new@example.com\n", 37) == 0);
	CHECK(hook_answer_parse("action=allow\n", 13, HOOK_EVENT_ENROLL, &a,
	    &err) == KM_OK && a.action == HOOK_ACTION_ALLOW);
	hook_answer_clear(&a);
	CHECK(hook_answer_parse("action=keep-encrypted\n", 22,
	    HOOK_EVENT_ENROLL, &a, &err) == KM_PROTO);
	hook_answer_clear(&a);
}

/* hook_path - absolute path of a test hook */
static const char *
hook_path(const char *name)
{
	static char p[PATH_MAX + 64], real[PATH_MAX];
	const char *t = getenv("KM_TOP");

	if (realpath(t && *t ? t : ".", real) == NULL)
		abort();
	snprintf(p, sizeof(p), "%s/tests/hooks/%s", real, name);
	return p;
}

/* ask_enroll - run a test hook for event enroll; the answer's action */
static enum hook_action
ask_enroll(const char *path, enum hook_failure *f)
{
	struct hook_opts o = { .path = path, .timeout_ms = 3000,
	    .max_running = 2, .on_failure_release = HOOK_ACTION_ALLOW };
	struct hook_request rq = { .event = HOOK_EVENT_ENROLL,
	    .address = "new@example.com" };
	struct hook_answer a = { 0 };
	struct kmerr err;
	struct hook *h;
	enum hook_action act;

	if ((h = hook_new(&o, &err)) == NULL)
		return HOOK_ACTION_NONE;
	hook_ask(h, &rq, &a, &err);
	act = a.action;
	*f = a.failure;
	hook_answer_clear(&a);
	hook_free(h);
	return act;
}

TEST(hook_enroll_failure_is_deny)
{
	enum hook_failure f;

	CHECK(ask_enroll(hook_path("allow"), &f) == HOOK_ACTION_ALLOW &&
	    f == HOOK_FAIL_NONE);
	CHECK(ask_enroll(hook_path("deny"), &f) == HOOK_ACTION_DENY &&
	    f == HOOK_FAIL_NONE);
	/* release's default here is allow: enroll must not borrow it */
	CHECK(ask_enroll(hook_path("garbage"), &f) == HOOK_ACTION_DENY &&
	    f == HOOK_FAIL_MALFORMED);
	CHECK(ask_enroll(hook_path("no-such-hook"), &f) == HOOK_ACTION_DENY &&
	    f != HOOK_FAIL_NONE);
	CHECK(ask_enroll(hook_path("exit1"), &f) == HOOK_ACTION_DENY &&
	    f == HOOK_FAIL_EXIT);
}

/* A fake hook for keystore_enroll_allowed(). */
static struct {
	enum hook_action action;
	enum hook_failure failure;
	enum hook_event seen;
	int calls;
} F;

static enum km_status
fake_hook(void *arg, const struct hook_request *rq, struct hook_answer *a,
    struct kmerr *err)
{
	(void)arg;
	F.calls++;
	F.seen = rq->event;
	a->action = F.action;
	a->failure = F.failure;
	snprintf(a->reason, sizeof(a->reason), "fake");
	return F.failure == HOOK_FAIL_NONE ? KM_OK :
	    kmerr_set(err, KM_PROTO, KMERR_BADINPUT, "malformed");
}

/* mk_ks - a keystore with only the fake hook (or none) */
static struct keystore *
mk_ks(int with_hook)
{
	static struct kmilter_conf conf;
	struct keystore_backend be;
	struct kmerr err;

	memset(&conf, 0, sizeof(conf));
	conf.state_dir = (char *)"/nonexistent";
	conf.seal_key_file = (char *)"/nonexistent/seal.key";
	conf.negative_ttl = 30;
	conf.memory_ttl = 60;
	conf.cert_ttl = 60;
	conf.key_ttl = 60;
	conf.hook_unlocked_key_ttl = 60;
	memset(&be, 0, sizeof(be));
	if (with_hook)
		be.hook_ask = fake_hook;
	return keystore_new_backend(&conf, &be, &err);
}

TEST(keystore_enroll_allowed_answers)
{
	struct keystore *ks;
	struct kmerr err;

	CHECK((ks = mk_ks(0)) != NULL);
	CHECK(keystore_enroll_allowed(ks, "a@example.com", "Q", &err) ==
	    KM_PERMFAIL && err.reason == KMERR_REFUSED);
	keystore_free(ks);
	CHECK((ks = mk_ks(1)) != NULL);
	memset(&F, 0, sizeof(F));
	F.action = HOOK_ACTION_ALLOW;
	CHECK(keystore_enroll_allowed(ks, "a@example.com", "Q", &err) ==
	    KM_OK && F.calls == 1 && F.seen == HOOK_EVENT_ENROLL);
	F.action = HOOK_ACTION_DENY;
	CHECK(keystore_enroll_allowed(ks, "a@example.com", "Q", &err) ==
	    KM_PERMFAIL && err.reason == KMERR_REFUSED);
	/* a failed hook whose default would be allow: still no */
	F.action = HOOK_ACTION_ALLOW;
	F.failure = HOOK_FAIL_MALFORMED;
	CHECK(keystore_enroll_allowed(ks, "a@example.com", "Q", &err) ==
	    KM_PERMFAIL && strstr(err.msg, "denied") != NULL);
	keystore_free(ks);
}

static const struct test_case tests[] = {
	T(decide_off_never),
	T(decide_on_and_hook),
	T(decide_outside_never),
	T(decide_only_on_not_found),
	T(race_uid_order),
	T(hook_event_enroll_proto),
	T(hook_enroll_failure_is_deny),
	T(keystore_enroll_allowed_answers),
	{ 0 }
};

int
main(int argc, char **argv)
{
	return harness_main(argc, argv, tests);
}
