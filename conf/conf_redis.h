#ifndef KMILTER_CONF_CONF_REDIS_H
#define KMILTER_CONF_CONF_REDIS_H
/*
 * NAME
 *	conf_redis - how the cache.redis settings fit together
 * SUMMARY
 *	conf_redis_problem()
 * DESCRIPTION
 *	conf_redis_problem() checks what the schema cannot: at most one of
 *	cache.redis.host, cache.redis.socket and cache.redis.sentinels; each
 *	Sentinel a "host:port" (hostport.h); cache.redis.sentinel_master set
 *	(without spaces) with, and only with, cache.redis.sentinels.
 * ERRORS
 *	NULL when they fit; else a message, and *setting names the setting
 *	to blame.
 * THREADS
 *	Safe.
 */
#include "conf.h"

const char	*conf_redis_problem(const struct kmilter_conf *c,
		    const char **setting);

#endif
