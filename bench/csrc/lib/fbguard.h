/*
 * fbguard.h - a framebus mapping that reads zeros instead of killing the process with SIGBUS
 * when the segment file is truncated under it (PROTOCOL.md section 6: "file truncated under
 * a live mapping: no SIGBUS reaches the user").
 *
 * Header only, Linux, C11 with the GCC __atomic builtins, libc only: libframebus's guard
 * (src/guard.c includes it once, with 64 regions), and the model of the Python package's
 * native helper. Its only state is a small fixed registry of regions (FBGUARD_MAX_REGIONS,
 * 16 unless the includer defines it first), every word of it accessed atomically, and the
 * SIGBUS action that was installed before ours.
 *
 * Use:
 *   fbguard_install();                          once, before the first mapping is registered
 *   int g = fbguard_add(base, len, prot);       after each mmap of a segment (-1: registry full,
 *                                               the mapping is then unguarded)
 *   ... read the mapping; after each read (and before trusting what was read):
 *   if (fbguard_truncated(g)) { discard what was read; fbguard_remove(g); munmap; rejoin }
 *   fbguard_remove(g);                          before munmap (always before it)
 *
 * What the handler does: a SIGBUS whose fault address lies inside a registered region maps
 * anonymous zero pages over that whole region (mmap MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS,
 * the same length and protection), records that the region was truncated, and returns: the
 * faulting access is restarted and completes, reading zeros (a write goes to the private
 * page, nobody else sees it). The caller finds out at its next fbguard_truncated check; until
 * then everything it reads from the region is zero, which framebus's rules reject anyway
 * (an even lock 0 that changed, frame_seq 0 = nothing new, state 0 = not READY), and which a
 * reader must never deliver: it checks the flag after every read, as it checks the lock.
 * A SIGBUS outside every region is not ours: the handler puts the previous action back (the
 * default, which ends the process, in a program that had none) and returns, so the access
 * faults again and the process dies of it as it would have without us. A SIGBUS sent with
 * kill(2) is re-raised the same way.
 *
 * mmap(2) is not on POSIX's list of async-signal-safe functions, but on Linux it is one
 * system call with no lock in user space (glibc's wrapper is the bare syscall), as are
 * sigaction(2) and raise(3) (both on the list). The handler touches nothing else but the
 * registry's atomic words and errno (saved and restored).
 *
 * Threads: a region may be added or removed by any thread while others fault. A handler
 * marks itself busy in the region before it looks at it, and fbguard_remove marks the region
 * going away before it waits for the busy count to drop to zero (a store-buffering pair, all
 * seq_cst): either the handler sees the region gone, or the remover waits for it, so the
 * zero pages are never mapped over an address that was unmapped and maybe reused.
 *
 * Every translation unit that includes this header has its own registry and handler; a
 * program should install and register from one of them (two would chain: the second
 * handler, finding no region of its own, puts the first back and the fault comes again).
 */
#ifndef FBGUARD_H
#define FBGUARD_H

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#ifndef FBGUARD_MAX_REGIONS
#define FBGUARD_MAX_REGIONS 16
#endif

enum {
	FBGUARD_FREE = 0,    /* slot unused */
	FBGUARD_CHANGING = 1, /* being added or removed: the handler leaves it alone */
	FBGUARD_ACTIVE = 2,  /* guarded */
};

struct fbguard_region {
	uint32_t state;     /* FBGUARD_* */
	uint32_t busy;      /* handlers looking at this region right now */
	uint32_t truncated; /* 1: the handler replaced the region with zero pages */
	int prot;
	uintptr_t base;
	size_t len;
};

/* The registry and the action ours replaced; nothing else is global. */
static struct {
	struct fbguard_region r[FBGUARD_MAX_REGIONS];
	uint32_t installed; /* 0 no, 1 being installed, 2 yes */
	struct sigaction prev;
} fbguard_reg;

static inline void fbguard_put_back(void)
{
	/* prev was written before installed became 2, and never changes after. */
	sigaction(SIGBUS, &fbguard_reg.prev, NULL);
}

