/*
 * test_hook.c - unit tests of keyclient/hook.c and hook_proto.c: the answer
 * parser (every valid action, every malformed kind, random input, unknown
 * keys counted and never logged), the line scanner, the request format,
 * and the runner against the small hooks in tests/hooks/ and the sample
 * hooks in contrib/hooks/.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "hook.h"
#include "log.h"
#include "secmem.h"
#include "trustpath.h"

static char errbuf[512];
static struct kmerr tperr;	/* trustpath_check() */
static struct kmerr perr;	/* what the pure parsers say */
static struct kmerr herr;	/* what hook_new() and hook_ask() say */

/* top - the repository root */
static const char *
top(void)
{
	const char *t = getenv("KM_TOP");

	return t && *t ? t : ".";
}

/* hook_path - absolute, plain path of a test hook (hooks refuse "." and "..") */
static const char *
hook_path(const char *name)
{
	static char p[PATH_MAX + 64], real[PATH_MAX];

	if (realpath(top(), real) == NULL)
		abort();
	snprintf(p, sizeof(p), "%s/tests/hooks/%s", real, name);
	return p;
}

/* took - errbuf = herr's message, or a complaint when herr does not carry
 * the status st the call returned */
static void
took(enum km_status st)
{
	snprintf(errbuf, sizeof(errbuf), "%s", herr.msg);
	if (herr.status != st)
		snprintf(errbuf, sizeof(errbuf), "error object disagrees");
}

/* mkopts - hook_new() with its reason in errbuf */
static struct hook *
mkopts(const struct hook_opts *o)
{
	struct hook *h;

	kmerr_clear(&herr);
	h = hook_new(o, &herr);
	/* NULL must come with a failure status, a hook with none */
	took(h != NULL || herr.status == KM_OK ? KM_OK : herr.status);
	if (h == NULL && herr.status == KM_OK)
		snprintf(errbuf, sizeof(errbuf), "error object disagrees");
	return h;
}

/* mk - a hook on a path with timeout and slots */
static struct hook *
mk(const char *path, int timeout_ms, int max_running)
{
	struct hook_opts o = { .path = path, .timeout_ms = timeout_ms,
	    .max_running = max_running };

	return mkopts(&o);
}

/* ask - ask a hook for one address */
static enum km_status
ask(struct hook *h, enum hook_event ev, const char *addr,
    struct hook_answer *a)
{
	struct hook_request rq = { .event = ev, .address = addr,
	    .key = HOOK_KEY_ENCRYPTION, .level = HOOK_LEVEL_ENHANCED,
	    .queue_id = "4XyZ12", .gateway = "mx1.example.com" };

	enum km_status st;

	kmerr_clear(&herr);
	st = hook_ask(h, &rq, a, &herr);
	took(st);
	return st;
}

/* parse - parse a C string answer */
static enum km_status
parse(const char *s, enum hook_event ev, struct hook_answer *a)
{
	enum km_status st;

	kmerr_clear(&perr);
	st = hook_answer_parse(s, strlen(s), ev, a, &perr);
	snprintf(errbuf, sizeof(errbuf), "%s", perr.msg);
	if (st != KM_OK && (perr.status != st ||
	    (st == KM_PROTO && !kmerr_is(&perr, KMERR_BADINPUT))))
		snprintf(errbuf, sizeof(errbuf), "error object disagrees");
	return st;
}

TEST(parse_unlock_password)
{
	struct hook_answer a = { 0 };

	CHECK_EQ_INT(parse("action=password\npassword=s3cr=t p\n",
	    HOOK_EVENT_UNLOCK, &a), KM_OK);
	CHECK_EQ_INT(a.action, HOOK_ACTION_PASSWORD);
	CHECK_EQ_STR(a.password, "s3cr=t p");
	CHECK_EQ_INT(a.password_len, 8);
	CHECK_EQ_STR(a.reason, "");
	hook_answer_clear(&a);
	CHECK(a.password == NULL);
	CHECK_EQ_INT(a.action, HOOK_ACTION_NONE);
	hook_answer_clear(&a);	/* twice is harmless */
}

TEST(parse_every_valid_action)
{
	static const struct {
		const char *text;
		enum hook_event ev;
		enum hook_action act;
		const char *reason;
	} v[] = {
		{ "action=keep-encrypted\n", HOOK_EVENT_UNLOCK,
		    HOOK_ACTION_KEEP_ENCRYPTED, "" },
		{ "reason=user choice\naction=keep-encrypted", HOOK_EVENT_UNLOCK,
		    HOOK_ACTION_KEEP_ENCRYPTED, "user choice" },
		{ "action=tempfail\r\nreason=approver away\r\n",
		    HOOK_EVENT_UNLOCK, HOOK_ACTION_TEMPFAIL, "approver away" },
		{ "\n\naction=allow\n\n", HOOK_EVENT_RELEASE,
		    HOOK_ACTION_ALLOW, "" },
		{ "x-note=ignored\naction=deny\nreason=listed\tx\n",
		    HOOK_EVENT_RELEASE, HOOK_ACTION_DENY, "listed\tx" },
		{ "action=password\npassword=pw\nreason=ok\n",
		    HOOK_EVENT_UNLOCK, HOOK_ACTION_PASSWORD, "ok" },
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct hook_answer a = { 0 };

		CHECK_EQ_INT(parse(v[i].text, v[i].ev, &a), KM_OK);
		CHECK_EQ_INT(a.action, v[i].act);
		CHECK_EQ_STR(a.reason, v[i].reason);
		CHECK((a.password != NULL) == (v[i].act == HOOK_ACTION_PASSWORD));
		hook_answer_clear(&a);
	}
}

