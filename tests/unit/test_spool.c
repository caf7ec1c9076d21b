/*
 * test_spool.c - unit tests for milter/spool.c: memory up to spool_memory_max,
 * then an unlinked temp file; map and size; a directory that cannot take the
 * file (missing, not a directory, full) is KM_TEMPFAIL; the plaintext body is
 * wiped before its memory is freed.
 */
#include <sys/resource.h>
#include <sys/stat.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "freewatch.h"
#include "harness.h"
#include "spool.h"

#include <openssl/bio.h>

#define MARK "PLAINTEXT-MARK-7f3a"

/* tmpdir - a fresh private directory for one case */
static char *
tmpdir(void)
{
	static char d[64];

	snprintf(d, sizeof(d), "/tmp/test_spool.XXXXXX");
	return mkdtemp(d);
}

/* count_entries - files in dir (the spool file must stay unlinked) */
static int
count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

/* fill - append n bytes of a repeating pattern starting at offset off */
static enum km_status
fill(struct spool *s, size_t off, size_t n, struct kmerr *err)
{
	unsigned char buf[1000];

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = 0;
	while (n > 0) {
		size_t k = n < sizeof(buf) ? n : sizeof(buf);
		enum km_status st;

		for (size_t i = 0; i < k; i++)
			buf[i] = (unsigned char)('a' + (off + i) % 26);
		if ((st = spool_append(s, buf, k, err)) != KM_OK)
			return st;
		off += k;
		n -= k;
	}
	return KM_OK;
}

/* pattern_ok - the content is fill()'s pattern from 0 */
static int
pattern_ok(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (unsigned char)('a' + i % 26))
			return 0;
	return 1;
}

TEST(memory_below_limit)
{
	char *dir = tmpdir();
	struct kmerr err = { 0 };
	struct spool *s;
	const unsigned char *p;
	size_t n;

	CHECK(dir != NULL);
	CHECK((s = spool_new(dir, 100000)) != NULL);
	CHECK_EQ_INT(spool_size(s), 0);
	CHECK_EQ_INT(spool_map(s, &p, &n, &err), KM_OK);
	CHECK_EQ_INT(n, 0);
	CHECK(p != NULL);
	CHECK_EQ_INT(fill(s, 0, 100000, &err), KM_OK);
	CHECK_EQ_INT(spool_size(s), 100000);
	CHECK_EQ_INT(spool_on_disk(s), 0);	/* exactly the limit stays in memory */
	CHECK_EQ_INT(spool_map(s, &p, &n, &err), KM_OK);
	CHECK_EQ_INT(n, 100000);
	CHECK(pattern_ok(p, n));
	spool_free(s);
	rmdir(dir);
}

TEST(file_past_limit)
{
	char *dir = tmpdir();
	struct kmerr err = { 0 };
	struct spool *s;
	const unsigned char *p;
	size_t n;
	int fds_before = 0, fds_after = 0;

	CHECK(dir != NULL);
	CHECK((s = spool_new(dir, 4096)) != NULL);
	CHECK_EQ_INT(fill(s, 0, 4096, &err), KM_OK);
	CHECK_EQ_INT(spool_on_disk(s), 0);
	CHECK_EQ_INT(fill(s, 4096, 1, &err), KM_OK);
	CHECK_EQ_INT(spool_on_disk(s), 1);	/* one byte past the limit moves it */
	CHECK_EQ_INT(count_entries(dir), 0);	/* the file is unlinked */
	CHECK_EQ_INT(fill(s, 4097, 300000 - 4097, &err), KM_OK);
	CHECK_EQ_INT(spool_size(s), 300000);
	CHECK_EQ_INT(spool_map(s, &p, &n, &err), KM_OK);
	CHECK_EQ_INT(n, 300000);
	CHECK(pattern_ok(p, n));
	/* an append after a map invalidates it; a new map sees every byte */
	CHECK_EQ_INT(fill(s, 300000, 26, &err), KM_OK);
	CHECK_EQ_INT(spool_map(s, &p, &n, &err), KM_OK);
	CHECK_EQ_INT(n, 300026);
	CHECK(pattern_ok(p, n));
	for (int fd = 0; fd < 256; fd++)
		fds_before += fcntl(fd, F_GETFD) != -1;
	spool_free(s);
	for (int fd = 0; fd < 256; fd++)
		fds_after += fcntl(fd, F_GETFD) != -1;
	CHECK_EQ_INT(fds_after, fds_before - 1);	/* the file is closed */
	CHECK_EQ_INT(count_entries(dir), 0);
	rmdir(dir);
}

