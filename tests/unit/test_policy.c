/*
 * test_policy.c - direction, rules, address normalization, sender ownership
 * and the sender-login map (milter/policy.c, conf/loginmap.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "harness.h"
#include "policy.h"

static char err[8192];

#define MIN "milter: { socket = \"unix:/tmp/x.sock\"; };\n"
#define POLICY(extra) MIN "policy: { internal_domains = [ \"example.com\", \".corp.example\" ];" \
	" internal_hosts = [ \"127.0.0.1/32\", \"10.0.0.0/8\", \"fd00::/8\" ];" extra " };\n"

/* load - a configuration from text; NULL on error (err holds why) */
static struct kmilter_conf *
load(const char *text)
{
	return conf_load_string(text, "t.conf", err, sizeof(err));
}

/* map_file - write a sender-login map to a temporary file; its path (static) */
static const char *
map_file(const char *text)
{
	static char path[64];
	FILE *fp;
	int fd;

	strcpy(path, "/tmp/test_policy.map.XXXXXX");
	if ((fd = mkstemp(path)) < 0 || (fp = fdopen(fd, "w")) == NULL)
		return NULL;
	fputs(text, fp);
	fclose(fp);
	return path;
}

/* conf_with_map - POLICY() plus sender_login_map = path and extra settings */
static struct kmilter_conf *
conf_with_map(const char *path, const char *extra)
{
	char text[1024];

	snprintf(text, sizeof(text), POLICY(" sender_login_map = \"%s\"; %s"), path, extra);
	return load(text);
}

static const struct {
	const char *in, *out;
} norm_cases[] = {
	{ "alice@example.com", "alice@example.com" },
	{ "<alice@example.com>", "alice@example.com" },
	{ " <Alice@EXAMPLE.Com> ", "Alice@example.com" },		/* local part kept */
	{ "nocert@secure.example.", "nocert@secure.example" },	/* FQDN form */
	{ "nocert@secure.example..", "nocert@secure.example" },
	{ "<nocert@SECURE.example.>", "nocert@secure.example" },
	{ "\"nocert\"@SECURE.example", "nocert@secure.example" },	/* needless quotes */
	{ "\"no\\cert\"@secure.example", "nocert@secure.example" },	/* quoted-pair */
	{ "\"first.last\"@example.com", "first.last@example.com" },
	{ "\"john doe\"@Example.COM", "\"john doe\"@example.com" },	/* quotes needed */
	{ "\"a@b\"@Example.COM", "\"a@b\"@example.com" },
	{ "\".alice\"@example.com", "\".alice\"@example.com" },
	{ "\"a..b\"@example.com", "\"a..b\"@example.com" },
	{ "<@relay.example,@b.example:bob@Example.COM>", "bob@example.com" },	/* source route */
	{ "", "" },							/* null sender */
	{ "<>", "" },
	{ "postmaster", "postmaster" },
	{ "a@b@Example.COM", "a@b@example.com" },			/* last '@' */
};

TEST(normalize)
{
	for (size_t i = 0; i < sizeof(norm_cases) / sizeof(norm_cases[0]); i++) {
		char *got = policy_addr_normalize(norm_cases[i].in);

		if (got == NULL || strcmp(got, norm_cases[i].out) != 0)
			printf("    normalize(%s) = %s, want %s\n", norm_cases[i].in,
			    got ? got : "(null)", norm_cases[i].out);
		CHECK(got != NULL);
		CHECK_EQ_STR(got, norm_cases[i].out);
		free(got);
	}
	{
		char *empty = policy_addr_normalize(NULL);

		CHECK(empty != NULL && *empty == '\0');
		free(empty);
	}
}

/* enc_for - the encrypt rule for an address as the session would store it */
static int
enc_for(const struct kmilter_conf *c, const char *raw)
{
	char *n = policy_addr_normalize(raw);
	int e = policy_for_rcpt(c, n).encrypt;

	free(n);
	return e;
}

