#ifndef KMILTER_BASE_TRUSTPATH_H
#define KMILTER_BASE_TRUSTPATH_H
/*
 * NAME
 *	trustpath - can only root and one user change what a path names?
 * SUMMARY
 *	trustpath_check()
 * DESCRIPTION
 *	trustpath_check() decides whether nobody but root and one user can
 *	change what a path runs or reads: the path must be absolute and
 *	plain (no ".", "..", "//", trailing "/" or symbolic link in it); the
 *	file a regular file owned by root or the user, writable by neither
 *	group nor others; its directory the same (owned by root or the user,
 *	no group or other write); every directory above owned by root or
 *	the user and writable by no one else, except a sticky directory
 *	owned by root (such as /tmp), where others cannot rename what is
 *	not theirs.  Because each step of the lookup is checked, the file
 *	opened or exec'd right after the check is the file checked (no race
 *	with other users).  The admin hook (hook.h) and the configuration
 *	check (conf.h) use it.
 * ERRORS
 *	TRUSTPATH_SAFE, TRUSTPATH_MISSING (a component does not exist; what
 *	exists above it is safe) or TRUSTPATH_UNSAFE, with err (KM_PERMFAIL;
 *	reason KMERR_NOTFOUND when missing) naming the offending path and
 *	what is wrong.
 * THREADS
 *	Safe (lstat only).
 */
#include <sys/types.h>
#include <stddef.h>

#include "kmerr.h"

enum trustpath {
	TRUSTPATH_SAFE = 0,
	TRUSTPATH_MISSING,	/* it, or a directory on the way, is missing */
	TRUSTPATH_UNSAFE	/* someone other than root or the user could change it */
};

enum trustpath	trustpath_check(const char *path, uid_t user,
		    struct kmerr *err);

#endif
