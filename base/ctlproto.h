#ifndef KMILTER_BASE_CTLPROTO_H
#define KMILTER_BASE_CTLPROTO_H
/*
 * NAME
 *	ctlproto - the control protocol between kmctl and a running kmilter
 * SUMMARY
 *	ctlproto_ask(), ctlproto_read_command()
 * DESCRIPTION
 *	Over a unix stream socket (milter.control_socket), the client writes
 *	one command line ended by LF and reads the answer until the server
 *	closes.  Commands: "stats" (the counters, one "name=value" per line).
 *	The server side (milter/control.c) reads the line with
 *	ctlproto_read_command(); kmctl asks with ctlproto_ask().  Both ends
 *	live here so that neither program depends on the other.
 * OWNERSHIP
 *	The answer of ctlproto_ask() is written into the caller's buffer,
 *	NUL-terminated and cut at outlen - 1 bytes.
 * ERRORS
 *	ctlproto_ask() returns -1 with err (KM_TEMPFAIL,
 *	KMERR_UNREACHABLE) when kmilter cannot be reached;
 *	ctlproto_read_command() returns -1 when the client sent nothing
 *	within CTLPROTO_READ_MS.
 * THREADS
 *	Safe.
 */
#include <stddef.h>

#include "kmerr.h"

#define CTLPROTO_CMD_MAX	64	/* longest command line, with its LF */
#define CTLPROTO_READ_MS	2000	/* the server waits this long for it */

int	ctlproto_ask(const char *path, const char *cmd, char *out, size_t outlen,
	    struct kmerr *err);
int	ctlproto_read_command(int fd, char *cmd, size_t len);

#endif
