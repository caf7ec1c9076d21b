/*
 * callbacks.c - libmilter callbacks and the smfiDesc table (see callbacks.h).
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libmilter/mfapi.h>

#include "budget.h"
#include "callbacks.h"
#include "idle.h"
#include "log.h"
#include "outbound.h"
#include "pipeline.h"
#include "runtime.h"
#include "secmem.h"
#include "session.h"
#include "spool.h"
#include "stats.h"
#include "verdict.h"

static pthread_mutex_t conf_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct kmilter_conf *current_conf;
static int draining;

/* libmilter takes char * for names it never changes. */
static char sym_qid[] = "i";
static char sym_auth[] = "{auth_authen}";
static char sym_daemon[] = "{daemon_name}";
static char symlist_connect[] = "{daemon_name}";
static char symlist_envfrom[] = "i {auth_authen}";
static char symlist_eom[] = "i";
static char milter_name[] = "kmilter";

/* callbacks_set_conf - make conf current (takes the caller's reference) */
void
callbacks_set_conf(struct kmilter_conf *conf)
{
	struct kmilter_conf *old;

	pthread_mutex_lock(&conf_mtx);
	old = current_conf;
	current_conf = conf;
	pthread_mutex_unlock(&conf_mtx);
	conf_unref(old);
}

/* callbacks_conf - a reference to the current configuration */
struct kmilter_conf *
callbacks_conf(void)
{
	struct kmilter_conf *c;

	pthread_mutex_lock(&conf_mtx);
	c = conf_ref(current_conf);
	pthread_mutex_unlock(&conf_mtx);
	return c;
}

/* callbacks_active - connections in progress */
int
callbacks_active(void)
{
	return budget_sessions();
}

/* callbacks_drain - kmilter is stopping: tempfail every new connection */
void
callbacks_drain(void)
{
	__atomic_store_n(&draining, 1, __ATOMIC_SEQ_CST);
}

/* inflight_max - the in-flight byte budget of a configuration */
static size_t
inflight_max(const struct kmilter_conf *c)
{
	return (size_t)c->max_inflight_mb << 20;
}

/* busy_reply - 451 4.3.2: the MTA retries later */
static void
busy_reply(SMFICTX *ctx)
{
	static char rcode[] = "451", xcode[] = "4.3.2";
	static char text[] = "system busy, try again later";

	smfi_setreply(ctx, rcode, xcode, text);
}

/*
 * spec_matches - whether a socket's local address is the one milter.socket
 * names (unix path, or inet/inet6 port)
 */
static int
spec_matches(const struct sockaddr_storage *ss, const char *spec)
{
	const char *p;

	if (ss->ss_family == AF_UNIX) {
		const struct sockaddr_un *un = (const struct sockaddr_un *)(const void *)ss;

		if ((p = strchr(spec, ':')) != NULL && spec[0] != '/')
			p++;
		else
			p = spec;
		return strncmp(un->sun_path, p, sizeof(un->sun_path)) == 0;
	}
	if ((p = strchr(spec, ':')) == NULL)
		return 0;
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)(const void *)ss)->sin_port) ==
		    atoi(p + 1);
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)(const void *)ss)->sin6_port) ==
		    atoi(p + 1);
	return 0;
}

/*
 * mta_socket - the descriptor of this connection's socket, or -1.
 * libmilter has no call for it; its context starts with a thread id and
 * the descriptor (struct smfi_str in libmilter/libmilter.h, unchanged
 * from 8.12 to 8.18).  The candidate is
 * used only if it is a connected (not listening) stream socket whose
 * local address is milter.socket; anything else means the layout is not
 * what we expect, and idle sessions are then left to libmilter.
 */
static int
mta_socket(SMFICTX *ctx, const char *spec)
{
	struct { pthread_t id; int sd; } head;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss), il = sizeof(int);
	struct stat st;
	int listening = 1, type = 0;

	memcpy(&head, (const void *)ctx, sizeof(head));
	if (head.sd < 0 || fstat(head.sd, &st) != 0 || !S_ISSOCK(st.st_mode) ||
	    getsockopt(head.sd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &il) != 0 ||
	    listening || getsockopt(head.sd, SOL_SOCKET, SO_TYPE, &type, &il) != 0 ||
	    type != SOCK_STREAM)
		return -1;
	memset(&ss, 0, sizeof(ss));
	if (getsockname(head.sd, (struct sockaddr *)&ss, &sl) != 0 || !spec_matches(&ss, spec))
		return -1;
	return head.sd;
}

