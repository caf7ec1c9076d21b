#ifndef KMILTER_MILTER_SECMEM_H
#define KMILTER_MILTER_SECMEM_H
/*
 * NAME
 *	secmem - memory for secrets: wiped before it is freed
 * SUMMARY
 *	secmem_alloc(), secmem_free(), secmem_wipe(), secmem_strdup()
 * DESCRIPTION
 *	secmem_alloc() returns zeroed memory marked MADV_DONTDUMP where the
 *	allocation spans whole pages.  secmem_free(p, len) wipes len bytes
 *	with OPENSSL_cleanse (which the compiler cannot remove) and frees.
 *	Use it for private keys, unwrapped key bytes and passwords.
 * OWNERSHIP
 *	Caller frees with secmem_free(); secmem_free(NULL, n) is a no-op and
 *	returns NULL so callers can write p = secmem_free(p, n).
 * ERRORS
 *	secmem_alloc() and secmem_strdup() return NULL when out of memory.
 * THREADS
 *	Thread-safe.
 */
#include <stddef.h>

void *secmem_alloc(size_t len);
void *secmem_free(void *p, size_t len);
void  secmem_wipe(void *p, size_t len);
char *secmem_strdup(const char *s);
void *secmem_strfree(char *s);

#endif