TEST(rules_every_form)
{
	struct kmilter_conf *c = load(POLICY(
	    " rules = ( { match = \"secure.example\"; encrypt = \"mandatory\"; },"
	    "  { match = \".sub.example\"; encrypt = \"never\"; sign = \"no\"; },"
	    "  { match = \"vip@open.example\"; encrypt = \"mandatory\"; },"
	    "  { match = \"open.example\"; encrypt = \"never\"; } );"));

	CHECK(c != NULL);
	CHECK_EQ_INT(policy_for_rcpt(c, "x@secure.example").encrypt, ENCRYPT_MANDATORY);
	CHECK_EQ_INT(policy_for_rcpt(c, "x@other.example").encrypt, ENCRYPT_OPPORTUNISTIC);
	CHECK_EQ_INT(policy_for_rcpt(c, "x@other.example").sign, 1);
	/* a leading dot covers the domain and every subdomain */
	CHECK_EQ_INT(policy_for_rcpt(c, "x@sub.example").encrypt, ENCRYPT_NEVER);
	CHECK_EQ_INT(policy_for_rcpt(c, "x@a.b.sub.example").encrypt, ENCRYPT_NEVER);
	CHECK_EQ_INT(policy_for_rcpt(c, "x@a.b.sub.example").sign, 0);
	CHECK_EQ_INT(policy_for_rcpt(c, "x@notsub.example").encrypt, ENCRYPT_OPPORTUNISTIC);
	/* without a dot, only the domain itself */
	CHECK_EQ_INT(policy_for_rcpt(c, "x@a.secure.example").encrypt, ENCRYPT_OPPORTUNISTIC);
	/* an address rule wins over its domain's rule, case-insensitively */
	CHECK_EQ_INT(policy_for_rcpt(c, "VIP@open.example").encrypt, ENCRYPT_MANDATORY);
	CHECK_EQ_INT(policy_for_rcpt(c, "other@open.example").encrypt, ENCRYPT_NEVER);
	conf_unref(c);
}

/* README: the address's rule, then its domain's, then the nearest parent's */
TEST(rules_precedence_not_list_order)
{
	struct kmilter_conf *c = load(POLICY(
	    " rules = ( { match = \".example\"; encrypt = \"never\"; },"
	    "  { match = \".parent.example\"; encrypt = \"mandatory\"; },"
	    "  { match = \"open.parent.example\"; encrypt = \"opportunistic\"; },"
	    "  { match = \"strict.example\"; encrypt = \"mandatory\"; },"
	    "  { match = \"vip@strict.example\"; encrypt = \"never\"; } );"));

	CHECK(c != NULL);
	CHECK_EQ_INT(enc_for(c, "x@open.parent.example"), ENCRYPT_OPPORTUNISTIC);
	CHECK_EQ_INT(enc_for(c, "x@a.open.parent.example"), ENCRYPT_MANDATORY);
	CHECK_EQ_INT(enc_for(c, "x@parent.example"), ENCRYPT_MANDATORY);
	CHECK_EQ_INT(enc_for(c, "x@other.example"), ENCRYPT_NEVER);
	CHECK_EQ_INT(enc_for(c, "x@strict.example"), ENCRYPT_MANDATORY);
	CHECK_EQ_INT(enc_for(c, "vip@strict.example"), ENCRYPT_NEVER);
	CHECK_EQ_INT(enc_for(c, "x@elsewhere.test"), ENCRYPT_OPPORTUNISTIC);
	conf_unref(c);
}

TEST(rules_see_normalized_addresses)
{
	struct kmilter_conf *c = load(POLICY(
	    " rules = ( { match = \"secure.example\"; encrypt = \"mandatory\"; },"
	    "  { match = \"vip@open.example\"; encrypt = \"mandatory\"; } );"));

	CHECK(c != NULL);
	CHECK_EQ_INT(enc_for(c, "nocert@secure.example."), ENCRYPT_MANDATORY);
	CHECK_EQ_INT(enc_for(c, "<nocert@SECURE.example>"), ENCRYPT_MANDATORY);
	CHECK_EQ_INT(enc_for(c, "\"nocert\"@SECURE.example"), ENCRYPT_MANDATORY);
	CHECK_EQ_INT(enc_for(c, "\"nocert\"@secure.example.."), ENCRYPT_MANDATORY);
	CHECK_EQ_INT(enc_for(c, "\"vip\"@Open.Example."), ENCRYPT_MANDATORY);
	CHECK_EQ_INT(enc_for(c, "\"john doe\"@secure.example"), ENCRYPT_MANDATORY);
	conf_unref(c);
}

