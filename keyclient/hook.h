#ifndef KMILTER_KEYCLIENT_HOOK_H
#define KMILTER_KEYCLIENT_HOOK_H
/*
 * NAME
 *	hook - run the administrator's hook and parse its answer
 * SUMMARY
 *	hook_new(), hook_free(), hook_ask(), hook_answer_parse(),
 *	hook_answer_clear(), hook_request_format(), hook_stats(),
 *	hook_action_name(), hook_action_from_name(), hook_event_name(),
 *	hook_failure_name()
 * DESCRIPTION
 *	The admin hook is an executable named in the configuration.  It
 *	decides what kmilter does with password-protected ("enhanced") keys:
 *	hand over the protection password, keep the mail encrypted, or try
 *	later (event "unlock"), and whether a key may be released to this
 *	gateway at all (event "release").  The protocol is described in
 *	kmilter-hook(8).
 *
 *	hook_ask() runs the hook directly with posix_spawn() (no shell, no
 *	arguments), in its own process group, in "/", with a clean
 *	environment (PATH=/usr/bin:/bin and KMILTER_HOOK_VERSION=1), all
 *	signals set to their default action and unblocked, and no file
 *	descriptor other than 0, 1 and 2.  The request goes to its stdin
 *	(key=value lines ended by a blank line); its stdout is read up to
 *	HOOK_ANSWER_MAX bytes; its stderr is read and its first line kept,
 *	sanitised, in answer->diag.  After timeout_ms the whole process
 *	group is killed with SIGKILL and the child reaped.  At most
 *	max_running hooks run at once per struct hook; a caller that finds
 *	no free slot within wait_ms (default timeout_ms) gets HOOK_FAIL_BUSY.
 *	When the hook exits, whatever it left running in its process group
 *	is killed too.
 *
 *	Whatever happens, after hook_ask() returns, out->action is an action
 *	valid for the event: the hook's own answer (out->failure ==
 *	HOOK_FAIL_NONE), or the configured default for that event together
 *	with out->failure saying why and errstr a one-line reason for the
 *	log.  The reason never contains the password.
 *
 *	Right before each run, hook_ask() checks the path with
 *	trustpath_check() (trusted owners: root and the running user): an
 *	unsafe hook is not run (HOOK_FAIL_UNSAFE, logged with the reason),
 *	a missing one is HOOK_FAIL_SPAWN.
 *
 *	hook_answer_parse() is the strict parser of an answer (pure: no
 *	process, no I/O), exported for tests and the fuzzer: lines
 *	"key=value" ended by LF (a CR before the LF is removed), blank lines
 *	ignored, known keys "action", "password", "reason".  Unknown keys are
 *	ignored with a warning.  Malformed: a NUL byte, more than
 *	HOOK_ANSWER_MAX bytes, a line longer than HOOK_LINE_MAX, a line
 *	without "=", an empty or invalid key, a duplicate known key, no
 *	action, an unknown action or one not valid for the event, a password
 *	with an action other than "password" (or none with it), control
 *	characters in the reason.
 * OWNERSHIP
 *	hook_new() copies opts->path; caller frees with hook_free(), which
 *	returns NULL and must not run while hook_ask() runs on that hook.
 *	The request's strings are borrowed for the duration of the call.
 *	A struct hook_answer owns its password (secmem); release it with
 *	hook_answer_clear(), which wipes it; clearing twice is harmless.
 *	An answer must be zero-initialised or cleared before it is filled.
 * ERRORS
 *	hook_new(): NULL with errstr set on invalid options or no memory.
 *	hook_ask(): KM_OK (the hook answered validly), KM_TEMPFAIL (busy,
 *	cannot start, timeout, killed by a signal, non-zero exit),
 *	KM_PROTO (malformed or too long answer, or an invalid request such
 *	as an address with control characters), KM_NOMEM.  In every case
 *	*out holds a usable action (see above).
 *	hook_answer_parse(): KM_OK or KM_PROTO (errstr says which line and
 *	what is wrong, never a value), KM_NOMEM.
 * THREADS
 *	hook_ask() is thread-safe: many threads may ask the same hook at
 *	once.  It reaps only its own child (waitpid on its pid): the process
 *	must not set SIGCHLD to SIG_IGN.  It cannot raise SIGPIPE (the
 *	request is sent over a socket with MSG_NOSIGNAL).
 */
#include <sys/types.h>
#include <stddef.h>

#include "status.h"

#define HOOK_ANSWER_MAX	4096	/* bytes of stdout read at most */
#define HOOK_LINE_MAX	1024	/* longest answer line, without its LF */
#define HOOK_REASON_MAX	256	/* reason kept, with its NUL */
#define HOOK_DIAG_MAX	160	/* stderr line kept, with its NUL */
#define HOOK_TIMEOUT_MAX 600000	/* largest timeout_ms accepted */
#define HOOK_RUNNING_MAX 1024	/* largest max_running accepted */

enum hook_event {
	HOOK_EVENT_UNLOCK = 0,	/* may kmilter have the protection password? */
	HOOK_EVENT_RELEASE	/* may this key be released to this gateway? */
};

