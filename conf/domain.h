#ifndef KMILTER_CONF_DOMAIN_H
#define KMILTER_CONF_DOMAIN_H
/*
 * NAME
 *	domain - addresses against the domain names of the configuration
 * SUMMARY
 *	domain_of(), domain_matches(), domain_bare_len(), domain_internal()
 * DESCRIPTION
 *	domain_of() is the domain part of an address (after the last @), or
 *	NULL.  domain_matches(dom, pattern) says whether dom is the domain
 *	pattern names: "example.com" that domain only, ".example.com" the
 *	domain and every domain below it; case-insensitive; a pattern may
 *	end in a dot ("example.com." is the same domain); "." names none.
 *	domain_bare_len() is a pattern's length without its trailing dots.
 *	domain_internal() says whether an address is in one of
 *	policy.internal_domains: kmilter's direction of mail and kmctl's
 *	refusal to enroll an outside address use the same rule.
 * OWNERSHIP
 *	domain_of() points into its argument.
 * ERRORS
 *	None.
 * THREADS
 *	Pure functions: thread-safe.
 */
#include <stddef.h>

#include "conf.h"

const char	*domain_of(const char *address);
int		 domain_matches(const char *dom, const char *pattern);
size_t		 domain_bare_len(const char *pattern);
int		 domain_internal(const struct kmilter_conf *, const char *address);

#endif