TEST(parse_malformed)
{
	static const struct {
		const char *text;
		enum hook_event ev;
		const char *err;
	} v[] = {
		{ "", HOOK_EVENT_UNLOCK, "no action" },
		{ "\n\n", HOOK_EVENT_RELEASE, "no action" },
		{ "reason=x\n", HOOK_EVENT_RELEASE, "no action" },
		{ "action=allow\n", HOOK_EVENT_UNLOCK, "not valid for event" },
		{ "action=deny\n", HOOK_EVENT_UNLOCK, "not valid for event" },
		{ "action=password\npassword=hunter2\n", HOOK_EVENT_RELEASE,
		    "not valid for event" },
		{ "action=keep-encrypted\n", HOOK_EVENT_RELEASE,
		    "not valid for event" },
		{ "action=tempfail\n", HOOK_EVENT_RELEASE,
		    "not valid for event" },
		{ "action=password\n", HOOK_EVENT_UNLOCK, "without a password" },
		{ "action=password\npassword=\n", HOOK_EVENT_UNLOCK,
		    "empty password" },
		{ "action=keep-encrypted\npassword=hunter2\n", HOOK_EVENT_UNLOCK,
		    "password given" },
		{ "action=tempfail\npassword=hunter2\n", HOOK_EVENT_UNLOCK,
		    "password given" },
		{ "action=deny\naction=deny\n", HOOK_EVENT_RELEASE,
		    "line 2: duplicate key \"action\"" },
		{ "action=password\npassword=hunter2\npassword=hunter3\n",
		    HOOK_EVENT_UNLOCK, "line 3: duplicate key \"password\"" },
		{ "reason=a\nreason=b\naction=deny\n", HOOK_EVENT_RELEASE,
		    "duplicate key \"reason\"" },
		{ "action\n", HOOK_EVENT_RELEASE, "line 1: no '='" },
		{ "action=allow\nhello world\n", HOOK_EVENT_RELEASE,
		    "line 2: no '='" },
		{ "=allow\n", HOOK_EVENT_RELEASE, "invalid key" },
		{ "Action=allow\n", HOOK_EVENT_RELEASE, "invalid key" },
		{ "act ion=allow\n", HOOK_EVENT_RELEASE, "invalid key" },
		{ "action=maybe\n", HOOK_EVENT_RELEASE, "unknown action" },
		{ "action=allow \n", HOOK_EVENT_RELEASE, "unknown action" },
		{ "action=ALLOW\n", HOOK_EVENT_RELEASE, "unknown action" },
		{ "action=none\n", HOOK_EVENT_RELEASE, "unknown action" },
		{ "action=\n", HOOK_EVENT_RELEASE, "unknown action" },
		{ "action=deny\nreason=a\033[31mb\n", HOOK_EVENT_RELEASE,
		    "control character in reason" },
		{ "action=password\npassword=hun\033ter2\n", HOOK_EVENT_UNLOCK,
		    "control character in password" },
		{ "action=password\npassword=hun\rter2\n", HOOK_EVENT_UNLOCK,
		    "control character in password" },
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct hook_answer a = { 0 };

		if (parse(v[i].text, v[i].ev, &a) != KM_PROTO ||
		    strstr(errbuf, v[i].err) == NULL) {
			printf("    case %zu: \"%s\" -> \"%s\"\n", i, v[i].text,
			    errbuf);
			CHECK(0);
		}
		CHECK(a.password == NULL);
		CHECK_EQ_INT(a.action, HOOK_ACTION_NONE);
		CHECK(strstr(errbuf, "hunter") == NULL);	/* never a value */
	}
}

TEST(parse_nul_and_lengths)
{
	struct hook_answer a = { 0 };
	char *big;
	size_t n;

	CHECK_EQ_INT(hook_answer_parse("action=allow\0\n", 14,
	    HOOK_EVENT_RELEASE, &a, &perr), KM_PROTO);
	CHECK(strstr(perr.msg, "NUL") != NULL);
	CHECK_EQ_INT(hook_answer_parse("action=password\npassword=a\0b\n", 29,
	    HOOK_EVENT_UNLOCK, &a, &perr), KM_PROTO);
	CHECK(a.password == NULL);

	big = malloc(HOOK_ANSWER_MAX + 2);
	CHECK(big != NULL);
	/* A line of exactly HOOK_LINE_MAX bytes is fine, one more is not. */
	n = (size_t)snprintf(big, HOOK_ANSWER_MAX, "action=allow\nx=");
	memset(big + n, 'a', HOOK_LINE_MAX - 2);
	n += HOOK_LINE_MAX - 2;
	big[n] = '\n';
	CHECK_EQ_INT(hook_answer_parse(big, n + 1, HOOK_EVENT_RELEASE, &a,
	    &perr), KM_OK);
	big[n] = 'a';
	big[n + 1] = '\n';
	CHECK_EQ_INT(hook_answer_parse(big, n + 2, HOOK_EVENT_RELEASE, &a,
	    &perr), KM_PROTO);
	CHECK(strstr(perr.msg, "line 2 longer than") != NULL);
	/* The whole answer is bounded too. */
	memset(big, '\n', HOOK_ANSWER_MAX + 1);
	memcpy(big, "action=allow", 12);
	CHECK_EQ_INT(hook_answer_parse(big, HOOK_ANSWER_MAX, HOOK_EVENT_RELEASE,
	    &a, &perr), KM_OK);
	CHECK_EQ_INT(hook_answer_parse(big, HOOK_ANSWER_MAX + 1,
	    HOOK_EVENT_RELEASE, &a, &perr), KM_PROTO);
	CHECK(strstr(perr.msg, "longer than 4096") != NULL);
	free(big);
}

TEST(parse_reason_truncated_and_replaces)
{
	struct hook_answer a = { 0 };
	char buf[1000];

	CHECK_EQ_INT(parse("action=password\npassword=one\n",
	    HOOK_EVENT_UNLOCK, &a), KM_OK);
	CHECK(a.password != NULL);
	/* Parsing into a used answer wipes the old password. */
	CHECK_EQ_INT(parse("action=keep-encrypted\n", HOOK_EVENT_UNLOCK, &a),
	    KM_OK);
	CHECK(a.password == NULL);
	CHECK_EQ_INT(a.password_len, 0);
	memcpy(buf, "action=deny\nreason=", 19);
	memset(buf + 19, 'r', 600);
	buf[619] = '\0';
	CHECK_EQ_INT(parse(buf, HOOK_EVENT_RELEASE, &a), KM_OK);
	CHECK_EQ_INT(strlen(a.reason), HOOK_REASON_MAX - 1);
	hook_answer_clear(&a);
}

/* check_invariants - what must hold for any parse result */
static int
check_invariants(enum km_status st, enum hook_event ev,
    const struct hook_answer *a)
{
	if (st == KM_OK)
		return hook_action_valid(ev, a->action) &&
		    (a->password != NULL) == (a->action == HOOK_ACTION_PASSWORD) &&
		    (a->password == NULL || strlen(a->password) == a->password_len);
	return st == KM_PROTO && a->action == HOOK_ACTION_NONE &&
	    a->password == NULL;
}

