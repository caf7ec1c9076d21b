/*
 * secmem.c - allocation and wiping of secret buffers (see secmem.h).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "secmem.h"

/* secmem_alloc - zeroed memory for a secret */
void *
secmem_alloc(size_t len)
{
	return calloc(1, len ? len : 1);
}

/* secmem_wipe - wipe a buffer in a way the compiler keeps */
void
secmem_wipe(void *p, size_t len)
{
	if (p != NULL && len > 0)
		OPENSSL_cleanse(p, len);
}

/* secmem_free - wipe len bytes and free; returns NULL */
void *
secmem_free(void *p, size_t len)
{
	if (p != NULL) {
		OPENSSL_cleanse(p, len);
		free(p);
	}
	return NULL;
}

/* secmem_strdup - copy a secret string (a password) */
char *
secmem_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = secmem_alloc(n);

	if (p != NULL)
		memcpy(p, s, n);
	return p;
}

/* secmem_strfree - wipe and free a string from secmem_strdup; returns NULL */
void *
secmem_strfree(char *s)
{
	return s ? secmem_free(s, strlen(s)) : NULL;
}
