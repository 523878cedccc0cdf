/*
 * framebus.h - binary layout of a framebus shared-memory segment, ABI version 1.
 *
 * This header is a transcription of docs/PROTOCOL.md (the wire contract) for consumers
 * written in C, C++ or any language with a C FFI. PROTOCOL.md is the authority; a test
 * (framebus/protocol_doc_test.go) checks every offset, size and constant here against it.
 *
 * Everything is little-endian, fixed width and naturally aligned. There are no pointers:
 * every reference is an offset from the segment's base and must be checked against the
 * mapped length before use. Reserved bytes are zero today and must be ignored by readers.
 *
 * Segment layout:
 *   [0, 512)                              framebus_header (sections 3.1-3.3)
 *   [slot_table_offset, +slot_count*128)  framebus_slot_desc[slot_count] (section 3.4)
 *   [consumer_table_offset, +cap*128)     framebus_consumer_entry[consumer_capacity] (3.5)
 *   ... zero up to payload_offset         (end of the control block)
 *   [payload_offset + i*slot_stride, +slot_capacity)   data of slot i
 * Consumers map the control block [0, payload_offset) read-write and the payload
 * [payload_offset, total_size) read-only, two MAP_SHARED mappings of one descriptor.
 *
 * Atomic words
 *   Fields whose comment says "atomic" are read and written concurrently by several
 *   processes. Access them only with the GCC/Clang __atomic builtins (or C11 atomics on a
 *   suitably cast pointer), never with plain loads and stores. The types here are plain
 *   fixed-width integers on purpose so the header is usable from any language; they are
 *   not _Atomic.
 *
 * Commit protocol (one producer, section 4), publishing seq = last_seq + 1:
 *   1. s = (active + 1) % slot_count
 *   2. slot[s].lock += 1                      (odd: being written)
 *   3. write data, frame_seq, capture_ns, bytes, checksum, frame_flags, user_meta, commit_ns
 *   4. slot[s].lock += 1                      (even: committed)
 *   5. last_seq = seq; active = s; frames_published += 1; last_commit_ns = now
 *   6. for each entry with state == 2: sem += 1; if waiters != 0: FUTEX_WAKE(&sem)
 *      (a shared futex: FUTEX_WAKE, not FUTEX_WAKE_PRIVATE)
 *
 * Read protocol (any number of consumers, section 5):
 *   wait: n = exchange(sem, 0); if n > 0 return; waiters = 1;
 *         FUTEX_WAIT(&sem, 0, heartbeat_interval_ms); waiters = 0; repeat
 *         (amendment 11, wake words heal: the entry's waiters word is stored, not added to; see "Wake words
 *         heal" below)
 *         (refresh the entry's heartbeat_ns on every wake and timeout; on a timeout check
 *         producer liveness, header state and the generation)
 *   read: 1. s = active; l1 = slot[s].lock; odd -> re-read active, retry
 *         2. copy the descriptor and the data (bytes <= slot_capacity, user_meta_len <= 64)
 *         3. load fence; l2 = slot[s].lock; l2 != l1 -> torn: torn_retries += 1, go to 1
 *         4. frame_seq <= last_seq -> nothing new; otherwise
 *            if frame_seq > last_seq + 1: dropped += frame_seq - last_seq - 1;
 *            last_seq = frame_seq; delivered += 1
 *
 * Consumer table (section 2): to join entry i, take a non-blocking shared OFD lock
 * (F_OFD_SETLK, F_RDLCK) on bytes [consumer_table_offset + i*128, +128) of the segment
 * file; then CAS state 0 -> 1; fill token, pid, heartbeat_ns, last_seq (= header last_seq),
 * zero the counters; then CAS state 1 -> 2. To leave: CAS 2 -> 0, then drop the lock.
 * The lock is the liveness proof: never CAS before holding it.
 *
 * Memory ordering (section 5):
 *   - The wake is a store-buffering handshake: the producer's sem += 1 followed by its read
 *     of waiters, and the consumer's waiters += 1 followed by the futex's read of sem, must
 *     be sequentially consistent (__ATOMIC_SEQ_CST); acquire/release is not enough.
 *   - Slot data is protected by a sequence lock. The writer needs a store fence between the
 *     odd lock store and the data writes, and between the data writes and the even store.
 *     The reader needs its first lock load to be (at least) acquire and a load fence
 *     (__atomic_thread_fence(__ATOMIC_ACQUIRE)) between its data reads and the second lock
 *     load. x86-64 provides the hardware ordering for free (the fences then only constrain
 *     the compiler); arm64 does not.
 *   - All counters and state words: use __ATOMIC_SEQ_CST unless you know better.
 *
 * Spinning consumer (optional; a consumer-local policy, no shared word changes meaning)
 *   A sleeping consumer's latency is the kernel's wake: tens of microseconds, and on a
 *   virtual machine 50-70 us more when the wake lands on an idle vCPU. A consumer of a
 *   paced stream (a camera) can instead be awake, spinning, when the next frame lands,
 *   and sleep the rest of the period: a few microseconds for a few hundred microseconds
 *   of CPU per frame. framebus's Go consumer (ConsumerOptions.Spin, framebus/spin.go) and
 *   the C reference (libframebus/src/consumer.c, testdata/c/consumer.c --spin: struct
 *   spin, spin_learn, spin_window, spin_for, wait_wake) do it the same way. All times
 *   CLOCK_MONOTONIC nanoseconds.
 *   1. Learn the period from the delivered data frames' commit_ns (never from the
 *      end-of-stream frame): period = (commit - anchor_commit) / (seq - anchor_seq) from
 *      an anchor frame (a burst of late frames caught up at once does not throw it); no
 *      spin while it is <= 0 or > 1 s (restart from the current frame).
 *   2. Predict the next commit like a phase-locked loop: the first prediction is
 *      next = commit + period, next_seq = seq + 1; then for each frame,
 *      want = next + (seq - next_seq) * period and err = commit - want. If
 *      |err| > period / 2: the third time in a row, start again (keeping the period as a
 *      rough figure); before that, next = want + period (the phase kept). Otherwise
 *      next = want + err / 16 + period, and this is a locked prediction: the running 10th
 *      and 90th percentiles lo, hi of err move by stochastic approximation (step =
 *      max(jitter / 4, 2 us); up by pct/100 of a step when err is above the estimate, down
 *      by the rest when below), jitter += (|err| - jitter) / 8. Arrivals are skewed (a
 *      producer is late now and then, never much early), hence percentiles, not a mean.
 *      For each timed sleep that should have ended at a window's start,
 *      late += (how late it ended - late) / 8.
 *   3. After 8 locked predictions, the window for the frame after last_seq is
 *      due = next + (last_seq + 1 - next_seq) * period (pushed whole periods ahead if
 *      it is already past), from due + lo - 100 us - late (a vCPU back from a sleep
 *      reads slowly for a while) to due + hi + 20 us, at most SPIN (the caller's budget,
 *      e.g. 400 us) long.
 *   4. Wait as section 5 (or amendment 7, the shared wake word) says, but with the futex timeout ending where
 *      the window opens; that early timeout is not a heartbeat timeout. In the window,
 *      watch wake_seq (amendment 7; the producer writes it once per commit, right after
 *      the flip) and look at the active slot's frame_seq only when it changes; without
 *      the shared word, look at the active slot. Polling the header and slot lines
 *      directly would pull them back from the producer between its stores and slow the
 *      commit being waited for. No pause instruction: on a virtual machine a pause loop
 *      can make the host deschedule the vCPU. A frame caught costs no system call on
 *      either side. A window that closes with no frame is a miss for that frame: sleep
 *      for it as usual, and spin again for the next.
 *
 * Holds (PROTOCOL.md amendment 10; FRAMEBUS_FLAG_HOLDS, hold_mask and the holds_* words)
 *   A consumer may keep a frame it has just read, zero-copy, until it releases it; the
 *   producer never writes a held slot and never waits. A bus of N = slot_count slots allows
 *   at most N - 2 held slots at once (the cap; a 2-slot bus allows none). Every access below
 *   is a sequentially consistent atomic (__ATOMIC_SEQ_CST): G4 -> G5 (consumer) and
 *   C3 -> C4 (producer) are a store-buffering pair, acquire/release is not enough.
 *   hold_mask bit i (0..7): the entry holds slot i; FRAMEBUS_HOLD_PENDING(i) (bit 8 + i): its
 *   grant on slot i is in progress. Only the owner of an entry sets bits; the owner and the producer clear
 *   them, always with an atomic read-modify-write (fetch_or / fetch_and / exchange). Holding
 *   the same slot twice shares one bit: the consumer counts its own holds of a slot.
 *
 *   Grant (consumer, right after a read of slot s whose even lock value was l1):
 *     G1 hold_mask |= (1 << s) | FRAMEBUS_HOLD_PENDING(s)
 *     G2 if slot[s].lock != l1: withdraw (clear both bits; the slot bit only if no earlier
 *        hold of s is still kept), refuse: overwritten
 *     G3 u = union over every entry with state == 2 of (hold_mask & ((1 << N) - 1))
 *        (pending entries and our own included); if popcount(u) > N - 2: withdraw,
 *        refuse: cap
 *     G4 hold_mask &= ~FRAMEBUS_HOLD_PENDING(s)
 *     G5 if slot[s].lock != l1: withdraw, refuse: overwritten
 *     granted: holds_granted += 1 in the entry and in the header.
 *   A refusal adds 1 to holds_refused (entry and header) and is never a wait: copy the frame
 *   instead. On a bus without FRAMEBUS_FLAG_HOLDS a hold is refused (unsupported) without
 *   touching any of these words (they are reserved bytes to that producer).
 *   A granted hold stays valid while slot[s].lock == l1; a changed lock means the producer
 *   took it back (lease or forged words; holds_taken_back tells): the view is no longer valid.
 *
 *   Choice of the back slot (producer with FRAMEBUS_FLAG_HOLDS; replaces commit step 1):
 *     C1 read the hold_mask m of every entry with state == 2: held = union of the bits i < N
 *        of m whose FRAMEBUS_HOLD_PENDING(i) is clear, pending = union of those whose
 *        FRAMEBUS_HOLD_PENDING(i) is set
 *     C2 s = the first of active+1, active+2, ... (mod N, never active) in neither set, else
 *        the first not in held
 *     C3 commit step 2: slot[s].lock += 1 (odd)
 *     C4 read the masks again: if s is now in held (a grant finished meanwhile), store the
 *        lock back to its even value (no data was written) and go to C1 without s (N times
 *        at most). A slot in pending only may be taken: its grant fails at G5.
 *   Since finished holds are at most the cap, C2 always finds a slot that is not active and
 *   not held. A held slot whose frame's commit_ns is older than hold_max_ns (non-zero), and a
 *   slot C1-C4 cannot avoid (only forged words cause that), is taken back: the producer clears
 *   that bit in every entry holding it, adds 1 to holds_taken_back (each such entry and the
 *   header), then writes the slot. Bits of entries not in state 2 and bits at or past N (with
 *   their pending bits) are ignored by both sides and counted in the header's holds_ignored by the heartbeat scan.
 *
 *   Release: the owner clears the slot's bit when its last hold of that slot ends; leaving,
 *   it clears its whole hold_mask (exchange with 0) before its CAS 2 -> 0. The producer's
 *   reclaim of a dead consumer's entry clears the mask after its CAS; a joiner stores 0 in
 *   it (and in its holds_* counters) while claiming, before the CAS 1 -> 2. A stopped holder
 *   keeps its holds (at most the cap): the stream goes on for everybody else.
 *
 * Wake words heal (PROTOCOL.md amendment 11; no layout change)
 *   A sleeper counted in a waiters word forged to 0 (or to 2^32 - 1, which += 1 wraps to 0)
 *   is never woken again: the producer reads 0 and makes no FUTEX_WAKE. So:
 *   - per-entry wait: the entry's waiters word has one owner: store waiters = 1 before the
 *     FUTEX_WAIT on sem and waiters = 0 after it (seq_cst stores), never += 1 / -= 1; a
 *     forged value lasts one sleep at most.
 *   - shared wait (amendment 7): wake_waiters += 1 before and -= 1 after the FUTEX_WAIT on
 *     wake_seq as before, but when that wait timed out (ETIMEDOUT) while wake_seq moved past
 *     the value waited on (the producer committed, yet nothing woke us), add 1 to
 *     wake_waiters once more and leave it there: we are counted again from our next sleep
 *     on. A word left one too high costs a FUTEX_WAKE with nobody to wake, as a killed
 *     sleeper's does. (libframebus/src/consumer.c, wait_wake, does both.)
 *
 * Held wait (optional; for runtimes with a scheduler of their own)
 *   A consumer in a language whose runtime multiplexes threads (Go, a JVM, an async loop)
 *   may lose tens of microseconds after the FUTEX_WAIT returns, getting its thread back onto
 *   the runtime's scheduler. framebus's Go consumer therefore learns the pace as above and,
 *   from about 2 ms before the predicted frame (an eighth of the period at most, for at most
 *   4 ms or a quarter of the period; streams of 200 fps and less only), waits with a
 *   FUTEX_WAIT that keeps its thread, then
 *   sleeps as usual if the window closes with no frame (ConsumerOptions.Hold). It changes
 *   nothing on the wire, and a C consumer, which owns its thread, needs none.
 */
