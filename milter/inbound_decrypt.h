#ifndef KMILTER_MILTER_INBOUND_DECRYPT_H
#define KMILTER_MILTER_INBOUND_DECRYPT_H
/*
 * NAME
 *	inbound_decrypt - open one enveloped layer for its internal readers
 * SUMMARY
 *	inbound_decrypt_layer(), inbound_decrypt_spool()
 * DESCRIPTION
 *	inbound_decrypt_layer() decrypts one enveloped (or auth-enveloped)
 *	layer of an inbound message only when every envelope recipient is
 *	internal and each can read it with its own keys (a key kept by the
 *	admin hook, an outside recipient, a RecipientInfo for someone else
 *	keep it encrypted, and the verdict says so).  Content ciphers: AES
 *	CBC and GCM are taken, Triple-DES taken and marked weak in detail,
 *	RC2, single DES and anything else kept encrypted (README, "Inbound
 *	S/MIME as clients send it").  inbound.c calls it for each layer.
 *	inbound_decrypt_spool() does the same for a large message, read as a
 *	stream from its spool (base64 or DER as mode says, cms_stream.h):
 *	the encrypted content is decrypted in bounded buffers, the entity's
 *	header block into *head, its body into a new spool (moving to an
 *	unlinked file past milter.spool_memory_max),
 *	given to the caller only when it is whole (a GCM tag checked, every
 *	reader's key proven).
 * OWNERSHIP
 *	*out is the decrypted entity (secmem_free(*out, *outlen)); for
 *	inbound_decrypt_spool() a spool holding its body (spool_free()) and
 *	*head its header block (secmem_free(*head, *hlen + 1)).  The input
 *	spool is borrowed.
 * ERRORS
 *	KM_OK with *out; KM_PERMFAIL when it stays encrypted (why in reason,
 *	the verdict downgraded); KM_TEMPFAIL (a key lookup that may work
 *	later); KM_PROTO (not CMS enveloped data: the caller applies
 *	policy.on_malformed: for a stream, a truncated or lying length
 *	too, and a decrypted header block that does not end in 64 KiB);
 *	KM_NOMEM.  inbound_decrypt_spool(): KM_TEMPFAIL also when the
 *	spool cannot be read or written (full, unwritable).
 * THREADS
 *	One message per call; no shared state.
 */
#include <stddef.h>

#include "cms_stream.h"
#include "session.h"
#include "status.h"
#include "verdict.h"

enum km_status	inbound_decrypt_layer(const struct session *, struct verdict *,
		    const char *ctype, const char *body, size_t len, char **out,
		    size_t *outlen, char *reason, size_t rlen, char *detail,
		    size_t dlen);
struct spool;
enum km_status	inbound_decrypt_spool(const struct session *, struct verdict *,
		    struct spool *in, enum cms_in_mode, struct spool **out, char **head,
		    size_t *hlen, char *reason, size_t rlen, char *detail, size_t dlen);

#endif
