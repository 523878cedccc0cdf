#!/usr/bin/env python3
"""The measurements of docs/PYTHON.md, on this machine.

    bin/pyvenv/bin/python python/bench/measure.py [--rounds 5] [--bin bin/framebus] [--quick]

1. Commit-to-wake of the Python consumer (python -m framebus tail --json) against the Go
   consumer (framebus tail --json) on the same bus in the same run: 1920x1080 RGBA from
   framebus capture at 60 fps, then as fast as possible. p50/p99 per consumer and round,
   the same-run ratio Python/Go, and the medians over the rounds.
2. The per-frame cost of next() (zero-copy) and read_into() (1080p RGBA copy), in process,
   with a frame always ready: the CPU time of the read path, no waiting.
3. The highest rate at which a Python consumer keeps up with 1080p RGBA without drops:
   framebus capture at rising rates, drops counted by the consumer.

Nothing is pinned (free placement, as a camera pipeline runs); the machine is noisy, so
every figure is a median of rounds and every comparison is within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import framebus

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, int(round(q / 100 * (len(xs) - 1)))))
    return xs[k]


def run_round(go_bin, fps, seconds, with_go=True, with_py=True):
    d = tempfile.mkdtemp(prefix="fbmeasure-", dir="/dev/shm")
    try:
        env = dict(os.environ)
        env.pop("FRAMEBUS_DIR", None)
        py_out = open(os.path.join(d, "py.jsonl"), "w+")
        go_out = open(os.path.join(d, "go.jsonl"), "w+")
        procs = []
        if with_py:
            procs.append(subprocess.Popen([sys.executable, "-m", "framebus", "tail", "m", "--dir", d, "--json",
                                           "--timeout", "20"], stdout=py_out, stderr=subprocess.DEVNULL, env=env))
        if with_go:
            procs.append(subprocess.Popen([go_bin, "tail", "m", "--dir", d, "--json", "--timeout", "20s"],
                                          stdout=go_out, stderr=subprocess.DEVNULL, env=env))
        time.sleep(0.6)  # both consumers are waiting for the bus: they join its first frame
        cap = subprocess.run([go_bin, "capture", "--name", "m", "--dir", d, "--size", "1920x1080", "--format", "RGBA",
                              "--fps", str(fps), "--duration", f"{seconds}s"], stderr=subprocess.PIPE, text=True, env=env)
        published = 0
        for line in cap.stderr.splitlines():
            if "closed the bus" in line:
                published = int(line.split("last_seq=")[1].split()[0])
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, 9)
                p.wait()
        res = {"published": published}
        for name, f in (("py", py_out), ("go", go_out)):
            if (name == "go" and not with_go) or (name == "py" and not with_py):
                continue
            f.seek(0)
            lat, dropped, frames = [], 0, 0
            skip = 10  # the first frames of a run pay for the consumer's first touches
            for line in f:
                ev = json.loads(line)
                if "seq" in ev:
                    frames += 1
                    if frames > skip:
                        lat.append(ev["commit_to_wake_us"])
                    dropped += ev["dropped"]
            res[name] = {"frames": frames, "dropped": dropped, "p50": pct(lat, 50), "p99": pct(lat, 99)}
            f.close()
        return res
    finally:
        shutil.rmtree(d, ignore_errors=True)


def latency(go_bin, rounds, fps, seconds):
    rows = []
    for r in range(rounds):
        res = run_round(go_bin, fps, seconds)
        py, go = res["py"], res["go"]
        row = {"round": r + 1, "published": res["published"], "py": py, "go": go,
               "ratio_p50": py["p50"] / go["p50"], "ratio_p99": py["p99"] / go["p99"]}
        rows.append(row)
        print(f"  fps={fps or 'max'} round {r + 1}: published {res['published']}; "
              f"Python p50 {py['p50']:.1f} us p99 {py['p99']:.1f} us dropped {py['dropped']}; "
              f"Go p50 {go['p50']:.1f} us p99 {go['p99']:.1f} us dropped {go['dropped']}; "
              f"ratio p50 {row['ratio_p50']:.2f} p99 {row['ratio_p99']:.2f}", flush=True)
    solo = {"py": [], "go": []}
    for r in range(rounds):  # each consumer alone, interleaved: the placement effect apart
        solo["py"].append(run_round(go_bin, fps, seconds, with_go=False)["py"])
        solo["go"].append(run_round(go_bin, fps, seconds, with_py=False)["go"])
    med = lambda k, c: statistics.median(r[c][k] for r in rows)
    summary = {"fps": fps, "py_p50": med("p50", "py"), "py_p99": med("p99", "py"), "go_p50": med("p50", "go"),
               "go_p99": med("p99", "go"), "ratio_p50": statistics.median(r["ratio_p50"] for r in rows),
               "ratio_p99": statistics.median(r["ratio_p99"] for r in rows),
               "py_dropped": [r["py"]["dropped"] for r in rows], "go_dropped": [r["go"]["dropped"] for r in rows],
               "published": [r["published"] for r in rows],
               "solo_py_p50": statistics.median(x["p50"] for x in solo["py"]),
               "solo_py_p99": statistics.median(x["p99"] for x in solo["py"]),
               "solo_go_p50": statistics.median(x["p50"] for x in solo["go"]),
               "solo_go_p99": statistics.median(x["p99"] for x in solo["go"]),
               "solo_py_dropped": [x["dropped"] for x in solo["py"]],
               "solo_go_dropped": [x["dropped"] for x in solo["go"]]}
    print(f"  median over {rounds} rounds: Python p50 {summary['py_p50']:.1f} p99 {summary['py_p99']:.1f} us, "
          f"Go p50 {summary['go_p50']:.1f} p99 {summary['go_p99']:.1f} us, same-run ratio p50 "
          f"{summary['ratio_p50']:.2f} p99 {summary['ratio_p99']:.2f}", flush=True)
    print(f"  each alone (medians): Python p50 {summary['solo_py_p50']:.1f} p99 {summary['solo_py_p99']:.1f} us "
          f"dropped {summary['solo_py_dropped']}; Go p50 {summary['solo_go_p50']:.1f} p99 {summary['solo_go_p99']:.1f} us "
          f"dropped {summary['solo_go_dropped']}", flush=True)
    return summary


def overhead(rounds):
    d = tempfile.mkdtemp(prefix="fbmeasure-", dir="/dev/shm")
    out = {}
    try:
        with framebus.Producer("o", 1920, 1080, "RGBA", dir=d) as p, framebus.Consumer("o", dir=d) as c:
            buf = np.empty((1080, 1920, 4), np.uint8)
            nx, ri, pub = [], [], []
            for _ in range(rounds):
                t = []
                for _ in range(500):
                    with p.frame():
                        pass
                    t0 = time.perf_counter_ns()
                    c.next()
                    t.append(time.perf_counter_ns() - t0)
                nx.append(statistics.median(t) / 1e3)
                t = []
                for _ in range(50):
                    with p.frame():
                        pass
                    t0 = time.perf_counter_ns()
                    c.read_into(buf)
                    t.append(time.perf_counter_ns() - t0)
                ri.append(statistics.median(t) / 1e3)
                t = []
                for _ in range(500):
                    t0 = time.perf_counter_ns()
                    with p.frame():
                        pass
                    t.append(time.perf_counter_ns() - t0)
                    c.next()
                pub.append(statistics.median(t) / 1e3)
            out = {"next_us": statistics.median(nx), "next_rounds": nx, "read_into_1080p_us": statistics.median(ri),
                   "frame_commit_us": statistics.median(pub)}
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print(f"  next() {out['next_us']:.1f} us per frame (rounds {', '.join(f'{x:.1f}' for x in out['next_rounds'])}); "
          f"read_into 1080p RGBA {out['read_into_1080p_us']:.0f} us; Producer.frame() + commit "
          f"{out['frame_commit_us']:.1f} us", flush=True)
    return out


def keep_up(go_bin, rates, rounds, seconds):
    """Drops of the Python consumer at each rate, with the Go consumer's in the same run
    (a paced producer that falls behind publishes in bursts, which every consumer drops)."""
    res = []
    for fps in rates:
        py, go, pubs = [], [], []
        for _ in range(rounds):
            r = run_round(go_bin, fps, seconds)
            py.append(r["py"]["dropped"])
            go.append(r["go"]["dropped"])
            pubs.append(r["published"])
        res.append({"fps": fps, "py_dropped": py, "go_dropped": go, "published": pubs})
        print(f"  {fps or 'max'} fps: published {pubs} in {seconds} s; dropped: Python {py}, Go {go}", flush=True)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--bin", default=os.path.join(REPO, "bin", "framebus"))
    ap.add_argument("--json", default="")
    ap.add_argument("--only", default="latency,overhead,keepup")
    a = ap.parse_args()
    only = a.only.split(",")
    result = {"crc": framebus._crc32c.IMPLEMENTATION, "cpus": os.cpu_count()}
    if "latency" in only:
        print("commit-to-wake, 1080p RGBA at 60 fps (Python and Go consumers on one bus):", flush=True)
        result["lat60"] = latency(a.bin, a.rounds, 60, 8)
        print("commit-to-wake, 1080p RGBA as fast as possible:", flush=True)
        result["latmax"] = latency(a.bin, a.rounds, 0, 4)
    if "overhead" in only:
        print("per-frame cost of the read path, in process:", flush=True)
        result["overhead"] = overhead(a.rounds)
    if "keepup" in only:
        print("1080p RGBA: drops of a Python consumer at rising rates:", flush=True)
        result["keepup"] = keep_up(a.bin, [60, 120, 180, 240, 480, 0], 3, 4)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