#ifndef FRAMEBUS_H
#define FRAMEBUS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define FRAMEBUS_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define FRAMEBUS_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

/* ---- Constants ------------------------------------------------------------------- */

#define FRAMEBUS_MAGIC 0x53554246u /* the bytes "FBUS" in little-endian order */
#define FRAMEBUS_ABI_VERSION 1
#define FRAMEBUS_HEADER_SIZE 512           /* sections 3.1-3.3; also slot_table_offset */
#define FRAMEBUS_SLOT_DESC_SIZE 128        /* section 3.4 */
#define FRAMEBUS_CONSUMER_ENTRY_SIZE 128   /* section 3.5 */
#define FRAMEBUS_PAYLOAD_ALIGN 65536       /* payload_offset and slot_stride are multiples */
#define FRAMEBUS_MAX_SLOTS 8
#define FRAMEBUS_MIN_SLOTS 2
#define FRAMEBUS_MAX_CONSUMERS 1024
#define FRAMEBUS_USER_META_MAX 64
#define FRAMEBUS_MAX_PLANES 4

/* framebus_header.state */
#define FRAMEBUS_STATE_INITIALIZING 0
#define FRAMEBUS_STATE_READY 1
#define FRAMEBUS_STATE_BROKEN 2
#define FRAMEBUS_STATE_RETIRED 3

