/*
 * test_seal.c - unit tests for keyclient/seal.c: sealing, tamper
 * detection, keyed names and the seal key file checks.
 */
#include <sys/wait.h>
#include <sys/stat.h>

#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

#include "harness.h"
#include "seal.h"
#include "secmem.h"

static const unsigned char ikm1[SEAL_KEY_LEN] = "0123456789abcdef0123456789abcde";
static const unsigned char ikm2[SEAL_KEY_LEN] = "fedcba9876543210fedcba987654321";
static const unsigned char payload[] = "-----BEGIN CERTIFICATE-----\nMIIB...";

#define NOW	1700000000
#define NAME	"km:0000000000000000000000000000000000000000000000000000000000000001"

/* sealed - seal payload under NAME with key material ikm, expiry NOW+60 */
static unsigned char *
sealed(const unsigned char *ikm, const char *name, size_t *len)
{
	struct seal_key *k = seal_key_from_bytes(ikm, SEAL_KEY_LEN, NULL);
	unsigned char *out = NULL;

	if (k == NULL)
		return NULL;
	if (seal_seal(k, name, payload, sizeof(payload), NOW + 60, 0, &out,
	    len, NULL) != KM_OK)
		out = NULL;
	seal_key_free(k);
	return out;
}

/* try_open - open buf with ikm1 under name; returns the status */
static enum km_status
try_open(const char *name, const unsigned char *buf, size_t len,
    struct kmerr *err)
{
	struct seal_key *k = seal_key_from_bytes(ikm1, SEAL_KEY_LEN, NULL);
	unsigned char *out = NULL;
	size_t outlen = 0;
	enum km_status st;

	st = seal_open(k, name, buf, len, NOW, &out, &outlen, NULL, NULL,
	    err);
	if (st != KM_OK && out != NULL)
		st = KM_NOMEM;		/* a failure must not return data */
	secmem_free(out, outlen);
	seal_key_free(k);
	return st;
}

TEST(round_trip)
{
	struct seal_key *k = seal_key_from_bytes(ikm1, SEAL_KEY_LEN, NULL);
	unsigned char *buf = NULL, *out = NULL;
	size_t len = 0, outlen = 0;
	unsigned flags = 99;
	int64_t exp = 0;

	CHECK(k != NULL);
	CHECK_EQ_INT(seal_seal(k, NAME, payload, sizeof(payload), NOW + 60,
	    0, &buf, &len, NULL), KM_OK);
	CHECK_EQ_INT(len, sizeof(payload) + SEAL_OVERHEAD);
	CHECK_EQ_INT(buf[0], SEAL_VERSION);
	/* the payload must not appear in clear */
	CHECK(memmem(buf, len, "BEGIN", 5) == NULL);
	CHECK_EQ_INT(seal_open(k, NAME, buf, len, NOW, &out, &outlen, &flags,
	    &exp, NULL), KM_OK);
	CHECK_EQ_INT(outlen, sizeof(payload));
	CHECK(memcmp(out, payload, outlen) == 0);
	CHECK_EQ_INT(flags, 0);
	CHECK_EQ_INT(exp, NOW + 60);
	secmem_free(out, outlen);
	free(buf);
	seal_key_free(k);
}

TEST(nonce_differs)
{
	size_t l1, l2;
	unsigned char *a = sealed(ikm1, NAME, &l1), *b = sealed(ikm1, NAME, &l2);

	CHECK(a != NULL && b != NULL);
	CHECK_EQ_INT(l1, l2);
	CHECK(memcmp(a + 1, b + 1, SEAL_NONCE_LEN) != 0);
	CHECK(memcmp(a, b, l1) != 0);
	free(a);
	free(b);
}

TEST(negative_empty_payload)
{
	struct seal_key *k = seal_key_from_bytes(ikm1, SEAL_KEY_LEN, NULL);
	unsigned char *buf = NULL, *out = NULL;
	size_t len = 0, outlen = 99;
	unsigned flags = 0;

	CHECK(k != NULL);
	CHECK_EQ_INT(seal_seal(k, NAME, NULL, 0, NOW + 5, SEAL_NEGATIVE,
	    &buf, &len, NULL), KM_OK);
	CHECK_EQ_INT(len, SEAL_OVERHEAD);
	CHECK_EQ_INT(seal_open(k, NAME, buf, len, NOW, &out, &outlen, &flags,
	    NULL, NULL), KM_OK);
	CHECK(out != NULL);
	CHECK_EQ_INT(outlen, 0);
	CHECK_EQ_INT(flags, SEAL_NEGATIVE);
	secmem_free(out, outlen);
	free(buf);
	seal_key_free(k);
}