TEST(configured_names_with_trailing_dot)
{
	struct kmilter_conf *c = load(MIN "policy: { internal_domains = [ \"Example.COM.\" ];"
	    " rules = ( { match = \"Secure.Example.\"; encrypt = \"mandatory\"; },"
	    "  { match = \".sub.example.\"; encrypt = \"never\"; },"
	    "  { match = \"vip@open.example.\"; encrypt = \"mandatory\"; } ); };\n");

	CHECK(c != NULL);
	CHECK(policy_domain_internal(c, "alice@example.com"));
	CHECK(!policy_domain_internal(c, "alice@xexample.com"));
	CHECK_EQ_INT(enc_for(c, "x@secure.example."), ENCRYPT_MANDATORY);
	CHECK_EQ_INT(enc_for(c, "x@a.sub.example"), ENCRYPT_NEVER);
	CHECK_EQ_INT(enc_for(c, "x@sub.example"), ENCRYPT_NEVER);
	CHECK_EQ_INT(enc_for(c, "x@ub.example"), ENCRYPT_OPPORTUNISTIC);
	CHECK_EQ_INT(enc_for(c, "x@xsub.example"), ENCRYPT_OPPORTUNISTIC);
	CHECK_EQ_INT(enc_for(c, "vip@open.example"), ENCRYPT_MANDATORY);
	CHECK_EQ_INT(enc_for(c, "vi@open.example"), ENCRYPT_OPPORTUNISTIC);
	conf_unref(c);
	c = load(MIN "policy: { internal_domains = [ \".\" ]; };\n");
	CHECK(c != NULL);
	CHECK(!policy_domain_internal(c, "alice@example.com"));
	conf_unref(c);
}

TEST(hosts_internal)
{
	struct kmilter_conf *c = load(POLICY(""));

	CHECK(c != NULL);
	CHECK(policy_host_internal(c, "127.0.0.1"));
	CHECK(!policy_host_internal(c, "127.0.0.2"));
	CHECK(policy_host_internal(c, "10.200.3.4"));
	CHECK(policy_host_internal(c, "::ffff:10.1.1.1"));
	CHECK(policy_host_internal(c, "fd12::1"));
	CHECK(!policy_host_internal(c, "fe80::1"));
	CHECK(!policy_host_internal(c, "garbage"));
	conf_unref(c);
}

static char a_bob[] = "bob@example.com", a_dave[] = "dave@outside.example";
static char a_sub[] = "x@a.corp.example";
static char *in_only[] = { a_bob };
static char *out_only[] = { a_dave };
static char *mixed[] = { a_bob, a_dave };
static char *sub_in[] = { a_sub };

static const struct {
	const char *name;
	int internal, trust_auth;
	const char *auth, *from;
	char **rcpts;
	int nrcpts;
	enum direction want;
} dir_cases[] = {
	{ "internal host, internal sender", 1, 1, NULL, "alice@example.com", out_only, 1, DIR_OUTBOUND },
	{ "internal host, internal sender, no rcpt yet", 1, 1, NULL, "alice@example.com", NULL, 0, DIR_OUTBOUND },
	{ "internal host, internal sender to internal", 1, 1, NULL, "alice@example.com", in_only, 1, DIR_OUTBOUND },
	{ "internal host, subdomain sender", 1, 1, NULL, "a@x.corp.example", out_only, 1, DIR_OUTBOUND },
	{ "internal host, outside sender to outside", 1, 1, NULL, "eve@outside.example", out_only, 1, DIR_OUTBOUND },
	{ "internal host, null sender to outside", 1, 1, NULL, "", out_only, 1, DIR_OUTBOUND },
	{ "internal host, outside sender, no rcpt yet", 1, 1, NULL, "eve@outside.example", NULL, 0, DIR_PASS },
	{ "internal host, outside sender to internal only", 1, 1, NULL, "eve@outside.example", in_only, 1, DIR_INBOUND },
	{ "internal host, outside sender to subdomain", 1, 1, NULL, "eve@outside.example", sub_in, 1, DIR_INBOUND },
	{ "internal host, outside sender, mixed rcpts", 1, 1, NULL, "eve@outside.example", mixed, 2, DIR_OUTBOUND },
	{ "outside host, internal sender to outside", 0, 1, NULL, "alice@example.com", out_only, 1, DIR_PASS },
	{ "outside host, internal sender to internal", 0, 1, NULL, "alice@example.com", in_only, 1, DIR_INBOUND },
	{ "outside host, outside sender, mixed", 0, 1, NULL, "eve@outside.example", mixed, 2, DIR_INBOUND },
	{ "outside host, AUTH, internal sender", 0, 1, "alice@example.com", "alice@example.com", out_only, 1, DIR_OUTBOUND },
	{ "outside host, AUTH, null sender to outside", 0, 1, "bob", "", out_only, 1, DIR_OUTBOUND },
	{ "outside host, AUTH, outside sender to internal", 0, 1, "bob", "eve@outside.example", in_only, 1, DIR_INBOUND },
	{ "outside host, AUTH not trusted", 0, 0, "alice@example.com", "alice@example.com", out_only, 1, DIR_PASS },
	{ "outside host, empty AUTH", 0, 1, "", "alice@example.com", out_only, 1, DIR_PASS },
};

