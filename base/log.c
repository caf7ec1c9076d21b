/*
 * log.c - syslog or stderr logging for kmilter (see log.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include <openssl/err.h>

#include "log.h"
#include "status.h"

static int	log_to_stderr = 1;
static int	log_verbosity;
static int	log_tee;
static char	log_ident[64] = "kmilter";
static pthread_mutex_t log_mtx = PTHREAD_MUTEX_INITIALIZER;

/* km_status_name - printable name of a status code */
const char *
km_status_name(enum km_status st)
{
	switch (st) {
	case KM_OK:		return "ok";
	case KM_TEMPFAIL:	return "tempfail";
	case KM_PERMFAIL:	return "permfail";
	case KM_NOMEM:		return "nomem";
	case KM_PROTO:		return "malformed";
	}
	return "unknown";
}

/* log_init - choose syslog (with facility) or stderr, and the verbosity */
void
log_init(const char *ident, int facility, int to_stderr, int verbose)
{
	snprintf(log_ident, sizeof(log_ident), "%s", ident);
	log_to_stderr = to_stderr;
	log_verbosity = verbose;
	if (!to_stderr)
		openlog(log_ident, LOG_PID | LOG_NDELAY, facility);
}

/* log_tee_stderr - fatal lines to stderr too, while start-up still has a terminal */
void
log_tee_stderr(int on)
{
	log_tee = on;
}

/* log_set_verbose - change the verbosity (configuration reload) */
void
log_set_verbose(int verbose)
{
	log_verbosity = verbose;
}

/* log_verbose - the current verbosity */
int
log_verbose(void)
{
	return log_verbosity;
}

/* log_facility_from_name - syslog facility for "mail", "local0".."local7", "daemon", "user" */
int
log_facility_from_name(const char *name)
{
	static const struct { const char *name; int fac; } tab[] = {
		{ "mail", LOG_MAIL }, { "daemon", LOG_DAEMON }, { "user", LOG_USER },
		{ "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 },
		{ "local2", LOG_LOCAL2 }, { "local3", LOG_LOCAL3 },
		{ "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 },
		{ "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
	};
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (strcmp(tab[i].name, name) == 0)
			return tab[i].fac;
	return -1;
}

/* vlog - write one line at a syslog priority; never changes errno */
static void __attribute__((format(printf, 3, 0)))
vlog(int pri, const char *errstr, const char *fmt, va_list ap)
{
	int saved = errno;
	char buf[2048];
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);

	if (n < 0)
		buf[0] = '\0';
	/* One line per call: control characters from peers are made visible. */
	for (char *p = buf; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	if (log_to_stderr) {
		struct timespec ts;
		struct tm tm;
		char stamp[32];

		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
		pthread_mutex_lock(&log_mtx);
		if (errstr)
			fprintf(stderr, "%s.%03ld %s: %s: %s\n", stamp,
			    ts.tv_nsec / 1000000, log_ident, buf, errstr);
		else
			fprintf(stderr, "%s.%03ld %s: %s\n", stamp,
			    ts.tv_nsec / 1000000, log_ident, buf);
		fflush(stderr);
		pthread_mutex_unlock(&log_mtx);
	} else if (errstr)
		syslog(pri, "%s: %s", buf, errstr);
	else
		syslog(pri, "%s", buf);
	if (!log_to_stderr && log_tee && pri <= LOG_ERR) {
		if (errstr)
			fprintf(stderr, "%s: %s: %s\n", log_ident, buf, errstr);
		else
			fprintf(stderr, "%s: %s\n", log_ident, buf);
		fflush(stderr);
	}
	errno = saved;
}

/* log_warn - warning with strerror(errno) appended */
void
log_warn(const char *fmt, ...)
{
	char eb[128];
	va_list ap;
	const char *es = strerror_r(errno, eb, sizeof(eb));

	va_start(ap, fmt);
	vlog(LOG_WARNING, es, fmt, ap);
	va_end(ap);
}

/* log_warnx - warning */
void
log_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_WARNING, NULL, fmt, ap);
	va_end(ap);
}

/* log_info - informational line (the per-message lines) */
void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_INFO, NULL, fmt, ap);
	va_end(ap);
}

/* log_debug - detail, written when the verbosity is at least level */
void
log_debug(int level, const char *fmt, ...)
{
	va_list ap;

	if (log_verbosity < level)
		return;
	va_start(ap, fmt);
	vlog(LOG_DEBUG, NULL, fmt, ap);
	va_end(ap);
}

/* log_openssl - drain the OpenSSL error queue into warning lines */
void
log_openssl(const char *what)
{
	unsigned long e;
	char buf[256];
	int saved = errno;

	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		log_warnx("%s: openssl: %s", what, buf);
	}
	errno = saved;
}

/* fatal - log with strerror and exit (start-up and signal thread only) */
void
fatal(const char *fmt, ...)
{
	char eb[128];
	va_list ap;
	const char *es = strerror_r(errno, eb, sizeof(eb));

	va_start(ap, fmt);
	vlog(LOG_CRIT, es, fmt, ap);
	va_end(ap);
	exit(1);
}

/* fatalx - log and exit (start-up and signal thread only) */
void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_CRIT, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}

/* log_panic - an impossible state: log and abort so the bug is loud */
void
log_panic(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_CRIT, NULL, fmt, ap);
	va_end(ap);
	abort();
}
