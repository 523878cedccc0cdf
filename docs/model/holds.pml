/*
 * framebus PROTOCOL.md amendment 10: holds (frames a consumer keeps).
 * One producer publishes frames 1..F into NS slots with FLAG_HOLDS (choice of
 * the back slot C1-C4); NC consumers read the newest frame under the sequence
 * lock (section 5 with amendment 9's header check), and may try a hold of the
 * frame they have just delivered (grant G1-G5), keep it while they go on
 * reading, re-validate it and release it.
 *
 * Memory model: sequential consistency. Every access to a shared word is its
 * own step (a read-modify-write of hold_mask is one atomic step, as the text's
 * atomic |= and &= are); atomic{} only glues a shared access to the local work
 * that follows it. No wakes: consumers poll (sections 4/5's wake is checked in
 * framebus.pml). Entry states change only by the producer's reclaim here (no
 * joiners, no Close), so the producer tests `state == 2` together with its mask
 * read, and a consumer's G3 reads each entry's state with its mask.
 *
 * hold_mask is a byte: bits 0..NS-1 = held slots; HOLD_PENDING (bit 31 in the
 * text) is bit 7. With FIX_PEND_SLOT bits 4..4+NS-1 are per-slot pending bits.
 *
 * Switches (spin -DNAME):
 *   NS=<3|4>       slots (default 3); the cap is NS - 2
 *   F=<k>          frames (default 4)
 *   NC=<2|3>       consumers (default 2)
 *   HMAX=<k>       hold attempts per consumer in all (default 2); a consumer
 *                  may hold up to 2 slots at once (so it may start a grant
 *                  while it holds a slot, as the text allows)
 *   ONE_HOLD       a consumer starts a grant only while it holds nothing
 *   FIX_PEND_SLOT  proposed fix: a pending grant marks its slot, not the entry:
 *                  G1 sets pending bit 4+s, G4 moves it to bit s in one atomic
 *                  RMW; the producer's `held` is bits 0..NS-1 of every entry,
 *                  `pending` bits 4..4+NS-1
 *   FIX_RESCAN     proposed fix: when C2 finds no slot (C1's scan is not a
 *                  snapshot: a hold released in an entry already read and one
 *                  granted in an entry read later add up past the cap), forget
 *                  the slots C4 excluded and go to C1 again (counted among the
 *                  N retries)
 *   RESCAN_UNBOUNDED with FIX_RESCAN: no bound on the rescans and back-offs (P2
 *                  not asserted; the model's consumers make finitely many
 *                  grants, so the loop ends): checks P1 and P3 with releases
 *   NO_RELEASE     holders keep their holds to the end (no release): the
 *                  scan of C1 then sees no hold go away while it runs
 *   SNAP           idealisation: C1 and C4 read all the masks in one step (a
 *                  snapshot), to check P2 apart from the scan's tearing
 *   DIE            a killer may kill one consumer at any step; the producer
 *                  reclaims its entry (CAS state 2 -> 0, then hold_mask = 0)
 *   MUT_NO_G5      consumer skips G5 (the re-check after clearing pending)
 *   MUT_NO_C4      producer skips C4 (re-reading the masks after lock odd)
 *   MUT_NO_G3      consumer skips the cap recount
 *   MUT_PENDING_AS_HELD producer counts pending bits as held, no fallback
 *   VALID_STRICT   a holder's re-validation (Valid(): lock == l1) fails on the
 *                  odd lock of a C3 that C4 then undoes; by default a holder
 *                  that reads l1 + 1 waits for the lock to change and then
 *                  asserts it is l1 again (no data was written)
 *
 * Properties (assert):
 *   P1  the producer never stores a descriptor or data word of slot s while a
 *       live consumer's grant of s has passed G5 (granted[c] bit s)
 *   P2  C2 always finds a slot that is not active and not held, and C4 backs
 *       off fewer than NS times: the take-back path is never needed
 *   P2a finished grants never cover more than the cap (CAP) slots at once
 *   P3  no torn frame is delivered; a held frame's descriptor and data still
 *       equal its frame_seq at release, and it re-validates (lock == l1, after
 *       waiting out a C3 mark that C4 undoes unless VALID_STRICT)
 *   P4  (DIE) at the end every dead consumer's entry is reclaimed with
 *       hold_mask 0, and the producer has published all F frames
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
#define PEND 128
#define PB(i) (16 << (i))          /* FIX_PEND_SLOT: grant in progress on slot i */
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
bool dead[NC];
byte lastseq[NC];
bool pdone = false;