TEST(parse_random_input)
{
	static const char *const pieces[] = { "action=", "password=", "reason=",
	    "allow", "deny", "password", "keep-encrypted", "tempfail", "\n",
	    "\r\n", "=", "x", "\0", "\033", "action=password\npassword=p\n",
	    "action=allow\n", "zz=", "" };
	unsigned int seed = 20261123;
	char buf[HOOK_ANSWER_MAX + 64];
	int ok = 0, bad = 0;

	int saved_err = dup(2), devnull = open("/dev/null", O_WRONLY);

	/* Unknown keys are warned about: keep thousands of lines quiet. */
	if (saved_err >= 0 && devnull >= 0)
		dup2(devnull, 2);
	for (int i = 0; i < 40000; i++) {
		struct hook_answer a = { 0 };
		enum hook_event ev = (enum hook_event)(rand_r(&seed) & 1);
		size_t n = 0, want = (size_t)rand_r(&seed) % 200;
		enum km_status st;

		if (i % 2 == 0) {
			for (; n < want; n++)	/* raw random bytes */
				buf[n] = (char)rand_r(&seed);
		} else {
			while (n < want) {	/* random protocol pieces */
				const char *p = pieces[rand_r(&seed) %
				    (sizeof(pieces) / sizeof(pieces[0]))];
				size_t pl = p[0] ? strlen(p) : 1;

				memcpy(buf + n, p, pl);
				n += pl;
			}
		}
		if (i == 39999)		/* one oversize buffer */
			n = sizeof(buf);
		st = hook_answer_parse(buf, n, ev, &a, &perr);
		if (!check_invariants(st, ev, &a) && bad == 0)
			bad = i + 1;
		ok += st == KM_OK;
		hook_answer_clear(&a);
	}
	if (saved_err >= 0) {
		dup2(saved_err, 2);
		close(saved_err);
	}
	if (devnull >= 0)
		close(devnull);
	CHECK_EQ_INT(bad, 0);	/* 1 + index of the first broken case */
	printf("    %d of 40000 random answers were valid\n", ok);
	CHECK(ok > 0);	/* the generator reaches the valid paths too */
}

TEST(request_format)
{
	struct hook_request rq = { .event = HOOK_EVENT_UNLOCK,
	    .address = "alice@example.com", .key = HOOK_KEY_SIGNING,
	    .level = HOOK_LEVEL_ENHANCED, .queue_id = "ABC123",
	    .gateway = "mx1.example.com" };
	char buf[1024], big[400];
	size_t n = 0;

	CHECK_EQ_INT(hook_request_format(&rq, buf, sizeof(buf), &n, &perr), KM_OK);
	CHECK_EQ_STR(buf, "event=unlock\naddress=alice@example.com\n"
	    "key=signing\nlevel=enhanced\nqueue_id=ABC123\n"
	    "gateway=mx1.example.com\n\n");
	CHECK_EQ_INT(n, strlen(buf));
	rq.event = HOOK_EVENT_RELEASE;
	rq.key = HOOK_KEY_ENCRYPTION;
	rq.level = HOOK_LEVEL_DEFAULT;
	rq.queue_id = NULL;
	rq.gateway = "";
	CHECK_EQ_INT(hook_request_format(&rq, buf, sizeof(buf), &n, &perr), KM_OK);
	CHECK_EQ_STR(buf, "event=release\naddress=alice@example.com\n"
	    "key=encryption\nlevel=default\n\n");
	/* Injection of a line, control characters, missing and long fields. */
	rq.address = "alice@example.com\naction=allow";
	CHECK_EQ_INT(hook_request_format(&rq, buf, sizeof(buf), &n, &perr), KM_PROTO);
	CHECK(kmerr_is(&perr, KMERR_BADINPUT));
	rq.address = "al\x7fice@example.com";
	CHECK_EQ_INT(hook_request_format(&rq, buf, sizeof(buf), &n, &perr), KM_PROTO);
	rq.address = "";
	CHECK_EQ_INT(hook_request_format(&rq, buf, sizeof(buf), &n, &perr), KM_PROTO);
	rq.address = NULL;
	CHECK_EQ_INT(hook_request_format(&rq, buf, sizeof(buf), &n, &perr), KM_PROTO);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	rq.address = big;
	CHECK_EQ_INT(hook_request_format(&rq, buf, sizeof(buf), &n, &perr), KM_PROTO);
	rq.address = "bob@example.com";
	rq.gateway = "mx\r1";
	CHECK_EQ_INT(hook_request_format(&rq, buf, sizeof(buf), &n, &perr), KM_PROTO);
	rq.gateway = NULL;
	rq.level = (enum hook_level)7;
	CHECK_EQ_INT(hook_request_format(&rq, buf, sizeof(buf), &n, &perr), KM_PROTO);
	rq.level = HOOK_LEVEL_DEFAULT;
	CHECK_EQ_INT(hook_request_format(&rq, buf, 20, &n, &perr), KM_PROTO);
}

TEST(new_validates_options)
{
	struct hook_opts o = { .path = "/bin/true", .timeout_ms = 1000,
	    .max_running = 2 };
	struct hook *h;

	CHECK((h = mkopts(&o)) != NULL);
	h = hook_free(h);
	CHECK(h == NULL);
	o.path = "relative/hook";
	CHECK(mkopts(&o) == NULL);
	CHECK(strstr(errbuf, "absolute") != NULL);
	o.path = "/bin/true";
	o.timeout_ms = 0;
	CHECK(mkopts(&o) == NULL);
	o.timeout_ms = HOOK_TIMEOUT_MAX + 1;
	CHECK(mkopts(&o) == NULL);
	o.timeout_ms = 1000;
	o.max_running = 0;
	CHECK(mkopts(&o) == NULL);
	o.max_running = 1;
	o.wait_ms = -1;
	CHECK(mkopts(&o) == NULL);
	o.wait_ms = 0;
	o.on_failure_unlock = HOOK_ACTION_PASSWORD;
	CHECK(mkopts(&o) == NULL);
	CHECK(strstr(errbuf, "keep-encrypted or tempfail") != NULL);
	o.on_failure_unlock = HOOK_ACTION_ALLOW;
	CHECK(mkopts(&o) == NULL);
	o.on_failure_unlock = HOOK_ACTION_TEMPFAIL;
	o.on_failure_release = HOOK_ACTION_KEEP_ENCRYPTED;
	CHECK(mkopts(&o) == NULL);
	CHECK(mkopts(NULL) == NULL);
	CHECK(hook_free(NULL) == NULL);
}

/* stderr_begin - send stderr to a fresh temporary file; the saved fd */
static int
stderr_begin(void)
{
	char tmpl[] = "/tmp/test_hook.err.XXXXXX";
	int fd, saved;

	fflush(stderr);
	if ((fd = mkstemp(tmpl)) == -1 || (saved = dup(2)) == -1)
		abort();
	unlink(tmpl);
	dup2(fd, 2);
	close(fd);
	return saved;
}

