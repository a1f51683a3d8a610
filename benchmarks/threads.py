"""Torch threads on a busy machine: a short DD training alone and beside a second one, per OpenMP setting.

    .venv/bin/python benchmarks/threads.py --out benchmarks/results

For each setting (libgomp's default, which spins a while and then sleeps;
spinning threads, OMP_WAIT_POLICY=ACTIVE; sleeping threads, PASSIVE; a short
spin, GOMP_SPINCOUNT=10000; one thread, OMP_NUM_THREADS=1) the same
300-step training runs alone, then beside an identical endless training with
the same setting (two users' jobs on one node). Wall seconds of the whole
command, imports included. Writes threads.json and threads.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PDDATTN = str(ROOT / ".venv" / "bin" / "pddattn")
SETTINGS = {"libgomp's default (GOMP_SPINCOUNT=300000: spin, then sleep)": {"GOMP_SPINCOUNT": "300000"},
            "spinning (OMP_WAIT_POLICY=ACTIVE)": {"OMP_WAIT_POLICY": "ACTIVE"},
            "sleeping (OMP_WAIT_POLICY=PASSIVE)": {"OMP_WAIT_POLICY": "PASSIVE"},
            "short spin (GOMP_SPINCOUNT=10000)": {"GOMP_SPINCOUNT": "10000"},
            "one thread (OMP_NUM_THREADS=1)": {"OMP_NUM_THREADS": "1"}}
RUN = ["train", "--n", "1023", "--subdomains", "32", "--eval-every", "100"]


def timed(env, folder):
    t0 = time.perf_counter()
    subprocess.run([PDDATTN, *RUN, "--steps", "300", "--out", folder, "--overwrite"], env=env, check=True,
                   capture_output=True)
    return time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, extra in SETTINGS.items():
            env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
            env.update(extra)
            alone = timed(env, f"{scratch}/a")
            load = subprocess.Popen([PDDATTN, *RUN, "--steps", "10000000", "--out", f"{scratch}/load", "--overwrite"],
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(5)  # past its imports: it is training
            try:
                beside = timed(env, f"{scratch}/b")
            finally:
                load.kill()
                load.wait()
            rows.append({"setting": name, "alone_s": round(alone, 2), "beside_another_s": round(beside, 2)})
            print(rows[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "threads.json").write_text(json.dumps({"cores": os.cpu_count(), "command": " ".join(RUN), "rows": rows},
                                                 indent=1))
    lines = ["| threads | alone, s | beside a second training, s |", "|---|---|---|"]
    lines += [f"| {r['setting']} | {r['alone_s']:.1f} | {r['beside_another_s']:.1f} |" for r in rows]
    (out / "threads.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