/* remember_qid - pick up macro {i} whenever the MTA sends it */
static void
remember_qid(SMFICTX *ctx, struct message *m)
{
	const char *i = smfi_getsymval(ctx, sym_qid);

	if (m != NULL && i != NULL)
		message_set_queue_id(m, i);
}

/*
 * qid_missing_warn - once per process: a message reached end of message
 * without the macro {i}.  kmilter asks for it (smfi_setsymlist) where the
 * MTA lets milters choose; an MTA that does not, or a Sendmail whose
 * Milter.macros lists leave i out, sends none, and every log line then
 * reads NOQUEUE.  Postfix sends i at MAIL FROM and end of message;
 * Sendmail's default lists only at MAIL FROM (its end-of-message list is
 * {msg_id}), which is enough.
 */
static void
qid_missing_warn(const struct message *m)
{
	static int warned;

	if (m == NULL || m->queue_id != NULL || __atomic_exchange_n(&warned, 1, __ATOMIC_SEQ_CST))
		return;
	log_warnx("milter: the MTA sends no queue id (macro i): log lines say NOQUEUE; "
	    "add i to Postfix's milter_mail_macros or to Sendmail's "
	    "confMILTER_MACROS_ENVFROM (Milter.macros.envfrom)");
}

/* mlfi_negotiate - ask for the actions later steps need, and the macros */
static sfsistat
mlfi_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
    unsigned long f3, unsigned long *pf0, unsigned long *pf1, unsigned long *pf2,
    unsigned long *pf3)
{
	unsigned long want = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY | SMFIF_QUARANTINE;

	if ((f0 & want) != want) {
		log_warnx("milter: the MTA does not offer the actions kmilter needs "
		    "(offered 0x%lx, need 0x%lx)", f0, want);
		return SMFIS_REJECT;
	}
	*pf0 = want | (f0 & SMFIF_SETSYMLIST);
	/*
	 * Skip the steps kmilter has no callback for, and take headers and
	 * body chunks without a reply each (their failures are reported at
	 * end of message): fewer round trips per message.  libmilter fakes
	 * the no-reply steps for an MTA that cannot do them.
	 */
	*pf1 = KMILTER_MILTER_STEPS & f1;
	*pf2 = 0;
	*pf3 = 0;
	if (f0 & SMFIF_SETSYMLIST) {
		smfi_setsymlist(ctx, SMFIM_CONNECT, symlist_connect);
		smfi_setsymlist(ctx, SMFIM_ENVFROM, symlist_envfrom);
		smfi_setsymlist(ctx, SMFIM_EOM, symlist_eom);
	}
	return SMFIS_CONTINUE;
}

/* mlfi_connect - a new SMTP connection, if the session budget allows */
static sfsistat
mlfi_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *sa)
{
	static int warned;
	static char rcode[] = "421", xcode[] = "4.3.2", text[] = "kmilter is stopping";
	struct kmilter_conf *c;
	const char *daemon = smfi_getsymval(ctx, sym_daemon);
	struct session *s;
	int fd;

	if (__atomic_load_n(&draining, __ATOMIC_SEQ_CST)) {
		log_info("milter: connection from %s refused: kmilter is stopping",
		    host ? host : "?");
		smfi_setreply(ctx, rcode, xcode, text);
		return SMFIS_TEMPFAIL;
	}
	c = callbacks_conf();
	if (budget_session_enter(c->max_sessions) != 0) {
		log_warnx("milter: connection from %s refused: system busy: "
		    "milter.max_sessions (%d) connections open", host ? host : "?",
		    c->max_sessions);
		conf_unref(c);
		busy_reply(ctx);
		return SMFIS_TEMPFAIL;
	}
	s = session_new(c, sa, host);
	if (s == NULL) {
		conf_unref(c);
		budget_session_leave();
		log_warnx("milter: out of memory at connect");
		return SMFIS_TEMPFAIL;
	}
	/* The second pass of the two-pass layout (see pipeline.h). */
	s->decrypt_pass = *s->conf->in_decrypt_daemon != '\0' && daemon != NULL &&
	    strcmp(daemon, s->conf->in_decrypt_daemon) == 0;
	fd = mta_socket(ctx, c->socket);
	conf_unref(c);
	if (fd < 0 && !__atomic_exchange_n(&warned, 1, __ATOMIC_SEQ_CST))
		log_warnx("milter: cannot find the MTA connection's socket in libmilter's "
		    "context: milter.timeout will not end idle connections");
	idle_add(s, fd);
	stats_count(ST_CONNECTIONS);
	smfi_setpriv(ctx, s);
	log_debug(2, "milter: connect from %s [%s]%s%s", host ? host : "?",
	    s->client_addr, s->client_internal ? " (internal)" : "",
	    s->decrypt_pass ? " (decrypt pass)" : "");
	return SMFIS_CONTINUE;
}

