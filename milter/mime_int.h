#ifndef KMILTER_MILTER_MIME_INT_H
#define KMILTER_MILTER_MIME_INT_H
/*
 * NAME
 *	mime_int - helpers shared by the mime family (mime.c, mime_ctype.c,
 *	mime_body.c)
 * SUMMARY
 *	Private to the mime family: nothing else includes this header.
 *	dupn() copies n bytes into a new string (static inline).  Errors go
 *	into a struct kmerr (kmerr_set(), base/kmerr.h).
 * DESCRIPTION
 *	Small enough to inline; here so that each file of the family does
 *	not write them again.
 * OWNERSHIP
 *	dupn() returns a malloc'ed string the caller frees, NULL when out of
 *	memory.
 * ERRORS
 *	None of their own.
 * THREADS
 *	Thread-safe.
 */
#include <stdlib.h>
#include <string.h>

#include "kmerr.h"

/* dupn - copy n bytes into a new NUL-terminated string */
static inline char *
dupn(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (p != NULL) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

#endif

