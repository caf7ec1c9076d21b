#ifndef KMILTER_MILTER_INBOUND_INT_H
#define KMILTER_MILTER_INBOUND_INT_H
/*
 * NAME
 *	inbound_int - what inbound.c and inbound_layers.c share
 * SUMMARY
 *	struct in_job, MAX_LAYERS; inbound_kind_of(), inbound_entity_ctype(),
 *	inbound_malformed(), inbound_verify_layer(), inbound_take_layer(),
 *	inbound_settle_held(), inbound_open_layers(), inbound_deliver() in
 *	inbound_layers.c.
 * DESCRIPTION
 *	One inbound message is a struct in_job.  inbound_layers.c opens the
 *	layers of an entity held in memory (decrypt, verify, unwrap, up to
 *	MAX_LAYERS deep) and delivers the result: inbound_open_layers()
 *	from layer first (0: the message's body, later ones j->cur),
 *	inbound_deliver() the opened entity with the headers that say what
 *	was done.  inbound.c drives them at end of message and holds the
 *	paths that read a large message from its spool (stream_eom,
 *	stream_verify_eom), which check a signature through
 *	inbound_verify_layer() (sp not NULL) and go on in memory once what
 *	they opened fits there.  inbound_kind_of() gives the S/MIME kind of
 *	a Content-Type (NULL: none); inbound_entity_ctype() an entity's
 *	Content-Type, malloc'ed, or NULL.  inbound_malformed() applies
 *	policy.on_malformed to the verdict.  inbound_take_layer() makes an
 *	entity just opened the current one; inbound_settle_held() ends a
 *	triple wrapping's wait (opened: keep what is inside, else go back).
 *	Functions that return int give 0, or -1 with the verdict made;
 *	inbound_verify_layer() returns smime_verify()'s status (KM_OK when
 *	the signature could be checked at all, else why not in note).
 * OWNERSHIP
 *	j->cur is secmem (wiped on free), j->curtype malloc'ed; both belong
 *	to the job, which inbound_eom() releases.  inbound_take_layer()
 *	takes next.
 * THREADS
 *	One job per message, one thread.
 */
#include <stddef.h>

#include "conf.h"
#include "kmerr.h"
#include "mime.h"
#include "session.h"
#include "spool.h"
#include "verdict.h"

#define MAX_LAYERS 3

/* What opening the layers of one message found, and the entity so far. */
struct in_job {
	struct session	*s;
	struct message	*m;
	const struct kmilter_conf *c;
	struct verdict	*v;
	char		*cur;		/* the innermost entity opened: wiped */
	size_t		 curlen;
	char		*curtype;	/* its Content-Type */
	int		 decrypted;
	int		 unwrapped;
	char		 reason[512];
	char		 detail[128];
	char		*held;		/* triple wrapping: what is delivered if */
	size_t		 heldlen;	/* the envelope under a detached */
	char		*heldtype;	/* signature stays shut */
	int		 holding;
	int		 heldunwrapped;
	char		 ar[900];	/* authserv-id; one result per signed layer */
	char		 note[600];	/* what each signed layer gave, for the log */
	struct spool	*unwrap_sp;	/* a large signed-data's content: body */
	char		*unwrap_head;	/* and header block (secmem) */
	size_t		 unwrap_hlen;
	char		*hpent;		/* header protection looks here, not at cur */
	size_t		 hplen;		/* (a large multipart/signed: part 0's head) */
};

enum mime_smime_kind inbound_kind_of(const char *ctype);
char		*inbound_entity_ctype(const char *ent, size_t len);
void		 inbound_malformed(const struct session *, struct verdict *,
		    const char *what);
enum km_status	 inbound_verify_layer(struct in_job *, const char *ctype,
		    const char *body, size_t len, const char *from, int *opaque,
		    char **content, size_t *clen, char *note, size_t nlen,
		    struct spool *sp, size_t bo);
void		 inbound_take_layer(struct in_job *, char *next, size_t nextlen);
void		 inbound_settle_held(struct in_job *, int opened);
int		 inbound_open_layers(struct in_job *, enum mime_smime_kind,
		    const unsigned char *body, size_t bodylen, int first);
void		 inbound_deliver(struct in_job *);

#endif
