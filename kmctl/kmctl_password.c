/*
 * kmctl_password.c - kmctl reads a protection password from a file
 * descriptor, a file or the terminal.  See kmctl_password.h.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "kmctl.h"
#include "kmctl_password.h"
#include "secmem.h"

/* kmctl_read_password - a password from a file descriptor or file, in secmem;
 * the trailing newline is dropped */
char *
kmctl_read_password(const struct opts *o, size_t *len)
{
	char *pw;
	ssize_t r;
	size_t n = 0;
	int fd = o->pwfd, opened = 0;

	*len = 0;
	if (o->pwfile != NULL) {
		if ((fd = open(o->pwfile, O_RDONLY | O_CLOEXEC)) == -1) {
			kmctl_warn("%s: %s", o->pwfile, strerror(errno));
			return NULL;
		}
		opened = 1;
	}
	if ((pw = secmem_alloc(PW_MAX + 1)) == NULL) {
		if (opened)
			close(fd);
		kmctl_warn("out of memory");
		return NULL;
	}
	while (n < PW_MAX) {
		r = read(fd, pw + n, PW_MAX - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			kmctl_warn("cannot read the password: %s",
			    strerror(errno));
			if (opened)
				close(fd);
			secmem_free(pw, PW_MAX + 1);
			return NULL;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (opened)
		close(fd);
	while (n > 0 && (pw[n - 1] == '\n' || pw[n - 1] == '\r'))
		pw[--n] = '\0';
	*len = n;
	return pw;
}

/* read_tty - one line from the terminal with echo off, in secmem (NULL
 * when there is no terminal or on error, after a message) */
static char *
read_tty(const char *prompt, size_t *len)
{
	struct termios old, quiet;
	char *pw, c;
	size_t n = 0;
	ssize_t r;
	int fd, restore = 0, ok = 1;

	*len = 0;
	if ((fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY)) == -1) {
		kmctl_warn("no terminal to read the password from: use "
		    "--password-fd or --password-file");
		return NULL;
	}
	if ((pw = secmem_alloc(PW_MAX + 1)) == NULL) {
		close(fd);
		kmctl_warn("out of memory");
		return NULL;
	}
	if (tcgetattr(fd, &old) == 0) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
		quiet.c_lflag |= ICANON;
		if (tcsetattr(fd, TCSAFLUSH, &quiet) == 0)
			restore = 1;
	}
	if (!restore) {
		kmctl_warn("cannot turn off echo on the terminal");
		ok = 0;
	}
	if (ok && write(fd, prompt, strlen(prompt)) < 0)
		ok = 0;
	while (ok) {
		r = read(fd, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || c == '\n')
			break;
		if (n < PW_MAX)
			pw[n++] = c;
		else
			ok = 0;		/* too long: refuse, not truncate */
	}
	c = 0;
	if (restore) {
		tcsetattr(fd, TCSAFLUSH, &old);
		if (write(fd, "\n", 1) < 0)
			ok = 0;
	}
	close(fd);
	if (!ok) {
		if (n >= PW_MAX)
			kmctl_warn("password too long");
		secmem_free(pw, PW_MAX + 1);
		return NULL;
	}
	while (n > 0 && pw[n - 1] == '\r')
		pw[--n] = '\0';
	*len = n;
	return pw;
}

/* kmctl_get_password - the protection password from --password-fd/-file or the
 * terminal (twice when isnew, compared); a new one is checked so that the
 * hook can hand it back.  secmem: secmem_free(pw, PW_MAX + 1). */
char *
kmctl_get_password(const struct opts *o, int isnew, size_t *len)
{
	return kmctl_get_named_password(o, isnew, "protection password", len);
}

/* kmctl_get_named_password - kmctl_get_password for another password
 * (what names it in prompts and messages) */
char *
kmctl_get_named_password(const struct opts *o, int isnew, const char *what,
    size_t *len)
{
	char *pw, *again, prompt[64];
	size_t i, alen;

	if (o->pwfd >= 0 || o->pwfile != NULL)
		pw = kmctl_read_password(o, len);
	else {
		snprintf(prompt, sizeof(prompt), "%s%s: ", isnew ? "New " : "",
		    what);
		if (!isnew)
			prompt[0] = (char)toupper((unsigned char)prompt[0]);
		pw = read_tty(prompt, len);
		if (pw != NULL && isnew) {
			if ((again = read_tty("Again: ", &alen)) == NULL) {
				secmem_free(pw, PW_MAX + 1);
				return NULL;
			}
			if (alen != *len || memcmp(pw, again, alen) != 0) {
				kmctl_warn("the passwords differ");
				secmem_free(again, PW_MAX + 1);
				secmem_free(pw, PW_MAX + 1);
				return NULL;
			}
			secmem_free(again, PW_MAX + 1);
		}
	}
	if (pw == NULL)
		return NULL;
	if (*len == 0) {
		kmctl_warn("empty password");
		goto fail;
	}
	if (!isnew)
		return pw;
	if (*len < PW_MIN_NEW || *len > PW_MAX_NEW) {
		kmctl_warn("a %s has %d to %d characters", what, PW_MIN_NEW,
		    PW_MAX_NEW);
		goto fail;
	}
	for (i = 0; i < *len; i++) {
		unsigned char ch = (unsigned char)pw[i];

		if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
			kmctl_warn("the %s contains a control character (the "
			    "hook could not hand it back)", what);
			goto fail;
		}
	}
	return pw;
fail:
	secmem_free(pw, PW_MAX + 1);
	*len = 0;
	return NULL;
}
