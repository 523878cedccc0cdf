/*
 * internal.h - what the library's translation units share (not installed).
 */
#ifndef FB_INTERNAL_H
#define FB_INTERNAL_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include <framebus/libframebus.h>

#ifndef F_OFD_GETLK
#define F_OFD_GETLK 36
#endif
#ifndef F_OFD_SETLK
#define F_OFD_SETLK 37
#endif

#define SEQ_CST __ATOMIC_SEQ_CST
#define RELAXED __ATOMIC_RELAXED
#define FB_HIDDEN __attribute__((visibility("hidden")))
#define FB_ERRMSG_LEN 512

FB_HIDDEN uint64_t fbi_now_ns(void);
FB_HIDDEN uint64_t fbi_pid_namespace(void);
FB_HIDDEN int fbi_ofd_lock(int fd, short type, uint64_t start, uint64_t len);
FB_HIDDEN short fbi_ofd_conflict(int fd, uint64_t start, uint64_t len);
FB_HIDDEN int fbi_lock_held(const char *lock_path, int *err);
FB_HIDDEN const char *fbi_name_problem(const char *n);
FB_HIDDEN const char *fbi_default_dir(const char *dir);
FB_HIDDEN void fbi_crc_init(void);
FB_HIDDEN uint32_t fbi_crc32c(const void *p, size_t n);
FB_HIDDEN const char *fbi_state_name(uint32_t s);
FB_HIDDEN void fbi_sleep_ns(uint64_t ns);

/* The SIGBUS guard (guard.c, the one translation unit with fbguard's registry). */
FB_HIDDEN int fbi_guard_install(void);
FB_HIDDEN int fbi_guard_add(void *base, size_t len, int prot);
FB_HIDDEN int fbi_guard_truncated(int id);
FB_HIDDEN void fbi_guard_remove(int id);

/* Formats a message into buf (FB_ERRMSG_LEN) and passes it to the log callback. */
FB_HIDDEN void fbi_vlog(fb_log_fn fn, void *arg, int level, char *buf, const char *fmt, va_list ap);

#endif
