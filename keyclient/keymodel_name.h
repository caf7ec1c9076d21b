#ifndef KMILTER_KEYCLIENT_KEYMODEL_NAME_H
#define KMILTER_KEYCLIENT_KEYMODEL_NAME_H
/*
 * NAME
 *	keymodel_name - addresses and the KMIP names of the key model
 * SUMMARY
 *	keymodel_addr_normalize(), keymodel_object_name(),
 *	keymodel_group_format(), keymodel_group_format_harvested(),
 *	keymodel_group_harvested(), keymodel_group_parse(); the limits
 *	KEYMODEL_ADDR_MAX, KEYMODEL_NAME_MAX, KEYMODEL_GROUP_MAX,
 *	KEYMODEL_GEN_MAX; enum keymodel_kind.
 * DESCRIPTION
 *	Pure functions: no KM, no connection.  The rules (which addresses
 *	are refused, how case folds, the Name "kmilter:enc:ADDR" and the
 *	Object Groups "kmilter:gen:N[:default|:enhanced|:harvested]") are
 *	described in
 *	keymodel.h, DESCRIPTION, "Addresses" and "Objects".
 * OWNERSHIP
 *	Inputs are borrowed; outputs go to the caller's buffers.
 * ERRORS
 *	KM_PROTO for a malformed address, a buffer too small, a generation
 *	out of range or an Object Group that is not kmilter's; one line in
 *	err where the function takes one.
 * THREADS
 *	Thread-safe.
 */
#include <stddef.h>

#include "kmerr.h"
#include "status.h"

#define KEYMODEL_ADDR_MAX	254		/* characters, without NUL */
#define KEYMODEL_NAME_PREFIX	"kmilter:enc:"
#define KEYMODEL_NAME_MAX	(sizeof(KEYMODEL_NAME_PREFIX) + KEYMODEL_ADDR_MAX)
#define KEYMODEL_GROUP_MAX	64
#define KEYMODEL_GEN_MAX	100000

enum keymodel_kind {
	KEYMODEL_CERT = 0,	/* the certificate of a generation */
	KEYMODEL_SHARE		/* one XOR share of its private key */
};

enum km_status	 keymodel_addr_normalize(const char *addr, char *out,
		    size_t outlen, struct kmerr *err);
enum km_status	 keymodel_object_name(const char *addr, char *out,
		    size_t outlen, struct kmerr *err);
enum km_status	 keymodel_group_format(enum keymodel_kind, int generation,
		    int enhanced, char *out, size_t outlen);
enum km_status	 keymodel_group_format_harvested(int generation, char *out,
		    size_t outlen);
int		 keymodel_group_harvested(const char *group);
enum km_status	 keymodel_group_parse(const char *group,
		    enum keymodel_kind *kind, int *generation, int *enhanced);

#endif
