/*
 * check.c - the files and directories of a configuration, checked as the
 * milter user (see check.h).
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <dirent.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libconfig.h>

#include "check.h"
#include "keystore.h"
#include "log.h"
#include "tls.h"

/* One pass of checks: where the lines go and the parsed file for line numbers. */
struct ck {
	config_t	 cfg;
	int		 have_cfg;
	const char	*file;
	const char	*user;		/* who the files are checked for */
	int		 fd;		/* the child's pipe, or -1: report() */
	check_report_fn	 report;
	void		*arg;
	int		 count;
};

/* problem - one "FILE:LINE: SETTING: what" line */
static void __attribute__((format(printf, 4, 5)))
problem(struct ck *k, int key, const char *setting, const char *fmt, ...)
{
	const config_setting_t *s = k->have_cfg ? config_lookup(&k->cfg, setting) : NULL;
	char msg[768], line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (s != NULL && config_setting_source_line(s) > 0)
		snprintf(line, sizeof(line), "%s:%d: %s: %s", k->file,
		    config_setting_source_line(s), setting, msg);
	else
		snprintf(line, sizeof(line), "%s: %s: %s", k->file, setting, msg);
	k->count++;
	if (k->fd < 0) {
		k->report(k->arg, key, line);
		return;
	}
	n = dprintf(k->fd, "%c%s\n", key ? 'K' : '-', line);
	(void)n;
}

/* dir_of - the directory part of path into buf ("." for a bare name) */
static const char *
dir_of(const char *path, char *buf, size_t len)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		snprintf(buf, len, ".");
	else if (slash == path)
		snprintf(buf, len, "/");
	else
		snprintf(buf, len, "%.*s", (int)(slash - path), path);
	return buf;
}

/* check_socket_path - the file of a unix socket spec, or NULL */
const char *
check_socket_path(const char *spec)
{
	if (strncmp(spec, "unix:", 5) == 0)
		return spec + 5;
	if (strncmp(spec, "local:", 6) == 0)
		return spec + 6;
	return spec[0] == '/' ? spec : NULL;
}

/* need_dir - a directory kmilter (as root) puts a file in must exist */
static void
need_dir(struct ck *k, const char *setting, const char *path, const char *what)
{
	char dir[PATH_MAX];
	struct stat st;

	dir_of(path, dir, sizeof(dir));
	if (stat(dir, &st) != 0)
		problem(k, 0, setting, "directory %s of the %s %s: %s (create it, "
		    "owned by %s)", dir, what, path, strerror(errno), k->user);
	else if (!S_ISDIR(st.st_mode))
		problem(k, 0, setting, "%s (of the %s %s) is not a directory", dir,
		    what, path);
}

/* creatable_dir - a directory kmilter creates at start: it, or its parent, exists */
static void
creatable_dir(struct ck *k, const char *setting, const char *dir)
{
	struct stat st;

	if (*dir == '\0')
		return;
	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			problem(k, 0, setting, "%s is not a directory", dir);
		return;
	}
	if (errno != ENOENT)
		problem(k, 0, setting, "%s: %s", dir, strerror(errno));
	else
		need_dir(k, setting, dir, "directory");
}

/* root_checks - what kmilter does as root: the user, bind, pid file, mkdir */
static void
root_checks(struct ck *k, const struct kmilter_conf *c)
{
	const char *sock = check_socket_path(c->socket);
	struct stat st;

	if (geteuid() == 0 && *c->user && getpwnam(c->user) == NULL)
		problem(k, 0, "milter.user", "no such user \"%s\" (create it: "
		    "useradd --system %s)", c->user, c->user);
	if (sock != NULL)
		need_dir(k, "milter.socket", sock, "milter socket");
	if (*c->pidfile)
		need_dir(k, "milter.pidfile", c->pidfile, "pid file");
	creatable_dir(k, "milter.state_dir", c->state_dir);
	creatable_dir(k, "milter.spool_dir", c->spool_dir);
	if (*c->org_ca_key && stat(c->org_ca_key, &st) != 0)
		problem(k, 0, "km.org_ca_key", "%s: %s", c->org_ca_key,
		    strerror(errno));
}

