#!/bin/sh
# Reruns every check. Needs: spin (apt-get install -y spin), gcc. Output: out/<name>/{pan.out,trail.txt}
cd "$(dirname "$0")"
R=./run.sh
# --- sections 4/5, protocol text as written (N=5) ---
$R lit_safety   framebus.pml ""                 "-DSAFETY -DBFS" ""          # P1-P3 + P2(watchdog)
$R lit_nomono   framebus.pml "-DNOMONO"         "-DSAFETY -DBFS" ""          # what the reorder breaks next
$R lit_live     framebus.pml "-DLIVE"           ""        "-a -A -m1000000"  # P2 as LTL, asserts ignored
# --- with the proposed step-4 fix ---
$R fix_safety   framebus.pml "-DFIX_MONO"       "-DSAFETY" "-m1000000"
$R fix_live     framebus.pml "-DFIX_MONO -DLIVE" ""        "-a -m1000000"
$R fix_spur2_n4 framebus.pml "-DFIX_MONO -DN=4 -DMAXSPUR=2" "-DSAFETY" "-m1000000"
$R fix_safety_n6 framebus.pml "-DFIX_MONO -DN=6" "-DSAFETY -DCOLLAPSE" "-m1000000"
# --- mutations (on top of the fix, so only the mutation can fail) ---
$R mutA_noL2          framebus.pml "-DFIX_MONO -DMUT_NO_L2"        "-DSAFETY -DBFS" ""
$R mutB1_late_waiters framebus.pml "-DFIX_MONO -DMUT_LATE_WAITERS" "-DSAFETY -DBFS" ""
$R mutB1_ltl          framebus.pml "-DFIX_MONO -DMUT_LATE_WAITERS -DLIVE" "" "-a -A -m1000000"
$R mutB2_early_read   framebus.pml "-DFIX_MONO -DMUT_EARLY_READ"   "-DSAFETY -DBFS" ""
$R mutB2_ltl          framebus.pml "-DFIX_MONO -DMUT_EARLY_READ -DLIVE" "" "-a -A -m1000000"
# --- amendment 7.2: the shared wake word (on top of the fix) ---
$R sw_safety          framebus.pml "-DFIX_MONO -DSHARED_WAKE"        "-DSAFETY" "-m1000000"
$R sw_mixed           framebus.pml "-DFIX_MONO -DSHARED_WAKE -DMIXED" "-DSAFETY" "-m1000000"
$R sw_mut_late_v      framebus.pml "-DFIX_MONO -DSHARED_WAKE -DMUT_SW_LATE_V"       "-DSAFETY -DBFS" ""
$R sw_mut_late_waiters framebus.pml "-DFIX_MONO -DSHARED_WAKE -DMUT_SW_LATE_WAITERS" "-DSAFETY -DBFS" ""
$R sw_mut_no_pending  framebus.pml "-DFIX_MONO -DSHARED_WAKE -DMUT_SW_NO_PENDING"   "-DSAFETY -DBFS" ""
# --- section 2: join vs reclaim ---
$R reclaim_lit      reclaim.pml ""           "-DSAFETY -DBFS" ""
$R reclaim_lit_p4b  reclaim.pml "-DONLY_P4B" "-DSAFETY -DBFS" ""
$R reclaim_fix      reclaim.pml "-DFIX"      "-DSAFETY" ""
# --- amendment 8 (creation and liveness across PID namespaces): a creation in progress against a collector, proof of life by lock ---
$R create_safety      create.pml ""                           "-DSAFETY" ""
$R create_live        create.pml "-DLIVE"                     ""         "-a -f"
$R create_mut_recheck create.pml "-DMUT_NO_RECHECK"           "-DSAFETY" ""
$R create_mut_by_pid  create.pml "-DMUT_BY_PID"               "-DSAFETY" ""
$R create_mut_pid1    create.pml "-DMUT_BY_PID -DPID1 -DLIVE" ""         "-a -f"
# --- amendment 9: a frame is taken only when not newer than the header's last_seq ---
$R hs_safety          framebus.pml "-DFIX_MONO -DHDR_SEQ"                      "-DSAFETY" "-m1000000"
$R hs_live            framebus.pml "-DFIX_MONO -DHDR_SEQ -DLIVE -DN=4"         ""         "-a -m1000000"
$R hs_sw_safety       framebus.pml "-DFIX_MONO -DHDR_SEQ -DSHARED_WAKE -DN=4"  "-DSAFETY -DCOLLAPSE" "-m1000000"
$R hs_sw_mixed        framebus.pml "-DFIX_MONO -DHDR_SEQ -DSHARED_WAKE -DMIXED -DN=4" "-DSAFETY -DCOLLAPSE" "-m1000000"
$R hs_sw_die4_np      framebus.pml "-DFIX_MONO -DHDR_SEQ -DSHARED_WAKE -DDIE4 -DN=3" "-DNP" "-l -m1000000"
$R hs_mixed_die4_np   framebus.pml "-DFIX_MONO -DHDR_SEQ -DSHARED_WAKE -DMIXED -DDIE4 -DN=3" "-DNP" "-l -m1000000"
# --- amendment 10: holds (holds.pml, NS=3, F=4, two consumers); the default is the text as now written ---
$R h_safety       holds.pml ""                     "-DSAFETY -DCOLLAPSE" "-m100000"  # passes P1 P2a P3 (no take-back reachable with 2N scans)
$R h_scans2       holds.pml "-DSCANS=2"            "-DSAFETY -DCOLLAPSE" "-m100000"  # passes P1 P2a P3 P2' with take-backs (2 scans)
$R h_scans3       holds.pml "-DSCANS=3"            "-DSAFETY -DCOLLAPSE" "-m100000"  # passes P1 P2a P3 P2' with take-backs (3 scans)
$R h_p2every      holds.pml "-DSCANS=2 -DP2_EVERY" "-DSAFETY" "-m100000"             # FAILS P2' as worded: a change-free scan after a back-off
$R h_tb_clear_first holds.pml "-DSCANS=2 -DTB_CLEAR_FIRST" "-DSAFETY" "-m100000"    # FAILS P2a: a take-back that clears the bits before lock odd
$R h_die          holds.pml "-DDIE -DF=3"          "-DSAFETY -DCOLLAPSE" "-m100000"  # passes P1 P4 (a killed holder)
$R h_ns4          holds.pml "-DNS=4 -DF=3"         "-DSAFETY -DCOLLAPSE" "-m100000"  # passes P1 P2a P3, cap 2
$R h_ns4_f4       holds.pml "-DNS=4"               "-DSAFETY -DBITSTATE" "-w32"     # bitstate (partial): no error
$R h_mut_no_g5    holds.pml "-DMUT_NO_G5"          "-DSAFETY" "-m100000"             # FAILS P1
$R h_mut_no_c4    holds.pml "-DMUT_NO_C4"          "-DSAFETY" "-m100000"             # FAILS P1
$R h_mut_no_g3    holds.pml "-DMUT_NO_G3"          "-DSAFETY" "-m100000"             # FAILS P2a (cap)
$R h_valid_strict holds.pml "-DVALID_STRICT"       "-DSAFETY" "-m100000"             # FAILS P3: false "taken back" on a C4 back-off
# the first text of amendment 10 (trails kept)
$R h_lit          holds.pml "-DLIT_ONE_PENDING -DBOUNDED_NO_FRESH" "-DSAFETY -DBFS" ""            # FAILS P1: one pending bit hides the entry's finished hold
$R h_lit_one      holds.pml "-DONE_HOLD -DLIT_ONE_PENDING -DBOUNDED_NO_FRESH" "-DSAFETY" "-m100000" # FAILS P2: C1's scan is no snapshot
$R h_nofresh      holds.pml "-DBOUNDED_NO_FRESH"   "-DSAFETY" "-m100000"             # FAILS P2: bounded scan without the fresh start
$R h_snap_norel   holds.pml "-DBOUNDED_NO_FRESH -DFIX_PEND_SLOT -DFIX_RESCAN -DSNAP -DNO_RELEASE" "-DSAFETY" "-m100000"  # FAILS P2
# --- amendment 11: wake words heal (framebus.pml -DFORGE, N=3) ---
$R f_pe           framebus.pml "-DFIX_MONO -DHDR_SEQ -DFORGE -DN=3"               "-DSAFETY -DCOLLAPSE" "-m1000000"  # passes, at most 1 miss
$R f_pe_norepair  framebus.pml "-DFIX_MONO -DHDR_SEQ -DFORGE -DMUT_NO_REPAIR -DN=3" "-DSAFETY" "-m1000000"          # FAILS missed <= 1
$R f_sw           framebus.pml "-DFIX_MONO -DHDR_SEQ -DSHARED_WAKE -DFORGE -DN=3"   "-DSAFETY -DCOLLAPSE" "-m1000000"  # FAILS missed <= 1 (2 sleepers)
FS="-DFIX_MONO -DHDR_SEQ -DSHARED_WAKE -DFORGE -DN=2 -DMAXSPUR=0"
$R f_swmax1       framebus.pml "$FS -DFORGE_MAX"              "-DSAFETY" "-m1000000"              # FAILS missed <= 1 (forged 2^32-1, one counted: d = 2)
$R f_sw2          framebus.pml "$FS -DMISSMAX=2"              "-DSAFETY -DCOLLAPSE" "-m1000000"   # passes: at most d = 2 misses
$R f_swmax2       framebus.pml "$FS -DFORGE_MAX -DMISSMAX=2"  "-DSAFETY -DCOLLAPSE" "-m1000000"   # passes: at most 2 misses
