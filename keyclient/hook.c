/*
 * hook.c - run the administrator's hook and parse its answer (see hook.h
 * and kmilter-hook(8)).
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "hook.h"
#include "log.h"
#include "secmem.h"
#include "trustpath.h"

#define FIELD_MAX	320	/* longest request value */
#define REQUEST_MAX	2048	/* the formatted request always fits */
#define KEY_MAX		32	/* longest answer key */

struct hook {
	char		*path;
	int		 timeout_ms;
	int		 max_running;
	int		 wait_ms;
	enum hook_action def_unlock;
	enum hook_action def_release;
	pthread_mutex_t	 mu;
	pthread_cond_t	 cv;
	struct hook_stats st;
};

static const char *const action_names[] = {
	[HOOK_ACTION_NONE] = "none",
	[HOOK_ACTION_PASSWORD] = "password",
	[HOOK_ACTION_KEEP_ENCRYPTED] = "keep-encrypted",
	[HOOK_ACTION_TEMPFAIL] = "tempfail",
	[HOOK_ACTION_ALLOW] = "allow",
	[HOOK_ACTION_DENY] = "deny",
};

static const char *const failure_names[] = {
	[HOOK_FAIL_NONE] = "none",
	[HOOK_FAIL_BUSY] = "busy",
	[HOOK_FAIL_SPAWN] = "cannot start",
	[HOOK_FAIL_TIMEOUT] = "timeout",
	[HOOK_FAIL_SIGNAL] = "killed by signal",
	[HOOK_FAIL_EXIT] = "non-zero exit",
	[HOOK_FAIL_TOOLONG] = "answer too long",
	[HOOK_FAIL_MALFORMED] = "malformed answer",
	[HOOK_FAIL_REQUEST] = "invalid request",
	[HOOK_FAIL_NOMEM] = "out of resources",
	[HOOK_FAIL_IO] = "i/o error",
	[HOOK_FAIL_UNSAFE] = "unsafe hook",
};

/* hook_action_name - printable name of an action, as in the protocol */
const char *
hook_action_name(enum hook_action a)
{
	if ((unsigned)a < sizeof(action_names) / sizeof(action_names[0]))
		return action_names[a];
	return "invalid";
}

/* hook_action_from_name - action of a protocol name; NONE if unknown */
enum hook_action
hook_action_from_name(const char *s)
{
	for (size_t i = 1; i < sizeof(action_names) / sizeof(action_names[0]); i++)
		if (strcmp(s, action_names[i]) == 0)
			return (enum hook_action)i;
	return HOOK_ACTION_NONE;
}

/* hook_action_valid - whether an action is a valid answer to an event */
int
hook_action_valid(enum hook_event ev, enum hook_action a)
{
	if (ev == HOOK_EVENT_UNLOCK)
		return a == HOOK_ACTION_PASSWORD ||
		    a == HOOK_ACTION_KEEP_ENCRYPTED || a == HOOK_ACTION_TEMPFAIL;
	if (ev == HOOK_EVENT_RELEASE)
		return a == HOOK_ACTION_ALLOW || a == HOOK_ACTION_DENY;
	return 0;
}

/* hook_event_name - printable name of an event, as in the protocol */
const char *
hook_event_name(enum hook_event ev)
{
	switch (ev) {
	case HOOK_EVENT_UNLOCK:
		return "unlock";
	case HOOK_EVENT_RELEASE:
		return "release";
	}
	return "invalid";
}

/* hook_failure_name - printable name of a failure kind */
const char *
hook_failure_name(enum hook_failure f)
{
	if ((unsigned)f < sizeof(failure_names) / sizeof(failure_names[0]))
		return failure_names[f];
	return "invalid";
}

