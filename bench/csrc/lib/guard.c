/*
 * guard.c - the library's SIGBUS guard: fbguard.h's registry and handler, in one
 * translation unit (fbguard.h: every unit that includes it has its own). 64 regions: a
 * consumer uses two per mapped generation, a producer one.
 */
#include "internal.h"

#define FBGUARD_MAX_REGIONS 64
#include "fbguard.h"

int fbi_guard_install(void) { return fbguard_install(); }
int fbi_guard_add(void *base, size_t len, int prot) { return fbguard_add(base, len, prot); }
int fbi_guard_truncated(int id) { return fbguard_truncated(id); }
void fbi_guard_remove(int id) { fbguard_remove(id); }

int fb_guard_install(void)
{
	return fbguard_install() == 0 ? FB_OK : FB_ERR_SYSTEM;
}
