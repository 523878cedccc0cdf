/*
 * framebus PROTOCOL.md amendment 10: holds (frames a consumer keeps).
 * One producer publishes frames 1..F into NS slots with FLAG_HOLDS (choice of
 * the back slot C1-C4); NC consumers read the newest frame under the sequence
 * lock (section 5 with amendment 9's header check: forged words refused), and may try a hold of the
 * frame they have just delivered (grant G1-G5), keep it while they go on
 * reading, re-validate it and release it.
 *
 * Memory model: sequential consistency. Every access to a shared word is its
 * own step (a read-modify-write of hold_mask is one atomic step, as the text's
 * atomic |= and &= are); atomic{} only glues a shared access to the local work
 * (and ghost bookkeeping) that follows it. No wakes: consumers poll (sections
 * 4/5's wake is checked in framebus.pml). Entry states change only by the
 * producer's reclaim here (no joiners, no Close), so the producer tests
 * `state == 2` together with its mask read, and a consumer's G3 reads each
 * entry's state with its mask.
 *
 * hold_mask is a byte: bits 0..NS-1 = held slots (bits 0-7 in the text);
 * PB(i) = bit 4+i is HOLD_PENDING(i) (bit 8+i in the text).
 *
 * The default (no switch) is the amendment as now written:
 *   G1 hold_mask |= bit(s) | PB(s); G2 lock re-check; G3 count the distinct
 *   slot bits 0..N-1 of every entry in state 2 (pending included); G4
 *   hold_mask &= ~PB(s); G5 lock re-check (glued to the ghost `granted`).
 *   C1 held = slot bits whose pending bit is clear, pending = those whose
 *   pending bit is set (a pending bit without its slot bit is ignored); C2 the
 *   first of act+1.. in neither set, else the first not held, leaving out the
 *   slots C4 backed off from; C3 lock odd; C4 re-read: if s is now held, store
 *   lock back, leave s out, go to C1; when C2 finds no slot, forget the
 *   left-out slots and go to C1. At most 2*NS scans (C1s); then a take-back:
 *   the first non-active slot act+1 gets C3 (lock odd), its bit is cleared in
 *   every entry holding it (one atomic RMW per entry), then it is written.
 *   A holder re-validating reads lock: == l1 valid; == l1+1 (a C3 mark) it
 *   reads again until lock != l1+1 (the amendment's "reads it again for a
 *   short, bounded time": the model waits, C4 stores l1 back or the writer
 *   commits); anything else: taken back.
 *
 * Switches (spin -DNAME):
 *   NS=<3|4>       slots (default 3); the cap is NS - 2
 *   F=<k>          frames (default 4)
 *   NC=<2|3>       consumers (default 2)
 *   HMAX=<k>       hold attempts per consumer in all (default 2); a consumer
 *                  may hold up to 2 slots at once (so it may start a grant
 *                  while it holds a slot, as the text allows)
 *   ONE_HOLD       a consumer starts a grant only while it holds nothing
 *   LIT_ONE_PENDING the first text: ONE pending bit per entry (bit 7): G1
 *                  sets bit(s) | PEND, G4 clears PEND; C1 classes all of an
 *                  entry's bits as pending while PEND is set (fails P1)
 *   FIX_PEND_SLOT  the previous session's proposal: G1 sets only PB(s), G4
 *                  moves it to bit s in one RMW; held = bits 0..NS-1,
 *                  pending = PB bits (superseded by the default)
 *   BOUNDED_NO_FRESH the first text's scan: C4 back-offs are bounded by NS
 *                  (assert tries < NS: P2) and C2 without a slot asserts
 *                  false (P2: a take-back would be needed); with it:
 *     FIX_RESCAN   when C2 finds no slot, forget C4's exclusions and go to C1
 *                  again (counted among the NS retries)
 *     RESCAN_UNBOUNDED no bound on the rescans and back-offs
 *   RESCAN_UNBOUNDED (default scan) never take back: scan until a slot is found
 *   SCANS=<k>      scans before a take-back (default 2 * NS), to reach one
 *   P2_EVERY       assert P2' as the text words it (a change in every scan)
 *   TB_CLEAR_FIRST a take-back clears the bits before its C3 (lock odd)
 *   NO_TB          assert that no take-back ever happens (shows one is
 *                  reachable: expected to fail)
 *   NO_RELEASE     holders keep their holds to the end (no release)
 *   SNAP           idealisation: C1 and C4 read all the masks in one step
 *   DIE            a killer may kill one consumer at any step; the producer
 *                  reclaims its entry (CAS state 2 -> 0, then hold_mask = 0)
 *   MUT_NO_G5      consumer skips G5 (the re-check after clearing pending)
 *   MUT_NO_C4      producer skips C4 (re-reading the masks after lock odd)
 *   MUT_NO_G3      consumer skips the cap recount
 *   MUT_PENDING_AS_HELD producer counts pending bits as held, no fallback
 *   VALID_STRICT   a holder's re-validation gives up at once on lock == l1+1
 *                  and reports "taken back": fails (a false take-back) when
 *                  the odd lock was a C3 that C4 then undoes
 *
 * Properties (assert):
 *   P1  the producer never stores a descriptor or data word of slot s while a
 *       live consumer's grant of s has passed G5 and was not taken back
 *       (ghost granted[c] bit s)
 *   P2  (BOUNDED_NO_FRESH only) the bounded scan always finds a slot
 *   P2' a take-back happens only when consumers change their hold_masks
 *       (G1, G4, a withdrawal or a release) while the producer scans; a
 *       scan's interval runs from its C1 to the next C1 (the last one to the
 *       take-back); chg is a ghost set by every such change. Default: no two
 *       scans in a row are change-free (a change-free scan can fail only on
 *       the slots the previous scan's C4 left out, and the fresh scan after
 *       it finds a slot if nothing changes). P2_EVERY: the text's claim, a
 *       change during every one of the scans (fails, SCANS=2 or 3)
 *   P2a finished grants never cover more than the cap (CAP) slots at once
 *   P3  no torn frame is delivered; a held frame's descriptor and data still
 *       equal its frame_seq at release unless taken back (ghost tb[c]);
 *       re-validation says valid iff it was not taken back (no false valid,
 *       no false "taken back")
 *   P4  (DIE) at the end every dead consumer's entry is reclaimed with
 *       hold_mask 0, and the producer has published all F frames (it never
 *       blocks)
 */