enum hook_action {
	HOOK_ACTION_NONE = 0,		/* only in a cleared answer */
	HOOK_ACTION_PASSWORD,		/* unlock: here is the password */
	HOOK_ACTION_KEEP_ENCRYPTED,	/* unlock: deliver still encrypted */
	HOOK_ACTION_TEMPFAIL,		/* unlock: try again later */
	HOOK_ACTION_ALLOW,		/* release: yes */
	HOOK_ACTION_DENY		/* release: no */
};

enum hook_key {
	HOOK_KEY_ENCRYPTION = 0,
	HOOK_KEY_SIGNING
};

enum hook_level {
	HOOK_LEVEL_DEFAULT = 0,
	HOOK_LEVEL_ENHANCED
};

/* Why the answer is the configured default rather than the hook's own. */
enum hook_failure {
	HOOK_FAIL_NONE = 0,	/* the hook answered validly */
	HOOK_FAIL_BUSY,		/* no free slot within the timeout */
	HOOK_FAIL_SPAWN,	/* missing, not executable, cannot start */
	HOOK_FAIL_TIMEOUT,	/* did not finish in time: killed */
	HOOK_FAIL_SIGNAL,	/* killed by a signal (crash) */
	HOOK_FAIL_EXIT,		/* exited with a non-zero status */
	HOOK_FAIL_TOOLONG,	/* more than HOOK_ANSWER_MAX bytes: killed */
	HOOK_FAIL_MALFORMED,	/* answer does not parse */
	HOOK_FAIL_REQUEST,	/* request could not be formed */
	HOOK_FAIL_NOMEM,	/* out of memory, pipes or processes */
	HOOK_FAIL_IO,		/* read/write/poll error talking to it */
	HOOK_FAIL_UNSAFE	/* others could change it: not run */
};

/*
 * Options, validated by hook_new(): path absolute, 1 <= timeout_ms <=
 * HOOK_TIMEOUT_MAX, 1 <= max_running <= HOOK_RUNNING_MAX, 0 <= wait_ms <=
 * HOOK_TIMEOUT_MAX, defaults valid
 * for their event (HOOK_ACTION_NONE picks keep-encrypted for unlock and
 * deny for release).  The default for unlock cannot be "password".
 */
struct hook_opts {
	const char	*path;
	int		 timeout_ms;
	int		 max_running;
	int		 wait_ms;	/* longest wait for a free slot; 0: timeout_ms */
	enum hook_action on_failure_unlock;	/* keep-encrypted or tempfail */
	enum hook_action on_failure_release;	/* allow or deny */
};

/*
 * One request.  address is required; queue_id and gateway may be NULL
 * (their lines are then left out).  Strings must not contain control
 * characters and are at most 320 bytes.
 */
struct hook_request {
	enum hook_event	 event;
	const char	*address;
	enum hook_key	 key;
	enum hook_level	 level;
	const char	*queue_id;
	const char	*gateway;
};

struct hook_answer {
	enum hook_action  action;
	char		 *password;	/* secmem, NUL-terminated; only for PASSWORD */
	size_t		  password_len;
	char		  reason[HOOK_REASON_MAX];	/* "" if none */
	enum hook_failure failure;	/* HOOK_FAIL_NONE: the hook's own answer */
	int		  exit_status;	/* exit code, or -signal, or 0 */
	char		  diag[HOOK_DIAG_MAX];	/* first stderr line, sanitised */
	long		  elapsed_ms;	/* wall time of the run (incl. wait) */
};

struct hook_stats {
	unsigned long	 asked;		/* hook_ask() calls */
	unsigned long	 answered;	/* valid answers */
	unsigned long	 failed;	/* answers replaced by the default */
	unsigned long	 busy;		/* of which: no free slot */
	unsigned long	 timeouts;	/* of which: killed after timeout */
	int		 running;	/* running now */
	int		 peak_running;	/* most ever running at once */
};

struct hook;

struct hook	*hook_new(const struct hook_opts *, char *errstr, size_t errlen);
struct hook	*hook_free(struct hook *);
enum km_status	 hook_ask(struct hook *, const struct hook_request *,
		    struct hook_answer *out, char *errstr, size_t errlen);
void		 hook_stats(struct hook *, struct hook_stats *out);

enum km_status	 hook_answer_parse(const char *buf, size_t len,
		    enum hook_event, struct hook_answer *out,
		    char *errstr, size_t errlen);
void		 hook_answer_clear(struct hook_answer *);

/* Format the request text into buf; KM_PROTO if a field is invalid or
 * buf too small.  *outlen gets the length (without a NUL). */
enum km_status	 hook_request_format(const struct hook_request *,
		    char *buf, size_t buflen, size_t *outlen,
		    char *errstr, size_t errlen);

const char	*hook_action_name(enum hook_action);	/* "keep-encrypted" */
enum hook_action hook_action_from_name(const char *);	/* NONE if unknown */
int		 hook_action_valid(enum hook_event, enum hook_action);
const char	*hook_event_name(enum hook_event);	/* "unlock" */
const char	*hook_failure_name(enum hook_failure);	/* "timeout" */

#endif
