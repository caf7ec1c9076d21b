/*
 * secmem.c - allocation and wiping of secret buffers (see secmem.h).
 *
 * Two kinds of memory, both from mmap, marked MADV_DONTDUMP and mlock'ed
 * where RLIMIT_MEMLOCK (or CAP_IPC_LOCK) allows:
 *  - small secrets (up to SLAB_MAX bytes: passwords, key structs, DER
 *    keys, KMIP requests) come from slabs: a 64 KiB chunk cut into blocks
 *    of one size class (32 .. 4096 bytes), a bitmap saying which are in
 *    use.  Freed blocks are wiped and stay mapped and locked, so many
 *    small secrets do not cost a page (and a lock) each;
 *  - larger ones get a page-rounded mapping of their own, found again
 *    through a small hash of live mappings, and wiped on free; up to
 *    SPARE_MAX bytes of freed mappings are kept (wiped, locked) for the
 *    next allocation of a similar size, so that a message-sized secret
 *    does not cost an mmap, mlock and munmap each time; the rest are
 *    unmapped.
 * A pointer that is neither (a malloc'd buffer handed to secmem_free, as
 * callers did before this allocator) is wiped for len bytes and free()d.
 * Under AddressSanitizer the unused tail of a block and every free block
 * are poisoned, so overflows of secrets are still caught.
 */
#include <sys/mman.h>
#include <sys/resource.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "secmem.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sys/syscall.h>
#include <sanitizer/asan_interface.h>
#define POISON(p, n)	ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n)	ASAN_UNPOISON_MEMORY_REGION((p), (n))
/* ASan's mlock() is a no-op that returns 0: ask the kernel itself */
#define mlock(p, n)	((int)syscall(SYS_mlock, (p), (n)))
#else
#define POISON(p, n)	((void)(p), (void)(n))
#define UNPOISON(p, n)	((void)(p), (void)(n))
#endif

#define CHUNK_SIZE	(64 * 1024)
#define SLAB_MIN	32
#define SLAB_MAX	4096
#define NCLASS		8		/* 32, 64, ..., 4096 */
#define MAX_BLOCKS	(CHUNK_SIZE / SLAB_MIN)
#define NBUCKET		256
#define SPARE_MAX	(1024 * 1024)	/* wiped big mappings kept for reuse */

struct chunk {
	unsigned char	*base;
	size_t		 bsize;		/* block size of this chunk's class */
	size_t		 nblocks;
	size_t		 nfree;
	uint64_t	 used[MAX_BLOCKS / 64];
};

struct bigmap {
	unsigned char	*p;
	size_t		 maplen;
	struct bigmap	*next;
};

static pthread_mutex_t	 lock = PTHREAD_MUTEX_INITIALIZER;
static struct chunk	**chunks;	/* every chunk, any class */
static size_t		 nchunks, chunkcap;
static struct bigmap	*bigs[NBUCKET];
static struct bigmap	*spares;	/* freed, wiped, still locked */
static size_t		 spare_bytes;
static int		 lock_warned, dump_warned;

/* page_size - the system page size */
static size_t
page_size(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

/* protect - keep a fresh mapping out of core dumps and swap, or say why not once */
static void
protect(void *p, size_t len)
{
	if (madvise(p, len, MADV_DONTDUMP) != 0 &&
	    !__atomic_exchange_n(&dump_warned, 1, __ATOMIC_RELAXED))
		log_warn("secmem: cannot exclude secret memory from core dumps (madvise)");
	if (mlock(p, len) != 0 && !__atomic_exchange_n(&lock_warned, 1, __ATOMIC_RELAXED)) {
		struct rlimit rl;
		int saved = errno;

		if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0)
			rl.rlim_cur = 0;
		errno = saved;
		log_warn("secmem: cannot lock secret memory (RLIMIT_MEMLOCK %llu bytes):"
		    " secrets may be swapped out; mlock", (unsigned long long)rl.rlim_cur);
	}
}

/* map_secret - a zeroed, protected anonymous mapping, or NULL */
static void *
map_secret(size_t len)
{
	void *p;

	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	protect(p, len);
	return p;
}

/* class_size - the block size for len bytes (len <= SLAB_MAX) */
static size_t
class_size(size_t len)
{
	size_t bs = SLAB_MIN;

	while (bs < len)
		bs *= 2;
	return bs;
}

/* chunk_new - map a chunk of bsize blocks and remember it; caller holds lock */
static struct chunk *
chunk_new(size_t bsize)
{
	struct chunk *c, **nc;

	if (nchunks == chunkcap) {
		size_t ncap = chunkcap ? chunkcap * 2 : 16;

		if ((nc = realloc(chunks, ncap * sizeof(*nc))) == NULL)
			return NULL;
		chunks = nc;
		chunkcap = ncap;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	if ((c->base = map_secret(CHUNK_SIZE)) == NULL) {
		free(c);
		return NULL;
	}
	UNPOISON(c->base, CHUNK_SIZE);
	POISON(c->base, CHUNK_SIZE);
	c->bsize = bsize;
	c->nblocks = c->nfree = CHUNK_SIZE / bsize;
	chunks[nchunks++] = c;
	return c;
}

/* chunk_take - the first free block of c; caller holds lock */
static void *
chunk_take(struct chunk *c)
{
	for (size_t w = 0; w * 64 < c->nblocks; w++) {
		if (c->used[w] == UINT64_MAX)
			continue;
		for (size_t b = 0; b < 64 && w * 64 + b < c->nblocks; b++) {
			if (!(c->used[w] & ((uint64_t)1 << b))) {
				c->used[w] |= (uint64_t)1 << b;
				c->nfree--;
				return c->base + (w * 64 + b) * c->bsize;
			}
		}
	}
	return NULL;
}

/* slab_alloc - a block of len bytes from a chunk of its class */
static void *
slab_alloc(size_t len)
{
	size_t bs = class_size(len);
	struct chunk *c = NULL;
	unsigned char *p;

	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < nchunks; i++) {
		if (chunks[i]->bsize == bs && chunks[i]->nfree > 0) {
			c = chunks[i];
			break;
		}
	}
	if (c == NULL)
		c = chunk_new(bs);
	p = c ? chunk_take(c) : NULL;
	pthread_mutex_unlock(&lock);
	if (p != NULL) {
		UNPOISON(p, len);
		memset(p, 0, len);
	}
	return p;
}

