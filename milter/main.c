/*
 * main.c - kmilter: arguments, configuration, logging, privileges,
 * signals, and libmilter's main loop.
 */
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <libconfig.h>
#include <libmilter/mfapi.h>
#include <openssl/crypto.h>

#include "callbacks.h"
#include "check.h"
#include "conf.h"
#include "control.h"
#include "keystore.h"
#include "log.h"
#include "runtime.h"
#include "stats.h"

#ifndef KMILTER_CONF
#define KMILTER_CONF "/etc/kmilter/kmilter.conf"
#endif

static int	signal_pipe[2] = { -1, -1 };
static int	milter_status;
static int	log_to_stderr_now;

/* What this process created, removed at the stop (settings a reload may change). */
static struct {
	char	 socket[PATH_MAX];	/* the unix socket bound, "" if none */
	dev_t	 dev;			/* and its inode: remove only that one */
	ino_t	 ino;
	char	 pidfile[PATH_MAX];
} made;

/* usage - print the synopsis and exit */
static noreturn void
usage(void)
{
	fprintf(stderr,
	    "usage: kmilter [-dfnNvV] [-c config]\n"
	    "  -c FILE  configuration file (default " KMILTER_CONF ")\n"
	    "  -d       log to stderr instead of syslog\n"
	    "  -f       stay in the foreground\n"
	    "  -n       check the configuration and exit\n"
	    "  -N       with -n: do not check that the KM servers and Redis answer\n"
	    "  -v       more verbose logging (repeat for more)\n"
	    "  -V       print the versions of kmilter and its libraries and exit\n");
	exit(2);
}

/* print_versions - kmilter -V */
static void
print_versions(void)
{
	unsigned int maj = 0, min = 0, pl = 0;

	smfi_version(&maj, &min, &pl);
	printf("kmilter %s\n", KMILTER_VERSION);
	printf("libmilter %u.%u.%u\n", maj, min, pl);
	printf("%s\n", OpenSSL_version(OPENSSL_VERSION));
	printf("hiredis %d.%d.%d\n", HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
	printf("libconfig %d.%d.%d\n", LIBCONFIG_VER_MAJOR, LIBCONFIG_VER_MINOR,
	    LIBCONFIG_VER_REVISION);
}

/* print_errors - configuration errors, one per line, to stderr */
static void
print_errors(const char *errs)
{
	fprintf(stderr, "%s\n", errs);
}

/*
 * ensure_dir - create a private directory owned by the run user if missing
 *	The new directory is opened O_NOFOLLOW and changed with fchown, so
 *	a link swapped in after mkdir cannot redirect root's chown.
 */
static void
ensure_dir(const char *dir, const struct passwd *pw)
{
	struct stat st;
	int fd;

	if (*dir == '\0')
		return;
	if (stat(dir, &st) != 0) {
		if (mkdir(dir, 0700) != 0)
			fatal("cannot create %s", dir);
		if (pw == NULL)
			return;
		if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
		    fchown(fd, pw->pw_uid, pw->pw_gid) != 0)
			fatal("cannot chown %s to %s", dir, pw->pw_name);
		close(fd);
	} else if (!S_ISDIR(st.st_mode))
		fatalx("%s is not a directory", dir);
}

/* drop_privileges - setgroups, setresgid, setresuid to the run user, each checked */
static void
drop_privileges(const struct passwd *pw)
{
	uid_t r, e, s;

	if (setgroups(1, &pw->pw_gid) != 0)
		fatal("setgroups");
	if (setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) != 0)
		fatal("setresgid %u", (unsigned)pw->pw_gid);
	if (setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) != 0)
		fatal("setresuid %u", (unsigned)pw->pw_uid);
	if (getresuid(&r, &e, &s) != 0 || r != pw->pw_uid || e != pw->pw_uid || s != pw->pw_uid)
		fatalx("privileges were not dropped to %s", pw->pw_name);
}

/* report_check - kmilter -n: each problem on its own line */
static void
report_check(void *arg, int key, const char *line)
{
	(void)arg;
	(void)key;
	fprintf(stderr, "%s\n", line);
}