#ifndef NS
#define NS 3
#endif
#ifndef F
#define F 4
#endif
#ifndef NC
#define NC 2
#endif
#ifndef HMAX
#define HMAX 2
#endif
#define CAP (NS - 2)
#define ALL ((1 << NS) - 1)
#define BIT(i) (1 << (i))
#define PEND 128                   /* LIT_ONE_PENDING: the entry's pending bit */
#define PB(i) (16 << (i))          /* HOLD_PENDING(i)                          */
#ifndef SCANS
#define SCANS (2 * NS)             /* scans before a take-back                 */
#endif
#define NONE 255
#ifdef NO_RELEASE
#define RELEASE false
#else
#define RELEASE true
#endif
#ifdef ONE_HOLD
#define ONEOK (mine == 0)
#else
#define ONEOK true
#endif

byte act = 0;              /* the active slot; slot 0 holds frame 0 at start */
byte g_last = 0;           /* header last_seq                                */
byte lock[NS];
byte fseq[NS];
byte da[NS];               /* data, two halves, must equal frame_seq         */
byte db[NS];
byte estate[NC];           /* entry state: 2 active, 0 free (reclaimed)      */
byte hmask[NC];            /* hold_mask                                      */
byte granted[NC];          /* ghost: bit s while c's grant of s is finished  */
byte tb[NC];               /* ghost: bit s when c's hold of s was taken back */
bool chg = false;          /* ghost: a consumer changed its hold_mask        */
byte ntb = 0;              /* ghost: take-backs                              */
bool dead[NC];
byte lastseq[NC];
bool pdone = false;

#define liveGranted(s) ((granted[0] & BIT(s)) || (granted[1] & BIT(s)) || \
                        (NC > 2 && (granted[NC-1] & BIT(s))))
#define POP(u) (((u) & 1) + (((u) >> 1) & 1) + (((u) >> 2) & 1) + (((u) >> 3) & 1))

/* classify one entry's mask into held / pend (C1, C4) */
inline classify(m) {
#if defined(LIT_ONE_PENDING)
  if
  :: (m & PEND) -> pend = pend | (m & ALL)
  :: else -> held = held | (m & ALL)
  fi
#elif defined(FIX_PEND_SLOT)
  held = held | (m & ALL);
  pend = pend | ((m >> 4) & ALL)
#else
  held = held | (m & ALL & ~((m >> 4) & ALL));
  pend = pend | (m & ALL & ((m >> 4) & ALL))
#endif
}

