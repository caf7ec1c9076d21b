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

#define REQUEST_MAX	2048	/* the formatted request always fits */

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

/* hook_new - check the options and make a hook; NULL with err set */
struct hook *
hook_new(const struct hook_opts *o, struct kmerr *err)
{
	struct hook *h = NULL;
	pthread_condattr_t ca;
	enum hook_action du, dr;
	int have_mu = 0;

	if (o == NULL || o->path == NULL || o->path[0] != '/') {
		kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
		    "hook path must be absolute");
		return NULL;
	}
	if (o->timeout_ms < 1 || o->timeout_ms > HOOK_TIMEOUT_MAX) {
		kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
		    "hook timeout must be 1..%d ms",
		    HOOK_TIMEOUT_MAX);
		return NULL;
	}
	if (o->max_running < 1 || o->max_running > HOOK_RUNNING_MAX) {
		kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
		    "hook max_running must be 1..%d",
		    HOOK_RUNNING_MAX);
		return NULL;
	}
	if (o->wait_ms < 0 || o->wait_ms > HOOK_TIMEOUT_MAX) {
		kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
		    "hook wait must be 0..%d ms",
		    HOOK_TIMEOUT_MAX);
		return NULL;
	}
	du = o->on_failure_unlock ? o->on_failure_unlock :
	    HOOK_ACTION_KEEP_ENCRYPTED;
	dr = o->on_failure_release ? o->on_failure_release : HOOK_ACTION_DENY;
	if (du == HOOK_ACTION_PASSWORD ||
	    !hook_action_valid(HOOK_EVENT_UNLOCK, du)) {
		kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
		    "hook default for unlock must be "
		    "keep-encrypted or tempfail, not %s", hook_action_name(du));
		return NULL;
	}
	if (!hook_action_valid(HOOK_EVENT_RELEASE, dr)) {
		kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
		    "hook default for release must be "
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
	kmerr_set(err, KM_NOMEM, KMERR_NONE, "hook: out of memory");
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
vet_hook(struct hook *h, struct kmerr *err)
{
	struct kmerr tp;
	const char *why = tp.msg;

	switch (trustpath_check(h->path, geteuid(), &tp)) {
	case TRUSTPATH_SAFE:
		return HOOK_FAIL_NONE;
	case TRUSTPATH_MISSING:
		kmerr_set(err, KM_TEMPFAIL, KMERR_NOTFOUND, "cannot run %s: %s",
		    h->path, why);
		return HOOK_FAIL_SPAWN;
	case TRUSTPATH_UNSAFE:
		break;
	}
	log_warnx("hook %s not run: %s", h->path, why);
	kmerr_set(err, KM_TEMPFAIL, KMERR_REFUSED, "%s not run: %s", h->path,
	    why);
	return HOOK_FAIL_UNSAFE;
}

/* One run of the hook: its descriptors, its process and what it said. */
struct run {
	struct hook	*h;
	const char	*req;		/* the request, borrowed */
	size_t		 reqlen, off;	/* bytes sent so far */
	int		 sv[2], po[2], pe[2];	/* stdin, stdout, stderr */
	pid_t		 pid;
	char		*ans;		/* secmem, HOOK_ANSWER_MAX + 1 */
	size_t		 alen;
	size_t		 dlen;		/* diag bytes kept */
	int		 ddone;		/* first stderr line complete */
	int		 status;	/* wait status */
	long long	 deadline;	/* monotonic ms */
};

/* run_pipes - make the three channels, all above descriptor 2 */
static enum hook_failure
run_pipes(struct run *r, struct kmerr *err)
{
	int *fds[] = { &r->sv[0], &r->sv[1], &r->po[0], &r->po[1],
	    &r->pe[0], &r->pe[1] };
	int bad = 0;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, r->sv) == -1 ||
	    pipe2(r->po, O_CLOEXEC) == -1 || pipe2(r->pe, O_CLOEXEC) == -1)
		bad = 1;
	for (size_t i = 0; !bad && i < sizeof(fds) / sizeof(fds[0]); i++)
		*fds[i] = lift_fd(*fds[i]);
	for (size_t i = 0; !bad && i < sizeof(fds) / sizeof(fds[0]); i++)
		if (*fds[i] < 0)
			bad = 1;
	if (bad) {
		kmerr_set(err, KM_TEMPFAIL, KMERR_NONE,
		    "cannot create pipes: %s", strerror(errno));
		return HOOK_FAIL_NOMEM;
	}
	return HOOK_FAIL_NONE;
}