/* check_mode - kmilter -n: the settings' errors, the files' problems and
 * (unless no_network) the servers that do not answer, in one pass */
static int
check_mode(const char *path, int no_network)
{
	char err[8192];
	struct kmilter_conf *conf;
	int n = 0;

	if ((conf = conf_load_all(path, err, sizeof(err), &n)) == NULL) {
		print_errors(err);
		return 1;
	}
	if (n > 0)
		print_errors(err);
	check_public_socket(conf);
	n += check_files(conf, report_check, NULL);
	if (!no_network) {
		signal(SIGPIPE, SIG_IGN);
		n += check_network(conf, report_check, NULL);
	}
	conf_unref(conf);
	if (n > 0) {
		fprintf(stderr, "kmilter: %s: %d problem%s\n", path, n, n == 1 ? "" : "s");
		return 1;
	}
	printf("kmilter: %s: configuration OK\n", path);
	return 0;
}

/* report_start - a problem found at start-up: stderr and the log */
static void
report_start(void *arg, int key, const char *line)
{
	int *keys = arg;

	if (key)
		(*keys)++;
	if (!log_to_stderr_now)
		fprintf(stderr, "kmilter: %s\n", line);
	log_warnx("%s", line);
}

/*
 * check_keys - refuse to start when the milter user cannot read its keys
 *	(the KM client key, the seal key, the signing keys...): kmilter
 *	would run and send mail unsigned.  Other problems are warnings.
 */
static void
check_keys(const struct kmilter_conf *conf)
{
	int keys = 0;

	check_files(conf, report_start, &keys);
	if (keys > 0)
		fatalx("refusing to start: %d key file%s cannot be used by %s "
		    "(kmilter -n -c %s lists every problem)", keys, keys == 1 ? "" : "s",
		    *conf->user ? conf->user : "this user", conf->path);
}

/* socket_gid - the group a unix socket gets: milter.socket_group or the user's */
static gid_t
socket_gid(const struct kmilter_conf *c, const struct passwd *pw)
{
	struct group *gr;

	if (*c->socket_group == '\0')
		return pw != NULL ? pw->pw_gid : (gid_t)-1;
	if ((gr = getgrnam(c->socket_group)) == NULL)
		fatalx("milter.socket_group: no such group \"%s\"", c->socket_group);
	return gr->gr_gid;
}

/*
 * open_socket - bind the milter socket (as root, before the drop)
 *	The mode comes from the umask at bind time; owner and group are set
 *	with lchown after checking that the path is still a socket with that
 *	mode: never chmod/chown by a path that a link (in a directory the
 *	milter user may write) could send elsewhere.
 */
static void
open_socket(const struct kmilter_conf *c, const struct passwd *pw)
{
	static char spec[1024];
	const char *path = check_socket_path(c->socket);
	mode_t mode = (mode_t)strtol(c->socket_mode, NULL, 8) & 0777;
	gid_t gid = path != NULL ? socket_gid(c, pw) : (gid_t)-1;
	struct stat st;
	mode_t old;

	snprintf(spec, sizeof(spec), "%s", c->socket);
	if (smfi_setconn(spec) != MI_SUCCESS)
		fatalx("cannot use socket %s", c->socket);
	old = umask(0777 & ~mode);
	if (smfi_opensocket(1) != MI_SUCCESS)
		fatalx("cannot open milter socket %s (in use, or no permission?)", c->socket);
	umask(old);
	if (path == NULL)
		return;
	if (lstat(path, &st) != 0)
		fatal("milter socket %s", path);
	if (!S_ISSOCK(st.st_mode) || (st.st_mode & 0777) != mode)
		fatalx("milter socket %s is not the socket just bound with mode %04o",
		    path, (unsigned)mode);
	snprintf(made.socket, sizeof(made.socket), "%s", path);
	made.dev = st.st_dev;
	made.ino = st.st_ino;
	if ((pw != NULL || gid != (gid_t)-1) &&
	    lchown(path, pw ? pw->pw_uid : (uid_t)-1, gid) != 0)
		fatal("chown %s to %s:%s", path, pw ? pw->pw_name : "-",
		    *c->socket_group ? c->socket_group : "-");
}

