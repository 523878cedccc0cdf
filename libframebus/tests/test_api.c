/*
 * test_api.c - libframebus's API tests (make test; make check runs them under ASan and
 * UBSan). Real processes where the protocol needs them: a producer in a child process,
 * killed with SIGKILL; a bus truncated under a zero-copy view. Prints one line per test,
 * "ok" or "FAIL", and exits 1 if anything failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <framebus/libframebus.h>

static int failures;
static char dir[256];

#define CHECK(cond, ...)                                                                       \
	do {                                                                                   \
		if (!(cond)) {                                                                 \
			fprintf(stderr, "  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);      \
			fprintf(stderr, __VA_ARGS__);                                          \
			fputc('\n', stderr);                                                   \
			failures++;                                                            \
		}                                                                              \
	} while (0)

#define EQ(got, want) CHECK((got) == (want), "got %d (%s), want %d (%s)", (int)(got), \
			    fb_strerror((int)(got)), (int)(want), fb_strerror((int)(want)))

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void quiet(void *arg, int level, const char *msg)
{
	(void)arg;
	if (getenv("FB_TEST_VERBOSE"))
		fprintf(stderr, "    [log %d] %s\n", level, msg);
}

static fb_producer_opts popts(uint32_t w, uint32_t h, uint32_t slots)
{
	fb_producer_opts o;
	memset(&o, 0, sizeof o);
	o.dir = dir;
	o.format.width = w;
	o.format.height = h;
	o.format.pixel_format = FRAMEBUS_FOURCC_GREY;
	o.slots = slots;
	o.checksum = 1;
	o.log = quiet;
	return o;
}

static fb_consumer_opts copts(void)
{
	fb_consumer_opts o;
	memset(&o, 0, sizeof o);
	o.dir = dir;
	o.log = quiet;
	return o;
}

/* Frame k's bytes: byte i = (k * 31 + i) & 0xff. */
static void fill(uint8_t *p, size_t n, uint64_t k)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(k * 31 + i);
}

static int check_fill(const uint8_t *p, size_t n, uint64_t k)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (uint8_t)(k * 31 + i))
			return 0;
	return 1;
}

static void test_errors(void)
{
	fb_consumer *c = NULL;
	fb_consumer_opts co = copts();
	EQ(fb_consumer_open("missing", &co, &c), FB_ERR_NOT_FOUND);
	CHECK(c == NULL, "no handle on failure");
	const char *bad[] = {"", "a/b", "..", ".hidden", "x.lock", "a.tmp-1", "sp ace",
			     "0123456789012345678901234567890123456789012345678901234567890123456789"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		EQ(fb_consumer_open(bad[i], &co, &c), FB_ERR_BAD_NAME);
		fb_producer_opts po = popts(16, 16, 2);
		fb_producer *p = NULL;
		EQ(fb_producer_create(bad[i], &po, &p), FB_ERR_BAD_NAME);
	}
	EQ(fb_consumer_open(NULL, &co, &c), FB_ERR_BAD_NAME);
	fb_producer_opts po = popts(0, 16, 2);
	fb_producer *p = NULL;
	EQ(fb_producer_create("badfmt", &po, &p), FB_ERR_BAD_OPTIONS);
	po = popts(16, 16, 9);
	EQ(fb_producer_create("badslots", &po, &p), FB_ERR_BAD_OPTIONS);
	for (int e = 0; e >= -28; e--)
		CHECK(strcmp(fb_strerror(e), "unknown error") != 0, "fb_strerror(%d)", e);
	CHECK(strcmp(fb_version(), FB_VERSION_STRING) == 0, "version %s", fb_version());
	fb_snapshot snap;
	EQ(fb_inspect("missing", dir, &snap), FB_ERR_NOT_FOUND);
	CHECK(fb_crc32c("123456789", 9) == 0xE3069283u, "crc32c check value 0x%08x", fb_crc32c("123456789", 9));
}

