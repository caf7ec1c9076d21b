/*
 * forged.c - remove headers that pose as the gateway's own (see forged.h).
 */
#include <string.h>
#include <strings.h>

#include "forged.h"
#include "log.h"

#define AR_NAME		"Authentication-Results"
#define XKM_PREFIX	"X-Kmilter"

/* is_fws - folding white space as it arrives: blank, or the CR/LF of a fold */
static int
is_fws(int c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* is_token_char - part of an RFC 2045 token (not blank, control or tspecial) */
static int
is_token_char(int c)
{
	return c > ' ' && c != 0x7f && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

/* ascii_lower - tolower for ASCII only, whatever the locale */
static int
ascii_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* skip_comment - past one (nested) comment starting at '('; NULL if unclosed */
static const char *
skip_comment(const char *p)
{
	size_t depth = 0;

	for (; *p != '\0'; p++) {
		if (*p == '\\') {
			if (*++p == '\0')
				return NULL;
		} else if (*p == '(')
			depth++;
		else if (*p == ')' && --depth == 0)
			return p + 1;
	}
	return NULL;
}

/* skip_cfws - past folding white space and comments; NULL if a comment is unclosed */
static const char *
skip_cfws(const char *p)
{
	for (;;) {
		while (is_fws((unsigned char)*p))
			p++;
		if (*p != '(')
			return p;
		if ((p = skip_comment(p)) == NULL)
			return NULL;
	}
}

/*
 * quoted_is - does the quoted-string whose content starts at p say id?
 * Quoted-pairs stand for their character and folding CR/LF is dropped.
 * An unclosed quoted-string that says id so far counts as id: a lenient
 * reader may take it so, and removing it costs nothing.
 */
static int
quoted_is(const char *p, const char *id)
{
	const char *q = id;

	for (; *p != '\0' && *p != '"'; p++) {
		if (*p == '\r' || *p == '\n')
			continue;
		if (*p == '\\' && *++p == '\0')
			break;
		if (*q == '\0' || ascii_lower((unsigned char)*p) != ascii_lower((unsigned char)*q))
			return 0;
		q++;
	}
	return *q == '\0';
}

/* ar_authserv_is - is the authserv-id of this Authentication-Results value id? */
int
ar_authserv_is(const char *value, const char *id)
{
	const char *p;
	size_t n;

	if (value == NULL || id == NULL || (n = strlen(id)) == 0)
		return 0;
	if ((p = skip_cfws(value)) == NULL || *p == '\0')
		return 0;
	if (*p == '"')
		return quoted_is(p + 1, id);
	return strncasecmp(p, id, n) == 0 && !is_token_char((unsigned char)p[n]);
}

/* name_is - header name equal to want, ignoring case and trailing blanks */
static int
name_is(const char *name, const char *want)
{
	size_t n = strlen(want);

	if (strncasecmp(name, want, n) != 0)
		return 0;
	for (name += n; *name == ' ' || *name == '\t'; name++)
		;
	return *name == '\0';
}

/* forged_is_ours - does this header imitate one kmilter writes? */
int
forged_is_ours(const char *name, const char *value, const char *id)
{
	if (strncasecmp(name, XKM_PREFIX, sizeof(XKM_PREFIX) - 1) == 0)
		return 1;
	return name_is(name, AR_NAME) && ar_authserv_is(value, id);
}

/* forged_remove - delete every header that imitates kmilter's own */
int
forged_remove(const struct session *s, struct verdict *v)
{
	const struct message *m = s->msg;
	int removed = 0;

	/* Last occurrence first, so the indexes still to delete do not move. */
	for (int i = m->nheaders - 1; i >= 0; i--) {
		const char *name = m->headers[i].name;
		int index = 0;

		if (!forged_is_ours(name, m->headers[i].value, s->conf->in_authserv_id))
			continue;
		for (int j = 0; j <= i; j++)
			index += strcasecmp(m->headers[j].name, name) == 0;
		if (verdict_header_change(v, name, index, NULL) != KM_OK)
			return -1;
		removed++;
	}
	if (removed)
		log_info("%s: removed %d header(s) imitating kmilter's own (X-Kmilter-*, "
		    "Authentication-Results of %s)", message_qid(m), removed,
		    s->conf->in_authserv_id);
	return removed;
}
