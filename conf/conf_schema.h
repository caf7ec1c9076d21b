#ifndef KMILTER_CONF_CONF_SCHEMA_H
#define KMILTER_CONF_CONF_SCHEMA_H
/*
 * NAME
 *	conf_schema - the table of every kmilter.conf setting
 * SUMMARY
 *	conf_schema[] (NULL-name terminated), conf_schema_find()
 * DESCRIPTION
 *	One entry per setting: its dotted name, type, where it lands in
 *	struct kmilter_conf, its default (as text, NULL for none), its range
 *	or allowed words, and whether it is required.  A list of groups
 *	(km.servers, policy.rules) has a sub-table for its elements.
 * OWNERSHIP
 *	Static, read-only.
 * ERRORS
 *	None.
 * THREADS
 *	Read-only: thread-safe.
 */
#include <stddef.h>

enum conf_type { CT_BOOL, CT_INT, CT_STRING, CT_STRLIST, CT_ENUM, CT_GROUPLIST };

struct conf_key {
	const char	*name;
	enum conf_type	 type;
	size_t		 off;
	const char	*def;
	long		 min, max;
	const char	*words;		/* CT_ENUM: "a|b|c", index = value */
	int		 required;
	const struct conf_key *sub;	/* CT_GROUPLIST: element keys */
	size_t		 elem_size;
	size_t		 count_off;
};

extern const struct conf_key conf_schema[];
const struct conf_key *conf_schema_find(const struct conf_key *tab, const char *name);

#endif
