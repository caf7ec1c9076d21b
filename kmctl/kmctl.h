#ifndef KMILTER_KMCTL_KMCTL_H
#define KMILTER_KMCTL_KMCTL_H
/*
 * NAME
 *	kmctl - what kmctl's commands share: exit codes, options, messages,
 *	the key model handle, the organization CA, the cache invalidation
 * SUMMARY
 *	struct opts (the parsed command line); EX_* exit codes (kmctl.8);
 *	kmctl_warn(), kmctl_exit_for(), kmctl_after_change(),
 *	kmctl_open_km(), kmctl_load_org_ca(), kmctl_read_file(),
 *	kmctl_legacy_providers() (kmctl_util.c).
 * DESCRIPTION
 *	kmctl.c parses the command line into a struct opts and runs one
 *	command of cmd.h; the commands (cmd_*.c) report on stderr with
 *	kmctl_warn() ("kmctl: ..." lines) and map a failed keymodel call to
 *	an exit code with kmctl_exit_for().  After the keys of an address
 *	changed, kmctl_after_change() drops its cached entries in Redis and
 *	publishes the invalidation every running kmilter subscribes to.
 * OWNERSHIP
 *	kmctl_open_km() returns a handle freed with keymodel_free().
 *	kmctl_load_org_ca() gives new references (X509_free,
 *	EVP_PKEY_free).  kmctl_read_file() returns a buffer freed with
 *	free().  struct opts borrows argv's strings.
 * ERRORS
 *	Each function prints its own message with kmctl_warn() and returns
 *	NULL, -1 or an EX_* code.
 * THREADS
 *	kmctl has one thread.
 */
#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "kmerr.h"
#include "log.h"
#include "status.h"

struct keymodel;
struct kmilter_conf;

#define EX_OK_		0
#define EX_FAIL		1
#define EX_USAGE_	2
#define EX_NOTFOUND	3
#define EX_UNREACH	4

#define FILE_MAX	(1024 * 1024)
#define KMCTL_BULK_JOBS	4		/* enroll --from: --jobs default */

struct opts {
	const char	*config;
	const char	*keytype;
	int		 days;
	int		 pwfd;
	const char	*pwfile;
	int		 protect;	/* enroll --protect */
	int		 force;		/* --force: an address outside the internal domains */
	int		 yes;		/* --yes: replace without asking */
	const char	*format;	/* stats --format: "text" or "prometheus" */
	int		 expiring;	/* list --expiring DAYS, -1 when not given */
	const char	*from;		/* enroll --from FILE ("-": stdin) */
	int		 jobs;		/* enroll --from: --jobs N (KMCTL_BULK_JOBS) */
	/* export, revoke --ban (cmd_keys.c) */
	const char	*p12;		/* export --p12 FILE */
	int		 protfd;	/* --protection-password-fd, -1 if not */
	const char	*protfile;	/* --protection-password-file */
	int		 ban;		/* revoke --ban */
	int		 legacy;	/* export --legacy (GnuPG < 2.2.42) */
};

void		 kmctl_warn(const char *, ...) KM_PRINTF(1, 2);
int		 kmctl_exit_for(enum km_status, const struct kmerr *err);
int		 kmctl_after_change(const struct kmilter_conf *,
		    const char *addr);
struct keymodel	*kmctl_open_km(const struct kmilter_conf *);
int		 kmctl_load_org_ca(const struct kmilter_conf *, X509 **cert,
		    EVP_PKEY **key);
unsigned char	*kmctl_read_file(const char *path, size_t *len);
void		 kmctl_legacy_providers(void);

#endif