TEST(direction)
{
	struct kmilter_conf *c = load(POLICY(""));
	struct kmilter_conf *nt = load(POLICY(" trust_auth = false;"));

	CHECK(c != NULL && nt != NULL);
	for (size_t i = 0; i < sizeof(dir_cases) / sizeof(dir_cases[0]); i++) {
		enum direction d = policy_direction(dir_cases[i].trust_auth ? c : nt,
		    dir_cases[i].internal, dir_cases[i].auth, dir_cases[i].from,
		    dir_cases[i].rcpts, dir_cases[i].nrcpts);

		if (d != dir_cases[i].want)
			printf("    %s: %s, want %s\n", dir_cases[i].name,
			    policy_direction_name(d), policy_direction_name(dir_cases[i].want));
		CHECK_EQ_INT(d, dir_cases[i].want);
	}
	conf_unref(c);
	conf_unref(nt);
}

TEST(sender_owned_same_identity)
{
	struct kmilter_conf *c = load(POLICY(""));

	CHECK(c != NULL);
	CHECK(policy_sender_owned(c, "alice@example.com", "alice@example.com"));
	CHECK(policy_sender_owned(c, "Alice@Example.COM", "alice@example.com"));
	CHECK(!policy_sender_owned(c, "bob@example.com", "alice@example.com"));
	CHECK(!policy_sender_owned(c, "alice", "alice@example.com"));
	CHECK(!policy_sender_owned(c, "", "alice@example.com"));
	CHECK(!policy_sender_owned(c, NULL, "alice@example.com"));
	CHECK(!policy_sender_owned(c, "bob@example.com", ""));
	conf_unref(c);
}

TEST(sender_owned_map)
{
	const char *path = map_file("# who may send as whom\n"
	    "\n"
	    "alice@example.com   alice, Alice-Assistant@example.com\n"
	    "  sales@Example.COM. bob carol\n"
	    "@corp.example\tadmin\n");
	struct kmilter_conf *c;

	CHECK(path != NULL);
	c = conf_with_map(path, "");
	unlink(path);
	if (c == NULL)
		printf("    %s\n", err);
	CHECK(c != NULL);
	CHECK_EQ_INT(c->n_sender_logins, 3);
	CHECK_EQ_STR(c->sender_logins[1].address, "sales@example.com");
	CHECK(policy_sender_owned(c, "alice", "alice@example.com"));
	CHECK(policy_sender_owned(c, "alice-assistant@example.com", "alice@example.com"));
	CHECK(policy_sender_owned(c, "BOB", "sales@example.com"));
	CHECK(policy_sender_owned(c, "carol", "Sales@example.com"));
	CHECK(!policy_sender_owned(c, "bob", "alice@example.com"));
	CHECK(!policy_sender_owned(c, "alice", "sales@example.com"));
	CHECK(policy_sender_owned(c, "admin", "anyone@corp.example"));
	CHECK(!policy_sender_owned(c, "admin", "anyone@sub.corp.example"));
	CHECK(!policy_sender_owned(c, "admin", "alice@example.com"));
	conf_unref(c);
}

