/*
 * conf_schema.c - every kmilter.conf setting, its type, default and range.
 *
 * Keep this table, conf/kmilter.conf (the sample) and conf/kmilter.conf.5
 * in step: tests/unit/test_conf.c fails when a setting is missing from
 * either document.
 */
#include <limits.h>
#include <string.h>

#include "conf.h"
#include "conf_schema.h"

#define O(f)	offsetof(struct kmilter_conf, f)
#define BOOL(n, f, d)		{ n, CT_BOOL, O(f), d, 0, 1, NULL, 0, NULL, 0, 0 }
#define INT(n, f, d, lo, hi)	{ n, CT_INT, O(f), d, lo, hi, NULL, 0, NULL, 0, 0 }
#define STR(n, f, d)		{ n, CT_STRING, O(f), d, 0, 0, NULL, 0, NULL, 0, 0 }
#define REQSTR(n, f)		{ n, CT_STRING, O(f), NULL, 0, 0, NULL, 1, NULL, 0, 0 }
#define LIST(n, f, nf, d)	{ n, CT_STRLIST, O(f), d, 0, 0, NULL, 0, NULL, 0, O(nf) }
#define ENUM(n, f, d, w)	{ n, CT_ENUM, O(f), d, 0, 0, w, 0, NULL, 0, 0 }

static const struct conf_key server_keys[] = {
	{ "name", CT_STRING, offsetof(struct conf_km_server, name), NULL, 0, 0, NULL, 1, NULL, 0, 0 },
	{ "host", CT_STRING, offsetof(struct conf_km_server, host), NULL, 0, 0, NULL, 1, NULL, 0, 0 },
	{ "port", CT_INT, offsetof(struct conf_km_server, port), "5696", 1, 65535, NULL, 0, NULL, 0, 0 },
	{ NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL, 0, 0 }
};

static const struct conf_key rule_keys[] = {
	{ "match", CT_STRING, offsetof(struct conf_rule, match), NULL, 0, 0, NULL, 1, NULL, 0, 0 },
	{ "encrypt", CT_ENUM, offsetof(struct conf_rule, encrypt), "default", 0, 0,
	  "default|never|opportunistic|mandatory", 0, NULL, 0, 0 },
	{ "sign", CT_ENUM, offsetof(struct conf_rule, sign), "default", 0, 0,
	  "default|yes|no", 0, NULL, 0, 0 },
	{ "hide_subject", CT_ENUM, offsetof(struct conf_rule, hide_subject), "default", 0, 0,
	  "default|yes|no", 0, NULL, 0, 0 },
	{ NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL, 0, 0 }
};

#define LDAP_O(f)	offsetof(struct conf_ldap, f)
static const struct conf_key ldap_keys[] = {
	{ "domains", CT_STRLIST, LDAP_O(domains), NULL, 0, 0, NULL, 1, NULL, 0, LDAP_O(ndomains) },
	{ "uri", CT_STRING, LDAP_O(uri), NULL, 0, 0, NULL, 1, NULL, 0, 0 },
	{ "base", CT_STRING, LDAP_O(base), "", 0, 0, NULL, 0, NULL, 0, 0 },
	{ "bind_dn", CT_STRING, LDAP_O(bind_dn), "", 0, 0, NULL, 0, NULL, 0, 0 },
	{ "password_file", CT_STRING, LDAP_O(password_file), "", 0, 0, NULL, 0, NULL, 0, 0 },
	{ "starttls", CT_BOOL, LDAP_O(starttls), "false", 0, 1, NULL, 0, NULL, 0, 0 },
	{ "ca_file", CT_STRING, LDAP_O(ca_file), "", 0, 0, NULL, 0, NULL, 0, 0 },
	{ "timeout_ms", CT_INT, LDAP_O(timeout_ms), "2000", 10, 60000, NULL, 0, NULL, 0, 0 },
	{ "size_limit", CT_INT, LDAP_O(size_limit), "10", 1, 1000, NULL, 0, NULL, 0, 0 },
	{ NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL, 0, 0 }
};