/* framebus_header.flags */
#define FRAMEBUS_FLAG_CHECKSUM (1u << 0) /* slots carry CRC-32C (Castagnoli) checksums */
#define FRAMEBUS_FLAG_SHARED_WAKE (1u << 1) /* amendment 7: wake_seq is bumped and woken at every commit */
#define FRAMEBUS_FLAG_HOLDS (1u << 2) /* amendment 10: the producer honours consumers' holds */

/* framebus_consumer_entry.hold_mask (amendment 10): bit i (0..7) holds slot i; bit
 * FRAMEBUS_HOLD_PENDING_SHIFT + i, FRAMEBUS_HOLD_PENDING(i): the grant on slot i is in
 * progress (one pending bit per slot, so that an entry's finished holds stay held while it
 * grants another) */
#define FRAMEBUS_HOLD_PENDING_SHIFT 8
#define FRAMEBUS_HOLD_PENDING(i) (1u << (FRAMEBUS_HOLD_PENDING_SHIFT + (i)))

/* framebus_slot_desc.frame_flags */
#define FRAMEBUS_FRAME_EOS (1u << 0) /* end of stream: bytes == 0 */

/* framebus_consumer_entry.state */
#define FRAMEBUS_ENTRY_FREE 0
#define FRAMEBUS_ENTRY_CLAIMING 1
#define FRAMEBUS_ENTRY_ACTIVE 2