TEST(signer)
{
	struct kmilter_conf *c = load(POLICY(""));
	struct kmilter_conf *strict = load(POLICY(" sign_unauthenticated = false;"));

	CHECK(c != NULL && strict != NULL);
	CHECK_EQ_INT(c->sign_unauthenticated, 1);
	CHECK_EQ_INT(c->sender_login_mismatch, LOGINMISMATCH_REFUSE);
	CHECK_EQ_INT(policy_signer(c, NULL, "alice@example.com"), SIGNER_OK);
	CHECK_EQ_INT(policy_signer(c, "alice@example.com", "alice@example.com"), SIGNER_OK);
	CHECK_EQ_INT(policy_signer(c, "bob@example.com", "alice@example.com"), SIGNER_NOT_OWNED);
	CHECK_EQ_INT(policy_signer(c, NULL, "eve@outside.example"), SIGNER_NOT_INTERNAL);
	CHECK_EQ_INT(policy_signer(c, "eve@outside.example", "eve@outside.example"),
	    SIGNER_NOT_INTERNAL);
	CHECK_EQ_INT(policy_signer(c, NULL, ""), SIGNER_NOT_INTERNAL);
	CHECK_EQ_INT(policy_signer(strict, NULL, "alice@example.com"), SIGNER_UNAUTHENTICATED);
	CHECK_EQ_INT(policy_signer(strict, "alice@example.com", "alice@example.com"), SIGNER_OK);
	CHECK(strcmp(policy_signer_name(SIGNER_NOT_OWNED), "?") != 0);
	conf_unref(c);
	conf_unref(strict);
}

static const struct {
	const char *text;
	int line;
	const char *why;
} bad_maps[] = {
	{ "alice@example.com alice\nalice\n", 2, "not an address" },
	{ "alice@example.com\n", 1, "no login" },
	{ "# c\n\nalice@example.com   \t \n", 3, "no login" },
	{ "\"alice\"@example.com alice\n", 1, "quoted" },
	{ "alice@ alice\n", 1, "not an address" },
	{ "alice@example.com a\nALICE@example.com. b\n", 2, "listed already at line 1" },
};

TEST(map_malformed_is_config_error)
{
	for (size_t i = 0; i < sizeof(bad_maps) / sizeof(bad_maps[0]); i++) {
		const char *path = map_file(bad_maps[i].text);
		char want[128];
		struct kmilter_conf *c;

		CHECK(path != NULL);
		c = conf_with_map(path, "");
		unlink(path);
		snprintf(want, sizeof(want), "%s:%d: ", path, bad_maps[i].line);
		if (c != NULL || strstr(err, want) == NULL || strstr(err, bad_maps[i].why) == NULL)
			printf("    case %zu: %s\n", i, c ? "(loaded)" : err);
		CHECK(c == NULL);
		CHECK(strstr(err, "policy.sender_login_map") != NULL);
		CHECK(strstr(err, want) != NULL);
		CHECK(strstr(err, bad_maps[i].why) != NULL);
	}
	/* a missing file too */
	CHECK(conf_with_map("/nonexistent/kmilter.map", "") == NULL);
	CHECK(strstr(err, "/nonexistent/kmilter.map: cannot read") != NULL);
}

TEST(map_long_line)
{
	char *text = malloc(3000);
	const char *path;
	struct kmilter_conf *c;

	CHECK(text != NULL);
	strcpy(text, "alice@example.com ");
	memset(text + strlen(text), 'a', 2000);
	strcpy(text + 18 + 2000, "\n");
	path = map_file(text);
	free(text);
	CHECK(path != NULL);
	c = conf_with_map(path, "");
	unlink(path);
	CHECK(c == NULL);
	CHECK(strstr(err, ":1: line too long") != NULL);
}

TEST(mismatch_setting)
{
	struct kmilter_conf *c = load(POLICY(" sender_login_mismatch = \"unsigned\";"));

	CHECK(c != NULL);
	CHECK_EQ_INT(c->sender_login_mismatch, LOGINMISMATCH_UNSIGNED);
	conf_unref(c);
	CHECK(load(POLICY(" sender_login_mismatch = \"maybe\";")) == NULL);
}

static const struct test_case tests[] = {
	T(normalize),
	T(rules_every_form),
	T(rules_precedence_not_list_order),
	T(rules_see_normalized_addresses),
	T(configured_names_with_trailing_dot),
	T(hosts_internal),
	T(direction),
	T(sender_owned_same_identity),
	T(sender_owned_map),
	T(signer),
	T(map_malformed_is_config_error),
	T(map_long_line),
	T(mismatch_setting),
	{ 0 }
};

int
main(int argc, char **argv)
{
	return harness_main(argc, argv, tests);
}