/* mlfi_envfrom - MAIL FROM: a new message */
static sfsistat
mlfi_envfrom(SMFICTX *ctx, char **argv)
{
	struct session *s = smfi_getpriv(ctx);
	char reply[512];

	if (s == NULL)
		return SMFIS_TEMPFAIL;
	idle_leave(s);
	if (session_message_begin(s, argv[0], smfi_getsymval(ctx, sym_auth)) != KM_OK) {
		log_warnx("milter: out of memory at MAIL FROM");
		return SMFIS_TEMPFAIL;
	}
	remember_qid(ctx, s->msg);
	if (pipeline_sender_refused(s, reply, sizeof(reply))) {
		smfi_setreply(ctx, (char *)(uintptr_t)"553", (char *)(uintptr_t)"5.7.1", reply);
		session_message_end(s);
		return SMFIS_REJECT;
	}
	return SMFIS_CONTINUE;
}

/* rcpt_step - RCPT TO (a key lookup may take a while) */
static sfsistat
rcpt_step(SMFICTX *ctx, struct session *s, char **argv)
{
	if (message_add_rcpt(s->msg, argv[0]) != KM_OK)
		return SMFIS_TEMPFAIL;
	if (pipeline_outbound(s)) {
		char reply[512];
		const char *rcode = NULL, *xcode = NULL;

		switch (outbound_rcpt(s, s->msg->nrcpts - 1, reply, sizeof(reply),
		    &rcode, &xcode)) {
		case KM_OK:
			break;
		case KM_PERMFAIL:
			smfi_setreply(ctx, (char *)(uintptr_t)rcode, (char *)(uintptr_t)xcode, reply);
			message_drop_last_rcpt(s->msg);
			return SMFIS_REJECT;
		default:
			smfi_setreply(ctx, (char *)(uintptr_t)rcode, (char *)(uintptr_t)xcode, reply);
			message_drop_last_rcpt(s->msg);
			return SMFIS_TEMPFAIL;
		}
	}
	return SMFIS_CONTINUE;
}

/* mlfi_envrcpt - RCPT TO; never ended as idle meanwhile */
static sfsistat
mlfi_envrcpt(SMFICTX *ctx, char **argv)
{
	struct session *s = smfi_getpriv(ctx);
	sfsistat r;

	if (s == NULL || s->msg == NULL)
		return SMFIS_TEMPFAIL;
	idle_enter(s);
	runtime_pin();		/* a reload frees this key store after us */
	r = rcpt_step(ctx, s, argv);
	runtime_unpin();
	idle_leave(s);
	return r;
}

/*
 * mlfi_header - one header.  No reply (SMFIP_NR_HDR): a failure marks the
 * message, and end of message tempfails it.
 */
static sfsistat
mlfi_header(SMFICTX *ctx, char *name, char *value)
{
	struct session *s = smfi_getpriv(ctx);

	if (s != NULL)
		idle_leave(s);
	if (s == NULL || s->msg == NULL || s->msg->failed)
		return SMFIS_NOREPLY;
	remember_qid(ctx, s->msg);
	if (message_add_header(s->msg, name, value) != KM_OK) {
		s->msg->failed = 1;
		snprintf(s->msg->failure, sizeof(s->msg->failure),
		    "out of memory storing headers");
	}
	return SMFIS_NOREPLY;
}

/*
 * over_budget - the message does not fit in milter.max_inflight_mb: mark
 * it (tempfail, or reject when it alone needs more than the budget), stop
 * spooling it and give back what it held
 */
