#ifndef KMILTER_MILTER_STATS_H
#define KMILTER_MILTER_STATS_H
/*
 * NAME
 *	stats - counters since start, for the periodic syslog line
 * SUMMARY
 *	stats_count(), stats_downgraded(), stats_latency(), stats_format()
 * DESCRIPTION
 *	Lock-free counters of messages by direction and outcome, of the
 *	messages that left less protected than policy wanted (downgraded:
 *	unsigned, signed only, kept encrypted, certificate missing) by
 *	direction, and a small latency histogram from which stats_format()
 *	derives percentiles.  stats_downgraded() counts one downgraded
 *	message: by direction, and for outbound by what it left without
 *	(verdict.h VERDICT_DG_*: downgraded_unsigned, policy wanted it signed;
 *	downgraded_unencrypted, wanted it encrypted).
 * OWNERSHIP
 *	stats_format() writes into the caller's buffer.
 * ERRORS
 *	None.
 * THREADS
 *	Thread-safe (atomic counters).
 */
#include <stddef.h>

enum stat_counter {
	ST_MSG_OUTBOUND, ST_MSG_INBOUND, ST_MSG_PASS,
	ST_REWRITTEN, ST_PASSED, ST_REJECTED, ST_TEMPFAILED, ST_ABORTED,
	ST_CONNECTIONS,
	ST_DOWNGRADED_OUTBOUND, ST_DOWNGRADED_INBOUND,
	ST_DOWNGRADED_UNSIGNED, ST_DOWNGRADED_UNENCRYPTED,
	ST_NCOUNTERS
};

void	stats_count(enum stat_counter);
void	stats_downgraded(int outbound, unsigned kinds);
void	stats_latency(long ms);
size_t	stats_format(char *buf, size_t len);

#endif