TEST(expired)
{
	struct seal_key *k = seal_key_from_bytes(ikm1, SEAL_KEY_LEN, NULL);
	unsigned char *buf = NULL, *out = NULL;
	size_t len = 0, outlen = 0;
	struct kmerr err;

	CHECK(k != NULL);
	CHECK_EQ_INT(seal_seal(k, NAME, payload, 4, NOW, 0, &buf, &len, NULL), KM_OK);
	CHECK_EQ_INT(seal_open(k, NAME, buf, len, NOW, &out, &outlen, NULL,
	    NULL, &err), KM_PERMFAIL);
	CHECK(out == NULL);
	CHECK_EQ_STR(err.msg, "expired");
	CHECK_EQ_INT(seal_open(k, NAME, buf, len, NOW - 1, &out, &outlen,
	    NULL, NULL, NULL), KM_OK);
	secmem_free(out, outlen);
	free(buf);
	seal_key_free(k);
}

TEST(tamper_every_byte)
{
	size_t len, i;
	unsigned char *buf = sealed(ikm1, NAME, &len);
	struct kmerr err;

	CHECK(buf != NULL);
	CHECK_EQ_INT(try_open(NAME, buf, len, NULL), KM_OK);
	/* Flip one bit in each byte in turn: version, nonce, ciphertext
	 * (including the expiry) and tag must all be covered. */
	for (i = 0; i < len; i++) {
		buf[i] ^= 0x01;
		kmerr_clear(&err);
		CHECK_EQ_INT(try_open(NAME, buf, len, &err), KM_PROTO);
		CHECK(err.msg[0] != '\0');
		buf[i] ^= 0x01;
	}
	CHECK_EQ_INT(try_open(NAME, buf, len, NULL), KM_OK);
	free(buf);
}

TEST(truncated)
{
	size_t len, i;
	unsigned char *buf = sealed(ikm1, NAME, &len);
	struct kmerr err;

	CHECK(buf != NULL);
	for (i = 0; i < len; i++) {
		kmerr_clear(&err);
		CHECK_EQ_INT(try_open(NAME, buf, i, &err), KM_PROTO);
		CHECK(err.msg[0] != '\0');
	}
	CHECK(strstr(err.msg, "authentication") != NULL);	/* len-1: tag check */
	CHECK_EQ_INT(try_open(NAME, buf, 10, &err), KM_PROTO);
	CHECK(strstr(err.msg, "truncated") != NULL);
	CHECK_EQ_INT(try_open(NAME, buf, 0, &err), KM_PROTO);
	/* extended by a byte is also refused */
	{
		unsigned char *longer = malloc(len + 1);

		CHECK(longer != NULL);
		memcpy(longer, buf, len);
		longer[len] = 0;
		CHECK_EQ_INT(try_open(NAME, longer, len + 1, NULL), KM_PROTO);
		free(longer);
	}
	free(buf);
}

/* Sealed entries that open must refuse, and the reason each gives. */
static const struct {
	const char		*what;
	const unsigned char	*ikm;		/* sealed with; opened with ikm1 */
	const char		*open_name;
	int			 version;	/* written over byte 0, or -1 */
	const char		*reason;
} refusals[] = {
	{ "bad version", ikm1, NAME, 2, "version" },
	{ "wrong name", ikm1, "km:other", -1, "authentication failed" },
	{ "wrong key", ikm2, NAME, -1, "authentication failed" },
};

TEST(refused)
{
	for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
		size_t len;
		unsigned char *buf = sealed(refusals[i].ikm, NAME, &len);
		struct kmerr err = { 0 };
		enum km_status st;

		printf("    %s\n", refusals[i].what);
		CHECK(buf != NULL);
		if (refusals[i].version >= 0)
			buf[0] = (unsigned char)refusals[i].version;
		st = try_open(refusals[i].open_name, buf, len, &err);
		free(buf);
		CHECK_EQ_INT(st, KM_PROTO);
		CHECK(strstr(err.msg, refusals[i].reason) != NULL);
	}
}

