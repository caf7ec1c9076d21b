#ifndef KMILTER_MILTER_ENTITY_H
#define KMILTER_MILTER_ENTITY_H
/*
 * NAME
 *	entity - the message's MIME entity: taken out of a message, put back into one
 * SUMMARY
 *	entity_from_message(), entity_build(), entity_replace(),
 *	entity_replace_spool(), entity_split_writer(), entity_from_bio(),
 *	entity_bio_sized()
 * DESCRIPTION
 *	The top-level MIME entity of a message is its Content-* headers and
 *	its body; the other headers (From, To, Subject, Received, ...) stay
 *	outside when kmilter signs, encrypts or decrypts.
 *	entity_from_message() builds that entity with CRLF line ends (a
 *	message without Content-Type gets "text/plain; charset=us-ascii",
 *	RFC 2045's default, written out).  entity_build() does the same with
 *	what header protection (hp.h) adds: a parameter appended to the
 *	(first) Content-Type, header lines (CRLF-ended) after the Content-*
 *	headers, and text put in front of the body.
 *	entity_replace() turns a new entity into verdict changes: every
 *	top-level Content-* header is deleted, the entity's Content-*
 *	headers are added, MIME-Version: 1.0 is added when missing, and the
 *	body is replaced.  No other header of the entity ever reaches the
 *	message header: what a sender wrote inside decrypted or unwrapped
 *	content (From, Subject, Authentication-Results, X-Kmilter-*,
 *	Received, ...) is dropped, with a log line that names the dropped
 *	headers (never their values); RFC 9788 protected headers are set on
 *	the message by hp_apply() (hp.h), not here.
 *	entity_replace_spool() does the same for an entity whose header
 *	block (and its empty line: nothing more) is in memory and whose body
 *	is a spool: the verdict takes the spool (verdict_set_body_spool), so
 *	a large body goes to the MTA from disk.  entity_split_writer() is
 *	the BIO that makes those two pieces: what is written to it goes to
 *	head up to and including the first empty line (at most
 *	ENTITY_HEAD_MAX bytes, else the write fails), the rest to body.
 * OWNERSHIP
 *	entity_bio_sized() is a memory BIO made for about hint bytes up front
 *	(past them it grows as any memory BIO), so that an output whose size
 *	is known roughly is not reallocated, copied and wiped a score of times
 *	as it is written; NULL when out of memory.
 *	entity_from_bio() copies a memory BIO's bytes into a NUL-terminated
 *	buffer from secmem_alloc() (NULL when out of memory), and
 *	entity_from_message() returns one: they may hold plaintext, the
 *	caller frees them with secmem_free(p, len).  entity_replace_spool()
 *	takes the spool when it returns KM_OK (the caller's otherwise).  A
 *	split writer borrows head and body: free it (BIO_free) first.
 * ERRORS
 *	KM_NOMEM; KM_PROTO when the new entity has no header block.
 * THREADS
 *	Thread-safe.
 */
#include <stddef.h>

#include <openssl/bio.h>

/* The most a split writer sends to its head BIO. */
#define ENTITY_HEAD_MAX	65536

#include "kmerr.h"
#include "session.h"
#include "verdict.h"

enum km_status entity_from_message(const struct message *, const unsigned char *body,
		    size_t bodylen, char **out, size_t *outlen);
struct entity_extra {
	const char	*ctype_param;	/* e.g. "; hp=\"cipher\"", or NULL */
	const char	*lines;		/* header lines, each ending in CRLF, or NULL */
	const char	*prefix;	/* text in front of the body, or NULL */
};

enum km_status entity_build(const struct message *, const struct entity_extra *,
		    const unsigned char *body, size_t bodylen, char **out, size_t *outlen);
enum km_status entity_replace(struct verdict *, const struct message *,
		    const char *entity, size_t len, struct kmerr *err);
enum km_status entity_replace_spool(struct verdict *, const struct message *,
		    const char *head, size_t headlen, struct spool *body,
		    struct kmerr *err);
BIO	      *entity_split_writer(BIO *head, BIO *body);
int	       entity_is_content_header(const char *name);
char	      *entity_from_bio(BIO *, size_t *len);
BIO	      *entity_bio_sized(size_t hint);

#endif