TEST(file_is_private)
{
	char *dir = tmpdir();
	struct kmerr err = { 0 };
	struct spool *s;
	struct stat st;
	int found = 0;

	CHECK(dir != NULL);
	CHECK((s = spool_new(dir, 10)) != NULL);
	CHECK_EQ_INT(fill(s, 0, 100, &err), KM_OK);
	CHECK_EQ_INT(spool_on_disk(s), 1);
	/* the only new descriptor open on an unlinked file is ours: 0600 */
	for (int fd = 3; fd < 256; fd++) {
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 0 &&
		    st.st_size == 100) {
			CHECK_EQ_INT(st.st_mode & 07777, 0600);
			found = 1;
		}
	}
	CHECK(found);
	spool_free(s);
	rmdir(dir);
}

TEST(missing_dir_tempfail)
{
	struct kmerr err = { 0 };
	struct spool *s;

	CHECK((s = spool_new("/nonexistent/kmilter-spool", 64)) != NULL);
	CHECK_EQ_INT(fill(s, 0, 64, &err), KM_OK);
	CHECK_EQ_INT(fill(s, 64, 1, &err), KM_TEMPFAIL);
	CHECK(strstr(err.msg, "/nonexistent/kmilter-spool") != NULL);
	CHECK(strstr(err.msg, "cannot create") != NULL);
	spool_free(s);
}

TEST(not_a_dir_tempfail)
{
	/* "unwritable": a path that is not a directory (root would write
	   through a mode 0500 directory, so that would prove nothing here) */
	struct kmerr err = { 0 };
	struct spool *s;

	CHECK((s = spool_new("/dev/null", 64)) != NULL);
	CHECK_EQ_INT(fill(s, 0, 200, &err), KM_TEMPFAIL);
	CHECK_EQ_INT(err.status, KM_TEMPFAIL);
	CHECK(strstr(err.msg, "/dev/null") != NULL);
	spool_free(s);
}

TEST(full_dir_tempfail)
{
	/* A full file system, simulated with RLIMIT_FSIZE: write() fails
	   with EFBIG (SIGXFSZ ignored) exactly as it would with ENOSPC. */
	char *dir = tmpdir();
	struct kmerr err = { 0 };
	struct spool *s;
	struct rlimit old, lim;
	enum km_status st1, st2;

	CHECK(dir != NULL);
	CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
	signal(SIGXFSZ, SIG_IGN);
	lim = old;
	lim.rlim_cur = 8192;
	CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
	CHECK((s = spool_new(dir, 1024)) != NULL);
	st1 = fill(s, 0, 4096, &err);		/* moves to the file */
	st2 = fill(s, 4096, 65536, &err);		/* the "disk" fills */
	setrlimit(RLIMIT_FSIZE, &old);
	signal(SIGXFSZ, SIG_DFL);
	CHECK_EQ_INT(st1, KM_OK);
	CHECK_EQ_INT(st2, KM_TEMPFAIL);
	CHECK(strstr(err.msg, "cannot write") != NULL);
	CHECK(strstr(err.msg, dir) != NULL);
	spool_free(s);
	CHECK_EQ_INT(count_entries(dir), 0);
	rmdir(dir);
}

TEST(free_null)
{
	CHECK(spool_free(NULL) == NULL);
}

TEST(wiped_before_free)
{
#if FREEWATCH
	char *dir = tmpdir();
	struct kmerr err = { 0 };
	struct spool *s;
	unsigned char chunk[5000];
	int bad, unwiped;

	CHECK(dir != NULL);
	for (size_t i = 0; i + sizeof(MARK) - 1 <= sizeof(chunk); i += sizeof(MARK) - 1)
		memcpy(chunk + i, MARK, sizeof(MARK) - 1);
	freewatch_start(MARK);
	/* in memory, grown several times (every old buffer must be wiped) */
	s = spool_new(dir, 1u << 20);
	for (int i = 0; s != NULL && i < 20; i++)
		if (spool_append(s, chunk, sizeof(chunk), &err) != KM_OK)
			break;
	if (s != NULL && spool_size(s) == 20 * sizeof(chunk))
		s = spool_free(s);
	/* moved to a file: the memory copy must be wiped when it moves */
	s = s ? s : spool_new(dir, 16384);
	for (int i = 0; s != NULL && i < 10; i++)
		if (spool_append(s, chunk, sizeof(chunk), &err) != KM_OK)
			break;
	bad = s == NULL || !spool_on_disk(s);
	spool_free(s);
	unwiped = freewatch_stop();
	rmdir(dir);
	CHECK(!bad);
	CHECK_EQ_INT(unwiped, 0);
#else
	SKIP(FREEWATCH_SKIP);
#endif
}

