#ifndef KMILTER_KEYCLIENT_KMIP_MSG_H
#define KMILTER_KEYCLIENT_KMIP_MSG_H
/*
 * NAME
 *	kmip_msg - KMIP 1.2 request builders and response decoders (pure)
 * SUMMARY
 *	Requests: kmip_msg_req_discover_versions(), kmip_msg_req_register(),
 *	kmip_msg_req_locate(), kmip_msg_req_uid(),
 *	kmip_msg_req_get_attributes(), kmip_msg_req_revoke().
 *	Responses: kmip_msg_header(), kmip_msg_reply_decode(),
 *	kmip_msg_reply_clear(), kmip_msg_dec_versions(),
 *	kmip_msg_dec_register(), kmip_msg_dec_locate(), kmip_msg_dec_get(),
 *	kmip_msg_dec_attributes(); kmip_msg_op_name().
 *	For kmip.c (and its tests and fuzzer); not for other callers.
 * DESCRIPTION
 *	Bytes in, structs out: no sockets, no logging, no globals, no clock
 *	(the caller passes the time a Revoke needs).  kmip.c does the I/O
 *	around these functions.
 *
 *	Every request is a Request Message with protocol version 1.2, batch
 *	count 1 and one batch item (the operation and its payload).  Uids are
 *	checked first (1 to KMIP_UID_MAX - 1 bytes): a bad one builds nothing.
 *
 *	A response is read in two steps: kmip_msg_header() checks the first
 *	8 bytes (tag Response Message, type Structure, a length that is a
 *	multiple of 8 and leaves the message within KMIP_MAX_RESPONSE) and
 *	says how many bytes follow; kmip_msg_reply_decode() decodes the whole
 *	message strictly (ttlv.c), then checks it has a header with Batch
 *	Count 1, exactly one Batch Item, the operation asked for (if echoed)
 *	and a Result Status.  A server-reported failure becomes an error
 *	(below); success leaves the Response Payload (maybe absent) in the
 *	reply for the kmip_msg_dec_*() function of the operation, which
 *	checks every field it reads.
 * OWNERSHIP
 *	A request (*out, on KM_OK) is the caller's: free it with
 *	ttlv_buf_free(), which wipes it (a Register carries key bytes).
 *	The request structs and strings are borrowed during the call.
 *	A struct kmip_msg_reply points INTO the bytes given to
 *	kmip_msg_reply_decode(): keep them alive and unchanged while the
 *	reply is used; free the reply with kmip_msg_reply_clear() (it does
 *	not free or wipe the bytes; a zeroed reply may be cleared too).
 *	kmip_msg_dec_locate() returns a list the caller frees with
 *	kmip_uid_list_free(); kmip_msg_dec_get() returns *data from
 *	secmem_alloc(): the caller frees it with secmem_free(*data, *len).
 * ERRORS
 *	Every function returns enum km_status and, unless KM_OK, fills err
 *	(if not NULL) with a message that does not name the server or the
 *	operation (kmip.c puts "server NAME: Operation: " in front):
 *	  KM_PERMFAIL  a bad argument (uid, name, data size, object type),
 *	               or the server answered an error (Result Status failed)
 *	               other than GENERAL_FAILURE; the message is
 *	               "REASON: server message" (made printable); the reason
 *	               is KMERR_NOTFOUND for Item Not Found, KMERR_REFUSED for
 *	               Permission Denied, KMERR_EXISTS for Object Already
 *	               Exists.  Also a Get of an object type kmilter does not
 *	               handle.
 *	  KM_TEMPFAIL  the server answered GENERAL_FAILURE.
 *	  KM_PROTO     malformed response (reason KMERR_BADINPUT): not TTLV,
 *	               bad header, too large, no or several batch items,
 *	               another operation echoed, a missing or mistyped field,
 *	               a Result Status other than success or failure; or a
 *	               request that cannot be encoded.
 *	  KM_NOMEM     allocation failed.
 *	On failure the outputs are empty (*out NULL, uid "", count 0), except
 *	kmip_msg_dec_versions(), whose *nout counts the versions read before
 *	the bad one.
 * THREADS
 *	No shared state: thread-safe on distinct objects.
 */
