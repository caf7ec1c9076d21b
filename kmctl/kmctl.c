/*
 * kmctl.c - the administrator's tool for kmilter's keys: enroll, renew,
 * revoke, import, show and export users' encryption keys in the KM (see
 * keymodel.h), enroll this gateway's signing keys (signstore.h), check the
 * KM servers, create the gateway key.  Exit codes: see kmctl.8.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>

#include "conf.h"
#include "ctlproto.h"
#include "hook.h"
#include "keystore.h"
#include "keymodel.h"
#include "kmip.h"
#include "log.h"
#include "seal.h"
#include "secmem.h"
#include "signstore.h"

#ifndef KMILTER_CONF
#define KMILTER_CONF	"/etc/kmilter/kmilter.conf"
#endif

#define EX_OK_		0
#define EX_FAIL		1
#define EX_USAGE_	2
#define EX_NOTFOUND	3
#define EX_UNREACH	4

#define FILE_MAX	(1024 * 1024)
#define PW_MAX		1024
#define PW_MIN_NEW	8	/* shortest new protection password */
/* the longest password the hook can hand back ("password=" + value on one
 * line of at most HOOK_LINE_MAX bytes) */
#define PW_MAX_NEW	(HOOK_LINE_MAX - 9)

struct opts {
	const char	*config;
	const char	*keytype;
	int		 days;
	int		 pwfd;
	const char	*pwfile;
	int		 protect;	/* enroll --protect */
};

static void warnmsg(const char *, ...) KM_PRINTF(1, 2);

