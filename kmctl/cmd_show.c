/*
 * cmd_show.c - kmctl's commands that read a user's keys: show,
 * export-cert.  See cmd.h and kmctl.8.
 */
#include <stdio.h>
#include <time.h>

#include <openssl/pem.h>

#include "cmd.h"
#include "conf.h"
#include "keymodel.h"
#include "keymodel_admin.h"
#include "kmctl.h"
#include "kmip.h"

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
int
cmd_show(const struct kmilter_conf *conf, const struct opts *o,
    const char *addr, const char *a2)
{
	struct keymodel *km;
	struct keymodel_info *v = NULL;
	char t1[32], t2[32];
	struct kmerr err;
	enum km_status st;
	size_t n = 0, i;
	int plain = 0, enhanced = 0;

	(void)o;
	(void)a2;
	if ((km = kmctl_open_km(conf)) == NULL)
		return EX_FAIL;
	st = keymodel_show(km, addr, &v, &n, &err);
	keymodel_free(km);
	if (st != KM_OK) {
		kmctl_warn("show %s: %s", addr, err.msg);
		return kmctl_exit_for(st, &err);
	}
	for (i = 0; i < n; i++) {
		printf("%s generation %d state %s key %s protection %s "
		    "type %s\n", addr, v[i].generation,
		    kmip_state_name(v[i].state), v[i].has_key ? "escrowed" :
		    "none", v[i].has_key ? (v[i].enhanced ? "enhanced" :
		    "default") : "-", v[i].key_type[0] ? v[i].key_type : "?");
		printf("  valid %s .. %s\n", fmt_time(v[i].not_before, t1,
		    sizeof(t1)), fmt_time(v[i].not_after, t2, sizeof(t2)));
		printf("  source %s\n", v[i].harvested ? "harvested (from a "
		    "verified signature)" : v[i].has_key ? "own key pair" :
		    "imported");
		printf("  sha256 %s\n", v[i].sha256);
		printf("  subject %s\n", v[i].subject);
		printf("  issuer %s\n", v[i].issuer);
		printf("  serial %s\n", v[i].serial);
		if (v[i].unusable[0] != '\0')
			printf("  unusable: %s\n", v[i].unusable);
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
int
cmd_export_cert(const struct kmilter_conf *conf, const struct opts *o,
    const char *addr, const char *a2)
{
	struct keymodel *km;
	X509 *x = NULL;
	struct kmerr err;
	enum km_status st;

	(void)o;
	(void)a2;
	if ((km = kmctl_open_km(conf)) == NULL)
		return EX_FAIL;
	st = keymodel_current_cert(km, addr, &x, &err);
	keymodel_free(km);
	if (st != KM_OK) {
		kmctl_warn("export-cert %s: %s", addr, err.msg);
		return kmctl_exit_for(st, &err);
	}
	if (PEM_write_X509(stdout, x) != 1 || fflush(stdout) != 0) {
		X509_free(x);
		kmctl_warn("export-cert: cannot write the certificate");
		return EX_FAIL;
	}
	X509_free(x);
	return EX_OK_;
}
