/*
 * conf.c - load and validate kmilter.conf (see conf.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <libconfig.h>

#include "conf.h"
#include "conf_schema.h"
#include "conf_redis.h"
#include "loginmap.h"
#include "trustpath.h"

struct errs {
	char	*buf;
	size_t	 len;
	size_t	 used;
	int	 count;
	const char *file;
	size_t	 schema_used;	/* end of the schema's lines; 0 before the semantic checks */
};

/* reported - a schema line names the setting already (a semantic check would repeat it) */
static int
reported(const struct errs *e, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = e->buf; p != NULL && p < e->buf + e->schema_used;
	    p = strchr(p + 1, ':'))
		if (strncmp(p, ": ", 2) == 0 && strncmp(p + 2, name, n) == 0 &&
		    p[2 + n] == ':')
			return 1;
	return 0;
}

/* err_add - append one "FILE:LINE: SETTING: what" line to the error list */
static void __attribute__((format(printf, 4, 5)))
err_add(struct errs *e, const config_setting_t *s, const char *name,
    const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n;

	if (e->schema_used > 0 && reported(e, name))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	e->count++;
	if (e->used >= e->len)
		return;
	if (s != NULL && config_setting_source_line(s) > 0)
		n = snprintf(e->buf + e->used, e->len - e->used, "%s%s:%d: %s: %s",
		    e->used ? "\n" : "",
		    config_setting_source_file(s) ? config_setting_source_file(s) : e->file,
		    config_setting_source_line(s), name, msg);
	else
		n = snprintf(e->buf + e->used, e->len - e->used, "%s%s: %s: %s",
		    e->used ? "\n" : "", e->file, name, msg);
	if (n > 0)
		e->used += (size_t)n < e->len - e->used ? (size_t)n : e->len - e->used - 1;
}

/* type_name - what libconfig calls a setting's type, for error lines */
static const char *
type_name(int t)
{
	switch (t) {
	case CONFIG_TYPE_GROUP:		return "a group";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:		return "an integer";
	case CONFIG_TYPE_FLOAT:		return "a float";
	case CONFIG_TYPE_STRING:	return "a string";
	case CONFIG_TYPE_BOOL:		return "a boolean";
	case CONFIG_TYPE_ARRAY:		return "an array";
	case CONFIG_TYPE_LIST:		return "a list";
	}
	return "unknown";
}

/* is_group_prefix - does some schema key lie below the dotted name? */
static int
is_group_prefix(const struct conf_key *tab, const char *name)
{
	size_t n = strlen(name);

	for (const struct conf_key *k = tab; k->name; k++)
		if (strncmp(k->name, name, n) == 0 && k->name[n] == '.')
			return 1;
	return 0;
}

/* want_type - describe the type a schema key wants */
static const char *
want_type(const struct conf_key *k)
{
	switch (k->type) {
	case CT_BOOL:		return "a boolean (true or false)";
	case CT_INT:		return "an integer";
	case CT_STRING:		return "a string";
	case CT_ENUM:		return "a string";
	case CT_STRLIST:	return "a list of strings ([ \"a\", \"b\" ])";
	case CT_GROUPLIST:	return "a list of groups (( { ... }, { ... } ))";
	}
	return "?";
}

/* enum_index - index of word in "a|b|c", or -1 */
static int
enum_index(const char *words, const char *w)
{
	int i = 0;
	size_t wl = strlen(w);

	for (const char *p = words; ; i++) {
		const char *bar = strchr(p, '|');
		size_t len = bar ? (size_t)(bar - p) : strlen(p);

		if (len == wl && strncmp(p, w, len) == 0)
			return i;
		if (!bar)
			return -1;
		p = bar + 1;
	}
}

/* dupstr - strdup that records out-of-memory as an error */
static char *
dupstr(struct errs *e, const char *s)
{
	char *p = strdup(s ? s : "");

	if (p == NULL)
		err_add(e, NULL, "memory", "out of memory");
	return p;
}