#include <stddef.h>
#include <stdint.h>

#include "kmerr.h"
#include "kmip_types.h"
#include "status.h"
#include "ttlv.h"

#define KMIP_MSG_HEADER		8	/* tag, type and length of a message */

/* KMIP Operation enumeration values kmilter uses. */
enum kmip_op {
	KMIP_OP_REGISTER = 3,
	KMIP_OP_LOCATE = 8,
	KMIP_OP_GET = 10,
	KMIP_OP_GET_ATTRIBUTES = 11,
	KMIP_OP_ACTIVATE = 18,
	KMIP_OP_REVOKE = 19,
	KMIP_OP_DESTROY = 20,
	KMIP_OP_DISCOVER_VERSIONS = 30
};

struct kmip_msg_reply {
	struct ttlv_item *root;		/* the decoded message */
	const struct ttlv_item *payload;	/* Response Payload, or NULL */
};

const char	*kmip_msg_op_name(enum kmip_op);

/* Requests: on KM_OK *out is the encoded message. */
enum km_status	 kmip_msg_req_discover_versions(struct ttlv_buf **out,
		    struct kmerr *);
/* Register: a Certificate, SecretData or PrivateKey (alg and bits read
 * from the PKCS#8 DER when not given) with its Name, Object Group and
 * Cryptographic Usage Mask. */
enum km_status	 kmip_msg_req_register(const struct kmip_register_req *,
		    struct ttlv_buf **out, struct kmerr *);
enum km_status	 kmip_msg_req_locate(const struct kmip_locate_req *,
		    struct ttlv_buf **out, struct kmerr *);
/* a request whose payload is just the uid: Get, Activate, Destroy */
enum km_status	 kmip_msg_req_uid(enum kmip_op, const char *uid,
		    struct ttlv_buf **out, struct kmerr *);
/* Get Attributes: State, Name, Object Type, Initial Date, Activation
 * Date, Object Group, Cryptographic Usage Mask */
enum km_status	 kmip_msg_req_get_attributes(const char *uid,
		    struct ttlv_buf **out, struct kmerr *);
/* Revoke: KEY_COMPROMISE also sends Compromise Occurrence Date = now */
enum km_status	 kmip_msg_req_revoke(const char *uid,
		    enum kmip_revoke_reason, const char *message, int64_t now,
		    struct ttlv_buf **out, struct kmerr *);

/* Responses. */
/* the first KMIP_MSG_HEADER bytes: on KM_OK *bodylen bytes follow */
enum km_status	 kmip_msg_header(const unsigned char *hdr, size_t *bodylen,
		    struct kmerr *);
enum km_status	 kmip_msg_reply_decode(const unsigned char *buf, size_t len,
		    enum kmip_op, struct kmip_msg_reply *, struct kmerr *);
void		 kmip_msg_reply_clear(struct kmip_msg_reply *);
/* Discover Versions: up to max versions, in the server's order */
enum km_status	 kmip_msg_dec_versions(const struct kmip_msg_reply *,
		    struct kmip_version *out, size_t max, size_t *nout,
		    struct kmerr *);
/* Register: the new object's uid */
enum km_status	 kmip_msg_dec_register(const struct kmip_msg_reply *,
		    char uid[KMIP_UID_MAX], struct kmerr *);
/* Locate: every Unique Identifier (maybe none) */
enum km_status	 kmip_msg_dec_locate(const struct kmip_msg_reply *,
		    struct kmip_uid_list **out, struct kmerr *);
/* Get: the object's type and bytes (a byte string Key Material or
 * Certificate Value; wrapped or structured keys are refused) */
enum km_status	 kmip_msg_dec_get(const struct kmip_msg_reply *,
		    enum kmip_object_type *type, unsigned char **data,
		    size_t *len, struct kmerr *);
/* Get Attributes: the ones kmip_attrs holds; others are ignored */
enum km_status	 kmip_msg_dec_attributes(const struct kmip_msg_reply *,
		    struct kmip_attrs *, struct kmerr *);

#endif