/* first: this is a C1 (a new scan): close the previous scan's interval
   (P2' bookkeeping: was there a consumer mask change in it?) */
inline scan(first) {
  held = 0; pend = 0; c = 0;
#ifdef SNAP
  atomic {
#endif
  do
  :: c < NC ->
     atomic {
#if !defined(BOUNDED_NO_FRESH) && !defined(RESCAN_UNBOUNDED)
       if
       :: first && c == 0 ->
          if :: tries > 0 -> p2scan() :: else -> skip fi;
          chg = false
       :: else -> skip
       fi;
#endif
       if :: estate[c] == 2 -> m = hmask[c]; classify(m) :: else -> skip fi;
       c++; m = 0 }
  :: else -> break
  od
#ifdef SNAP
  }
#endif
}

/* P2' bookkeeping at the end of a scan's interval: quiet counts the
   change-free scans, q2 the change-free scans right after a change-free one */
inline p2scan() {
  if
  :: !chg -> quiet++; if :: pq -> q2++ :: else -> skip fi; pq = true
  :: else -> pq = false
  fi
}

inline reclaim(k) {
  estate[k] = 0;                                /* CAS 2 -> 0 (lock free: dead) */
  hmask[k] = 0                                  /* then clear its hold_mask     */
}

/* take-back of slot s in entry k: one atomic fetch_and */
inline takeback(k) {
  atomic {
    if
    :: (hmask[k] & BIT(s)) ->
       hmask[k] = hmask[k] & ~BIT(s);
       if :: (granted[k] & BIT(s)) -> granted[k] = granted[k] & ~BIT(s);
                                      tb[k] = tb[k] | BIT(s)
          :: else -> skip fi
    :: else -> skip
    fi }
}

active proctype Producer() {
  byte seq = 0, s, i, c, m, held, pend, avoid, tries, cand, quiet, q2;
  bool pq;
  do
  :: seq < F ->
     seq++; avoid = 0; tries = 0; quiet = 0; q2 = 0; pq = false;
choose:
     scan(true);                                           /* C1              */
     atomic {                                              /* C2 (local)      */
       s = NONE; i = 1;
       do
       :: i < NS ->
          cand = (act + i) % NS;
          if :: s == NONE && !((avoid | held | pend) & BIT(cand)) -> s = cand
             :: else -> skip fi;
          i++
       :: else -> break
       od;
#ifndef MUT_PENDING_AS_HELD
       i = 1;
       do
       :: i < NS ->
          cand = (act + i) % NS;
          if :: s == NONE && !((avoid | held) & BIT(cand)) -> s = cand
             :: else -> skip fi;
          i++
       :: else -> break
       od;
#endif
       i = 0; cand = 0
     };
     if
     :: s == NONE ->
#ifdef BOUNDED_NO_FRESH
#ifdef FIX_RESCAN
        atomic { tries++;
#ifndef RESCAN_UNBOUNDED
                 assert(tries < NS);   /* P2: N scans at most                 */
#endif
                 avoid = 0; held = 0; pend = 0 };
        goto choose                    /* scan afresh, forget C4's exclusions */
#else
        assert(false)                  /* P2: would have to take back        */
#endif
#else
        atomic { tries++; avoid = 0; held = 0; pend = 0;  /* forget, afresh  */
#ifndef RESCAN_UNBOUNDED
                 if :: tries >= SCANS -> goto tback :: else -> skip fi
#endif
        };
        goto choose
#endif
     :: else -> skip
     fi;
     lock[s]++;                                            /* C3: odd         */
#ifndef MUT_NO_C4
     scan(false);                                          /* C4              */
     if
     :: (held & BIT(s)) ->
        lock[s]--;                     /* back to its even value, no data     */
        atomic { avoid = avoid | BIT(s); tries++;
#ifdef BOUNDED_NO_FRESH
#ifndef RESCAN_UNBOUNDED
                 assert(tries < NS);   /* P2: N back-offs at most, no take-back */
#endif
#else
#ifndef RESCAN_UNBOUNDED
                 if :: tries >= SCANS -> held = 0; pend = 0; goto tback
                    :: else -> skip fi;
#endif
#endif
                 held = 0; pend = 0; s = 0 };
        goto choose
     :: else -> skip
     fi;
#endif
     goto write;
tback:                                 /* 2N scans found no slot: take back  */
     atomic {
#ifdef NO_TB
       assert(false);                  /* a take-back is reachable           */
#endif
       p2scan();                       /* the last scan's interval           */
#ifdef P2_EVERY
       assert(quiet == 0);             /* P2' as written: a change in every scan */
#else
       assert(q2 == 0);                /* P2': no two change-free scans in a row */
#endif
       ntb++; s = (act + 1) % NS; avoid = 0 };
#ifndef TB_CLEAR_FIRST
     lock[s]++;                                            /* C3: odd         */
#endif
     i = 0;
     do
     :: i < NC -> takeback(i); i++
     :: else -> i = 0; break
     od;
#ifdef TB_CLEAR_FIRST
     lock[s]++;                                            /* C3 after clearing */
#endif
write:
     atomic { assert(!liveGranted(s)); fseq[s] = seq };   /* P1 at each store */
     atomic { assert(!liveGranted(s)); da[s] = seq };
     atomic { assert(!liveGranted(s)); db[s] = seq };
     lock[s]++;                                            /* even: committed */
     g_last = seq;                                         /* last_seq        */
     atomic { act = s; s = 0; held = 0; pend = 0; avoid = 0; tries = 0; quiet = 0; q2 = 0; pq = false }
#ifdef DIE
  :: dead[0] && estate[0] == 2 -> reclaim(0)             /* heartbeat scan: entry lock free     */
  :: dead[1] && estate[1] == 2 -> reclaim(1)
#if NC > 2
  :: dead[2] && estate[2] == 2 -> reclaim(2)
#endif
#endif
  :: else -> break
  od;
  pdone = true;
#ifdef DIE
end_idle:                              /* later scans reclaim later deaths    */
  do
  :: dead[0] && estate[0] == 2 -> reclaim(0)
  :: dead[1] && estate[1] == 2 -> reclaim(1)
#if NC > 2
  :: dead[2] && estate[2] == 2 -> reclaim(2)
#endif
  od
#endif
}

