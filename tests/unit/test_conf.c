/*
 * test_conf.c - configuration loading and validation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "harness.h"

static char err[8192];

/* load - load a configuration from text; NULL on error (err holds why) */
static struct kmilter_conf *
load(const char *text)
{
	return conf_load_string(text, "t.conf", err, sizeof(err));
}

#define MIN "milter: { socket = \"unix:/tmp/x.sock\"; };\n"

TEST(minimal_defaults)
{
	struct kmilter_conf *c = load(MIN);

	CHECK(c != NULL);
	CHECK_EQ_STR(c->socket, "unix:/tmp/x.sock");
	CHECK_EQ_STR(c->socket_mode, "0660");
	CHECK_EQ_INT(c->spool_memory_max, 1048576);
	CHECK_EQ_INT(c->out_encrypt, ENCRYPT_OPPORTUNISTIC);
	CHECK_EQ_INT(c->out_cipher, CIPHER_AES256_CBC);
	CHECK_EQ_INT(c->n_internal_hosts, 2);
	CHECK_EQ_STR(c->internal_hosts[1], "::1");
	CHECK_EQ_INT(c->km_nservers, 0);
	CHECK(c->gateway_name[0] != '\0');
	CHECK_EQ_STR(c->in_authserv_id, c->gateway_name);
	CHECK_EQ_STR(c->seal_key_file, "/var/lib/kmilter/gateway.key");
	conf_unref(c);
}

TEST(full_values)
{
	struct kmilter_conf *c = load(MIN
	    "km: { servers = ( { name = \"a\"; host = \"127.0.0.1\"; port = 7001; },"
	    "  { name = \"b\"; host = \"localhost\"; } ); ca_file = \"ca\";"
	    "  client_cert = \"c\"; client_key = \"k\"; };\n"
	    "policy: { internal_domains = [ \"example.com\", \".corp.example\" ];"
	    "  outbound: { cipher = \"aes-256-gcm\"; encrypt = \"mandatory\"; sign = \"no\"; };"
	    "  rules = ( { match = \"partner.example\"; encrypt = \"never\"; } ); };\n"
	    "log: { facility = \"local3\"; verbose = 3; };\n");

	CHECK(c != NULL);
	CHECK_EQ_INT(c->km_nservers, 2);
	CHECK_EQ_INT(c->km_servers[0].port, 7001);
	CHECK_EQ_INT(c->km_servers[1].port, 5696);
	CHECK_EQ_STR(c->km_servers[1].host, "localhost");
	CHECK_EQ_INT(c->n_internal_domains, 2);
	CHECK_EQ_INT(c->out_cipher, CIPHER_AES256_GCM);
	CHECK_EQ_INT(c->out_encrypt, ENCRYPT_MANDATORY);
	CHECK_EQ_INT(c->out_sign, SIGN_NO);
	CHECK_EQ_INT(c->nrules, 1);
	CHECK_EQ_INT(c->rules[0].encrypt, RULEENC_NEVER);
	CHECK_EQ_INT(c->rules[0].sign, RULESIGN_DEFAULT);
	{
		char w[16];

		CHECK_EQ_STR(conf_word("log.facility", c->log_facility, w, sizeof(w)), "local3");
	}
	conf_unref(c);
}

