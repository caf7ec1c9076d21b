/*
 * test_secmem.c - secure memory: zeroed, wiped on free (big mappings kept
 * for reuse up to a bound, the rest unmapped), left out of core
 * dumps (VmFlags "dd" in /proc/self/smaps), locked ("lo") where allowed,
 * and still allocated with one warning line when locking is refused.
 */
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "harness.h"
#include "log.h"
#include "secmem.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define PEEKABLE(p, n)	ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define PEEKABLE(p, n)	((void)(p), (void)(n))
#endif

/* vmflags - the VmFlags line of the mapping holding p, or "" if none */
static const char *
vmflags(const void *p)
{
	static char flags[512];
	char line[512];
	unsigned long lo, hi;
	int inside = 0;
	FILE *f;

	flags[0] = '\0';
	if ((f = fopen("/proc/self/smaps", "r")) == NULL)
		return flags;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
			inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
		else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
			snprintf(flags, sizeof(flags), "%s", line + 8);
			break;
		}
	}
	fclose(f);
	return flags;
}

/* has_flag - does a VmFlags line carry the two-letter flag? */
static int
has_flag(const char *flags, const char *flag)
{
	char want[8];

	snprintf(want, sizeof(want), " %s", flag);
	for (const char *s = flags; (s = strstr(s, want)) != NULL; s++)
		if (s[3] == ' ' || s[3] == '\n' || s[3] == '\0')
			return 1;
	return 0;
}

/* all_zero - are n bytes at p zero? */
static int
all_zero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != 0)
			return 0;
	return 1;
}

/* mapped - is the page holding p mapped? */
static int
mapped(const void *p)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	unsigned char vec;

	return mincore((void *)((uintptr_t)p / ps * ps), ps, &vec) == 0 || errno != ENOMEM;
}

/* Sizes on both sides of the slab limit (4096) and of a page. */
static const size_t sizes[] = { 1, 31, 32, 100, 1200, 2400, 4096, 4097, 20000, 70000 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

TEST(zeroed_and_excluded_from_dumps)
{
	for (size_t i = 0; i < NSIZES; i++) {
		unsigned char *p = secmem_alloc(sizes[i]);

		CHECK(p != NULL);
		CHECK(all_zero(p, sizes[i]));
		memset(p, 0xa5, sizes[i]);	/* the whole length is usable */
		CHECK(has_flag(vmflags(p), "dd"));
		CHECK(has_flag(vmflags(p + sizes[i] - 1), "dd"));
		secmem_free(p, sizes[i]);
	}
}

TEST(locked_where_allowed)
{
	struct rlimit rl;

	if (geteuid() != 0 && (getrlimit(RLIMIT_MEMLOCK, &rl) != 0 || rl.rlim_cur < 1024 * 1024))
		SKIP("RLIMIT_MEMLOCK below 1 MiB and not root: nothing can be locked");
	for (size_t i = 0; i < NSIZES; i++) {
		unsigned char *p = secmem_alloc(sizes[i]);

		CHECK(p != NULL);
		CHECK(has_flag(vmflags(p), "lo"));
		secmem_free(p, sizes[i]);
	}
}

TEST(small_block_wiped_on_free)
{
	/* A slab block stays mapped after free: it must read as zeros. */
	static const size_t small[] = { 1, 40, 1200, 4096 };

	for (size_t i = 0; i < sizeof(small) / sizeof(small[0]); i++) {
		unsigned char *p = secmem_alloc(small[i]);

		CHECK(p != NULL);
		memset(p, 0x5a, small[i]);
		secmem_free(p, 1);	/* a short len still wipes the block */
		CHECK(mapped(p));
		PEEKABLE(p, small[i]);
		CHECK(all_zero(p, small[i]));
	}
}

TEST(big_mappings_wiped_kept_or_unmapped)
{
	/* 40 x 72 KiB freed: what the 1 MiB spare list keeps reads as zeros
	   (and serves the next allocation), the rest is unmapped. */
	enum { N = 40, LEN = 72 * 1024 };
	static unsigned char *p[N];
	int kept = 0, gone = 0;
	unsigned char *again;

	for (int i = 0; i < N; i++) {
		CHECK((p[i] = secmem_alloc(LEN)) != NULL);
		memset(p[i], 0x5a, LEN);
	}
	for (int i = 0; i < N; i++)
		secmem_free(p[i], LEN);
	for (int i = 0; i < N; i++) {
		if (!mapped(p[i])) {
			gone++;
			continue;
		}
		kept++;
		PEEKABLE(p[i], LEN);
		CHECK(all_zero(p[i], LEN));
	}
	CHECK(kept >= 1 && kept * LEN <= 1024 * 1024);
	CHECK(gone >= N - 1024 * 1024 / LEN);
	CHECK((again = secmem_alloc(LEN - 100)) != NULL);
	CHECK(mapped(again) && all_zero(again, LEN - 100));
	secmem_free(again, LEN - 100);
}

TEST(small_secrets_share_pages)
{
	/* 1000 passwords of 20 bytes fit in one 64 KiB slab, not 1000 pages. */
	enum { N = 1000 };
	static unsigned char *p[N];
	size_t pages = 0, ps = (size_t)sysconf(_SC_PAGESIZE);

	for (int i = 0; i < N; i++) {
		CHECK((p[i] = secmem_alloc(20)) != NULL);
		memset(p[i], i & 0xff, 20);
	}
	for (int i = 0; i < N; i++) {
		int seen = 0;

		for (int j = 0; j < i && !seen; j++)
			seen = (uintptr_t)p[j] / ps == (uintptr_t)p[i] / ps;
		pages += !seen;
		CHECK(p[i][0] == (unsigned char)(i & 0xff) && p[i][19] == p[i][0]);
	}
	for (int i = 0; i < N; i++)
		secmem_free(p[i], 20);
	CHECK(pages <= 64 * 1024 / ps);
}

TEST(foreign_buffer_wiped_and_freed)
{
	/* Callers hand secmem_free() malloc'd buffers that held plaintext. */
	char *m = malloc(64);

	CHECK(m != NULL);
	memset(m, 'x', 64);
	CHECK(secmem_free(m, 64) == NULL);
	CHECK(secmem_free(NULL, 10) == NULL);
	CHECK(secmem_strfree(NULL) == NULL);
}

TEST(strdup_copies)
{
	char *s = secmem_strdup("correct horse battery staple");

	CHECK(s != NULL);
	CHECK_EQ_STR(s, "correct horse battery staple");
	CHECK(has_flag(vmflags(s), "dd"));
	CHECK(secmem_strfree(s) == NULL);
}

/* churn - allocate, fill and free from several threads at once */
static void *
churn(void *arg)
{
	uintptr_t id = (uintptr_t)arg;

	for (int i = 0; i < 2000; i++) {
		size_t n = sizes[(i + id) % NSIZES];
		unsigned char *p = secmem_alloc(n);

		if (p == NULL || !all_zero(p, n))
			return (void *)1;
		memset(p, (int)id, n);
		secmem_free(p, n);
	}
	return NULL;
}

TEST(threads)
{
	pthread_t th[4];
	void *rv;
	int bad = 0;

	for (uintptr_t i = 0; i < 4; i++)
		CHECK(pthread_create(&th[i], NULL, churn, (void *)(i + 1)) == 0);
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], &rv);
		bad += rv != NULL;
	}
	CHECK_EQ_INT(bad, 0);
}

