#ifndef KMILTER_MILTER_INBOUND_H
#define KMILTER_MILTER_INBOUND_H
/*
 * NAME
 *	inbound - decrypt S/MIME for internal users, verify signatures, report
 * SUMMARY
 *	inbound_eom()
 * DESCRIPTION
 *	Headers that imitate kmilter's own (X-Kmilter-*, and
 *	Authentication-Results with this gateway's authserv-id) are removed
 *	before, in every direction, by pipeline_run() (forged.h).
 *	Enveloped and authEnveloped data is decrypted only when every
 *	envelope recipient is internal and can read it itself: each holds a
 *	usable key (current or expired generation, never revoked; enhanced
 *	keys only when the admin hook unlocks them) that opens its own
 *	RecipientInfo and yields the same content key as the others' (each
 *	recipient decrypts with its own keys alone; a RecipientInfo that only
 *	names a recipient proves nothing, anyone can splice one in).  One
 *	body reaches all of them, so an outside recipient, a forward, a list
 *	expansion or a Bcc the sender did not encrypt for leaves the message
 *	encrypted for all: verdict_downgrade() says why ("kept encrypted:
 *	<x> is not internal", "... holds no key this message was encrypted
 *	to", "... cannot open it").  A key lookup that fails or a key the
 *	hook keeps locked also leaves it encrypted ("left encrypted: ...").
 *	Content ciphers: AES (CBC, GCM) is decrypted; Triple-DES too, marked
 *	"weak cipher DES-EDE3-CBC" in X-Kmilter-Decrypted; RC2, single DES
 *	and any other stay encrypted ("kept encrypted: content cipher RC2-CBC
 *	is not accepted (weak)", a downgrade).
 *	The decrypted entity replaces the message's Content-* headers
 *	and body; nested layers (encrypted again, or signed inside) are
 *	opened up to three deep.
 *	Signatures, inside decrypted mail or on signed-only mail, are checked
 *	against the trust store (organization CA and policy.inbound.ca_file,
 *	purpose smimesign) and the From address, and reported in an
 *	Authentication-Results header (RFC 8601, method smime as in RFC 7281)
 *	with the configured authserv-id: one smime result per signed layer,
 *	outermost first (a sender's signature around a forwarded signed
 *	message gives two; a signed layer inside a signature is compared
 *	with its own From when it has one, else the message's).  A
 *	signature that verifies with a SHA-1 or MD5 digest passes with the
 *	comment "(weak digest sha1)".  multipart/signed is kept intact so
 *	clients can verify again, unless what it signs is encrypted (triple
 *	wrapping): then the signature is reported and the envelope inside is
 *	opened, and when it stays shut the message goes on as it came; opaque
 *	signed-data is unwrapped into readable content when
 *	policy.inbound.unwrap_opaque is set.
 *	Malformed CMS or MIME gets policy.on_malformed: pass unchanged,
 *	reject (550 5.6.0) or tempfail.  A key store that cannot be reached
 *	tempfails the message, so a retry decrypts it.
 * OWNERSHIP
 *	Nothing is kept after the call.
 * ERRORS
 *	Expressed in the verdict.
 * THREADS
 *	Thread-safe; one message per thread.
 */
#include "session.h"
#include "verdict.h"

void	inbound_eom(struct session *, struct verdict *);

#endif
