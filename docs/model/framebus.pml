/*
 * framebus PROTOCOL.md v1, sections 4 (commit) and 5 (wait + read).
 * One producer publishes frames 1..N into 2 slots; two consumers.
 *
 * Memory model: sequential consistency (Promela interleaving of single
 * statements). Weak memory (arm64 fences, acquire/release vs seq_cst for the
 * sem/waiters handshake) is OUT OF SCOPE.
 *
 * Every access to a shared word is its own step. atomic{} is used only for
 * (a) real single atomic operations (swap, the kernel's compare-and-enqueue,
 * the kernel's wake), and (b) to glue a shared read to the purely local work
 * that follows it (tests, and the consumer's private counters, which no other
 * protocol party reads) -- this does not remove any protocol interleaving.
 *
 * Compile-time switches (spin -DNAME):
 *   N=<k>              frames to publish (default 5)
 *   MAXSPUR=<k>        spurious futex wakeups allowed in total (default 1)
 *   FIX_MONO           proposed fix: step 4 treats frame_seq <= last_seq as "nothing new"
 *   NOMONO             drop the strict-increase assertion (to see what else breaks)
 *   MUT_NO_L2          mutation (a): consumer skips the l2 re-check
 *   MUT_LATE_WAITERS   mutation (b1): consumer does waiters += 1 only after the futex wait
 *   MUT_EARLY_READ     mutation (b2): producer reads waiters before sem += 1
 *   LIVE               add the LTL liveness property p2 (run ./pan -a -f)
 *   SHARED_WAKE        amendment 7: both consumers wait on the shared wake word
 *                      (header wake_seq/wake_waiters), the producer bumps it and
 *                      wakes it once per commit, before the per-entry wakes
 *   MIXED              with SHARED_WAKE: consumer 0 keeps the per-entry semaphore
 *                      (a reader that does not know the flag), consumer 1 shares
 *   MUT_SW_LATE_V      mutation: consumer reads wake_seq after its pending check
 *   MUT_SW_LATE_WAITERS mutation: consumer does wake_waiters += 1 only after the wait
 *   MUT_SW_NO_PENDING  mutation: consumer sleeps without re-checking the active slot
 *   HDR_SEQ            amendment 9 (forged words refused): a reader takes a frame only when its frame_seq is
 *                      not newer than the header's last_seq, loaded after the frame
 *                      (a frame the producer has committed but not yet flipped is
 *                      "nothing new"; its flip and wake follow); pending() likewise
 *   MUT_HDR_SEQ_NO_PENDING with HDR_SEQ, pending() keeps the old test (fs > lastseq
 *                      only). Safe, and the checker agrees (DIE4, -DNP): pending()
 *                      reads act afresh each time, and an unflipped frame is only ever
 *                      seen through a stale act, so the consumer cannot loop on it.
 *                      The code keeps the test in pending() against forged words.
 *   DIE4               the producer may die between steps 4 and 5 of a frame (after
 *                      frame 1): with -DNP (./pan -l) every cycle must pass the
 *                      producer's progress label, so a consumer that loops without
 *                      sleeping on a dead producer's unflipped frame is found
 *   FORGE              amendment 11 (wake words heal): a forger stores FVAL (0, or 255 with FORGE_MAX:
 *                      2^32-1, byte arithmetic wraps) once, at any moment, into a
 *                      waiters word (gwaiters for a shared-word consumer, waiters[c]
 *                      otherwise); a sleeper's FUTEX_WAIT may time out (a spurious
 *                      timeout at most TMAX times per consumer, and always when it
 *                      has missed a wake); the repair as written: per-entry
 *                      waiters = 1 before the wait and = 0 after it; a shared-word
 *                      consumer that timed out with wseq != v adds 1 once more.
 *                      missed[c] counts timeouts where the producer committed
 *                      since v (sem[c] != 0) and is not between its bump and its
 *                      wake decision; assert missed[c] <= MISSMAX (default 1)
 *   MUT_NO_REPAIR      with FORGE: ++/-- as before, no extra += 1
 *   (reading wake_waiters before wake_seq += 1 is safe under SC: the Dekker pair
 *   is the flip of act against wake_waiters; the checker agrees, 68M states)
 */