TEST(names)
{
	struct seal_key *k1 = seal_key_from_bytes(ikm1, SEAL_KEY_LEN, NULL);
	struct seal_key *k2 = seal_key_from_bytes(ikm2, SEAL_KEY_LEN, NULL);
	char a[SEAL_NAME_MAX], b[SEAL_NAME_MAX], h[SEAL_HASH_HEXLEN + 1];
	char longaddr[SEAL_ADDR_MAX + 2];

	CHECK(k1 != NULL && k2 != NULL);
	CHECK_EQ_INT(seal_entry_name(k1, "cert", "Alice@Example.ORG", a), KM_OK);
	CHECK_EQ_INT(strlen(a), 3 + SEAL_HASH_HEXLEN);
	CHECK(strncmp(a, "km:", 3) == 0);
	CHECK(strstr(a, "alice") == NULL);
	/* case-insensitive */
	CHECK_EQ_INT(seal_entry_name(k1, "cert", "alice@example.org", b), KM_OK);
	CHECK_EQ_STR(a, b);
	/* kind and key separate the names */
	CHECK_EQ_INT(seal_entry_name(k1, "enckey", "alice@example.org", b), KM_OK);
	CHECK(strcmp(a, b) != 0);
	CHECK_EQ_INT(seal_entry_name(k2, "cert", "alice@example.org", b), KM_OK);
	CHECK(strcmp(a, b) != 0);
	CHECK_EQ_INT(seal_entry_name(k1, "cert", "bob@example.org", b), KM_OK);
	CHECK(strcmp(a, b) != 0);
	/* the address hash is the same for any case, differs from names */
	CHECK_EQ_INT(seal_name_hash(k1, "ALICE@example.org", h), KM_OK);
	CHECK_EQ_INT(strlen(h), SEAL_HASH_HEXLEN);
	CHECK(strcmp(h, a + 3) != 0);
	CHECK_EQ_INT(seal_name_hash(k1, "alice@example.org", b), KM_OK);
	CHECK_EQ_STR(h, b);
	/* "kind\0addr" framing: ("ce", "rt...") must not collide */
	CHECK_EQ_INT(seal_entry_name(k1, "ce", "rtalice@example.org", b), KM_OK);
	CHECK(strcmp(a, b) != 0);
	/* malformed input */
	CHECK_EQ_INT(seal_entry_name(k1, "", "a@b", b), KM_PROTO);
	CHECK_EQ_INT(seal_entry_name(k1, "Cert", "a@b", b), KM_PROTO);
	CHECK_EQ_INT(seal_entry_name(k1, "ce rt", "a@b", b), KM_PROTO);
	CHECK_EQ_INT(seal_entry_name(k1, NULL, "a@b", b), KM_PROTO);
	CHECK_EQ_INT(seal_entry_name(k1, "cert", "", b), KM_PROTO);
	CHECK_EQ_INT(seal_entry_name(k1, "cert", NULL, b), KM_PROTO);
	CHECK_EQ_INT(seal_entry_name(k1, "cert", "a b@c", b), KM_PROTO);
	CHECK_EQ_INT(seal_entry_name(k1, "cert", "a\nb@c", b), KM_PROTO);
	CHECK_EQ_INT(seal_entry_name(k1, "cert",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", b),
	    KM_OK);
	memset(longaddr, 'a', sizeof(longaddr) - 1);
	longaddr[sizeof(longaddr) - 1] = '\0';
	CHECK_EQ_INT(seal_entry_name(k1, "cert", longaddr, b), KM_PROTO);
	CHECK_EQ_INT(seal_name_hash(NULL, "a@b", h), KM_PROTO);
	seal_key_free(k1);
	seal_key_free(k2);
}

/* the keyed names are Redis keys: they must not change between versions
 * (values from the HMAC() one-shot the keyed context replaced) */
TEST(names_known_answer)
{
	unsigned char raw[SEAL_KEY_LEN];
	char n[SEAL_NAME_MAX], h[SEAL_HASH_HEXLEN + 1];
	struct seal_key *k;
	struct kmerr err;

	for (size_t i = 0; i < sizeof(raw); i++)
		raw[i] = (unsigned char)i;
	CHECK((k = seal_key_from_bytes(raw, sizeof(raw), &err)) != NULL);
	CHECK_EQ_INT(seal_entry_name(k, "cert", "Alice@Example.org", n), KM_OK);
	CHECK_EQ_STR(n, "km:043c9d50f4ca269ab5a22390659b6737e8feafdb2091c42781909f779c2cbc2d");
	CHECK_EQ_INT(seal_name_hash(k, "alice@example.org", h), KM_OK);
	CHECK_EQ_STR(h, "bb83013ff0b38d31211083f889cd9b97ec655fd61c26d9263d100569eec6f8c2");
	seal_key_free(k);
}

/* names come from a table of the last ones computed: a key that has seen
 * 3,000 addresses (each twice, every slot reused) names each one as a
 * fresh key does; a kind or a case change is another name, not a stale one */
TEST(names_kept_are_right)
{
	struct seal_key *a, *b;
	char addr[64], na[SEAL_NAME_MAX], nb[SEAL_NAME_MAX];
	char ha[SEAL_HASH_HEXLEN + 1], hb[SEAL_HASH_HEXLEN + 1];

	CHECK((a = seal_key_from_bytes(ikm1, SEAL_KEY_LEN, NULL)) != NULL);
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 3000; i++) {
			snprintf(addr, sizeof(addr), "user%d@Example.org", i);
			CHECK((b = seal_key_from_bytes(ikm1, SEAL_KEY_LEN, NULL)) != NULL);
			CHECK_EQ_INT(seal_name_hash(a, addr, ha), KM_OK);
			CHECK_EQ_INT(seal_name_hash(b, addr, hb), KM_OK);
			CHECK_EQ_STR(ha, hb);
			CHECK_EQ_INT(seal_entry_name(a, round ? "cert" : "enckey", addr, na), KM_OK);
			CHECK_EQ_INT(seal_entry_name(b, round ? "cert" : "enckey", addr, nb), KM_OK);
			CHECK_EQ_STR(na, nb);
			CHECK(strcmp(na + 3, ha) != 0);
			seal_key_free(b);
		}
	}
	/* the same address in another case is the same name (lower-cased) */
	CHECK_EQ_INT(seal_name_hash(a, "USER7@example.ORG", hb), KM_OK);
	CHECK_EQ_INT(seal_name_hash(a, "user7@example.org", ha), KM_OK);
	CHECK_EQ_STR(ha, hb);
	seal_key_free(a);
}

