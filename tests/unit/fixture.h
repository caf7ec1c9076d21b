#ifndef KMILTER_TESTS_FIXTURE_H
#define KMILTER_TESTS_FIXTURE_H
/*
 * NAME
 *	fixture - what several unit tests share: a throw-away PKI and a fake
 *	key store over a table of identities
 * SUMMARY
 *	fixture_cert(), fixture_ca()
 *	fixture_find(), fixture_ids_make(), fixture_backend()
 *	fixture_message(), fixture_message_free(), fixture_has_change()
 * DESCRIPTION
 *	fixture_cert() makes a certificate for key as a struct fixture_cert
 *	describes it, signed by issuer/issuer_key (self-signed when issuer
 *	is NULL).  Unset fields are left out (no SAN, no key usage, ...);
 *	a zero validity means from an hour ago to a day from now.
 *	fixture_ca() is one EC P-256 CA ("test CA"), made on the first call.
 *	The fake key store: a table of struct fixture_id ending in a NULL
 *	addr; fixture_ids_make() gives each a P-256 key and a self-signed
 *	S/MIME certificate naming its address; fixture_backend() fills a
 *	struct keystore_backend whose KM answers from that table (each id
 *	holds one active, plain generation; nothing was ever revoked) and
 *	whose signing store hands out each id's key.  An id whose cert is
 *	NULL is unknown to KM.
 *	fixture_message() makes a message holding the given headers (name,
 *	value pairs ending in NULL) and nothing else; fixture_has_change()
 *	says whether a verdict holds a header change (name, index, value;
 *	value NULL for a deletion, index 0 for an addition).
 * OWNERSHIP
 *	fixture_cert() returns a new certificate: X509_free().  fixture_ca()
 *	and the table's keys and certificates live as long as the program.
 * ERRORS
 *	fixture_cert() returns NULL and fixture_ids_make() 0 when OpenSSL
 *	fails; fixture_ca() returns 0 likewise.
 * THREADS
 *	Set-up from one thread; the fake back end's calls are thread-safe.
 */
#include <openssl/evp.h>
#include <openssl/x509.h>

struct keystore_backend;

struct fixture_cert {
	long		 serial;	/* 0: 1 */
	const char	*org;		/* subject O, or NULL */
	const char	*cn;		/* subject CN, or NULL */
	const char	*email;		/* subject emailAddress, or NULL */
	const char	*san;		/* rfc822Name alternative name, or NULL */
	const char	*bc;		/* basicConstraints, or NULL */
	const char	*ku;		/* keyUsage, or NULL */
	const char	*eku;		/* extendedKeyUsage, or NULL */
	int		 keyids;	/* subject (and authority) key ids */
	long		 notbefore;	/* seconds from now (both 0: -3600 */
	long		 notafter;	/* and 86400) */
};

X509	*fixture_cert(EVP_PKEY *key, const struct fixture_cert *spec,
	    X509 *issuer, EVP_PKEY *issuer_key);
int	 fixture_ca(X509 **cert, EVP_PKEY **key);

struct fixture_id {
	const char	*addr;
	EVP_PKEY	*key;
	X509		*cert;
};

struct fixture_id *fixture_find(struct fixture_id *ids, const char *addr);
int	 fixture_ids_make(struct fixture_id *ids);
void	 fixture_backend(struct keystore_backend *be, struct fixture_id *ids);

struct message;
struct verdict;

struct message *fixture_message(const char *const *name_value);
void	 fixture_message_free(struct message *);
int	 fixture_has_change(const struct verdict *, const char *name, int index,
	    const char *value);

#endif
