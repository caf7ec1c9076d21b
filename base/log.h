#ifndef KMILTER_MILTER_LOG_H
#define KMILTER_MILTER_LOG_H
/*
 * NAME
 *	log - kmilter's logging: syslog, or stderr for tests and -f runs
 * SUMMARY
 *	log_init(), log_tee_stderr(), log_warn(), log_warnx(), log_info(), log_debug(),
 *	log_openssl(), fatal(), fatalx(), log_panic()
 * DESCRIPTION
 *	log_warn() appends strerror(errno); log_warnx() does not.
 *	log_debug(level, ...) is written only when the verbosity given to
 *	log_init() is at least level (higher means more output).
 *	log_tee_stderr(1) makes fatal()/fatalx() lines go to stderr as well
 *	when logging to syslog: start-up errors reach the terminal (or the
 *	service manager) that started kmilter.
 *	log_openssl() drains the OpenSSL error queue into warning lines so
 *	that stale errors never show up against the next message.
 *	fatal()/fatalx() log and exit(1): allowed only at start-up and in the
 *	signal thread.  log_panic() logs and aborts: an impossible state.
 *	No function here changes errno.
 *	Never pass key bytes, passwords or message bodies to these functions.
 * OWNERSHIP
 *	The ident string given to log_init() is copied.
 * ERRORS
 *	None: logging failures are ignored.
 * THREADS
 *	Thread-safe after log_init(); call log_init() before threads start.
 */
#include <stdarg.h>
#include <stdnoreturn.h>

#define KM_PRINTF(a, b) __attribute__((format(printf, a, b)))

void log_init(const char *ident, int facility, int to_stderr, int verbose);
void log_tee_stderr(int on);
void log_set_verbose(int verbose);
int  log_verbose(void);
int  log_facility_from_name(const char *name);	/* -1 if unknown */
void log_warn(const char *, ...) KM_PRINTF(1, 2);
void log_warnx(const char *, ...) KM_PRINTF(1, 2);
void log_info(const char *, ...) KM_PRINTF(1, 2);
void log_debug(int level, const char *, ...) KM_PRINTF(2, 3);
void log_openssl(const char *what);
noreturn void fatal(const char *, ...) KM_PRINTF(1, 2);
noreturn void fatalx(const char *, ...) KM_PRINTF(1, 2);
noreturn void log_panic(const char *, ...) KM_PRINTF(1, 2);

#endif
