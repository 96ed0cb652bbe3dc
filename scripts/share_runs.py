#!/usr/bin/env python3
"""Reuse finished runs of one experiment in another that plans the same jobs (same run ids:
a run id is the hash of the job's configuration, so equal ids are equal jobs; on the same
build the results are bit for bit the same).

    python3 scripts/share_runs.py EXPERIMENT.yaml SOURCE_DIR [SOURCE_DIR ...] [--binary PATH]

Copies every finished run of the source directories whose id the experiment plans and that
the experiment does not have yet, and sets the copy's `job_index` (metrics.json) to its
position in this experiment's plan, so tables keep the plan's order. The copy's manifest
still names the experiment that ran it. Standard library only.
"""
import argparse
import json
import os
import shutil
import subprocess


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("experiment")
    ap.add_argument("sources", nargs="+")
    ap.add_argument("--binary", default="target/release/opencarbon")
    args = ap.parse_args()
    plan = json.loads(subprocess.run([args.binary, "plan", args.experiment, "--json"],
                                     check=True, capture_output=True, text=True).stdout)
    index = {job["run_id"]: job["index"] for job in plan["jobs"]}
    dest_root = plan["results_dir"]
    os.makedirs(dest_root, exist_ok=True)
    copied = relabelled = 0
    for src in args.sources:
        for run_id in sorted(os.listdir(src)):
            run = os.path.join(src, run_id)
            if run_id not in index or not os.path.isfile(os.path.join(run, "DONE")):
                continue
            dest = os.path.join(dest_root, run_id)
            if os.path.abspath(run) != os.path.abspath(dest) and not os.path.exists(dest):
                shutil.copytree(run, dest)
                copied += 1
    for run_id in sorted(os.listdir(dest_root)):
        path = os.path.join(dest_root, run_id, "metrics.json")
        if run_id not in index or not os.path.isfile(path):
            continue
        with open(path) as f:
            metrics = json.load(f)
        if metrics["job_index"] != index[run_id]:
            metrics["job_index"] = index[run_id]
            tmp = path + ".tmp-share"
            with open(tmp, "w") as f:
                json.dump(metrics, f, indent=2)
            os.replace(tmp, path)
            relabelled += 1
    print(f"{copied} runs copied into {dest_root}, {relabelled} job indices set to this plan's")


if __name__ == "__main__":
    main()