/* V4L2 fourcc: first character in the low byte. */
#define FRAMEBUS_FOURCC(a, b, c, d)                                                     \
	((uint32_t)(uint8_t)(a) | ((uint32_t)(uint8_t)(b) << 8) |                       \
	 ((uint32_t)(uint8_t)(c) << 16) | ((uint32_t)(uint8_t)(d) << 24))

#define FRAMEBUS_FOURCC_AB24 FRAMEBUS_FOURCC('A', 'B', '2', '4') /* RGBA 8-8-8-8 */
#define FRAMEBUS_FOURCC_RGB3 FRAMEBUS_FOURCC('R', 'G', 'B', '3')
#define FRAMEBUS_FOURCC_BGR3 FRAMEBUS_FOURCC('B', 'G', 'R', '3')
#define FRAMEBUS_FOURCC_GREY FRAMEBUS_FOURCC('G', 'R', 'E', 'Y')
#define FRAMEBUS_FOURCC_YUYV FRAMEBUS_FOURCC('Y', 'U', 'Y', 'V')
#define FRAMEBUS_FOURCC_NV12 FRAMEBUS_FOURCC('N', 'V', '1', '2')
#define FRAMEBUS_FOURCC_YU12 FRAMEBUS_FOURCC('Y', 'U', '1', '2') /* I420 */
#define FRAMEBUS_FOURCC_MJPG FRAMEBUS_FOURCC('M', 'J', 'P', 'G')

