#ifndef KMILTER_CONF_CONF_H
#define KMILTER_CONF_CONF_H
/*
 * NAME
 *	conf - kmilter's configuration: one libconfig file, validated whole
 * SUMMARY
 *	conf_load(), conf_load_string(), conf_load_all(), conf_ref(),
 *	conf_unref(), conf_dump(), conf_differs()
 * DESCRIPTION
 *	conf_load() reads a libconfig file, checks every setting against the
 *	schema (conf_schema.c: name, type, default, range or allowed values,
 *	required), and returns an immutable, typed struct kmilter_conf.  An
 *	unknown setting, a wrong type, a value out of range or not among the
 *	allowed words, and a missing required setting are each refused with
 *	"FILE:LINE: SETTING: what is wrong"; all problems found are reported,
 *	one per line, in the caller's error buffer.
 *	The configuration is reference counted so that a reload (SIGHUP) can
 *	swap in a new one while sessions keep the one they started with.
 *	conf_differs() tells a reload whether any setting of some groups
 *	("km." names the group km) or some whole names changed; *which
 *	gets the first that did.
 * OWNERSHIP
 *	conf_load() returns a configuration with one reference; conf_ref()
 *	adds one, conf_unref() drops one and frees at zero (returns NULL).
 *	All strings belong to the configuration.
 * ERRORS
 *	conf_load() returns NULL and fills errbuf.
 *	conf_load_all() (kmilter -n) returns NULL only when the file cannot be
 *	read or parsed; otherwise the configuration, with *nerrors lines in
 *	errbuf and the settings in error left at their defaults: never run
 *	with one that has errors.
 * THREADS
 *	A loaded configuration is read-only and may be shared by threads;
 *	conf_ref()/conf_unref() are atomic.
 */
#include <stddef.h>

/* Allowed words, in the order of the enums (conf_schema.c uses the same). */
enum conf_encrypt	{ ENCRYPT_NEVER, ENCRYPT_OPPORTUNISTIC, ENCRYPT_MANDATORY };
enum conf_sigform	{ SIGFORM_DETACHED, SIGFORM_OPAQUE };
enum conf_digest	{ DIGEST_SHA256, DIGEST_SHA384, DIGEST_SHA512 };
enum conf_cipher	{ CIPHER_AES256_CBC, CIPHER_AES128_CBC, CIPHER_AES256_GCM };
enum conf_padding	{ PADDING_PKCS1, PADDING_OAEP };
enum conf_missing	{ MISSING_SIGN_ONLY, MISSING_REFUSE, MISSING_SPLIT };
enum conf_nosignkey	{ NOSIGNKEY_UNSIGNED, NOSIGNKEY_TEMPFAIL };
enum conf_autoenroll	{ AUTOENROLL_OFF, AUTOENROLL_ON, AUTOENROLL_HOOK };
enum conf_malformed	{ MALFORMED_PASS, MALFORMED_REJECT, MALFORMED_TEMPFAIL };
enum conf_revcheck	{ REVCHECK_OFF, REVCHECK_SOFT, REVCHECK_HARD };
enum conf_hookfail	{ HOOKFAIL_KEEP_ENCRYPTED, HOOKFAIL_TEMPFAIL };
enum conf_sign		{ SIGN_NO, SIGN_YES };
enum conf_rulesign	{ RULESIGN_DEFAULT, RULESIGN_YES, RULESIGN_NO };
enum conf_ruleenc	{ RULEENC_DEFAULT, RULEENC_NEVER, RULEENC_OPPORTUNISTIC,
			  RULEENC_MANDATORY };
enum conf_loginmismatch	{ LOGINMISMATCH_REFUSE, LOGINMISMATCH_UNSIGNED };

struct conf_km_server {
	char	*name;
	char	*host;
	int	 port;
};

/* One element of directory.ldap (keyclient/ldapdir.c). */
struct conf_ldap {
	char	**domains;	/* "example.net", ".example.net" (subdomains), "*" */
	int	 ndomains;
	char	*uri;		/* ldap://host:port/ or ldaps://host:port/ */
	char	*base;		/* search base */
	char	*bind_dn;	/* "" = anonymous */
	char	*password_file;	/* the bind password, first line */
	int	 starttls;
	char	*ca_file;	/* CA of the server's certificate ("" = system) */
	int	 timeout_ms;	/* connect, bind and search, each */
	int	 size_limit;	/* entries per search */
};

struct conf_rule {
	char	*match;		/* "domain.tld", ".sub.domain" or "user@domain" */
	int	 encrypt;	/* enum conf_ruleenc */
	int	 sign;		/* enum conf_rulesign */
	int	 hide_subject;	/* enum conf_rulesign: default, yes, no */
};

/* One line of policy.sender_login_map (conf/loginmap.c). */
struct conf_login_map {
	char	*address;	/* lower-case "user@domain" or "@domain" */
	char	**logins;
	int	 nlogins;
};

struct kmilter_conf {
	char	*path;			/* the file it came from */

	/* milter */
	char	*socket;
	char	*socket_mode;
	char	*socket_group;		/* "" = the milter user's group */
	char	*user;
	char	*pidfile;
	char	*state_dir;
	char	*spool_dir;
	int	 spool_memory_max;
	int	 spool_disk_max_mb;
	int	 timeout;
	int	 max_sessions;
	int	 max_inflight_mb;
	char	*gateway_name;
	char	*control_socket;