#ifndef N
#define N 5
#endif
#ifndef MAXSPUR
#define MAXSPUR 1
#endif
#ifndef TMAX
#define TMAX 1
#endif
#ifndef MISSMAX
#define MISSMAX 1
#endif
#ifdef FORGE_MAX
#define FVAL 255
#else
#define FVAL 0
#endif
#ifdef FORGE
#define FG(x) x
#else
#define FG(x) skip
#endif
#if defined(FORGE) && !defined(MUT_NO_REPAIR)
#define REPAIR 1
#endif

/* control block + slot descriptors ("active" is a Promela keyword: act) */
byte act = 0;             /* index of the slot with the newest committed frame */
byte g_last = 0;          /* control block last_seq                            */
byte lock[2];             /* per-slot seqlock: odd = being written             */
byte fseq[2];             /* slot frame_seq                                    */
byte da[2];               /* frame data, first half  (must equal frame_seq)    */
byte db[2];               /* frame data, second half (must equal frame_seq)    */
bool pdone = false;       /* producer has done its last wake                   */

/* consumer table entries (both in state "active") */
byte sem[2];              /* futex word                                        */
byte waiters[2];
bool asleep[2];           /* queued on the kernel's futex queue for sem[c]     */
byte spur = 0;            /* spurious wakeups used so far (<= MAXSPUR)         */
byte lastseq[2];
byte delivered[2];
byte dropped[2];

/* amendment 7: the shared wake word in the header */
byte wseq = 0;            /* wake_seq: += 1 per commit, the futex word         */
byte gwaiters = 0;        /* wake_waiters: consumers about to sleep on wseq    */
bool gasleep[2];          /* consumer c queued on the futex queue for wseq     */
#ifdef FORGE
bool gpw = false;         /* ghost: producer between wseq++ and its wake       */
bool pwc[2];              /* ghost: producer between sem[c]++ and its wake     */
byte missed[2];           /* ghost: wakes missed (see FORGE)                   */
byte tmo[2];              /* spurious timeouts used                            */
#endif
#ifdef SHARED_WAKE
#ifdef MIXED
#define SHARED(c) (c == 1)
#else
#define SHARED(c) true
#endif
#else
#define SHARED(c) false
#endif

/* section 4 step 6 for one consumer entry */
inline wake(c) {
#ifdef MUT_EARLY_READ
  w = waiters[c];
  sem[c]++;
#else
  atomic { sem[c]++; FG(pwc[c] = true) }      /* atomic add               */
  atomic { w = waiters[c]; FG(if :: w == 0 -> pwc[c] = false :: else -> skip fi) }
#endif
  if
  :: w != 0 ->
     atomic { w = 0;                          /* FUTEX_WAKE(&sem[c]):     */
              if :: asleep[c] -> asleep[c] = false   /* wakes whoever is  */
                 :: else -> skip fi;                 /* queued right now  */
              FG(pwc[c] = false) }
  :: else -> skip                             /* no syscall               */
  fi
}