/* hook_new - check the options and make a hook; NULL with errstr on error */
struct hook *
hook_new(const struct hook_opts *o, char *errstr, size_t errlen)
{
	struct hook *h = NULL;
	pthread_condattr_t ca;
	enum hook_action du, dr;
	int have_mu = 0;

	if (o == NULL || o->path == NULL || o->path[0] != '/') {
		snprintf(errstr, errlen, "hook path must be absolute");
		return NULL;
	}
	if (o->timeout_ms < 1 || o->timeout_ms > HOOK_TIMEOUT_MAX) {
		snprintf(errstr, errlen, "hook timeout must be 1..%d ms",
		    HOOK_TIMEOUT_MAX);
		return NULL;
	}
	if (o->max_running < 1 || o->max_running > HOOK_RUNNING_MAX) {
		snprintf(errstr, errlen, "hook max_running must be 1..%d",
		    HOOK_RUNNING_MAX);
		return NULL;
	}
	if (o->wait_ms < 0 || o->wait_ms > HOOK_TIMEOUT_MAX) {
		snprintf(errstr, errlen, "hook wait must be 0..%d ms",
		    HOOK_TIMEOUT_MAX);
		return NULL;
	}
	du = o->on_failure_unlock ? o->on_failure_unlock :
	    HOOK_ACTION_KEEP_ENCRYPTED;
	dr = o->on_failure_release ? o->on_failure_release : HOOK_ACTION_DENY;
	if (du == HOOK_ACTION_PASSWORD ||
	    !hook_action_valid(HOOK_EVENT_UNLOCK, du)) {
		snprintf(errstr, errlen, "hook default for unlock must be "
		    "keep-encrypted or tempfail, not %s", hook_action_name(du));
		return NULL;
	}
	if (!hook_action_valid(HOOK_EVENT_RELEASE, dr)) {
		snprintf(errstr, errlen, "hook default for release must be "
		    "allow or deny, not %s", hook_action_name(dr));
		return NULL;
	}
	if ((h = calloc(1, sizeof(*h))) == NULL ||
	    (h->path = strdup(o->path)) == NULL)
		goto nomem;
	if (pthread_mutex_init(&h->mu, NULL) != 0)
		goto nomem;
	have_mu = 1;
	if (pthread_condattr_init(&ca) != 0)
		goto nomem;
	if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&h->cv, &ca) != 0) {
		pthread_condattr_destroy(&ca);
		goto nomem;
	}
	pthread_condattr_destroy(&ca);
	h->timeout_ms = o->timeout_ms;
	h->max_running = o->max_running;
	h->wait_ms = o->wait_ms ? o->wait_ms : o->timeout_ms;
	h->def_unlock = du;
	h->def_release = dr;
	if (access(h->path, X_OK) != 0)
		log_warn("hook %s is not executable (yet)", h->path);
	return h;

nomem:
	snprintf(errstr, errlen, "hook: out of memory");
	if (h != NULL) {
		if (have_mu)
			pthread_mutex_destroy(&h->mu);
		free(h->path);
		free(h);
	}
	return NULL;
}

/* hook_free - free a hook (no hook_ask may be running); returns NULL */
struct hook *
hook_free(struct hook *h)
{
	if (h == NULL)
		return NULL;
	pthread_cond_destroy(&h->cv);
	pthread_mutex_destroy(&h->mu);
	free(h->path);
	free(h);
	return NULL;
}

/* hook_stats - copy the counters */
void
hook_stats(struct hook *h, struct hook_stats *out)
{
	pthread_mutex_lock(&h->mu);
	*out = h->st;
	pthread_mutex_unlock(&h->mu);
}

/* hook_answer_clear - wipe the password and reset the answer */
void
hook_answer_clear(struct hook_answer *a)
{
	if (a == NULL)
		return;
	if (a->password != NULL)
		secmem_free(a->password, a->password_len + 1);
	memset(a, 0, sizeof(*a));
}

/* field_ok - whether a request value is printable and not too long */
static int
field_ok(const char *s)
{
	size_t n = 0;

	for (; s[n] != '\0'; n++) {
		unsigned char c = (unsigned char)s[n];

		if (c < 0x20 || c == 0x7f || n >= FIELD_MAX)
			return 0;
	}
	return n > 0;
}

