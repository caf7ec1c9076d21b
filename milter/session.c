/*
 * session.c - per-connection and per-message state (see session.h).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "budget.h"
#include "policy.h"
#include "session.h"
#include "spool.h"

/* session_new - state for a new SMTP connection; takes a reference on conf */
struct session *
session_new(struct kmilter_conf *conf, const struct sockaddr *sa, const char *hostname)
{
	struct session *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->conf = conf_ref(conf);
	snprintf(s->client_host, sizeof(s->client_host), "%s", hostname ? hostname : "");
	if (sa != NULL && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
		    s->client_addr, sizeof(s->client_addr));
	else if (sa != NULL && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
		    s->client_addr, sizeof(s->client_addr));
	s->client_internal = s->client_addr[0] != '\0' &&
	    policy_host_internal(conf, s->client_addr);
	return s;
}

/* message_free - free a message and its spool */
static struct message *
message_free(struct message *m)
{
	if (m == NULL)
		return NULL;
	free(m->queue_id);
	free(m->from);
	for (int i = 0; i < m->nrcpts; i++) {
		free(m->rcpts[i]);
		X509_free(m->rcpt_certs[i]);
	}
	free(m->rcpts);
	free(m->rcpt_certs);
	for (int i = 0; i < m->nheaders; i++) {
		free(m->headers[i].name);
		free(m->headers[i].value);
	}
	free(m->headers);
	spool_free(m->body);
	budget_release(&m->claim);
	free(m);
	return NULL;
}

/* session_free - free the session and its message; returns NULL */
struct session *
session_free(struct session *s)
{
	if (s == NULL)
		return NULL;
	message_free(s->msg);
	free(s->auth_authen);
	conf_unref(s->conf);
	free(s);
	return NULL;
}

/* session_message_begin - a new message at MAIL FROM */
enum km_status
session_message_begin(struct session *s, const char *from, const char *auth_authen)
{
	struct message *m;

	session_message_end(s);
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return KM_NOMEM;
	clock_gettime(CLOCK_MONOTONIC, &m->start);
	m->from = policy_addr_normalize(from);	/* policy.h: one form for every rule */
	spool_disk_limit((size_t)s->conf->spool_disk_max_mb << 20);	/* a reload applies here */
	m->body = spool_new(s->conf->spool_dir, (size_t)s->conf->spool_memory_max);
	if (m->from == NULL || m->body == NULL) {
		message_free(m);
		return KM_NOMEM;
	}
	free(s->auth_authen);
	s->auth_authen = NULL;
	if (auth_authen != NULL && *auth_authen != '\0' &&
	    (s->auth_authen = strdup(auth_authen)) == NULL) {
		message_free(m);
		return KM_NOMEM;
	}
	s->msg = m;
	return KM_OK;
}

/* session_message_end - free the current message (end of message or abort) */
void
session_message_end(struct session *s)
{
	s->msg = message_free(s->msg);
}

/* message_add_rcpt - record an envelope recipient, normalized (policy_addr_normalize) */
enum km_status
message_add_rcpt(struct message *m, const char *rcpt)
{
	char **nr = realloc(m->rcpts, sizeof(*nr) * (size_t)(m->nrcpts + 1));
	X509 **nc;

	if (nr == NULL)
		return KM_NOMEM;
	m->rcpts = nr;
	if ((nc = realloc(m->rcpt_certs, sizeof(*nc) * (size_t)(m->nrcpts + 1))) == NULL)
		return KM_NOMEM;
	m->rcpt_certs = nc;
	if ((m->rcpts[m->nrcpts] = policy_addr_normalize(rcpt)) == NULL)
		return KM_NOMEM;
	m->rcpt_certs[m->nrcpts] = NULL;
	m->nrcpts++;
	return KM_OK;
}

/* message_add_header - record a header in order */
enum km_status
message_add_header(struct message *m, const char *name, const char *value)
{
	if (m->nheaders == m->header_cap) {
		int cap = m->header_cap ? m->header_cap * 2 : 32;
		struct header *nh = realloc(m->headers, sizeof(*nh) * (size_t)cap);

		if (nh == NULL)
			return KM_NOMEM;
		m->headers = nh;
		m->header_cap = cap;
	}
	m->headers[m->nheaders].name = strdup(name);
	m->headers[m->nheaders].value = strdup(value ? value : "");
	if (m->headers[m->nheaders].name == NULL || m->headers[m->nheaders].value == NULL) {
		free(m->headers[m->nheaders].name);
		free(m->headers[m->nheaders].value);
		return KM_NOMEM;
	}
	m->header_bytes += strlen(name) + strlen(value ? value : "") + 4;
	m->nheaders++;
	return KM_OK;
}

/* message_append_body - spool a body chunk */
enum km_status
message_append_body(struct message *m, const unsigned char *p, size_t n,
    struct kmerr *err)
{
	return spool_append(m->body, p, n, err);
}

/* message_drop_body - forget the body spooled so far and give back its budget */
void
message_drop_body(struct message *m)
{
	m->body = spool_free(m->body);
	budget_release(&m->claim);
}

/* message_header - value of the first header of that name, or NULL */
const char *
message_header(const struct message *m, const char *name)
{
	for (int i = 0; i < m->nheaders; i++)
		if (strcasecmp(m->headers[i].name, name) == 0)
			return m->headers[i].value;
	return NULL;
}

/* message_set_queue_id - remember the MTA's queue id */
void
message_set_queue_id(struct message *m, const char *qid)
{
	if (qid == NULL || *qid == '\0' || (m->queue_id && strcmp(m->queue_id, qid) == 0))
		return;
	free(m->queue_id);
	m->queue_id = strdup(qid);
}

/* message_elapsed_ms - milliseconds since MAIL FROM */
long
message_elapsed_ms(const struct message *m)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - m->start.tv_sec) * 1000 +
	    (now.tv_nsec - m->start.tv_nsec) / 1000000;
}

/* message_body_size - body bytes received so far */
size_t
message_body_size(const struct message *m)
{
	return m->body ? spool_size(m->body) : 0;
}

/* message_drop_last_rcpt - forget the recipient just refused at RCPT time */
void
message_drop_last_rcpt(struct message *m)
{
	if (m->nrcpts == 0)
		return;
	m->nrcpts--;
	free(m->rcpts[m->nrcpts]);
	X509_free(m->rcpt_certs[m->nrcpts]);
}

/* message_qid - the queue id for log lines ("NOQUEUE" before the MTA gives one) */
const char *
message_qid(const struct message *m)
{
	return m && m->queue_id ? m->queue_id : "NOQUEUE";
}