/* set_scalar - check one scalar setting's type and range, store it */
static void
set_scalar(struct errs *e, const struct conf_key *k, const char *name,
    const config_setting_t *s, void *base)
{
	char *field = (char *)base + k->off;
	int t = config_setting_type(s);

	switch (k->type) {
	case CT_BOOL:
		if (t != CONFIG_TYPE_BOOL) {
			err_add(e, s, name, "wrong type: %s, expected %s",
			    type_name(t), want_type(k));
			return;
		}
		*(int *)field = config_setting_get_bool(s);
		return;
	case CT_INT: {
		long long v;

		if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64) {
			err_add(e, s, name, "wrong type: %s, expected %s",
			    type_name(t), want_type(k));
			return;
		}
		v = config_setting_get_int64(s);
		if (v < k->min || v > k->max) {
			err_add(e, s, name, "value %lld out of range %ld..%ld",
			    v, k->min, k->max);
			return;
		}
		*(int *)field = (int)v;
		return;
	}
	case CT_STRING:
	case CT_ENUM: {
		const char *v;

		if (t != CONFIG_TYPE_STRING) {
			err_add(e, s, name, "wrong type: %s, expected %s",
			    type_name(t), want_type(k));
			return;
		}
		v = config_setting_get_string(s);
		if (k->type == CT_ENUM) {
			int i = enum_index(k->words, v);

			if (i < 0) {
				err_add(e, s, name, "\"%s\" is not one of %s", v, k->words);
				return;
			}
			*(int *)field = i;
		} else {
			free(*(char **)field);
			*(char **)field = dupstr(e, v);
		}
		return;
	}
	default:
		return;
	}
}

/* set_default - store a key's default value (given as text) */
static void
set_default(struct errs *e, const struct conf_key *k, void *base)
{
	char *field = (char *)base + k->off;
	const char *d = k->def;

	switch (k->type) {
	case CT_BOOL:
		*(int *)field = d && strcmp(d, "true") == 0;
		break;
	case CT_INT:
		*(int *)field = d ? atoi(d) : 0;
		break;
	case CT_STRING:
		*(char **)field = dupstr(e, d);
		break;
	case CT_ENUM:
		*(int *)field = d ? enum_index(k->words, d) : 0;
		break;
	case CT_STRLIST: {
		char **list = NULL;
		int n = 0;

		if (d && *d) {
			char *copy = dupstr(e, d), *save = NULL;

			for (char *w = copy ? strtok_r(copy, ",", &save) : NULL; w;
			    w = strtok_r(NULL, ",", &save)) {
				char **nl = realloc(list, sizeof(*list) * (size_t)(n + 1));
				if (nl == NULL)
					break;
				list = nl;
				list[n++] = dupstr(e, w);
			}
			free(copy);
		}
		*(char ***)field = list;
		*(int *)((char *)base + k->count_off) = n;
		break;
	}
	case CT_GROUPLIST:
		*(void **)field = NULL;
		*(int *)((char *)base + k->count_off) = 0;
		break;
	}
}

static void check_group(struct errs *, const struct conf_key *, const config_setting_t *,
    const char *, void *);

/* set_list - check and store a list of strings or a list of groups */
static void
set_list(struct errs *e, const struct conf_key *k, const char *name,
    const config_setting_t *s, void *base)
{
	int t = config_setting_type(s), n = config_setting_length(s);
	int *countp = (int *)((char *)base + k->count_off);

	if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST) {
		err_add(e, s, name, "wrong type: %s, expected %s", type_name(t), want_type(k));
		return;
	}
	if (k->type == CT_STRLIST) {
		char ***listp = (char ***)((char *)base + k->off);
		char **list = calloc((size_t)n + 1, sizeof(*list));
		int bad = 0;

		for (int i = 0; list && i < n; i++) {
			const config_setting_t *el = config_setting_get_elem(s, (unsigned)i);

			if (config_setting_type(el) != CONFIG_TYPE_STRING) {
				err_add(e, el, name, "element %d is %s, expected a string",
				    i + 1, type_name(config_setting_type(el)));
				bad = 1;
				continue;
			}
			list[i] = dupstr(e, config_setting_get_string(el));
		}
		for (int i = 0; i < *countp; i++)
			free((*listp)[i]);
		free(*listp);
		*listp = list;
		*countp = bad ? 0 : n;
		return;
	}
	/* CT_GROUPLIST */
	if (n < k->min || n > k->max) {
		err_add(e, s, name, "%d entries, expected %ld to %ld", n, k->min, k->max);
		return;
	}
	char *arr = calloc((size_t)n + 1, k->elem_size);
	if (arr == NULL) {
		err_add(e, s, name, "out of memory");
		return;
	}
	*(void **)((char *)base + k->off) = arr;
	*countp = n;
	for (int i = 0; i < n; i++) {
		const config_setting_t *el = config_setting_get_elem(s, (unsigned)i);
		char elname[700];

		snprintf(elname, sizeof(elname), "%s[%d]", name, i + 1);
		if (config_setting_type(el) != CONFIG_TYPE_GROUP) {
			err_add(e, el, elname, "is %s, expected a group { ... }",
			    type_name(config_setting_type(el)));
			continue;
		}
		for (const struct conf_key *sk = k->sub; sk->name; sk++)
			set_default(e, sk, arr + (size_t)i * k->elem_size);
		check_group(e, k->sub, el, elname, arr + (size_t)i * k->elem_size);
		for (const struct conf_key *sk = k->sub; sk->name; sk++)
			if (sk->required && config_setting_get_member(el, sk->name) == NULL)
				err_add(e, el, elname, "required setting \"%s\" is missing", sk->name);
	}
}

