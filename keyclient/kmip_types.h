#ifndef KMILTER_KEYCLIENT_KMIP_TYPES_H
#define KMILTER_KEYCLIENT_KMIP_TYPES_H
/*
 * NAME
 *	kmip_types - the KMIP values and structures kmilter's client speaks in
 * SUMMARY
 *	enum kmip_object_type, enum kmip_state, enum kmip_revoke_reason,
 *	struct kmip_register_req, struct kmip_locate_req,
 *	struct kmip_uid_list, struct kmip_attrs, struct kmip_version,
 *	kmip_uid_list_free(), kmip_object_type_name(), kmip_state_name()
 * DESCRIPTION
 *	The vocabulary shared by the message codec (kmip_msg.h: requests
 *	built, responses decoded, no I/O) and the client (kmip.h:
 *	connections and operations).  Callers include kmip.h, which
 *	includes this header; nothing here does I/O.
 *
 *	The numbers are KMIP 1.2's (Object Type, State, Revocation Reason
 *	Code, Cryptographic Usage Mask, Secret Data Type, Cryptographic
 *	Algorithm enumerations).
 * OWNERSHIP
 *	A struct kmip_uid_list (from kmip_locate()) is freed by the caller
 *	with kmip_uid_list_free(), which accepts NULL and returns NULL.
 *	The request structs only borrow their pointers.
 * ERRORS
 *	None: the name functions return "unknown" for a value they do not
 *	know.
 * THREADS
 *	kmip_object_type_name()/kmip_state_name() return static strings and
 *	are thread-safe.
 */
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define KMIP_MAX_RESPONSE	(1024 * 1024)	/* bytes, header included */
#define KMIP_UID_MAX		128		/* with the NUL */
#define KMIP_NAME_MAX		256		/* with the NUL */

/* KMIP Object Type enumeration values. */
enum kmip_object_type {
	KMIP_OBJ_NONE = 0,		/* "any" in kmip_locate() */
	KMIP_OBJ_CERTIFICATE = 1,
	KMIP_OBJ_SYMMETRIC_KEY = 2,
	KMIP_OBJ_PUBLIC_KEY = 3,
	KMIP_OBJ_PRIVATE_KEY = 4,
	KMIP_OBJ_SPLIT_KEY = 5,
	KMIP_OBJ_TEMPLATE = 6,
	KMIP_OBJ_SECRET_DATA = 7,
	KMIP_OBJ_OPAQUE = 8
};

/* KMIP State enumeration values. */
enum kmip_state {
	KMIP_STATE_NONE = 0,		/* "any" in kmip_locate(); "absent" */
	KMIP_STATE_PRE_ACTIVE = 1,
	KMIP_STATE_ACTIVE = 2,
	KMIP_STATE_DEACTIVATED = 3,
	KMIP_STATE_COMPROMISED = 4,
	KMIP_STATE_DESTROYED = 5,
	KMIP_STATE_DESTROYED_COMPROMISED = 6
};

/* KMIP Revocation Reason Code values that kmilter uses. */
enum kmip_revoke_reason {
	KMIP_REVOKE_KEY_COMPROMISE = 2,
	KMIP_REVOKE_CESSATION_OF_OPERATION = 6
};

/* KMIP Cryptographic Usage Mask bits. */
#define KMIP_USAGE_SIGN		0x00000001u
#define KMIP_USAGE_VERIFY	0x00000002u
#define KMIP_USAGE_ENCRYPT	0x00000004u
#define KMIP_USAGE_DECRYPT	0x00000008u
#define KMIP_USAGE_WRAP_KEY	0x00000010u
#define KMIP_USAGE_UNWRAP_KEY	0x00000020u
#define KMIP_USAGE_EXPORT	0x00000040u

/* KMIP Secret Data Type values. */
#define KMIP_SECRET_PASSWORD	1
#define KMIP_SECRET_SEED	2

/* KMIP Cryptographic Algorithm values (for private keys). */
#define KMIP_ALG_RSA		4
#define KMIP_ALG_EC		6	/* ECDSA in KMIP 1.x */

struct kmip_register_req {
	enum kmip_object_type type;	/* CERTIFICATE (X.509 DER),
					   SECRET_DATA (opaque bytes, format
					   OPAQUE), PRIVATE_KEY (PKCS#8 DER,
					   format PKCS_8) */
	const unsigned char *data;	/* the object's bytes (borrowed) */
	size_t len;
	const char *name;		/* required: one Name,
					   UNINTERPRETED_TEXT_STRING, < 256 */
	const char *group;		/* optional Object Group, or NULL */
	uint32_t usage_mask;		/* Cryptographic Usage Mask; 0 = not sent */
	int secret_type;		/* SECRET_DATA only: KMIP_SECRET_*;
					   0 = KMIP_SECRET_SEED */
	int alg;			/* PRIVATE_KEY only: KMIP_ALG_*, and */
	int bits;			/* key length in bits; 0/0 = read them
					   from the (unencrypted) PKCS#8 DER */
};

struct kmip_locate_req {		/* all criteria are ANDed */
	const char *name;		/* exact Name, or NULL */
	enum kmip_object_type type;	/* or KMIP_OBJ_NONE */
	enum kmip_state state;		/* or KMIP_STATE_NONE */
	const char *group;		/* Object Group, or NULL */
	int max_items;			/* Maximum Items; 0 = not sent */
};

struct kmip_uid_list {
	size_t count;
	char **uids;			/* count NUL-terminated strings */
};

struct kmip_attrs {
	enum kmip_object_type type;	/* KMIP_OBJ_NONE if not returned */
	enum kmip_state state;		/* KMIP_STATE_NONE if not returned */
	char name[KMIP_NAME_MAX];	/* first Name value, "" if none */
	char group[KMIP_NAME_MAX];	/* first Object Group, "" if none */
	uint32_t usage_mask;
	int has_usage_mask;
	time_t initial_date;		/* 0 if not returned */
	time_t activation_date;		/* 0 if not returned (PyKMIP never
					   returns it) */
};

struct kmip_version {
	int major, minor;
};

struct kmip_uid_list *kmip_uid_list_free(struct kmip_uid_list *);
const char *kmip_object_type_name(enum kmip_object_type);
const char *kmip_state_name(enum kmip_state);

#endif
