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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "conf.h"
#include "domain.h"
#include "keymodel_name.h"
#include "kmctl.h"
#include "log.h"

#ifndef KMILTER_CONF
#define KMILTER_CONF	"/etc/kmilter/kmilter.conf"
#endif

/* One command: its word, how many arguments it takes, what runs it,
 * whether it leaves files in the state directory (given to its owner),
 * whether its address must be internal (unless --force), and its usage. */
struct command {
	const char	*name;
	int		 min, max;
	int		(*run)(const struct kmilter_conf *, const struct opts *,
			    const char *, const char *);
	int		 state_files;
	int		 internal;
	const char	*args;
	const char	*what;
};

static const struct command commands[] = {
	{ "enroll", 0, 1, cmd_enroll, 0, 1,
	    "ADDR [--key rsa2048|rsa3072|ec-p256] [--days N] [--protect] [--force]\n"
	    "      | --from FILE|- [--jobs N] [--key TYPE] [--days N] [--force]",
	    "a first key pair for an internal user (--from: one per line of FILE)" },
	{ "renew", 1, 1, cmd_renew, 0, 0, "ADDR [--key TYPE] [--days N]",
	    "a new generation, the current one deactivated" },
	{ "revoke", 1, 2, cmd_revoke, 0, 0, "ADDR [GENERATION] [--ban]",
	    "revoke one generation, or all (--ban: and bar ADDR from enrollment)" },
	{ "unban", 1, 1, cmd_unban, 0, 0, "ADDR", "lift revoke --ban" },
	{ "export", 1, 1, cmd_export, 0, 0, "ADDR --p12 FILE [--password-fd N | "
	    "--password-file F] [--protection-password-fd N | "
	    "--protection-password-file F] [--legacy]",
	    "ADDR's current key and certificate, with the org chain, as PKCS#12" },
	{ "retire-gateway", 1, 1, cmd_retire_gateway, 0, 0, "NAME",
	    "revoke every signing certificate gateway NAME issued, for good" },
	{ "import", 2, 2, cmd_import, 0, 0,
	    "ADDR FILE.p12|CERT.pem|CERT.der [--password-fd N | --password-file F]",
	    "a PKCS#12 (key and certificate) or a certificate alone" },
	{ "set-password", 1, 1, cmd_set_password, 0, 0,
	    "ADDR [--password-fd N | --password-file F]", "protect ADDR's keys with a password" },
	{ "clear-password", 1, 1, cmd_clear_password, 0, 0,
	    "ADDR [--password-fd N | --password-file F]", "back to default protection" },
	{ "show", 1, 1, cmd_show, 0, 0, "ADDR", "ADDR's generations" },
	{ "export-cert", 1, 1, cmd_export_cert, 0, 0, "ADDR", "ADDR's current certificate (PEM)" },
	{ "list", 0, 0, cmd_list, 0, 0, "[--expiring DAYS]",
	    "the users enrolled in the KM: level, generations, expiry" },
	{ "maintain", 0, 0, cmd_maintain, 1, 0, "[--days N]",
	    "renew what expires within N days (30), delete expired signing keys" },
	{ "signing-enroll", 1, 1, cmd_signing_enroll, 1, 1,
	    "ADDR [--key TYPE] [--days N] [--yes] [--force] [--password-fd N | --password-file F]",
	    "this gateway's signing key for an internal address" },
	{ "flush", 1, 1, cmd_flush, 0, 0, "ADDR", "drop ADDR's cached entries on every gateway" },
	{ "stats", 0, 0, cmd_stats, 0, 0, "[--format text|prometheus]",
	    "counters of the running kmilter" },
	{ "ping", 0, 0, cmd_ping, 0, 0, "", "check both KM servers" },
	{ "keygen", 0, 0, cmd_keygen, 1, 0, "", "create the gateway seal key" },
};

#define NCOMMANDS	(sizeof(commands) / sizeof(commands[0]))

