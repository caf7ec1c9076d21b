/*
 * hook_proto.c - the admin hook's request and answer format (see
 * hook_proto.h and kmilter-hook(8)).  Pure: no process, no I/O, no logging.
 */
#include <stdio.h>
#include <string.h>

#include "hook_proto.h"
#include "secmem.h"

#define FIELD_MAX	320	/* longest request value */

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
	if (ev == HOOK_EVENT_RELEASE || ev == HOOK_EVENT_ENROLL)
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
	case HOOK_EVENT_ENROLL:
		return "enroll";
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

/* hook_proto_field_ok - whether a request value is printable, not too long */
int
hook_proto_field_ok(const char *s)
{
	size_t n = 0;

	for (; s[n] != '\0'; n++) {
		unsigned char c = (unsigned char)s[n];

		if (c < 0x20 || c == 0x7f || n >= FIELD_MAX)
			return 0;
	}
	return n > 0;
}

/* request_check - whether every request field is valid; err if not */
static enum km_status
request_check(const struct hook_request *rq, struct kmerr *err)
{
	if (rq->event != HOOK_EVENT_UNLOCK && rq->event != HOOK_EVENT_RELEASE &&
	    rq->event != HOOK_EVENT_ENROLL) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "request: invalid event");
		return KM_PROTO;
	}
	if (rq->address == NULL || !hook_proto_field_ok(rq->address)) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "request: address missing, too long "
		    "or with control characters");
		return KM_PROTO;
	}
	if ((rq->queue_id && rq->queue_id[0] &&
	    !hook_proto_field_ok(rq->queue_id)) ||
	    (rq->gateway && rq->gateway[0] &&
	    !hook_proto_field_ok(rq->gateway))) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "request: queue_id or gateway too "
		    "long or with control characters");
		return KM_PROTO;
	}
	return KM_OK;
}

/* hook_request_format - write the request text into buf */
enum km_status
hook_request_format(const struct hook_request *rq, char *buf, size_t buflen,
    size_t *outlen, struct kmerr *err)
{
	const char *key, *level;
	int n;

	if (request_check(rq, err) != KM_OK)
		return KM_PROTO;
	switch (rq->key) {
	case HOOK_KEY_ENCRYPTION:
		key = "encryption";
		break;
	case HOOK_KEY_SIGNING:
		key = "signing";
		break;
	default:
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "request: invalid key kind");
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
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "request: invalid level");
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
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "request: buffer too small");
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
	if (n == 0 || n > HOOK_KEY_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

/* hook_proto_scan_init - start scanning an answer's lines */
void
hook_proto_scan_init(struct hook_proto_scan *sc, const char *buf, size_t len)
{
	sc->p = buf;
	sc->end = buf + len;
	sc->lineno = 0;
}

/* hook_proto_scan_next - the next non-blank line; 1, 0 at the end, -1 bad */
int
hook_proto_scan_next(struct hook_proto_scan *sc, struct hook_proto_line *l,
    struct kmerr *err)
{
	while (sc->p < sc->end) {
		const char *p = sc->p, *nl, *lend, *eq;
		size_t llen;

		sc->lineno++;
		nl = memchr(p, '\n', (size_t)(sc->end - p));
		lend = nl ? nl : sc->end;
		sc->p = nl ? nl + 1 : sc->end;
		if (lend > p && lend[-1] == '\r')
			lend--;
		llen = (size_t)(lend - p);
		if (llen > HOOK_LINE_MAX) {
			kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
			    "line %d longer than %d bytes",
			    sc->lineno, HOOK_LINE_MAX);
			return -1;
		}
		if (llen == 0)
			continue;
		if ((eq = memchr(p, '=', llen)) == NULL) {
			kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
			    "line %d: no '='", sc->lineno);
			return -1;
		}
		if (!key_ok(p, (size_t)(eq - p))) {
			kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
			    "line %d: invalid key",
			    sc->lineno);
			return -1;
		}
		*l = (struct hook_proto_line){ sc->lineno, p, (size_t)(eq - p),
		    eq + 1, (size_t)(lend - eq - 1) };
		return 1;
	}
	return 0;
}

/* What the parser has gathered so far. */
struct parse_state {
	enum hook_action act;
	int		 have_action, have_reason;
	const char	*pw;
	size_t		 pwlen;
	char		 reason[HOOK_REASON_MAX];
};

typedef enum km_status (*key_fn)(struct parse_state *,
    const struct hook_proto_line *, struct kmerr *);

/* take_action - the "action" line */
static enum km_status
take_action(struct parse_state *ps, const struct hook_proto_line *l,
    struct kmerr *err)
{
	char name[24];

	if (ps->have_action++) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "line %d: duplicate key \"action\"",
		    l->lineno);
		return KM_PROTO;
	}
	ps->act = HOOK_ACTION_NONE;
	if (l->vlen < sizeof(name)) {
		memcpy(name, l->val, l->vlen);
		name[l->vlen] = '\0';
		ps->act = hook_action_from_name(name);
	}
	if (ps->act == HOOK_ACTION_NONE) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "line %d: unknown action", l->lineno);
		return KM_PROTO;
	}
	return KM_OK;
}