/* readable - a file the milter user must be able to read */
static void
readable(struct ck *k, int key, const char *setting, const char *path)
{
	int fd;

	if (*path == '\0')
		return;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0) {
		problem(k, key, setting, "%s: cannot be read by %s: %s", path,
		    k->user, strerror(errno));
		return;
	}
	close(fd);
}

/* writable_dir - a directory the milter user creates files in */
static void
writable_dir(struct ck *k, const char *setting, const char *dir, int may_be_missing)
{
	struct stat st;

	if (*dir == '\0')
		return;
	if (stat(dir, &st) != 0) {
		if (errno != ENOENT || !may_be_missing)
			problem(k, 0, setting, "%s: %s", dir, strerror(errno));
		return;
	}
	if (S_ISDIR(st.st_mode) && access(dir, W_OK | X_OK) != 0)
		problem(k, 0, setting, "%s: not writable by %s: %s (chown %s %s)",
		    dir, k->user, strerror(errno), k->user, dir);
}

/* private - a key file or directory: owned by the milter user (or root), nothing for others */
static void
private(struct ck *k, const char *setting, const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return;			/* readable() says why */
	if (st.st_uid != geteuid() && st.st_uid != 0)
		problem(k, 0, setting, "%s: owned by uid %u, not by %s (chown %s %s)",
		    path, (unsigned)st.st_uid, k->user, k->user, path);
	if (st.st_mode & S_IRWXO)
		problem(k, 0, setting, "%s: open to others (mode %04o; chmod o-rwx %s)",
		    path, (unsigned)(st.st_mode & 07777), path);
}

/* seal_and_signing - the seal key and the signing keys kept with it */
static void
seal_and_signing(struct ck *k, const struct kmilter_conf *c)
{
	const char *setting = "cache.seal_key_file";
	char dir[PATH_MAX], f[PATH_MAX + NAME_MAX + 2];
	struct dirent *de;
	struct stat st;
	DIR *d;

	if (k->have_cfg && config_lookup(&k->cfg, setting) == NULL)
		setting = "milter.state_dir";
	if (stat(c->seal_key_file, &st) == 0) {
		readable(k, 1, setting, c->seal_key_file);
		private(k, setting, c->seal_key_file);
	}
	else if (errno != ENOENT)
		problem(k, 1, setting, "%s: cannot be read by %s: %s",
		    c->seal_key_file, k->user, strerror(errno));
	else if (*c->redis_host || *c->redis_socket || c->redis_nsentinels > 0)
		problem(k, 1, setting, "%s: no seal key, which the Redis cache "
		    "needs (make it with kmctl keygen)", c->seal_key_file);
	if (*c->state_dir == '\0')
		return;
	snprintf(dir, sizeof(dir), "%s/signing", c->state_dir);
	if ((d = opendir(dir)) == NULL) {
		if (errno != ENOENT)
			problem(k, 1, "milter.state_dir", "signing keys %s: cannot "
			    "be read by %s: %s", dir, k->user, strerror(errno));
		return;
	}
	private(k, "milter.state_dir", dir);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(f, sizeof(f), "%s/%s", dir, de->d_name);
		readable(k, 1, "milter.state_dir", f);
		private(k, "milter.state_dir", f);
	}
	closedir(d);
}

/* hook_check - the hook exists, is a file the milter user can run (who
 * may write it along its path is conf.c's check: trustpath) */
static void
hook_check(struct ck *k, const char *path)
{
	struct stat st;

	if (*path == '\0')
		return;
	if (stat(path, &st) != 0)
		problem(k, 0, "hook.path", "%s: %s", path, strerror(errno));
	else if (!S_ISREG(st.st_mode))
		problem(k, 0, "hook.path", "%s is not a regular file", path);
	else if (access(path, X_OK) != 0)
		problem(k, 0, "hook.path", "%s: cannot be run by %s: %s", path,
		    k->user, strerror(errno));
}

