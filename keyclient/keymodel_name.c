/*
 * keymodel_name.c - addresses and the KMIP names of the key model:
 * address normalization, the Name of an address's objects, the Object
 * Group of a generation's objects.  Pure.  See keymodel_name.h.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "kmerr.h"
#include "keymodel_name.h"

#define GROUP_PREFIX	"kmilter:gen:"
#define HARVESTED	":harvested"

/* keymodel_addr_normalize - check an address; keep the local part, lower-case the domain */
enum km_status
keymodel_addr_normalize(const char *addr, char *out, size_t outlen,
    struct kmerr *err)
{
	const char *at = NULL, *p;
	size_t len, i;
	int label = 0;

	if (addr == NULL || *addr == '\0')
		return kmerr_set(err, KM_PROTO, KMERR_NONE, "empty address");
	len = strlen(addr);
	if (len > KEYMODEL_ADDR_MAX)
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "address too long (%zu characters, at "
		    "most %d)", len, KEYMODEL_ADDR_MAX);
	for (p = addr; *p != '\0'; p++) {
		unsigned char ch = (unsigned char)*p;

		if (ch <= 0x20 || ch >= 0x7f)
			return kmerr_set(err, KM_PROTO, KMERR_NONE,
			    "malformed address: space, "
			    "control or non-ASCII character at offset %td",
			    p - addr);
		if (strchr("()<>[]\\,;:\"", ch) != NULL)
			return kmerr_set(err, KM_PROTO, KMERR_NONE,
			    "malformed address: character "
			    "'%c' not allowed", ch);
		if (ch == '@') {
			if (at != NULL)
				return kmerr_set(err, KM_PROTO, KMERR_NONE,
				    "malformed address: "
				    "more than one '@'");
			at = p;
		}
	}
	if (at == NULL)
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "malformed address: no '@'");
	if (at == addr)
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "malformed address: empty local part");
	if (at[1] == '\0')
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "malformed address: empty domain");
	for (p = at + 1; ; p++) {
		if (*p == '.' || *p == '\0') {
			if (label == 0 || p[-1] == '-')
				return kmerr_set(err, KM_PROTO, KMERR_NONE,
				    "malformed address: "
				    "bad domain label");
			if (*p == '\0')
				break;
			label = 0;
			continue;
		}
		if (!isalnum((unsigned char)*p) && *p != '-')
			return kmerr_set(err, KM_PROTO, KMERR_NONE,
			    "malformed address: character "
			    "'%c' not allowed in the domain", *p);
		if (label == 0 && *p == '-')
			return kmerr_set(err, KM_PROTO, KMERR_NONE,
			    "malformed address: bad "
			    "domain label");
		label++;
	}
	if (outlen < len + 1)
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "address buffer too small");
	for (i = 0; i < len; i++)
		out[i] = addr + i > at ? (char)tolower((unsigned char)addr[i]) :
		    addr[i];
	out[len] = '\0';
	return KM_OK;
}

/* keymodel_object_name - the KMIP Name of an address's objects */
enum km_status
keymodel_object_name(const char *addr, char *out, size_t outlen,
    struct kmerr *err)
{
	char norm[KEYMODEL_ADDR_MAX + 1];
	enum km_status st;

	if ((st = keymodel_addr_normalize(addr, norm, sizeof(norm),
	    err)) != KM_OK)
		return st;
	if ((size_t)snprintf(out, outlen, "%s%s", KEYMODEL_NAME_PREFIX,
	    norm) >= outlen)
		return kmerr_set(err, KM_PROTO, KMERR_NONE,
		    "name buffer too small");
	/* lookups fold the whole address, as seal_name_hash() does */
	for (; *out != '\0'; out++)
		*out = (char)tolower((unsigned char)*out);
	return KM_OK;
}

/* keymodel_group_format - the Object Group of a generation's object */
enum km_status
keymodel_group_format(enum keymodel_kind kind, int generation, int enhanced,
    char *out, size_t outlen)
{
	int n;

	if (generation < 1 || generation > KEYMODEL_GEN_MAX)
		return KM_PROTO;
	if (kind == KEYMODEL_CERT)
		n = snprintf(out, outlen, GROUP_PREFIX "%d", generation);
	else
		n = snprintf(out, outlen, GROUP_PREFIX "%d:%s", generation,
		    enhanced ? "enhanced" : "default");
	return n < 0 || (size_t)n >= outlen ? KM_PROTO : KM_OK;
}

/* keymodel_group_format_harvested - the Object Group of a harvested
 * certificate (an outside correspondent's, taken from a signature) */
enum km_status
keymodel_group_format_harvested(int generation, char *out, size_t outlen)
{
	int n;

	if (generation < 1 || generation > KEYMODEL_GEN_MAX)
		return KM_PROTO;
	n = snprintf(out, outlen, GROUP_PREFIX "%d" HARVESTED, generation);
	return n < 0 || (size_t)n >= outlen ? KM_PROTO : KM_OK;
}

/* keymodel_group_harvested - is this the Object Group of a harvested
 * certificate? */
int
keymodel_group_harvested(const char *group)
{
	size_t n = group != NULL ? strlen(group) : 0;

	return n > sizeof(HARVESTED) - 1 && strncmp(group, GROUP_PREFIX,
	    sizeof(GROUP_PREFIX) - 1) == 0 &&
	    strcmp(group + n - (sizeof(HARVESTED) - 1), HARVESTED) == 0;
}

/* keymodel_group_parse - read kind, generation and level from an Object Group */
enum km_status
keymodel_group_parse(const char *group, enum keymodel_kind *kind,
    int *generation, int *enhanced)
{
	const char *p;
	long g = 0;

	if (group == NULL || strncmp(group, GROUP_PREFIX,
	    sizeof(GROUP_PREFIX) - 1) != 0)
		return KM_PROTO;
	p = group + sizeof(GROUP_PREFIX) - 1;
	if (*p < '1' || *p > '9')
		return KM_PROTO;
	while (isdigit((unsigned char)*p)) {
		g = g * 10 + (*p++ - '0');
		if (g > KEYMODEL_GEN_MAX)
			return KM_PROTO;
	}
	*generation = (int)g;
	*enhanced = 0;
	if (*p == '\0') {
		*kind = KEYMODEL_CERT;
		return KM_OK;
	}
	if (strcmp(p, HARVESTED) == 0) {
		*kind = KEYMODEL_CERT;
		return KM_OK;
	}
	*kind = KEYMODEL_SHARE;
	if (strcmp(p, ":default") == 0)
		return KM_OK;
	if (strcmp(p, ":enhanced") == 0) {
		*enhanced = 1;
		return KM_OK;
	}
	return KM_PROTO;
}