/* take_password - the "password" line (checked once the action is known) */
static enum km_status
take_password(struct parse_state *ps, const struct hook_proto_line *l,
    struct kmerr *err)
{
	if (ps->pw != NULL) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "line %d: duplicate key \"password\"",
		    l->lineno);
		return KM_PROTO;
	}
	ps->pw = l->val;
	ps->pwlen = l->vlen;
	return KM_OK;
}

/* take_reason - the "reason" line, truncated to fit */
static enum km_status
take_reason(struct parse_state *ps, const struct hook_proto_line *l,
    struct kmerr *err)
{
	size_t vlen = l->vlen;

	if (ps->have_reason++) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "line %d: duplicate key \"reason\"",
		    l->lineno);
		return KM_PROTO;
	}
	if (has_ctl(l->val, vlen)) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "line %d: control character in reason",
		    l->lineno);
		return KM_PROTO;
	}
	if (vlen >= sizeof(ps->reason))
		vlen = sizeof(ps->reason) - 1;
	memcpy(ps->reason, l->val, vlen);
	ps->reason[vlen] = '\0';
	return KM_OK;
}

static const struct {
	const char	*name;
	key_fn		 take;
} answer_keys[] = {
	{ "action", take_action },
	{ "password", take_password },
	{ "reason", take_reason },
};

/* key_taker - the function for a known key; NULL if unknown */
static key_fn
key_taker(const struct hook_proto_line *l)
{
	for (size_t i = 0; i < sizeof(answer_keys) / sizeof(answer_keys[0]);
	    i++)
		if (strlen(answer_keys[i].name) == l->klen &&
		    memcmp(answer_keys[i].name, l->key, l->klen) == 0)
			return answer_keys[i].take;
	return NULL;
}

/* hook_proto_key_known - whether a line's key is one the parser knows */
int
hook_proto_key_known(const struct hook_proto_line *l)
{
	return key_taker(l) != NULL;
}

/* check_password - the password rules, once the action is known */
static enum km_status
check_password(const struct parse_state *ps, struct kmerr *err)
{
	if (ps->act != HOOK_ACTION_PASSWORD) {
		if (ps->pw == NULL)
			return KM_OK;
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "password given with action \"%s\"",
		    hook_action_name(ps->act));
		return KM_PROTO;
	}
	if (ps->pw == NULL) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "action \"password\" without "
		    "a password");
		return KM_PROTO;
	}
	if (ps->pwlen == 0) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT, "empty password");
		return KM_PROTO;
	}
	if (has_ctl(ps->pw, ps->pwlen)) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "control character in password");
		return KM_PROTO;
	}
	return KM_OK;
}

/* finish - check the whole answer and fill *out */
static enum km_status
finish(const struct parse_state *ps, enum hook_event ev,
    struct hook_answer *out, struct kmerr *err)
{
	if (!ps->have_action) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT, "no action in answer");
		return KM_PROTO;
	}
	if (!hook_action_valid(ev, ps->act)) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "action \"%s\" is not valid for event "
		    "\"%s\"", hook_action_name(ps->act), hook_event_name(ev));
		return KM_PROTO;
	}
	if (check_password(ps, err) != KM_OK)
		return KM_PROTO;
	if (ps->act == HOOK_ACTION_PASSWORD) {
		if ((out->password = secmem_alloc(ps->pwlen + 1)) == NULL) {
			kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
			return KM_NOMEM;
		}
		memcpy(out->password, ps->pw, ps->pwlen);
		out->password[ps->pwlen] = '\0';
		out->password_len = ps->pwlen;
	}
	out->action = ps->act;
	memcpy(out->reason, ps->reason, sizeof(out->reason));
	return KM_OK;
}

/* hook_answer_parse - strict parser of a hook's answer */
enum km_status
hook_answer_parse(const char *buf, size_t len, enum hook_event ev,
    struct hook_answer *out, struct kmerr *err)
{
	struct parse_state ps = { .act = HOOK_ACTION_NONE };
	struct hook_proto_scan sc;
	struct hook_proto_line l;
	key_fn take;
	int r;

	if (out->password != NULL)
		secmem_free(out->password, out->password_len + 1);
	out->password = NULL;
	out->password_len = 0;
	out->action = HOOK_ACTION_NONE;
	out->reason[0] = '\0';
	out->unknown_keys = 0;

	if (len > HOOK_ANSWER_MAX) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT,
		    "answer longer than %d bytes",
		    HOOK_ANSWER_MAX);
		return KM_PROTO;
	}
	if (len > 0 && memchr(buf, '\0', len) != NULL) {
		kmerr_set(err, KM_PROTO, KMERR_BADINPUT, "NUL byte in answer");
		return KM_PROTO;
	}
	hook_proto_scan_init(&sc, buf, len);
	while ((r = hook_proto_scan_next(&sc, &l, err)) == 1) {
		if ((take = key_taker(&l)) == NULL)
			out->unknown_keys++;
		else if (take(&ps, &l, err) != KM_OK)
			return KM_PROTO;
	}
	if (r == -1)
		return KM_PROTO;
	return finish(&ps, ev, out, err);
}
