#ifndef KMILTER_TESTS_FREEWATCH_H
#define KMILTER_TESTS_FREEWATCH_H
/*
 * NAME
 *	freewatch - a FAKE free() that tells whether freed memory held a mark
 * SUMMARY
 *	FREEWATCH, freewatch_start(), freewatch_stop(), FREEWATCH_SKIP
 * DESCRIPTION
 *	The test program that includes this header replaces the C library's
 *	free() (glibc allows it; __libc_free is the real one) so it can look
 *	at each block just before it goes back to the allocator.  Between
 *	freewatch_start(mark) and freewatch_stop(), a freed block that still
 *	holds mark is counted: freewatch_stop() returns the count, 0 when
 *	every buffer that held the mark was wiped before it was freed.
 *	OpenSSL's own frees (OPENSSL_free, a memory BIO's buffer) come here
 *	too.  What realloc() frees inside the C library does not.
 *
 *	Not built under ASan, which owns free() itself: FREEWATCH is 0 and a
 *	test then skips with FREEWATCH_SKIP.  (Not for valgrind either: it
 *	replaces malloc in libc only, and this free would get its blocks.)
 * OWNERSHIP
 *	mark is borrowed until freewatch_stop().
 * ERRORS
 *	None.
 * THREADS
 *	One watch at a time; the tests are single-threaded.
 */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define FREEWATCH 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FREEWATCH 0
#endif
#endif
#ifndef FREEWATCH
#define FREEWATCH 1
#endif

#define FREEWATCH_SKIP	"ci-unavailable: free() is ASan's in this build " \
			"(the wipe is checked in the plain build)"

#if FREEWATCH
extern void __libc_free(void *);
static const char *freewatch_mark;
static int freewatch_unwiped;

void
free(void *p)
{
	if (p != NULL && freewatch_mark != NULL) {
		size_t n = malloc_usable_size(p), ml = strlen(freewatch_mark);

		if (n >= ml && memmem(p, n, freewatch_mark, ml) != NULL)
			freewatch_unwiped++;
	}
	__libc_free(p);
}

/* freewatch_start - count freed blocks that hold mark from now on */
static inline void
freewatch_start(const char *mark)
{
	freewatch_unwiped = 0;
	freewatch_mark = mark;
}

/* freewatch_stop - stop counting; the number of blocks freed unwiped */
static inline int
freewatch_stop(void)
{
	freewatch_mark = NULL;
	return freewatch_unwiped;
}
#endif

#endif
