/*
 * privfile.c - write a private file through a temporary file and
 * rename().  See privfile.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "privfile.h"

/* privfile_write - write bytes to path via a 0600 temporary file and rename */
enum km_status
privfile_write(const char *path, const unsigned char *buf, size_t len,
    struct kmerr *err)
{
	static atomic_uint seq;
	char tmp[PATH_MAX];
	size_t off = 0;
	ssize_t w;
	int fd, saved;

	if (snprintf(tmp, sizeof(tmp), "%s.%ld.%u.tmp", path, (long)getpid(),
	    atomic_fetch_add(&seq, 1)) >= (int)sizeof(tmp))
		return kmerr_set(err, KM_PROTO, KMERR_NONE, "path too long");
	unlink(tmp);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) ==
	    -1)
		return kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
		    "%s: %s", tmp, strerror(errno));
	while (off < len) {
		if ((w = write(fd, buf + off, len - off)) < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		off += (size_t)w;
	}
	if (fsync(fd) != 0 || close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		goto fail;
	return KM_OK;
fail:
	saved = errno;
	if (fd != -1)
		close(fd);
	unlink(tmp);
	kmerr_set(err, KM_PERMFAIL, KMERR_NONE,
	    "%s: %s", path, strerror(saved));
	errno = saved;
	return KM_PERMFAIL;
}
