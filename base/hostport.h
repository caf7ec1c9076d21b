#ifndef KMILTER_BASE_HOSTPORT_H
#define KMILTER_BASE_HOSTPORT_H
/*
 * NAME
 *	hostport - "host:port" strings, as settings name servers
 * SUMMARY
 *	hostport_parse()
 * DESCRIPTION
 *	hostport_parse() splits "host:port" or "[v6-address]:port" into a
 *	host (without brackets) and a port in 1..65535.  A bare IPv6
 *	address (colons but no brackets), an empty host, a host with spaces
 *	or one that does not fit hostlen is refused.
 * ERRORS
 *	0, or -1 (host and port untouched).
 * THREADS
 *	Safe.
 */
#include <stddef.h>

int	hostport_parse(const char *s, char *host, size_t hostlen, int *port);

#endif
