/*
 * hostport.c - "host:port" strings (see hostport.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hostport.h"

/* hostport_parse - "host:port" or "[v6]:port" into host and port */
int
hostport_parse(const char *s, char *host, size_t hostlen, int *port)
{
	const char *colon, *h = s;
	size_t hl;
	char *end;
	long p;

	if (s == NULL || (colon = strrchr(s, ':')) == NULL)
		return -1;
	hl = (size_t)(colon - s);
	if (*s == '[') {
		if (hl < 3 || s[hl - 1] != ']')
			return -1;
		h = s + 1;
		hl -= 2;
	} else if (memchr(s, ':', hl) != NULL)
		return -1;	/* a bare IPv6 address: which colon is the port's? */
	if (hl == 0 || hl >= hostlen || memchr(h, ' ', hl) != NULL ||
	    memchr(h, '\t', hl) != NULL)
		return -1;
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || errno != 0 ||
	    p < 1 || p > 65535)
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (int)p;
	return 0;
}