static void
over_budget(struct message *m, size_t need, size_t max, const char *when)
{
	m->failed = 1;
	m->over_budget = 1;
	m->too_big = need > max;
	snprintf(m->failure, sizeof(m->failure), "%s: milter.max_inflight_mb (%zu MB) %s "
	    "at %s (message needs %zu kB, %zu kB in flight)",
	    m->too_big ? "message too large" : "system busy", max >> 20,
	    m->too_big ? "is less than the message needs" : "exhausted", when,
	    need >> 10, budget_inflight() >> 10);
	message_drop_body(m);
}

/*
 * budget_factor - bytes of budget per message byte: 1 for a message that
 * passes through, BUDGET_CRYPTO_FACTOR for one that is to be signed,
 * encrypted or decrypted (every recipient is known by the body)
 */
static size_t
budget_factor(struct session *s)
{
	struct message *m = s->msg;
	enum direction dir = policy_direction(s->conf, s->client_internal, s->auth_authen,
	    m->from, m->rcpts, m->nrcpts);

	m->streamed = dir != DIR_PASS;
	return dir == DIR_PASS ? 1 : BUDGET_CRYPTO_FACTOR;
}

/*
 * crypto_need - the claim of a message on the crypto path (budget.h):
 * bounded once its body is in a spool file (outbound_stream.c signs and
 * encrypts from there; inbound_spool.c and cms_stream.c decrypt and
 * verify from there)
 */
static size_t
crypto_need(const struct session *s)
{
	const struct message *m = s->msg;

	if (!m->streamed)
		return BUDGET_CRYPTO_FACTOR * (m->header_bytes + m->received);
	return budget_crypto_need(m->header_bytes + m->received,
	    (size_t)s->conf->spool_memory_max);
}

/*
 * claim_body - claim the budget for a body chunk (the first one also for
 * the headers): a message on the crypto path claims its whole working set
 * as its bytes arrive, so that one whose body was taken is not refused at
 * end of message.  A message that holds nothing yet may start only below
 * three quarters of the budget: the last quarter lets messages in progress
 * finish when a flood of new ones arrives.  0, or -1 with the message
 * marked.
 */
static int
claim_body(struct session *s, size_t len)
{
	struct message *m = s->msg;
	size_t max = inflight_max(s->conf), add = len, need;

	if (m->budget_factor == 0) {
		m->budget_factor = budget_factor(s);
		add += m->header_bytes;
	}
	m->received += len;
	if (m->budget_factor > 1) {	/* the crypto path: bounded once streamed */
		need = crypto_need(s);
		budget_shrink(&m->claim, need);
		add = need > m->claim ? need - m->claim : 0;
	} else
		need = m->header_bytes + m->received;
	if (budget_reserve(&m->claim, m->budget_factor > 1 ? add : m->budget_factor * add,
	    m->claim == 0 ? max - max / 4 : max) == 0)
		return 0;
	over_budget(m, need, max, "body");
	return -1;
}

/* mlfi_body - a body chunk into the spool, within the budget; no reply, as mlfi_header */
static sfsistat
mlfi_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
	struct session *s = smfi_getpriv(ctx);
	struct kmerr err;

	if (s != NULL)
		idle_leave(s);
	if (s == NULL || s->msg == NULL || s->msg->failed)
		return SMFIS_NOREPLY;
	if (claim_body(s, len) != 0)
		return SMFIS_NOREPLY;
	if (message_append_body(s->msg, chunk, len, &err) != KM_OK) {
		s->msg->failed = 1;
		snprintf(s->msg->failure, sizeof(s->msg->failure), "%s", err.msg);
		/* spool full or unwritable: give its disk back now, answer 4.3.2 */
		s->msg->over_budget = err.status == KM_TEMPFAIL;
		message_drop_body(s->msg);
	}
	return SMFIS_NOREPLY;
}

/* libmilter sends at most 64 KiB per message to the MTA. */
#define REPLACE_CHUNK	65535

/* replace_body_from_spool - the new body to the MTA in chunks read from its spool; -1 on failure */
static int
replace_body_from_spool(SMFICTX *ctx, struct spool *body)
{
	unsigned char *buf = malloc(REPLACE_CHUNK);
	size_t off = 0, got, used = 0;
	struct kmerr err;
	int rc = 0;

	if (buf == NULL)
		return -1;
	do {
		if (spool_read(body, off, buf, REPLACE_CHUNK, &got, &err) != KM_OK) {
			log_warnx("replace body: %s", err.msg);
			rc = -1;
			used = REPLACE_CHUNK;	/* a failed read may have filled some */
			break;
		}
		if (got > used)
			used = got;
		if ((got > 0 || off == 0) && smfi_replacebody(ctx, buf, (int)got) != MI_SUCCESS) {
			rc = -1;
			break;
		}
		off += got;
	} while (got > 0);
	secmem_wipe(buf, used);		/* it held plaintext or signed content */
	free(buf);
	return rc;
}

