#!/usr/bin/env python3
"""Runs one benchmark binary from two build trees alternately and compares.

This machine is shared: the same binary's time moves by up to 2x between
minutes. Alternating the two builds run by run and taking the ratio per pair
cancels most of that; the medians of the runs and of the per-pair ratios
are printed.

  bench/side_by_side.py OLD_TREE NEW_TREE [--runs=N] [--bench=primaps|stage]
      [-- extra flags for the benchmark]

Each tree is a repository checkout with its benchmarks built in `build/`
(for example a `git worktree` of an older commit). The benchmarks read the
demo photos from ../shared/data/demo relative to the tree, so both trees
need that path.

--bench=primaps (default): build/bench/primaps_bench, single-thread row:
  PriMaPs without CRF, CRF alone, whole step.
--bench=stage: build/bench/primaps_crf_stage_bench, per image: position
  and bilateral lattice build and filter, whole CRF.
"""
import statistics
import subprocess
import sys


def parse_primaps(out):
    for line in out.splitlines():
        if line.startswith("| 1 "):
            cells = [c.strip() for c in line.split("|")]
            return {"PriMaPs without CRF": float(cells[2]),
                    "CRF alone": float(cells[3]),
                    "whole step": float(cells[4])}
    raise RuntimeError("no single-thread row in:\n" + out)


def parse_stage(out):
    values = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 6 or not cells[1].isdigit():
            continue
        image = cells[1]
        pos = [float(x) for x in cells[2].split("/")]
        bil = [float(x) for x in cells[3].split("/")]
        values["image %s position build" % image] = pos[0]
        values["image %s position filter" % image] = pos[2]
        values["image %s bilateral build" % image] = bil[0]
        values["image %s bilateral filter" % image] = bil[2]
        values["image %s whole CRF" % image] = float(cells[4])
    if not values:
        raise RuntimeError("no rows in:\n" + out)
    return values


BENCHES = {
    "primaps": ("build/bench/primaps_bench", ["--images=6", "--reps=3"],
                parse_primaps),
    "stage": ("build/bench/primaps_crf_stage_bench", ["--reps=5"],
              parse_stage),
}


def main(argv):
    ours, extra = argv, []
    if "--" in argv:
        ours, extra = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    flags = [a for a in ours if a.startswith("--")]
    positional = [a for a in ours if not a.startswith("--")]
    if len(positional) < 2:
        sys.exit(__doc__)
    old_tree, new_tree = positional[:2]
    runs, bench = 5, "primaps"
    for flag in flags:
        name, _, value = flag[2:].partition("=")
        if name == "runs":
            runs = int(value)
        elif name == "bench":
            bench = value
    binary, defaults, parse = BENCHES[bench]
    args = [binary] + (extra or defaults)
    results = {"old": [], "new": []}
    for run in range(runs):
        for key, tree in (("old", old_tree), ("new", new_tree)):
            out = subprocess.run(args, cwd=tree, check=True,
                                 capture_output=True, text=True).stdout
            results[key].append(parse(out))
        print("run %d of %d done" % (run + 1, runs), file=sys.stderr)
    print("| measure (ms) | old, median | new, median | old / new per pair: "
          "median (range) |")
    print("|---|---|---|---|")
    for name in results["old"][0]:
        old = [r[name] for r in results["old"]]
        new = [r[name] for r in results["new"]]
        ratios = [o / n for o, n in zip(old, new)]
        print("| %s | %.2f | %.2f | %.2f (%.2f-%.2f) |" %
              (name, statistics.median(old), statistics.median(new),
               statistics.median(ratios), min(ratios), max(ratios)))


if __name__ == "__main__":
    main(sys.argv[1:])