TEST(bad_key_bytes)
{
	struct kmerr err;

	CHECK(seal_key_from_bytes(ikm1, 31, &err) == NULL);
	CHECK(strstr(err.msg, "32 bytes") != NULL);
	CHECK(seal_key_from_bytes(NULL, 32, NULL) == NULL);
	CHECK(seal_key_free(NULL) == NULL);
}

/* tmpdir - a fresh directory for key files */
static char *
tmpdir(char *buf, size_t len)
{
	snprintf(buf, len, "/tmp/test_seal.XXXXXX");
	return mkdtemp(buf);
}

TEST(key_file)
{
	char dir[64], path[128];
	struct kmerr err;
	struct seal_key *k1, *k2;
	char n1[SEAL_NAME_MAX], n2[SEAL_NAME_MAX];
	struct stat sb;
	int fd;

	CHECK(tmpdir(dir, sizeof(dir)) != NULL);
	snprintf(path, sizeof(path), "%s/seal.key", dir);
	CHECK_EQ_INT(seal_key_create(path, &err), KM_OK);
	CHECK(stat(path, &sb) == 0);
	CHECK_EQ_INT(sb.st_mode & 07777, 0600);
	CHECK_EQ_INT(sb.st_size, SEAL_KEY_LEN);
	/* never overwrite an existing key */
	CHECK_EQ_INT(seal_key_create(path, &err), KM_PERMFAIL);
	CHECK(strstr(err.msg, "exists") != NULL);
	CHECK(kmerr_is(&err, KMERR_EXISTS));
	k1 = seal_key_load(path, &err);
	CHECK(k1 != NULL);
	k2 = seal_key_load(path, &err);
	CHECK(k2 != NULL);
	CHECK_EQ_INT(seal_entry_name(k1, "cert", "a@b", n1), KM_OK);
	CHECK_EQ_INT(seal_entry_name(k2, "cert", "a@b", n2), KM_OK);
	CHECK_EQ_STR(n1, n2);
	seal_key_free(k2);
	/* mode 0400 is fine, 0640 and 0604 are not */
	CHECK(chmod(path, 0400) == 0);
	k2 = seal_key_load(path, &err);
	CHECK(k2 != NULL);
	k2 = seal_key_free(k2);
	CHECK(chmod(path, 0640) == 0);
	CHECK(seal_key_load(path, &err) == NULL);
	CHECK(strstr(err.msg, "0640") != NULL);
	CHECK(!kmerr_is(&err, KMERR_NOTFOUND));
	CHECK(chmod(path, 0604) == 0);
	CHECK(seal_key_load(path, &err) == NULL);
	CHECK(strstr(err.msg, "world") != NULL);
	CHECK(chmod(path, 0600) == 0);
	/* owners (only testable as root): root loads a key owned by the
	 * user it will drop to; another user is refused it */
	if (geteuid() == 0) {
		pid_t pid;
		int status = 0;

		CHECK(chown(path, 65534, 65534) == 0);
		k2 = seal_key_load(path, &err);
		CHECK(k2 != NULL);
		k2 = seal_key_free(k2);
		CHECK(chmod(dir, 0755) == 0);
		if ((pid = fork()) == 0) {
			struct seal_key *k3;

			if (setresgid(65533, 65533, 65533) != 0 || setresuid(65533, 65533, 65533) != 0)
				_exit(3);
			k3 = seal_key_load(path, &err);
			_exit(k3 == NULL && strstr(err.msg, "Permission denied") != NULL ? 0 : 1);
		}
		CHECK(pid > 0);
		CHECK(waitpid(pid, &status, 0) == pid);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		CHECK(chown(path, 0, 0) == 0);
	}
	/* a second create gives a different key */
	unlink(path);
	CHECK_EQ_INT(seal_key_create(path, &err), KM_OK);
	k2 = seal_key_load(path, &err);
	CHECK(k2 != NULL);
	CHECK_EQ_INT(seal_entry_name(k2, "cert", "a@b", n2), KM_OK);
	CHECK(strcmp(n1, n2) != 0);
	seal_key_free(k2);
	seal_key_free(k1);
	/* wrong sizes, a missing file, a directory, a symlink */
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	CHECK(fd >= 0);
	CHECK(write(fd, "short", 5) == 5);
	close(fd);
	CHECK(seal_key_load(path, &err) == NULL);
	CHECK(strstr(err.msg, "has 5") != NULL);
	fd = open(path, O_WRONLY | O_TRUNC);
	CHECK(fd >= 0);
	CHECK(write(fd, ikm1, 32) == 32 && write(fd, "x", 1) == 1);
	close(fd);
	CHECK(seal_key_load(path, &err) == NULL);
	CHECK(strstr(err.msg, "more than") != NULL);
	unlink(path);
	CHECK(seal_key_load(path, &err) == NULL);
	CHECK(strstr(err.msg, "No such file") != NULL);
	CHECK(kmerr_is(&err, KMERR_NOTFOUND));
	CHECK(seal_key_load(dir, &err) == NULL);
	CHECK(strstr(err.msg, "not a regular file") != NULL);
	{
		char link[160], target[160];

		snprintf(target, sizeof(target), "%s/real.key", dir);
		snprintf(link, sizeof(link), "%s/link.key", dir);
		CHECK_EQ_INT(seal_key_create(target, &err), KM_OK);
		CHECK(symlink(target, link) == 0);
		CHECK(seal_key_load(link, &err) == NULL);
		unlink(link);
		unlink(target);
	}
	rmdir(dir);
}

static const struct test_case tests[] = {
	T(round_trip),
	T(nonce_differs),
	T(negative_empty_payload),
	T(expired),
	T(tamper_every_byte),
	T(truncated),
	T(refused),
	T(names),
	T(names_known_answer),
	T(names_kept_are_right),
	T(bad_key_bytes),
	T(key_file),
	{ 0 }
};

int
main(int argc, char **argv)
{
	return harness_main(argc, argv, tests);
}
