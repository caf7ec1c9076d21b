/*
 * budget.c - global limits on concurrent sessions and in-flight bytes
 * (see budget.h).
 */
#include "budget.h"

static int	sessions;
static size_t	inflight;

/* budget_session_enter - admit one more session unless max are open */
int
budget_session_enter(int max)
{
	int cur = __atomic_load_n(&sessions, __ATOMIC_SEQ_CST);

	do {
		if (cur >= max)
			return -1;
	} while (!__atomic_compare_exchange_n(&sessions, &cur, cur + 1, 0,
	    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
	return 0;
}

/* budget_session_leave - a session admitted by budget_session_enter ended */
void
budget_session_leave(void)
{
	__atomic_sub_fetch(&sessions, 1, __ATOMIC_SEQ_CST);
}

/* budget_sessions - sessions open now */
int
budget_sessions(void)
{
	return __atomic_load_n(&sessions, __ATOMIC_SEQ_CST);
}

/* budget_reserve - add n bytes to claim unless the total would pass max */
int
budget_reserve(size_t *claim, size_t n, size_t max)
{
	size_t cur = __atomic_load_n(&inflight, __ATOMIC_SEQ_CST);

	do {
		if (n > max || cur > max - n)
			return -1;
	} while (!__atomic_compare_exchange_n(&inflight, &cur, cur + n, 0,
	    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
	*claim += n;
	return 0;
}

/* budget_release - give back a whole claim; the claim becomes 0 */
void
budget_release(size_t *claim)
{
	if (*claim == 0)
		return;
	__atomic_sub_fetch(&inflight, *claim, __ATOMIC_SEQ_CST);
	*claim = 0;
}

/* budget_inflight - bytes claimed by all messages now */
size_t
budget_inflight(void)
{
	return __atomic_load_n(&inflight, __ATOMIC_SEQ_CST);
}

/* budget_crypto_need - the claim of a message of this many bytes on the crypto path */
size_t
budget_crypto_need(size_t bytes, size_t memmax)
{
	if (bytes <= memmax)
		return BUDGET_CRYPTO_FACTOR * bytes;
	return memmax + BUDGET_STREAM_EXTRA;
}

/* budget_shrink - give back what a claim holds beyond n bytes */
void
budget_shrink(size_t *claim, size_t n)
{
	if (*claim <= n)
		return;
	__atomic_sub_fetch(&inflight, *claim - n, __ATOMIC_SEQ_CST);
	*claim = n;
}