/* hook_request_format - write the request text into buf */
enum km_status
hook_request_format(const struct hook_request *rq, char *buf, size_t buflen,
    size_t *outlen, char *errstr, size_t errlen)
{
	const char *key, *level;
	int n;

	if (rq->event != HOOK_EVENT_UNLOCK && rq->event != HOOK_EVENT_RELEASE) {
		snprintf(errstr, errlen, "request: invalid event");
		return KM_PROTO;
	}
	if (rq->address == NULL || !field_ok(rq->address)) {
		snprintf(errstr, errlen, "request: address missing, too long "
		    "or with control characters");
		return KM_PROTO;
	}
	if ((rq->queue_id && rq->queue_id[0] && !field_ok(rq->queue_id)) ||
	    (rq->gateway && rq->gateway[0] && !field_ok(rq->gateway))) {
		snprintf(errstr, errlen, "request: queue_id or gateway too long "
		    "or with control characters");
		return KM_PROTO;
	}
	switch (rq->key) {
	case HOOK_KEY_ENCRYPTION:
		key = "encryption";
		break;
	case HOOK_KEY_SIGNING:
		key = "signing";
		break;
	default:
		snprintf(errstr, errlen, "request: invalid key kind");
		return KM_PROTO;
	}
	switch (rq->level) {
	case HOOK_LEVEL_DEFAULT:
		level = "default";
		break;
	case HOOK_LEVEL_ENHANCED:
		level = "enhanced";
		break;
	default:
		snprintf(errstr, errlen, "request: invalid level");
		return KM_PROTO;
	}
	n = snprintf(buf, buflen,
	    "event=%s\naddress=%s\nkey=%s\nlevel=%s\n%s%s%s%s%s%s\n",
	    hook_event_name(rq->event), rq->address, key, level,
	    rq->queue_id && rq->queue_id[0] ? "queue_id=" : "",
	    rq->queue_id && rq->queue_id[0] ? rq->queue_id : "",
	    rq->queue_id && rq->queue_id[0] ? "\n" : "",
	    rq->gateway && rq->gateway[0] ? "gateway=" : "",
	    rq->gateway && rq->gateway[0] ? rq->gateway : "",
	    rq->gateway && rq->gateway[0] ? "\n" : "");
	if (n < 0 || (size_t)n >= buflen) {
		snprintf(errstr, errlen, "request: buffer too small");
		return KM_PROTO;
	}
	*outlen = (size_t)n;
	return KM_OK;
}

/* has_ctl - whether bytes contain a control character other than TAB */
static int
has_ctl(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return 1;
	}
	return 0;
}

