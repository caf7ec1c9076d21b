/*
 * kmip_types.c - names of the KMIP values, and freeing a Locate result
 * (see kmip_types.h).
 */
#include <stdlib.h>

#include "kmip_types.h"

/* kmip_object_type_name - printable name of an object type */
const char *
kmip_object_type_name(enum kmip_object_type t)
{
	switch (t) {
	case KMIP_OBJ_NONE:		return "none";
	case KMIP_OBJ_CERTIFICATE:	return "Certificate";
	case KMIP_OBJ_SYMMETRIC_KEY:	return "SymmetricKey";
	case KMIP_OBJ_PUBLIC_KEY:	return "PublicKey";
	case KMIP_OBJ_PRIVATE_KEY:	return "PrivateKey";
	case KMIP_OBJ_SPLIT_KEY:	return "SplitKey";
	case KMIP_OBJ_TEMPLATE:		return "Template";
	case KMIP_OBJ_SECRET_DATA:	return "SecretData";
	case KMIP_OBJ_OPAQUE:		return "OpaqueObject";
	}
	return "unknown";
}

/* kmip_state_name - printable name of a state */
const char *
kmip_state_name(enum kmip_state s)
{
	switch (s) {
	case KMIP_STATE_NONE:			return "none";
	case KMIP_STATE_PRE_ACTIVE:		return "PreActive";
	case KMIP_STATE_ACTIVE:			return "Active";
	case KMIP_STATE_DEACTIVATED:		return "Deactivated";
	case KMIP_STATE_COMPROMISED:		return "Compromised";
	case KMIP_STATE_DESTROYED:		return "Destroyed";
	case KMIP_STATE_DESTROYED_COMPROMISED:	return "DestroyedCompromised";
	}
	return "unknown";
}

/* kmip_uid_list_free - free a Locate result; returns NULL */
struct kmip_uid_list *
kmip_uid_list_free(struct kmip_uid_list *l)
{
	if (l == NULL)
		return NULL;
	for (size_t i = 0; i < l->count; i++)
		free(l->uids[i]);
	free(l->uids);
	free(l);
	return NULL;
}
