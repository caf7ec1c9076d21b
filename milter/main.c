/*
 * main.c - kmilter: arguments, configuration, logging, privileges,
 * signals, and libmilter's main loop.
 */
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
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
#include "conf.h"
#include "control.h"
#include "log.h"
#include "runtime.h"
#include "stats.h"

#ifndef KMILTER_CONF
#define KMILTER_CONF "/etc/kmilter/kmilter.conf"
#endif

static int	signal_pipe[2] = { -1, -1 };
static int	milter_status;

/* usage - print the synopsis and exit */
static noreturn void
usage(void)
{
	fprintf(stderr,
	    "usage: kmilter [-dfnvV] [-c config]\n"
	    "  -c FILE  configuration file (default " KMILTER_CONF ")\n"
	    "  -d       log to stderr instead of syslog\n"
	    "  -f       stay in the foreground\n"
	    "  -n       check the configuration and exit\n"
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

/* ensure_dir - create a private directory owned by the run user if missing */
static void
ensure_dir(const char *dir, const struct passwd *pw)
{
	struct stat st;

	if (*dir == '\0')
		return;
	if (stat(dir, &st) != 0) {
		if (mkdir(dir, 0700) != 0)
			fatal("cannot create %s", dir);
		if (pw != NULL && chown(dir, pw->pw_uid, pw->pw_gid) != 0)
			fatal("cannot chown %s to %s", dir, pw->pw_name);
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

/* socket_path - the file name of a unix socket spec, or NULL */
static const char *
socket_path(const char *spec)
{
	if (strncmp(spec, "unix:", 5) == 0)
		return spec + 5;
	if (strncmp(spec, "local:", 6) == 0)
		return spec + 6;
	if (spec[0] == '/')
		return spec;
	return NULL;
}

/* open_socket - bind the milter socket (as root, before the drop) */
static void
open_socket(const struct kmilter_conf *c, const struct passwd *pw)
{
	static char spec[1024];
	const char *path = socket_path(c->socket);
	mode_t mode = (mode_t)strtol(c->socket_mode, NULL, 8);
	mode_t old;

	snprintf(spec, sizeof(spec), "%s", c->socket);
	if (smfi_setconn(spec) != MI_SUCCESS)
		fatalx("cannot use socket %s", c->socket);
	old = umask(0777 & ~mode);
	if (smfi_opensocket(1) != MI_SUCCESS)
		fatalx("cannot open milter socket %s (in use, or no permission?)", c->socket);
	umask(old);
	if (path != NULL) {
		if (chmod(path, mode) != 0)
			fatal("chmod %s", path);
		if (pw != NULL && chown(path, pw->pw_uid, pw->pw_gid) != 0)
			fatal("chown %s", path);
	}
}

/* daemonize - detach from the terminal */
static void
daemonize(int keep_stderr)
{
	pid_t pid = fork();
	int fd;

	if (pid < 0)
		fatal("fork");
	if (pid > 0)
		_exit(0);
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
}

/* write_pidfile - record our pid */
static void
write_pidfile(const char *path)
{
	FILE *f;

	if (*path == '\0')
		return;
	char tmp[4096];

	/* Written beside it and renamed: a reader never sees it empty. */
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp) ||
	    (f = fopen(tmp, "w")) == NULL)
		fatal("cannot write pidfile %s", path);
	fprintf(f, "%ld\n", (long)getpid());
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		fatal("cannot write pidfile %s", path);
}

/* on_sighup - ask the main thread for a reload (async-signal-safe) */
static void
on_sighup(int sig)
{
	int saved = errno;
	char c = 'H';

	(void)sig;
	if (write(signal_pipe[1], &c, 1) < 0) {
		/* The pipe is full: a reload is already pending. */
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

/* restart_needed - settings a reload cannot change */
static void
warn_restart_needed(const struct kmilter_conf *old, const struct kmilter_conf *new)
{
	if (strcmp(old->socket, new->socket) != 0 || strcmp(old->user, new->user) != 0 ||
	    strcmp(old->pidfile, new->pidfile) != 0)
		log_warnx("reload: milter.socket, milter.user and milter.pidfile take "
		    "effect only after a restart");
}

/* reload - load the configuration again; a bad file keeps the running one */
static void
reload(const char *path)
{
	char err[4096];
	struct kmilter_conf *new = conf_load(path, err, sizeof(err)), *old;

	if (new == NULL) {
		char *save = NULL;

		for (char *line = strtok_r(err, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
			log_warnx("reload: %s", line);
		log_warnx("reload: %s has errors: keeping the running configuration", path);
		return;
	}
	if (runtime_reload_trust(new, err, sizeof(err)) != 0) {
		log_warnx("reload: %s: keeping the running configuration", err);
		conf_unref(new);
		return;
	}
	old = callbacks_conf();
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

int
main(int argc, char **argv)
{
	const char *path = KMILTER_CONF;
	int ch, check = 0, foreground = 0, to_stderr = 0, verbose = 0;
	char err[8192];
	struct kmilter_conf *conf;
	struct passwd *pw = NULL;
	struct rlimit rl = { 0, 0 };
	struct sigaction sa;
	sigset_t block;
	pthread_t tid;

	while ((ch = getopt(argc, argv, "c:dfnvVh")) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 'd': to_stderr = 1; break;
		case 'f': foreground = 1; break;
		case 'n': check = 1; break;
		case 'v': verbose++; break;
		case 'V': print_versions(); return 0;
		default: usage();
		}
	}
	if (optind != argc)
		usage();

	if ((conf = conf_load(path, err, sizeof(err))) == NULL) {
		print_errors(err);
		return 1;
	}
	if (check) {
		printf("kmilter: %s: configuration OK\n", path);
		conf_unref(conf);
		return 0;
	}
	to_stderr |= conf->log_stderr;
	{
		char fac[16];

		log_init("kmilter", log_facility_from_name(conf_word("log.facility",
		    conf->log_facility, fac, sizeof(fac))), to_stderr, conf->log_verbose + verbose);
	}

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

	/* Credentials and keys are read before privileges are dropped. */
	if (runtime_init(conf, err, sizeof(err)) != 0)
		fatalx("%s", err);
	smfi_settimeout(conf->timeout);
	if (callbacks_register() != 0)
		fatalx("smfi_register failed");
	open_socket(conf, pw);

	if (!foreground)
		daemonize(to_stderr);
	write_pidfile(conf->pidfile);
	if (pw != NULL)
		drop_privileges(pw);

	if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
		fatal("pipe");
	callbacks_set_conf(conf);

	/* Only libmilter's signal thread takes TERM and INT (it stops the
	 * loop); SIGHUP goes to this thread's handler: a reload. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &block, NULL);
	if (pthread_create(&tid, NULL, milter_thread, NULL) != 0)
		fatal("pthread_create");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sighup;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGHUP, &sa, NULL);
	sigemptyset(&block);
	sigaddset(&block, SIGHUP);
	pthread_sigmask(SIG_UNBLOCK, &block, NULL);

	if (control_start(conf->control_socket, err, sizeof(err)) != 0)
		log_warnx("%s: kmctl stats will not work", err);
	{
		struct kmilter_conf *c = callbacks_conf();

		log_info("starting kmilter %s on %s (user %s, pid %ld)", KMILTER_VERSION,
		    c->socket, pw ? pw->pw_name : "unchanged", (long)getpid());
		conf_unref(c);
	}

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
		if (n > 0 && memchr(buf, 'S', (size_t)n))
			break;
		if (n > 0)
			reload(path);
	}
	log_info("stopping kmilter: finishing %d open connections", callbacks_active());
	wait_for_sessions(20);
	pthread_join(tid, NULL);
	control_stop();
	{
		struct kmilter_conf *c = callbacks_conf();
		char line[512];

		stats_format(line, sizeof(line));
		log_info("%s", line);
		if (*c->pidfile)
			unlink(c->pidfile);
		conf_unref(c);
	}
	callbacks_set_conf(NULL);
	runtime_free();
	log_info("kmilter stopped");
	return milter_status == MI_SUCCESS ? 0 : 1;
}
