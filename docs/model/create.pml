/*
 * framebus PROTOCOL.md, amendment 8 (creation and liveness across PID namespaces): a generation being created, against a
 * collector (framebus gc, or the next producer cleaning up) that removes
 * abandoned temporary files. Both may be in different PID namespaces, so a
 * pid means nothing to the other: the proof of life is the creator's OFD
 * write lock on byte 0 of its temporary file.
 *
 * The temporary path tmp names a file (0: none). Files are numbered as they
 * are created. lk[f]: who holds the write lock on byte 0 of file f (0 none,
 * 1 the creator, 2 the collector). A killer may kill the creator at any
 * step; the kernel then drops its lock and the file stays where it was.
 * Sequential consistency; each system call is one step.
 *
 * The rule (amendment 8):
 *   creator:   create tmp O_EXCL (an existing file there is collected by the
 *              rule below, then the create is tried again); take the lock on
 *              byte 0; check that tmp still names the file it holds (else
 *              start over); fill; rename tmp over the name (a rename that
 *              finds tmp gone starts over); release the lock.
 *   collector: a file at tmp is abandoned exactly when the collector can
 *              take its lock: it takes it, checks that tmp still names that
 *              file, unlinks it, releases the lock.
 *
 * Properties:
 *   P1 (safety) the collector never removes the file a live creator is
 *      filling: once the creator has passed its check, its rename finds its
 *      own file at tmp.
 *   P2 (safety) the name only ever gets a file its creator filled.
 *   P3 (liveness, -DLIVE) a file whose creator was killed is removed.
 *
 * Mutations (each must make the checker fail):
 *   MUT_BY_PID      the collector decides by a pid it cannot see (another
 *                   PID namespace): it may call any file abandoned (P1), or,
 *                   with PID1 (the creator is pid 1 of its namespace, which
 *                   kill(1, 0) finds alive everywhere), none (P3).
 *   MUT_NO_RECHECK  the creator does not check tmp after taking its lock (P1).
 */
#define NONE 0
#define CREATOR 1
#define COLLECTOR 2
#define MAXF 4

byte tmp = 0;            /* the file tmp names                            */
byte name = 0;           /* the file the bus name names                   */
byte next = 0;           /* files created so far                          */
byte lk[MAXF + 1];       /* lock holder of byte 0 of each file            */
bool filled[MAXF + 1];   /* the creator filled it completely              */
bool alive = true;       /* the creator                                   */
bool killed = false;
byte mine = 0;           /* the file the creator works on                 */
bool checked = false;    /* the creator passed its check on mine          */
bool finished = false;

/* the collector's rule, on file g that tmp named: take its lock (without
 * waiting: a lock held is a live creator, or another collector), check
 * that tmp still names it, unlink it, release the lock. */
inline collect(who, g, got) {
  if
  :: atomic { lk[g] == NONE -> lk[g] = who; got = true }
  :: atomic { lk[g] != NONE -> got = false }
  fi;
  if
  :: got ->
     atomic {
       if
       :: tmp == g ->
          assert(!(alive && checked && mine == g));   /* P1 */
          tmp = 0
       :: else -> skip
       fi
     };
     lk[g] = NONE
  :: else -> skip
  fi
}

proctype Creator() {
  byte g;
  bool got;
  {
    skip;
start:
    if
    :: atomic { next < MAXF && tmp == 0 -> next++; mine = next; tmp = mine }  /* O_EXCL create */
    :: atomic { next >= MAXF -> goto quit }                                   /* bounded retries */
    :: atomic { tmp != 0 && tmp != mine -> g = tmp }  /* EEXIST: an abandoned one? (the rule) */
       collect(CREATOR, g, got);
       goto start
    fi;
    if
    :: atomic { lk[mine] == NONE -> lk[mine] = CREATOR }
    :: atomic { lk[mine] != NONE -> mine = 0; goto start }   /* held by a collector: start over */
    fi;
#ifndef MUT_NO_RECHECK
    if
    :: atomic { tmp == mine -> checked = true }
    :: atomic { tmp != mine -> lk[mine] = NONE; mine = 0; goto start }
    fi;
#else
    checked = true;
#endif
    filled[mine] = true;                            /* fill (pre-fault, header) */
    if
    :: atomic { tmp == mine -> name = mine; tmp = 0 }   /* rename */
    :: atomic { tmp != mine ->
                assert(!checked);                   /* P1: never after the check */
                lk[mine] = NONE; checked = false; mine = 0; goto start }
    fi;
    assert(filled[name]);                           /* P2 */
    lk[mine] = NONE;
    finished = true;
quit:
    skip
  } unless {
    atomic { killed && alive -> alive = false; if :: mine != 0 -> lk[mine] = NONE :: else -> skip fi }
  }
}

active proctype Killer() {
  if
  :: killed = true
  :: skip
  fi
}

active proctype Collector() {
  byte g;
  bool got;
end_gc:
  do
#ifndef MUT_BY_PID
  :: atomic { tmp != 0 -> g = tmp };    /* readdir: a temporary file */
     collect(COLLECTOR, g, got)
#else
  /* kill(pid, 0) in another PID namespace: no answer to trust */
  :: atomic { tmp != 0 ->
       g = tmp;
#ifndef PID1
       assert(!(alive && checked && mine == g));    /* P1 */
       tmp = 0
#endif
     }
#endif
  od
}

init {
  run Creator()
}

#ifdef LIVE
/* P3: once the creator is dead, tmp is eventually empty (the abandoned file
 * removed), under weak fairness. */
ltl p3 { [] ((!alive) -> <> (tmp == 0)) }
#endif