/*
 * check_group - walk every setting below a group: unknown names, types,
 * ranges; store values into base.  tab holds names relative to prefix.
 */
static void
check_group(struct errs *e, const struct conf_key *tab, const config_setting_t *grp,
    const char *prefix, void *base)
{
	int n = config_setting_length(grp);
	int toplevel = (tab == conf_schema);

	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(grp, (unsigned)i);
		const char *leaf = config_setting_name(s);
		char name[512];
		const struct conf_key *k;

		if (leaf == NULL)
			continue;
		snprintf(name, sizeof(name), "%s%s%s", prefix, *prefix ? "." : "", leaf);
		/* Keys in sub-tables are relative to the element. */
		k = conf_schema_find(tab, toplevel ? name : leaf);
		if (k == NULL) {
			if (config_setting_type(s) == CONFIG_TYPE_GROUP &&
			    is_group_prefix(tab, toplevel ? name : leaf)) {
				check_group(e, tab, s, name, base);
				continue;
			}
			err_add(e, s, name, "unknown setting");
			continue;
		}
		if (k->type == CT_STRLIST || k->type == CT_GROUPLIST)
			set_list(e, k, name, s, base);
		else
			set_scalar(e, k, name, s, base);
	}
}

/* valid_socket - libmilter socket spec: unix:/path, local:/path, inet:port@host, inet6:... */
static int
valid_socket(const char *s)
{
	const char *at;

	if (strncmp(s, "unix:", 5) == 0 || strncmp(s, "local:", 6) == 0)
		return strchr(s, ':')[1] == '/';
	if (s[0] == '/')
		return 1;
	if (strncmp(s, "inet:", 5) == 0 || strncmp(s, "inet6:", 6) == 0) {
		const char *p = strchr(s, ':') + 1;
		char *end;
		long port = strtol(p, &end, 10);

		at = strchr(p, '@');
		return end != p && port > 0 && port < 65536 && (*end == '\0' || end == at);
	}
	return 0;
}

/* valid_cidr - "addr" or "addr/len", IPv4 or IPv6 */
static int
valid_cidr(const char *s)
{
	char buf[INET6_ADDRSTRLEN + 8], *slash;
	unsigned char a[16];
	int maxlen;

	if (strlen(s) >= sizeof(buf))
		return 0;
	strcpy(buf, s);
	if ((slash = strchr(buf, '/')) != NULL)
		*slash++ = '\0';
	if (inet_pton(AF_INET, buf, a) == 1)
		maxlen = 32;
	else if (inet_pton(AF_INET6, buf, a) == 1)
		maxlen = 128;
	else
		return 0;
	if (slash) {
		char *end;
		long l = strtol(slash, &end, 10);

		if (*slash == '\0' || *end != '\0' || l < 0 || l > maxlen)
			return 0;
	}
	return 1;
}

/* setting_of - the libconfig setting of a dotted name, for error lines */
static const config_setting_t *
setting_of(const config_t *cfg, const char *name)
{
	return config_lookup(cfg, name);
}

/* is_unix_socket - a unix:, local: or bare-path socket spec */
static int
is_unix_socket(const char *s)
{
	return strncmp(s, "unix:", 5) == 0 || strncmp(s, "local:", 6) == 0 ||
	    s[0] == '/';
}

/*
 * check_socket_access - who besides the MTA could use the socket
 *	Whoever can connect can have mail decrypted and signed: a unix
 *	socket others can read or write is refused, and a socket group
 *	must exist.  (An inet socket off loopback is only warned about, by
 *	kmilter itself: conf has no warnings.)
 */