/* each bad file gives exactly the expected error text */
static const struct {
	const char *text;
	const char *want;
} bad[] = {
	{ "milter: { socket = \"unix:/x\"; sockt = 1; };",
	  "t.conf:1: milter.sockt: unknown setting" },
	{ "milter: { socket = 5; };",
	  "t.conf:1: milter.socket: wrong type: an integer, expected a string" },
	{ MIN "log: { verbose = 10; };",
	  "t.conf:2: log.verbose: value 10 out of range 0..9" },
	{ MIN "policy: { outbound: { cipher = \"des\"; }; };",
	  "t.conf:2: policy.outbound.cipher: \"des\" is not one of aes-256-cbc|aes-128-cbc|aes-256-gcm" },
	/* 3DES and RC2 are read inbound (README) but never produced */
	{ MIN "policy: { outbound: { cipher = \"des-ede3-cbc\"; }; };",
	  "t.conf:2: policy.outbound.cipher: \"des-ede3-cbc\" is not one of aes-256-cbc|aes-128-cbc|aes-256-gcm" },
	{ MIN "policy: { outbound: { cipher = \"rc2-40-cbc\"; }; };",
	  "t.conf:2: policy.outbound.cipher: \"rc2-40-cbc\" is not one of aes-256-cbc|aes-128-cbc|aes-256-gcm" },
	{ "log: { verbose = 1; };",
	  "t.conf: milter.socket: required setting is missing" },
	{ MIN "bogus: { a = 1; };", "t.conf:2: bogus: unknown setting" },
	{ MIN "log: { stderr = \"yes\"; };",
	  "t.conf:2: log.stderr: wrong type: a string, expected a boolean (true or false)" },
	{ MIN "policy: { internal_hosts = [ \"10.0.0.0/33\" ]; };",
	  "t.conf:2: policy.internal_hosts: \"10.0.0.0/33\" is not an IPv4/IPv6 address or CIDR" },
	{ MIN "policy: { internal_domains = \"example.com\"; };",
	  "t.conf:2: policy.internal_domains: wrong type: a string, expected a list of strings" },
	{ "milter: { socket = \"tcp:25\"; };",
	  "t.conf:1: milter.socket: \"tcp:25\" is not unix:/path, inet:PORT@HOST or inet6:PORT@HOST" },
	{ MIN "km: { servers = ( { name = \"a\"; host = \"h\"; } ); ca_file = \"c\"; };",
	  "t.conf:2: km.servers: split keys need two KM servers, one is configured" },
	{ MIN "km: { servers = ( { name = \"a\"; }, { name = \"b\"; host = \"h\"; } ); };",
	  "t.conf:2: km.servers[1]: required setting \"host\" is missing" },
	{ MIN "km: { servers = ( { name = \"a\"; host = \"h\"; port = 0; }, { name = \"b\"; host = \"h\"; } ); };",
	  "t.conf:2: km.servers[1].port: value 0 out of range 1..65535" },
	{ MIN "policy: { rules = ( { match = \"x.example\"; colour = \"red\"; } ); };",
	  "t.conf:2: policy.rules[1].colour: unknown setting" },
	{ MIN "cache: { redis: { host = \"127.0.0.1\"; socket = \"/tmp/r\"; }; };",
	  "t.conf:2: cache.redis.socket: set either cache.redis.host or cache.redis.socket, not both" },
	{ "milter: { socket = \"unix:/x\"; ",
	  "t.conf:1: syntax error: syntax error" },
	{ MIN "milter: { timeout = 5; };",
	  "t.conf:2: syntax error: duplicate setting name" },
	{ MIN "log: { verbose = 99999999999L; };",
	  "t.conf:2: log.verbose: value 99999999999 out of range 0..9" },
};

TEST(bad_files)
{
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct kmilter_conf *c = load(bad[i].text);

		if (c != NULL || strstr(err, bad[i].want) == NULL)
			printf("    case %zu: got \"%s\"\n", i, c ? "(loaded)" : err);
		CHECK(c == NULL);
		CHECK(strstr(err, bad[i].want) != NULL);
	}
}

TEST(all_errors_reported)
{
	struct kmilter_conf *c = load("milter: { socket = 1; timeout = 0; x = 1; };");
	int lines = 1;

	CHECK(c == NULL);
	for (const char *p = err; *p; p++)
		lines += *p == '\n';
	CHECK_EQ_INT(lines, 3);
}

/* issue 19: a bad word and a bad CIDR in one pass, not one after the other */
TEST(schema_and_semantic_errors_together)
{
	struct kmilter_conf *c = load("milter: { socket = \"unix:/run/k.sock\"; };\n"
	    "policy: { internal_hosts = [ \"10.0.0.0/99\" ];\n"
	    "  outbound: { encrypt = \"always\"; }; };");

	CHECK(c == NULL);
	CHECK(strstr(err, "policy.outbound.encrypt") != NULL);
	CHECK(strstr(err, "10.0.0.0/99") != NULL);
	CHECK(strstr(err, "t.conf:2: policy.internal_hosts") != NULL);
}