/* stderr_end - restore stderr; what was written meanwhile, in buf */
static void
stderr_end(int saved, char *buf, size_t len)
{
	ssize_t n;

	fflush(stderr);
	n = pread(2, buf, len - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	dup2(saved, 2);
	close(saved);
}

TEST(parse_counts_unknown_keys_and_never_logs)
{
	struct hook_answer a = { 0 };
	char logged[4096];
	int saved = stderr_begin();

	CHECK_EQ_INT(parse("x-note=1\naction=deny\n\nzz=2\n",
	    HOOK_EVENT_RELEASE, &a), KM_OK);
	CHECK_EQ_INT(a.unknown_keys, 2);
	CHECK_EQ_INT(parse("action=deny\n", HOOK_EVENT_RELEASE, &a), KM_OK);
	CHECK_EQ_INT(a.unknown_keys, 0);
	/* Counted up to the line that fails, not past it. */
	CHECK_EQ_INT(parse("q=1\nbad line\nr=2\n", HOOK_EVENT_RELEASE, &a),
	    KM_PROTO);
	CHECK_EQ_INT(a.unknown_keys, 1);
	stderr_end(saved, logged, sizeof(logged));
	CHECK_EQ_STR(logged, "");	/* pure: the parser does not log */
	hook_answer_clear(&a);
}

TEST(scan_lines)
{
	static const char ans[] = "\nx-note=a=b\r\naction=deny\nzz=\n";
	struct hook_proto_scan sc;
	struct hook_proto_line l;
	struct kmerr err = { 0 };

	hook_proto_scan_init(&sc, ans, sizeof(ans) - 1);
	CHECK_EQ_INT(hook_proto_scan_next(&sc, &l, &err), 1);
	CHECK_EQ_INT(l.lineno, 2);
	CHECK(l.klen == 6 && memcmp(l.key, "x-note", 6) == 0);
	CHECK(l.vlen == 3 && memcmp(l.val, "a=b", 3) == 0);
	CHECK(!hook_proto_key_known(&l));
	CHECK_EQ_INT(hook_proto_scan_next(&sc, &l, &err), 1);
	CHECK_EQ_INT(l.lineno, 3);
	CHECK(hook_proto_key_known(&l));
	CHECK_EQ_INT(hook_proto_scan_next(&sc, &l, &err), 1);
	CHECK(l.lineno == 4 && l.klen == 2 && l.vlen == 0);
	CHECK_EQ_INT(hook_proto_scan_next(&sc, &l, &err), 0);
	hook_proto_scan_init(&sc, "a=1\nno equals\n", 14);
	CHECK_EQ_INT(hook_proto_scan_next(&sc, &l, NULL), 1);
	CHECK_EQ_INT(hook_proto_scan_next(&sc, &l, &err), -1);
	CHECK_EQ_STR(err.msg, "line 2: no '='");
	CHECK(kmerr_is(&err, KMERR_BADINPUT));
}

/* run_one - ask a test hook once with a fresh struct hook */
static enum km_status
run_one(const char *name, enum hook_event ev, int timeout_ms,
    struct hook_answer *a)
{
	struct hook *h = mk(hook_path(name), timeout_ms, 2);
	enum km_status st;

	if (h == NULL)
		return KM_NOMEM;
	st = ask(h, ev, "alice@example.com", a);
	hook_free(h);
	return st;
}

TEST(run_password)
{
	struct hook_answer a = { 0 };

	CHECK_EQ_INT(run_one("answer-password", HOOK_EVENT_UNLOCK, 3000, &a),
	    KM_OK);
	CHECK_EQ_INT(a.failure, HOOK_FAIL_NONE);
	CHECK_EQ_INT(a.action, HOOK_ACTION_PASSWORD);
	CHECK_EQ_STR(a.password,
	    "pw:unlock:alice@example.com:encryption:enhanced");
	CHECK_EQ_INT(a.exit_status, 0);
	hook_answer_clear(&a);
	CHECK(a.password == NULL);
}

TEST(run_logs_unknown_keys)
{
	struct hook_answer a = { 0 };
	char logged[4096];
	int saved = stderr_begin();
	enum km_status st;

	st = run_one("allow", HOOK_EVENT_RELEASE, 3000, &a);
	stderr_end(saved, logged, sizeof(logged));
	CHECK_EQ_INT(st, KM_OK);
	CHECK_EQ_INT(a.action, HOOK_ACTION_ALLOW);
	CHECK_EQ_INT(a.unknown_keys, 1);
	CHECK(strstr(logged, "hook answer line 1: unknown key \"x-comment\" "
	    "ignored\n") != NULL);
	hook_answer_clear(&a);
}

TEST(run_valid_answers)
{
	static const struct {
		const char *hook;
		enum hook_event ev;
		enum hook_action act;
		const char *reason;
	} v[] = {
		{ "keep-encrypted", HOOK_EVENT_UNLOCK, HOOK_ACTION_KEEP_ENCRYPTED,
		    "user asked to decrypt locally" },
		{ "tempfail", HOOK_EVENT_UNLOCK, HOOK_ACTION_TEMPFAIL,
		    "approver offline" },
		{ "allow", HOOK_EVENT_RELEASE, HOOK_ACTION_ALLOW, "" },
		{ "deny", HOOK_EVENT_RELEASE, HOOK_ACTION_DENY, "listed" },
		{ "noread", HOOK_EVENT_RELEASE, HOOK_ACTION_DENY, "" },
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct hook_answer a = { 0 };

		CHECK_EQ_INT(run_one(v[i].hook, v[i].ev, 3000, &a), KM_OK);
		CHECK_EQ_INT(a.failure, HOOK_FAIL_NONE);
		CHECK_EQ_INT(a.action, v[i].act);
		CHECK_EQ_STR(a.reason, v[i].reason);
		CHECK(a.password == NULL);
	}
}

/* run_fail - ask a misbehaving hook; check failure kind and default */
static int
run_fail(const char *name, enum hook_event ev, int timeout_ms,
    enum hook_failure want, enum km_status want_st, struct hook_answer *a)
{
	enum km_status st = run_one(name, ev, timeout_ms, a);

	if (st != want_st || a->failure != want || a->password != NULL ||
	    a->action != (ev == HOOK_EVENT_UNLOCK ?
	    HOOK_ACTION_KEEP_ENCRYPTED : HOOK_ACTION_DENY) ||
	    strstr(a->reason, "hook failed") == NULL || errbuf[0] == '\0') {
		printf("    %s: st %s failure %s action %s reason \"%s\"\n",
		    name, km_status_name(st), hook_failure_name(a->failure),
		    hook_action_name(a->action), a->reason);
		return 0;
	}
	return 1;
}

TEST(run_timeout_kills_group)
{
	struct hook_answer a = { 0 };

	CHECK(run_fail("sleep", HOOK_EVENT_UNLOCK, 300, HOOK_FAIL_TIMEOUT,
	    KM_TEMPFAIL, &a));
	CHECK(a.elapsed_ms >= 300 && a.elapsed_ms < 1500);
	CHECK_EQ_INT(a.exit_status, -SIGKILL);
	CHECK(strstr(errbuf, "within 300 ms") != NULL);
}

TEST(run_crash)
{
	struct hook_answer a = { 0 };

	CHECK(run_fail("segv", HOOK_EVENT_RELEASE, 3000, HOOK_FAIL_SIGNAL,
	    KM_TEMPFAIL, &a));
	CHECK_EQ_INT(a.exit_status, -SIGSEGV);
	CHECK(strstr(errbuf, "signal 11") != NULL);
}

TEST(run_garbage)
{
	struct hook_answer a = { 0 };

	CHECK(run_fail("garbage", HOOK_EVENT_RELEASE, 3000,
	    HOOK_FAIL_MALFORMED, KM_PROTO, &a));
	CHECK(strstr(errbuf, "line 1: no '='") != NULL);
}

TEST(run_megabytes)
{
	struct hook_answer a = { 0 };

	CHECK(run_fail("megabytes", HOOK_EVENT_RELEASE, 3000,
	    HOOK_FAIL_TOOLONG, KM_PROTO, &a));
	CHECK(a.elapsed_ms < 2000);
}

TEST(run_exit1)
{
	struct hook_answer a = { 0 };

	CHECK(run_fail("exit1", HOOK_EVENT_RELEASE, 3000, HOOK_FAIL_EXIT,
	    KM_TEMPFAIL, &a));
	CHECK_EQ_INT(a.exit_status, 1);
	CHECK_EQ_STR(a.diag, "exit1: refusing on purpose");
}

TEST(run_not_executable)
{
	struct hook_answer a = { 0 };

	CHECK(run_fail("not-executable", HOOK_EVENT_UNLOCK, 3000,
	    HOOK_FAIL_SPAWN, KM_TEMPFAIL, &a));
	CHECK(strstr(errbuf, "Permission denied") != NULL);
}

TEST(run_missing)
{
	struct hook_answer a = { 0 };

	CHECK(run_fail("no-such-hook", HOOK_EVENT_UNLOCK, 3000,
	    HOOK_FAIL_SPAWN, KM_TEMPFAIL, &a));
	CHECK(strstr(errbuf, "No such file") != NULL);
}

TEST(run_configured_defaults)
{
	struct hook_opts o = { .path = hook_path("exit1"), .timeout_ms = 3000,
	    .max_running = 1, .on_failure_unlock = HOOK_ACTION_TEMPFAIL,
	    .on_failure_release = HOOK_ACTION_ALLOW };
	struct hook_answer a = { 0 };
	struct hook *h = mkopts(&o);

	CHECK(h != NULL);
	CHECK_EQ_INT(ask(h, HOOK_EVENT_UNLOCK, "a@example.com", &a),
	    KM_TEMPFAIL);
	CHECK_EQ_INT(a.action, HOOK_ACTION_TEMPFAIL);
	CHECK_EQ_INT(ask(h, HOOK_EVENT_RELEASE, "a@example.com", &a),
	    KM_TEMPFAIL);
	CHECK_EQ_INT(a.action, HOOK_ACTION_ALLOW);
	CHECK_EQ_INT(a.failure, HOOK_FAIL_EXIT);
	/* An invalid request never reaches the hook and gets the default. */
	CHECK_EQ_INT(ask(h, HOOK_EVENT_RELEASE, "a@b\nevent=x", &a), KM_PROTO);
	CHECK_EQ_INT(a.failure, HOOK_FAIL_REQUEST);
	CHECK_EQ_INT(a.action, HOOK_ACTION_ALLOW);
	hook_free(h);
}

/* live_in_group - processes of a group that are not zombies */
static int
live_in_group(int pgid)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		char path[300], buf[512], *rp, st;
		int pg = 0;
		FILE *f;

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		if (fgets(buf, sizeof(buf), f) != NULL &&
		    (rp = strrchr(buf, ')')) != NULL &&
		    sscanf(rp + 1, " %c %*d %d", &st, &pg) == 2 &&
		    pg == pgid && st != 'Z')
			n++;
		fclose(f);
	}
	closedir(d);
	return n;
}

