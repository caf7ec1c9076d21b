#ifndef KMILTER_MILTER_HP_H
#define KMILTER_MILTER_HP_H
/*
 * NAME
 *	hp - RFC 9788 header protection: written on what kmilter signs or
 *	encrypts, read from what it decrypts or unwraps
 * SUMMARY
 *	hp_protect(), hp_hide_outer(), hp_apply(), hp_report_value()
 * DESCRIPTION
 *	The protected header fields are the user-facing ones: From, To, Cc,
 *	Subject, Date, Message-ID, Reply-To, In-Reply-To, References.
 *
 *	Outbound.  hp_protect() builds the entity kmilter signs or encrypts
 *	(entity_build()): the message's Content-* headers, hp="cipher"
 *	(encrypted) or hp="clear" (signed only) on its Content-Type, and a
 *	copy of each protected field the message has.  When it encrypts, it
 *	adds for each of them an HP-Outer field holding the value left
 *	outside ("HP-Outer: Subject: [...]" when the Subject is hidden, the
 *	RFC's hcp_baseline).  With the Subject hidden and a Subject of
 *	printable ASCII, the main text starts with a Legacy Display Element
 *	("Subject: ..." and an empty line; hp-legacy-display="1" on that
 *	part's Content-Type), so that a client that knows nothing of RFC 9788
 *	still shows the real Subject: a text/plain message in 7bit or 8bit,
 *	or the first part of a multipart/mixed one when that part is such a
 *	text (its header block is written anew, one line per field); other
 *	messages get none (nested, HTML or encoded text is not rewritten).  A message
 *	whose Content-Type already carries hp is left as the client made it
 *	(nothing added).  hp_hide_outer() makes the verdict changes that
 *	replace every outer Subject with "[...]".
 *
 *	Inbound.  hp_apply() looks at the cryptographic payload's root of an
 *	entity kmilter decrypted or unwrapped (the entity itself, or the
 *	first part of a multipart/signed found inside).  When its Content-Type
 *	carries hp="cipher" or hp="clear", each protected field it holds
 *	replaces the outer one, so the delivered message shows each once:
 *	an outer value that differs is kept as "HP-Outer: Name: value" (the
 *	RFC's field for what travelled outside), extra outer copies likewise,
 *	and a field the payload does not carry stays as it is.  HP-Outer
 *	fields that arrived outside are removed (only kmilter's records stay).
 *	Malformed protection has a defined result, never a doubled or lost
 *	field: a field found twice in the payload, holding a line break or
 *	longer than 998 bytes is not applied (the outer one stays); a
 *	protected From whose address differs from the outer From's (or, with
 *	no outer From, from the envelope sender) is not applied either, since
 *	it would let a sender show an identity the outer checks never saw; a
 *	payload header block that does not parse, or an hp value other than
 *	cipher and clear, applies nothing.  The report says which fields were
 *	applied, which were not and why; hp_report_value() writes it for the
 *	X-Kmilter-Header-Protection header.
 * OWNERSHIP
 *	hp_protect() returns a secmem buffer (plaintext) the caller frees
 *	with secmem_free(p, len).
 * ERRORS
 *	KM_NOMEM (err says so).  A payload that does not parse is a report,
 *	not an error.
 * THREADS
 *	Thread-safe.
 */
#include <stddef.h>

#include "kmerr.h"
#include "session.h"
#include "verdict.h"

struct hp_out {
	int		 cipher;	/* encrypted: hp="cipher"; else hp="clear" */
	int		 hide_subject;	/* with cipher: the outer Subject becomes "[...]" */
	const char	*subject;	/* the Subject to protect (tag removed); NULL: the message's */
};

struct hp_report {
	char	hp[16];		/* "cipher", "clear"; "" when the payload has none */
	char	applied[160];	/* fields whose protected value the message now shows */
	char	skipped[256];	/* fields not applied, each with why */
	char	outer[160];	/* fields whose outer value was kept as HP-Outer */
	int	legacy;		/* outbound: a Legacy Display Element was written */
};

enum km_status	hp_protect(const struct message *, const struct hp_out *,
		    const unsigned char *body, size_t bodylen, char **out, size_t *outlen,
		    struct hp_report *, struct kmerr *);
enum km_status	hp_hide_outer(struct verdict *, const struct message *, struct kmerr *);
enum km_status	hp_apply(struct verdict *, const struct message *, const char *entity,
		    size_t len, struct hp_report *, struct kmerr *);
void		hp_report_value(const struct hp_report *, char *buf, size_t len);

#endif