/* a reload rebuilds the key store only when its settings changed */
TEST(differs_by_group)
{
	static const char *const ks[] = { "km.", "cache.", "hook.", "milter.state_dir", NULL };
	static const char *const base = "milter: { socket = \"unix:/run/k.sock\"; };\n";
	char text[1024];
	struct kmilter_conf *a = load(MIN), *b;
	const char *which = NULL;

	CHECK(a != NULL);
	CHECK((b = load(MIN)) != NULL);
	CHECK_EQ_INT(conf_differs(a, b, ks, &which), 0);
	conf_unref(b);
	snprintf(text, sizeof(text), "%s%s", base, "policy: { internal_domains = [ \"x.org\" ]; };");
	CHECK((b = load(text)) != NULL);
	CHECK_EQ_INT(conf_differs(a, b, ks, &which), 0);	/* policy is not the key store's */
	conf_unref(b);
	snprintf(text, sizeof(text), "%s%s", base, "cache: { redis: { port = 6380; }; };");
	CHECK((b = load(text)) != NULL);
	CHECK_EQ_INT(conf_differs(a, b, ks, &which), 1);
	CHECK_EQ_STR(which, "cache.redis.port");
	conf_unref(b);
	snprintf(text, sizeof(text), "%s%s", base, "km: { servers = ( { name = \"a\"; "
	    "host = \"h\"; port = 1; }, { name = \"b\"; host = \"h\"; port = 2; } ); "
	    "ca_file = \"/c\"; client_cert = \"/c\"; client_key = \"/k\"; };");
	CHECK((b = load(text)) != NULL);
	CHECK_EQ_INT(conf_differs(a, b, ks, &which), 1);
	CHECK_EQ_INT(conf_differs(b, b, ks, &which), 0);
	conf_unref(b);
	snprintf(text, sizeof(text), "milter: { socket = \"unix:/run/k.sock\"; "
	    "state_dir = \"/elsewhere\"; };");
	CHECK((b = load(text)) != NULL);
	CHECK_EQ_INT(conf_differs(a, b, ks, &which), 1);
	CHECK_EQ_STR(which, "milter.state_dir");
	conf_unref(b);
	conf_unref(a);
}

TEST(missing_file)
{
	struct kmilter_conf *c = conf_load("/nonexistent/kmilter.conf", err, sizeof(err));

	CHECK(c == NULL);
	CHECK(strstr(err, "/nonexistent/kmilter.conf: cannot read") != NULL);
}

TEST(refcount)
{
	struct kmilter_conf *c = load(MIN);

	CHECK(c != NULL);
	CHECK(conf_ref(c) == c);
	CHECK_EQ_INT(c->refcnt, 2);
	conf_unref(c);
	CHECK_EQ_INT(c->refcnt, 1);
	conf_unref(c);
}

/* read_file - a whole file into a NUL-terminated buffer */
static char *
read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)n + 1);
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

/* every schema setting is documented in the man page and the sample */
TEST(documented)
{
	const char *top = getenv("KM_TOP") ? getenv("KM_TOP") : ".";
	char path[1024];
	char *man, *sample;
	int missing = 0;

	snprintf(path, sizeof(path), "%s/conf/kmilter.conf.5", top);
	man = read_file(path);
	snprintf(path, sizeof(path), "%s/conf/kmilter.conf", top);
	sample = read_file(path);
	CHECK(man != NULL && sample != NULL);
	for (size_t i = 0; i < conf_schema_count(); i++) {
		const char *name = conf_schema_name(i), *leaf = strrchr(name, '.') + 1;
		char manname[256], leafset[128];
		size_t o = 0;

		/* The man page escapes '-' and '_' stays as is. */
		for (const char *p = name; *p && o < sizeof(manname) - 3; p++) {
			if (*p == '-')
				manname[o++] = '\\';
			manname[o++] = *p;
		}
		manname[o] = '\0';
		snprintf(leafset, sizeof(leafset), "%s = ", leaf);
		if (strstr(man, manname) == NULL) {
			printf("    %s is not in kmilter.conf.5\n", name);
			missing++;
		}
		if (strstr(sample, leafset) == NULL) {
			printf("    %s is not in the sample kmilter.conf\n", name);
			missing++;
		}
	}
	free(man);
	free(sample);
	CHECK_EQ_INT(missing, 0);
}

TEST(sample_loads)
{
	const char *top = getenv("KM_TOP") ? getenv("KM_TOP") : ".";
	char path[1024];
	struct kmilter_conf *c;

	snprintf(path, sizeof(path), "%s/conf/kmilter.conf", top);
	c = conf_load(path, err, sizeof(err));
	if (c == NULL)
		printf("    %s\n", err);
	CHECK(c != NULL);
	conf_unref(c);
}

static const struct test_case tests[] = {
	T(minimal_defaults), T(full_values), T(bad_files), T(all_errors_reported),
	T(schema_and_semantic_errors_together), T(differs_by_group),
	T(missing_file), T(refcount), T(documented), T(sample_loads), { 0 }
};

int
main(int argc, char **argv)
{
	return harness_main(argc, argv, tests);
}