/* run_start - create the channels and spawn the hook on them */
static enum hook_failure
run_start(struct run *r, struct kmerr *err)
{
	enum hook_failure f;
	int e;

	if ((f = run_pipes(r, err)) != HOOK_FAIL_NONE)
		return f;
	if ((e = spawn_hook(r->h, r->sv[1], r->po[1], r->pe[1],
	    &r->pid)) != 0) {
		kmerr_set(err, KM_TEMPFAIL, KMERR_NONE, "cannot run %s: %s",
		    r->h->path, strerror(e));
		r->pid = -1;
		return HOOK_FAIL_SPAWN;
	}
	close_fd(&r->sv[1]);
	close_fd(&r->po[1]);
	close_fd(&r->pe[1]);
	fcntl(r->sv[0], F_SETFL, fcntl(r->sv[0], F_GETFL) | O_NONBLOCK);
	fcntl(r->po[0], F_SETFL, fcntl(r->po[0], F_GETFL) | O_NONBLOCK);
	fcntl(r->pe[0], F_SETFL, fcntl(r->pe[0], F_GETFL) | O_NONBLOCK);
	return HOOK_FAIL_NONE;
}

/* send_request - write what the hook's stdin takes of the request */
static void
send_request(struct run *r)
{
	ssize_t w = send(r->sv[0], r->req + r->off, r->reqlen - r->off,
	    MSG_NOSIGNAL | MSG_DONTWAIT);

	if (w > 0)
		r->off += (size_t)w;
	/* The hook may exit without reading: EPIPE is fine. */
	if (r->off == r->reqlen || (w == -1 && errno != EAGAIN &&
	    errno != EINTR))
		close_fd(&r->sv[0]);
}

/* read_answer - read the hook's stdout; HOOK_FAIL_TOOLONG past the limit */
static enum hook_failure
read_answer(struct run *r)
{
	ssize_t rd = read(r->po[0], r->ans + r->alen,
	    HOOK_ANSWER_MAX + 1 - r->alen);

	if (rd > 0) {
		r->alen += (size_t)rd;
		if (r->alen > HOOK_ANSWER_MAX)
			return HOOK_FAIL_TOOLONG;
	} else if (rd == 0 || (errno != EAGAIN && errno != EINTR))
		close_fd(&r->po[0]);
	return HOOK_FAIL_NONE;
}

/* read_diag - read the hook's stderr, keeping its first line */
static void
read_diag(struct run *r, struct hook_answer *out)
{
	char ebuf[512];
	ssize_t rd = read(r->pe[0], ebuf, sizeof(ebuf));

	if (rd > 0)
		keep_diag(out, &r->dlen, &r->ddone, ebuf, (size_t)rd);
	else if (rd == 0 || (errno != EAGAIN && errno != EINTR))
		close_fd(&r->pe[0]);
}

/*
 * run_exchange - send the request, read the answer and stderr until both
 *	close; HOOK_FAIL_TIMEOUT, _TOOLONG or _IO (err set) on failure
 */
static enum hook_failure
run_exchange(struct run *r, struct hook_answer *out, struct kmerr *err)
{
	long long left;

	while (r->po[0] >= 0 || r->pe[0] >= 0) {
		struct pollfd pfd[3];
		int n = 0, iw = -1, io = -1, ie = -1, pr;

		if ((left = r->deadline - clock_ms()) <= 0)
			return HOOK_FAIL_TIMEOUT;
		if (r->sv[0] >= 0)
			pfd[iw = n++] = (struct pollfd){ r->sv[0], POLLOUT, 0 };
		if (r->po[0] >= 0)
			pfd[io = n++] = (struct pollfd){ r->po[0], POLLIN, 0 };
		if (r->pe[0] >= 0)
			pfd[ie = n++] = (struct pollfd){ r->pe[0], POLLIN, 0 };
		pr = poll(pfd, (nfds_t)n, (int)left);
		if (pr == -1 && errno == EINTR)
			continue;
		if (pr == -1) {
			kmerr_set(err, KM_TEMPFAIL, KMERR_NONE, "poll: %s",
			    strerror(errno));
			return HOOK_FAIL_IO;
		}
		if (iw >= 0 && pfd[iw].revents)
			send_request(r);
		if (io >= 0 && pfd[io].revents &&
		    read_answer(r) == HOOK_FAIL_TOOLONG)
			return HOOK_FAIL_TOOLONG;
		if (ie >= 0 && pfd[ie].revents)
			read_diag(r, out);
	}
	return HOOK_FAIL_NONE;
}

/* run_wait_exit - wait for the exit without reaping, so the group id stays
 *	ours; HOOK_FAIL_TIMEOUT if the deadline passes first */