#define liveGranted(s) ((granted[0] & BIT(s)) || (granted[1] & BIT(s)) || \
                        (NC > 2 && (granted[NC-1] & BIT(s))))
#define POP(u) (((u) & 1) + (((u) >> 1) & 1) + (((u) >> 2) & 1) + (((u) >> 3) & 1))

/* classify one entry's mask into held / pend (C1, C4) */
inline classify(m) {
#ifdef FIX_PEND_SLOT
  held = held | (m & ALL);
  pend = pend | ((m >> 4) & ALL)
#else
  if
  :: (m & PEND) -> pend = pend | (m & ALL)
  :: else -> held = held | (m & ALL)
  fi
#endif
}

inline scan() {
  held = 0; pend = 0; c = 0;
#ifdef SNAP
  atomic {
#endif
  do
  :: c < NC ->
     atomic { if :: estate[c] == 2 -> m = hmask[c]; classify(m) :: else -> skip fi;
              c++; m = 0 }
  :: else -> break
  od
#ifdef SNAP
  }
#endif
}

inline reclaim(k) {
  estate[k] = 0;                                /* CAS 2 -> 0 (lock free: dead) */
  hmask[k] = 0                                  /* then clear its hold_mask     */
}

active proctype Producer() {
  byte seq = 0, s, i, c, m, held, pend, avoid, tries, cand;
  do
  :: seq < F ->
     seq++; avoid = 0; tries = 0;
choose:
     scan();                                               /* C1              */
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
     :: else -> skip
     fi;
     lock[s]++;                                            /* C3: odd         */
#ifndef MUT_NO_C4
     scan();                                               /* C4              */
     if
     :: (held & BIT(s)) ->
        lock[s]--;                     /* back to its even value, no data     */
        atomic { avoid = avoid | BIT(s); tries++;
#ifndef RESCAN_UNBOUNDED
                 assert(tries < NS);   /* P2: N back-offs at most, no take-back */
#endif
                 held = 0; pend = 0; s = 0 };
        goto choose
     :: else -> skip
     fi;
#endif
     atomic { assert(!liveGranted(s)); fseq[s] = seq };   /* P1 at each store */
     atomic { assert(!liveGranted(s)); da[s] = seq };
     atomic { assert(!liveGranted(s)); db[s] = seq };
     lock[s]++;                                            /* even: committed */
     g_last = seq;                                         /* last_seq        */
     atomic { act = s; s = 0; held = 0; pend = 0; avoid = 0; tries = 0 }
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
#ifdef FIX_PEND_SLOT
     hmask[c] = hmask[c] | PB(s);                         /* G1             */
#else
     hmask[c] = hmask[c] | BIT(s) | PEND;                 /* G1             */
#endif
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
#ifdef FIX_PEND_SLOT
     hmask[c] = (hmask[c] & ~PB(s)) | BIT(s);             /* G4, one RMW    */
#else
     hmask[c] = hmask[c] & ~PEND;                         /* G4             */
#endif
#ifndef MUT_NO_G5
     if                                                   /* G5             */
     :: lock[s] != l1 -> goto withdraw
     :: else -> skip
     fi;
#endif
     atomic { granted[c] = granted[c] | BIT(s);           /* granted        */
              assert(POP(granted[0] | granted[1] | granted[NC-1]) <= CAP); /* P2a */
              mine = mine | BIT(s); hl[s] = l1; hf[s] = fs;
              s = 0; l1 = 0; fs = 0; bad = false };
     goto next;
withdraw:
#ifdef FIX_PEND_SLOT
     hmask[c] = hmask[c] & ~(BIT(s) | PB(s));             /* refused        */
#else
     hmask[c] = hmask[c] & ~(BIT(s) | PEND);              /* refused        */
#endif
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
     assert(fseq[s] == hf[s]);                            /* P3: held frame */
     assert(da[s] == hf[s]);                              /*  unchanged     */
     assert(db[s] == hf[s]);
     atomic { k = lock[s];                                /* re-validate:   */
       if                                                 /* Valid()        */
       :: k == hl[s] -> skip
#ifndef VALID_STRICT
       :: k == hl[s] + 1 -> k = 0; goto revalidate        /* C3 mark: wait  */
#endif
       :: else -> assert(false)                           /* P3: not valid  */
       fi; k = 0 };
     goto release;
revalidate:
     atomic { lock[s] != hl[s] + 1 ->                     /* C4 restores it */
              assert(lock[s] == hl[s]) };                 /* or P1 failed   */
release:
     atomic { hmask[c] = hmask[c] & ~BIT(s);              /* release        */
              granted[c] = granted[c] & ~BIT(s);
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