/* user_checks - what the milter user opens after the privilege drop */
static void
user_checks(struct ck *k, const struct kmilter_conf *c)
{
	char dir[PATH_MAX];
	int state_default;

	writable_dir(k, "milter.state_dir", c->state_dir, 1);
	writable_dir(k, "milter.spool_dir", c->spool_dir, 1);
	dir_of(c->control_socket, dir, sizeof(dir));
	state_default = strcmp(dir, c->state_dir) == 0;
	writable_dir(k, "milter.control_socket", dir, state_default);
	readable(k, 1, "km.ca_file", c->km_ca_file);
	readable(k, 1, "km.client_cert", c->km_client_cert);
	readable(k, 1, "km.client_key", c->km_client_key);
	readable(k, 1, "cache.redis.password_file", c->redis_password_file);
	readable(k, 0, "km.org_ca_cert", c->org_ca_cert);
	readable(k, 0, "policy.inbound.ca_file", c->in_ca_file);
	seal_and_signing(k, c);
	hook_check(k, c->hook_path);
}

/* drop_to - become pw as kmilter does: primary group only */
static int
drop_to(const struct passwd *pw)
{
	return setgroups(1, &pw->pw_gid) == 0 &&
	    setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) == 0 &&
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) == 0 ? 0 : -1;
}