	/* log */
	int	 log_facility;		/* index into the log.facility words */
	int	 log_verbose;
	int	 log_stderr;
	int	 stats_interval;

	/* km */
	struct conf_km_server *km_servers;
	int	 km_nservers;
	char	*km_ca_file;
	char	*km_client_cert;
	char	*km_client_key;
	int	 km_connect_timeout_ms;
	int	 km_io_timeout_ms;
	int	 km_pool_size;
	char	*org_ca_cert;
	char	*org_ca_key;

	/* cache */
	char	*seal_key_file;
	int	 memory_entries;
	int	 memory_ttl;
	int	 cert_ttl;
	int	 key_ttl;
	int	 negative_ttl;
	char	*redis_host;
	int	 redis_port;
	char	*redis_socket;
	char	*redis_password_file;
	int	 redis_database;
	int	 redis_connect_timeout_ms;
	int	 redis_command_timeout_ms;
	char	**redis_sentinels;	/* "host:port" */
	int	 redis_nsentinels;
	char	*redis_sentinel_master;
	char	*redis_sentinel_password_file;
	int	 redis_sentinel_timeout_ms;

	/* policy */
	char	**internal_domains;
	int	 n_internal_domains;
	char	**internal_hosts;
	int	 n_internal_hosts;
	int	 trust_auth;
	char	*sender_login_map;	/* file, "" for none */
	int	 sender_login_mismatch;	/* enum conf_loginmismatch */
	int	 sign_unauthenticated;
	struct conf_login_map *sender_logins;	/* loaded from sender_login_map */
	int	 n_sender_logins;
	int	 auto_enroll;		/* enum conf_autoenroll */
	int	 auto_enroll_wait_ms;	/* longest wait of the triggering message */
	int	 auto_enroll_deny_ttl;	/* seconds a hook's "no" is remembered */
	int	 on_malformed;		/* enum conf_malformed */
	int	 out_sign;		/* enum conf_sign */
	int	 out_encrypt;		/* enum conf_encrypt */
	int	 out_signature;		/* enum conf_sigform */
	int	 out_digest;		/* enum conf_digest */
	int	 out_cipher;		/* enum conf_cipher */
	int	 out_rsa_padding;	/* enum conf_padding */
	int	 out_encrypt_to_self;
	int	 out_missing_cert;	/* enum conf_missing */
	int	 out_no_signing_key;	/* enum conf_nosignkey */
	int	 out_locked_signing_key; /* enum conf_nosignkey */
	char	*out_subject_tag;
	int	 out_hide_subject;	/* encrypted mail: outer Subject "[...]" (RFC 9788) */
	int	 out_publish_cert;	/* signatures carry the sender's encryption certificate */
	struct conf_rule *rules;
	int	 nrules;
	int	 in_decrypt;
	int	 in_verify;
	char	*in_authserv_id;
	char	*in_ca_file;
	int	 in_unwrap_opaque;
	char	*in_decrypt_daemon;	/* "" = one pass */
	int	 in_harvest;		/* store signers' encryption certs */
	int	 in_harvest_replace_imported;
	int	 in_harvest_max_per_message;	/* 0: none stored */
	int	 in_harvest_max_per_address;	/* harvested generations kept */

	/* directory */
	struct conf_ldap *ldap;
	int	 nldap;
	int	 dir_backoff_ms;

	/* revocation (of outside certificates) */
	int	 rev_check;		/* enum conf_revcheck */
	char	**rev_crl_files;
	int	 rev_ncrl_files;
	int	 rev_timeout_ms;
	int	 rev_cache_entries;
	int	 rev_cache_ttl;
	int	 rev_backoff_ms;

	/* hook */
	char	*hook_path;
	int	 hook_timeout_ms;
	int	 hook_max_running;
	int	 hook_on_failure;	/* enum conf_hookfail */
	int	 hook_release;
	int	 hook_unlocked_key_ttl;

	/* directory.smimea: certificates from DNS SMIMEA records (RFC 8162) */
	int	 smimea_enabled;
	char	*smimea_resolver;	/* "" = recursion from the root */
	char	*smimea_stub;		/* "" = none; else for smimea_domains */
	char	*smimea_trust_anchor_file;
	int	 smimea_timeout_ms;
	char	**smimea_domains;	/* none = every domain */
	int	 n_smimea_domains;

	int	 refcnt;
};

struct kmilter_conf *conf_load(const char *path, char *errbuf, size_t errlen);
struct kmilter_conf *conf_load_string(const char *text, const char *name,
	    char *errbuf, size_t errlen);
struct kmilter_conf *conf_load_all(const char *path, char *errbuf, size_t errlen,
	    int *nerrors);
struct kmilter_conf *conf_ref(struct kmilter_conf *);
struct kmilter_conf *conf_unref(struct kmilter_conf *);
int		    conf_differs(const struct kmilter_conf *, const struct kmilter_conf *,
		    const char *const *names, const char **which);

/* Schema access, for the documentation check and `kmilter -n -v`. */
size_t      conf_schema_count(void);
const char *conf_schema_name(size_t i);	/* e.g. "policy.outbound.cipher" */
/* The word of an enumerated setting's value: conf_word("log.facility", c->log_facility). */
const char *conf_word(const char *setting, int value, char *buf, size_t len);

#endif