/* read_all_ok - the content through spool_read() in pieces of step bytes is fill()'s pattern of want bytes */
static int
read_all_ok(struct spool *s, size_t step, size_t want)
{
	unsigned char *buf = malloc(want + 1), *piece = malloc(step);
	size_t off = 0, got;
	struct kmerr err = { 0 };
	int ok = buf != NULL && piece != NULL;

	while (ok) {
		if (spool_read(s, off, piece, step, &got, &err) != KM_OK || off + got > want) {
			ok = 0;
			break;
		}
		if (got == 0)
			break;
		memcpy(buf + off, piece, got);
		off += got;
	}
	ok = ok && off == want && pattern_ok(buf, want);
	free(buf);
	free(piece);
	return ok;
}

TEST(read_in_pieces)
{
	char *dir = tmpdir();
	struct kmerr err = { 0 };
	struct spool *s;
	unsigned char b[8];
	size_t got = 99;

	CHECK(dir != NULL);
	CHECK((s = spool_new(dir, 5000)) != NULL);
	CHECK_EQ_INT(spool_read(s, 0, b, sizeof(b), &got, &err), KM_OK);
	CHECK_EQ_INT(got, 0);			/* empty: end at once */
	CHECK_EQ_INT(fill(s, 0, 4000, &err), KM_OK);
	CHECK(read_all_ok(s, 333, 4000));	/* from memory */
	CHECK_EQ_INT(fill(s, 4000, 96000, &err), KM_OK);
	CHECK_EQ_INT(spool_on_disk(s), 1);
	CHECK(read_all_ok(s, 65535, 100000));	/* from the file */
	CHECK(read_all_ok(s, 7, 100000));
	CHECK_EQ_INT(spool_read(s, 99998, b, sizeof(b), &got, &err), KM_OK);
	CHECK_EQ_INT(got, 2);			/* short read at the end */
	CHECK_EQ_INT(spool_read(s, 100000, b, sizeof(b), &got, &err), KM_OK);
	CHECK_EQ_INT(got, 0);
	spool_free(s);
	rmdir(dir);
}

TEST(bios_copy_through_disk)
{
	char *dir = tmpdir();
	struct kmerr err = { 0 };
	struct spool *src, *dst;
	BIO *r, *w;
	char buf[4096];
	int n;

	CHECK(dir != NULL);
	CHECK((src = spool_new(dir, 1000)) != NULL);
	CHECK((dst = spool_new(dir, 1000)) != NULL);
	CHECK_EQ_INT(fill(src, 0, 250000, &err), KM_OK);
	CHECK((r = spool_reader(src)) != NULL);
	CHECK((w = spool_writer(dst)) != NULL);
	CHECK_EQ_INT(BIO_eof(r), 0);
	while ((n = BIO_read(r, buf, sizeof(buf))) > 0)
		CHECK_EQ_INT(BIO_write(w, buf, n), n);
	CHECK_EQ_INT(n, 0);
	CHECK_EQ_INT(BIO_eof(r), 1);
	CHECK(spool_writer_error(w) == NULL);
	CHECK_EQ_INT(spool_size(dst), 250000);
	CHECK_EQ_INT(spool_on_disk(dst), 1);	/* the writer moved it to disk like a body */
	CHECK(read_all_ok(dst, 65535, 250000));
	CHECK_EQ_INT(BIO_reset(r), 1);		/* a reader can start over */
	CHECK_EQ_INT(BIO_read(r, buf, 26), 26);
	CHECK(pattern_ok((unsigned char *)buf, 26));
	BIO_free_all(r);
	BIO_free_all(w);
	spool_free(src);
	spool_free(dst);
	CHECK_EQ_INT(count_entries(dir), 0);
	rmdir(dir);
}