TEST(run_environment_is_clean)
{
	struct hook_answer a = { 0 };
	sigset_t set, old;
	struct sigaction sa = { 0 }, oldsa;
	char *p;
	int leak, pgid = 0, pid = 0;
	unsigned long long ign = 1;

	/* Dirty the parent: a secret env var, a leaked fd, blocked and
	 * ignored signals; none of it must reach the hook. */
	setenv("KMILTER_TEST_SECRET", "do-not-pass", 1);
	leak = open("/dev/null", O_RDONLY);	/* no O_CLOEXEC on purpose */
	CHECK(leak >= 3);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGHUP, &sa, &oldsa);

	CHECK_EQ_INT(run_one("env-dump", HOOK_EVENT_RELEASE, 3000, &a), KM_OK);

	pthread_sigmask(SIG_SETMASK, &old, NULL);
	sigaction(SIGHUP, &oldsa, NULL);
	close(leak);
	unsetenv("KMILTER_TEST_SECRET");
	printf("    %s\n", a.reason);
	CHECK(strstr(a.reason, "env=KMILTER_HOOK_VERSION=1 PATH=/usr/bin:/bin "
	    "PWD=/ ;") != NULL || strstr(a.reason,
	    "env=KMILTER_HOOK_VERSION=1 PATH=/usr/bin:/bin ;") != NULL);
	CHECK(strstr(a.reason, "SECRET") == NULL);
	CHECK(strstr(a.reason, ";fds= 0 1 2;") != NULL);
	CHECK(strstr(a.reason, ";cwd=/;") != NULL);
	CHECK(strstr(a.reason, ";blk=0000000000000000;") != NULL);
	/* No standard signal ignored (SIGHUP was, in the parent).  glibc's
	 * posix_spawn leaves its two internal real-time signals (32, 33)
	 * ignored in the child: not ours to change, so masked out. */
	CHECK((p = strstr(a.reason, ";ign=")) != NULL);
	CHECK(sscanf(p, ";ign=%llx;", &ign) == 1);
	CHECK_EQ_INT(ign & ~0x180000000ULL, 0);
	CHECK((p = strstr(a.reason, ";pgid=")) != NULL);
	CHECK(sscanf(p, ";pgid=%d;pid=%d", &pgid, &pid) == 2);
	CHECK_EQ_INT(pgid, pid);	/* its own process group */
	/* The straggler it left in its group was killed with it (a zombie
	 * waiting for init to reap it at most); SIGKILL is delivered at
	 * once but the process may take a moment to finish dying. */
	for (int i = 0; i < 100 && live_in_group(pgid) != 0; i++)
		usleep(10000);
	CHECK_EQ_INT(live_in_group(pgid), 0);
}

