#ifndef KMILTER_MILTER_CHECK_H
#define KMILTER_MILTER_CHECK_H
/*
 * NAME
 *	check - the files and directories a configuration names, checked as
 *	the user kmilter runs as (kmilter -n, and start-up)
 * SUMMARY
 *	check_files(), check_network(), check_socket_path(),
 *	check_public_socket()
 * DESCRIPTION
 *	check_files() goes through every file and directory the
 *	configuration names and reports each problem once, in one pass:
 *	the milter user exists; the directories of the milter socket and
 *	the pid file exist; the state and spool directories (and the control
 *	socket's) are writable by the milter user; the KM client
 *	certificate, key and CA file, the organization CA, the inbound CA
 *	file, the seal key, the signing keys in STATE_DIR/signing and the
 *	Redis password file exist and are readable by it; the seal key, the
 *	signing key directory and its keys are owned by it (or root) and
 *	neither readable nor writable by others; the hook exists and is
 *	executable by it.  (conf_load_all() checks milter.socket_group
 *	and who may write the hook along its path.)  What kmilter opens after dropping its
 *	privileges is checked as the milter user: when called as root,
 *	check_files() forks a child that drops to milter.user exactly as
 *	kmilter does (its primary group only) and checks there; otherwise
 *	as the calling user.
 *
 *	Each problem is one line "FILE:LINE: SETTING: what is wrong" (FILE
 *	the configuration, LINE where the setting is written; "FILE:
 *	SETTING: ..." for a default) given to report(); key is 1 for the
 *	files holding keys and secrets (KM client certificate and key, KM
 *	CA, seal key, signing keys, Redis password), which kmilter cannot
 *	run without.
 *
 *	check_network() tells whether each KM server (km.servers) completes
 *	a TLS handshake with km.ca_file and the client certificate, and
 *	whether Redis (cache.redis.*) answers PING after AUTH and SELECT;
 *	each one that does not is a problem line naming the setting.
 *
 *	check_socket_path() is the file of a unix socket spec ("unix:PATH",
 *	"local:PATH" or "/PATH"), NULL for an inet socket.
 *
 *	check_public_socket() logs a warning when milter.socket is an inet
 *	socket not bound to loopback: whoever reaches it can have mail
 *	decrypted and signed.
 * ERRORS
 *	check_files() and check_network() return the number of problems (0:
 *	none); a child that could not be started or drop privileges is a
 *	problem too.
 * THREADS
 *	check_files() forks: call it before any thread is started.
 *	check_network() may block for the configured connect timeouts; the
 *	caller ignores SIGPIPE.
 */
#include "conf.h"

typedef void	(*check_report_fn)(void *arg, int key, const char *line);

int		 check_files(const struct kmilter_conf *, check_report_fn report,
		    void *arg);
int		 check_network(const struct kmilter_conf *, check_report_fn report,
		    void *arg);
const char	*check_socket_path(const char *spec);

void		 check_public_socket(const struct kmilter_conf *);

#endif