/* A bus whose header says abi_version 2: FB_ERR_VERSION, and version_mismatch_count + 1. */
static void test_version_skew(void)
{
	char path[512];
	snprintf(path, sizeof path, "%s/framebus.skew", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	CHECK(fd >= 0, "create %s: %s", path, strerror(errno));
	framebus_header h;
	memset(&h, 0, sizeof h);
	h.magic = FRAMEBUS_MAGIC;
	h.abi_version = 2;
	h.header_size = FRAMEBUS_HEADER_SIZE;
	h.state = FRAMEBUS_STATE_READY;
	h.total_size = 65536;
	CHECK(pwrite(fd, &h, sizeof h, 0) == (ssize_t)sizeof h && ftruncate(fd, 65536) == 0, "write");
	fb_consumer *c = NULL;
	fb_consumer_opts co = copts();
	EQ(fb_consumer_open("skew", &co, &c), FB_ERR_VERSION);
	framebus_header back;
	CHECK(pread(fd, &back, sizeof back, 0) == (ssize_t)sizeof back, "read");
	CHECK(back.version_mismatch_count == 1, "version_mismatch_count %" PRIu64, back.version_mismatch_count);
	fb_snapshot snap;
	EQ(fb_inspect("skew", dir, &snap), FB_ERR_VERSION);
	h.abi_version = 1;
	h.magic = 0x12345678;
	CHECK(pwrite(fd, &h, sizeof h, 0) == (ssize_t)sizeof h, "write");
	EQ(fb_consumer_open("skew", &co, &c), FB_ERR_BAD_MAGIC);
	h.magic = FRAMEBUS_MAGIC;
	CHECK(pwrite(fd, &h, sizeof h, 0) == (ssize_t)sizeof h, "write");
	EQ(fb_consumer_open("skew", &co, &c), FB_ERR_CORRUPT); /* slot_count 0 and the rest */
	close(fd);
	unlink(path);
}

/* A producer in a child process (heartbeat thread, checksums, metadata), a consumer here:
 * every frame intact, in order, its checksum checked, then the end of stream. */
static void test_two_processes(void)
{
	const int frames = 200;
	pid_t pid = fork();
	if (pid == 0) {
		fb_producer_opts po = popts(320, 240, 3);
		fb_producer *p;
		if (fb_producer_create("pair", &po, &p) != FB_OK)
			_exit(10);
		/* wait for the consumer, then publish paced frames */
		struct fb_producer_stats st;
		for (int i = 0; i < 500; i++) {
			fb_producer_stats(p, &st);
			if (st.consumers_active > 0)
				break;
			usleep(10000);
		}
		static uint8_t buf[320 * 240];
		for (uint64_t k = 1; k <= (uint64_t)frames; k++) {
			fill(buf, sizeof buf, k);
			char meta[16];
			int n = snprintf(meta, sizeof meta, "f%" PRIu64, k);
			fb_meta m = {.capture_ns = 0, .user_meta = meta, .user_meta_len = (uint32_t)n};
			uint64_t seq;
			if (fb_producer_publish(p, buf, sizeof buf, &m, &seq) != FB_OK || seq != k)
				_exit(11);
			usleep(2000);
		}
		fb_producer_close(p);
		_exit(0);
	}
	fb_consumer *c = NULL;
	fb_consumer_opts co = copts();
	co.wait_ms = 5000;
	int r = fb_consumer_open("pair", &co, &c);
	EQ(r, FB_OK);
	if (r != FB_OK) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return;
	}
	fb_format fmt;
	EQ(fb_consumer_format(c, &fmt), FB_OK);
	CHECK(fmt.width == 320 && fmt.height == 240 && fmt.pixel_format == FRAMEBUS_FOURCC_GREY &&
		      fmt.max_frame_bytes == 320 * 240, "format %ux%u", fmt.width, fmt.height);
	static uint8_t copy[320 * 240];
	uint64_t last = 0, got = 0, bad = 0;
	for (int i = 0;; i++) {
		fb_frame f;
		/* alternately zero-copy views and copies */
		r = i % 2 ? fb_consumer_next(c, 5000, &f) : fb_consumer_read_into(c, copy, sizeof copy, 5000, &f);
		if (r == FB_ERR_END_OF_STREAM)
			break;
		EQ(r, FB_OK);
		if (r != FB_OK)
			break;
		got++;
		CHECK(f.seq > last, "seq %" PRIu64 " after %" PRIu64, f.seq, last);
		char want[16];
		int n = snprintf(want, sizeof want, "f%" PRIu64, f.seq);
		CHECK(f.user_meta_len == (uint32_t)n && memcmp(f.user_meta, want, (size_t)n) == 0, "meta");
		CHECK(f.checksum_ok && f.bytes == sizeof copy, "checksum_ok %d bytes %zu", f.checksum_ok, f.bytes);
		if (!check_fill(f.data, f.bytes, f.seq) && fb_frame_valid(c, &f))
			bad++;
		CHECK(f.copied == !(i % 2), "copied %d", f.copied);
		last = f.seq;
	}
	CHECK(last == (uint64_t)frames, "last %" PRIu64, last);
	CHECK(bad == 0, "%" PRIu64 " frames with wrong bytes", bad);
	struct fb_consumer_stats st;
	fb_consumer_stats(c, &st);
	CHECK(st.eos && st.delivered == got && st.delivered + st.dropped == (uint64_t)frames,
	      "eos %d delivered %" PRIu64 " dropped %" PRIu64, st.eos, st.delivered, st.dropped);
	fb_frame f;
	EQ(fb_consumer_next(c, 0, &f), FB_ERR_END_OF_STREAM); /* sticky */
	fb_consumer_close(c);
	int status;
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "producer status 0x%x", status);
	fb_snapshot snap;
	EQ(fb_inspect("pair", dir, &snap), FB_ERR_NOT_FOUND); /* the name is gone at close */
}

