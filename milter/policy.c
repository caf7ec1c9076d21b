/*
 * policy.c - direction of a message and per-recipient rules (see policy.h).
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy.h"

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

/* domain_of - the domain part of an address, or NULL */
static const char *
domain_of(const char *address)
{
	const char *at = strrchr(address, '@');

	return at && at[1] ? at + 1 : NULL;
}

/* domain_matches - does dom equal pattern, or sit below ".pattern"? */
static int
domain_matches(const char *dom, const char *pattern)
{
	if (pattern[0] == '.') {
		size_t dl = strlen(dom), pl = strlen(pattern);

		return (dl > pl && strcasecmp(dom + dl - pl, pattern) == 0) ||
		    strcasecmp(dom, pattern + 1) == 0;
	}
	return strcasecmp(dom, pattern) == 0;
}

/* policy_domain_internal - is the address in one of policy.internal_domains? */
int
policy_domain_internal(const struct kmilter_conf *c, const char *address)
{
	const char *dom = domain_of(address);

	if (dom == NULL)
		return 0;
	for (int i = 0; i < c->n_internal_domains; i++)
		if (domain_matches(dom, c->internal_domains[i]))
			return 1;
	return 0;
}

/* policy_direction - outbound, inbound or pass for one message */
enum direction
policy_direction(const struct kmilter_conf *c, int client_internal,
    const char *auth_authen, const char *from, char *const *rcpts, int nrcpts)
{
	int trusted = client_internal || (c->trust_auth && auth_authen && *auth_authen);

	if (trusted && from && policy_domain_internal(c, from))
		return DIR_OUTBOUND;
	for (int i = 0; i < nrcpts; i++)
		if (policy_domain_internal(c, rcpts[i]))
			return DIR_INBOUND;
	return DIR_PASS;
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

/* rule_for - the policy.rules entry for an address: exact address, domain, parents */
static const struct conf_rule *
rule_for(const struct kmilter_conf *c, const char *rcpt)
{
	const char *dom = domain_of(rcpt);

	for (int i = 0; i < c->nrules; i++)
		if (strchr(c->rules[i].match, '@') && strcasecmp(c->rules[i].match, rcpt) == 0)
			return &c->rules[i];
	if (dom == NULL)
		return NULL;
	for (int i = 0; i < c->nrules; i++)
		if (!strchr(c->rules[i].match, '@') && domain_matches(dom, c->rules[i].match))
			return &c->rules[i];
	return NULL;
}

/* policy_for_rcpt - encryption and signing for one outbound recipient */
struct rcpt_policy
policy_for_rcpt(const struct kmilter_conf *c, const char *rcpt)
{
	struct rcpt_policy p = { c->out_encrypt, c->out_sign == SIGN_YES };
	const struct conf_rule *r = rule_for(c, rcpt);

	if (r != NULL) {
		if (r->encrypt != RULEENC_DEFAULT)
			p.encrypt = r->encrypt - 1;	/* enum conf_ruleenc -> conf_encrypt */
		if (r->sign != RULESIGN_DEFAULT)
			p.sign = r->sign == RULESIGN_YES;
	}
	return p;
}
