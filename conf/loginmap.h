#ifndef KMILTER_CONF_LOGINMAP_H
#define KMILTER_CONF_LOGINMAP_H
/*
 * NAME
 *	loginmap - the sender-login map: which SMTP AUTH logins own which
 *	sender addresses (policy.sender_login_map)
 * SUMMARY
 *	loginmap_load(), loginmap_free()
 * DESCRIPTION
 *	The file has the shape of Postfix's smtpd_sender_login_maps as a
 *	flat file: one entry a line, "address login[, login...]" (logins
 *	separated by commas and/or blanks); "@domain" as the address gives
 *	the logins every address of that domain.  Blank lines and lines
 *	starting with '#' are ignored.  Addresses are stored lower-cased
 *	with trailing dots of the domain removed (they are compared
 *	case-insensitively with the normalized envelope sender).  A line
 *	without '@' in its address, a quoted address, a line without login,
 *	a line longer than 1024 characters and an address given twice are
 *	refused with "FILE:LINE: what is wrong".  Loaded with the
 *	configuration (conf.c), so SIGHUP reloads it.
 * OWNERSHIP
 *	loginmap_load() returns an array of *n entries the caller frees with
 *	loginmap_free(); every string belongs to the array.
 * ERRORS
 *	-1 with the first problem in err (KM_PERMFAIL when the file cannot
 *	be read, reason KMERR_NOTFOUND when it is missing; KM_PROTO with
 *	KMERR_BADINPUT for a malformed line, KMERR_EXISTS for an address
 *	listed twice); 0 on success.
 * THREADS
 *	Thread-safe: no static state.
 */
#include <stddef.h>

#include "conf.h"
#include "kmerr.h"

int		 loginmap_load(const char *path, struct conf_login_map **out,
		    int *n, struct kmerr *err);
struct conf_login_map *loginmap_free(struct conf_login_map *, int n);

#endif