/* key_ok - whether an answer key is made of [a-z0-9_-] */
static int
key_ok(const char *p, size_t n)
{
	if (n == 0 || n > KEY_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

/* hook_answer_parse - strict parser of a hook's answer */
enum km_status
hook_answer_parse(const char *buf, size_t len, enum hook_event ev,
    struct hook_answer *out, char *errstr, size_t errlen)
{
	const char *p = buf, *end = buf + len, *pw = NULL;
	size_t pwlen = 0;
	int lineno = 0, have_action = 0, have_reason = 0;
	enum hook_action act = HOOK_ACTION_NONE;
	char reason[HOOK_REASON_MAX] = "";

	if (out->password != NULL)
		secmem_free(out->password, out->password_len + 1);
	out->password = NULL;
	out->password_len = 0;
	out->action = HOOK_ACTION_NONE;
	out->reason[0] = '\0';

	if (len > HOOK_ANSWER_MAX) {
		snprintf(errstr, errlen, "answer longer than %d bytes",
		    HOOK_ANSWER_MAX);
		return KM_PROTO;
	}
	if (len > 0 && memchr(buf, '\0', len) != NULL) {
		snprintf(errstr, errlen, "NUL byte in answer");
		return KM_PROTO;
	}
	while (p < end) {
		const char *nl, *lend, *next, *eq, *val;
		size_t llen, klen, vlen;

		lineno++;
		nl = memchr(p, '\n', (size_t)(end - p));
		lend = nl ? nl : end;
		next = nl ? nl + 1 : end;
		if (lend > p && lend[-1] == '\r')
			lend--;
		llen = (size_t)(lend - p);
		if (llen > HOOK_LINE_MAX) {
			snprintf(errstr, errlen, "line %d longer than %d bytes",
			    lineno, HOOK_LINE_MAX);
			return KM_PROTO;
		}
		if (llen == 0) {
			p = next;
			continue;
		}
		if ((eq = memchr(p, '=', llen)) == NULL) {
			snprintf(errstr, errlen, "line %d: no '='", lineno);
			return KM_PROTO;
		}
		klen = (size_t)(eq - p);
		if (!key_ok(p, klen)) {
			snprintf(errstr, errlen, "line %d: invalid key", lineno);
			return KM_PROTO;
		}
		val = eq + 1;
		vlen = (size_t)(lend - val);
		if (klen == 6 && memcmp(p, "action", 6) == 0) {
			char name[24];

			if (have_action++) {
				snprintf(errstr, errlen, "line %d: duplicate key "
				    "\"action\"", lineno);
				return KM_PROTO;
			}
			act = HOOK_ACTION_NONE;
			if (vlen < sizeof(name)) {
				memcpy(name, val, vlen);
				name[vlen] = '\0';
				act = hook_action_from_name(name);
			}
			if (act == HOOK_ACTION_NONE) {
				snprintf(errstr, errlen, "line %d: unknown action",
				    lineno);
				return KM_PROTO;
			}
		} else if (klen == 8 && memcmp(p, "password", 8) == 0) {
			if (pw != NULL) {
				snprintf(errstr, errlen, "line %d: duplicate key "
				    "\"password\"", lineno);
				return KM_PROTO;
			}
			pw = val;
			pwlen = vlen;
		} else if (klen == 6 && memcmp(p, "reason", 6) == 0) {
			if (have_reason++) {
				snprintf(errstr, errlen, "line %d: duplicate key "
				    "\"reason\"", lineno);
				return KM_PROTO;
			}
			if (has_ctl(val, vlen)) {
				snprintf(errstr, errlen, "line %d: control "
				    "character in reason", lineno);
				return KM_PROTO;
			}
			if (vlen >= sizeof(reason))
				vlen = sizeof(reason) - 1;
			memcpy(reason, val, vlen);
			reason[vlen] = '\0';
		} else {
			log_warnx("hook answer line %d: unknown key \"%.*s\" "
			    "ignored", lineno, (int)klen, p);
		}
		p = next;
	}
	if (!have_action) {
		snprintf(errstr, errlen, "no action in answer");
		return KM_PROTO;
	}
	if (!hook_action_valid(ev, act)) {
		snprintf(errstr, errlen, "action \"%s\" is not valid for event "
		    "\"%s\"", hook_action_name(act), hook_event_name(ev));
		return KM_PROTO;
	}
	if (act == HOOK_ACTION_PASSWORD) {
		if (pw == NULL) {
			snprintf(errstr, errlen, "action \"password\" without "
			    "a password");
			return KM_PROTO;
		}
		if (pwlen == 0) {
			snprintf(errstr, errlen, "empty password");
			return KM_PROTO;
		}
		if (has_ctl(pw, pwlen)) {
			snprintf(errstr, errlen, "control character in password");
			return KM_PROTO;
		}
		if ((out->password = secmem_alloc(pwlen + 1)) == NULL) {
			snprintf(errstr, errlen, "out of memory");
			return KM_NOMEM;
		}
		memcpy(out->password, pw, pwlen);
		out->password[pwlen] = '\0';
		out->password_len = pwlen;
	} else if (pw != NULL) {
		snprintf(errstr, errlen, "password given with action \"%s\"",
		    hook_action_name(act));
		return KM_PROTO;
	}
	out->action = act;
	memcpy(out->reason, reason, sizeof(out->reason));
	return KM_OK;
}

/* slot_acquire - take a running slot, waiting until deadline; -1 if none */
static int
slot_acquire(struct hook *h, long long deadline)
{
	struct timespec ts;
	int r = 0;

	ts.tv_sec = (time_t)(deadline / 1000);
	ts.tv_nsec = (long)(deadline % 1000) * 1000000L;
	pthread_mutex_lock(&h->mu);
	while (h->st.running >= h->max_running && r != ETIMEDOUT)
		r = pthread_cond_timedwait(&h->cv, &h->mu, &ts);
	if (h->st.running >= h->max_running) {
		pthread_mutex_unlock(&h->mu);
		return -1;
	}
	h->st.running++;
	if (h->st.running > h->st.peak_running)
		h->st.peak_running = h->st.running;
	pthread_mutex_unlock(&h->mu);
	return 0;
}

/* slot_release - give a running slot back */
static void
slot_release(struct hook *h)
{
	pthread_mutex_lock(&h->mu);
	h->st.running--;
	pthread_cond_signal(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

/* lift_fd - move a descriptor above 2 (if the process closed its stdio) */
static int
lift_fd(int fd)
{
	int nfd;

	if (fd > 2)
		return fd;
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	close(fd);
	return nfd;
}

/* close_fd - close a descriptor if open and mark it closed */
static void
close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

/* keep_diag - keep the first stderr line, sanitised */
static void
keep_diag(struct hook_answer *out, size_t *dlen, int *ddone,
    const char *p, size_t n)
{
	for (size_t i = 0; i < n && !*ddone; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == '\n' || *dlen + 1 >= sizeof(out->diag)) {
			*ddone = 1;
			break;
		}
		out->diag[(*dlen)++] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
		out->diag[*dlen] = '\0';
	}
}

/* spawn_hook - start the hook with its stdio on our descriptors */
static int
spawn_hook(struct hook *h, int fd_in, int fd_out, int fd_err, pid_t *pid)
{
	static char env_path[] = "PATH=/usr/bin:/bin";
	static char env_ver[] = "KMILTER_HOOK_VERSION=1";
	char *envp[] = { env_path, env_ver, NULL };
	char *argv[] = { h->path, NULL };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, all;
	int r;

	if ((r = posix_spawn_file_actions_init(&fa)) != 0)
		return r;
	if ((r = posix_spawnattr_init(&at)) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		return r;
	}
	sigemptyset(&none);
	sigfillset(&all);
	sigdelset(&all, SIGKILL);
	sigdelset(&all, SIGSTOP);
	if ((r = posix_spawn_file_actions_adddup2(&fa, fd_in, 0)) != 0 ||
	    (r = posix_spawn_file_actions_adddup2(&fa, fd_out, 1)) != 0 ||
	    (r = posix_spawn_file_actions_adddup2(&fa, fd_err, 2)) != 0 ||
	    (r = posix_spawn_file_actions_addclosefrom_np(&fa, 3)) != 0 ||
	    (r = posix_spawn_file_actions_addchdir_np(&fa, "/")) != 0 ||
	    (r = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP |
	    POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)) != 0 ||
	    (r = posix_spawnattr_setpgroup(&at, 0)) != 0 ||
	    (r = posix_spawnattr_setsigmask(&at, &none)) != 0 ||
	    (r = posix_spawnattr_setsigdefault(&at, &all)) != 0)
		goto out;
	r = posix_spawn(pid, h->path, &fa, &at, argv, envp);
out:
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
	return r;
}

/*
 * vet_hook - check the hook's path right before it runs
 *	Trusted owners are root and the user we run as (after the privilege
 *	drop: the milter user).  Missing is HOOK_FAIL_SPAWN, as exec would
 *	say; unsafe is HOOK_FAIL_UNSAFE and logged at warning level.
 */
static enum hook_failure
vet_hook(struct hook *h, char *errstr, size_t errlen)
{
	struct kmerr tp;
	const char *why = tp.msg;

	switch (trustpath_check(h->path, geteuid(), &tp)) {
	case TRUSTPATH_SAFE:
		return HOOK_FAIL_NONE;
	case TRUSTPATH_MISSING:
		snprintf(errstr, errlen, "cannot run %s: %s", h->path, why);
		return HOOK_FAIL_SPAWN;
	case TRUSTPATH_UNSAFE:
		break;
	}
	log_warnx("hook %s not run: %s", h->path, why);
	snprintf(errstr, errlen, "%s not run: %s", h->path, why);
	return HOOK_FAIL_UNSAFE;
}

/*
 * run_hook - spawn the hook, talk to it, reap it, parse its answer
 *	Returns HOOK_FAIL_NONE with *out filled, or the failure kind with
 *	errstr set and *st the status to return.
 */
static enum hook_failure
run_hook(struct hook *h, const char *req, size_t reqlen, enum hook_event ev,
    struct hook_answer *out, char *errstr, size_t errlen, enum km_status *st)
{
	int sv[2] = { -1, -1 }, po[2] = { -1, -1 }, pe[2] = { -1, -1 };
	enum hook_failure f = HOOK_FAIL_NONE;
	char *ans = NULL, ebuf[512];
	size_t alen = 0, off = 0, dlen = 0;
	int ddone = 0, status = 0, killed = 0, saved;
	long long deadline = clock_ms() + h->timeout_ms, left;
	pid_t pid = -1;
	siginfo_t si;
	int r;

	*st = KM_TEMPFAIL;
	if ((f = vet_hook(h, errstr, errlen)) != HOOK_FAIL_NONE)
		return f;
	if ((ans = secmem_alloc(HOOK_ANSWER_MAX + 1)) == NULL) {
		snprintf(errstr, errlen, "out of memory");
		*st = KM_NOMEM;
		return HOOK_FAIL_NOMEM;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1 ||
	    pipe2(po, O_CLOEXEC) == -1 || pipe2(pe, O_CLOEXEC) == -1) {
		snprintf(errstr, errlen, "cannot create pipes: %s",
		    strerror(errno));
		f = HOOK_FAIL_NOMEM;
		goto out;
	}
	sv[0] = lift_fd(sv[0]); sv[1] = lift_fd(sv[1]);
	po[0] = lift_fd(po[0]); po[1] = lift_fd(po[1]);
	pe[0] = lift_fd(pe[0]); pe[1] = lift_fd(pe[1]);
	if (sv[0] < 0 || sv[1] < 0 || po[0] < 0 || po[1] < 0 || pe[0] < 0 ||
	    pe[1] < 0) {
		snprintf(errstr, errlen, "cannot create pipes: %s",
		    strerror(errno));
		f = HOOK_FAIL_NOMEM;
		goto out;
	}
	if ((r = spawn_hook(h, sv[1], po[1], pe[1], &pid)) != 0) {
		snprintf(errstr, errlen, "cannot run %s: %s", h->path,
		    strerror(r));
		pid = -1;
		f = HOOK_FAIL_SPAWN;
		goto out;
	}
	close_fd(&sv[1]);
	close_fd(&po[1]);
	close_fd(&pe[1]);
	fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
	fcntl(po[0], F_SETFL, fcntl(po[0], F_GETFL) | O_NONBLOCK);
	fcntl(pe[0], F_SETFL, fcntl(pe[0], F_GETFL) | O_NONBLOCK);

	/* Send the request, read the answer and stderr until both close. */
	while (po[0] >= 0 || pe[0] >= 0) {
		struct pollfd pfd[3];
		int n = 0, iw = -1, io = -1, ie = -1;

		if ((left = deadline - clock_ms()) <= 0) {
			f = HOOK_FAIL_TIMEOUT;
			break;
		}
		if (sv[0] >= 0) {
			pfd[iw = n++] = (struct pollfd){ sv[0], POLLOUT, 0 };
		}
		if (po[0] >= 0)
			pfd[io = n++] = (struct pollfd){ po[0], POLLIN, 0 };
		if (pe[0] >= 0)
			pfd[ie = n++] = (struct pollfd){ pe[0], POLLIN, 0 };
		r = poll(pfd, (nfds_t)n, (int)left);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			snprintf(errstr, errlen, "poll: %s", strerror(errno));
			f = HOOK_FAIL_IO;
			break;
		}
		if (iw >= 0 && pfd[iw].revents) {
			ssize_t w = send(sv[0], req + off, reqlen - off,
			    MSG_NOSIGNAL | MSG_DONTWAIT);

			if (w > 0)
				off += (size_t)w;
			/* The hook may exit without reading: EPIPE is fine. */
			if (off == reqlen || (w == -1 && errno != EAGAIN &&
			    errno != EINTR))
				close_fd(&sv[0]);
		}
		if (io >= 0 && pfd[io].revents) {
			ssize_t rd = read(po[0], ans + alen,
			    HOOK_ANSWER_MAX + 1 - alen);

			if (rd > 0) {
				alen += (size_t)rd;
				if (alen > HOOK_ANSWER_MAX) {
					f = HOOK_FAIL_TOOLONG;
					break;
				}
			} else if (rd == 0 || (errno != EAGAIN &&
			    errno != EINTR))
				close_fd(&po[0]);
		}
		if (ie >= 0 && pfd[ie].revents) {
			ssize_t rd = read(pe[0], ebuf, sizeof(ebuf));

			if (rd > 0)
				keep_diag(out, &dlen, &ddone, ebuf, (size_t)rd);
			else if (rd == 0 || (errno != EAGAIN && errno != EINTR))
				close_fd(&pe[0]);
		}
	}
	close_fd(&sv[0]);

	/* Wait for the exit without reaping, so the group id stays ours. */
	if (f == HOOK_FAIL_NONE) {
		long long nap = 1;

		for (;;) {
			memset(&si, 0, sizeof(si));
			r = waitid(P_PID, (id_t)pid, &si,
			    WEXITED | WNOHANG | WNOWAIT);
			if (r == -1 && errno == EINTR)
				continue;
			if (r == -1 || si.si_pid != 0)
				break;
			if ((left = deadline - clock_ms()) <= 0) {
				f = HOOK_FAIL_TIMEOUT;
				break;
			}
			if (nap > left)
				nap = left;
			nanosleep(&(struct timespec){ nap / 1000,
			    (nap % 1000) * 1000000L }, NULL);
			if (nap < 16)
				nap *= 2;
		}
	}
	/* Kill the group: the hook if late, and anything it left behind. */
	killed = (f != HOOK_FAIL_NONE);
	kill(-pid, SIGKILL);
	while ((r = waitpid(pid, &status, 0)) == -1 && errno == EINTR)
		;
	if (r == -1) {
		if (f == HOOK_FAIL_NONE) {
			snprintf(errstr, errlen, "cannot reap %s: %s", h->path,
			    strerror(errno));
			f = HOOK_FAIL_IO;
		}
		status = 0;
	}
	pid = -1;
	out->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) :
	    WIFSIGNALED(status) ? -WTERMSIG(status) : 0;

	if (f == HOOK_FAIL_TIMEOUT) {
		snprintf(errstr, errlen, "%s did not answer within %d ms: "
		    "killed", h->path, h->timeout_ms);
		goto out;
	}
	if (f == HOOK_FAIL_TOOLONG) {
		snprintf(errstr, errlen, "%s wrote more than %d bytes: killed",
		    h->path, HOOK_ANSWER_MAX);
		*st = KM_PROTO;
		goto out;
	}
	if (f != HOOK_FAIL_NONE)
		goto out;
	if (!killed && WIFSIGNALED(status)) {
		snprintf(errstr, errlen, "%s killed by signal %d (%s)", h->path,
		    WTERMSIG(status), strsignal(WTERMSIG(status)));
		f = HOOK_FAIL_SIGNAL;
		goto out;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
		snprintf(errstr, errlen, "%s exited with status %d", h->path,
		    WEXITSTATUS(status));
		f = HOOK_FAIL_EXIT;
		goto out;
	}
	if ((*st = hook_answer_parse(ans, alen, ev, out, ebuf,
	    sizeof(ebuf))) != KM_OK) {
		snprintf(errstr, errlen, "%s: malformed answer: %s", h->path,
		    ebuf);
		f = *st == KM_NOMEM ? HOOK_FAIL_NOMEM : HOOK_FAIL_MALFORMED;
		goto out;
	}

out:
	saved = errno;
	if (pid > 0) {
		kill(-pid, SIGKILL);
		while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
			;
	}
	close_fd(&sv[0]); close_fd(&sv[1]);
	close_fd(&po[0]); close_fd(&po[1]);
	close_fd(&pe[0]); close_fd(&pe[1]);
	secmem_free(ans, HOOK_ANSWER_MAX + 1);
	errno = saved;
	return f;
}

