/*
 * trustpath.c - can only root and one user change what a path names?
 * (see trustpath.h).
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "trustpath.h"

/* plain_path - absolute, no empty, "." or ".." component, no trailing "/" */
static int
plain_path(const char *p)
{
	if (p == NULL || p[0] != '/' || p[1] == '\0')
		return 0;
	for (const char *c = p + 1;; ) {
		size_t n = strcspn(c, "/");

		if (n == 0 || (n == 1 && c[0] == '.') ||
		    (n == 2 && c[0] == '.' && c[1] == '.'))
			return 0;
		if (c[n] == '\0')
			return 1;
		c += n + 1;
	}
}

/* trusted_owner - owned by root or by the user */
static int
trusted_owner(const struct stat *st, uid_t user)
{
	return st->st_uid == 0 || st->st_uid == user;
}

/*
 * check_step - one step of the lookup: a directory on the way, the
 *	hook's own directory (strict: no group or other write, even sticky)
 *	or the hook itself.  Returns 0 if safe, -1 with err set.
 */
static int
check_step(const char *p, const struct stat *st, uid_t user, int last,
    int parent, struct kmerr *err)
{
	if (S_ISLNK(st->st_mode)) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "%s is a symbolic link: name the real "
		    "path", p);
		return -1;
	}
	if (!trusted_owner(st, user)) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "%s is owned by uid %u, not by root or "
		    "uid %u", p, (unsigned)st->st_uid, (unsigned)user);
		return -1;
	}
	if (last) {
		if (!S_ISREG(st->st_mode)) {
			kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
			    "%s is not a regular file", p);
			return -1;
		}
	} else if (!S_ISDIR(st->st_mode)) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "%s is not a directory", p);
		return -1;
	}
	if ((st->st_mode & (S_IWGRP | S_IWOTH)) == 0)
		return 0;
	if (!last && !parent && (st->st_mode & S_ISVTX) && st->st_uid == 0)
		return 0;
	kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
	    "%s is writable by %s (mode %04o)", p,
	    (st->st_mode & S_IWOTH) ? "others" : "its group",
	    (unsigned)(st->st_mode & 07777));
	return -1;
}

/* trustpath_check - can only root and user change what path names? */
enum trustpath
trustpath_check(const char *path, uid_t user, struct kmerr *err)
{
	char buf[4096];
	size_t len;
	struct stat st;

	if (!plain_path(path)) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "\"%s\" is not an absolute path without "
		    "\".\", \"..\", \"//\" or a trailing \"/\"", path ? path : "");
		return TRUSTPATH_UNSAFE;
	}
	if ((len = strlen(path)) >= sizeof(buf)) {
		kmerr_set(err, KM_PERMFAIL, KMERR_NONE, "path too long");
		return TRUSTPATH_UNSAFE;
	}
	/* "/", each directory below it, then the file: every step of the
	 * lookup, each with lstat (a symbolic link is refused). */
	for (size_t end = 0; end <= len; end++) {
		int last = end == len;
		size_t n = end == 0 ? 1 : end;

		if (end > 0 && !last && path[end] != '/')
			continue;
		memcpy(buf, path, n);
		buf[n] = '\0';
		if (lstat(buf, &st) != 0) {
			int missing = errno == ENOENT;

			kmerr_set(err, KM_PERMFAIL, missing ? KMERR_NOTFOUND :
			    KMERR_NONE, "%s: %s", buf, strerror(errno));
			return missing ? TRUSTPATH_MISSING : TRUSTPATH_UNSAFE;
		}
		if (check_step(buf, &st, user, last,
		    !last && strchr(path + end + 1, '/') == NULL,
		    err) != 0)
			return TRUSTPATH_UNSAFE;
	}
	return TRUSTPATH_SAFE;
}
