"""Wall time of every command in the README's "Training and comparing" block, as a user runs it.

    .venv/bin/python benchmarks/readme_times.py --out benchmarks/results

The commands are read from README.md itself (every indented command line),
run one after the other in a scratch folder with the README's own paths (so
a resume line continues the run before it, and the composite solve finds the
demo's model), and timed from launch to exit, imports included. Writes
readme_times.json and readme_times.md as it goes.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


RUN = (".venv/bin/", "mpirun ", "bash launch/")  # what a user runs here; set-up, schedulers and CI apart
SKIP = {"sbatch": "needs SLURM", "qsub": "needs PBS", "apt-get": "set-up", "git": "set-up",
        "make": "make demo is the first command below; make test is CI's (its time is in its log)"}


def readme_commands(readme=ROOT / "README.md"):
    """(command, why not run or None) of every indented command line of the README, in order."""
    text = re.sub(r"\\\n\s*", " ", readme.read_text())  # continuation lines joined
    out = []
    for line in text.splitlines():
        if not line.startswith("    ") or line.startswith("     "):
            continue
        command = line.split("  #", 1)[0].strip()
        word = command.split(" ", 1)[0]
        if command.startswith(RUN):
            out.append((command, None))
        elif word in SKIP:
            out.append((command, SKIP[word]))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--scratch", help="run in this folder and keep it (default: a temporary one)")
    parser.add_argument("--start-at", help="skip the commands before the first one containing this text, "
                                           "keeping the rows already in --out (a run resumed)")
    args = parser.parse_args()
    rows = []
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    commands = readme_commands()
    if args.start_at:
        first = next(i for i, (c, _) in enumerate(commands) if args.start_at in c)
        earlier = {c for c, _ in commands[:first]}
        rows = [r for r in json.loads((out / "readme_times.json").read_text())["rows"] if r["command"] in earlier]
        commands = commands[first:]
    with (contextlib.nullcontext(args.scratch) if args.scratch else tempfile.TemporaryDirectory()) as scratch:
        for name in (".venv", "examples", "launch", "pyproject.toml"):
            if not (Path(scratch) / name).exists():
                os.symlink(ROOT / name, Path(scratch) / name)
        for command, skipped in commands:
            if skipped:
                rows.append({"command": command, "seconds": None, "returncode": None, "last": skipped})
                continue
            t0 = time.perf_counter()
            p = subprocess.run(command, shell=True, cwd=scratch, capture_output=True, text=True, env=env)
            seconds = time.perf_counter() - t0
            last = (p.stdout.strip().splitlines() or [""])[-1] if p.returncode == 0 else p.stderr.strip()[-300:]
            rows.append({"command": command, "seconds": round(seconds, 1), "returncode": p.returncode, "last": last})
            print(f"{seconds:8.1f} s  rc {p.returncode}  {command}", flush=True)
            _write(out, rows)  # as it goes: a long run leaves what it measured
    _write(out, rows)
    return 0 if all(r["returncode"] in (0, None) for r in rows) else 1


def _write(out, rows):
    (out / "readme_times.json").write_text(json.dumps({"machine": os.uname().nodename, "cores": os.cpu_count(),
                                                       "rows": rows}, indent=1))
    lines = ["| command | seconds | exit |", "|---|---|---|"]
    for r in rows:
        seconds = "not run here: " + r["last"] if r["seconds"] is None else f"{r['seconds']:.0f}"
        lines.append(f"| `{r['command'].replace('.venv/bin/', '')}` | {seconds} | {r['returncode']} |")
    (out / "readme_times.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
