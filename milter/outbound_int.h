#ifndef KMILTER_MILTER_OUTBOUND_INT_H
#define KMILTER_MILTER_OUTBOUND_INT_H
/*
 * NAME
 *	outbound_int - what the outbound modules share (outbound.c,
 *	outbound_entity.c, outbound_rcpt.c, outbound_stream.c)
 * SUMMARY
 *	struct out_job; outbound_make_entity(), outbound_encrypt_to(),
 *	outbound_sender_cert(), outbound_seven_bit_clean(), outbound_digest(),
 *	outbound_cipher() in outbound_entity.c (used by both rewrite paths);
 *	outbound_rewrite_stream() in outbound_stream.c;
 *	outbound_lookup_cert() in outbound_rcpt.c.
 * DESCRIPTION
 *	One outbound decision is a struct out_job.  A message whose body is
 *	in memory is signed and encrypted there (outbound.c); one whose body
 *	went to a spool file (past milter.spool_memory_max) is streamed:
 *	outbound_rewrite_stream() builds only the entity's head in memory
 *	(its headers and the first piece of the body, so that header
 *	protection sees what it needs), signs and encrypts from the spool
 *	into new spools and gives the verdict the result as a spool.
 *	Functions that return int give 0, or -1 with the verdict made.
 *	outbound_lookup_cert() gives recipient i's usable certificate (kept
 *	in m->rcpt_certs[i] from RCPT time, or looked up now and checked for
 *	revocation): KM_OK with the certificate or none, else why in err;
 *	*unknown (if not NULL) says a "none" is not a "no" (a directory did
 *	not answer, or the revocation status could not be told under
 *	revocation.check = hard).
 * OWNERSHIP
 *	out_job_clear() in outbound.c releases what a job holds.
 * THREADS
 *	One job per message, one thread.
 */
#include <stddef.h>

#include <openssl/x509.h>

#include "conf.h"
#include "session.h"
#include "smime.h"
#include "verdict.h"

/* One outbound decision: what is wanted, the keys, the buffers. */
struct out_job {
	struct session	*s;
	struct message	*m;
	const struct kmilter_conf *c;
	struct verdict	*v;
	int		 sign;
	int		 encrypt;
	int		 protect;	/* kmilter makes the entity: protect its headers */
	int		 hide_subject;	/* every recipient's policy lets the Subject be hidden */
	char		 downgrade[256];
	unsigned	 dg;		/* VERDICT_DG_*: what it leaves without */
	char		*newsubj;
	X509		*signer;
	EVP_PKEY	*key;
	STACK_OF(X509)	*chain;
	X509		*self;		/* the sender's encryption certificate, or NULL */
	int		 self_looked;	/* self asked for already (found or not) */
	char		 self_err[256];	/* why not found */
	STACK_OF(X509)	*org;		/* the org CA, published with self */
	X509		**certs;
	size_t		 ncerts;
	char		*entity;	/* plaintext: wiped */
	size_t		 entlen;
	char		*signed_ent;	/* signed plaintext: wiped */
	size_t		 signedlen;
	char		*final;		/* what replaces the entity (signed only: plaintext): wiped */
	size_t		 finallen;
};

int		 outbound_make_entity(struct out_job *, const unsigned char *body,
		    size_t bodylen);
int		 outbound_encrypt_to(struct out_job *);
enum km_status	 outbound_sender_cert(struct out_job *, char *err, size_t errlen);
int		 outbound_seven_bit_clean(const char *, size_t, size_t *line);
enum smime_digest outbound_digest(int);
enum smime_cipher outbound_cipher(int);
int		 outbound_rewrite_stream(struct out_job *);
enum km_status	 outbound_lookup_cert(const struct kmilter_conf *, struct message *,
		    int i, char *err, size_t errlen, int *unknown);

#endif