/* Holds: granted up to the cap (slot_count - 2), refused beyond it and on a copy, never
 * written while held, refused (unsupported) on a bus without holds. */
static void test_holds(void)
{
	fb_producer_opts po = popts(64, 64, 4);
	po.manual_heartbeat = 1;
	fb_producer *p;
	EQ(fb_producer_create("holds", &po, &p), FB_OK);
	fb_consumer *c;
	fb_consumer_opts co = copts();
	EQ(fb_consumer_open("holds", &co, &c), FB_OK);
	static uint8_t buf[64 * 64];
	fb_hold h[3];
	fb_frame f;
	for (int i = 0; i < 3; i++) {
		fill(buf, sizeof buf, (uint64_t)i + 1);
		EQ(fb_producer_publish(p, buf, sizeof buf, NULL, NULL), FB_OK);
		EQ(fb_consumer_next(c, 1000, &f), FB_OK);
		int r = fb_frame_hold(c, &f, &h[i]);
		if (i < 2) {
			EQ(r, FB_OK);
			CHECK(h[i].data == f.data && h[i].seq == f.seq, "hold %d", i);
		} else {
			EQ(r, FB_ERR_NO_HOLD);
			CHECK(h[i].refused == FB_HOLD_CAP, "refused %d, want cap", h[i].refused);
		}
	}
	/* many frames later the held frames are intact */
	for (uint64_t k = 4; k < 40; k++) {
		fill(buf, sizeof buf, k);
		EQ(fb_producer_publish(p, buf, sizeof buf, NULL, NULL), FB_OK);
	}
	for (int i = 0; i < 2; i++) {
		CHECK(fb_hold_valid(c, &h[i]), "hold %d valid", i);
		CHECK(check_fill(h[i].data, h[i].bytes, h[i].seq), "hold %d bytes", i);
	}
	struct fb_consumer_stats st;
	fb_consumer_stats(c, &st);
	CHECK(st.holds == 2 && st.holds_granted == 2 && st.holds_refused == 1, "holds %d granted %" PRIu64, st.holds,
	      st.holds_granted);
	EQ(fb_hold_release(c, &h[0]), FB_OK);
	EQ(fb_hold_release(c, &h[0]), FB_ERR_HOLD_RELEASED);
	CHECK(!fb_hold_valid(c, &h[0]), "released hold invalid");
	EQ(fb_hold_release(c, &h[1]), FB_OK);
	/* a copy has nothing to hold */
	fill(buf, sizeof buf, 40);
	EQ(fb_producer_publish(p, buf, sizeof buf, NULL, NULL), FB_OK);
	EQ(fb_consumer_read_into(c, buf, sizeof buf, 1000, &f), FB_OK);
	fb_hold hc;
	EQ(fb_frame_hold(c, &f, &hc), FB_ERR_NO_HOLD);
	CHECK(hc.refused == FB_HOLD_COPY, "refused %d, want copy", hc.refused);
	/* hold_frames: next() holds every frame itself */
	fb_consumer_close(c);
	co.hold_frames = 1;
	EQ(fb_consumer_open("holds", &co, &c), FB_OK);
	EQ(fb_producer_publish(p, buf, sizeof buf, NULL, NULL), FB_OK);
	EQ(fb_consumer_next(c, 1000, &f), FB_OK);
	CHECK(f.held && fb_frame_valid(c, &f), "held %d", f.held);
	EQ(fb_hold_release(c, &f.hold), FB_OK);
	/* abort leaves nothing new behind */
	void *slot;
	size_t cap;
	EQ(fb_producer_begin(p, &slot, &cap), FB_OK);
	CHECK(cap == sizeof buf, "capacity %zu", cap);
	EQ(fb_producer_begin(p, &slot, &cap), FB_ERR_SLOT_HELD);
	EQ(fb_producer_abort(p), FB_OK);
	EQ(fb_producer_commit(p, 1, NULL, NULL), FB_ERR_SLOT_NOT_HELD);
	EQ(fb_consumer_next(c, 0, &f), FB_ERR_TIMEOUT);
	fb_consumer_close(c);
	fb_producer_close(p);

	/* a 2-slot bus holds nothing (the cap is 0); a bus without holds refuses them */
	for (int k = 0; k < 2; k++) {
		po = popts(64, 64, k == 0 ? 2 : 4);
		po.no_holds = k == 1;
		EQ(fb_producer_create("holds", &po, &p), FB_OK);
		co.hold_frames = 0;
		EQ(fb_consumer_open("holds", &co, &c), FB_OK);
		EQ(fb_producer_publish(p, buf, sizeof buf, NULL, NULL), FB_OK);
		EQ(fb_consumer_next(c, 1000, &f), FB_OK);
		fb_hold hh;
		EQ(fb_frame_hold(c, &f, &hh), FB_ERR_NO_HOLD);
		CHECK(hh.refused == (k == 0 ? FB_HOLD_CAP : FB_HOLD_UNSUPPORTED), "refused %d", hh.refused);
		fb_consumer_close(c);
		fb_producer_close(p);
	}
}

