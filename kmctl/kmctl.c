/*
 * kmctl.c - the administrator's tool for kmilter's keys: enroll, renew,
 * revoke, import, show and export users' encryption keys in the KM (see
 * keymodel.h), enroll this gateway's signing keys (signstore.h), check the
 * KM servers, create the gateway key.  Exit codes: see kmctl.8.  This file
 * parses the command line and runs one command of the table below; the
 * commands are in cmd_*.c (cmd.h).
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "conf.h"
#include "keymodel_name.h"
#include "kmctl.h"
#include "log.h"

#ifndef KMILTER_CONF
#define KMILTER_CONF	"/etc/kmilter/kmilter.conf"
#endif

/* One command: its word, how many arguments it takes, what runs it and
 * whether it leaves files in the state directory (given to its owner). */
struct command {
	const char	*name;
	int		 min, max;
	int		(*run)(const struct kmilter_conf *, const struct opts *,
			    const char *, const char *);
	int		 state_files;
};

static const struct command commands[] = {
	{ "enroll",		1, 1, cmd_enroll,		0 },
	{ "renew",		1, 1, cmd_renew,		0 },
	{ "set-password",	1, 1, cmd_set_password,		0 },
	{ "clear-password",	1, 1, cmd_clear_password,	0 },
	{ "revoke",		1, 2, cmd_revoke,		0 },
	{ "import",		2, 2, cmd_import,		0 },
	{ "show",		1, 1, cmd_show,			0 },
	{ "export-cert",	1, 1, cmd_export_cert,		0 },
	{ "signing-enroll",	1, 1, cmd_signing_enroll,	1 },
	{ "ping",		0, 0, cmd_ping,			0 },
	{ "flush",		1, 1, cmd_flush,		0 },
	{ "stats",		0, 0, cmd_stats,		0 },
	{ "keygen",		0, 0, cmd_keygen,		1 },
};

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
		kmctl_warn("chown %s: %s", conf->seal_key_file, strerror(errno));
	snprintf(path, sizeof(path), "%s/signing", conf->state_dir);
	if (lchown(path, st.st_uid, st.st_gid) != 0 || (d = opendir(path)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		char f[4096 + 256];

		if (de->d_name[0] == '.')
			continue;
		snprintf(f, sizeof(f), "%s/%s", path, de->d_name);
		if (lchown(f, st.st_uid, st.st_gid) != 0)
			kmctl_warn("chown %s: %s", f, strerror(errno));
	}
	closedir(d);
}

/* parse_global - the options before the command word: -c, -h, -V.
 * Returns -1 to go on, else the exit code. */
static int
parse_global(int argc, char **argv, struct opts *o)
{
	int ch;

	while ((ch = getopt(argc, argv, "+c:hV")) != -1) {
		switch (ch) {
		case 'c':
			o->config = optarg;
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
	return -1;
}

/* parse_number - an option's integer in [lo, hi], or -1 after a message */
static int
parse_number(const char *opt, const char *arg, long lo, long hi, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || *end || v < lo || v > hi) {
		kmctl_warn("bad %s \"%s\"", opt, arg);
		return -1;
	}
	*out = (int)v;
	return 0;
}

/* parse_command - the command's options, anywhere among its arguments
 * (subv[0] is the command word, argv[0] of its own option scan), checked
 * together.  Returns -1 to go on, else the exit code. */
static int
parse_command(int subc, char **subv, struct opts *o)
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
	int ch;

	optind = 0;			/* full reset of glibc's getopt */
	while ((ch = getopt_long(subc, subv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'k':
			o->keytype = optarg;
			break;
		case 'd':
			if (parse_number("--days", optarg, 1, 36500,
			    &o->days) != 0)
				return EX_USAGE_;
			break;
		case 'P':
			if (parse_number("--password-fd", optarg, 0, INT_MAX,
			    &o->pwfd) != 0)
				return EX_USAGE_;
			break;
		case 'F':
			o->pwfile = optarg;
			break;
		case 'p':
			o->protect = 1;
			break;
		default:
			return usage();
		}
	}
	if (o->pwfd >= 0 && o->pwfile != NULL) {
		kmctl_warn("--password-fd and --password-file exclude each other");
		return EX_USAGE_;
	}
	if (o->keytype != NULL && strcmp(o->keytype, "rsa2048") != 0 &&
	    strcmp(o->keytype, "rsa3072") != 0 &&
	    strcmp(o->keytype, "ec-p256") != 0) {
		kmctl_warn("unknown key type \"%s\" (rsa2048, rsa3072, ec-p256)",
		    o->keytype);
		return EX_USAGE_;
	}
	return -1;
}

/* find_command - the table entry of name, or NULL after a message */
static const struct command *
find_command(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	kmctl_warn("unknown command \"%s\"", name);
	return NULL;
}

/* run - load the configuration and run one command */
static int
run(const struct command *c, const struct opts *o, const char *a1,
    const char *a2)
{
	struct kmilter_conf *conf;
	char err[2048];
	int rc;

	if ((conf = conf_load(o->config, err, sizeof(err))) == NULL) {
		kmctl_warn("%s", err);
		return EX_FAIL;
	}
	/* An administrator's command may wait for Redis longer than a
	 * message may: an invalidation that times out would leave gateways
	 * with stale keys. */
	if (conf->redis_connect_timeout_ms < 2000)
		conf->redis_connect_timeout_ms = 2000;
	if (conf->redis_command_timeout_ms < 2000)
		conf->redis_command_timeout_ms = 2000;
	rc = c->run(conf, o, a1, a2);
	if (c->state_files)
		give_to_state_owner(conf);
	conf_unref(conf);
	return rc;
}

/* main - parse options, check the arguments, run one command */
int
main(int argc, char **argv)
{
	struct opts o = { KMILTER_CONF, NULL, 0, -1, NULL, 0 };
	const struct command *c;
	const char *a1, *a2;
	char **subv;
	int nargs, rc, subc;

	log_init("kmctl", 0, 1, 0);
	if ((rc = parse_global(argc, argv, &o)) >= 0)
		return rc;
	subv = argv + optind;
	subc = argc - optind;
	if ((rc = parse_command(subc, subv, &o)) >= 0)
		return rc;
	nargs = subc - optind;
	a1 = nargs > 0 ? subv[optind] : NULL;
	a2 = nargs > 1 ? subv[optind + 1] : NULL;
	if ((c = find_command(subv[0])) == NULL)
		return usage();
	if (nargs < c->min || nargs > c->max)
		return usage();
	if (a1 != NULL) {		/* check the address before any work */
		char norm[KEYMODEL_ADDR_MAX + 1];
		struct kmerr err;

		if (keymodel_addr_normalize(a1, norm, sizeof(norm), &err) !=
		    KM_OK) {
			kmctl_warn("%s", err.msg);
			return EX_USAGE_;
		}
	}
	return run(c, &o, a1, a2);
}