static void
check_socket_access(struct errs *e, const config_t *cfg, const struct kmilter_conf *c,
    long mode)
{
	if (c->socket && is_unix_socket(c->socket) && (mode & 006))
		err_add(e, setting_of(cfg, "milter.socket_mode"), "milter.socket_mode",
		    "\"%s\" lets every local user connect and have mail decrypted and "
		    "signed: use \"0660\" and milter.socket_group", c->socket_mode);
	if (*c->socket_group && getgrnam(c->socket_group) == NULL)
		err_add(e, setting_of(cfg, "milter.socket_group"), "milter.socket_group",
		    "no such group \"%s\"", c->socket_group);
}

/*
 * check_hook_path - the hook and every directory above it can be changed
 *	only by root and the milter user (trustpath_check); a missing hook
 *	is allowed here (it fails, and is checked again, when it runs).
 */
static void
check_hook_path(struct errs *e, const config_t *cfg, const struct kmilter_conf *c)
{
	struct passwd *pw;
	uid_t user = geteuid();
	struct kmerr tp;
	const char *why = tp.msg;

	if (*c->hook_path == '\0')
		return;
	if (user == 0 && *c->user && (pw = getpwnam(c->user)) != NULL)
		user = pw->pw_uid;
	if (trustpath_check(c->hook_path, user, &tp) == TRUSTPATH_UNSAFE)
		err_add(e, setting_of(cfg, "hook.path"), "hook.path",
		    "refused: %s (the hook must be writable only by root or %s)", why,
		    *c->user ? c->user : "the milter user");
}

/* check_semantics - rules that tie settings together */
static void
check_semantics(struct errs *e, const config_t *cfg, struct kmilter_conf *c)
{
	const char *problem, *name;
	char *end;

	if (c->socket && !valid_socket(c->socket))
		err_add(e, setting_of(cfg, "milter.socket"), "milter.socket",
		    "\"%s\" is not unix:/path, inet:PORT@HOST or inet6:PORT@HOST", c->socket);
	errno = 0;
	long mode = strtol(c->socket_mode, &end, 8);
	if (*c->socket_mode == '\0' || *end != '\0' || mode < 0 || mode > 0777)
		err_add(e, setting_of(cfg, "milter.socket_mode"), "milter.socket_mode",
		    "\"%s\" is not an octal mode like \"0660\"", c->socket_mode);
	else
		check_socket_access(e, cfg, c, mode);
	check_hook_path(e, cfg, c);
	for (int i = 0; i < c->n_internal_hosts; i++)
		if (!valid_cidr(c->internal_hosts[i]))
			err_add(e, setting_of(cfg, "policy.internal_hosts"),
			    "policy.internal_hosts", "\"%s\" is not an IPv4/IPv6 address or CIDR",
			    c->internal_hosts[i]);
	for (int i = 0; i < c->n_internal_domains; i++)
		if (c->internal_domains[i][0] == '\0' || strchr(c->internal_domains[i], '@'))
			err_add(e, setting_of(cfg, "policy.internal_domains"),
			    "policy.internal_domains", "\"%s\" is not a domain name",
			    c->internal_domains[i]);
	if (*c->sender_login_map != '\0') {
		struct kmerr why;

		if (loginmap_load(c->sender_login_map, &c->sender_logins,
		    &c->n_sender_logins, &why) < 0)
			err_add(e, setting_of(cfg, "policy.sender_login_map"),
			    "policy.sender_login_map", "%s", why.msg);
	}
	if (c->km_nservers == 1)
		err_add(e, setting_of(cfg, "km.servers"), "km.servers",
		    "split keys need two KM servers, one is configured");
	if (c->km_nservers > 0) {
		static const char *need[] = { "km.ca_file", "km.client_cert", "km.client_key" };
		const char *have[] = { c->km_ca_file, c->km_client_cert, c->km_client_key };

		for (size_t i = 0; i < 3; i++)
			if (*have[i] == '\0')
				err_add(e, setting_of(cfg, "km.servers"), need[i],
				    "required when km.servers is set");
	}
	if ((problem = conf_redis_problem(c, &name)) != NULL)
		err_add(e, setting_of(cfg, name), name, "%s", problem);
	if (*c->control_socket == '\0') {
		size_t n = strlen(c->state_dir) + sizeof("/control.sock");
		char *p = malloc(n);

		if (p == NULL) {
			err_add(e, NULL, "milter.control_socket", "out of memory");
			return;
		}
		snprintf(p, n, "%s/control.sock", c->state_dir);
		free(c->control_socket);
		c->control_socket = p;
	}
	if (*c->seal_key_file == '\0') {
		size_t n = strlen(c->state_dir) + sizeof("/gateway.key");
		char *p = malloc(n);

		if (p == NULL) {
			err_add(e, NULL, "cache.seal_key_file", "out of memory");
			return;
		}
		snprintf(p, n, "%s/gateway.key", c->state_dir);
		free(c->seal_key_file);
		c->seal_key_file = p;
	}
	if (c->gateway_name[0] == '\0') {
		char host[256];

		if (gethostname(host, sizeof(host)) != 0)
			strcpy(host, "localhost");
		host[sizeof(host) - 1] = '\0';
		free(c->gateway_name);
		c->gateway_name = dupstr(e, host);
	}
	if (c->in_authserv_id[0] == '\0') {
		free(c->in_authserv_id);
		c->in_authserv_id = dupstr(e, c->gateway_name);
	}
}