static enum hook_failure
run_wait_exit(struct run *r)
{
	long long nap = 1, left;
	siginfo_t si;
	int w;

	for (;;) {
		memset(&si, 0, sizeof(si));
		w = waitid(P_PID, (id_t)r->pid, &si,
		    WEXITED | WNOHANG | WNOWAIT);
		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1 || si.si_pid != 0)
			return HOOK_FAIL_NONE;
		if ((left = r->deadline - clock_ms()) <= 0)
			return HOOK_FAIL_TIMEOUT;
		if (nap > left)
			nap = left;
		nanosleep(&(struct timespec){ nap / 1000,
		    (nap % 1000) * 1000000L }, NULL);
		if (nap < 16)
			nap *= 2;
	}
}

/* run_reap - kill the group (the hook if late, and anything it left
 *	behind) and reap the hook; HOOK_FAIL_IO if it cannot be reaped */
static enum hook_failure
run_reap(struct run *r, enum hook_failure f, struct hook_answer *out,
    struct kmerr *err)
{
	int w;

	kill(-r->pid, SIGKILL);
	while ((w = waitpid(r->pid, &r->status, 0)) == -1 && errno == EINTR)
		;
	if (w == -1) {
		if (f == HOOK_FAIL_NONE) {
			kmerr_set(err, KM_TEMPFAIL, KMERR_NONE,
			    "cannot reap %s: %s", r->h->path, strerror(errno));
			f = HOOK_FAIL_IO;
		}
		r->status = 0;
	}
	r->pid = -1;
	out->exit_status = WIFEXITED(r->status) ? WEXITSTATUS(r->status) :
	    WIFSIGNALED(r->status) ? -WTERMSIG(r->status) : 0;
	return f;
}

/* log_unknown_keys - warn about each unknown key the parser ignored */
static void
log_unknown_keys(const struct run *r, const struct hook_answer *out)
{
	struct hook_proto_scan sc;
	struct hook_proto_line l;
	int n = 0;

	hook_proto_scan_init(&sc, r->ans, r->alen);
	while (n < out->unknown_keys &&
	    hook_proto_scan_next(&sc, &l, NULL) == 1) {
		if (hook_proto_key_known(&l))
			continue;
		log_warnx("hook answer line %d: unknown key \"%.*s\" "
		    "ignored", l.lineno, (int)l.klen, l.key);
		n++;
	}
}

/* run_parse - parse the answer of a hook that exited 0 */
static enum hook_failure
run_parse(struct run *r, enum hook_event ev, struct hook_answer *out,
    struct kmerr *err, enum km_status *st)
{
	*st = hook_answer_parse(r->ans, r->alen, ev, out, err);
	log_unknown_keys(r, out);
	if (*st == KM_OK)
		return HOOK_FAIL_NONE;
	kmerr_prefix(err, "%s: malformed answer: ", r->h->path);
	return *st == KM_NOMEM ? HOOK_FAIL_NOMEM : HOOK_FAIL_MALFORMED;
}

/* run_classify - what the run came to: a failure kind, or the parsed answer */
static enum hook_failure
run_classify(struct run *r, enum hook_failure f, int killed,
    enum hook_event ev, struct hook_answer *out, struct kmerr *err,
    enum km_status *st)
{
	const char *path = r->h->path;
	int status = r->status;

	if (f == HOOK_FAIL_TIMEOUT) {
		kmerr_set(err, KM_TEMPFAIL, KMERR_TIMEOUT, "%s did not answer "
		    "within %d ms: killed", path, r->h->timeout_ms);
		return f;
	}
	if (f == HOOK_FAIL_TOOLONG) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "%s wrote more than %d bytes: killed", path,
		    HOOK_ANSWER_MAX);
		*st = KM_PROTO;
		return f;
	}
	if (f != HOOK_FAIL_NONE)
		return f;
	if (!killed && WIFSIGNALED(status)) {
		kmerr_set(err, KM_TEMPFAIL, KMERR_NONE,
		    "%s killed by signal %d (%s)", path, WTERMSIG(status),
		    strsignal(WTERMSIG(status)));
		return HOOK_FAIL_SIGNAL;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
		kmerr_set(err, KM_TEMPFAIL, KMERR_NONE,
		    "%s exited with status %d", path, WEXITSTATUS(status));
		return HOOK_FAIL_EXIT;
	}
	return run_parse(r, ev, out, err, st);
}

