#ifndef KMILTER_MILTER_SESSION_H
#define KMILTER_MILTER_SESSION_H
/*
 * NAME
 *	session - per-connection and per-message state
 * SUMMARY
 *	session_new(), session_free(), session_message_begin(),
 *	message_add_rcpt(), message_add_header(), message_append_body(),
 *	message_drop_body(), session_message_end()
 * DESCRIPTION
 *	A struct session is made at connect and lives until close; it pins the
 *	configuration current at connect.  A struct message is its child, made
 *	at MAIL FROM and freed at end of message or abort.  The message holds
 *	the envelope (normalized with policy_addr_normalize(), so that every
 *	rule, direction and key lookup sees one form), the macros kmilter uses (queue id, {auth_authen}), the
 *	headers in order, and the body in a spool (memory, then a temp file).
 *	Nothing here talks to libmilter: callbacks.c turns its calls into
 *	these.
 * OWNERSHIP
 *	session_free() frees the message too and drops the configuration
 *	reference; both return NULL.  Freeing a message (end, abort, close)
 *	gives back its in-flight budget claim (budget.h); so does
 *	message_drop_body(), which also frees the body spooled so far.  Strings passed in are copied.
 * ERRORS
 *	KM_NOMEM; message_append_body() may return KM_TEMPFAIL (spool full).
 * THREADS
 *	A session is used by the one libmilter thread of its connection.
 */
#include <netinet/in.h>
#include <stddef.h>
#include <time.h>

#include <openssl/x509.h>

#include "conf.h"
#include "kmerr.h"

struct spool;

struct header {
	char	*name;
	char	*value;		/* unfolded as received, without leading space */
};

struct message {
	char		*queue_id;
	char		*from;		/* envelope sender, normalized, without <> */
	char		**rcpts;	/* envelope recipients, normalized, without <> */
	X509		**rcpt_certs;	/* outbound: certificate found at RCPT time */
	int		 nrcpts;
	int		 protection;	/* outbound, missing_cert "split": what the
					   first accepted recipient gets (outbound.c),
					   0 = not known yet */
	struct header	*headers;
	int		 nheaders;
	int		 header_cap;
	size_t		 header_bytes;
	struct spool	*body;
	struct timespec	 start;
	int		 failed;	/* a step failed: tempfail at the end */
	int		 over_budget;	/* failed for max_inflight_mb or the spool (4.3.2) */
	int		 too_big;	/* alone it needs more than the budget */
	char		 failure[256];
	size_t		 claim;		/* bytes held in the in-flight budget */
	size_t		 budget_factor;	/* budget bytes per body byte, 0 = not yet known */
	int		 streamed;	/* on the crypto path: a body past spool_memory_max is streamed */
	size_t		 received;	/* body bytes received (spooled or not) */
};

struct session {
	struct kmilter_conf *conf;
	char		 client_addr[64];	/* printable, "" if unknown */
	int		 client_internal;	/* in policy.internal_hosts */
	char		 client_host[256];
	char		*auth_authen;		/* SMTP AUTH user, NULL if none */
	int		 decrypt_pass;		/* the MTA's {daemon_name} is
						   policy.inbound.decrypt_daemon */
	struct message	*msg;
	/* idle.c: the MTA socket and when the last command ended */
	int		 idle_fd;
	long		 idle_last;	/* monotonic ms */
	int		 idle_busy;
	int		 idle_reaped;
	struct session	*idle_prev, *idle_next;
};

struct session	*session_new(struct kmilter_conf *conf, const struct sockaddr *sa,
		    const char *hostname);
struct session	*session_free(struct session *);
enum km_status	 session_message_begin(struct session *, const char *from,
		    const char *auth_authen);
void		 session_message_end(struct session *);
enum km_status	 message_add_rcpt(struct message *, const char *rcpt);
void		 message_drop_last_rcpt(struct message *);
enum km_status	 message_add_header(struct message *, const char *name, const char *value);
enum km_status	 message_append_body(struct message *, const unsigned char *, size_t,
		    struct kmerr *err);
void		 message_drop_body(struct message *);
const char	*message_header(const struct message *, const char *name);
void		 message_set_queue_id(struct message *, const char *);
long		 message_elapsed_ms(const struct message *);
const char	*message_qid(const struct message *);	/* queue id, or "NOQUEUE" */
size_t		 message_body_size(const struct message *);

#endif
