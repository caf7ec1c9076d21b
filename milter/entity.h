#ifndef KMILTER_MILTER_ENTITY_H
#define KMILTER_MILTER_ENTITY_H
/*
 * NAME
 *	entity - the message's MIME entity: taken out of a message, put back into one
 * SUMMARY
 *	entity_from_message(), entity_replace(), entity_from_bio()
 * DESCRIPTION
 *	The top-level MIME entity of a message is its Content-* headers and
 *	its body; the other headers (From, To, Subject, Received, ...) stay
 *	outside when kmilter signs, encrypts or decrypts.
 *	entity_from_message() builds that entity with CRLF line ends (a
 *	message without Content-Type gets "text/plain; charset=us-ascii",
 *	RFC 2045's default, written out).
 *	entity_replace() turns a new entity into verdict changes: every
 *	top-level Content-* header is deleted, the entity's Content-*
 *	headers are added, MIME-Version: 1.0 is added when missing, and the
 *	body is replaced.  No other header of the entity ever reaches the
 *	message header: what a sender wrote inside decrypted or unwrapped
 *	content (From, Subject, Authentication-Results, X-Kmilter-*,
 *	Received, RFC 9788 protected headers, ...) is dropped, with a log
 *	line that names the dropped headers (never their values).
 * OWNERSHIP
 *	entity_from_bio() copies a memory BIO's bytes into a NUL-terminated
 *	buffer from secmem_alloc() (NULL when out of memory), and
 *	entity_from_message() returns one: they may hold plaintext, the
 *	caller frees them with secmem_free(p, len).
 * ERRORS
 *	KM_NOMEM; KM_PROTO when the new entity has no header block.
 * THREADS
 *	Thread-safe.
 */
#include <stddef.h>

#include <openssl/bio.h>

#include "kmerr.h"
#include "session.h"
#include "verdict.h"

enum km_status entity_from_message(const struct message *, const unsigned char *body,
		    size_t bodylen, char **out, size_t *outlen);
enum km_status entity_replace(struct verdict *, const struct message *,
		    const char *entity, size_t len, struct kmerr *err);
int	       entity_is_content_header(const char *name);
char	      *entity_from_bio(BIO *, size_t *len);

#endif
