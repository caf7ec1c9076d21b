#ifndef KMILTER_KEYCLIENT_HOOK_PROTO_H
#define KMILTER_KEYCLIENT_HOOK_PROTO_H
/*
 * NAME
 *	hook_proto - the admin hook's request and answer format
 * SUMMARY
 *	hook_request_format(), hook_answer_parse(), hook_answer_clear(),
 *	hook_action_name(), hook_action_from_name(), hook_action_valid(),
 *	hook_event_name(), hook_failure_name(), hook_proto_field_ok(),
 *	hook_proto_scan_init(), hook_proto_scan_next(),
 *	hook_proto_key_known()
 * DESCRIPTION
 *	Pure code: no process, no I/O, no logging.  The types and names the
 *	hook protocol of kmilter-hook(8) is made of; hook.h (the runner)
 *	includes this header, so callers keep including hook.h.
 *
 *	hook_request_format() writes a request: lines "key=value" (event,
 *	address, key, level, then queue_id and gateway when given) ended by
 *	a blank line.  Values must be printable and at most 320 bytes.
 *
 *	hook_answer_parse() is the strict parser of an answer: lines
 *	"key=value" ended by LF (a CR before the LF is removed), blank lines
 *	ignored, known keys "action", "password", "reason".  Unknown keys
 *	are ignored and counted in out->unknown_keys (the parser does not log:
 *	its caller does, walking them with hook_proto_scan_next() and
 *	hook_proto_key_known()).  Malformed: a NUL byte, more than
 *	HOOK_ANSWER_MAX bytes, a line longer than HOOK_LINE_MAX, a line
 *	without "=", an empty or invalid key, a duplicate known key, no
 *	action, an unknown action or one not valid for the event, a password
 *	with an action other than "password" (or none with it), control
 *	characters in the reason.  On failure out->unknown_keys still counts
 *	the unknown keys met before the line that failed.
 *
 *	hook_proto_scan_next() splits an answer into its non-blank lines,
 *	checking each line's length, its "=" and its key, as the parser does.
 * OWNERSHIP
 *	A struct hook_answer owns its password (secmem); release it with
 *	hook_answer_clear(), which wipes it; clearing twice is harmless.
 *	An answer must be zero-initialised or cleared before it is filled.
 *	The request's strings are borrowed for the duration of the call.
 *	A struct hook_proto_line points into the scanned buffer.
 *	The name functions return static strings.
 * ERRORS
 *	hook_request_format(): KM_OK, or KM_PROTO if a field is invalid or
 *	buf too small (err says which, never a value).
 *	hook_answer_parse(): KM_OK or KM_PROTO (err says which line and
 *	what is wrong, never a value), KM_NOMEM.
 *	hook_proto_scan_next(): 1 a line, 0 the end, -1 malformed (err,
 *	which may be NULL, says which line and what is wrong).
 *	Every KM_PROTO carries the reason KMERR_BADINPUT (base/kmerr.h).
 * THREADS
 *	Thread-safe: no shared state.
 */
#include <stddef.h>

#include "kmerr.h"

#define HOOK_ANSWER_MAX	4096	/* bytes of stdout read at most */
#define HOOK_LINE_MAX	1024	/* longest answer line, without its LF */
#define HOOK_REASON_MAX	256	/* reason kept, with its NUL */
#define HOOK_DIAG_MAX	160	/* stderr line kept, with its NUL */
#define HOOK_KEY_MAX	32	/* longest answer key */

enum hook_event {
	HOOK_EVENT_UNLOCK = 0,	/* may kmilter have the protection password? */
	HOOK_EVENT_RELEASE,	/* may this key be released to this gateway? */
	HOOK_EVENT_ENROLL	/* may this address be enrolled automatically? */
};

enum hook_action {
	HOOK_ACTION_NONE = 0,		/* only in a cleared answer */
	HOOK_ACTION_PASSWORD,		/* unlock: here is the password */
	HOOK_ACTION_KEEP_ENCRYPTED,	/* unlock: deliver still encrypted */
	HOOK_ACTION_TEMPFAIL,		/* unlock: try again later */
	HOOK_ACTION_ALLOW,		/* release, enroll: yes */
	HOOK_ACTION_DENY		/* release, enroll: no */
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
	int		  unknown_keys;	/* unknown keys ignored by the parser */
};

/* A cursor over an answer's lines, and one line "key=value". */
struct hook_proto_scan {
	const char	*p, *end;
	int		 lineno;
};

struct hook_proto_line {
	int		 lineno;	/* 1-based, blank lines counted */
	const char	*key;		/* [a-z0-9_-]{1,HOOK_KEY_MAX} */
	size_t		 klen;
	const char	*val;		/* CR of a CRLF removed */
	size_t		 vlen;
};

enum km_status	 hook_answer_parse(const char *buf, size_t len,
		    enum hook_event, struct hook_answer *out,
		    struct kmerr *err);
void		 hook_answer_clear(struct hook_answer *);

/* Format the request text into buf; KM_PROTO if a field is invalid or
 * buf too small.  *outlen gets the length (without a NUL). */
enum km_status	 hook_request_format(const struct hook_request *,
		    char *buf, size_t buflen, size_t *outlen,
		    struct kmerr *err);

const char	*hook_action_name(enum hook_action);	/* "keep-encrypted" */
enum hook_action hook_action_from_name(const char *);	/* NONE if unknown */
int		 hook_action_valid(enum hook_event, enum hook_action);
const char	*hook_event_name(enum hook_event);	/* "unlock" */
const char	*hook_failure_name(enum hook_failure);	/* "timeout" */

int		 hook_proto_field_ok(const char *);	/* a valid value */
void		 hook_proto_scan_init(struct hook_proto_scan *,
		    const char *buf, size_t len);
int		 hook_proto_scan_next(struct hook_proto_scan *,
		    struct hook_proto_line *, struct kmerr *err);
int		 hook_proto_key_known(const struct hook_proto_line *);

#endif
