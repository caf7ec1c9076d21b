/*
 * stats.c - counters since start (see stats.h).
 */
#include <stdio.h>

#include "stats.h"
#include "verdict.h"

static unsigned long counters[ST_NCOUNTERS];
/* Latency buckets: bucket i holds values below bounds[i] ms. */
static const long bounds[] = { 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000 };
#define NBUCKETS (sizeof(bounds) / sizeof(bounds[0]) + 1)
static unsigned long buckets[NBUCKETS];

/* stats_count - add one to a counter */
void
stats_count(enum stat_counter c)
{
	__atomic_add_fetch(&counters[c], 1, __ATOMIC_RELAXED);
}

/* stats_downgraded - one message left less protected than policy wanted */
void
stats_downgraded(int outbound, unsigned kinds)
{
	stats_count(outbound ? ST_DOWNGRADED_OUTBOUND : ST_DOWNGRADED_INBOUND);
	if (!outbound)
		return;
	if (kinds & VERDICT_DG_UNSIGNED)
		stats_count(ST_DOWNGRADED_UNSIGNED);
	if (kinds & VERDICT_DG_UNENCRYPTED)
		stats_count(ST_DOWNGRADED_UNENCRYPTED);
}

/* stats_latency - record one message's processing time */
void
stats_latency(long ms)
{
	size_t i = 0;

	while (i < NBUCKETS - 1 && ms >= bounds[i])
		i++;
	__atomic_add_fetch(&buckets[i], 1, __ATOMIC_RELAXED);
}

/* percentile - upper bound (ms) of the bucket holding the p-th percentile */
static long
percentile(const unsigned long *b, unsigned long total, double p)
{
	unsigned long want = (unsigned long)(p * (double)total + 0.999999), seen = 0;

	for (size_t i = 0; i < NBUCKETS; i++) {
		seen += b[i];
		if (seen >= want && want > 0)
			return i < NBUCKETS - 1 ? bounds[i] : -1;
	}
	return 0;
}

/* stats_format - one line of counters and latency percentiles */
size_t
stats_format(char *buf, size_t len)
{
	unsigned long c[ST_NCOUNTERS], b[NBUCKETS], total = 0;
	int n;

	for (size_t i = 0; i < ST_NCOUNTERS; i++)
		c[i] = __atomic_load_n(&counters[i], __ATOMIC_RELAXED);
	for (size_t i = 0; i < NBUCKETS; i++)
		total += (b[i] = __atomic_load_n(&buckets[i], __ATOMIC_RELAXED));
	n = snprintf(buf, len,
	    "stats: connections=%lu outbound=%lu inbound=%lu pass=%lu rewritten=%lu "
	    "passed=%lu rejected=%lu tempfailed=%lu aborted=%lu "
	    "downgraded_outbound=%lu downgraded_inbound=%lu "
	    "downgraded_unsigned=%lu downgraded_unencrypted=%lu "
	    "latency_p50_ms=%ld latency_p90_ms=%ld latency_p99_ms=%ld",
	    c[ST_CONNECTIONS], c[ST_MSG_OUTBOUND], c[ST_MSG_INBOUND], c[ST_MSG_PASS],
	    c[ST_REWRITTEN], c[ST_PASSED], c[ST_REJECTED], c[ST_TEMPFAILED], c[ST_ABORTED],
	    c[ST_DOWNGRADED_OUTBOUND], c[ST_DOWNGRADED_INBOUND],
	    c[ST_DOWNGRADED_UNSIGNED], c[ST_DOWNGRADED_UNENCRYPTED],
	    percentile(b, total, 0.5), percentile(b, total, 0.9), percentile(b, total, 0.99));
	return n < 0 ? 0 : (size_t)n;
}