/* run_close - kill and reap a hook still there, close, wipe the answer */
static void
run_close(struct run *r)
{
	int saved = errno;

	if (r->pid > 0) {
		kill(-r->pid, SIGKILL);
		while (waitpid(r->pid, &r->status, 0) == -1 && errno == EINTR)
			;
	}
	close_fd(&r->sv[0]); close_fd(&r->sv[1]);
	close_fd(&r->po[0]); close_fd(&r->po[1]);
	close_fd(&r->pe[0]); close_fd(&r->pe[1]);
	secmem_free(r->ans, HOOK_ANSWER_MAX + 1);
	errno = saved;
}

/*
 * run_hook - spawn the hook, talk to it, reap it, parse its answer
 *	Returns HOOK_FAIL_NONE with *out filled, or the failure kind with
 *	err set and *st the status to return.
 */
static enum hook_failure
run_hook(struct hook *h, const char *req, size_t reqlen, enum hook_event ev,
    struct hook_answer *out, struct kmerr *err, enum km_status *st)
{
	struct run r = { .h = h, .req = req, .reqlen = reqlen,
	    .sv = { -1, -1 }, .po = { -1, -1 }, .pe = { -1, -1 }, .pid = -1,
	    .deadline = clock_ms() + h->timeout_ms };
	enum hook_failure f;
	int killed;

	*st = KM_TEMPFAIL;
	if ((f = vet_hook(h, err)) != HOOK_FAIL_NONE)
		return f;
	if ((r.ans = secmem_alloc(HOOK_ANSWER_MAX + 1)) == NULL) {
		kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
		*st = KM_NOMEM;
		return HOOK_FAIL_NOMEM;
	}
	if ((f = run_start(&r, err)) != HOOK_FAIL_NONE)
		goto out;
	f = run_exchange(&r, out, err);
	close_fd(&r.sv[0]);
	if (f == HOOK_FAIL_NONE)
		f = run_wait_exit(&r);
	killed = (f != HOOK_FAIL_NONE);
	f = run_reap(&r, f, out, err);
	f = run_classify(&r, f, killed, ev, out, err, st);
out:
	run_close(&r);
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
	/* enroll never follows a failure: no answer is no */
	out->action = ev == HOOK_EVENT_ENROLL ? HOOK_ACTION_DENY :
	    ev == HOOK_EVENT_RELEASE ? h->def_release : h->def_unlock;
	out->failure = f;
	/* A long reason is cut to fit: it is for a log line. */
	if (snprintf(out->reason, sizeof(out->reason), "hook failed (%s): %s",
	    hook_failure_name(f), why) < 0)
		out->reason[0] = '\0';
}

/* hook_ask - ask the hook; *out always holds a usable action afterwards */
enum km_status
hook_ask(struct hook *h, const struct hook_request *rq,
    struct hook_answer *out, struct kmerr *errp)
{
	char req[REQUEST_MAX];
	size_t reqlen = 0;
	long long t0 = clock_ms();
	enum hook_failure f;
	enum hook_event ev = rq->event == HOOK_EVENT_RELEASE ||
	    rq->event == HOOK_EVENT_ENROLL ? rq->event : HOOK_EVENT_UNLOCK;
	enum km_status st;
	struct kmerr err;

	hook_answer_clear(out);
	pthread_mutex_lock(&h->mu);
	h->st.asked++;
	pthread_mutex_unlock(&h->mu);

	kmerr_clear(&err);
	if ((st = hook_request_format(rq, req, sizeof(req), &reqlen,
	    &err)) != KM_OK)
		f = HOOK_FAIL_REQUEST;
	else if (slot_acquire(h, t0 + h->wait_ms) != 0) {
		st = kmerr_set(&err, KM_TEMPFAIL, KMERR_TIMEOUT,
		    "hook busy: %d "
		    "already running for %d ms", h->max_running, h->wait_ms);
		f = HOOK_FAIL_BUSY;
	} else {
		f = run_hook(h, req, reqlen, ev, out, &err, &st);
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
		kmerr_set(errp, st == KM_OK ? KM_TEMPFAIL : st, err.reason,
		    "%s", err.msg);
		apply_default(h, ev, out, f, err.msg);
		log_debug(1, "hook %s %s: %s, using default %s",
		    hook_event_name(ev),
		    rq->address && hook_proto_field_ok(rq->address) ?
		    rq->address : "(invalid)", hook_failure_name(f),
		    hook_action_name(out->action));
		return st == KM_OK ? KM_TEMPFAIL : st;
	}
	log_debug(1, "hook %s %s: %s in %ld ms", hook_event_name(ev),
	    rq->address, hook_action_name(out->action), out->elapsed_ms);
	return KM_OK;
}
