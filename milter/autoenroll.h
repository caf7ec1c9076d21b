#ifndef KMILTER_MILTER_AUTOENROLL_H
#define KMILTER_MILTER_AUTOENROLL_H
/*
 * NAME
 *	autoenroll - enroll an internal address the first time kmilter sees
 *	it (policy.auto_enroll)
 * SUMMARY
 *	autoenroll_decide(), autoenroll_outbound(), autoenroll_inbound(),
 *	autoenroll_wait_idle()
 * DESCRIPTION
 *	autoenroll_decide() is the whole decision, pure: an address is
 *	enrolled only with auto_enroll on or hook, only when it is in
 *	policy.internal_domains, and only when the key lookup said "no such
 *	key" (KM_PERMFAIL with KMERR_NOTFOUND: an outage never enrolls).
 *	With hook, the hook must answer allow first (event enroll); its
 *	deny (or failure) is remembered for policy.auto_enroll_deny_ttl
 *	seconds (AE_DENIALS addresses, the oldest forgotten first), during
 *	which that address's messages do not ask it again.
 *
 *	autoenroll_outbound() runs before the outbound work: an internal
 *	sender whose identity may sign (policy_signer()) with no encryption
 *	key gets one (keystore_enroll_key(), as kmctl enroll), and then, or
 *	if it had one already, this gateway's signing key
 *	(keystore_enroll_signer()).  The message waits for that at most
 *	policy.auto_enroll_wait_ms; past that the verdict is a tempfail
 *	"451 4.7.1 enrolling <addr>, try again" and the enrollment finishes
 *	in a background thread.  A denied or failed enrollment lets the
 *	message go on as without auto_enroll (its log says why).
 *	autoenroll_inbound() starts the enrollment of every internal
 *	recipient without an encryption key and does not wait.
 *
 *	One enrollment per address at a time in the process: a table of
 *	AUTOENROLL_SLOTS addresses under a mutex; a message for an address
 *	already being enrolled waits for that one.  A full table: the
 *	enrollment is not started (logged), the message goes on.  Across
 *	threads of other processes and gateways the KM decides
 *	(keymodel_enroll_race.c).  Every enrollment is logged at info level
 *	with the address, generation, certificate fingerprint and the queue
 *	id that triggered it.
 *
 *	The organization CA (km.org_ca_cert, km.org_ca_key) is read at the
 *	first enrollment, and again when its paths change.
 *
 *	autoenroll_wait_idle() waits until no enrollment runs (tests,
 *	shutdown), at most ms; 0 when idle.
 * OWNERSHIP
 *	Everything borrowed; the background thread copies what it needs.
 * ERRORS
 *	autoenroll_outbound(): 0 go on, -1 the verdict is made (tempfail).
 * THREADS
 *	Thread-safe.
 */
#include "kmerr.h"
#include "status.h"

#define AUTOENROLL_SLOTS	64

struct kmilter_conf;
struct session;
struct verdict;

enum autoenroll_want {
	AUTOENROLL_NO = 0,	/* leave it */
	AUTOENROLL_YES,		/* enroll */
	AUTOENROLL_ASK		/* ask the hook, enroll on allow */
};

enum autoenroll_want autoenroll_decide(int mode, int internal,
		    enum km_status lookup, enum kmerr_reason reason);
int		 autoenroll_outbound(struct session *, struct verdict *);
void		 autoenroll_inbound(struct session *);
int		 autoenroll_wait_idle(int ms);

#endif