/* free_group - free the strings and lists of one element of a list of
 * groups */
static void
free_group(const struct conf_key *tab, char *el)
{
	for (const struct conf_key *sk = tab; sk->name; sk++) {
		if (sk->type == CT_STRING)
			free(*(char **)(el + sk->off));
		else if (sk->type == CT_STRLIST) {
			char **l = *(char ***)(el + sk->off);
			int n = *(int *)(el + sk->count_off);

			for (int i = 0; l && i < n; i++)
				free(l[i]);
			free(l);
		}
	}
}

/* conf_free - free everything a configuration holds */
static void
conf_free(struct kmilter_conf *c)
{
	if (c == NULL)
		return;
	for (const struct conf_key *k = conf_schema; k->name; k++) {
		char *field = (char *)c + k->off;

		if (k->type == CT_STRING)
			free(*(char **)field);
		else if (k->type == CT_STRLIST) {
			int n = *(int *)((char *)c + k->count_off);
			char **l = *(char ***)field;

			for (int i = 0; l && i < n; i++)
				free(l[i]);
			free(l);
		} else if (k->type == CT_GROUPLIST) {
			int n = *(int *)((char *)c + k->count_off);
			char *arr = *(char **)field;

			for (int i = 0; arr && i < n; i++)
				free_group(k->sub, arr + (size_t)i * k->elem_size);
			free(arr);
		}
	}
	loginmap_free(c->sender_logins, c->n_sender_logins);
	free(c->path);
	free(c);
}

/* conf_build - validate a parsed libconfig tree into a kmilter_conf */
static struct kmilter_conf *
conf_build(config_t *cfg, const char *name, char *errbuf, size_t errlen,
    int *nerrors)
{
	struct errs e = { errbuf, errlen, 0, 0, name, 0 };
	struct kmilter_conf *c = calloc(1, sizeof(*c));

	if (errlen)
		errbuf[0] = '\0';
	if (c == NULL) {
		snprintf(errbuf, errlen, "%s: out of memory", name);
		return NULL;
	}
	c->refcnt = 1;
	c->path = dupstr(&e, name);
	for (const struct conf_key *k = conf_schema; k->name; k++)
		set_default(&e, k, c);
	check_group(&e, conf_schema, config_root_setting(cfg), "", c);
	for (const struct conf_key *k = conf_schema; k->name; k++)
		if (k->required && config_lookup(cfg, k->name) == NULL)
			err_add(&e, NULL, k->name, "required setting is missing");
	e.schema_used = e.used;
	check_semantics(&e, cfg, c);	/* every problem in one pass */
	if (nerrors != NULL) {		/* conf_load_all: the errors and the rest */
		*nerrors = e.count;
		return c;
	}
	if (e.count > 0) {
		conf_free(c);
		return NULL;
	}
	return c;
}