static inline void fbguard_on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	int saved = errno;
	if (si == NULL || si->si_code <= 0) {
		/* sent by kill/tgkill/sigqueue: not a fault of ours; deliver it as before */
		fbguard_put_back();
		raise(sig);
		errno = saved;
		return;
	}
	uintptr_t a = (uintptr_t)si->si_addr;
	for (int i = 0; i < FBGUARD_MAX_REGIONS; i++) {
		struct fbguard_region *r = &fbguard_reg.r[i];
		__atomic_fetch_add(&r->busy, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&r->state, __ATOMIC_SEQ_CST) == FBGUARD_ACTIVE) {
			uintptr_t base = __atomic_load_n(&r->base, __ATOMIC_SEQ_CST);
			size_t len = __atomic_load_n(&r->len, __ATOMIC_SEQ_CST);
			if (a >= base && a - base < len) {
				int prot = __atomic_load_n(&r->prot, __ATOMIC_SEQ_CST);
				void *m = mmap((void *)base, len, prot,
					       MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
				if (m != MAP_FAILED)
					__atomic_store_n(&r->truncated, 1, __ATOMIC_SEQ_CST);
				__atomic_fetch_sub(&r->busy, 1, __ATOMIC_SEQ_CST);
				if (m == MAP_FAILED)
					break; /* cannot repair: die of it as before */
				errno = saved;
				return; /* the access is restarted and reads zeros */
			}
		}
		__atomic_fetch_sub(&r->busy, 1, __ATOMIC_SEQ_CST);
	}
	/* Not in a guarded region: a bug elsewhere. Put the previous action back (the default
	 * ends the process) and return: the access faults again and gets it. */
	fbguard_put_back();
	errno = saved;
}

/* Installs the SIGBUS handler (once; later calls return 0 at once). 0 or -1 (errno). */
static inline int fbguard_install(void)
{
	uint32_t expect = 0;
	if (!__atomic_compare_exchange_n(&fbguard_reg.installed, &expect, 1, 0, __ATOMIC_SEQ_CST,
					 __ATOMIC_SEQ_CST)) {
		while (__atomic_load_n(&fbguard_reg.installed, __ATOMIC_SEQ_CST) == 1)
			; /* another thread is installing it */
		return 0;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = fbguard_on_sigbus;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, &fbguard_reg.prev) != 0) {
		__atomic_store_n(&fbguard_reg.installed, 0, __ATOMIC_SEQ_CST);
		return -1;
	}
	if (!(fbguard_reg.prev.sa_flags & SA_SIGINFO) && fbguard_reg.prev.sa_handler == SIG_IGN) {
		/* an ignored SIGBUS is no way to survive a fault: the kernel kills anyway */
		fbguard_reg.prev.sa_handler = SIG_DFL;
	}
	__atomic_store_n(&fbguard_reg.installed, 2, __ATOMIC_SEQ_CST);
	return 0;
}

/* Guards [base, base+len), mapped with prot. Returns the region's id, or -1 when the
 * registry is full (the mapping is then not guarded). */
static inline int fbguard_add(void *base, size_t len, int prot)
{
	for (int i = 0; i < FBGUARD_MAX_REGIONS; i++) {
		struct fbguard_region *r = &fbguard_reg.r[i];
		uint32_t expect = FBGUARD_FREE;
		if (!__atomic_compare_exchange_n(&r->state, &expect, FBGUARD_CHANGING, 0,
						 __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
			continue;
		__atomic_store_n(&r->base, (uintptr_t)base, __ATOMIC_SEQ_CST);
		__atomic_store_n(&r->len, len, __ATOMIC_SEQ_CST);
		__atomic_store_n(&r->prot, prot, __ATOMIC_SEQ_CST);
		__atomic_store_n(&r->truncated, 0, __ATOMIC_SEQ_CST);
		__atomic_store_n(&r->state, FBGUARD_ACTIVE, __ATOMIC_SEQ_CST);
		return i;
	}
	return -1;
}

/* 1 when the region was found truncated (it reads zeros now), else 0 (also for id -1). */
static inline int fbguard_truncated(int id)
{
	if (id < 0 || id >= FBGUARD_MAX_REGIONS)
		return 0;
	return __atomic_load_n(&fbguard_reg.r[id].truncated, __ATOMIC_SEQ_CST) != 0;
}

/* Stops guarding a region: call it before munmap. Waits for a handler inside it to finish. */
static inline void fbguard_remove(int id)
{
	if (id < 0 || id >= FBGUARD_MAX_REGIONS)
		return;
	struct fbguard_region *r = &fbguard_reg.r[id];
	__atomic_store_n(&r->state, FBGUARD_CHANGING, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&r->busy, __ATOMIC_SEQ_CST) != 0)
		; /* a handler of another thread is repairing it: a few system calls at most */
	__atomic_store_n(&r->truncated, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&r->base, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&r->len, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&r->state, FBGUARD_FREE, __ATOMIC_SEQ_CST);
}

#endif /* FBGUARD_H */