/* ---- Control block header, offset 0, 512 bytes ------------------------------------ */

typedef struct framebus_header {
	/* 3.1 Stable prefix, bytes 0-63: never changes in any future version. */
	uint32_t magic;                  /*   0  FRAMEBUS_MAGIC */
	uint16_t abi_version;            /*   4  FRAMEBUS_ABI_VERSION */
	uint16_t header_size;            /*   6  FRAMEBUS_HEADER_SIZE */
	uint32_t state;                  /*   8  atomic: FRAMEBUS_STATE_* */
	uint32_t flags;                  /*  12  FRAMEBUS_FLAG_* */
	uint64_t total_size;             /*  16  bytes of the segment; == file size */
	uint64_t generation;             /*  24  1 for a new name, +1 per replacement */
	uint64_t heartbeat_ns;           /*  32  atomic: producer CLOCK_MONOTONIC */
	uint64_t payload_offset;         /*  40  multiple of FRAMEBUS_PAYLOAD_ALIGN */
	uint64_t payload_size;           /*  48  slot_count * slot_stride */
	uint64_t version_mismatch_count; /*  56  atomic: bumped by refused joiners */
	uint8_t reserved_64[64];         /*  64  reserved, zero */

	/* 3.2 Stream description, bytes 128-255 (fixed per generation). */
	uint32_t producer_pid;           /* 128  informational */
	uint32_t slot_count;             /* 132  FRAMEBUS_MIN_SLOTS..FRAMEBUS_MAX_SLOTS */
	uint64_t slot_stride;            /* 136  multiple of FRAMEBUS_PAYLOAD_ALIGN */
	uint64_t slot_capacity;          /* 144  largest frame, <= slot_stride */
	uint32_t consumer_capacity;      /* 152  entries, at most FRAMEBUS_MAX_CONSUMERS */
	uint32_t heartbeat_interval_ms;  /* 156  default 100 */
	uint32_t width;                  /* 160 */
	uint32_t height;                 /* 164 */
	uint32_t pixel_format;           /* 168  FRAMEBUS_FOURCC_* */
	uint32_t plane_count;            /* 172  1..FRAMEBUS_MAX_PLANES */
	uint32_t plane_stride[FRAMEBUS_MAX_PLANES]; /* 176  bytes per row of each plane */
	uint32_t plane_offset[FRAMEBUS_MAX_PLANES]; /* 192  plane offset inside slot data */
	uint32_t fps_num;                /* 208  0 = unknown */
	uint32_t fps_den;                /* 212  1 when fps_num is 0 */
	uint64_t slot_table_offset;      /* 216  == FRAMEBUS_HEADER_SIZE */
	uint64_t consumer_table_offset;  /* 224 */
	uint32_t slot_desc_size;         /* 232  == FRAMEBUS_SLOT_DESC_SIZE */
	uint32_t consumer_entry_size;    /* 236  == FRAMEBUS_CONSUMER_ENTRY_SIZE */
	uint64_t created_ns;             /* 240  CLOCK_MONOTONIC */
	uint64_t producer_pidns;         /* 248  amendment 8 (creation and liveness across PID namespaces): st_ino of the producer's /proc/self/ns/pid, 0 = unknown */

	/* 3.3 Publication and counters, bytes 256-511. */
	uint32_t active;                 /* 256  atomic: slot of the newest committed frame */
	uint32_t reserved_260;           /* 260  reserved, zero */
	uint64_t last_seq;               /* 264  atomic: newest committed frame, 0 = none */
	uint64_t frames_published;       /* 272  atomic */
	uint64_t last_commit_ns;         /* 280  atomic */
	uint64_t source_drops;           /* 288  atomic */
	uint64_t consumers_reclaimed;    /* 296  atomic */
	uint8_t reserved_304[16];        /* 304  reserved, zero */
	uint32_t wake_seq;               /* 320  atomic, amendment 7: shared wake word (futex) */
	uint32_t wake_waiters;           /* 324  atomic, amendment 7: consumers about to sleep on it */
	uint8_t reserved_328[56];        /* 328  reserved, zero */
	/* Amendment 10 (holds): their own cache line, away from wake_seq. */
	uint64_t hold_max_ns;            /* 384  the lease, fixed per generation; 0 = never taken back */
	uint64_t holds_granted;          /* 392  atomic: holds granted, all consumers */
	uint64_t holds_refused;          /* 400  atomic: holds refused (cap, overwritten), all consumers */
	uint64_t holds_taken_back;       /* 408  atomic: holds the producer took back (lease, forged words) */
	uint64_t holds_ignored;          /* 416  atomic: hold bits of entries not in state 2, or at or
					  *       past slot_count, seen by the heartbeat scan */
	uint8_t reserved_424[88];        /* 424  reserved, zero, up to 511 */
} framebus_header;