/* warnmsg - one "kmctl: ..." line on stderr */
static void
warnmsg(const char *fmt, ...)
{
	va_list ap;

	fputs("kmctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* usage - print the synopsis and return the usage exit code */
static int
usage(void)
{
	fprintf(stderr,
	    "usage: kmctl [-c config] command [args]\n"
	    "  enroll ADDR [--key rsa2048|rsa3072|ec-p256] [--days N] [--protect]\n"
	    "  renew ADDR [--key TYPE] [--days N]\n"
	    "  revoke ADDR [GENERATION]\n"
	    "  import ADDR FILE.p12 [--password-fd N | --password-file F]\n"
	    "  import ADDR CERT.pem|CERT.der\n"
	    "  set-password ADDR [--password-fd N | --password-file F]\n"
	    "  clear-password ADDR [--password-fd N | --password-file F]\n"
	    "  show ADDR\n"
	    "  export-cert ADDR\n"
	    "  signing-enroll ADDR [--key TYPE] [--days N]\n"
	    "  flush ADDR          drop ADDR's cached entries on every gateway\n"
	    "  stats               counters of the running kmilter\n"
	    "  ping\n"
	    "  keygen\n");
	return EX_USAGE_;
}

/* exit_for - the exit code for a failed keymodel call */
static int
exit_for(enum km_status st, const char *err)
{
	if (st == KM_TEMPFAIL)
		return EX_UNREACH;
	if (st == KM_PERMFAIL && keymodel_notfound(err))
		return EX_NOTFOUND;
	return EX_FAIL;
}

/* after_change - after the keys of addr changed (enroll, renew, revoke,
 * import, signing-enroll, flush): drop the cached entries in Redis and
 * publish the invalidation every running kmilter subscribes to */
static int
after_change(const struct kmilter_conf *conf, const char *addr)
{
	char err[512];
	struct keystore *ks = keystore_new(conf, err, sizeof(err));

	if (ks == NULL) {
		warnmsg("cache not invalidated for %s: %s", addr, err);
		return EX_FAIL;
	}
	keystore_invalidate(ks, addr);
	keystore_free(ks);
	return EX_OK_;
}

/* give_to_state_owner - files kmctl (as root) made in the state directory
 * go to the user that owns it, the user kmilter runs as */
static void
give_to_state_owner(const struct kmilter_conf *conf)
{
	struct stat st;
	char path[4096];
	DIR *d;
	struct dirent *de;

	if (geteuid() != 0 || stat(conf->state_dir, &st) != 0 || st.st_uid == 0)
		return;
	if (lchown(conf->seal_key_file, st.st_uid, st.st_gid) != 0 && errno != ENOENT)
		warnmsg("chown %s: %s", conf->seal_key_file, strerror(errno));
	snprintf(path, sizeof(path), "%s/signing", conf->state_dir);
	if (lchown(path, st.st_uid, st.st_gid) != 0 || (d = opendir(path)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		char f[4096 + 256];

		if (de->d_name[0] == '.')
			continue;
		snprintf(f, sizeof(f), "%s/%s", path, de->d_name);
		if (lchown(f, st.st_uid, st.st_gid) != 0)
			warnmsg("chown %s: %s", f, strerror(errno));
	}
	closedir(d);
}

/* cmd_stats - the running milter's counters, through its control socket */
static int
cmd_stats(const struct kmilter_conf *conf)
{
	char out[8192], err[512];

	if (ctlproto_ask(conf->control_socket, "stats", out, sizeof(out), err,
	    sizeof(err)) != 0) {
		warnmsg("%s", err);
		return EX_UNREACH;
	}
	fputs(out, stdout);
	return EX_OK_;
}

/* read_all - read a whole file (at most FILE_MAX bytes) */
static unsigned char *
read_all(const char *path, size_t *len)
{
	unsigned char *buf;
	FILE *f;
	size_t n;

	*len = 0;
	if ((f = fopen(path, "rb")) == NULL) {
		warnmsg("%s: %s", path, strerror(errno));
		return NULL;
	}
	if ((buf = malloc(FILE_MAX + 1)) == NULL) {
		fclose(f);
		warnmsg("out of memory");
		return NULL;
	}
	n = fread(buf, 1, FILE_MAX + 1, f);
	if (ferror(f) || n == 0 || n > FILE_MAX) {
		warnmsg("%s: %s", path, ferror(f) ? strerror(errno) :
		    n == 0 ? "empty file" : "file too large");
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	*len = n;
	return buf;
}

/* read_password - a password from a file descriptor or file, in secmem;
 * the trailing newline is dropped */
static char *
read_password(const struct opts *o, size_t *len)
{
	char *pw;
	ssize_t r;
	size_t n = 0;
	int fd = o->pwfd, opened = 0;

	*len = 0;
	if (o->pwfile != NULL) {
		if ((fd = open(o->pwfile, O_RDONLY | O_CLOEXEC)) == -1) {
			warnmsg("%s: %s", o->pwfile, strerror(errno));
			return NULL;
		}
		opened = 1;
	}
	if ((pw = secmem_alloc(PW_MAX + 1)) == NULL) {
		if (opened)
			close(fd);
		warnmsg("out of memory");
		return NULL;
	}
	while (n < PW_MAX) {
		r = read(fd, pw + n, PW_MAX - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			warnmsg("cannot read the password: %s",
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
		warnmsg("no terminal to read the password from: use "
		    "--password-fd or --password-file");
		return NULL;
	}
	if ((pw = secmem_alloc(PW_MAX + 1)) == NULL) {
		close(fd);
		warnmsg("out of memory");
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
		warnmsg("cannot turn off echo on the terminal");
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
			warnmsg("password too long");
		secmem_free(pw, PW_MAX + 1);
		return NULL;
	}
	while (n > 0 && pw[n - 1] == '\r')
		pw[--n] = '\0';
	*len = n;
	return pw;
}

/* get_password - the protection password from --password-fd/-file or the
 * terminal (twice when isnew, compared); a new one is checked so that the
 * hook can hand it back.  secmem: secmem_free(pw, PW_MAX + 1). */
static char *
get_password(const struct opts *o, int isnew, size_t *len)
{
	char *pw, *again;
	size_t i, alen;

	if (o->pwfd >= 0 || o->pwfile != NULL)
		pw = read_password(o, len);
	else {
		pw = read_tty(isnew ? "New protection password: " :
		    "Protection password: ", len);
		if (pw != NULL && isnew) {
			if ((again = read_tty("Again: ", &alen)) == NULL) {
				secmem_free(pw, PW_MAX + 1);
				return NULL;
			}
			if (alen != *len || memcmp(pw, again, alen) != 0) {
				warnmsg("the passwords differ");
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
		warnmsg("empty password");
		goto fail;
	}
	if (!isnew)
		return pw;
	if (*len < PW_MIN_NEW || *len > PW_MAX_NEW) {
		warnmsg("a protection password has %d to %d characters",
		    PW_MIN_NEW, PW_MAX_NEW);
		goto fail;
	}
	for (i = 0; i < *len; i++) {
		unsigned char ch = (unsigned char)pw[i];

		if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
			warnmsg("the password contains a control character "
			    "(the hook could not hand it back)");
			goto fail;
		}
	}
	return pw;
fail:
	secmem_free(pw, PW_MAX + 1);
	*len = 0;
	return NULL;
}

/* no_pass - PEM password callback that refuses (keys must be plain) */
static int
no_pass(char *buf, int size, int rw, void *u)
{
	(void)buf;
	(void)size;
	(void)rw;
	(void)u;
	return -1;
}

/* load_org_ca - the organization CA certificate and key from the config */
static int
load_org_ca(const struct kmilter_conf *conf, X509 **cert, EVP_PKEY **key)
{
	FILE *f;

	*cert = NULL;
	*key = NULL;
	if (conf->org_ca_cert[0] == '\0' || conf->org_ca_key[0] == '\0') {
		warnmsg("km.org_ca_cert and km.org_ca_key must be set to "
		    "issue certificates");
		return -1;
	}
	if ((f = fopen(conf->org_ca_cert, "r")) == NULL) {
		warnmsg("%s: %s", conf->org_ca_cert, strerror(errno));
		return -1;
	}
	*cert = PEM_read_X509(f, NULL, no_pass, NULL);
	fclose(f);
	if (*cert == NULL) {
		ERR_clear_error();
		warnmsg("%s: not a PEM certificate", conf->org_ca_cert);
		return -1;
	}
	if ((f = fopen(conf->org_ca_key, "r")) == NULL) {
		warnmsg("%s: %s", conf->org_ca_key, strerror(errno));
		goto fail;
	}
	*key = PEM_read_PrivateKey(f, NULL, no_pass, NULL);
	fclose(f);
	if (*key == NULL) {
		ERR_clear_error();
		warnmsg("%s: not an unencrypted PEM private key",
		    conf->org_ca_key);
		goto fail;
	}
	return 0;
fail:
	X509_free(*cert);
	*cert = NULL;
	return -1;
}

/* open_km - the key model handle, or NULL after a message */
static struct keymodel *
open_km(const struct kmilter_conf *conf)
{
	struct keymodel *km;
	char err[512];

	if ((km = keymodel_new(conf, err, sizeof(err))) == NULL)
		warnmsg("%s", err);
	return km;
}

/* cmd_enroll - enroll or renew: a new generation issued by the org CA */
static int
cmd_enroll(const struct kmilter_conf *conf, const struct opts *o,
    const char *addr, int renew)
{
	struct keymodel *km = NULL;
	X509 *ca = NULL;
	EVP_PKEY *cakey = NULL;
	char err[512], *pw = NULL;
	size_t pwlen = 0;
	enum km_status st;
	int gen = 0, rc = EX_FAIL;

	if (o->protect && renew) {
		warnmsg("renew: --protect is for enroll (see set-password)");
		return EX_USAGE_;
	}
	if (!o->protect && (o->pwfd >= 0 || o->pwfile != NULL)) {
		warnmsg("%s: a password is only read with --protect",
		    renew ? "renew" : "enroll");
		return EX_USAGE_;
	}
	if (o->protect && (pw = get_password(o, 1, &pwlen)) == NULL)
		return EX_FAIL;
	if (load_org_ca(conf, &ca, &cakey) != 0)
		goto out;
	if ((km = open_km(conf)) == NULL)
		goto out;
	if (renew)
		st = keymodel_renew(km, addr, ca, cakey, o->keytype, o->days,
		    &gen, err, sizeof(err));
	else
		st = keymodel_enroll_protected(km, addr, ca, cakey, o->keytype,
		    o->days, pw, pwlen, &gen, err, sizeof(err));
	if (st != KM_OK) {
		warnmsg("%s %s: %s", renew ? "renew" : "enroll", addr, err);
		rc = exit_for(st, err);
		goto out;
	}
	after_change(conf, addr);
	printf("%s: generation %d is Active%s\n", addr, gen,
	    pw != NULL ? ", protection enhanced" : "");
	rc = EX_OK_;
out:
	secmem_free(pw, pw != NULL ? PW_MAX + 1 : 0);
	keymodel_free(km);
	X509_free(ca);
	EVP_PKEY_free(cakey);
	return rc;
}

/* cmd_password - set-password (set 1) or clear-password (set 0): every
 * usable generation of addr re-escrowed at the other protection level */
static int
cmd_password(const struct kmilter_conf *conf, const struct opts *o,
    const char *addr, int set)
{
	struct keymodel *km = NULL;
	char err[512], *pw;
	size_t pwlen = 0;
	enum km_status st;
	int n = 0, rc;

	if ((pw = get_password(o, set, &pwlen)) == NULL)
		return EX_FAIL;
	if ((km = open_km(conf)) == NULL) {
		secmem_free(pw, PW_MAX + 1);
		return EX_FAIL;
	}
	if (set)
		st = keymodel_set_password(km, addr, pw, pwlen, &n, err,
		    sizeof(err));
	else
		st = keymodel_clear_password(km, addr, pw, pwlen, &n, err,
		    sizeof(err));
	secmem_free(pw, PW_MAX + 1);
	keymodel_free(km);
	if (st != KM_OK) {
		if (n > 0)		/* some generations did change */
			after_change(conf, addr);
		warnmsg("%s %s: %s", set ? "set-password" : "clear-password",
		    addr, err);
		return exit_for(st, err);
	}
	rc = after_change(conf, addr);	/* also when nothing changed */
	printf("%s: protection %s (%d generation%s changed)\n", addr,
	    set ? "enhanced" : "default", n, n == 1 ? "" : "s");
	return rc;
}

/* cmd_revoke - revoke one generation, or all */
static int
cmd_revoke(const struct kmilter_conf *conf, const char *addr,
    const char *genarg)
{
	struct keymodel *km;
	char err[512], *end;
	enum km_status st;
	long gen = 0;
	int n = 0;

	if (genarg != NULL) {
		errno = 0;
		gen = strtol(genarg, &end, 10);
		if (errno != 0 || *end != '\0' || gen < 1 ||
		    gen > KEYMODEL_GEN_MAX) {
			warnmsg("revoke: bad generation \"%s\"", genarg);
			return EX_USAGE_;
		}
	}
	if ((km = open_km(conf)) == NULL)
		return EX_FAIL;
	st = keymodel_revoke(km, addr, (int)gen, &n, err, sizeof(err));
	keymodel_free(km);
	if (n > 0)
		after_change(conf, addr);
	if (st != KM_OK) {
		warnmsg("revoke %s: %s", addr, err);
		return exit_for(st, err);
	}
	printf("%s: %d generation%s revoked\n", addr, n, n == 1 ? "" : "s");
	return EX_OK_;
}

/* cmd_import - a PKCS#12 (key + certificate) or a certificate alone */
static int
cmd_import(const struct kmilter_conf *conf, const struct opts *o,
    const char *addr, const char *file)
{
	struct keymodel *km = NULL;
	unsigned char *buf;
	const unsigned char *p;
	PKCS12 *p12;
	char err[512], *pw = NULL;
	size_t len, pwlen = 0;
	enum km_status st;
	int gen = 0, rc = EX_FAIL, is_p12;

	if ((buf = read_all(file, &len)) == NULL)
		return EX_FAIL;
	p = buf;
	p12 = d2i_PKCS12(NULL, &p, (long)len);
	is_p12 = p12 != NULL;
	PKCS12_free(p12);
	ERR_clear_error();
	if (is_p12 && (o->pwfd >= 0 || o->pwfile != NULL) &&
	    (pw = read_password(o, &pwlen)) == NULL)
		goto out;
	if (!is_p12 && (o->pwfd >= 0 || o->pwfile != NULL))
		warnmsg("%s is not PKCS#12: password ignored", file);
	if ((km = open_km(conf)) == NULL)
		goto out;
	if (is_p12)
		st = keymodel_import_p12(km, addr, buf, len, pw ? pw : "",
		    pwlen, &gen, err, sizeof(err));
	else
		st = keymodel_import_cert(km, addr, buf, len, &gen, err,
		    sizeof(err));
	if (st != KM_OK) {
		warnmsg("import %s: %s", addr, err);
		rc = exit_for(st, err);
		goto out;
	}
	after_change(conf, addr);
	printf("%s: imported %s as generation %d\n", addr,
	    is_p12 ? "key and certificate" : "certificate", gen);
	rc = EX_OK_;
out:
	keymodel_free(km);
	secmem_free(pw, pw != NULL ? PW_MAX + 1 : 0);
	free(buf);
	return rc;
}

/* fmt_time - ISO 8601 UTC */
static const char *
fmt_time(time_t t, char *buf, size_t len)
{
	struct tm tm;

	if (t == 0 || gmtime_r(&t, &tm) == NULL)
		return "?";
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

/* cmd_show - every generation, its state and certificate: no key material */
static int
cmd_show(const struct kmilter_conf *conf, const char *addr)
{
	struct keymodel *km;
	struct keymodel_info *v = NULL;
	char err[512], t1[32], t2[32];
	enum km_status st;
	size_t n = 0, i;
	int plain = 0, enhanced = 0;

	if ((km = open_km(conf)) == NULL)
		return EX_FAIL;
	st = keymodel_show(km, addr, &v, &n, err, sizeof(err));
	keymodel_free(km);
	if (st != KM_OK) {
		warnmsg("show %s: %s", addr, err);
		return exit_for(st, err);
	}
	for (i = 0; i < n; i++) {
		printf("%s generation %d state %s key %s protection %s "
		    "type %s\n", addr, v[i].generation,
		    kmip_state_name(v[i].state), v[i].has_key ? "escrowed" :
		    "none", v[i].has_key ? (v[i].enhanced ? "enhanced" :
		    "default") : "-", v[i].key_type[0] ? v[i].key_type : "?");
		printf("  valid %s .. %s\n", fmt_time(v[i].not_before, t1,
		    sizeof(t1)), fmt_time(v[i].not_after, t2, sizeof(t2)));
		printf("  sha256 %s\n", v[i].sha256);
		printf("  subject %s\n", v[i].subject);
		printf("  issuer %s\n", v[i].issuer);
		printf("  serial %s\n", v[i].serial);
		if (v[i].has_key && (v[i].state == KMIP_STATE_ACTIVE ||
		    v[i].state == KMIP_STATE_DEACTIVATED)) {
			if (v[i].enhanced)
				enhanced++;
			else
				plain++;
		}
	}
	if (plain + enhanced > 0)	/* the level of the usable keys */
		printf("%s level %s\n", addr, enhanced == 0 ? "default" :
		    plain == 0 ? "enhanced" : "mixed");
	keymodel_infos_free(v);
	return EX_OK_;
}

/* cmd_export_cert - the current certificate, PEM, on stdout */
static int
cmd_export_cert(const struct kmilter_conf *conf, const char *addr)
{
	struct keymodel *km;
	X509 *x = NULL;
	char err[512];
	enum km_status st;

	if ((km = open_km(conf)) == NULL)
		return EX_FAIL;
	st = keymodel_current_cert(km, addr, &x, err, sizeof(err));
	keymodel_free(km);
	if (st != KM_OK) {
		warnmsg("export-cert %s: %s", addr, err);
		return exit_for(st, err);
	}
	if (PEM_write_X509(stdout, x) != 1 || fflush(stdout) != 0) {
		X509_free(x);
		warnmsg("export-cert: cannot write the certificate");
		return EX_FAIL;
	}
	X509_free(x);
	return EX_OK_;
}

/* ensure_seal_key - load the gateway key, creating it when missing */
static struct seal_key *
ensure_seal_key(const struct kmilter_conf *conf, int create, int *created)
{
	char path[PATH_MAX], err[512];
	struct seal_key *sk;

	*created = 0;
	if (signstore_seal_key_path(conf, path, sizeof(path)) != KM_OK) {
		warnmsg("no cache.seal_key_file and no milter.state_dir");
		return NULL;
	}
	if (create && access(path, F_OK) != 0 && errno == ENOENT) {
		if (conf->state_dir[0] != '\0' &&
		    mkdir(conf->state_dir, 0700) != 0 && errno != EEXIST) {
			warnmsg("%s: %s", conf->state_dir, strerror(errno));
			return NULL;
		}
		if (seal_key_create(path, err, sizeof(err)) != KM_OK) {
			warnmsg("%s", err);
			return NULL;
		}
		*created = 1;
	}
	if ((sk = seal_key_load(path, err, sizeof(err))) == NULL)
		warnmsg("%s", err);
	return sk;
}

/* cmd_keygen - create the gateway key file if it is missing */
static int
cmd_keygen(const struct kmilter_conf *conf)
{
	struct seal_key *sk;
	char path[PATH_MAX];
	int created;

	if ((sk = ensure_seal_key(conf, 1, &created)) == NULL)
		return EX_FAIL;
	seal_key_free(sk);
	signstore_seal_key_path(conf, path, sizeof(path));
	printf("%s: %s\n", path, created ? "created" : "exists, kept");
	return EX_OK_;
}

/* cmd_signing_enroll - this gateway's signing key and certificate */
static int
cmd_signing_enroll(const struct kmilter_conf *conf, const struct opts *o,
    const char *addr)
{
	struct seal_key *sk;
	X509 *ca = NULL, *cert = NULL;
	EVP_PKEY *cakey = NULL, *key = NULL;
	char err[512], fp[96];
	enum km_status st;
	int created, rc = EX_FAIL;

	if (load_org_ca(conf, &ca, &cakey) != 0)
		return EX_FAIL;
	if ((sk = ensure_seal_key(conf, 1, &created)) == NULL)
		goto out;
	if (mkdir(conf->state_dir, 0700) != 0 && errno != EEXIST) {
		warnmsg("%s: %s", conf->state_dir, strerror(errno));
		goto out;
	}
	if ((st = signstore_enroll(conf->state_dir, sk, addr, ca, cakey,
	    o->keytype, o->days, err, sizeof(err))) != KM_OK ||
	    (st = signstore_load(conf->state_dir, sk, addr, &cert, &key, NULL,
	    err, sizeof(err))) != KM_OK) {
		warnmsg("signing-enroll %s: %s", addr, err);
		rc = EX_FAIL;
		goto out;
	}
	keymodel_cert_fingerprint(cert, fp, sizeof(fp));
	printf("%s: signing certificate sha256 %s\n", addr, fp);
	after_change(conf, addr);	/* a gateway may have cached "no signing key" */
	rc = EX_OK_;
out:
	X509_free(cert);
	EVP_PKEY_free(key);
	seal_key_free(sk);
	X509_free(ca);
	EVP_PKEY_free(cakey);
	return rc;
}

/* cmd_ping - Discover Versions on both KM servers, timed */
static int
cmd_ping(const struct kmilter_conf *conf)
{
	struct keymodel *km;
	char err[512], ver[16];
	double ms;
	int i, rc = EX_OK_;

	if ((km = open_km(conf)) == NULL)
		return EX_FAIL;
	for (i = 0; i < 2; i++) {
		enum km_status st = keymodel_ping(km, i, &ms, ver,
		    sizeof(ver), err, sizeof(err));

		if (st == KM_OK)
			printf("%s %s:%d: OK KMIP %s, %.1f ms\n",
			    keymodel_server_name(km, i),
			    conf->km_servers[i].host,
			    conf->km_servers[i].port, ver, ms);
		else {
			printf("%s %s:%d: error: %s\n",
			    keymodel_server_name(km, i),
			    conf->km_servers[i].host,
			    conf->km_servers[i].port, err);
			if (rc == EX_OK_)
				rc = st == KM_TEMPFAIL ? EX_UNREACH : EX_FAIL;
		}
	}
	keymodel_free(km);
	return rc;
}

/* main - parse options, load the configuration, run one command */
int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "days", required_argument, NULL, 'd' },
		{ "password-fd", required_argument, NULL, 'P' },
		{ "password-file", required_argument, NULL, 'F' },
		{ "protect", no_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct opts o = { KMILTER_CONF, NULL, 0, -1, NULL, 0 };
	struct kmilter_conf *conf;
	const char *cmd, *a1, *a2;
	char err[2048], *end, **subv;
	int ch, nargs, rc, subc;
	long v;

	log_init("kmctl", 0, 1, 0);
	while ((ch = getopt(argc, argv, "+c:hV")) != -1) {
		switch (ch) {
		case 'c':
			o.config = optarg;
			break;
		case 'V':
			printf("kmctl %s\n", KMILTER_VERSION);
			return EX_OK_;
		case 'h':
			usage();
			return EX_OK_;
		default:
			return usage();
		}
	}
	if (optind >= argc)
		return usage();
	/* the command word is argv[0] of its own option scan, so options may
	 * come before or after the command's arguments */
	subv = argv + optind;
	subc = argc - optind;
	cmd = subv[0];
	optind = 0;			/* full reset of glibc's getopt */
	while ((ch = getopt_long(subc, subv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'k':
			o.keytype = optarg;
			break;
		case 'd':
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno || *end || v < 1 || v > 36500) {
				warnmsg("bad --days \"%s\"", optarg);
				return EX_USAGE_;
			}
			o.days = (int)v;
			break;
		case 'P':
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno || *end || v < 0 || v > INT_MAX) {
				warnmsg("bad --password-fd \"%s\"", optarg);
				return EX_USAGE_;
			}
			o.pwfd = (int)v;
			break;
		case 'F':
			o.pwfile = optarg;
			break;
		case 'p':
			o.protect = 1;
			break;
		default:
			return usage();
		}
	}
	nargs = subc - optind;
	a1 = nargs > 0 ? subv[optind] : NULL;
	a2 = nargs > 1 ? subv[optind + 1] : NULL;
	if (o.pwfd >= 0 && o.pwfile != NULL) {
		warnmsg("--password-fd and --password-file exclude each other");
		return EX_USAGE_;
	}
	if (o.keytype != NULL && strcmp(o.keytype, "rsa2048") != 0 &&
	    strcmp(o.keytype, "rsa3072") != 0 &&
	    strcmp(o.keytype, "ec-p256") != 0) {
		warnmsg("unknown key type \"%s\" (rsa2048, rsa3072, ec-p256)",
		    o.keytype);
		return EX_USAGE_;
	}

#define NEED(lo, hi) do {						\
	if (nargs < (lo) || nargs > (hi))				\
		return usage();						\
} while (0)
	if (strcmp(cmd, "enroll") == 0 || strcmp(cmd, "renew") == 0 ||
	    strcmp(cmd, "show") == 0 || strcmp(cmd, "export-cert") == 0 ||
	    strcmp(cmd, "signing-enroll") == 0 ||
	    strcmp(cmd, "set-password") == 0 ||
	    strcmp(cmd, "clear-password") == 0)
		NEED(1, 1);
	else if (strcmp(cmd, "revoke") == 0)
		NEED(1, 2);
	else if (strcmp(cmd, "import") == 0)
		NEED(2, 2);
	else if (strcmp(cmd, "flush") == 0)
		NEED(1, 1);
	else if (strcmp(cmd, "ping") == 0 || strcmp(cmd, "keygen") == 0 ||
	    strcmp(cmd, "stats") == 0)
		NEED(0, 0);
	else {
		warnmsg("unknown command \"%s\"", cmd);
		return usage();
	}
	if (a1 != NULL) {		/* check the address before any work */
		char norm[KEYMODEL_ADDR_MAX + 1];

		if (keymodel_addr_normalize(a1, norm, sizeof(norm), err,
		    sizeof(err)) != KM_OK) {
			warnmsg("%s", err);
			return EX_USAGE_;
		}
	}
	if ((conf = conf_load(o.config, err, sizeof(err))) == NULL) {
		warnmsg("%s", err);
		return EX_FAIL;
	}
	/* An administrator's command may wait for Redis longer than a
	 * message may: an invalidation that times out would leave gateways
	 * with stale keys. */
	if (conf->redis_connect_timeout_ms < 2000)
		conf->redis_connect_timeout_ms = 2000;
	if (conf->redis_command_timeout_ms < 2000)
		conf->redis_command_timeout_ms = 2000;
	if (strcmp(cmd, "enroll") == 0)
		rc = cmd_enroll(conf, &o, a1, 0);
	else if (strcmp(cmd, "renew") == 0)
		rc = cmd_enroll(conf, &o, a1, 1);
	else if (strcmp(cmd, "set-password") == 0)
		rc = cmd_password(conf, &o, a1, 1);
	else if (strcmp(cmd, "clear-password") == 0)
		rc = cmd_password(conf, &o, a1, 0);
	else if (strcmp(cmd, "revoke") == 0)
		rc = cmd_revoke(conf, a1, a2);
	else if (strcmp(cmd, "import") == 0)
		rc = cmd_import(conf, &o, a1, a2);
	else if (strcmp(cmd, "show") == 0)
		rc = cmd_show(conf, a1);
	else if (strcmp(cmd, "export-cert") == 0)
		rc = cmd_export_cert(conf, a1);
	else if (strcmp(cmd, "signing-enroll") == 0)
		rc = cmd_signing_enroll(conf, &o, a1);
	else if (strcmp(cmd, "ping") == 0)
		rc = cmd_ping(conf);
	else if (strcmp(cmd, "flush") == 0)
		rc = after_change(conf, a1);
	else if (strcmp(cmd, "stats") == 0)
		rc = cmd_stats(conf);
	else
		rc = cmd_keygen(conf);
	if (strcmp(cmd, "keygen") == 0 || strcmp(cmd, "signing-enroll") == 0)
		give_to_state_owner(conf);
	conf_unref(conf);
	return rc;
}