struct conc_arg {
	struct hook	*h;
	int		 ok;
};

/* conc_thread - one of the concurrent askers */
static void *
conc_thread(void *arg)
{
	struct conc_arg *c = arg;
	struct hook_answer a = { 0 };
	struct hook_request rq = { .event = HOOK_EVENT_RELEASE,
	    .address = "c@example.com" };
	struct kmerr err;
	sigset_t all;

	sigfillset(&all);	/* like the milter's worker threads */
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	c->ok = hook_ask(c->h, &rq, &a, &err) == KM_OK &&
	    a.action == HOOK_ACTION_ALLOW && a.failure == HOOK_FAIL_NONE;
	if (!c->ok)
		printf("    thread: %s\n", err.msg);
	return NULL;
}

/* make_from_template - copy a script, replacing one string, mode 0755 */
static int
make_from_template(const char *src, const char *from, const char *to,
    const char *dst)
{
	char buf[16384], out[20000], *p;
	FILE *f;
	size_t n;

	if ((f = fopen(src, "r")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	if ((p = strstr(buf, from)) == NULL)
		return -1;
	*p = '\0';
	snprintf(out, sizeof(out), "%s%s%s", buf, to, p + strlen(from));
	if ((f = fopen(dst, "w")) == NULL)
		return -1;
	fputs(out, f);
	fclose(f);
	return chmod(dst, 0755);
}

/* read_int - an integer from a small file, -1 if none */
static int
read_int(const char *path)
{
	FILE *f = fopen(path, "r");
	int v = -1;

	if (f == NULL)
		return -1;
	if (fscanf(f, "%d", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

TEST(run_concurrency_limit)
{
	char dir[] = "/tmp/kmhook.XXXXXX", script[256], path[300];
	struct conc_arg c[16];
	pthread_t t[16];
	struct hook_stats hs;
	struct hook *h;
	struct timespec t0, t1;
	long ms;
	int ok = 1;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(script, sizeof(script), "%s/hook", dir);
	CHECK(make_from_template(hook_path("concurrency.in"), "@DIR@", dir,
	    script) == 0);
	CHECK((h = mk(script, 5000, 2)) != NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 16; i++) {
		c[i].h = h;
		CHECK(pthread_create(&t[i], NULL, conc_thread, &c[i]) == 0);
	}
	for (int i = 0; i < 16; i++) {
		pthread_join(t[i], NULL);
		ok &= c[i].ok;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	hook_stats(h, &hs);
	hook_free(h);
	snprintf(path, sizeof(path), "%s/max", dir);
	printf("    16 asks, max_running 2: %ld ms, hooks seen at once %d, "
	    "peak %d\n", ms, read_int(path), hs.peak_running);
	CHECK(ok);
	CHECK_EQ_INT(read_int(path), 2);	/* never more, and really 2 */
	CHECK_EQ_INT(hs.peak_running, 2);
	CHECK_EQ_INT(hs.answered, 16);
	CHECK_EQ_INT(hs.running, 0);
	CHECK(ms >= 8 * 50);			/* 8 rounds of 0.05 s at least */
	snprintf(path, sizeof(path), "%s/count", dir);
	CHECK_EQ_INT(read_int(path), 0);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	CHECK(system(path) == 0);
}

struct busy_arg {
	struct hook		*h;
	struct hook_answer	 a;
};

/* busy_thread - hold the only slot with a slow hook */
static void *
busy_thread(void *arg)
{
	struct busy_arg *b = arg;
	struct hook_request rq = { .event = HOOK_EVENT_UNLOCK,
	    .address = "slow@example.com" };
	struct kmerr err;

	hook_ask(b->h, &rq, &b->a, &err);
	return NULL;
}

/* wait_running - poll until n hooks run; 0 after ms */
static int
wait_running(struct hook *h, int n, int ms)
{
	struct hook_stats hs;

	for (int waited = 0; waited <= ms; waited += 5) {
		hook_stats(h, &hs);
		if (hs.running == n)
			return 1;
		usleep(5000);
	}
	fprintf(stderr, "    not within %d ms: %d hook(s) running\n", ms, n);
	return 0;
}

TEST(run_busy)
{
	struct hook_opts o = { .path = hook_path("sleep"), .timeout_ms = 800,
	    .max_running = 1, .wait_ms = 100 };
	struct busy_arg b = { 0 };
	struct hook_answer a = { 0 };
	struct hook_stats hs;
	pthread_t t;

	CHECK((b.h = mkopts(&o)) != NULL);
	CHECK(pthread_create(&t, NULL, busy_thread, &b) == 0);
	/* Ask only once the slow hook holds the slot: a fixed pause lost
	 * the race on a loaded machine (this ask took the slot first). */
	CHECK(wait_running(b.h, 1, 5000));
	CHECK_EQ_INT(ask(b.h, HOOK_EVENT_UNLOCK, "x@example.com", &a),
	    KM_TEMPFAIL);
	pthread_join(t, NULL);
	hook_stats(b.h, &hs);
	hook_free(b.h);
	CHECK_EQ_INT(a.failure, HOOK_FAIL_BUSY);
	CHECK_EQ_INT(a.action, HOOK_ACTION_KEEP_ENCRYPTED);
	CHECK(a.elapsed_ms >= 100 && a.elapsed_ms < 600);
	CHECK(strstr(errbuf, "busy") != NULL);
	CHECK_EQ_INT(b.a.failure, HOOK_FAIL_TIMEOUT);
	CHECK_EQ_INT(hs.busy, 1);
	CHECK_EQ_INT(hs.timeouts, 1);
	CHECK_EQ_INT(hs.asked, 2);
}

/* contrib_path - absolute path of a sample hook */
static const char *
contrib_path(const char *name)
{
	static char p[PATH_MAX + 64];
	char real[PATH_MAX];

	if (realpath(top(), real) == NULL)
		abort();
	snprintf(p, sizeof(p), "%s/contrib/hooks/%s", real, name);
	return p;
}

/* write_file - write a string to a file with a mode */
static int
write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	if (f == NULL)
		return -1;
	fputs(text, f);
	fclose(f);
	return chmod(path, mode);
}

TEST(contrib_passwords_from_file)
{
	char dir[] = "/tmp/kmhook.XXXXXX", script[256], pwfile[256], cmd[300];
	struct hook_answer a = { 0 };
	struct hook *h;

	CHECK(access("/usr/bin/python3", X_OK) == 0);	/* tests/install-deps */
	CHECK(mkdtemp(dir) != NULL);
	snprintf(script, sizeof(script), "%s/passwords-from-file", dir);
	snprintf(pwfile, sizeof(pwfile), "%s/passwords", dir);
	/* A copy whose path constant points to the temp file. */
	snprintf(cmd, sizeof(cmd), "\"%s\"", pwfile);
	CHECK(make_from_template(contrib_path("passwords-from-file"),
	    "\"/etc/kmilter/hook-passwords\"", cmd, script) == 0);
	CHECK(write_file(pwfile, "# test passwords\n"
	    "alice@example.com:open:se=same\n"
	    "\n"
	    "Bob@Example.COM:b0b\n", 0600) == 0);
	CHECK((h = mk(script, 5000, 2)) != NULL);

	CHECK_EQ_INT(ask(h, HOOK_EVENT_UNLOCK, "alice@example.com", &a), KM_OK);
	CHECK_EQ_INT(a.action, HOOK_ACTION_PASSWORD);
	CHECK_EQ_STR(a.password, "open:se=same");
	CHECK_EQ_INT(ask(h, HOOK_EVENT_UNLOCK, "bob@example.com", &a), KM_OK);
	CHECK_EQ_STR(a.password, "b0b");
	CHECK_EQ_INT(ask(h, HOOK_EVENT_UNLOCK, "carol@example.com", &a), KM_OK);
	CHECK_EQ_INT(a.action, HOOK_ACTION_KEEP_ENCRYPTED);
	CHECK(a.password == NULL);
	CHECK_EQ_INT(ask(h, HOOK_EVENT_RELEASE, "alice@example.com", &a),
	    KM_OK);
	CHECK_EQ_INT(a.action, HOOK_ACTION_ALLOW);
	/* A file others can read is refused: the default applies. */
	CHECK(chmod(pwfile, 0644) == 0);
	CHECK_EQ_INT(ask(h, HOOK_EVENT_UNLOCK, "alice@example.com", &a),
	    KM_TEMPFAIL);
	CHECK_EQ_INT(a.failure, HOOK_FAIL_EXIT);
	CHECK_EQ_INT(a.action, HOOK_ACTION_KEEP_ENCRYPTED);
	CHECK(a.password == NULL);
	CHECK(strstr(a.diag, "readable by group or others") != NULL);
	/* A missing file too. */
	CHECK(unlink(pwfile) == 0);
	CHECK_EQ_INT(ask(h, HOOK_EVENT_UNLOCK, "alice@example.com", &a),
	    KM_TEMPFAIL);
	CHECK(strstr(a.diag, "cannot open") != NULL);
	hook_answer_clear(&a);
	hook_free(h);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK(system(cmd) == 0);
}

TEST(contrib_deny_release_list)
{
	char dir[] = "/tmp/kmhook.XXXXXX", script[256], list[256], cmd[300];
	struct hook_answer a = { 0 };
	struct hook *h;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(script, sizeof(script), "%s/deny-release-list", dir);
	snprintf(list, sizeof(list), "%s/list", dir);
	CHECK(make_from_template(contrib_path("deny-release-list"),
	    "/etc/kmilter/deny-release.list", list, script) == 0);
	CHECK((h = mk(script, 5000, 2)) != NULL);
	/* No list: nothing is refused. */
	CHECK_EQ_INT(ask(h, HOOK_EVENT_RELEASE, "eve@example.com", &a), KM_OK);
	CHECK_EQ_INT(a.action, HOOK_ACTION_ALLOW);
	CHECK(write_file(list, "# refused\nEve@Example.com\n\n"
	    "mallory@example.com", 0644) == 0);
	CHECK_EQ_INT(ask(h, HOOK_EVENT_RELEASE, "eve@example.com", &a), KM_OK);
	CHECK_EQ_INT(a.action, HOOK_ACTION_DENY);
	CHECK(strstr(a.reason, "deny-release list") != NULL);
	CHECK_EQ_INT(ask(h, HOOK_EVENT_RELEASE, "mallory@example.com", &a),
	    KM_OK);
	CHECK_EQ_INT(a.action, HOOK_ACTION_DENY);
	CHECK_EQ_INT(ask(h, HOOK_EVENT_RELEASE, "alice@example.com", &a),
	    KM_OK);
	CHECK_EQ_INT(a.action, HOOK_ACTION_ALLOW);
	CHECK_EQ_INT(ask(h, HOOK_EVENT_UNLOCK, "eve@example.com", &a), KM_OK);
	CHECK_EQ_INT(a.action, HOOK_ACTION_KEEP_ENCRYPTED);
	hook_free(h);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK(system(cmd) == 0);
}

/* safe_tree - a temp dir (0755) with a hook (0755) in it; paths in dir, hook */
static int
safe_tree(char *dir, size_t dlen, char *hook, size_t hlen)
{
	snprintf(dir, dlen, "/tmp/kmhook.XXXXXX");
	if (mkdtemp(dir) == NULL || chmod(dir, 0755) != 0)
		return -1;
	snprintf(hook, hlen, "%s/hook", dir);
	return make_from_template(hook_path("allow"), "action=allow",
	    "action=allow", hook);
}

/* cleanup_tree - remove what safe_tree made (and the marker of marker_hook) */
static void
cleanup_tree(const char *dir)
{
	char p[300];

	snprintf(p, sizeof(p), "%s/hook", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/ran", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/link", dir);
	unlink(p);
	rmdir(dir);
}

TEST(check_path_safe_and_missing)
{
	char dir[64], hook[128], p[160];

	CHECK(safe_tree(dir, sizeof(dir), hook, sizeof(hook)) == 0);
	CHECK_EQ_INT(trustpath_check(hook, 0, &tperr),
	    TRUSTPATH_SAFE);
	/* /tmp above it is world-writable but sticky and root's: fine */
	CHECK_EQ_INT(trustpath_check(hook_path("allow"), 0, &tperr), TRUSTPATH_SAFE);
	snprintf(p, sizeof(p), "%s/nothere", dir);
	CHECK_EQ_INT(trustpath_check(p, 0, &tperr),
	    TRUSTPATH_MISSING);
	/* owned by the milter user (not root) is fine when that is the user */
	CHECK(chown(hook, 65534, 65534) == 0);
	CHECK_EQ_INT(trustpath_check(hook, 65534, &tperr),
	    TRUSTPATH_SAFE);
	cleanup_tree(dir);
}

TEST(check_path_refuses_writable_or_foreign)
{
	char dir[64], hook[128];

	CHECK(safe_tree(dir, sizeof(dir), hook, sizeof(hook)) == 0);
	CHECK(chmod(hook, 0757) == 0);
	CHECK_EQ_INT(trustpath_check(hook, 0, &tperr),
	    TRUSTPATH_UNSAFE);
	CHECK(strstr(tperr.msg, hook) != NULL && strstr(tperr.msg, "others") != NULL);
	CHECK(chmod(hook, 0775) == 0);
	CHECK_EQ_INT(trustpath_check(hook, 0, &tperr),
	    TRUSTPATH_UNSAFE);
	CHECK(strstr(tperr.msg, "group") != NULL);
	CHECK(chmod(hook, 0755) == 0);
	/* a world-writable directory, even sticky: others could replace it */
	CHECK(chmod(dir, 01777) == 0);
	CHECK_EQ_INT(trustpath_check(hook, 0, &tperr),
	    TRUSTPATH_UNSAFE);
	CHECK(strstr(tperr.msg, dir) != NULL);
	CHECK(chmod(dir, 0755) == 0);
	/* owned by someone other than root and the user */
	CHECK(chown(hook, 65534, 65534) == 0);
	CHECK_EQ_INT(trustpath_check(hook, 1, &tperr),
	    TRUSTPATH_UNSAFE);
	CHECK(strstr(tperr.msg, "owned by uid 65534") != NULL);
	CHECK(chown(hook, 0, 0) == 0);
	CHECK(chown(dir, 65534, 65534) == 0);
	CHECK_EQ_INT(trustpath_check(hook, 1, &tperr),
	    TRUSTPATH_UNSAFE);
	CHECK(chown(dir, 0, 0) == 0);
	CHECK_EQ_INT(trustpath_check(hook, 0, &tperr),
	    TRUSTPATH_SAFE);
	cleanup_tree(dir);
}

TEST(check_path_refuses_links_and_odd_paths)
{
	char dir[64], hook[128], p[160];

	CHECK(safe_tree(dir, sizeof(dir), hook, sizeof(hook)) == 0);
	snprintf(p, sizeof(p), "%s/link", dir);
	CHECK(symlink(hook, p) == 0);
	CHECK_EQ_INT(trustpath_check(p, 0, &tperr),
	    TRUSTPATH_UNSAFE);
	CHECK(strstr(tperr.msg, "symbolic link") != NULL);
	snprintf(p, sizeof(p), "%s/../%s/hook", dir, dir + 5);
	CHECK_EQ_INT(trustpath_check(p, 0, &tperr),
	    TRUSTPATH_UNSAFE);
	snprintf(p, sizeof(p), "%s//hook", dir);
	CHECK_EQ_INT(trustpath_check(p, 0, &tperr),
	    TRUSTPATH_UNSAFE);
	CHECK_EQ_INT(trustpath_check("hook", 0, &tperr),
	    TRUSTPATH_UNSAFE);
	CHECK_EQ_INT(trustpath_check(dir, 0, &tperr),
	    TRUSTPATH_UNSAFE);		/* a directory, not a file */
	cleanup_tree(dir);
}

TEST(run_unsafe_hook_not_run)
{
	char dir[64], hook[128], ran[160], text[400];
	struct hook_answer a = { 0 };
	struct hook *h;

	CHECK(safe_tree(dir, sizeof(dir), hook, sizeof(hook)) == 0);
	snprintf(ran, sizeof(ran), "%s/ran", dir);
	snprintf(text, sizeof(text), "#!/bin/sh\n: > %s\n"
	    "echo action=password\necho password=stolen\n", ran);
	CHECK(write_file(hook, text, 0755) == 0);
	CHECK((h = mk(hook, 3000, 1)) != NULL);
	CHECK_EQ_INT(ask(h, HOOK_EVENT_UNLOCK, "a@example.com", &a), KM_OK);
	CHECK(access(ran, F_OK) == 0);
	CHECK(unlink(ran) == 0);
	hook_answer_clear(&a);
	/* made world-writable while the hook object lives: not run */
	CHECK(chmod(hook, 0777) == 0);
	CHECK_EQ_INT(ask(h, HOOK_EVENT_UNLOCK, "a@example.com", &a),
	    KM_TEMPFAIL);
	CHECK_EQ_INT(a.failure, HOOK_FAIL_UNSAFE);
	CHECK_EQ_INT(a.action, HOOK_ACTION_KEEP_ENCRYPTED);
	CHECK(a.password == NULL);
	CHECK(strstr(a.reason, "writable by others") != NULL);
	CHECK(access(ran, F_OK) != 0);
	/* and in a world-writable directory */
	CHECK(chmod(hook, 0755) == 0);
	CHECK(chmod(dir, 0777) == 0);
	CHECK_EQ_INT(ask(h, HOOK_EVENT_RELEASE, "a@example.com", &a),
	    KM_TEMPFAIL);
	CHECK_EQ_INT(a.failure, HOOK_FAIL_UNSAFE);
	CHECK_EQ_INT(a.action, HOOK_ACTION_DENY);
	CHECK(access(ran, F_OK) != 0);
	hook_free(h);
	chmod(dir, 0755);
	cleanup_tree(dir);
}

static const struct test_case tests[] = {
	T(parse_unlock_password),
	T(parse_every_valid_action),
	T(parse_malformed),
	T(parse_nul_and_lengths),
	T(parse_reason_truncated_and_replaces),
	T(parse_random_input),
	T(request_format),
	T(new_validates_options),
	T(parse_counts_unknown_keys_and_never_logs),
	T(scan_lines),
	T(run_password),
	T(run_logs_unknown_keys),
	T(run_valid_answers),
	T(run_timeout_kills_group),
	T(run_crash),
	T(run_garbage),
	T(run_megabytes),
	T(run_exit1),
	T(run_not_executable),
	T(run_missing),
	T(run_configured_defaults),
	T(run_environment_is_clean),
	T(run_concurrency_limit),
	T(run_busy),
	T(contrib_passwords_from_file),
	T(contrib_deny_release_list),
	T(check_path_safe_and_missing),
	T(check_path_refuses_writable_or_foreign),
	T(check_path_refuses_links_and_odd_paths),
	T(run_unsafe_hook_not_run),
	{ 0 }
};

/* main - run the cases, logging to stderr */
int
main(int argc, char **argv)
{
	log_init("test_hook", 0, 1, 0);
	return harness_main(argc, argv, tests);
}
