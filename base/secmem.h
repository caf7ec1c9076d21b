#ifndef KMILTER_MILTER_SECMEM_H
#define KMILTER_MILTER_SECMEM_H
/*
 * NAME
 *	secmem - memory for secrets: locked, left out of core dumps, wiped on free
 * SUMMARY
 *	secmem_alloc(), secmem_free(), secmem_wipe(), secmem_strdup()
 * DESCRIPTION
 *	secmem_alloc() returns zeroed memory from anonymous mappings that are
 *	marked MADV_DONTDUMP (left out of core dumps) and mlock'ed (never
 *	swapped) where RLIMIT_MEMLOCK or CAP_IPC_LOCK allows; when locking or
 *	excluding is refused, it says so in one warning line per process and
 *	still allocates.  Up to 4096 bytes come from 64 KiB slabs of blocks
 *	of one power-of-two size (32 .. 4096), so small secrets do not cost a
 *	page each; larger ones get a page-rounded mapping of their own.
 *	secmem_free(p, len) wipes the whole block with explicit_bzero (which
 *	the compiler cannot remove), then returns a slab block to its slab
 *	(mapped, locked, zero) or unmaps a mapping (up to 1 MiB of
 *	wiped mappings are kept, locked, for reuse).  Given memory that did not
 *	come from secmem_alloc() (a malloc'd buffer that held a secret), it
 *	wipes len bytes and free()s it.  secmem_wipe() only wipes.
 *	Use it for private keys, unwrapped key bytes and passwords.
 *	Mappings are inherited over fork() but locks are not.
 * OWNERSHIP
 *	Caller frees with secmem_free(); secmem_free(NULL, n) is a no-op and
 *	returns NULL so callers can write p = secmem_free(p, n).
 *	secmem_strfree() frees a string from secmem_strdup().
 * ERRORS
 *	secmem_alloc() and secmem_strdup() return NULL when out of memory.
 *	secmem_free() of a pointer inside a slab that is not an allocated
 *	block (a double free) is an impossible state: log_panic().
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