/*
 * daemonize - detach from the terminal before any thread is started (a
 * fork keeps only the calling thread).  The first process waits until the
 * daemon says it is ready (daemon_ready) and exits 0, or exits 1 when the
 * daemon dies first, so a start that fails still fails for the caller.
 * Returns the descriptor daemon_ready writes to.
 */
static int
daemonize(int keep_stderr)
{
	int ready[2], fd;
	char c;
	pid_t pid;

	if (pipe2(ready, O_CLOEXEC) != 0)
		fatal("pipe");
	if ((pid = fork()) < 0)
		fatal("fork");
	if (pid > 0) {
		close(ready[1]);
		_exit(read(ready[0], &c, 1) == 1 ? 0 : 1);
	}
	close(ready[0]);
	if (setsid() < 0)
		fatal("setsid");
	if ((pid = fork()) < 0)
		fatal("fork");
	if (pid > 0)
		_exit(0);
	if (chdir("/") != 0)
		fatal("chdir /");
	if ((fd = open("/dev/null", O_RDWR)) >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		if (!keep_stderr)
			dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	return ready[1];
}

/* daemon_ready - tell the waiting parent that start-up succeeded */
static void
daemon_ready(int fd)
{
	if (fd < 0)
		return;
	if (write(fd, "1", 1) != 1)
		log_warn("daemon: telling the parent it started");
	close(fd);
}

/*
 * pidfile_dir - open the pid file's directory
 *	*root_only says whether only root can write in it (owned by root,
 *	no group or other write): only then is the pid file written as root.
 */
static int
pidfile_dir(const char *path, int *root_only)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	struct stat st;
	int fd;

	if (slash != NULL && slash[1] == '\0')
		fatalx("milter.pidfile %s is not a file name", path);
	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else if ((size_t)(slash - path) >= sizeof(dir))
		fatalx("milter.pidfile %s: name too long", path);
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    fstat(fd, &st) != 0)
		fatal("milter.pidfile %s: directory %s", path, dir);
	*root_only = st.st_uid == 0 && (st.st_mode & (S_IWGRP | S_IWOTH)) == 0;
	return fd;
}

/*
 * pidfile_write - record our pid: a new temp file, then rename
 *	In the directory dirfd: PIDFILE.tmp is removed if there (a planted
 *	link is removed, not followed), created O_EXCL|O_NOFOLLOW, written
 *	and renamed over the pid file (rename replaces a link, it does not
 *	follow it).  A reader never sees the file empty.
 */
static void
pidfile_write(int dirfd, const char *path)
{
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	char tmp[NAME_MAX + 1], line[32];
	int fd, n;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", base) >= (int)sizeof(tmp))
		fatalx("milter.pidfile %s: name too long", path);
	if (unlinkat(dirfd, tmp, 0) != 0 && errno != ENOENT)
		fatal("cannot remove the stale %s.tmp", path);
	if ((fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0644)) < 0)
		fatal("cannot create %s.tmp", path);
	n = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
	if (write(fd, line, (size_t)n) != n) {
		close(fd);
		unlinkat(dirfd, tmp, 0);
		fatal("cannot write pidfile %s", path);
	}
	if (close(fd) != 0 || renameat(dirfd, tmp, dirfd, base) != 0) {
		unlinkat(dirfd, tmp, 0);
		fatal("cannot write pidfile %s", path);
	}
}

/* on_signal - tell the main thread: HUP a reload, TERM and INT a stop (async-signal-safe) */
static void
on_signal(int sig)
{
	int saved = errno;
	char c = sig == SIGHUP ? 'H' : 'T';

	if (write(signal_pipe[1], &c, 1) < 0) {
		/* The pipe is full: the main thread has enough to do. */
	}
	errno = saved;
}

/* milter_thread - run libmilter's loop; tell the main thread when it ends */
static void *
milter_thread(void *arg)
{
	char c = 'S';

	(void)arg;
	milter_status = smfi_main();
	if (write(signal_pipe[1], &c, 1) < 0)
		log_warn("milter: cannot notify the main thread");
	return NULL;
}