TEST(writer_failure_is_reported)
{
	struct spool *s;
	BIO *w;
	char buf[100] = { 0 };

	CHECK((s = spool_new("/dev/null", 64)) != NULL);
	CHECK((w = spool_writer(s)) != NULL);
	CHECK_EQ_INT(BIO_write(w, buf, 60), 60);	/* still in memory */
	CHECK(spool_writer_error(w) == NULL);
	CHECK_EQ_INT(BIO_write(w, buf, 100), -1);	/* past memmax: no directory */
	CHECK(spool_writer_error(w) != NULL);
	CHECK_EQ_INT(spool_writer_error(w)->status, KM_TEMPFAIL);
	CHECK(strstr(spool_writer_error(w)->msg, "/dev/null") != NULL);
	CHECK_EQ_INT(BIO_write(w, buf, 1), -1);		/* stays failed */
	BIO_free_all(w);
	spool_free(s);
}

/*
 * The disk budget counts the bytes of every spool's file: an append that
 * would pass it fails with "spool full" and writes nothing, memory-only
 * spools do not count, and a freed spool gives its bytes back.
 */
TEST(disk_budget_across_spools)
{
	char *dir = tmpdir();
	struct spool *a, *b, *m;
	struct kmerr err;
	size_t used0 = spool_disk_used();

	CHECK(dir != NULL);
	spool_disk_limit(20000);
	a = spool_new(dir, 4096);
	b = spool_new(dir, 4096);
	m = spool_new(dir, 100000);
	CHECK(a != NULL && b != NULL && m != NULL);
	CHECK_EQ_INT(fill(m, 0, 50000, &err), KM_OK);	/* in memory: not counted */
	CHECK_EQ_INT((int)(spool_disk_used() - used0), 0);
	CHECK_EQ_INT(fill(a, 0, 12000, &err), KM_OK);	/* on disk: counted */
	CHECK_EQ_INT((int)(spool_disk_used() - used0), 12000);
	CHECK_EQ_INT(fill(b, 0, 4000, &err), KM_OK);	/* in memory still */
	CHECK_EQ_INT(fill(b, 4000, 4000, &err), KM_OK);	/* 8000 moved: 20000 */
	CHECK_EQ_INT((int)(spool_disk_used() - used0), 20000);
	CHECK_EQ_INT(fill(b, 8000, 1, &err), KM_TEMPFAIL);
	CHECK(strncmp(err.msg, "spool full: milter.spool_disk_max_mb", 36) == 0);
	CHECK_EQ_INT((int)spool_size(b), 8000);		/* nothing written */
	CHECK_EQ_INT((int)(spool_disk_used() - used0), 20000);
	CHECK_EQ_INT(spool_disk_room(1, &err), KM_TEMPFAIL);	/* a check: nothing taken */
	CHECK(strncmp(err.msg, "spool full: milter.spool_disk_max_mb", 36) == 0);
	CHECK_EQ_INT(spool_disk_room(0, &err), KM_OK);
	a = spool_free(a);				/* its 12000 bytes come back */
	CHECK_EQ_INT((int)(spool_disk_used() - used0), 8000);
	CHECK_EQ_INT(spool_disk_room(12000, &err), KM_OK);
	CHECK_EQ_INT(spool_disk_room(12001, &err), KM_TEMPFAIL);
	CHECK_EQ_INT(fill(b, 8000, 12000, &err), KM_OK);
	b = spool_free(b);
	m = spool_free(m);
	CHECK_EQ_INT((int)(spool_disk_used() - used0), 0);
	spool_disk_limit(0);
	rmdir(dir);
}

static const struct test_case tests[] = {
	T(memory_below_limit),
	T(file_past_limit),
	T(file_is_private),
	T(missing_dir_tempfail),
	T(not_a_dir_tempfail),
	T(full_dir_tempfail),
	T(free_null),
	T(wiped_before_free),
	T(read_in_pieces),
	T(bios_copy_through_disk),
	T(writer_failure_is_reported),
	T(disk_budget_across_spools),
	{ 0 }
};

int
main(int argc, char **argv)
{
	return harness_main(argc, argv, tests);
}
