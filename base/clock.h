#ifndef KMILTER_BASE_CLOCK_H
#define KMILTER_BASE_CLOCK_H
/*
 * NAME
 *	clock - the monotonic clock in milliseconds
 * SUMMARY
 *	clock_ms()
 * DESCRIPTION
 *	clock_ms() reads CLOCK_MONOTONIC: it never goes back and does not
 *	follow changes of the wall clock, so it is what deadlines, timeouts
 *	and elapsed times are measured with.  Only differences mean anything.
 * THREADS
 *	Safe.
 */
#include <stdint.h>

int64_t	clock_ms(void);

#endif