/* A second producer gets FB_ERR_BUSY; inspect sees the live one; reconfigure makes a
 * generation the consumer follows by itself. */
static void test_busy_inspect_reconfigure(void)
{
	fb_producer_opts po = popts(32, 32, 2);
	fb_producer *p, *p2 = NULL;
	EQ(fb_producer_create("busy", &po, &p), FB_OK);
	EQ(fb_producer_create("busy", &po, &p2), FB_ERR_BUSY);
	fb_consumer *c;
	fb_consumer_opts co = copts();
	EQ(fb_consumer_open("busy", &co, &c), FB_OK);
	fb_snapshot s;
	EQ(fb_inspect("busy", dir, &s), FB_OK);
	CHECK(s.producer_alive && s.generation == 1 && s.consumers_active == 1 && s.producer_pid == (uint32_t)getpid() &&
		      s.format.width == 32 && s.state == FRAMEBUS_STATE_READY,
	      "alive %d gen %" PRIu64 " consumers %u", s.producer_alive, s.generation, s.consumers_active);
	uint8_t buf[64 * 48];
	memset(buf, 7, sizeof buf);
	EQ(fb_producer_publish(p, buf, 32 * 32, NULL, NULL), FB_OK);
	fb_frame f;
	EQ(fb_consumer_next(c, 1000, &f), FB_OK);
	/* a hold outlives its generation: the old mapping stays until it is released */
	fb_producer_close(p);
	po.slots = 4;
	po.consumers = 1;
	EQ(fb_producer_create("busy", &po, &p), FB_OK);
	EQ(fb_producer_publish(p, buf, 32 * 32, NULL, NULL), FB_OK);
	EQ(fb_consumer_next(c, 2000, &f), FB_ERR_END_OF_STREAM); /* the first producer closed */
	fb_consumer_close(c);
	EQ(fb_consumer_open("busy", &co, &c), FB_OK);
	fb_consumer *c2 = NULL;
	EQ(fb_consumer_open("busy", &co, &c2), FB_ERR_TABLE_FULL); /* consumers = 1 */
	memset(buf, 9, sizeof buf);
	EQ(fb_producer_publish(p, buf, 32 * 32, NULL, NULL), FB_OK);
	EQ(fb_consumer_next(c, 1000, &f), FB_OK);
	fb_hold old;
	EQ(fb_frame_hold(c, &f, &old), FB_OK);
	fb_format nf = {.width = 64, .height = 48, .pixel_format = FRAMEBUS_FOURCC_GREY};
	EQ(fb_producer_reconfigure(p, &nf), FB_OK);
	EQ(fb_producer_publish(p, buf, sizeof buf, NULL, NULL), FB_OK);
	EQ(fb_consumer_next(c, 2000, &f), FB_OK);
	CHECK(f.generation == 2 && f.generation_changed && f.bytes == sizeof buf, "generation %" PRIu64 " changed %d",
	      f.generation, f.generation_changed);
	CHECK(old.generation == 1 && fb_hold_valid(c, &old) && old.data[0] == 9 && old.data[old.bytes - 1] == 9,
	      "the old generation's hold");
	EQ(fb_hold_release(c, &old), FB_OK);
	fb_format cf;
	fb_consumer_format(c, &cf);
	CHECK(cf.width == 64 && cf.height == 48, "format %ux%u", cf.width, cf.height);
	fb_consumer_close(c);
	fb_producer_close(p);
}