/*
 * warn_restart_needed - one line per changed setting a reload cannot
 * apply: the socket and the pid file are made, the privileges dropped,
 * the control socket bound, libmilter's timeout and the log opened once,
 * at start.
 */
static void
warn_restart_needed(const struct kmilter_conf *old, const struct kmilter_conf *new)
{
	static const char *const at_start[] = { "milter.socket", "milter.socket_mode",
	    "milter.socket_group", "milter.user", "milter.pidfile",
	    "milter.control_socket", "milter.timeout", "log.facility", "log.stderr" };
	const char *one[2] = { NULL, NULL };

	for (size_t i = 0; i < sizeof(at_start) / sizeof(at_start[0]); i++) {
		one[0] = at_start[i];
		if (conf_differs(old, new, one, NULL))
			log_warnx("reload: %s changed: needs a restart", at_start[i]);
	}
}

/*
 * reload - load the configuration again; a bad file keeps the running one
 *	km, cache and hook changed: a new key store beside the old one;
 *	revocation changed: a new revocation checker.  The messages in
 *	progress keep the ones they pinned until they are done with them.
 *	Unchanged, the running ones keep their caches and connections.
 */
static void
reload(const char *path)
{
	char err[4096];
	static const char *const keystore_settings[] = { "km.", "cache.", "hook.",
	    "directory.", "milter.state_dir", "milter.gateway_name", NULL };
	static const char *const revcheck_settings[] = { "revocation.", NULL };
	struct kmerr kerr;
	struct kmilter_conf *new = conf_load(path, err, sizeof(err)), *old;
	const char *ks_changed = NULL, *rc_changed = NULL;

	if (new == NULL) {
		char *save = NULL;

		for (char *line = strtok_r(err, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
			log_warnx("reload: %s", line);
		log_warnx("reload: %s has errors: keeping the running configuration", path);
		return;
	}
	if (runtime_reload_trust(new, &kerr) != 0) {
		log_warnx("reload: %s: keeping the running configuration", kerr.msg);
		conf_unref(new);
		return;
	}
	old = callbacks_conf();
	conf_differs(old, new, keystore_settings, &ks_changed);
	conf_differs(old, new, revcheck_settings, &rc_changed);
	if ((ks_changed || rc_changed) &&
	    runtime_reload(new, ks_changed != NULL, rc_changed != NULL, &kerr) != 0) {
		log_warnx("reload: %s: %s: keeping the running configuration, key "
		    "store and revocation checker", ks_changed ? "key store (km, cache, "
		    "hook)" : "revocation checker", kerr.msg);
		conf_unref(old);
		conf_unref(new);
		return;
	}
	if (ks_changed)
		log_info("reload: %s changed: new key store", ks_changed);
	if (rc_changed)
		log_info("reload: %s changed: new revocation checker", rc_changed);
	warn_restart_needed(old, new);
	conf_unref(old);
	log_set_verbose(new->log_verbose);
	callbacks_set_conf(new);
	log_info("reloaded configuration from %s", path);
}

/* wait_for_sessions - give in-flight connections time to finish */
static void
wait_for_sessions(int seconds)
{
	for (int i = 0; i < seconds * 10 && callbacks_active() > 0; i++)
		usleep(100000);
	if (callbacks_active() > 0)
		log_warnx("stopping with %d connections still open: the MTA tempfails "
		    "their messages", callbacks_active());
}

/* The command line. */
struct options {
	const char	*path;
	int		 check;
	int		 no_network;
	int		 foreground;
	int		 to_stderr;
	int		 verbose;
};

/* parse_args - the command line into o (-V prints versions and exits) */
static void
parse_args(int argc, char **argv, struct options *o)
{
	int ch;

	o->path = KMILTER_CONF;
	while ((ch = getopt(argc, argv, "c:dfnNvVh")) != -1) {
		switch (ch) {
		case 'c': o->path = optarg; break;
		case 'd': o->to_stderr = 1; break;
		case 'f': o->foreground = 1; break;
		case 'n': o->check = 1; break;
		case 'N': o->no_network = 1; break;
		case 'v': o->verbose++; break;
		case 'V': print_versions(); exit(0);
		default: usage();
		}
	}
	if (optind != argc || (o->no_network && !o->check))
		usage();
}

/* start_logging - log as the configuration and the command line say */
static void
start_logging(const struct kmilter_conf *conf, int to_stderr, int verbose)
{
	char fac[16];

	log_init("kmilter", log_facility_from_name(conf_word("log.facility",
	    conf->log_facility, fac, sizeof(fac))), to_stderr, conf->log_verbose + verbose);
}

/* start_runtime - read credentials and keys, start the runtime's threads */
static void
start_runtime(struct kmilter_conf *conf)
{
	sigset_t block, oldmask;
	struct kmerr err = { 0 };

	/* Credentials and keys are read before privileges are dropped.
	 * runtime_init starts threads (the cache's invalidation subscriber):
	 * they are born with TERM, INT and HUP blocked, else a TERM would
	 * land in one of them with its default action and end the process
	 * without the clean stop below.  A TERM during start-up waits for
	 * the restore, then ends the process as before. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &block, &oldmask);
	if (runtime_init(conf, &err) != 0)
		fatalx("%s", err.msg);
	/* a retired gateway's name does not start (kmctl retire-gateway) */
	if (keystore_gateway_retired(runtime_keystore(), &err) != KM_OK)
		fatalx("%s", err.msg);
	pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
}

/* pidfile_and_drop - write the pid file and drop privileges, in that order where it is safe */
static void
pidfile_and_drop(const struct kmilter_conf *conf, struct passwd *pw)
{
	int piddir = -1, root_only = 0;

	/* The pid file is written as root only in a directory only root can
	 * write; anywhere else as the milter user, after the drop. */
	if (*conf->pidfile) {
		snprintf(made.pidfile, sizeof(made.pidfile), "%s", conf->pidfile);
		piddir = pidfile_dir(conf->pidfile, &root_only);
		if (root_only || pw == NULL) {
			pidfile_write(piddir, conf->pidfile);
			close(piddir);
			piddir = -1;
		}
	}
	if (pw != NULL)
		drop_privileges(pw);
	if (piddir >= 0) {
		pidfile_write(piddir, conf->pidfile);
		close(piddir);
	}
}

/* start_milter_thread - libmilter's loop in a thread; SIGHUP to this one */
static pthread_t
start_milter_thread(int ready_fd)
{
	struct sigaction sa;
	sigset_t block;
	pthread_t tid;

	/* The milter thread and its children start with TERM, INT and HUP
	 * blocked; this thread takes them (a process-directed signal goes to
	 * the main thread when it does not block it): HUP is a reload, TERM
	 * and INT a stop that lets the connections in progress finish before
	 * libmilter is told (once smfi_main returns, Debian's libmilter, built
	 * with a worker pool, serves no session any more). */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &block, NULL);
	if (pthread_create(&tid, NULL, milter_thread, NULL) != 0)
		fatal("pthread_create");
	daemon_ready(ready_fd);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigemptyset(&block);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	pthread_sigmask(SIG_UNBLOCK, &block, NULL);
	return tid;
}

/* log_started - say what runs where */
static void
log_started(const struct passwd *pw)
{
	struct kmilter_conf *c = callbacks_conf();

	log_info("starting kmilter %s on %s (user %s, pid %ld)", KMILTER_VERSION,
	    c->socket, pw ? pw->pw_name : "unchanged", (long)getpid());
	conf_unref(c);
}

/* serve - until libmilter's loop ends: reload on SIGHUP, log statistics */
static void
serve(const char *path)
{
	time_t last_stats = time(NULL);

	for (;;) {
		struct pollfd pfd = { signal_pipe[0], POLLIN, 0 };
		struct kmilter_conf *c = callbacks_conf();
		int interval = c->stats_interval;
		char buf[16];
		ssize_t n;

		conf_unref(c);
		if (poll(&pfd, 1, 1000) < 0 && errno != EINTR)
			fatal("poll");
		if (interval > 0 && time(NULL) - last_stats >= interval) {
			char line[512];

			stats_format(line, sizeof(line));
			log_info("%s", line);
			last_stats = time(NULL);
		}
		if (!(pfd.revents & POLLIN))
			continue;
		n = read(signal_pipe[0], buf, sizeof(buf));
		if (n > 0 && (memchr(buf, 'S', (size_t)n) || memchr(buf, 'T', (size_t)n)))
			break;
		if (n > 0)
			reload(path);
	}
}

/*
 * remove_made - the pid file and the unix socket this process made
 *	The socket only if the path is still the socket bound at start (same
 *	device and inode): another kmilter may have bound one there since.
 *	A file that cannot be removed (a directory only root can write: the
 *	milter user cannot) is said, not ignored.
 */
static void
remove_made(void)
{
	struct stat st;

	if (*made.socket && lstat(made.socket, &st) == 0 && S_ISSOCK(st.st_mode) &&
	    st.st_dev == made.dev && st.st_ino == made.ino && unlink(made.socket) != 0)
		log_warn("cannot remove the milter socket %s", made.socket);
	if (*made.pidfile && unlink(made.pidfile) != 0 && errno != ENOENT)
		log_warn("cannot remove the pid file %s", made.pidfile);
}

/* stop - let open connections finish, then release everything */
static void
stop(pthread_t tid)
{
	struct kmilter_conf *c;
	char line[512];

	/* New connections are tempfailed from now on; those in progress
	 * finish while libmilter still serves them, then it stops. */
	callbacks_drain();
	log_info("stopping kmilter: finishing %d open connections", callbacks_active());
	wait_for_sessions(20);
	smfi_stop();
	pthread_join(tid, NULL);
	control_stop();
	c = callbacks_conf();
	stats_format(line, sizeof(line));
	log_info("%s", line);
	remove_made();
	conf_unref(c);
	callbacks_set_conf(NULL);
	runtime_free();
	log_info("kmilter stopped");
}

int
main(int argc, char **argv)
{
	struct options o = { 0 };
	int ready_fd = -1;
	char err[8192];
	struct kmerr kerr;
	struct kmilter_conf *conf;
	struct passwd *pw = NULL;
	struct rlimit rl = { 0, 0 };
	pthread_t tid;

	parse_args(argc, argv, &o);
	if (o.check)
		return check_mode(o.path, o.no_network);
	if ((conf = conf_load(o.path, err, sizeof(err))) == NULL) {
		print_errors(err);
		return 1;
	}
	start_logging(conf, o.to_stderr | conf->log_stderr, o.verbose);
	log_to_stderr_now = o.to_stderr | conf->log_stderr;
	log_tee_stderr(1);
	check_public_socket(conf);

	/* No core dumps: they would hold keys and message bodies. */
	setrlimit(RLIMIT_CORE, &rl);
	signal(SIGPIPE, SIG_IGN);

	if (getuid() == 0 && *conf->user) {
		if ((pw = getpwnam(conf->user)) == NULL)
			fatalx("milter.user: no such user \"%s\"", conf->user);
	} else if (getuid() == 0)
		log_warnx("running as root: set milter.user to an unprivileged user");
	ensure_dir(conf->state_dir, pw);
	ensure_dir(conf->spool_dir, pw);
	check_keys(conf);

	/* Detach before runtime_init starts threads: a fork keeps only the
	 * calling thread (the cache's subscriber would be lost). */
	if (!o.foreground)
		ready_fd = daemonize(o.to_stderr | conf->log_stderr);
	start_runtime(conf);
	smfi_settimeout(conf->timeout);
	if (callbacks_register() != 0)
		fatalx("smfi_register failed");
	open_socket(conf, pw);
	pidfile_and_drop(conf, pw);

	if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
		fatal("pipe");
	callbacks_set_conf(conf);
	tid = start_milter_thread(ready_fd);
	log_tee_stderr(0);
	if (control_start(conf->control_socket, &kerr) != 0)
		log_warnx("%s: kmctl stats will not work", kerr.msg);
	log_started(pw);
	serve(o.path);
	stop(tid);
	return milter_status == MI_SUCCESS ? 0 : 1;
}
