/*
 * callbacks.c - libmilter callbacks and the smfiDesc table (see callbacks.h).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libmilter/mfapi.h>

#include "callbacks.h"
#include "log.h"
#include "outbound.h"
#include "pipeline.h"
#include "session.h"
#include "stats.h"
#include "verdict.h"

static pthread_mutex_t conf_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct kmilter_conf *current_conf;
static int active_sessions;

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
	return __atomic_load_n(&active_sessions, __ATOMIC_SEQ_CST);
}

/* remember_qid - pick up macro {i} whenever the MTA sends it */
static void
remember_qid(SMFICTX *ctx, struct message *m)
{
	const char *i = smfi_getsymval(ctx, sym_qid);

	if (m != NULL && i != NULL)
		message_set_queue_id(m, i);
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

/* mlfi_connect - a new SMTP connection */
static sfsistat
mlfi_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *sa)
{
	struct kmilter_conf *c = callbacks_conf();
	struct session *s = session_new(c, sa, host);
	const char *daemon = smfi_getsymval(ctx, sym_daemon);

	conf_unref(c);
	if (s == NULL) {
		log_warnx("milter: out of memory at connect");
		return SMFIS_TEMPFAIL;
	}
	/* The second pass of the two-pass layout (see pipeline.h). */
	s->decrypt_pass = *s->conf->in_decrypt_daemon != '\0' && daemon != NULL &&
	    strcmp(daemon, s->conf->in_decrypt_daemon) == 0;
	__atomic_add_fetch(&active_sessions, 1, __ATOMIC_SEQ_CST);
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

/* mlfi_envrcpt - RCPT TO */
static sfsistat
mlfi_envrcpt(SMFICTX *ctx, char **argv)
{
	struct session *s = smfi_getpriv(ctx);

	if (s == NULL || s->msg == NULL)
		return SMFIS_TEMPFAIL;
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

/*
 * mlfi_header - one header.  No reply (SMFIP_NR_HDR): a failure marks the
 * message, and end of message tempfails it.
 */
static sfsistat
mlfi_header(SMFICTX *ctx, char *name, char *value)
{
	struct session *s = smfi_getpriv(ctx);

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

/* mlfi_body - a body chunk into the spool; no reply, as mlfi_header */
static sfsistat
mlfi_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
	struct session *s = smfi_getpriv(ctx);
	char err[256];

	if (s == NULL || s->msg == NULL || s->msg->failed)
		return SMFIS_NOREPLY;
	if (message_append_body(s->msg, chunk, len, err, sizeof(err)) != KM_OK) {
		s->msg->failed = 1;
		snprintf(s->msg->failure, sizeof(s->msg->failure), "%s", err);
	}
	return SMFIS_NOREPLY;
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
	if (v->body != NULL) {
		size_t off = 0;

		/* libmilter sends at most 64 KiB per message to the MTA. */
		do {
			size_t n = v->bodylen - off > 65535 ? 65535 : v->bodylen - off;

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
	logf("%s: from=<%s> rcpts=%d size=%zu direction=%s action=%s result=%s%s%s ms=%ld",
	    message_qid(m), m->from, m->nrcpts, m->header_bytes + message_body_size(m),
	    policy_direction_name(dir), v->action_name, outcome,
	    strcmp(v->result, "ok") ? " reason=" : "", strcmp(v->result, "ok") ? v->result : "",
	    message_elapsed_ms(m));
}

/* mlfi_eom - end of message: decide, apply, log one line */
static sfsistat
mlfi_eom(SMFICTX *ctx)
{
	struct session *s = smfi_getpriv(ctx);
	struct verdict v;
	enum direction dir = DIR_PASS;
	sfsistat rc = SMFIS_CONTINUE;
	const char *outcome = "ok";

	if (s == NULL || s->msg == NULL)
		return SMFIS_TEMPFAIL;
	remember_qid(ctx, s->msg);
	verdict_init(&v);
	if (s->msg->failed) {
		dir = policy_direction(s->conf, s->client_internal, s->auth_authen,
		    s->msg->from, s->msg->rcpts, s->msg->nrcpts);
		verdict_tempfail(&v, "%s", s->msg->failure);
	} else
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
	log_message(s, dir, &v, outcome);
	stats_latency(message_elapsed_ms(s->msg));
	verdict_clear(&v);
	session_message_end(s);
	return rc;
}

/* mlfi_abort - the MTA dropped the message */
static sfsistat
mlfi_abort(SMFICTX *ctx)
{
	struct session *s = smfi_getpriv(ctx);

	if (s != NULL && s->msg != NULL) {
		log_debug(1, "%s: milter: message aborted by the MTA after %zu body bytes",
		    message_qid(s->msg), message_body_size(s->msg));
		stats_count(ST_ABORTED);
		session_message_end(s);
	}
	return SMFIS_CONTINUE;
}

/* mlfi_close - the connection ends; priv may be NULL */
static sfsistat
mlfi_close(SMFICTX *ctx)
{
	struct session *s = smfi_getpriv(ctx);

	if (s != NULL) {
		session_free(s);
		smfi_setpriv(ctx, NULL);
		__atomic_sub_fetch(&active_sessions, 1, __ATOMIC_SEQ_CST);
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
