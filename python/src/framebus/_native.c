/*
 * _native.c - the native helper of framebus for Python: a SIGBUS guard over the bus
 * mappings and a hardware CRC-32C. A plain shared library (no Python.h, no Python ABI):
 * built by setuptools as an optional extension at install time with the machine's gcc,
 * loaded with ctypes by _native.py (ctypes releases the GIL around every call).
 *
 * The guard. A bus file truncated under a MAP_SHARED mapping makes every access to the
 * pages past the new end of file raise SIGBUS, which CPython cannot survive (a Python
 * handler runs between bytecodes, the faulting instruction never completes). The
 * package registers the address range of every mapping of a segment here, in a group
 * (one per segment). On a SIGBUS whose si_addr is inside a registered range, the handler
 * maps anonymous zero pages over every range of that group (mmap MAP_FIXED|MAP_PRIVATE|
 * MAP_ANONYMOUS, async-signal-safe), sets the group's flag, and returns: the faulting
 * access is made again and reads zeros (or writes into private memory). The package
 * checks the flag after every read and every validation and never delivers what it read
 * from those pages. A SIGBUS outside every registered range (or sent by kill/raise) is
 * not ours: the handler puts the previous action back and hands the signal to it (Python's
 * faulthandler, the default action), so the process dies as it would have without us.
 *
 * The CRC. CRC-32C with the SSE4.2 crc32 instruction on three streams (the approach of
 * libframebus/src/crc32c.h), slicing-by-8 elsewhere.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "_crc32c_impl.h"

#define FB_MAX_REGIONS 1024
#define FB_MAX_GROUPS 4096

#define FB_API __attribute__((visibility("default")))

struct fb_region {
	uintptr_t start;
	size_t len;
	int prot;
	int group;
	int used; /* 0 free, 1 in use; written with __atomic stores */
};

static struct fb_region fb_regions[FB_MAX_REGIONS];
/* Per group: 1 once a fault in one of its ranges replaced them with zero pages. Read
 * from Python through ctypes without a call (fb_flags is exported). */
FB_API volatile uint8_t fb_flags[FB_MAX_GROUPS];
/* Faults handled, and foreign faults handed on (for tests and diagnostics). */
FB_API volatile uint64_t fb_faults;
FB_API volatile uint64_t fb_foreign;

static struct sigaction fb_prev;  /* the action ours replaced */
static volatile int fb_installed; /* ours is the current action, as far as we know */

static int fb_remap_group(int g)
{
	int ok = 1;
	for (int i = 0; i < FB_MAX_REGIONS; i++) {
		struct fb_region *r = &fb_regions[i];
		if (!__atomic_load_n(&r->used, __ATOMIC_ACQUIRE) || r->group != g)
			continue;
		void *p = mmap((void *)r->start, r->len, r->prot, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0);
		if (p == MAP_FAILED)
			ok = 0;
	}
	return ok;
}

static void fb_handler(int sig, siginfo_t *si, void *uc)
{
	int saved = errno;
	if (si != NULL && si->si_code > 0) { /* raised by the kernel for a fault, not by kill() */
		uintptr_t a = (uintptr_t)si->si_addr;
		for (int i = 0; i < FB_MAX_REGIONS; i++) {
			struct fb_region *r = &fb_regions[i];
			if (!__atomic_load_n(&r->used, __ATOMIC_ACQUIRE))
				continue;
			if (a >= r->start && a - r->start < r->len) {
				int g = r->group;
				if (fb_remap_group(g)) {
					if (g >= 0 && g < FB_MAX_GROUPS)
						fb_flags[g] = 1;
					__atomic_fetch_add(&fb_faults, 1, __ATOMIC_SEQ_CST);
					errno = saved;
					return; /* the access is made again, on zero pages */
				}
				break; /* could not map: not survivable, hand it on */
			}
		}
	}
	/* Not ours: the previous action takes over for good (the process is about to die). */
	__atomic_fetch_add(&fb_foreign, 1, __ATOMIC_SEQ_CST);
	struct sigaction prev = fb_prev;
	sigaction(sig, &prev, NULL);
	fb_installed = 0;
	errno = saved;
	if (prev.sa_flags & SA_SIGINFO) {
		if (prev.sa_sigaction != NULL)
			prev.sa_sigaction(sig, si, uc);
		return;
	}
	if (prev.sa_handler == SIG_IGN)
		return;
	if (prev.sa_handler == SIG_DFL) {
		/* A fault re-runs the access and dies of the default action; a signal sent by
		 * kill is sent again, delivered when this handler returns. */
		if (si == NULL || si->si_code <= 0)
			raise(sig);
		return;
	}
	prev.sa_handler(sig);
}