/* ---- Slot descriptor, slot_count x 128 bytes from slot_table_offset ---------------- */

typedef struct framebus_slot_desc {
	uint64_t lock;          /*   0  atomic sequence lock: odd = being written */
	uint64_t frame_seq;     /*   8 */
	uint64_t capture_ns;    /*  16  CLOCK_MONOTONIC when the source produced it */
	uint64_t commit_ns;     /*  24  CLOCK_MONOTONIC just before the even lock store */
	uint64_t bytes;         /*  32  frame bytes in use; 0 for end of stream */
	uint32_t checksum;      /*  40  CRC-32C of the bytes when FRAMEBUS_FLAG_CHECKSUM */
	uint32_t frame_flags;   /*  44  FRAMEBUS_FRAME_* */
	uint32_t user_meta_len; /*  48  0..FRAMEBUS_USER_META_MAX */
	uint8_t reserved_52[12];                   /*  52  reserved, zero */
	uint8_t user_meta[FRAMEBUS_USER_META_MAX]; /*  64  under the same lock */
} framebus_slot_desc;

/* ---- Consumer entry, consumer_capacity x 128 bytes from consumer_table_offset ------ */

typedef struct framebus_consumer_entry {
	uint32_t state;        /*   0  atomic: FRAMEBUS_ENTRY_*; every change is a CAS */
	uint32_t pid;          /*   4  informational */
	uint32_t sem;          /*   8  atomic: wake semaphore, shared futex word */
	uint32_t waiters;      /*  12  atomic: non-zero while the consumer sleeps on sem */
	uint64_t token;        /*  16  random, chosen at claim */
	uint64_t last_seq;     /*  24  atomic: newest frame this consumer has taken */
	uint64_t delivered;    /*  32  atomic */
	uint64_t dropped;      /*  40  atomic: sequence gaps, overruns */
	uint64_t heartbeat_ns; /*  48  atomic: consumer CLOCK_MONOTONIC */
	uint64_t torn_retries; /*  56  atomic */
	uint64_t pidns;        /*  64  amendment 8: st_ino of the consumer's /proc/self/ns/pid, 0 = unknown */
	uint32_t hold_mask;    /*  72  atomic, amendment 10: bit i holds slot i; FRAMEBUS_HOLD_PENDING(i) */
	uint32_t reserved_76;  /*  76  reserved, zero */
	uint64_t holds_granted;    /*  80  atomic: this consumer's holds granted */
	uint64_t holds_refused;    /*  88  atomic: this consumer's holds refused */
	uint64_t holds_taken_back; /*  96  atomic: this consumer's holds the producer took back */
	uint8_t reserved_104[24];  /* 104  reserved, zero */
} framebus_consumer_entry;

/* ---- Layout checks ---------------------------------------------------------------- */

