/*
 * conf_redis.c - how the cache.redis settings fit together (see
 * conf_redis.h).
 */
#include <string.h>

#include "conf_redis.h"
#include "hostport.h"

/* conf_redis_problem - NULL, or what is wrong and with which setting */
const char *
conf_redis_problem(const struct kmilter_conf *c, const char **setting)
{
	char host[256];
	int port;

	*setting = "cache.redis.sentinels";
	if (*c->redis_host && *c->redis_socket) {
		*setting = "cache.redis.socket";
		return "set either cache.redis.host or cache.redis.socket, "
		    "not both";
	}
	for (int i = 0; i < c->redis_nsentinels; i++)
		if (hostport_parse(c->redis_sentinels[i], host, sizeof(host),
		    &port) == -1)
			return "an item is not host:port (a port in 1..65535; "
			    "[v6]:port for IPv6)";
	if (c->redis_nsentinels > 0 && (*c->redis_host || *c->redis_socket))
		return "set either cache.redis.sentinels or "
		    "cache.redis.host/socket, not both";
	if ((c->redis_nsentinels > 0) != (*c->redis_sentinel_master != '\0') ||
	    strpbrk(c->redis_sentinel_master, " \t\r\n") != NULL) {
		*setting = "cache.redis.sentinel_master";
		return "the name the Sentinels monitor the master by (no "
		    "spaces), with and only with cache.redis.sentinels";
	}
	return NULL;
}