/* Installs the handler when it is not the current SIGBUS action (first call, or someone
 * installed theirs over it since: faulthandler.enable(), signal.signal). The action it
 * replaces is the one foreign faults go to. Returns 1 if it (re)installed, 0 if it was
 * in place, -1 on error. */
FB_API int fb_guard_install(void)
{
	struct sigaction cur;
	if (sigaction(SIGBUS, NULL, &cur) != 0)
		return -1;
	if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == fb_handler) {
		fb_installed = 1;
		return 0;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = fb_handler;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	fb_prev = cur;
	if (sigaction(SIGBUS, &sa, NULL) != 0)
		return -1;
	fb_installed = 1;
	return 1;
}

/* Registers [start, start + len) of group g, to be replaced by zero pages mapped with
 * prot on a fault. Returns the region's index, -1 when the table is full. */
FB_API int fb_register(uintptr_t start, size_t len, int prot, int group)
{
	if (len == 0 || group < 0 || group >= FB_MAX_GROUPS)
		return -1;
	for (int i = 0; i < FB_MAX_REGIONS; i++) {
		struct fb_region *r = &fb_regions[i];
		int expect = 0;
		/* 2 = being filled: the handler skips it (used != 1 is read as free). */
		if (__atomic_compare_exchange_n(&r->used, &expect, 2, 0, __ATOMIC_ACQ_REL,
						__ATOMIC_RELAXED)) {
			r->start = start;
			r->len = len;
			r->prot = prot;
			r->group = group;
			__atomic_store_n(&r->used, 1, __ATOMIC_RELEASE);
			return i;
		}
	}
	return -1;
}

/* Forgets region i: called before its mapping is unmapped. */
FB_API void fb_unregister(int i)
{
	if (i < 0 || i >= FB_MAX_REGIONS)
		return;
	struct fb_region *r = &fb_regions[i];
	int expect = 1;
	if (__atomic_compare_exchange_n(&r->used, &expect, 2, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
		r->start = 0;
		r->len = 0;
		__atomic_store_n(&r->used, 0, __ATOMIC_RELEASE);
	}
}

FB_API void fb_clear_flag(int g)
{
	if (g >= 0 && g < FB_MAX_GROUPS)
		fb_flags[g] = 0;
}

FB_API int fb_max_groups(void) { return FB_MAX_GROUPS; }

/* CRC-32C of n bytes at p, continuing crc (0 for a new one), as hash/crc32 gives it. */
FB_API uint32_t fb_crc32c(uint32_t crc, const void *p, size_t n)
{
	if (crc == 0)
		return crc32c((const uint8_t *)p, n);
	return ~crc32c_update(~crc, (const uint8_t *)p, n);
}

/* 1 when the crc32 instruction is used. */
FB_API int fb_crc32c_hw(void)
{
#ifdef CRC32C_HAVE_HW
	return crc32c_hw;
#else
	return 0;
#endif
}

/* memcpy without the GIL, under the guard like every access (read_into's copy). */
FB_API void fb_copy(void *dst, const void *src, size_t n) { memcpy(dst, src, n); }

__attribute__((constructor)) static void fb_init(void) { crc32c_init(); }