#define FRAMEBUS_CHECK_FIELD(type, field, off, size)                                    \
	FRAMEBUS_STATIC_ASSERT(offsetof(type, field) == (off), #type "." #field " offset"); \
	FRAMEBUS_STATIC_ASSERT(sizeof(((type *)0)->field) == (size), #type "." #field " size")

FRAMEBUS_STATIC_ASSERT(sizeof(framebus_header) == FRAMEBUS_HEADER_SIZE, "header size");
FRAMEBUS_CHECK_FIELD(framebus_header, magic, 0, 4);
FRAMEBUS_CHECK_FIELD(framebus_header, abi_version, 4, 2);
FRAMEBUS_CHECK_FIELD(framebus_header, header_size, 6, 2);
FRAMEBUS_CHECK_FIELD(framebus_header, state, 8, 4);
FRAMEBUS_CHECK_FIELD(framebus_header, flags, 12, 4);
FRAMEBUS_CHECK_FIELD(framebus_header, total_size, 16, 8);
FRAMEBUS_CHECK_FIELD(framebus_header, generation, 24, 8);
FRAMEBUS_CHECK_FIELD(framebus_header, heartbeat_ns, 32, 8);
FRAMEBUS_CHECK_FIELD(framebus_header, payload_offset, 40, 8);
FRAMEBUS_CHECK_FIELD(framebus_header, payload_size, 48, 8);
FRAMEBUS_CHECK_FIELD(framebus_header, version_mismatch_count, 56, 8);
FRAMEBUS_CHECK_FIELD(framebus_header, reserved_64, 64, 64);
FRAMEBUS_CHECK_FIELD(framebus_header, producer_pid, 128, 4);
FRAMEBUS_CHECK_FIELD(framebus_header, slot_count, 132, 4);
FRAMEBUS_CHECK_FIELD(framebus_header, slot_stride, 136, 8);
FRAMEBUS_CHECK_FIELD(framebus_header, slot_capacity, 144, 8);
FRAMEBUS_CHECK_FIELD(framebus_header, consumer_capacity, 152, 4);
FRAMEBUS_CHECK_FIELD(framebus_header, heartbeat_interval_ms, 156, 4);
FRAMEBUS_CHECK_FIELD(framebus_header, width, 160, 4);
FRAMEBUS_CHECK_FIELD(framebus_header, height, 164, 4);
FRAMEBUS_CHECK_FIELD(framebus_header, pixel_format, 168, 4);
FRAMEBUS_CHECK_FIELD(framebus_header, plane_count, 172, 4);
FRAMEBUS_CHECK_FIELD(framebus_header, plane_stride, 176, 16);
FRAMEBUS_CHECK_FIELD(framebus_header, plane_offset, 192, 16);
FRAMEBUS_CHECK_FIELD(framebus_header, fps_num, 208, 4);
FRAMEBUS_CHECK_FIELD(framebus_header, fps_den, 212, 4);
FRAMEBUS_CHECK_FIELD(framebus_header, slot_table_offset, 216, 8);
FRAMEBUS_CHECK_FIELD(framebus_header, consumer_table_offset, 224, 8);
FRAMEBUS_CHECK_FIELD(framebus_header, slot_desc_size, 232, 4);
FRAMEBUS_CHECK_FIELD(framebus_header, consumer_entry_size, 236, 4);
FRAMEBUS_CHECK_FIELD(framebus_header, created_ns, 240, 8);
FRAMEBUS_CHECK_FIELD(framebus_header, producer_pidns, 248, 8);
FRAMEBUS_CHECK_FIELD(framebus_header, active, 256, 4);
FRAMEBUS_CHECK_FIELD(framebus_header, reserved_260, 260, 4);
FRAMEBUS_CHECK_FIELD(framebus_header, last_seq, 264, 8);
FRAMEBUS_CHECK_FIELD(framebus_header, frames_published, 272, 8);
FRAMEBUS_CHECK_FIELD(framebus_header, last_commit_ns, 280, 8);
FRAMEBUS_CHECK_FIELD(framebus_header, source_drops, 288, 8);
FRAMEBUS_CHECK_FIELD(framebus_header, consumers_reclaimed, 296, 8);
FRAMEBUS_CHECK_FIELD(framebus_header, reserved_304, 304, 16);
FRAMEBUS_CHECK_FIELD(framebus_header, wake_seq, 320, 4);
FRAMEBUS_CHECK_FIELD(framebus_header, wake_waiters, 324, 4);
FRAMEBUS_CHECK_FIELD(framebus_header, reserved_328, 328, 56);
FRAMEBUS_CHECK_FIELD(framebus_header, hold_max_ns, 384, 8);
FRAMEBUS_CHECK_FIELD(framebus_header, holds_granted, 392, 8);
FRAMEBUS_CHECK_FIELD(framebus_header, holds_refused, 400, 8);
FRAMEBUS_CHECK_FIELD(framebus_header, holds_taken_back, 408, 8);
FRAMEBUS_CHECK_FIELD(framebus_header, holds_ignored, 416, 8);
FRAMEBUS_CHECK_FIELD(framebus_header, reserved_424, 424, 88);

FRAMEBUS_STATIC_ASSERT(sizeof(framebus_slot_desc) == FRAMEBUS_SLOT_DESC_SIZE, "slot size");
FRAMEBUS_CHECK_FIELD(framebus_slot_desc, lock, 0, 8);
FRAMEBUS_CHECK_FIELD(framebus_slot_desc, frame_seq, 8, 8);
FRAMEBUS_CHECK_FIELD(framebus_slot_desc, capture_ns, 16, 8);
FRAMEBUS_CHECK_FIELD(framebus_slot_desc, commit_ns, 24, 8);
FRAMEBUS_CHECK_FIELD(framebus_slot_desc, bytes, 32, 8);
FRAMEBUS_CHECK_FIELD(framebus_slot_desc, checksum, 40, 4);
FRAMEBUS_CHECK_FIELD(framebus_slot_desc, frame_flags, 44, 4);
FRAMEBUS_CHECK_FIELD(framebus_slot_desc, user_meta_len, 48, 4);
FRAMEBUS_CHECK_FIELD(framebus_slot_desc, reserved_52, 52, 12);
FRAMEBUS_CHECK_FIELD(framebus_slot_desc, user_meta, 64, 64);

FRAMEBUS_STATIC_ASSERT(sizeof(framebus_consumer_entry) == FRAMEBUS_CONSUMER_ENTRY_SIZE,
		       "consumer entry size");
FRAMEBUS_CHECK_FIELD(framebus_consumer_entry, state, 0, 4);
FRAMEBUS_CHECK_FIELD(framebus_consumer_entry, pid, 4, 4);
FRAMEBUS_CHECK_FIELD(framebus_consumer_entry, sem, 8, 4);
FRAMEBUS_CHECK_FIELD(framebus_consumer_entry, waiters, 12, 4);
FRAMEBUS_CHECK_FIELD(framebus_consumer_entry, token, 16, 8);
FRAMEBUS_CHECK_FIELD(framebus_consumer_entry, last_seq, 24, 8);
FRAMEBUS_CHECK_FIELD(framebus_consumer_entry, delivered, 32, 8);
FRAMEBUS_CHECK_FIELD(framebus_consumer_entry, dropped, 40, 8);
FRAMEBUS_CHECK_FIELD(framebus_consumer_entry, heartbeat_ns, 48, 8);
FRAMEBUS_CHECK_FIELD(framebus_consumer_entry, torn_retries, 56, 8);
FRAMEBUS_CHECK_FIELD(framebus_consumer_entry, pidns, 64, 8);
FRAMEBUS_CHECK_FIELD(framebus_consumer_entry, hold_mask, 72, 4);
FRAMEBUS_CHECK_FIELD(framebus_consumer_entry, reserved_76, 76, 4);
FRAMEBUS_CHECK_FIELD(framebus_consumer_entry, holds_granted, 80, 8);
FRAMEBUS_CHECK_FIELD(framebus_consumer_entry, holds_refused, 88, 8);
FRAMEBUS_CHECK_FIELD(framebus_consumer_entry, holds_taken_back, 96, 8);
FRAMEBUS_CHECK_FIELD(framebus_consumer_entry, reserved_104, 104, 24);

FRAMEBUS_STATIC_ASSERT(FRAMEBUS_MAGIC == FRAMEBUS_FOURCC('F', 'B', 'U', 'S'), "magic bytes");
FRAMEBUS_STATIC_ASSERT(FRAMEBUS_MAX_SLOTS <= FRAMEBUS_HOLD_PENDING_SHIFT &&
			       FRAMEBUS_HOLD_PENDING_SHIFT + FRAMEBUS_MAX_SLOTS <= 32,
		       "hold_mask: slot bits, then their pending bits");

#undef FRAMEBUS_CHECK_FIELD

#endif /* FRAMEBUS_H */
