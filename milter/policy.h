#ifndef KMILTER_MILTER_POLICY_H
#define KMILTER_MILTER_POLICY_H
/*
 * NAME
 *	policy - what kmilter does with a message: direction and per-recipient rules
 * SUMMARY
 *	policy_addr_normalize(), policy_host_internal(),
 *	policy_domain_internal(), policy_client_trusted(), policy_direction(),
 *	policy_direction_name(), policy_for_rcpt(), policy_sender_owned(),
 *	policy_signer(), policy_signer_name()
 * DESCRIPTION
 *	Addresses.  policy_addr_normalize() gives the one form every rule,
 *	direction and key lookup sees: angle brackets and a source route
 *	dropped, the domain lower-cased without trailing dots, a quoted local
 *	part unquoted when it needs no quoting ("alice"@X is alice@X); the
 *	local part keeps its case, as keymodel.c keeps it (its lookups fold
 *	case themselves).  A local part that needs its quotes keeps them
 *	(keymodel refuses such an address: no certificate, no key).  The
 *	session stores the normalized envelope (session.c), so rules cannot
 *	be dodged by nocert@SECURE.example. or "nocert"@secure.example.
 *
 *	Direction.  A client is trusted when its address is in
 *	policy.internal_hosts (IPv4/IPv6 CIDR) or it authenticated with SMTP
 *	AUTH (when policy.trust_auth is set).  Mail from a trusted client is
 *	outbound when its envelope sender is in one of policy.internal_domains
 *	OR any recipient is outside them, whatever the sender (null, outside):
 *	the outbound rules (encryption, mandatory) apply to everything that
 *	leaves through this gateway from inside.  A trusted client's mail
 *	with an outside sender to internal recipients only is inbound, as is
 *	any mail from an untrusted client with an internal recipient; the
 *	rest passes untouched.  Domains compare case-insensitively; a
 *	configured domain also covers its subdomains when written with a
 *	leading dot.
 *
 *	Signing.  policy_signer() says whether an outbound message may carry
 *	the sender's signature: only an internal sender, only from a trusted
 *	client; with SMTP AUTH only when the login owns the sender address
 *	(policy_sender_owned(): the same address, case-insensitively, or an
 *	entry of policy.sender_login_map for the address or its @domain);
 *	without AUTH only when policy.sign_unauthenticated is set.
 *
 *	policy_for_rcpt() applies policy.rules (the address's rule, else the
 *	domain's, else the nearest parent's, whatever the list order) over
 *	the policy.outbound defaults.
 * OWNERSHIP
 *	Returned names are static; policy_addr_normalize() returns a string
 *	the caller frees.
 * ERRORS
 *	policy_addr_normalize() returns NULL only when out of memory.
 * THREADS
 *	Thread-safe: reads only the configuration.
 */
#include "conf.h"

enum direction { DIR_PASS, DIR_OUTBOUND, DIR_INBOUND };

struct rcpt_policy {
	int	encrypt;	/* enum conf_encrypt */
	int	sign;		/* 1 or 0 */
	int	hide_subject;	/* encrypted: outer Subject "[...]" (1 or 0) */
};

enum policy_signer {
	SIGNER_OK,		/* sign as configured */
	SIGNER_NOT_INTERNAL,	/* outside or null sender: never signed */
	SIGNER_NOT_OWNED,	/* AUTH login does not own the sender address */
	SIGNER_UNAUTHENTICATED	/* no AUTH and policy.sign_unauthenticated off */
};

char		*policy_addr_normalize(const char *address);
int		 policy_host_internal(const struct kmilter_conf *, const char *addr);
int		 policy_domain_internal(const struct kmilter_conf *, const char *address);
int		 policy_client_trusted(const struct kmilter_conf *, int client_internal,
		    const char *auth_authen);
enum direction	 policy_direction(const struct kmilter_conf *, int client_internal,
		    const char *auth_authen, const char *from, char *const *rcpts, int nrcpts);
const char	*policy_direction_name(enum direction);
struct rcpt_policy policy_for_rcpt(const struct kmilter_conf *, const char *rcpt);
int		 policy_sender_owned(const struct kmilter_conf *, const char *login,
		    const char *sender);
enum policy_signer policy_signer(const struct kmilter_conf *, const char *auth_authen,
		    const char *from);
const char	*policy_signer_name(enum policy_signer);

#endif