/* kill -9 of the producer: FB_ERR_PRODUCER_GONE within 3 heartbeat intervals. */
static void test_producer_killed(void)
{
	const uint32_t hb = 100;
	int ready[2];
	if (pipe(ready) != 0)
		return;
	pid_t pid = fork();
	if (pid == 0) {
		fb_producer_opts po = popts(32, 32, 2);
		po.heartbeat_ms = hb;
		fb_producer *p;
		if (fb_producer_create("killed", &po, &p) != FB_OK)
			_exit(10);
		uint8_t buf[32 * 32] = {0};
		fb_producer_publish(p, buf, sizeof buf, NULL, NULL);
		if (write(ready[1], "r", 1) != 1)
			_exit(11);
		for (;;)
			pause(); /* alive, heartbeat thread beating, no frames */
	}
	char ch;
	CHECK(read(ready[0], &ch, 1) == 1, "child ready");
	fb_consumer *c;
	fb_consumer_opts co = copts();
	EQ(fb_consumer_open("killed", &co, &c), FB_OK);
	fb_frame f;
	EQ(fb_consumer_next(c, 500, &f), FB_ERR_TIMEOUT); /* alive: a timeout, not gone */
	uint64_t t0 = now_ms();
	kill(pid, SIGKILL);
	int r = fb_consumer_next(c, 10000, &f);
	uint64_t took = now_ms() - t0;
	EQ(r, FB_ERR_PRODUCER_GONE);
	CHECK(took <= 3 * hb, "producer gone after %" PRIu64 " ms, want <= %u", took, 3 * hb);
	printf("    producer gone seen %" PRIu64 " ms after SIGKILL (heartbeat %u ms): %s\n", took, hb,
	       fb_consumer_errmsg(c));
	fb_consumer_close(c);
	waitpid(pid, NULL, 0);
	close(ready[0]);
	close(ready[1]);
	/* the next producer takes the name over and continues the numbering */
	fb_producer_opts po = popts(32, 32, 2);
	fb_producer *p;
	EQ(fb_producer_create("killed", &po, &p), FB_OK);
	struct fb_producer_stats st;
	fb_producer_stats(p, &st);
	CHECK(st.generation == 2 && st.last_seq == 1, "generation %" PRIu64 " last_seq %" PRIu64, st.generation,
	      st.last_seq);
	fb_producer_close(p);
}

/* The bus truncated under a zero-copy view: reading the view reads zeros (no SIGBUS),
 * fb_frame_valid says 0, and the consumer joins the producer's next generation. */