const struct conf_key conf_schema[] = {
	REQSTR("milter.socket", socket),
	STR("milter.socket_mode", socket_mode, "0660"),
	STR("milter.socket_group", socket_group, ""),
	STR("milter.user", user, "kmilter"),
	STR("milter.pidfile", pidfile, ""),
	STR("milter.state_dir", state_dir, "/var/lib/kmilter"),
	STR("milter.spool_dir", spool_dir, "/var/spool/kmilter"),
	INT("milter.spool_memory_max", spool_memory_max, "1048576", 4096, 1073741824),
	INT("milter.spool_disk_max_mb", spool_disk_max_mb, "4096", 1, 1048576),
	INT("milter.timeout", timeout, "300", 1, 3600),
	INT("milter.max_sessions", max_sessions, "256", 1, 100000),
	INT("milter.max_inflight_mb", max_inflight_mb, "512", 1, 1048576),
	STR("milter.gateway_name", gateway_name, ""),
	STR("milter.control_socket", control_socket, ""),

	ENUM("log.facility", log_facility, "mail",
	    "mail|daemon|user|local0|local1|local2|local3|local4|local5|local6|local7"),
	INT("log.verbose", log_verbose, "0", 0, 9),
	BOOL("log.stderr", log_stderr, "false"),
	INT("log.stats_interval", stats_interval, "300", 0, 86400),

	{ "km.servers", CT_GROUPLIST, O(km_servers), NULL, 0, 2, NULL, 0,
	  server_keys, sizeof(struct conf_km_server), O(km_nservers) },
	STR("km.ca_file", km_ca_file, ""),
	STR("km.client_cert", km_client_cert, ""),
	STR("km.client_key", km_client_key, ""),
	INT("km.connect_timeout_ms", km_connect_timeout_ms, "2000", 10, 60000),
	INT("km.io_timeout_ms", km_io_timeout_ms, "5000", 10, 120000),
	INT("km.pool_size", km_pool_size, "4", 1, 64),
	STR("km.org_ca_cert", org_ca_cert, ""),
	STR("km.org_ca_key", org_ca_key, ""),

	STR("cache.seal_key_file", seal_key_file, ""),
	INT("cache.memory_entries", memory_entries, "10000", 0, 10000000),
	INT("cache.memory_ttl", memory_ttl, "60", 1, 86400),
	INT("cache.cert_ttl", cert_ttl, "3600", 1, 604800),
	INT("cache.key_ttl", key_ttl, "600", 1, 604800),
	INT("cache.negative_ttl", negative_ttl, "60", 1, 86400),
	STR("cache.redis.host", redis_host, ""),
	INT("cache.redis.port", redis_port, "6379", 1, 65535),
	STR("cache.redis.socket", redis_socket, ""),
	STR("cache.redis.password_file", redis_password_file, ""),
	INT("cache.redis.database", redis_database, "0", 0, 1023),
	INT("cache.redis.connect_timeout_ms", redis_connect_timeout_ms, "200", 1, 60000),
	INT("cache.redis.command_timeout_ms", redis_command_timeout_ms, "200", 1, 60000),
	LIST("cache.redis.sentinels", redis_sentinels, redis_nsentinels, NULL),
	STR("cache.redis.sentinel_master", redis_sentinel_master, ""),
	STR("cache.redis.sentinel_password_file", redis_sentinel_password_file, ""),
	INT("cache.redis.sentinel_timeout_ms", redis_sentinel_timeout_ms, "200", 1, 60000),

	LIST("policy.internal_domains", internal_domains, n_internal_domains, NULL),
	LIST("policy.internal_hosts", internal_hosts, n_internal_hosts, "127.0.0.0/8,::1"),
	BOOL("policy.trust_auth", trust_auth, "true"),
	STR("policy.sender_login_map", sender_login_map, ""),
	ENUM("policy.sender_login_mismatch", sender_login_mismatch, "refuse", "refuse|unsigned"),
	BOOL("policy.sign_unauthenticated", sign_unauthenticated, "true"),
	ENUM("policy.auto_enroll", auto_enroll, "off", "off|on|hook"),
	INT("policy.auto_enroll_wait_ms", auto_enroll_wait_ms, "2000", 0, 60000),
	INT("policy.auto_enroll_deny_ttl", auto_enroll_deny_ttl, "600", 0, 86400),
	ENUM("policy.on_malformed", on_malformed, "pass", "pass|reject|tempfail"),
	ENUM("policy.outbound.sign", out_sign, "yes", "no|yes"),
	ENUM("policy.outbound.encrypt", out_encrypt, "opportunistic",
	    "never|opportunistic|mandatory"),
	ENUM("policy.outbound.signature", out_signature, "detached", "detached|opaque"),
	ENUM("policy.outbound.digest", out_digest, "sha256", "sha256|sha384|sha512"),
	ENUM("policy.outbound.cipher", out_cipher, "aes-256-cbc",
	    "aes-256-cbc|aes-128-cbc|aes-256-gcm"),
	ENUM("policy.outbound.rsa_padding", out_rsa_padding, "pkcs1", "pkcs1|oaep"),
	BOOL("policy.outbound.encrypt_to_self", out_encrypt_to_self, "true"),
	ENUM("policy.outbound.missing_cert", out_missing_cert, "sign-only",
	    "sign-only|refuse|split"),
	ENUM("policy.outbound.no_signing_key", out_no_signing_key, "unsigned",
	    "unsigned|tempfail"),
	ENUM("policy.outbound.locked_signing_key", out_locked_signing_key,
	    "unsigned", "unsigned|tempfail"),
	STR("policy.outbound.subject_tag", out_subject_tag, ""),
	BOOL("policy.outbound.hide_subject", out_hide_subject, "true"),
	BOOL("policy.outbound.publish_cert", out_publish_cert, "true"),
	{ "policy.rules", CT_GROUPLIST, O(rules), NULL, 0, 10000, NULL, 0,
	  rule_keys, sizeof(struct conf_rule), O(nrules) },
	BOOL("policy.inbound.decrypt", in_decrypt, "true"),
	BOOL("policy.inbound.verify", in_verify, "true"),
	STR("policy.inbound.authserv_id", in_authserv_id, ""),
	STR("policy.inbound.ca_file", in_ca_file, ""),
	BOOL("policy.inbound.unwrap_opaque", in_unwrap_opaque, "true"),
	STR("policy.inbound.decrypt_daemon", in_decrypt_daemon, ""),
	/* issue 16 item 2: harvest correspondents' certificates */
	BOOL("policy.inbound.harvest", in_harvest, "true"),
	BOOL("policy.inbound.harvest_replace_imported", in_harvest_replace_imported,
	    "false"),
	INT("policy.inbound.harvest_max_per_message", in_harvest_max_per_message,
	    "2", 0, 16),
	INT("policy.inbound.harvest_max_per_address", in_harvest_max_per_address,
	    "4", 1, 100),

	{ "directory.ldap", CT_GROUPLIST, O(ldap), NULL, 0, 64, NULL, 0,
	  ldap_keys, sizeof(struct conf_ldap), O(nldap) },
	INT("directory.backoff_ms", dir_backoff_ms, "60000", 0, 86400000),

	ENUM("revocation.check", rev_check, "off", "off|soft|hard"),
	LIST("revocation.crl_files", rev_crl_files, rev_ncrl_files, NULL),
	INT("revocation.timeout_ms", rev_timeout_ms, "3000", 100, 60000),
	INT("revocation.cache_entries", rev_cache_entries, "4096", 1, 1000000),
	INT("revocation.cache_ttl", rev_cache_ttl, "3600", 1, 604800),
	INT("revocation.backoff_ms", rev_backoff_ms, "60000", 0, 86400000),

	STR("hook.path", hook_path, ""),
	INT("hook.timeout_ms", hook_timeout_ms, "5000", 10, 600000),
	INT("hook.max_running", hook_max_running, "4", 1, 256),
	ENUM("hook.on_failure", hook_on_failure, "keep-encrypted", "keep-encrypted|tempfail"),
	BOOL("hook.release", hook_release, "false"),
	INT("hook.unlocked_key_ttl", hook_unlocked_key_ttl, "300", 1, 86400),

	BOOL("directory.smimea.enabled", smimea_enabled, "false"),
	STR("directory.smimea.resolver", smimea_resolver, ""),
	STR("directory.smimea.stub", smimea_stub, ""),
	STR("directory.smimea.trust_anchor_file", smimea_trust_anchor_file,
	    "/usr/share/dns/root.key"),
	INT("directory.smimea.timeout_ms", smimea_timeout_ms, "2000", 10, 60000),
	LIST("directory.smimea.domains", smimea_domains, n_smimea_domains, NULL),

	{ NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL, 0, 0 }
};