/* relay - the child's lines to report(); its exit status checked */
static void
relay(struct ck *k, int rfd, pid_t pid)
{
	FILE *fp = fdopen(rfd, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int status;

	while (fp != NULL && (n = getline(&line, &cap, fp)) > 0) {
		if (line[n - 1] == '\n')
			line[n - 1] = '\0';
		k->count++;
		k->report(k->arg, line[0] == 'K', line + 1);
	}
	free(line);
	if (fp != NULL)
		fclose(fp);
	else
		close(rfd);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		problem(k, 1, "milter.user", "the check as %s did not finish", k->user);
}

/* as_user - user_checks in a child that runs as pw */
static void
as_user(struct ck *k, const struct kmilter_conf *c, const struct passwd *pw)
{
	int p[2];
	pid_t pid;

	fflush(NULL);
	if (pipe2(p, O_CLOEXEC) != 0 || (pid = fork()) < 0) {
		problem(k, 1, "milter.user", "cannot check as %s: %s", k->user,
		    strerror(errno));
		return;
	}
	if (pid == 0) {
		close(p[0]);
		k->fd = p[1];
		if (drop_to(pw) != 0) {
			problem(k, 1, "milter.user", "cannot become %s: %s", k->user,
			    strerror(errno));
			_exit(1);
		}
		user_checks(k, c);
		_exit(0);
	}
	close(p[1]);
	relay(k, p[0], pid);
}

/* ck_open - a pass of checks of c reporting to report(arg); config_destroy(&k->cfg) after */
static void
ck_open(struct ck *k, const struct kmilter_conf *c, check_report_fn report, void *arg)
{
	memset(k, 0, sizeof(*k));
	k->file = c->path ? c->path : "kmilter.conf";
	k->fd = -1;
	k->report = report;
	k->arg = arg;
	config_init(&k->cfg);
	k->have_cfg = c->path && config_read_file(&k->cfg, c->path) == CONFIG_TRUE;
}

/* km_reachable - each KM server answers a TLS handshake with our CA and client certificate */
static void
km_reachable(struct ck *k, const struct kmilter_conf *c)
{
	struct tls_conn *t;
	struct kmerr err;
	SSL_CTX *ctx;

	if (c->km_nservers == 0)
		return;
	if ((ctx = tls_ctx_new(c->km_ca_file, c->km_client_cert, c->km_client_key,
	    &err)) == NULL) {
		problem(k, 0, "km.servers", "not checked: no TLS client: %s", err.msg);
		return;
	}
	for (int i = 0; i < c->km_nservers; i++) {
		const struct conf_km_server *s = &c->km_servers[i];

		t = NULL;
		if (tls_connect(ctx, s->host, s->port, c->km_connect_timeout_ms,
		    c->km_io_timeout_ms, &t, &err) != KM_OK)
			problem(k, 0, "km.servers", "server %s (%s port %d): %s",
			    s->name, s->host, s->port, err.msg);
		tls_conn_free(t);
	}
	tls_ctx_free(ctx);
}

/* redis_reachable - Redis answers PING after AUTH and SELECT */
static void
redis_reachable(struct ck *k, const struct kmilter_conf *c)
{
	struct kmerr err;
	char where[300];

	if (*c->redis_socket)
		snprintf(where, sizeof(where), "%s", c->redis_socket);
	else if (*c->redis_host)
		snprintf(where, sizeof(where), "%s port %d", c->redis_host, c->redis_port);
	else if (c->redis_nsentinels > 0)
		snprintf(where, sizeof(where), "master %s (Sentinels)",
		    c->redis_sentinel_master);
	else
		return;
	if (keystore_check_redis(c, &err) != 0)
		problem(k, 0, *c->redis_socket ? "cache.redis.socket" :
		    c->redis_nsentinels > 0 ? "cache.redis.sentinels" : "cache.redis.host",
		    "%s: %s", where, err.msg);
}

/* check_network - the KM servers and Redis answer (kmilter -n without -N) */
int
check_network(const struct kmilter_conf *c, check_report_fn report, void *arg)
{
	struct ck k;

	ck_open(&k, c, report, arg);
	km_reachable(&k, c);
	redis_reachable(&k, c);
	config_destroy(&k.cfg);
	return k.count;
}

/* check_files - every file and directory of c, for the user kmilter runs as */
int
check_files(const struct kmilter_conf *c, check_report_fn report, void *arg)
{
	struct ck k;
	struct passwd *pw = NULL;

	ck_open(&k, c, report, arg);
	if (geteuid() == 0 && *c->user)
		pw = getpwnam(c->user);
	k.user = pw ? c->user : geteuid() == 0 ? "root" : "this user";
	root_checks(&k, c);
	if (pw != NULL)
		as_user(&k, c, pw);
	else
		user_checks(&k, c);
	config_destroy(&k.cfg);
	return k.count;
}

/* all_loopback - every address host stands for is a loopback address */
static int
all_loopback(const char *host, int family)
{
	struct addrinfo hints, *res, *ai;
	int ok = 1;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = family;
	hints.ai_socktype = SOCK_STREAM;
	if (*host == '\0' || getaddrinfo(host, NULL, &hints, &res) != 0)
		return 0;
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		const struct sockaddr_in *a4 = (const void *)ai->ai_addr;
		const struct sockaddr_in6 *a6 = (const void *)ai->ai_addr;

		if (ai->ai_family == AF_INET)
			ok &= (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
		else if (ai->ai_family == AF_INET6)
			ok &= IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr) ||
			    (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr) &&
			    a6->sin6_addr.s6_addr[12] == 127);
		else
			ok = 0;
	}
	freeaddrinfo(res);
	return ok;
}

/*
 * check_public_socket - warn loudly, when an inet socket is not on loopback
 *	Whoever reaches the socket can have mail decrypted and signed.
 *	"inet:PORT" without a host means every address.
 */
void
check_public_socket(const struct kmilter_conf *c)
{
	char host[256];
	const char *at;
	int family;
	size_t n;

	if (strncmp(c->socket, "inet:", 5) == 0)
		family = AF_INET;
	else if (strncmp(c->socket, "inet6:", 6) == 0)
		family = AF_INET6;
	else
		return;
	at = strchr(c->socket, '@');
	snprintf(host, sizeof(host), "%s", at ? at + 1 : "");
	if (host[0] == '[' && (n = strlen(host)) > 1 && host[n - 1] == ']') {
		memmove(host, host + 1, n - 2);
		host[n - 2] = '\0';
	}
	if (all_loopback(host, family))
		return;
	log_warnx("WARNING: milter.socket %s is not bound to a loopback address: "
	    "anyone who can reach it can have mail decrypted and signed; use a "
	    "unix socket or a loopback address, or firewall the port", c->socket);
}
