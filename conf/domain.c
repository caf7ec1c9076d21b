/*
 * domain.c - addresses against the domain names of the configuration
 * (see domain.h).
 */
#include <string.h>
#include <strings.h>

#include "domain.h"

/* domain_of - the domain part of an address, or NULL */
const char *
domain_of(const char *address)
{
	const char *at = strrchr(address, '@');

	return at && at[1] ? at + 1 : NULL;
}

/* tail_eq - do the last n bytes of s equal p[0..n) (case-insensitive)? */
static int
tail_eq(const char *s, size_t sl, const char *p, size_t n)
{
	return sl >= n && strncasecmp(s + sl - n, p, n) == 0;
}

/* domain_bare_len - length of a configured name without its trailing dots */
size_t
domain_bare_len(const char *p)
{
	size_t n = strlen(p);

	while (n > 0 && p[n - 1] == '.')
		n--;
	return n;
}

/* domain_matches - does dom equal pattern, or sit below ".pattern"? */
int
domain_matches(const char *dom, const char *pattern)
{
	size_t dl = strlen(dom), pl = domain_bare_len(pattern);

	if (pl == 0)
		return 0;	/* "." names no domain, it does not mean "all" */
	if (pattern[0] == '.')
		return (dl > pl && tail_eq(dom, dl, pattern, pl)) ||
		    (dl == pl - 1 && tail_eq(dom, dl, pattern + 1, pl - 1));
	return dl == pl && tail_eq(dom, dl, pattern, pl);
}

/* domain_internal - is the address in one of policy.internal_domains? */
int
domain_internal(const struct kmilter_conf *c, const char *address)
{
	const char *dom = domain_of(address);

	if (dom == NULL)
		return 0;
	for (int i = 0; i < c->n_internal_domains; i++)
		if (domain_matches(dom, c->internal_domains[i]))
			return 1;
	return 0;
}