active proctype Producer() {
  byte seq = 0, s, w;
  do
  :: atomic { seq < N -> seq++; s = (act + 1) % 2 }   /* 1: back buffer     */
     lock[s]++;                                       /* 2: odd             */
     fseq[s] = seq;                                   /* 3: descriptor and  */
     da[s] = seq;                                     /*    data, separate  */
     db[s] = seq;                                     /*    stores          */
     lock[s]++;                                       /* 4: even            */
#ifdef DIE4
     if                                               /* killed here: the   */
     :: seq > 1 -> goto dead                          /* frame is committed */
     :: skip                                          /* but never flipped  */
     fi;
progress_p:
#endif
     g_last = seq;                                    /* 5: last_seq, flip  */
     act = s;
#ifdef SHARED_WAKE
     atomic { wseq++; FG(gpw = true) }                /* 6a: atomic add     */
     atomic { w = gwaiters; FG(if :: w == 0 -> gpw = false :: else -> skip fi) }
     if
     :: w != 0 ->
        atomic { w = 0;                               /* FUTEX_WAKE(&wseq,  */
                 gasleep[0] = false;                  /*   INT_MAX)         */
                 gasleep[1] = false; FG(gpw = false) }
     :: else -> skip
     fi;
#endif
     wake(0);                                         /* 6                  */
     wake(1)
  :: else -> break
  od;
  pdone = true;
#ifdef DIE4
dead:
  skip
#endif
}

