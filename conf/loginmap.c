/*
 * loginmap.c - the sender-login map file (see loginmap.h).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "loginmap.h"

#define LINE_MAX_LEN	1024

/* loginmap_free - free the entries; returns NULL */
struct conf_login_map *
loginmap_free(struct conf_login_map *m, int n)
{
	if (m == NULL)
		return NULL;
	for (int i = 0; i < n; i++) {
		free(m[i].address);
		for (int j = 0; j < m[i].nlogins; j++)
			free(m[i].logins[j]);
		free(m[i].logins);
	}
	free(m);
	return NULL;
}

/* norm_key - lower-case the address and drop trailing dots; NULL if not an address */
static char *
norm_key(const char *key, const char **why)
{
	size_t n = strlen(key);
	char *out;

	if (strchr(key, '"') != NULL || strchr(key, '<') != NULL) {
		*why = "quoted or bracketed addresses are not supported";
		return NULL;
	}
	while (n > 0 && key[n - 1] == '.')
		n--;
	if (memchr(key, '@', n) == NULL || key[n - 1] == '@') {
		*why = "the first word is not an address (user@domain or @domain)";
		return NULL;
	}
	if ((out = strndup(key, n)) == NULL) {
		*why = "out of memory";
		return NULL;
	}
	for (char *p = out; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return out;
}

/* add_login - append one login to an entry */
static int
add_login(struct conf_login_map *e, const char *login, size_t n)
{
	char **nl = realloc(e->logins, sizeof(*nl) * (size_t)(e->nlogins + 1));

	if (nl == NULL)
		return -1;
	e->logins = nl;
	if ((e->logins[e->nlogins] = strndup(login, n)) == NULL)
		return -1;
	e->nlogins++;
	return 0;
}

/* parse_line - one "address login[, login...]" line into e; NULL or why not */
static const char *
parse_line(char *line, struct conf_login_map *e)
{
	const char *why = NULL;
	char *p = line, *key;

	key = p;
	p += strcspn(p, " \t");
	if (*p != '\0')
		*p++ = '\0';
	if ((e->address = norm_key(key, &why)) == NULL)
		return why;
	for (;;) {
		size_t n;

		p += strspn(p, " \t,");
		if (*p == '\0')
			break;
		n = strcspn(p, " \t,");
		if (add_login(e, p, n) < 0)
			return "out of memory";
		p += n;
	}
	return e->nlogins == 0 ? "no login after the address" : NULL;
}

/* find_dup - line index of an earlier entry with the same address, or -1 */
static int
find_dup(const struct conf_login_map *m, int n, const char *address)
{
	for (int i = 0; i < n; i++)
		if (strcmp(m[i].address, address) == 0)
			return i;
	return -1;
}

/* loginmap_load - read the map file into an array of entries */
int
loginmap_load(const char *path, struct conf_login_map **out, int *n,
    struct kmerr *err)
{
	struct conf_login_map *m = NULL, *nm;
	char line[LINE_MAX_LEN + 2];
	int cnt = 0, lineno = 0, *lines = NULL;
	const char *why = NULL;
	enum km_status st = KM_PROTO;
	FILE *fp;

	*out = NULL;
	*n = 0;
	if ((fp = fopen(path, "r")) == NULL) {
		kmerr_set(err, KM_PERMFAIL, errno == ENOENT ? KMERR_NOTFOUND :
		    KMERR_NONE, "%s: cannot read: %s", path, strerror(errno));
		return -1;
	}
	while (why == NULL && fgets(line, sizeof(line), fp) != NULL) {
		size_t len = strlen(line);
		char *p = line;
		int *nl;

		lineno++;
		if (len > LINE_MAX_LEN && line[len - 1] != '\n') {
			why = "line too long";
			break;
		}
		line[strcspn(line, "\r\n")] = '\0';
		p += strspn(p, " \t");
		if (*p == '\0' || *p == '#')
			continue;
		if ((nm = realloc(m, sizeof(*m) * (size_t)(cnt + 1))) == NULL ||
		    (m = nm, (nl = realloc(lines, sizeof(*nl) * (size_t)(cnt + 1))) == NULL)) {
			why = "out of memory";
			st = KM_NOMEM;
			break;
		}
		lines = nl;
		memset(&m[cnt], 0, sizeof(m[cnt]));
		lines[cnt] = lineno;
		why = parse_line(p, &m[cnt]);
		cnt++;
		if (why == NULL && find_dup(m, cnt - 1, m[cnt - 1].address) >= 0) {
			kmerr_set(err, KM_PROTO, KMERR_EXISTS,
			    "%s:%d: %s is listed already at line %d", path,
			    lineno, m[cnt - 1].address, lines[find_dup(m, cnt - 1,
			    m[cnt - 1].address)]);
			why = "";
		}
	}
	if (why == NULL && ferror(fp)) {
		why = "read error";
		st = KM_PERMFAIL;
	}
	fclose(fp);
	free(lines);
	if (why != NULL) {
		if (*why != '\0')
			kmerr_set(err, st, st == KM_PROTO ? KMERR_BADINPUT :
			    KMERR_NONE, "%s:%d: %s", path, lineno, why);
		loginmap_free(m, cnt);
		return -1;
	}
	*out = m;
	*n = cnt;
	return 0;
}
