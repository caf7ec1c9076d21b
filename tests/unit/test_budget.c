/*
 * test_budget.c - unit tests for milter/budget.c: the session and
 * in-flight byte limits never admit more than their maximum, even with
 * threads racing, and every claim given back returns the total to zero.
 */
#include <pthread.h>
#include <stdint.h>

#include "harness.h"

#include "budget.h"

TEST(sessions_stop_at_max)
{
	CHECK_EQ_INT(budget_sessions(), 0);
	for (int i = 0; i < 3; i++)
		CHECK_EQ_INT(budget_session_enter(3), 0);
	CHECK_EQ_INT(budget_session_enter(3), -1);
	CHECK_EQ_INT(budget_sessions(), 3);
	budget_session_leave();
	CHECK_EQ_INT(budget_session_enter(3), 0);
	CHECK_EQ_INT(budget_session_enter(3), -1);
	for (int i = 0; i < 3; i++)
		budget_session_leave();
	CHECK_EQ_INT(budget_sessions(), 0);
}

TEST(bytes_stop_at_max_and_come_back)
{
	size_t a = 0, b = 0;

	CHECK_EQ_INT(budget_reserve(&a, 600, 1000), 0);
	CHECK_EQ_INT(budget_reserve(&b, 500, 1000), -1);	/* 1100 > 1000 */
	CHECK_EQ_INT(b, 0);
	CHECK_EQ_INT(budget_reserve(&b, 400, 1000), 0);	/* exactly full */
	CHECK_EQ_INT(budget_inflight(), 1000);
	CHECK_EQ_INT(budget_reserve(&a, 1, 1000), -1);
	CHECK_EQ_INT(a, 600);
	budget_release(&a);
	CHECK_EQ_INT(a, 0);
	CHECK_EQ_INT(budget_inflight(), 400);
	budget_release(&a);				/* twice: no-op */
	CHECK_EQ_INT(budget_inflight(), 400);
	budget_release(&b);
	CHECK_EQ_INT(budget_inflight(), 0);
}

TEST(bytes_no_overflow)
{
	size_t a = 0;

	CHECK_EQ_INT(budget_reserve(&a, SIZE_MAX, 1000), -1);
	CHECK_EQ_INT(budget_reserve(&a, 10, 1000), 0);
	CHECK_EQ_INT(budget_reserve(&a, SIZE_MAX - 5, SIZE_MAX), -1);
	CHECK_EQ_INT(budget_inflight(), 10);
	budget_release(&a);
	CHECK_EQ_INT(budget_inflight(), 0);
}

#define NTHREADS	8
#define ROUNDS		20000

static int peak_bad;

/* racer - claim and give back in a loop; the total must never pass max */
static void *
racer(void *arg)
{
	(void)arg;
	for (int i = 0; i < ROUNDS; i++) {
		size_t c = 0;

		if (budget_reserve(&c, 300, 1000) == 0 && budget_inflight() > 1000)
			__atomic_store_n(&peak_bad, 1, __ATOMIC_SEQ_CST);
		budget_release(&c);
		if (budget_session_enter(2) == 0) {
			if (budget_sessions() > 2)
				__atomic_store_n(&peak_bad, 1, __ATOMIC_SEQ_CST);
			budget_session_leave();
		}
	}
	return NULL;
}

TEST(threads_never_pass_max)
{
	pthread_t t[NTHREADS];

	for (int i = 0; i < NTHREADS; i++)
		CHECK(pthread_create(&t[i], NULL, racer, NULL) == 0);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ_INT(peak_bad, 0);
	CHECK_EQ_INT(budget_inflight(), 0);
	CHECK_EQ_INT(budget_sessions(), 0);
}

/* The crypto claim: 8x up to spool_memory_max, then a bounded one; a claim shrinks to it. */
TEST(crypto_claim_bounded_when_streamed)
{
	size_t claim = 0, base = budget_inflight(), mm = 1 << 20;

	CHECK_EQ_INT((int)budget_crypto_need(1000, mm), 8 * 1000);
	CHECK_EQ_INT((int)budget_crypto_need(mm, mm), 8 * (int)mm);
	CHECK_EQ_INT((int)budget_crypto_need(mm + 1, mm), (int)(mm + BUDGET_STREAM_EXTRA));
	CHECK_EQ_INT((int)budget_crypto_need((size_t)50 << 20, mm), (int)(mm + BUDGET_STREAM_EXTRA));
	CHECK_EQ_INT(budget_reserve(&claim, 8 * mm, 64 * mm), 0);
	budget_shrink(&claim, budget_crypto_need(mm + 1, mm));
	CHECK_EQ_INT((int)claim, (int)(mm + BUDGET_STREAM_EXTRA));
	CHECK_EQ_INT((int)(budget_inflight() - base), (int)claim);
	budget_shrink(&claim, 8 * mm);		/* never grows */
	CHECK_EQ_INT((int)claim, (int)(mm + BUDGET_STREAM_EXTRA));
	budget_release(&claim);
	CHECK_EQ_INT((int)(budget_inflight() - base), 0);
}

static const struct test_case tests[] = {
	T(sessions_stop_at_max),
	T(bytes_stop_at_max_and_come_back),
	T(bytes_no_overflow),
	T(threads_never_pass_max),
	T(crypto_claim_bounded_when_streamed),
	{ 0 }
};

int
main(int argc, char **argv)
{
	return harness_main(argc, argv, tests);
}