/* apply - carry out a rewrite verdict with libmilter; -1 if any step failed */
static int
apply(SMFICTX *ctx, const struct verdict *v)
{
	for (int i = 0; i < v->nchanges; i++) {
		const struct header_change *c = &v->changes[i];
		int r;

		if (c->index == 0)
			r = smfi_addheader(ctx, c->name, c->value);
		else
			r = smfi_chgheader(ctx, c->name, c->index, c->value);
		if (r != MI_SUCCESS)
			return -1;
	}
	if (v->bodyspool != NULL)
		return replace_body_from_spool(ctx, v->bodyspool);
	if (v->body != NULL) {
		size_t off = 0;

		do {
			size_t n = v->bodylen - off > REPLACE_CHUNK ? REPLACE_CHUNK : v->bodylen - off;

			if (smfi_replacebody(ctx, v->body + off, (int)n) != MI_SUCCESS)
				return -1;
			off += n;
		} while (off < v->bodylen);
	}
	return 0;
}

/* log_message - the one line per message */
static void
log_message(const struct session *s, enum direction dir, const struct verdict *v,
    const char *outcome)
{
	const struct message *m = s->msg;
	void (*logf)(const char *, ...) = log_info;

	if (v->downgraded && strcmp(outcome, "ok") == 0) {
		outcome = "downgraded";
		logf = log_warnx;
	}
	logf("%s: from=<%s> rcpts=%d size=%zu direction=%s action=%s result=%s%s%s%s%s ms=%ld",
	    message_qid(m), m->from, m->nrcpts, m->header_bytes + m->received,
	    policy_direction_name(dir), v->action_name, outcome,
	    logf == log_warnx && (v->downgrade_kinds & VERDICT_DG_UNSIGNED) ? " signed=no" : "",
	    logf == log_warnx && (v->downgrade_kinds & VERDICT_DG_UNENCRYPTED) ?
	    " encrypted=no" : "",
	    strcmp(v->result, "ok") ? " reason=" : "", strcmp(v->result, "ok") ? v->result : "",
	    message_elapsed_ms(m));
}

/*
 * reserve_crypto - complete the claim of a message that is to be signed,
 * encrypted or decrypted: budget_crypto_need() of its headers and body,
 * BUDGET_CRYPTO_FACTOR times them up to milter.spool_memory_max, no more
 * past it (streamed from the spool); the body's share was claimed as it
 * arrived.  0, or -1 with the message marked
 */
static int
reserve_crypto(struct session *s, enum direction dir)
{
	struct message *m = s->msg;
	size_t need, max = inflight_max(s->conf);

	if (dir == DIR_PASS)
		return 0;
	need = crypto_need(s);
	if (need <= m->claim || budget_reserve(&m->claim, need - m->claim, max) == 0)
		return 0;
	over_budget(m, need, max, "end of message");
	return -1;
}

/* failed_verdict - the verdict of a message a step marked failed */
static void
failed_verdict(struct verdict *v, const struct message *m)
{
	if (m->too_big) {
		verdict_reject(v, "552", "5.3.4", "message too large for this gateway");
		snprintf(v->result, sizeof(v->result), "%s", m->failure);
		return;
	}
	verdict_tempfail(v, "%s", m->failure);
	if (m->over_budget) {
		/* the log line says which limit or which spool error */
		snprintf(v->xcode, sizeof(v->xcode), "4.3.2");
		snprintf(v->reply, sizeof(v->reply), "%s, try again later",
		    strncmp(m->failure, "spool", 5) == 0 ?
		    "spool full or unwritable" : "system busy");
	}
}