/* slab_free - wipe and release p if it is a slab block; 0 if it is not */
static int
slab_free(unsigned char *p)
{
	struct chunk *c = NULL;
	size_t i;

	pthread_mutex_lock(&lock);
	for (i = 0; i < nchunks; i++) {
		if (p >= chunks[i]->base && p < chunks[i]->base + CHUNK_SIZE) {
			c = chunks[i];
			break;
		}
	}
	if (c == NULL) {
		pthread_mutex_unlock(&lock);
		return 0;
	}
	i = (size_t)(p - c->base) / c->bsize;
	if (c->base + i * c->bsize != p || !(c->used[i / 64] & ((uint64_t)1 << (i % 64))))
		log_panic("secmem: free of %p, not an allocated block", (void *)p);
	UNPOISON(p, c->bsize);
	explicit_bzero(p, c->bsize);
	POISON(p, c->bsize);
	c->used[i / 64] &= ~((uint64_t)1 << (i % 64));
	c->nfree++;
	pthread_mutex_unlock(&lock);
	return 1;
}

/* bucket - the hash bucket of a big mapping's address */
static size_t
bucket(const void *p)
{
	return ((uintptr_t)p / page_size()) % NBUCKET;
}

/* spare_take - a kept mapping of at least maplen bytes (at most 4 times), or NULL */
static struct bigmap *
spare_take(size_t maplen)
{
	struct bigmap **mp, *m;

	pthread_mutex_lock(&lock);
	for (mp = &spares; (m = *mp) != NULL; mp = &m->next)
		if (m->maplen >= maplen && m->maplen / 4 <= maplen)
			break;
	if (m != NULL) {
		*mp = m->next;
		spare_bytes -= m->maplen;
	}
	pthread_mutex_unlock(&lock);
	return m;
}

/* spare_keep - keep a wiped mapping for reuse while SPARE_MAX allows; 0 if not kept */
static int
spare_keep(struct bigmap *m)
{
	int kept = 0;

	pthread_mutex_lock(&lock);
	if (spare_bytes + m->maplen <= SPARE_MAX) {
		m->next = spares;
		spares = m;
		spare_bytes += m->maplen;
		kept = 1;
	}
	pthread_mutex_unlock(&lock);
	return kept;
}

/* big_alloc - a page-rounded mapping of its own for len bytes */
static void *
big_alloc(size_t len)
{
	size_t ps = page_size(), maplen;
	struct bigmap *m;

	if (len > SIZE_MAX - ps)
		return NULL;
	maplen = (len + ps - 1) / ps * ps;
	if ((m = spare_take(maplen)) == NULL) {
		if ((m = malloc(sizeof(*m))) == NULL)
			return NULL;
		if ((m->p = map_secret(maplen)) == NULL) {
			free(m);
			return NULL;
		}
		m->maplen = maplen;
	}
	UNPOISON(m->p, len);
	POISON(m->p + len, m->maplen - len);
	pthread_mutex_lock(&lock);
	m->next = bigs[bucket(m->p)];
	bigs[bucket(m->p)] = m;
	pthread_mutex_unlock(&lock);
	return m->p;
}

/* big_free - wipe p if it is a big mapping, then keep or unmap it; 0 if it is not one */
static int
big_free(unsigned char *p)
{
	struct bigmap **mp, *m;

	pthread_mutex_lock(&lock);
	for (mp = &bigs[bucket(p)]; (m = *mp) != NULL; mp = &m->next)
		if (m->p == p)
			break;
	if (m != NULL)
		*mp = m->next;
	pthread_mutex_unlock(&lock);
	if (m == NULL)
		return 0;
	UNPOISON(m->p, m->maplen);
	explicit_bzero(m->p, m->maplen);
	POISON(m->p, m->maplen);
	if (spare_keep(m))
		return 1;
	UNPOISON(m->p, m->maplen);
	munmap(m->p, m->maplen);
	free(m);
	return 1;
}

/* secmem_alloc - zeroed memory for a secret */
void *
secmem_alloc(size_t len)
{
	if (len == 0)
		len = 1;
	return len <= SLAB_MAX ? slab_alloc(len) : big_alloc(len);
}

/* secmem_wipe - wipe a buffer in a way the compiler keeps */
void
secmem_wipe(void *p, size_t len)
{
	if (p != NULL && len > 0)
		explicit_bzero(p, len);
}

/* secmem_free - wipe and release; returns NULL */
void *
secmem_free(void *p, size_t len)
{
	if (p == NULL)
		return NULL;
	if (slab_free(p) || big_free(p))
		return NULL;
	explicit_bzero(p, len);	/* a malloc'd buffer holding a secret */
	free(p);
	return NULL;
}

/* secmem_strdup - copy a secret string (a password) */
char *
secmem_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = secmem_alloc(n);

	if (p != NULL)
		memcpy(p, s, n);
	return p;
}

/* secmem_strfree - wipe and free a string from secmem_strdup; returns NULL */
void *
secmem_strfree(char *s)
{
	return s ? secmem_free(s, strlen(s)) : NULL;
}
