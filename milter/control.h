#ifndef KMILTER_MILTER_CONTROL_H
#define KMILTER_MILTER_CONTROL_H
/*
 * NAME
 *	control - the local control socket: `kmctl stats` reads counters here
 * SUMMARY
 *	control_start(), control_stop()
 * DESCRIPTION
 *	control_start() listens on a unix socket (milter.control_socket,
 *	by default STATE_DIR/control.sock, mode 0600 in the 0700 state
 *	directory: file permissions are the access control) in a thread of
 *	its own.  A client writes one command line and reads the answer
 *	until the server closes (ctlproto.h).  Commands: "stats" (the
 *	counters line of the milter and of the key store, one "name=value"
 *	per line).
 * ERRORS
 *	control_start() returns -1 (err says why: base/kmerr.h).
 * THREADS
 *	One listener thread; answers are built from atomic counters.
 */
#include <stddef.h>

#include "kmerr.h"

int	control_start(const char *path, struct kmerr *err);
void	control_stop(void);

#endif