/* load_file - read and validate path; nerrors as conf_build */
static struct kmilter_conf *
load_file(const char *path, char *errbuf, size_t errlen, int *nerrors)
{
	config_t cfg;
	struct kmilter_conf *c;

	config_init(&cfg);
	if (config_read_file(&cfg, path) != CONFIG_TRUE) {
		if (config_error_type(&cfg) == CONFIG_ERR_FILE_IO)
			snprintf(errbuf, errlen, "%s: cannot read: %s", path, strerror(errno));
		else
			snprintf(errbuf, errlen, "%s:%d: syntax error: %s",
			    config_error_file(&cfg) ? config_error_file(&cfg) : path,
			    config_error_line(&cfg), config_error_text(&cfg));
		config_destroy(&cfg);
		return NULL;
	}
	c = conf_build(&cfg, path, errbuf, errlen, nerrors);
	config_destroy(&cfg);
	return c;
}

/* conf_load - read, validate and return the configuration in path */
struct kmilter_conf *
conf_load(const char *path, char *errbuf, size_t errlen)
{
	return load_file(path, errbuf, errlen, NULL);
}

/* conf_load_all - the same, also with errors: kmilter -n checks the rest */
struct kmilter_conf *
conf_load_all(const char *path, char *errbuf, size_t errlen, int *nerrors)
{
	return load_file(path, errbuf, errlen, nerrors);
}

/* conf_load_string - the same from a string (tests, fuzzing); name is used in errors */
struct kmilter_conf *
conf_load_string(const char *text, const char *name, char *errbuf, size_t errlen)
{
	config_t cfg;
	struct kmilter_conf *c;

	config_init(&cfg);
	if (config_read_string(&cfg, text) != CONFIG_TRUE) {
		snprintf(errbuf, errlen, "%s:%d: syntax error: %s", name,
		    config_error_line(&cfg), config_error_text(&cfg));
		config_destroy(&cfg);
		return NULL;
	}
	c = conf_build(&cfg, name, errbuf, errlen, NULL);
	config_destroy(&cfg);
	return c;
}

/* field_differs - one setting (of a key table) in a and b, at base a and b */
static int
field_differs(const struct conf_key *k, const char *a, const char *b)
{
	const char *fa = a + k->off, *fb = b + k->off;
	int na, nb;

	switch (k->type) {
	case CT_BOOL:
	case CT_INT:
	case CT_ENUM:
		return *(const int *)fa != *(const int *)fb;
	case CT_STRING:
		return strcmp(*(char *const *)fa ? *(char *const *)fa : "",
		    *(char *const *)fb ? *(char *const *)fb : "") != 0;
	case CT_STRLIST:
		if ((na = *(const int *)(a + k->count_off)) !=
		    (nb = *(const int *)(b + k->count_off)))
			return 1;
		for (int i = 0; i < na; i++)
			if (strcmp((*(char **const *)fa)[i], (*(char **const *)fb)[i]) != 0)
				return 1;
		return 0;
	case CT_GROUPLIST:
		if ((na = *(const int *)(a + k->count_off)) !=
		    (nb = *(const int *)(b + k->count_off)))
			return 1;
		for (int i = 0; i < na; i++)
			for (const struct conf_key *sk = k->sub; sk->name; sk++)
				if (field_differs(sk, *(char *const *)fa + (size_t)i * k->elem_size,
				    *(char *const *)fb + (size_t)i * k->elem_size))
					return 1;
		return 0;
	}
	return 1;
}

/* conf_differs - does a setting named by one of names (a group "km." or a
 * whole name) differ between a and b?  Writes the first such name to
 * which (may be NULL). */
int
conf_differs(const struct kmilter_conf *a, const struct kmilter_conf *b,
    const char *const *names, const char **which)
{
	for (const struct conf_key *k = conf_schema; k->name; k++)
		for (const char *const *n = names; *n; n++) {
			size_t len = strlen(*n);

			if (strncmp(k->name, *n, len) != 0 ||
			    ((*n)[len - 1] != '.' && k->name[len] != '\0'))
				continue;
			if (field_differs(k, (const char *)a, (const char *)b)) {
				if (which != NULL)
					*which = k->name;
				return 1;
			}
		}
	return 0;
}

/* conf_ref - take a reference */
struct kmilter_conf *
conf_ref(struct kmilter_conf *c)
{
	if (c)
		__atomic_add_fetch(&c->refcnt, 1, __ATOMIC_SEQ_CST);
	return c;
}

/* conf_unref - drop a reference; frees at zero; returns NULL */
struct kmilter_conf *
conf_unref(struct kmilter_conf *c)
{
	if (c && __atomic_sub_fetch(&c->refcnt, 1, __ATOMIC_SEQ_CST) == 0)
		conf_free(c);
	return NULL;
}