TEST(asan_sees_overflow)
{
#if defined(__SANITIZE_ADDRESS__)
	/* The tail of a block past the length asked for is poisoned. */
	static const size_t lens[] = { 20, 100, 3000, 20000 };

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		int status, devnull;
		pid_t pid;

		fflush(NULL);
		CHECK((pid = fork()) >= 0);
		if (pid == 0) {
			volatile unsigned char *p = secmem_alloc(lens[i]);

			if ((devnull = open("/dev/null", O_WRONLY)) >= 0)
				dup2(devnull, 2);	/* the ASan report */
			p[lens[i]] = 1;
			_exit(0);
		}
		CHECK(waitpid(pid, &status, 0) == pid);
		CHECK(!WIFEXITED(status) || WEXITSTATUS(status) != 0);
	}
#else
	SKIP("ci-unavailable: not an ASan build (make SANITIZE=1 unit runs it)");
#endif
}

/* unlocked_child - without the right to lock: allocate, check, exit 0 if good */
static int
unlocked_child(const char *logpath)
{
	struct rlimit rl = { 0, 0 };
	unsigned char *a, *b, *c;
	int fd;

	if ((fd = open(logpath, O_WRONLY | O_TRUNC)) < 0 || dup2(fd, 2) < 0)
		return 10;
	log_init("test_secmem", 0, 1, 0);
	/* root locks whatever the limit: become nobody, who cannot */
	if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
		return 11;
	if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0)
		return 12;
	/* bigger than all spare mappings: new mappings, mlock refused */
	a = secmem_alloc(3 << 20);
	b = secmem_alloc(2 << 20);
	c = secmem_alloc(8);
	if (a == NULL || b == NULL || c == NULL)
		return 13;
	if (has_flag(vmflags(a), "lo") || !has_flag(vmflags(a), "dd"))
		return 14;
	memset(a, 1, 3 << 20);
	secmem_free(a, 3 << 20);
	secmem_free(b, 2 << 20);
	secmem_free(c, 8);
	return 0;
}

TEST(mlock_refused_falls_back_with_one_line)
{
	char logpath[] = "/tmp/test_secmem.XXXXXX", line[512];
	int fd, status, lines = 0;
	pid_t pid;
	FILE *f;

	CHECK((fd = mkstemp(logpath)) >= 0);
	close(fd);
	CHECK(chmod(logpath, 0666) == 0);
	fflush(NULL);
	CHECK((pid = fork()) >= 0);
	if (pid == 0)
		_exit(unlocked_child(logpath));
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK((f = fopen(logpath, "r")) != NULL);
	while (fgets(line, sizeof(line), f) != NULL) {
		printf("    child: %s", line);
		lines += strstr(line, "secmem: cannot lock secret memory") != NULL;
	}
	fclose(f);
	unlink(logpath);
	CHECK(WIFEXITED(status));
	CHECK_EQ_INT(WEXITSTATUS(status), 0);
	CHECK_EQ_INT(lines, 1);
}

static const struct test_case tests[] = {
	T(zeroed_and_excluded_from_dumps),
	T(locked_where_allowed),
	T(small_block_wiped_on_free),
	T(big_mappings_wiped_kept_or_unmapped),
	T(small_secrets_share_pages),
	T(foreign_buffer_wiped_and_freed),
	T(strdup_copies),
	T(threads),
	T(asan_sees_overflow),
	T(mlock_refused_falls_back_with_one_line),
	{ 0 }
};

int
main(int argc, char **argv)
{
	return harness_main(argc, argv, tests);
}