static void test_truncated_view(void)
{
	fb_producer_opts po = popts(256, 256, 3);
	po.manual_heartbeat = 1;
	fb_producer *p;
	EQ(fb_producer_create("trunc", &po, &p), FB_OK);
	fb_consumer *c;
	fb_consumer_opts co = copts();
	EQ(fb_consumer_open("trunc", &co, &c), FB_OK);
	static uint8_t buf[256 * 256];
	fill(buf, sizeof buf, 1);
	EQ(fb_producer_publish(p, buf, sizeof buf, NULL, NULL), FB_OK);
	fb_frame f;
	EQ(fb_consumer_next(c, 1000, &f), FB_OK);
	CHECK(fb_frame_valid(c, &f) && check_fill(f.data, f.bytes, f.seq), "view intact before");
	char path[512];
	snprintf(path, sizeof path, "%s/framebus.trunc", dir);
	int fd = open(path, O_RDWR);
	CHECK(fd >= 0 && ftruncate(fd, 0) == 0, "truncate %s", path);
	close(fd);
	unsigned sum = 0;
	for (size_t i = 0; i < f.bytes; i += 512)
		sum += f.data[i]; /* faults: zero pages instead of SIGBUS */
	CHECK(sum == 0, "the view reads zeros (sum %u)", sum);
	CHECK(!fb_frame_valid(c, &f), "valid() false after the truncation");
	EQ(fb_producer_tick(p), FB_OK); /* BROKEN, generation 2 */
	fill(buf, sizeof buf, 2);
	int r = fb_producer_publish(p, buf, sizeof buf, NULL, NULL);
	CHECK(r == FB_OK || r == FB_ERR_TRUNCATED, "publish %d", r);
	if (r == FB_ERR_TRUNCATED)
		EQ(fb_producer_publish(p, buf, sizeof buf, NULL, NULL), FB_OK);
	r = fb_consumer_next(c, 3000, &f);
	EQ(r, FB_OK);
	CHECK(f.generation == 2 && f.generation_changed && check_fill(f.data, f.bytes, 2), "generation %" PRIu64,
	      f.generation);
	struct fb_consumer_stats st;
	fb_consumer_stats(c, &st);
	CHECK(st.truncations == 1 && st.generations == 1, "truncations %" PRIu64 " generations %" PRIu64,
	      st.truncations, st.generations);
	fb_consumer_close(c);
	fb_producer_close(p);
}

/* Mode 0660 and a group: the segment and the lock file get both (the umask does not
 * decide); a world-writable mode is refused. */
static void test_mode_group(void)
{
	fb_producer_opts po = popts(16, 16, 2);
	po.mode = 0666;
	fb_producer *p;
	EQ(fb_producer_create("modes", &po, &p), FB_ERR_BAD_OPTIONS);
	po.mode = 0660;
	char gid[32];
	snprintf(gid, sizeof gid, "%u", (unsigned)getegid());
	po.group = gid;
	mode_t old = umask(077);
	EQ(fb_producer_create("modes", &po, &p), FB_OK);
	umask(old);
	const char *files[] = {"framebus.modes", "framebus.modes.lock"};
	for (int i = 0; i < 2; i++) {
		char path[512];
		struct stat st;
		snprintf(path, sizeof path, "%s/%s", dir, files[i]);
		CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0660 && st.st_gid == getegid(),
		      "%s: mode %04o gid %u", files[i], (unsigned)(st.st_mode & 07777), (unsigned)st.st_gid);
	}
	fb_producer_close(p);
	po.group = "no-such-group-for-framebus";
	EQ(fb_producer_create("modes", &po, &p), FB_ERR_BAD_OPTIONS);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(dir, sizeof dir, "%s/fbtest-XXXXXX", base);
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	struct {
		const char *name;
		void (*fn)(void);
	} tests[] = {
		{"errors: missing bus, bad names, bad options", test_errors},
		{"version skew: abi_version 2", test_version_skew},
		{"two processes: frames with checksums, end of stream", test_two_processes},
		{"holds: cap, copy, unsupported, abort", test_holds},
		{"busy, inspect, reconfigure, table full", test_busy_inspect_reconfigure},
		{"mode 0660 and a group", test_mode_group},
		{"kill -9 of the producer", test_producer_killed},
		{"truncation under a zero-copy view", test_truncated_view},
	};
	for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
		int before = failures;
		uint64_t t0 = now_ms();
		tests[i].fn();
		printf("%s %s (%" PRIu64 " ms)\n", failures == before ? "ok  " : "FAIL", tests[i].name, now_ms() - t0);
	}
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", dir);
	printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
	return failures ? 1 : 0;
}