/* apply_default - replace an answer by the configured default */
static void
apply_default(struct hook *h, enum hook_event ev, struct hook_answer *out,
    enum hook_failure f, const char *why)
{
	if (out->password != NULL)
		secmem_free(out->password, out->password_len + 1);
	out->password = NULL;
	out->password_len = 0;
	out->action = ev == HOOK_EVENT_RELEASE ? h->def_release : h->def_unlock;
	out->failure = f;
	snprintf(out->reason, sizeof(out->reason), "hook failed (%s): %s",
	    hook_failure_name(f), why);
}

/* hook_ask - ask the hook; *out always holds a usable action afterwards */
enum km_status
hook_ask(struct hook *h, const struct hook_request *rq,
    struct hook_answer *out, char *errstr, size_t errlen)
{
	char req[REQUEST_MAX];
	size_t reqlen = 0;
	long long t0 = clock_ms();
	enum hook_failure f;
	enum hook_event ev = rq->event == HOOK_EVENT_RELEASE ?
	    HOOK_EVENT_RELEASE : HOOK_EVENT_UNLOCK;
	enum km_status st;

	hook_answer_clear(out);
	pthread_mutex_lock(&h->mu);
	h->st.asked++;
	pthread_mutex_unlock(&h->mu);

	if ((st = hook_request_format(rq, req, sizeof(req), &reqlen, errstr,
	    errlen)) != KM_OK)
		f = HOOK_FAIL_REQUEST;
	else if (slot_acquire(h, t0 + h->wait_ms) != 0) {
		snprintf(errstr, errlen, "hook busy: %d already running for "
		    "%d ms", h->max_running, h->wait_ms);
		st = KM_TEMPFAIL;
		f = HOOK_FAIL_BUSY;
	} else {
		f = run_hook(h, req, reqlen, ev, out, errstr, errlen, &st);
		slot_release(h);
	}
	secmem_wipe(req, sizeof(req));
	out->elapsed_ms = (long)(clock_ms() - t0);

	pthread_mutex_lock(&h->mu);
	if (f == HOOK_FAIL_NONE)
		h->st.answered++;
	else {
		h->st.failed++;
		if (f == HOOK_FAIL_BUSY)
			h->st.busy++;
		if (f == HOOK_FAIL_TIMEOUT)
			h->st.timeouts++;
	}
	pthread_mutex_unlock(&h->mu);

	if (f != HOOK_FAIL_NONE) {
		apply_default(h, ev, out, f, errstr);
		log_debug(1, "hook %s %s: %s, using default %s",
		    hook_event_name(ev), rq->address && field_ok(rq->address) ?
		    rq->address : "(invalid)", hook_failure_name(f),
		    hook_action_name(out->action));
		return st == KM_OK ? KM_TEMPFAIL : st;
	}
	log_debug(1, "hook %s %s: %s in %ld ms", hook_event_name(ev),
	    rq->address, hook_action_name(out->action), out->elapsed_ms);
	return KM_OK;
}
