/*
 * policy.c - direction of a message and per-recipient rules (see policy.h).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "domain.h"
#include "policy.h"

/* is_atext - an RFC 5322 atext character (what a dot-atom is made of) */
static int
is_atext(unsigned char ch)
{
	return isalnum(ch) || (ch != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", ch) != NULL);
}

/* is_dot_atom - can this local part stand without quotes? */
static int
is_dot_atom(const char *p, size_t n)
{
	if (n == 0 || p[0] == '.' || p[n - 1] == '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '.' && p[i + 1] == '.')
			return 0;
		if (p[i] != '.' && !is_atext((unsigned char)p[i]))
			return 0;
	}
	return 1;
}

/* quoted_end - index just past the closing quote of a quoted string at p[0], or 0 */
static size_t
quoted_end(const char *p)
{
	for (size_t i = 1; p[i] != '\0'; i++) {
		if (p[i] == '\\' && p[i + 1] != '\0')
			i++;
		else if (p[i] == '"')
			return i + 1;
	}
	return 0;
}

/* unquote_local - the local part without quotes when it needs none, else as given */
static char *
unquote_local(const char *p, size_t n)
{
	char *out = malloc(n + 1);
	size_t o = 0;

	if (out == NULL)
		return NULL;
	if (n >= 2 && p[0] == '"' && p[n - 1] == '"') {
		for (size_t i = 1; i + 1 < n; i++) {
			if (p[i] == '\\' && i + 2 < n)
				i++;
			out[o++] = p[i];
		}
		if (is_dot_atom(out, o)) {
			out[o] = '\0';
			return out;
		}
	}
	memcpy(out, p, n);
	out[n] = '\0';
	return out;
}

/*
 * policy_addr_normalize - the one form of an address every rule and lookup sees
 *	"<@relay:\"Bob\"@Example.COM.>" -> "Bob@example.com".  An address
 *	without '@' (the null sender, "postmaster") is returned as it is.
 */
char *
policy_addr_normalize(const char *address)
{
	const char *p = address ? address : "", *at;
	size_t n, qe, dl;
	char *local, *out;

	while (isspace((unsigned char)*p))
		p++;
	if (*p == '<')
		p++;
	if (*p == '@' && (at = strchr(p, ':')) != NULL)
		p = at + 1;		/* RFC 5321 source route: ignored */
	n = strcspn(p, ">");
	while (n > 0 && isspace((unsigned char)p[n - 1]))
		n--;
	qe = *p == '"' ? quoted_end(p) : 0;
	if (qe > n)
		qe = 0;
	for (at = NULL; ; ) {	/* the last '@' after any quoted local part */
		const char *a = memchr(p + qe, '@', n - qe);

		if (a == NULL)
			break;
		at = a;
		qe = (size_t)(a - p) + 1;
	}
	if (at == NULL)
		return strndup(p, n);
	dl = n - (size_t)(at + 1 - p);
	while (dl > 0 && at[dl] == '.')
		dl--;		/* a trailing dot (FQDN form) names the same domain */
	if ((local = unquote_local(p, (size_t)(at - p))) == NULL)
		return NULL;
	if ((out = malloc(strlen(local) + dl + 2)) == NULL) {
		free(local);
		return NULL;
	}
	n = strlen(local);
	memcpy(out, local, n);
	out[n++] = '@';
	for (size_t i = 0; i < dl; i++)
		out[n++] = (char)tolower((unsigned char)at[1 + i]);
	out[n] = '\0';
	free(local);
	return out;
}

/* parse_cidr - address bytes, family length (4/16) and prefix length */
static int
parse_cidr(const char *s, unsigned char *addr, int *alen, int *plen)
{
	char buf[INET6_ADDRSTRLEN + 8], *slash;

	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	if ((slash = strchr(buf, '/')) != NULL)
		*slash++ = '\0';
	if (inet_pton(AF_INET, buf, addr) == 1)
		*alen = 4;
	else if (inet_pton(AF_INET6, buf, addr) == 1)
		*alen = 16;
	else
		return -1;
	*plen = slash ? atoi(slash) : *alen * 8;
	return 0;
}

/* prefix_match - do the first plen bits agree? */
static int
prefix_match(const unsigned char *a, const unsigned char *b, int plen)
{
	int bytes = plen / 8, bits = plen % 8;

	if (memcmp(a, b, (size_t)bytes) != 0)
		return 0;
	if (bits == 0)
		return 1;
	unsigned char mask = (unsigned char)(0xff << (8 - bits));
	return (a[bytes] & mask) == (b[bytes] & mask);
}

/* policy_host_internal - is a client address in policy.internal_hosts? */
int
policy_host_internal(const struct kmilter_conf *c, const char *addr)
{
	unsigned char a[16], n[16];
	int alen, nlen, plen, dummy;

	if (parse_cidr(addr, a, &alen, &dummy) < 0)
		return 0;
	/* An IPv4-mapped IPv6 client compares as IPv4. */
	if (alen == 16 && memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0) {
		memmove(a, a + 12, 4);
		alen = 4;
	}
	for (int i = 0; i < c->n_internal_hosts; i++) {
		if (parse_cidr(c->internal_hosts[i], n, &nlen, &plen) < 0 || nlen != alen)
			continue;
		if (prefix_match(a, n, plen))
			return 1;
	}
	return 0;
}

/* address_matches - is a configured address (maybe with a trailing dot) this one? */
static int
address_matches(const char *addr, const char *pattern)
{
	size_t pl = domain_bare_len(pattern);

	return strlen(addr) == pl && strncasecmp(addr, pattern, pl) == 0;
}

/* policy_domain_internal - is the address in one of policy.internal_domains? */
int
policy_domain_internal(const struct kmilter_conf *c, const char *address)
{
	return domain_internal(c, address);
}

/* policy_client_trusted - an internal host, or an SMTP AUTH login we trust */
int
policy_client_trusted(const struct kmilter_conf *c, int client_internal,
    const char *auth_authen)
{
	return client_internal || (c->trust_auth && auth_authen && *auth_authen);
}

/*
 * policy_direction - outbound, inbound or pass for one message
 *	From a trusted client: outbound when the sender is internal or any
 *	recipient is outside.  Otherwise inbound when any recipient is
 *	internal.  Called at RCPT time with the recipients so far.
 */
enum direction
policy_direction(const struct kmilter_conf *c, int client_internal,
    const char *auth_authen, const char *from, char *const *rcpts, int nrcpts)
{
	int any_internal = 0, any_outside = 0;

	for (int i = 0; i < nrcpts; i++) {
		if (policy_domain_internal(c, rcpts[i]))
			any_internal = 1;
		else
			any_outside = 1;
	}
	if (policy_client_trusted(c, client_internal, auth_authen) &&
	    ((from && policy_domain_internal(c, from)) || any_outside))
		return DIR_OUTBOUND;
	return any_internal ? DIR_INBOUND : DIR_PASS;
}

/* policy_direction_name - "outbound", "inbound" or "pass" */
const char *
policy_direction_name(enum direction d)
{
	switch (d) {
	case DIR_OUTBOUND:	return "outbound";
	case DIR_INBOUND:	return "inbound";
	case DIR_PASS:		return "pass";
	}
	return "?";
}

/* rule_form - what a rule's match names: an address, a domain, or ".parent" */
enum rule_form { RULE_ADDRESS, RULE_DOMAIN, RULE_PARENT };

static enum rule_form
rule_form(const char *match)
{
	if (strchr(match, '@') != NULL)
		return RULE_ADDRESS;
	return match[0] == '.' ? RULE_PARENT : RULE_DOMAIN;
}

/*
 * rule_of_form - the first rule of a form that names exactly this address
 *	or domain (a ".parent" rule names the domain after its dot)
 */
static const struct conf_rule *
rule_of_form(const struct kmilter_conf *c, enum rule_form form, const char *name)
{
	for (int i = 0; i < c->nrules; i++) {
		const char *m = c->rules[i].match;

		if (rule_form(m) != form)
			continue;
		if (form == RULE_ADDRESS ? address_matches(name, m) :
		    domain_matches(name, form == RULE_PARENT ? m + 1 : m))
			return &c->rules[i];
	}
	return NULL;
}

/*
 * rule_for - the policy.rules entry for an address: its own, else its
 *	domain's, else the nearest parent domain's (".domain", which covers
 *	the domain itself too), whatever their order in the list
 */
static const struct conf_rule *
rule_for(const struct kmilter_conf *c, const char *rcpt)
{
	const char *dom = domain_of(rcpt);
	const struct conf_rule *r;

	if ((r = rule_of_form(c, RULE_ADDRESS, rcpt)) != NULL || dom == NULL)
		return r;
	if ((r = rule_of_form(c, RULE_DOMAIN, dom)) != NULL)
		return r;
	for (const char *d = dom; d != NULL; d = strchr(d, '.') ? strchr(d, '.') + 1 : NULL)
		if ((r = rule_of_form(c, RULE_PARENT, d)) != NULL)
			return r;
	return NULL;
}

/* policy_for_rcpt - encryption and signing for one outbound recipient */
struct rcpt_policy
policy_for_rcpt(const struct kmilter_conf *c, const char *rcpt)
{
	struct rcpt_policy p = { c->out_encrypt, c->out_sign == SIGN_YES,
	    c->out_hide_subject };
	const struct conf_rule *r = rule_for(c, rcpt);

	if (r != NULL) {
		if (r->encrypt != RULEENC_DEFAULT)
			p.encrypt = r->encrypt - 1;	/* enum conf_ruleenc -> conf_encrypt */
		if (r->sign != RULESIGN_DEFAULT)
			p.sign = r->sign == RULESIGN_YES;
		if (r->hide_subject != RULESIGN_DEFAULT)
			p.hide_subject = r->hide_subject == RULESIGN_YES;
	}
	return p;
}

/* login_listed - is login among the comma/space separated logins of a map entry? */
static int
login_listed(const struct conf_login_map *e, const char *login)
{
	for (int i = 0; i < e->nlogins; i++)
		if (strcasecmp(e->logins[i], login) == 0)
			return 1;
	return 0;
}

/*
 * policy_sender_owned - does an SMTP AUTH login own this sender address?
 *	The same address (case-insensitive), or listed for the address, or
 *	for its "@domain", in policy.sender_login_map.
 */
int
policy_sender_owned(const struct kmilter_conf *c, const char *login, const char *sender)
{
	const char *dom = domain_of(sender);

	if (login == NULL || *login == '\0' || sender == NULL || *sender == '\0')
		return 0;
	if (strcasecmp(login, sender) == 0)
		return 1;
	for (int i = 0; i < c->n_sender_logins; i++)
		if (strcasecmp(c->sender_logins[i].address, sender) == 0 &&
		    login_listed(&c->sender_logins[i], login))
			return 1;
	if (dom == NULL)
		return 0;
	for (int i = 0; i < c->n_sender_logins; i++)
		if (c->sender_logins[i].address[0] == '@' &&
		    strcasecmp(c->sender_logins[i].address + 1, dom) == 0 &&
		    login_listed(&c->sender_logins[i], login))
			return 1;
	return 0;
}

/*
 * policy_signer - may an outbound message carry its sender's signature?
 *	For outbound messages only (the client is trusted).
 */
enum policy_signer
policy_signer(const struct kmilter_conf *c, const char *auth_authen, const char *from)
{
	if (from == NULL || !policy_domain_internal(c, from))
		return SIGNER_NOT_INTERNAL;
	if (auth_authen != NULL && *auth_authen != '\0')
		return policy_sender_owned(c, auth_authen, from) ? SIGNER_OK : SIGNER_NOT_OWNED;
	return c->sign_unauthenticated ? SIGNER_OK : SIGNER_UNAUTHENTICATED;
}

/* policy_signer_name - why a message is (not) signed, for log lines */
const char *
policy_signer_name(enum policy_signer ps)
{
	switch (ps) {
	case SIGNER_OK:			return "ok";
	case SIGNER_NOT_INTERNAL:	return "the sender is not internal";
	case SIGNER_NOT_OWNED:		return "the SMTP AUTH login does not own the sender address";
	case SIGNER_UNAUTHENTICATED:	return "the client did not authenticate "
					    "(policy.sign_unauthenticated is off)";
	}
	return "?";
}