/* usage_to - the synopsis of every command to fp */
static void
usage_to(FILE *fp)
{
	fprintf(fp, "usage: kmctl [-c config] command [args]\n"
	    "       kmctl -h | --help | -V\n"
	    "       kmctl command --help\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(fp, "  %s%s%s\n      %s\n", commands[i].name,
		    *commands[i].args ? " " : "", commands[i].args, commands[i].what);
}

/* command_usage - one command's usage line to fp */
static void
command_usage(FILE *fp, const struct command *c)
{
	fprintf(fp, "usage: kmctl [-c config] %s%s%s\n", c->name, *c->args ? " " : "",
	    c->args);
}

/* usage_error - what was wrong, then the command's usage line; exit code 2 */
static int __attribute__((format(printf, 2, 3)))
usage_error(const struct command *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	kmctl_warn("%s", msg);
	if (c != NULL)
		command_usage(stderr, c);
	else
		fprintf(stderr, "usage: kmctl [-c config] command [args] (kmctl --help "
		    "lists the commands)\n");
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

/* parse_global - the options before the command word: -c, -h/--help, -V.
 * Returns -1 to go on, else the exit code. */
static int
parse_global(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	int ch;

	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+:c:hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o->config = optarg;
			break;
		case 'V':
			printf("kmctl %s\n", KMILTER_VERSION);
			return EX_OK_;
		case 'h':
			usage_to(stdout);
			return EX_OK_;
		case ':':
			return usage_error(NULL, "option -%c needs an argument", optopt);
		default:
			return usage_error(NULL, "unknown option \"%s\"", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return usage_error(NULL, "no command given");
	return -1;
}

/* parse_number - an option's integer in [lo, hi], or -1 */
static int
parse_number(const char *arg, long lo, long hi, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return -1;
	*out = (int)v;
	return 0;
}

/* check_option_pairs - options that exclude each other, the key type; -1 if fine, else the exit code */
static int
check_option_pairs(const struct command *c, const struct opts *o)
{
	if (o->pwfd >= 0 && o->pwfile != NULL)
		return usage_error(c, "%s: --password-fd and --password-file "
		    "exclude each other", c->name);
	if (o->protfd >= 0 && o->protfile != NULL)
		return usage_error(c, "%s: --protection-password-fd and "
		    "--protection-password-file exclude each other", c->name);
	if (o->keytype != NULL && strcmp(o->keytype, "rsa2048") != 0 &&
	    strcmp(o->keytype, "rsa3072") != 0 &&
	    strcmp(o->keytype, "ec-p256") != 0)
		return usage_error(c, "%s: unknown key type \"%s\" (rsa2048, "
		    "rsa3072, ec-p256)", c->name, o->keytype);
	return -1;
}

/* the options of commands (parse_command checks which go with which) */
static const struct option command_options[] = {
	{ "key", required_argument, NULL, 'k' },
	{ "days", required_argument, NULL, 'd' },
	{ "password-fd", required_argument, NULL, 'P' },
	{ "password-file", required_argument, NULL, 'F' },
	{ "protect", no_argument, NULL, 'p' },
	{ "force", no_argument, NULL, 'f' },
	{ "yes", no_argument, NULL, 'y' },
	{ "format", required_argument, NULL, 'o' },
	{ "expiring", required_argument, NULL, 'e' },
	{ "from", required_argument, NULL, 'r' },
	{ "jobs", required_argument, NULL, 'j' },
	{ "help", no_argument, NULL, 'h' },
	/* export, revoke --ban */
	{ "p12", required_argument, NULL, '1' },
	{ "protection-password-fd", required_argument, NULL, '2' },
	{ "protection-password-file", required_argument, NULL, '3' },
	{ "ban", no_argument, NULL, 'b' },
	{ "legacy", no_argument, NULL, 'L' },
	{ NULL, 0, NULL, 0 }
};

/* parse_command - the command's options, anywhere among its arguments
 * (subv[0] is the command word, argv[0] of its own option scan), checked
 * together.  Returns -1 to go on, else the exit code. */
static int
parse_command(const struct command *c, int subc, char **subv, struct opts *o)
{
	int ch;

	optind = 0;			/* full reset of glibc's getopt */
	opterr = 0;
	while ((ch = getopt_long(subc, subv, ":", command_options, NULL)) != -1) {
		switch (ch) {
		case 'k':
			o->keytype = optarg;
			break;
		case 'd':
			if (parse_number(optarg, 1, 36500, &o->days) != 0)
				return usage_error(c, "%s: bad --days \"%s\" (1 to 36500)",
				    c->name, optarg);
			break;
		case 'P':
			if (parse_number(optarg, 0, INT_MAX, &o->pwfd) != 0)
				return usage_error(c, "%s: bad --password-fd \"%s\" (a "
				    "descriptor number)", c->name, optarg);
			break;
		case 'F':
			o->pwfile = optarg;
			break;
		case 'p':
			o->protect = 1;
			break;
		case 'f':
			o->force = 1;
			break;
		case 'y':
			o->yes = 1;
			break;
		case 'e':
			if (parse_number(optarg, 0, 36500, &o->expiring) != 0)
				return usage_error(c, "%s: bad --expiring \"%s\" (0 to "
				    "36500)", c->name, optarg);
			break;
		case 'r':
			o->from = optarg;
			break;
		case 'j':
			if (parse_number(optarg, 1, 64, &o->jobs) != 0)
				return usage_error(c, "%s: bad --jobs \"%s\" (1 to 64)",
				    c->name, optarg);
			break;
		case 'o':
			if (strcmp(optarg, "text") != 0 && strcmp(optarg, "prometheus") != 0)
				return usage_error(c, "%s: unknown --format \"%s\" (text, "
				    "prometheus)", c->name, optarg);
			o->format = optarg;
			break;
		case '1':
			o->p12 = optarg;
			break;
		case '2':
			if (parse_number(optarg, 0, INT_MAX, &o->protfd) != 0)
				return usage_error(c, "%s: bad --protection-password-fd "
				    "\"%s\" (a descriptor number)", c->name, optarg);
			break;
		case '3':
			o->protfile = optarg;
			break;
		case 'b':
			o->ban = 1;
			break;
		case 'L':
			o->legacy = 1;
			break;
		case 'h':
			command_usage(stdout, c);
			printf("  %s\n", c->what);
			return EX_OK_;
		case ':':
			return usage_error(c, "%s: option %s needs an argument", c->name,
			    subv[optind - 1]);
		default:
			return usage_error(c, "%s: unknown option \"%s\"", c->name,
			    subv[optind - 1]);
		}
	}
	return check_option_pairs(c, o);
}

/* check_from - enroll takes ADDR or --from FILE (then not --protect);
 * --from and --jobs are for enroll.  Returns -1 to go on, else the exit
 * code. */
static int
check_from(const struct command *c, const struct opts *o, int nargs)
{
	if (c->run != cmd_enroll)
		return o->from != NULL || o->jobs > 0 ? usage_error(c,
		    "%s: --from and --jobs are for enroll", c->name) : -1;
	if (o->from == NULL && o->jobs > 0)
		return usage_error(c, "enroll: --jobs goes with --from");
	if (o->from == NULL && nargs == 0)
		return usage_error(c, "enroll: no address given (or --from FILE)");
	if (o->from != NULL && nargs > 0)
		return usage_error(c, "enroll: an address or --from FILE, not both");
	if (o->from != NULL && (o->protect || o->pwfd >= 0 || o->pwfile != NULL))
		return usage_error(c, "enroll: --from enrolls at level default "
		    "(set-password afterwards)");
	return -1;
}

/* find_command - the table entry of name, or NULL */
static const struct command *
find_command(const char *name)
{
	size_t i;

	for (i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
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
	/* enroll --from needs at least a connection per worker */
	if (o->from != NULL && o->jobs > conf->km_pool_size)
		conf->km_pool_size = o->jobs;
	if (c->internal && a1 != NULL && !o->force && !domain_internal(conf, a1)) {
		kmctl_warn("%s: %s is not in policy.internal_domains of %s: refused "
		    "(kmilter would never sign or decrypt for it; --force to %s it "
		    "anyway)", c->name, a1, o->config, c->name);
		conf_unref(conf);
		return EX_FAIL;
	}
	rc = c->run(conf, o, a1, a2);
	if (c->state_files)
		give_to_state_owner(conf);
	conf_unref(conf);
	return rc;
}

/* check_export_ban - the options of export and revoke --ban where they
 * belong.  Returns -1 to go on, else the exit code. */
static int
check_export_ban(const struct command *c, const struct opts *o,
    const char *a2)
{
	if (c->run == cmd_export && o->p12 == NULL)
		return usage_error(c, "export: --p12 FILE is needed");
	if (c->run != cmd_export && (o->p12 != NULL || o->protfd >= 0 ||
	    o->protfile != NULL || o->legacy))
		return usage_error(c, "%s: --p12, --legacy and "
		    "--protection-password-* are for export", c->name);
	if (o->ban && c->run != cmd_revoke)
		return usage_error(c, "%s: --ban is for revoke", c->name);
	if (o->ban && a2 != NULL)
		return usage_error(c, "revoke: --ban revokes every generation "
		    "(no GENERATION)");
	return -1;
}

/* main - parse options, check the arguments, run one command */
int
main(int argc, char **argv)
{
	struct opts o = { KMILTER_CONF, NULL, 0, -1, NULL, 0, 0, 0, "text", -1,
	    NULL, 0, NULL, -1, NULL, 0, 0 };
	const struct command *c;
	const char *a1, *a2;
	char **subv;
	int nargs, rc, subc;

	log_init("kmctl", 0, 1, 0);
	if ((rc = parse_global(argc, argv, &o)) >= 0)
		return rc;
	subv = argv + optind;
	subc = argc - optind;
	if ((c = find_command(subv[0])) == NULL)
		return usage_error(NULL, "unknown command \"%s\"", subv[0]);
	if ((rc = parse_command(c, subc, subv, &o)) >= 0)
		return rc;
	nargs = subc - optind;
	a1 = nargs > 0 ? subv[optind] : NULL;
	a2 = nargs > 1 ? subv[optind + 1] : NULL;
	if (nargs < c->min)
		return usage_error(c, "%s: %s", c->name, c->min - nargs == 1 &&
		    c->min == 1 ? "no address given" : "missing arguments");
	if (nargs > c->max)
		return usage_error(c, "%s: unexpected argument \"%s\"", c->name,
		    subv[optind + c->max]);
	if (o.format != NULL && strcmp(o.format, "text") != 0 && c->run != cmd_stats)
		return usage_error(c, "%s: --format is for stats", c->name);
	if (o.expiring >= 0 && c->run != cmd_list)
		return usage_error(c, "%s: --expiring is for list", c->name);
	if ((rc = check_from(c, &o, nargs)) >= 0)
		return rc;
	if ((rc = check_export_ban(c, &o, a2)) >= 0)
		return rc;
	if (o.from != NULL && o.jobs == 0)
		o.jobs = KMCTL_BULK_JOBS;
	if (a1 != NULL && c->max > 0 && c->run != cmd_retire_gateway) {
		/* check the address before any work */
		char norm[KEYMODEL_ADDR_MAX + 1];
		struct kmerr err;

		if (keymodel_addr_normalize(a1, norm, sizeof(norm), &err) !=
		    KM_OK)
			return usage_error(c, "%s: %s", c->name, err.msg);
	}
	return run(c, &o, a1, a2);
}
