#ifndef KMILTER_KEYCLIENT_SMIMEA_H
#define KMILTER_KEYCLIENT_SMIMEA_H
/*
 * NAME
 *	smimea - certificates from DNS SMIMEA records (RFC 8162), DNSSEC
 *	validated
 * SUMMARY
 *	smimea_new(), smimea_free(), smimea_wants(), smimea_lookup(),
 *	smimea_owner(), smimea_rdata(), smimea_rr_cert()
 * DESCRIPTION
 *	smimea_lookup() asks libunbound for the SMIMEA records (type 53) of
 *	an address: owner name SHA2-256(local part) truncated to 28 octets
 *	in lower-case hex, "._smimecert.", the domain (RFC 8162 section 3).
 *	An answer is used only when libunbound validated it (secure): a
 *	bogus answer (the zone does not validate against the trust anchor,
 *	a record was tampered with) is logged at warning and never used; an
 *	insecure one (no chain of trust) is not used either (debug).  Of
 *	the records, the first that carries a whole certificate (selector
 *	0 Cert, matching type 0 Full) with usage 3 (DANE-EE), or usage 1
 *	(PKIX-EE) whose certificate also verifies to a CA of
 *	opts.pkix_ca_file for S/MIME encryption, that passes the key
 *	store's test (keystore_cert_check(): valid now, emailProtection, a
 *	key mail can be encrypted to, naming the address) is the answer;
 *	the others are skipped and say why at debug level 1.  Usages 0
 *	and 2 name CAs: skipped.
 *
 *	Every lookup is bounded by timeout_ms: the query is asynchronous
 *	and cancelled at the deadline.  A domain whose servers did not
 *	answer (timeout, SERVFAIL) is not asked again for backoff_ms: its
 *	lookups are KM_TEMPFAIL at once (64 domains remembered).  The
 *	resolver: full recursion from the root, or a forwarder
 *	(opts.resolver, "addr[@port]"), and for the domains listed, a
 *	stub server (opts.stub) authoritative for each domain as a zone.
 *	The trust anchor file must hold a DS or DNSKEY record
 *	(smimea_new() refuses it otherwise).
 *
 *	smimea_owner(), smimea_rdata() and smimea_rr_cert() are the pure
 *	parts (no DNS), for tests.
 * OWNERSHIP
 *	smimea_new() copies opts; free with smimea_free(), which returns
 *	NULL.  *cert of smimea_lookup() and smimea_rr_cert() is a new
 *	reference (X509_free()).  struct smimea_rr points into the rdata
 *	it was parsed from.  smimea_rr_cert() borrows pkix (may be NULL).
 * ERRORS
 *	smimea_lookup(): KM_OK with *cert; KM_PERMFAIL, KMERR_NOTFOUND: a
 *	validated answer (or a bogus or insecure one, never used) gave no
 *	usable certificate; KM_TEMPFAIL, KMERR_TIMEOUT or
 *	KMERR_UNREACHABLE: no answer in time, or the servers failed
 *	(SERVFAIL and the like), or the domain is in its back-off period;
 *	KM_NOMEM.
 *	smimea_owner(): -1 when addr has no local part or its domain is
 *	not a host name.  smimea_rdata(): KM_PERMFAIL, KMERR_BADINPUT.
 *	smimea_rr_cert(): KM_PERMFAIL, KMERR_REFUSED with the reason.
 * THREADS
 *	Thread-safe: one libunbound context (its functions are documented
 *	thread-safe, libunbound(3); ub_ctx_async(1): a resolver thread,
 *	not a forked process) shared by every thread.  One waiting thread
 *	at a time polls ub_fd() and runs ub_process(); the callbacks hand
 *	each answer to the thread that asked, under a mutex, and a query
 *	given up at its deadline is cancelled (or freed by its callback
 *	when it was already being delivered).
 */
#include <stddef.h>

#include <openssl/x509.h>

#include "kmerr.h"
#include "status.h"

#define SMIMEA_OWNER_MAX	320	/* 56 + 12 + 253 + NUL, rounded */
#define SMIMEA_USAGE_DANE_EE	3
#define SMIMEA_USAGE_PKIX_EE	1

struct smimea_opts {
	const char	*resolver;	/* "" or NULL: recursion from the root */
	const char	*stub;		/* "" or NULL: none; else for domains */
	const char	*trust_anchor_file;	/* DS/DNSKEY lines */
	const char	*pkix_ca_file;	/* "" or NULL: usage 1 never used */
	int		 timeout_ms;
	int		 backoff_ms;	/* 0: none */
	char		**domains;	/* NULL: every domain */
	int		 ndomains;
};

struct smimea_rr {
	int			 usage;
	int			 selector;
	int			 mtype;
	const unsigned char	*data;
	size_t			 len;
};

struct smimea;

struct smimea	*smimea_new(const struct smimea_opts *, struct kmerr *err);
struct smimea	*smimea_free(struct smimea *);
int		 smimea_wants(const struct smimea *, const char *addr);
enum km_status	 smimea_lookup(struct smimea *, const char *addr,
		    X509 **cert, struct kmerr *err);

int		 smimea_owner(const char *addr, char *buf, size_t len);
enum km_status	 smimea_rdata(const unsigned char *rdata, size_t len,
		    struct smimea_rr *rr, struct kmerr *err);
enum km_status	 smimea_rr_cert(const struct smimea_rr *, const char *addr,
		    X509_STORE *pkix, X509 **cert, struct kmerr *err);

#endif
