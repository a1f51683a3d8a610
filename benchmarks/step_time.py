"""Training-step time: DD attention at n = 4095, N = 64 against the global model of equal size.

The bar: a DD step within 2x of a global step at the same parameter count and
batch. Each model is timed in alternating rounds (median reported) so both
see the same background load; the batch is already in memory.

    python benchmarks/step_time.py --out benchmarks/results      # about a minute

Writes step_time.json and step_time.md.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pddattn.bench import format_step_times, step_time_comparison  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--repeats", type=int, default=50)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, text = [], []
    for dtype in ("float32", "float64"):
        for batch in (16, 64):
            r = step_time_comparison(4095, 64, 2, 8, batch=batch, repeats=args.repeats, dtype=dtype)
            results.append(r)
            text.append(format_step_times(r))
            print(text[-1] + "\n", flush=True)
    (out / "step_time.json").write_text(json.dumps(results, indent=1))
    (out / "step_time.md").write_text("\n\n".join(text) + "\n")


if __name__ == "__main__":
    main()
