#!/usr/bin/env python3
"""plot_bench.py - the step-time plot of docs/performance.md from one device call's JSON:
vx-bench's (--json) and, optionally, peers.py's (peers.json). For one batch size, the decode
step time against the context length N for our dense and quest steps, torch SDPA's dense
decode and the Quest pipeline written in torch (score+topk, then gather+SDPA), and the
physical limit of each of ours: the bytes the step must read over the best bandwidth any
method reached in the run. Writes a PNG with gnuplot (Debian's gnuplot-nox); python3's
standard library only, so it runs where vx-bench's JSON is brought back.

  usage: plot_bench.py VX_BENCH.json [PEERS.json] --out PLOT.png [--B 8] [--policies dense,quest]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile


def load(path):
    with open(path) as f:
        text = f.read().strip().splitlines()
    return json.loads(text[-1]) if text and text[-1].startswith("{") else json.loads("\n".join(text))


def series(bench, peers, B, policies):
    """{label: [(N, us)]}: ours, the peers', and the limits (bytes / best bandwidth)."""
    best = max([r["TBps"] for r in peers] or [bench.get("best_tbps", 0)] or [0])
    out = {}
    for r in bench["results"]:
        if r["B"] != B or r["policy"] not in policies or "step" not in r:
            continue
        out.setdefault(f"vx {r['policy']} step", []).append((r["N"], r["step"]["us"]))
        if best > 0 and "bytes" in r["step"]:
            out.setdefault(f"{r['policy']} limit ({best:.2f} TB/s)", []).append(
                (r["N"], r["step"]["bytes"] / (best * 1e12) * 1e6))
    quest = {}
    for r in peers:
        if r["B"] != B:
            continue
        if r["name"].startswith("torch SDPA"):
            out.setdefault("torch SDPA dense", []).append((r["N"], r["us"]))
        elif r["name"].startswith("quest score+topk") or r["name"].startswith("gather+SDPA"):
            quest[r["N"]] = quest.get(r["N"], 0) + r["us"]
    if quest:
        out["torch Quest (score+topk, gather+SDPA)"] = sorted(quest.items())
    return {k: sorted(v) for k, v in out.items()}


def plot(data, B, out, title):
    gp = shutil.which("gnuplot")
    if not gp:
        sys.exit("plot_bench.py: gnuplot not found (apt-get install gnuplot-nox); no plot written")
    with tempfile.TemporaryDirectory() as tmp:
        plots = []
        for i, (label, points) in enumerate(sorted(data.items())):
            path = os.path.join(tmp, f"s{i}.dat")
            with open(path, "w") as f:
                f.writelines(f"{n} {us}\n" for n, us in points)
            style = "lines dashtype 2" if "limit" in label else "linespoints"
            plots.append(f"'{path}' using 1:2 with {style} linewidth 2 title '{label}'")
        script = "\n".join([
            "set terminal pngcairo size 1000,650 font ',11' noenhanced",
            f"set output '{out}'",
            f"set title '{title}, B = {B}'",
            "set xlabel 'context N (tokens per row)'",
            "set ylabel 'decode step, microseconds (one layer)'",
            "set logscale xy", "set grid", "set key left top",
            "plot " + ", \\\n  ".join(plots), ""])
        subprocess.run([gp], input=script, text=True, check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bench")
    ap.add_argument("peers", nargs="?")
    ap.add_argument("--out", required=True)
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--policies", default="dense,quest")
    a = ap.parse_args()
    bench = load(a.bench)
    peers = load(a.peers) if a.peers else []
    data = series(bench, peers, a.B, a.policies.split(","))
    if not data:
        sys.exit(f"plot_bench.py: nothing at B = {a.B} for {a.policies} in {a.bench}")
    plot(data, a.B, a.out, f"{bench.get('device', '?')}, {bench.get('date', '')}")
    print(f"plot_bench.py: wrote {a.out} ({len(data)} series)")


if __name__ == "__main__":
    main()