/* conf_schema_find - the entry of a dotted name in a table, or NULL */
const struct conf_key *
conf_schema_find(const struct conf_key *tab, const char *name)
{
	for (const struct conf_key *k = tab; k->name; k++)
		if (strcmp(k->name, name) == 0)
			return k;
	return NULL;
}

/* conf_schema_count - how many top-level settings the schema has */
size_t
conf_schema_count(void)
{
	size_t n = 0;

	while (conf_schema[n].name)
		n++;
	return n;
}

/* conf_schema_name - the dotted name of setting i */
const char *
conf_schema_name(size_t i)
{
	return i < conf_schema_count() ? conf_schema[i].name : NULL;
}

/* conf_word - the word an enumerated setting's value stands for ("" if none) */
const char *
conf_word(const char *setting, int value, char *buf, size_t len)
{
	const struct conf_key *k = conf_schema_find(conf_schema, setting);
	const char *p;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	if (k == NULL || k->type != CT_ENUM || value < 0)
		return buf;
	p = k->words;
	for (int i = 0; i < value && p; i++)
		if ((p = strchr(p, '|')) != NULL)
			p++;
	if (p != NULL) {
		size_t n = strcspn(p, "|");

		if (n >= len)
			n = len - 1;
		memcpy(buf, p, n);
		buf[n] = '\0';
	}
	return buf;
}