proctype Consumer(byte c) {
  byte s, l1, fs, v, hs;
  bool tmd;            /* FORGE: this wait timed out */
  bool bad;            /* data halves read so far disagree with frame_seq */
  do
  :: SHARED(c) ->
     /* ---- waiting on the shared word (amendment 7) ---- */
#ifndef MUT_SW_LATE_V
     v = wseq;
#endif
#ifndef MUT_SW_LATE_WAITERS
     gwaiters++;
#endif
#ifndef MUT_SW_NO_PENDING
     s = act;                                 /* pending(): is the active  */
     fs = fseq[s];                            /* slot's frame new?         */
#if defined(HDR_SEQ) && !defined(MUT_HDR_SEQ_NO_PENDING)
     hs = g_last;                             /* and not newer than last_seq */
     if :: fs > hs -> fs = 0 :: else -> skip fi;
#endif
#endif
#ifdef MUT_SW_LATE_V
     v = wseq;
#endif
     if
     :: fs > lastseq[c] -> skip               /* yes: go and read it       */
     :: else ->
        /* FUTEX_WAIT(&wseq, v): compare and enqueue atomically */
        atomic { if :: wseq == v -> gasleep[c] = true :: else -> skip fi };
end_gsleep:
        if
        :: !gasleep[c]                                   /* woken, or EAGAIN */
        :: atomic { gasleep[c] && spur < MAXSPUR ->      /* spurious wakeup  */
                    spur++; gasleep[c] = false }
#ifdef FORGE
        :: atomic { gasleep[c] &&                        /* timeout          */
                    ((wseq != v && !gpw) || tmo[c] < TMAX) ->
                    if
                    :: wseq != v && !gpw ->              /* a missed wake    */
                       missed[c]++; assert(missed[c] <= MISSMAX)
                    :: else -> tmo[c]++
                    fi;
                    gasleep[c] = false; tmd = true }
#endif
        fi
     fi;
#ifdef MUT_SW_LATE_WAITERS
     gwaiters++;
#endif
     gwaiters--;
#ifdef REPAIR
     if                                       /* amendment 11: timed out  */
     :: atomic { tmd && wseq != v -> tmd = false } ->  /* past v: count   */
        gwaiters++                                     /* again, for good */
     :: else -> skip
     fi;
#endif
#ifdef FORGE
     tmd = false;
#endif
     s = 0; fs = 0; v = 0; hs = 0;
     goto reading
  :: !SHARED(c) ->
     /* ---- waiting (section 5) ---- */
     do
     :: if                                    /* n = swap(sem, 0)          */
        :: atomic { sem[c] != 0 -> sem[c] = 0 }; break    /* n > 0: return */
        :: else -> skip                       /* n == 0 (swap 0 over 0)    */
        fi;
#ifndef MUT_LATE_WAITERS
#ifdef REPAIR
        waiters[c] = 1;                       /* amendment 11: one owner  */
#else
        waiters[c]++;
#endif
#endif
        /* FUTEX_WAIT(&sem, 0): the kernel compares and enqueues atomically.
           The heartbeat timeout is deliberately left out: it would turn a
           lost wakeup into a one-interval delay and hide it. */
        atomic { if :: sem[c] == 0 -> asleep[c] = true :: else -> skip fi };
end_sleep:
        if
        :: !asleep[c]                                    /* woken, or EAGAIN */
        :: atomic { asleep[c] && spur < MAXSPUR ->       /* spurious wakeup  */
                    spur++; asleep[c] = false }
#ifdef FORGE
        :: atomic { asleep[c] &&                         /* timeout          */
                    ((sem[c] != 0 && !pwc[c]) || tmo[c] < TMAX) ->
                    if
                    :: sem[c] != 0 && !pwc[c] ->         /* a missed wake    */
                       missed[c]++; assert(missed[c] <= MISSMAX)
                    :: else -> tmo[c]++
                    fi;
                    asleep[c] = false }
#endif
        fi;
#ifdef MUT_LATE_WAITERS
        waiters[c]++;
#endif
#ifdef REPAIR
        waiters[c] = 0
#else
        waiters[c]--
#endif
     od;
reading:
     /* ---- reading the newest frame ---- */
retry:
     s = act;                                            /* 1 */
     atomic { l1 = lock[s];
              if :: l1 % 2 == 1 -> l1 = 0; goto retry :: else -> skip fi }
     fs = fseq[s];                                       /* 2 */
     bad = (da[s] != fs);
     bad = bad || (db[s] != fs);
     atomic {
#ifndef MUT_NO_L2
       if                                                /* 3: l2 = lock[s]   */
       :: lock[s] != l1 -> s = 0; l1 = 0; fs = 0; bad = false; goto retry
       :: else -> skip
       fi;
#endif
#ifdef HDR_SEQ
     }
     hs = g_last;                                        /* amendment 9       */
     atomic {
       if
       :: fs > hs -> fs = 0                              /* not flipped yet: nothing new */
       :: else -> skip
       fi;
#endif
       if                                                /* 4 */
#ifdef FIX_MONO
       :: fs <= lastseq[c] -> skip                       /* nothing new       */
#else
       :: fs == lastseq[c] -> skip                       /* nothing new (text as written) */
#endif
       :: else ->
          assert(!bad);                                  /* P1: never torn    */
#ifndef NOMONO
          assert(fs > lastseq[c]);                       /* P3: increasing    */
#endif
          if
          :: fs > lastseq[c] + 1 -> dropped[c] = dropped[c] + fs - lastseq[c] - 1
          :: else -> skip
          fi;
          lastseq[c] = fs;
          delivered[c]++;
          assert(delivered[c] + dropped[c] == lastseq[c])   /* P3: accounting */
       fi;
       s = 0; l1 = 0; fs = 0; bad = false; hs = 0        /* forget locals     */
     }
  od
}

/* P2, safety form: when nothing can move any more (producer done, every
   consumer blocked in FUTEX_WAIT), each consumer holds frame N and no wake
   is pending. */
active proctype Watchdog() {
  timeout ->
#ifdef DIE4
  skip   /* a dead producer: that everyone blocks at all is the point */
#else
  assert(pdone);
  assert(lastseq[0] == N && lastseq[1] == N);
  assert(SHARED(0) || sem[0] == 0);
  assert(SHARED(1) || sem[1] == 0)
#endif
}

#ifdef FORGE
/* amendment 11: one forged store into a waiters word, at any moment */
active proctype Forger() {
  if
  :: SHARED(0) || SHARED(1) -> gwaiters = FVAL
  :: !SHARED(0) -> waiters[0] = FVAL
  :: !SHARED(1) -> waiters[1] = FVAL
  fi
}
#endif

init {
  atomic { run Consumer(0); run Consumer(1) }
}

#ifdef LIVE
/* P2, liveness form: eventually both consumers hold frame N, for good. */
ltl p2 { <>[] (lastseq[0] == N && lastseq[1] == N) }
#endif
