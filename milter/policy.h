#ifndef KMILTER_MILTER_POLICY_H
#define KMILTER_MILTER_POLICY_H
/*
 * NAME
 *	policy - what kmilter does with a message: direction and per-recipient rules
 * SUMMARY
 *	policy_host_internal(), policy_domain_internal(), policy_direction(),
 *	policy_direction_name(), policy_for_rcpt()
 * DESCRIPTION
 *	A message is outbound when its envelope sender is in one of
 *	policy.internal_domains and the client is trusted: its address is in
 *	policy.internal_hosts (IPv4/IPv6 CIDR) or the session authenticated
 *	with SMTP AUTH (when policy.trust_auth is set), the way OpenDKIM
 *	decides whether to sign.  Otherwise it is inbound when at least one
 *	envelope recipient is in an internal domain, and passed untouched
 *	when none is.  Domains compare case-insensitively; a configured
 *	domain also covers its subdomains when written with a leading dot.
 *	policy_for_rcpt() applies policy.rules (first match of address, then
 *	domain, then parent domains) over the policy.outbound defaults.
 * OWNERSHIP
 *	Returned strings are static.
 * ERRORS
 *	None.
 * THREADS
 *	Thread-safe: reads only the configuration.
 */
#include "conf.h"

enum direction { DIR_PASS, DIR_OUTBOUND, DIR_INBOUND };

struct rcpt_policy {
	int	encrypt;	/* enum conf_encrypt */
	int	sign;		/* 1 or 0 */
};

int		 policy_host_internal(const struct kmilter_conf *, const char *addr);
int		 policy_domain_internal(const struct kmilter_conf *, const char *address);
enum direction	 policy_direction(const struct kmilter_conf *, int client_internal,
		    const char *auth_authen, const char *from, char *const *rcpts, int nrcpts);
const char	*policy_direction_name(enum direction);
struct rcpt_policy policy_for_rcpt(const struct kmilter_conf *, const char *rcpt);

#endif
