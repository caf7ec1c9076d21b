#ifndef KMILTER_MILTER_OUTBOUND_H
#define KMILTER_MILTER_OUTBOUND_H
/*
 * NAME
 *	outbound - sign and encrypt what an internal user sends
 * SUMMARY
 *	outbound_rcpt(), outbound_eom()
 * DESCRIPTION
 *	outbound_rcpt() runs at RCPT TO for an outbound message: it looks up
 *	the recipient's certificate (keeping it for end of message) and
 *	refuses, right there, a recipient whose policy is mandatory and who
 *	has no usable certificate (550 5.7.1 naming the recipient and why),
 *	or any recipient without one when policy.outbound.missing_cert is
 *	"refuse"; a KM that cannot be reached gives 451 4.7.1.
 *	With missing_cert "split", each accepted recipient is either
 *	"encrypted" (its policy wants encryption, the configuration lets it
 *	happen, and it has a usable certificate) or "signed-only"; the first
 *	recipient accepted sets the transaction's group and every later one
 *	in the other group gets 452 4.5.3 (RFC 5321 4.5.3.1.10: the client
 *	sends it in another transaction), logged at info with its group.  So
 *	each transaction is encrypted to all its recipients or signed for
 *	all.  A recipient accepted before the message was known to be
 *	outbound is classified when the first outbound one arrives.
 *	outbound_eom() decides for the whole message (one body reaches every
 *	recipient): it is encrypted when every recipient has a usable
 *	certificate and none is "never" (a mandatory recipient with another
 *	recipient that cannot be encrypted to rejects the message with
 *	550 5.7.1 naming who), to all of them plus the sender when
 *	encrypt_to_self is set and the sender is internal; it is signed with
 *	the sender's signing key on this gateway unless a rule says
 *	sign = "no", the client already signed it, or policy_signer() says
 *	the sender may not be signed for (outside or null sender: never;
 *	SMTP AUTH login that does not own the address; unauthenticated with
 *	policy.sign_unauthenticated off).  The signature publishes the
 *	sender's encryption certificate from the KM and the org CA, named
 *	by an SMIMEEncryptionKeyPreference attribute, unless
 *	policy.outbound.publish_cert is off (a sender without one: logged at
 *	info, signed as before; a KM that does not answer: not published this
 *	time, logged).  Sign first, then encrypt.  Mail
 *	whose body parses as CMS enveloped data passes untouched ("already
 *	encrypted by the client"); a body merely labelled
 *	application/pkcs7-mime is logged and treated as content.  A message
 *	that leaves unsigned or unencrypted where policy wanted it is marked
 *	with verdict_downgrade() (the reasons joined by "; ").  A configured
 *	subject tag makes every recipient mandatory and is removed from the
 *	Subject.
 *	A signed-only message whose content is not 7-bit clean is signed as
 *	opaque signed-data (base64), because a multipart/signed 8-bit body
 *	may be re-encoded on its way and its signature broken.
 *	Memory: a body in memory (up to milter.spool_memory_max) is signed
 *	and encrypted there; a larger one, in a spool file, is streamed
 *	from the spool into new spool files (outbound_stream.c), with the
 *	same result, in bounded memory; a spool that fills (disk budget
 *	milter.spool_disk_max_mb, or the file system) tempfails it, 4.3.2.
 * OWNERSHIP
 *	Certificates found at RCPT time are kept in the message and freed with it.
 * ERRORS
 *	outbound_rcpt(): KM_OK accept; KM_PERMFAIL reject with the reply in
 *	rcode/xcode/reply; KM_TEMPFAIL tempfail likewise.
 * THREADS
 *	Thread-safe; one message per thread.
 */
#include <stddef.h>

#include "session.h"
#include "status.h"
#include "verdict.h"

enum km_status	outbound_rcpt(struct session *, int rcpt_index, char *reply, size_t replylen,
		    const char **rcode, const char **xcode);
void		outbound_eom(struct session *, struct verdict *);

#endif