proctype Consumer(byte c) {
  byte s, l1, fs, hs, k, u, mine = 0, nh = 0;
  byte hl[NS], hf[NS];   /* per held slot: its lock value and frame_seq      */
  bool bad;
  {
end_c:
  do
  :: lastseq[c] < F ->
retry:
     s = act;                                            /* 1 */
     atomic { l1 = lock[s];
              if :: l1 % 2 == 1 -> l1 = 0; goto retry :: else -> skip fi }
     fs = fseq[s];                                       /* 2 */
     bad = (da[s] != fs);
     bad = bad || (db[s] != fs);
     atomic {
       if                                                /* 3: l2          */
       :: lock[s] != l1 -> s = 0; l1 = 0; fs = 0; bad = false; goto retry
       :: else -> skip
       fi
     };
     hs = g_last;                                        /* amendment 9    */
     atomic {
       if
       :: fs > hs || fs <= lastseq[c] ->                 /* nothing new    */
          s = 0; l1 = 0; fs = 0; hs = 0; bad = false; goto next
       :: else -> skip
       fi;
       assert(!bad);                                     /* P3: not torn   */
       lastseq[c] = fs; hs = 0
     };
     /* ---- maybe hold it (grant G1-G5) ---- */
     if
     :: nh < HMAX && !(mine & BIT(s)) && ONEOK -> nh++
     :: else -> goto forget
     fi;
     atomic {                                             /* G1             */
#if defined(LIT_ONE_PENDING)
       hmask[c] = hmask[c] | BIT(s) | PEND;
#elif defined(FIX_PEND_SLOT)
       hmask[c] = hmask[c] | PB(s);
#else
       hmask[c] = hmask[c] | BIT(s) | PB(s);
#endif
       chg = true };
     if                                                   /* G2             */
     :: lock[s] != l1 -> goto withdraw
     :: else -> skip
     fi;
#ifndef MUT_NO_G3
     u = 0; k = 0;                                        /* G3             */
     do
     :: k < NC ->
        atomic { if :: estate[k] == 2 ->
#ifdef FIX_PEND_SLOT
                       u = u | (hmask[k] & ALL) | ((hmask[k] >> 4) & ALL)
#else
                       u = u | (hmask[k] & ALL)
#endif
                    :: else -> skip fi; k++ }
     :: else -> break
     od;
     if
     :: POP(u) > CAP -> u = 0; k = 0; goto withdraw       /* refused: cap   */
     :: else -> u = 0; k = 0
     fi;
#endif
     atomic {                                             /* G4             */
#if defined(LIT_ONE_PENDING)
       hmask[c] = hmask[c] & ~PEND;
#elif defined(FIX_PEND_SLOT)
       hmask[c] = (hmask[c] & ~PB(s)) | BIT(s);
#else
       hmask[c] = hmask[c] & ~PB(s);
#endif
       chg = true };
     atomic {
#ifndef MUT_NO_G5
       if                                                 /* G5             */
       :: lock[s] != l1 -> goto withdraw
       :: else -> skip
       fi;
#endif
       granted[c] = granted[c] | BIT(s);                  /* granted        */
       assert(POP(granted[0] | granted[1] | granted[NC-1]) <= CAP); /* P2a */
       mine = mine | BIT(s); hl[s] = l1; hf[s] = fs;
       s = 0; l1 = 0; fs = 0; bad = false };
     goto next;
withdraw:
     atomic {
#if defined(LIT_ONE_PENDING)
       hmask[c] = hmask[c] & ~(BIT(s) | PEND);            /* refused        */
#else
       hmask[c] = hmask[c] & ~(BIT(s) | PB(s));           /* refused        */
#endif
       chg = true };
forget:
     atomic { s = 0; l1 = 0; fs = 0; bad = false };
next:
     skip
  :: mine != 0 && RELEASE ->                             /* use, release   */
     atomic {
       if
       :: (mine & 1) -> s = 0
       :: (mine & 2) -> s = 1
       :: (mine & 4) -> s = 2
       :: (mine & 8) -> s = 3
       fi };
     /* P3: the held frame is whole until released, unless taken back */
     assert(fseq[s] == hf[s] || (tb[c] & BIT(s)));
     assert(da[s] == hf[s] || (tb[c] & BIT(s)));
     assert(db[s] == hf[s] || (tb[c] & BIT(s)));
     atomic { k = lock[s];                                /* re-validate:   */
       if                                                 /* Valid()        */
       :: k == hl[s] ->                                    /* valid: not taken back */
#ifndef TB_CLEAR_FIRST
          assert(!(tb[c] & BIT(s)))
#else
          skip                                            /* (cleared, not yet odd) */
#endif
       :: k == hl[s] + 1 ->
#ifdef VALID_STRICT
          assert(tb[c] & BIT(s))                          /* "taken back"   */
#else
          k = 0; goto revalidate                          /* C3 mark: again */
#endif
       :: else -> assert(tb[c] & BIT(s))                  /* "taken back": really */
       fi; k = 0 };
     goto release;
revalidate:
     atomic { lock[s] != hl[s] + 1 ->                     /* C4 stores l1 back, */
              if                                          /* or a writer commits */
              :: lock[s] == hl[s] ->
#ifndef TB_CLEAR_FIRST
                 assert(!(tb[c] & BIT(s)))
#else
                 skip
#endif
              :: else -> assert(tb[c] & BIT(s))
              fi };
release:
     atomic { hmask[c] = hmask[c] & ~BIT(s);              /* release        */
              chg = true;
              granted[c] = granted[c] & ~BIT(s); tb[c] = tb[c] & ~BIT(s);
              mine = mine & ~BIT(s); hl[s] = 0; hf[s] = 0; s = 0 }
  od
  } unless { dead[c] }
}

#ifdef DIE
active proctype Killer() {
  if
  :: atomic { dead[0] = true; granted[0] = 0 }
  :: atomic { dead[1] = true; granted[1] = 0 }
  :: skip
  fi
}
#endif

/* P4 and the end: when nothing can move, all frames are out, and every dead
   consumer's entry is free with no bits left */
active proctype Watchdog() {
  byte k;
  timeout ->
  assert(pdone);
  do
  :: k < NC -> assert(!dead[k] || (estate[k] == 0 && hmask[k] == 0)); k++
  :: else -> break
  od
}

init {
  byte k;
  atomic {
    do
    :: k < NC -> estate[k] = 2; k++
    :: else -> break
    od;
    k = 0;
    run Consumer(0); run Consumer(1)
#if NC > 2
    ; run Consumer(2)
#endif
  }
}
