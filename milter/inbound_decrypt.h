#ifndef KMILTER_MILTER_INBOUND_DECRYPT_H
#define KMILTER_MILTER_INBOUND_DECRYPT_H
/*
 * NAME
 *	inbound_decrypt - open one enveloped layer for its internal readers
 * SUMMARY
 *	inbound_decrypt_layer()
 * DESCRIPTION
 *	inbound_decrypt_layer() decrypts one enveloped (or auth-enveloped)
 *	layer of an inbound message only when every envelope recipient is
 *	internal and each can read it with its own keys (a key kept by the
 *	admin hook, an outside recipient, a RecipientInfo for someone else
 *	keep it encrypted, and the verdict says so).  Content ciphers: AES
 *	CBC and GCM are taken, Triple-DES taken and marked weak in detail,
 *	RC2, single DES and anything else kept encrypted (README, "Inbound
 *	S/MIME as clients send it").  inbound.c calls it for each layer.
 * OWNERSHIP
 *	*out is the decrypted entity (secmem_free(*out, *outlen)).
 * ERRORS
 *	KM_OK with *out; KM_PERMFAIL when it stays encrypted (why in reason,
 *	the verdict downgraded); KM_TEMPFAIL (a key lookup that may work
 *	later); KM_PROTO (not CMS enveloped data: the caller applies
 *	policy.on_malformed); KM_NOMEM.
 * THREADS
 *	One message per call; no shared state.
 */
#include <stddef.h>

#include "session.h"
#include "status.h"
#include "verdict.h"

enum km_status	inbound_decrypt_layer(const struct session *, struct verdict *,
		    const char *ctype, const char *body, size_t len, char **out,
		    size_t *outlen, char *reason, size_t rlen, char *detail,
		    size_t dlen);

#endif
