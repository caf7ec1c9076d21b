#ifndef KMILTER_KMCTL_KMCTL_PASSWORD_H
#define KMILTER_KMCTL_KMCTL_PASSWORD_H
/*
 * NAME
 *	kmctl_password - kmctl reads a protection password
 * SUMMARY
 *	kmctl_read_password(), kmctl_get_password(),
 *	kmctl_get_named_password()
 * DESCRIPTION
 *	kmctl_read_password() reads --password-fd or --password-file (the
 *	trailing newline dropped).  kmctl_get_password() reads from those or
 *	from the terminal with echo off (twice when isnew, compared), and
 *	checks a new password so that the hook can hand it back: PW_MIN_NEW
 *	to PW_MAX_NEW characters, no control character but a tab.
 *	kmctl_get_named_password() is the same for another password (export's
 *	transport password), named in prompts and messages.
 * OWNERSHIP
 *	Both return secmem the caller frees with secmem_free(pw, PW_MAX + 1).
 * ERRORS
 *	NULL after a kmctl_warn() message.
 * THREADS
 *	kmctl has one thread.
 */
#include <stddef.h>

#include "hook.h"

struct opts;

#define PW_MAX		1024
#define PW_MIN_NEW	8	/* shortest new protection password */
/* the longest password the hook can hand back ("password=" + value on one
 * line of at most HOOK_LINE_MAX bytes) */
#define PW_MAX_NEW	(HOOK_LINE_MAX - 9)

char	*kmctl_read_password(const struct opts *, size_t *len);
char	*kmctl_get_password(const struct opts *, int isnew, size_t *len);
char	*kmctl_get_named_password(const struct opts *, int isnew,
	    const char *what, size_t *len);

#endif
