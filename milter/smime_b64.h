#ifndef KMILTER_MILTER_SMIME_B64_H
#define KMILTER_MILTER_SMIME_B64_H
/*
 * NAME
 *	smime_b64 - the b64crlf filter BIO: base64 in CRLF lines of 76
 *	characters, for streaming CMS output
 * SUMMARY
 *	smime_b64_new(), smime_b64_finish(), smime_b64_free(),
 *	smime_b64_emit().
 *	Part of the smime family; used by smime.c and smime_verify.c.
 * DESCRIPTION
 *	smime_b64_new() pushes the filter on a BIO: what is written to it is
 *	encoded in whole lines (57 input bytes each), written to the next BIO
 *	in batches; the rest waits for more input.  BIO_flush() passes
 *	through; smime_b64_finish() writes the last, padded line and flushes.
 *	smime_b64_emit() writes bytes to a BIO completely (retrying short
 *	writes).
 * OWNERSHIP
 *	The filter is the caller's: smime_b64_free() (NULL-safe) pops it from
 *	its chain and frees it, leaving the next BIO alone.
 * ERRORS
 *	smime_b64_new() returns NULL when out of memory; smime_b64_finish()
 *	and smime_b64_emit() return 1 on success, 0 when a write failed.
 * THREADS
 *	Thread-safe: the BIO_METHOD is built once (pthread_once); each
 *	filter belongs to one thread.
 */
#include <stddef.h>

#include <openssl/bio.h>

BIO		*smime_b64_new(BIO *next);
int		 smime_b64_finish(BIO *);
void		 smime_b64_free(BIO *);
int		 smime_b64_emit(BIO *next, const unsigned char *p, size_t n);

#endif
