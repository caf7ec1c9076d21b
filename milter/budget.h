#ifndef KMILTER_MILTER_BUDGET_H
#define KMILTER_MILTER_BUDGET_H
/*
 * NAME
 *	budget - global limits on concurrent sessions and in-flight bytes
 * SUMMARY
 *	budget_session_enter(), budget_session_leave(), budget_sessions(),
 *	budget_reserve(), budget_release(), budget_inflight(),
 *	budget_crypto_need(), budget_shrink()
 * DESCRIPTION
 *	Two process-wide counters, so that a flood of connections or of big
 *	messages is answered with a temporary failure instead of using up
 *	memory.  Sessions: budget_session_enter() admits one more connection
 *	unless max are open.  Bytes: each message holds a claim (a size_t it
 *	owns) of the bytes it keeps in flight: its body as it arrives, and for
 *	a message on the crypto path the working set of end of message,
 *	BUDGET_CRYPTO_FACTOR times its size in all (measured VmHWM of a 20 MB
 *	message signed and encrypted in memory: 7.4 times), claimed as the
 *	body arrives so that an admitted message is not refused at the end
 *	(callbacks.c decides how much to claim).  A body past
 *	milter.spool_memory_max is in a spool file and is signed, encrypted
 *	(outbound_stream.c), decrypted and verified (inbound_spool.c) from
 *	there in bounded memory, so
 *	budget_crypto_need() is the factor times the size up to that limit,
 *	and past it the limit plus BUDGET_STREAM_EXTRA: what a streamed
 *	message holds (its body's memory until it moved to the file, then
 *	chunk buffers and the result spools' first bytes; measured: 64
 *	messages of 20 MB streamed at once, 66 MB VmHWM), whatever its size;
 *	its disk use counts against milter.spool_disk_max_mb (spool.h).
 *	budget_shrink() gives back the part of a claim past a smaller need
 *	(the claim of a body that moved to its spool file).  budget_reserve()
 *	grows a claim unless the total would pass max; budget_release()
 *	gives the whole claim back (end of message, abort, close).
 *	The limits are passed at each call, so a reload applies at once.
 * OWNERSHIP
 *	A claim is a plain size_t in the caller's message; it must be
 *	released before the message is freed.
 * ERRORS
 *	budget_session_enter() and budget_reserve() return -1 when over the
 *	limit (nothing changed), 0 when admitted.
 * THREADS
 *	Thread-safe (atomic counters); one claim is used by one thread.
 */
#include <stddef.h>

/* Crypto working set at end of message, as a multiple of the message size. */
#define BUDGET_CRYPTO_FACTOR	8
/* A streamed message's working set beyond its body's memory part. */
#define BUDGET_STREAM_EXTRA	(1024 * 1024)

int	budget_session_enter(int max);
void	budget_session_leave(void);
int	budget_sessions(void);
int	budget_reserve(size_t *claim, size_t n, size_t max);
void	budget_release(size_t *claim);
size_t	budget_inflight(void);
size_t	budget_crypto_need(size_t bytes, size_t memmax);
void	budget_shrink(size_t *claim, size_t n);

#endif
