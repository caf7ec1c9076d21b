#ifndef KMILTER_KEYCLIENT_HOOK_H
#define KMILTER_KEYCLIENT_HOOK_H
/*
 * NAME
 *	hook - run the administrator's hook and parse its answer
 * SUMMARY
 *	hook_new(), hook_free(), hook_ask(), hook_stats(); and, through
 *	hook_proto.h, hook_answer_parse(), hook_answer_clear(),
 *	hook_request_format(), hook_action_name(), hook_action_from_name(),
 *	hook_event_name(), hook_failure_name()
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
 *	with out->failure saying why and err (status as returned) a
 *	one-line reason for the log.  The reason never contains the password.
 *
 *	Right before each run, hook_ask() checks the path with
 *	trustpath_check() (trusted owners: root and the running user): an
 *	unsafe hook is not run (HOOK_FAIL_UNSAFE, logged with the reason),
 *	a missing one is HOOK_FAIL_SPAWN.
 *
 *	The request and answer format (hook_request_format(),
 *	hook_answer_parse()) lives apart in hook_proto.h: pure, no process,
 *	no I/O, no logging.  hook_ask() logs each unknown key the parser
 *	ignored ("hook answer line N: unknown key ... ignored").
 * OWNERSHIP
 *	hook_new() copies opts->path; caller frees with hook_free(), which
 *	returns NULL and must not run while hook_ask() runs on that hook.
 *	The request's strings are borrowed for the duration of the call.
 *	The answer is owned as hook_proto.h says (hook_answer_clear()).
 * ERRORS
 *	hook_new(): NULL with err set on invalid options or no memory.
 *	hook_ask(): KM_OK (the hook answered validly), KM_TEMPFAIL (busy,
 *	cannot start, timeout, killed by a signal, non-zero exit),
 *	KM_PROTO (malformed or too long answer, or an invalid request such
 *	as an address with control characters), KM_NOMEM.  In every case
 *	*out holds a usable action (see above).
 * THREADS
 *	hook_ask() is thread-safe: many threads may ask the same hook at
 *	once.  It reaps only its own child (waitpid on its pid): the process
 *	must not set SIGCHLD to SIG_IGN.  It cannot raise SIGPIPE (the
 *	request is sent over a socket with MSG_NOSIGNAL).
 */
#include <sys/types.h>
#include <stddef.h>

#include "hook_proto.h"
#include "kmerr.h"
#include "status.h"

#define HOOK_TIMEOUT_MAX 600000	/* largest timeout_ms accepted */
#define HOOK_RUNNING_MAX 1024	/* largest max_running accepted */

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

struct hook	*hook_new(const struct hook_opts *, struct kmerr *err);
struct hook	*hook_free(struct hook *);
enum km_status	 hook_ask(struct hook *, const struct hook_request *,
		    struct hook_answer *out, struct kmerr *err);
void		 hook_stats(struct hook *, struct hook_stats *out);

#endif