/* eom_step - end of message: decide, apply, log one line */
static sfsistat
eom_step(SMFICTX *ctx, struct session *s)
{
	struct verdict v;
	enum direction dir = DIR_PASS;
	sfsistat rc = SMFIS_CONTINUE;
	const char *outcome = "ok";

	remember_qid(ctx, s->msg);
	qid_missing_warn(s->msg);
	verdict_init(&v);
	dir = policy_direction(s->conf, s->client_internal, s->auth_authen,
	    s->msg->from, s->msg->rcpts, s->msg->nrcpts);
	if (s->msg->failed || reserve_crypto(s, dir) != 0)
		failed_verdict(&v, s->msg);
	else
		dir = pipeline_run(s, &v);
	stats_count(dir == DIR_OUTBOUND ? ST_MSG_OUTBOUND :
	    dir == DIR_INBOUND ? ST_MSG_INBOUND : ST_MSG_PASS);

	switch (v.kind) {
	case VERDICT_PASS:
		stats_count(ST_PASSED);
		break;
	case VERDICT_REWRITE:
		if (apply(ctx, &v) < 0) {
			/* A partial rewrite must never be delivered. */
			verdict_tempfail(&v, "the MTA refused a message change");
			goto tempfail;
		}
		stats_count(ST_REWRITTEN);
		break;
	case VERDICT_REJECT:
		smfi_setreply(ctx, v.rcode, v.xcode, v.reply);
		rc = SMFIS_REJECT;
		outcome = "rejected";
		stats_count(ST_REJECTED);
		break;
	case VERDICT_TEMPFAIL:
	tempfail:
		smfi_setreply(ctx, v.rcode, v.xcode, v.reply);
		rc = SMFIS_TEMPFAIL;
		outcome = "tempfail";
		stats_count(ST_TEMPFAILED);
		break;
	}
	if (v.downgraded && strcmp(outcome, "ok") == 0 && dir != DIR_PASS)
		stats_downgraded(dir == DIR_OUTBOUND, v.downgrade_kinds);
	log_message(s, dir, &v, outcome);
	stats_latency(message_elapsed_ms(s->msg));
	verdict_clear(&v);
	session_message_end(s);
	return rc;
}

/* mlfi_eom - end of message; never ended as idle meanwhile */
static sfsistat
mlfi_eom(SMFICTX *ctx)
{
	struct session *s = smfi_getpriv(ctx);
	sfsistat r;

	if (s == NULL || s->msg == NULL)
		return SMFIS_TEMPFAIL;
	idle_enter(s);
	runtime_pin();		/* a reload frees this key store after us */
	r = eom_step(ctx, s);
	runtime_unpin();
	idle_leave(s);
	return r;
}

/* mlfi_abort - the MTA dropped the message */
static sfsistat
mlfi_abort(SMFICTX *ctx)
{
	struct session *s = smfi_getpriv(ctx);

	if (s != NULL)
		idle_leave(s);
	if (s != NULL && s->msg != NULL) {
		char qid[64];
		size_t received = s->msg->received;

		/* Logged once the message and its budget are given back. */
		snprintf(qid, sizeof(qid), "%s", message_qid(s->msg));
		session_message_end(s);
		stats_count(ST_ABORTED);
		log_debug(1, "%s: milter: message aborted by the MTA after %zu body bytes",
		    qid, received);
	}
	return SMFIS_CONTINUE;
}

/* mlfi_close - the connection ends; priv may be NULL */
static sfsistat
mlfi_close(SMFICTX *ctx)
{
	struct session *s = smfi_getpriv(ctx);

	if (s != NULL) {
		idle_remove(s);
		session_free(s);
		smfi_setpriv(ctx, NULL);
		budget_session_leave();
	}
	return SMFIS_CONTINUE;
}

static struct smfiDesc kmilter_desc = {
	.xxfi_name	= milter_name,
	.xxfi_version	= SMFI_VERSION,
	.xxfi_flags	= SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY | SMFIF_QUARANTINE,
	.xxfi_connect	= mlfi_connect,
	.xxfi_helo	= NULL,
	.xxfi_envfrom	= mlfi_envfrom,
	.xxfi_envrcpt	= mlfi_envrcpt,
	.xxfi_header	= mlfi_header,
	.xxfi_eoh	= NULL,
	.xxfi_body	= mlfi_body,
	.xxfi_eom	= mlfi_eom,
	.xxfi_abort	= mlfi_abort,
	.xxfi_close	= mlfi_close,
	.xxfi_unknown	= NULL,
	.xxfi_data	= NULL,
	.xxfi_negotiate	= mlfi_negotiate,
};

/* callbacks_register - hand the callback table to libmilter */
int
callbacks_register(void)
{
	return smfi_register(kmilter_desc) == MI_SUCCESS ? 0 : -1;
}
