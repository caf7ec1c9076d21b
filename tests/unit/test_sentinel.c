/*
 * test_sentinel.c - what kmilter reads from Sentinels and settings: the
 * "host:port" of cache.redis.sentinels (hostport.c) and the payload of a
 * +switch-master message (sentinel.c), and how the cache.redis settings
 * fit together (conf_redis.c); malformed input is refused, never half
 * taken.
 */
#include <string.h>

#include "conf_redis.h"
#include "harness.h"
#include "hostport.h"
#include "kmerr.h"
#include "sentinel.h"

TEST(hostport_good)
{
	char h[64];
	int port = 0;

	CHECK(hostport_parse("127.0.0.1:26379", h, sizeof(h), &port) == 0);
	CHECK(strcmp(h, "127.0.0.1") == 0 && port == 26379);
	CHECK(hostport_parse("[::1]:1", h, sizeof(h), &port) == 0);
	CHECK(strcmp(h, "::1") == 0 && port == 1);
	CHECK(hostport_parse("redis.example:65535", h, sizeof(h), &port) == 0);
	CHECK(strcmp(h, "redis.example") == 0 && port == 65535);
}

TEST(hostport_bad)
{
	static const char *bad[] = { "", "host", "host:", ":26379",
	    "host:0", "host:65536", "host:-1", "host:12x", "host: 12",
	    "::1:26379", "[::1]26379", "[]:1", "a b:1", "host:+1", NULL };
	char h[8];
	int port = 7;

	for (int i = 0; bad[i] != NULL; i++) {
		CHECK(hostport_parse(bad[i], h, sizeof(h), &port) == -1);
		CHECK(port == 7);
	}
	CHECK(hostport_parse("longer-than-8:1", h, sizeof(h), &port) == -1);
}

TEST(switch_master)
{
	struct sentinel_addr a;
	const char *p = "kmilter 127.0.0.1 6379 127.0.0.2 6380";

	memset(&a, 0, sizeof(a));
	CHECK(sentinel_parse_switch(p, strlen(p), "kmilter", &a) == 1);
	CHECK(strcmp(a.host, "127.0.0.2") == 0 && a.port == 6380);
	/* another master's switch is none of ours */
	CHECK(sentinel_parse_switch(p, strlen(p), "other", &a) == 0);
	CHECK(sentinel_parse_switch(p, strlen(p), "kmilte", &a) == 0);
}

TEST(switch_master_malformed)
{
	static const char *bad[] = { "", "kmilter", "kmilter 1 2 3",
	    "kmilter 127.0.0.1 6379 127.0.0.2", "kmilter a 1 b 0",
	    "kmilter a 1 b 65536", "kmilter a 1 b x", "kmilter a 1 b 1 extra",
	    "kmilter a 1 b 1234567890123456789", NULL };
	struct sentinel_addr a;

	for (int i = 0; bad[i] != NULL; i++) {
		a.port = 99;
		CHECK(sentinel_parse_switch(bad[i], strlen(bad[i]), "kmilter",
		    &a) == -1);
		CHECK(a.port == 99);
	}
	/* a NUL inside the payload is not a host name */
	CHECK(sentinel_parse_switch("kmilter a 1 b\0c 2", 17, "kmilter",
	    &a) == -1);
}

TEST(new_refuses_bad_options)
{
	const char *good[] = { "127.0.0.1:26379" };
	const char *badaddr[] = { "127.0.0.1" };
	struct sentinel_opts o;
	struct kmerr err;
	struct sentinel *s;

	memset(&o, 0, sizeof(o));
	o.addrs = good;
	o.naddrs = 1;
	o.master = "kmilter";
	CHECK((s = sentinel_new(&o, &err)) != NULL);
	CHECK(sentinel_gen(s) == 0);
	CHECK(sentinel_unref(s) == NULL);
	o.addrs = badaddr;
	CHECK(sentinel_new(&o, &err) == NULL && err.reason == KMERR_BADINPUT);
	o.addrs = good;
	o.master = "two words";
	CHECK(sentinel_new(&o, &err) == NULL);
	o.master = "";
	CHECK(sentinel_new(&o, &err) == NULL);
	o.master = "kmilter";
	o.naddrs = 0;
	CHECK(sentinel_new(&o, &err) == NULL);
}

TEST(conf_settings_fit)
{
	char *good[] = { (char *)"127.0.0.1:26379", (char *)"[::1]:26380" };
	char *bad[] = { (char *)"127.0.0.1:26379", (char *)"nohostport" };
	struct kmilter_conf c;
	const char *name;

	memset(&c, 0, sizeof(c));
	c.redis_host = c.redis_socket = c.redis_sentinel_master = (char *)"";
	CHECK(conf_redis_problem(&c, &name) == NULL);
	c.redis_sentinels = good;
	c.redis_nsentinels = 2;
	CHECK(conf_redis_problem(&c, &name) != NULL &&
	    strcmp(name, "cache.redis.sentinel_master") == 0);
	c.redis_sentinel_master = (char *)"kmilter";
	CHECK(conf_redis_problem(&c, &name) == NULL);
	c.redis_sentinel_master = (char *)"two words";
	CHECK(conf_redis_problem(&c, &name) != NULL);
	c.redis_sentinel_master = (char *)"kmilter";
	c.redis_socket = (char *)"/run/redis.sock";
	CHECK(conf_redis_problem(&c, &name) != NULL &&
	    strcmp(name, "cache.redis.sentinels") == 0);
	c.redis_socket = (char *)"";
	c.redis_sentinels = bad;
	CHECK(conf_redis_problem(&c, &name) != NULL &&
	    strcmp(name, "cache.redis.sentinels") == 0);
	c.redis_nsentinels = 0;
	CHECK(conf_redis_problem(&c, &name) != NULL);	/* a master alone */
	c.redis_sentinel_master = (char *)"";
	c.redis_host = (char *)"h";
	c.redis_socket = (char *)"/s";
	CHECK(conf_redis_problem(&c, &name) != NULL &&
	    strcmp(name, "cache.redis.socket") == 0);
}

static const struct test_case tests[] = {
	T(hostport_good),
	T(hostport_bad),
	T(switch_master),
	T(switch_master_malformed),
	T(new_refuses_bad_options),
	T(conf_settings_fit),
	{ NULL, NULL }
};

int
main(int argc, char **argv)
{
	return harness_main(argc, argv, tests);
}
