"""The recipe table of issue 8: every train-bench report in benchmarks/train/, as markdown.

    .venv/bin/python scripts/train_table.py [--write]    # --write: into benchmarks/train/README.md

BD-rate is against the report named by --anchor (default: shared_partitions), on the reports'
own Kodak points (bjontegaard, PSNR); a single-rate recipe has no curve for it, so the last
column gives every recipe's mid-point PSNR against the anchor's curve at the same bpp (blank
when the anchor has a single rate point itself).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from gm_core.evaluate import bd_rate, psnr_at  # noqa: E402

BENCH = ROOT / "benchmarks" / "train"
BEGIN, END = "<!-- table:begin -->", "<!-- table:end -->"


def as_result(rep: dict) -> dict:
    return {"results": {"bpp": [p["bpp"] for p in rep["points"]],
                        "psnr-rgb": [p["psnr"] for p in rep["points"]]}}


def where(rep: dict) -> str:
    """CPU threads, or the machine a run trained on elsewhere (train-bench --evaluate-only)."""
    m = rep["machine"]
    return str(m["cpu_threads"]) if "cpu_threads" in m else (m.get("trained_on") or "elsewhere").split(" (")[0]


def reports() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(BENCH.glob("*.json"))]


def table(anchor: str) -> str:
    reps = [r for r in reports() if "start" not in r]  # from scratch; fine-tunes: fine_tune_table
    ref = next((r for r in reps if r["recipe"] == anchor), None)
    rows = ["| recipe | train args | ran beside | budget (min) | steps | threads or device | mid-point bpp | PSNR (dB) | "
            "gap to JPEG (dB), mid | mean gap to JPEG (dB) | BD-rate vs " + anchor + " | "
            "mid-point PSNR vs " + anchor + " at equal bpp (dB) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in reps:
        mid = r["points"][len(r["points"]) // 2]
        gaps = [p["gap_to_jpeg_db"] for p in r["points"]]
        other = ref is not None and r is not ref
        bd = bd_rate(as_result(ref), as_result(r)) if other else None
        # a curve is needed to read the anchor at another bpp: not from a single-rate anchor
        vs = (mid["psnr"] - psnr_at(mid["bpp"], as_result(ref))
              if other and len(ref["points"]) > 1 else None)
        rows.append(f"| {r['recipe']} | `{r['train_args']}` | {r.get('ran_beside') or 'unrecorded'} | "
                    f"{r['budget_minutes']:g} | {r['steps']} | "
                    f"{where(r)} | {mid['bpp']:.3f} | {mid['psnr']:.2f} | "
                    f"{mid['gap_to_jpeg_db']:+.2f} | {sum(gaps) / len(gaps):+.2f} | "
                    f"{'' if bd is None else f'{bd:+.1f}%'} | {'' if vs is None else f'{vs:+.2f}'} |")
    return "\n".join(rows)


def fine_tune_table() -> str:
    """Fine-tunes of a shipped checkpoint (train-bench with --init): steps added, and the gain
    over the starting checkpoint's own Kodak curve at the same bpp."""
    rows = ["| fine-tune | train args | ran beside | budget (min) | from (steps) | steps added | threads | "
            "bpp | PSNR (dB) | gap to JPEG (dB) | over the start at equal bpp (dB) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in (r for r in reports() if "start" in r):
        st = r["start"]
        for p in r["points"]:
            gain = p.get("gain_over_start_db")
            name = r["recipe"] + (f" q{p['quality']}" if len(r["points"]) > 1 else "")
            rows.append(f"| {name} | "
                        f"`{r['train_args']}` | {r.get('ran_beside') or 'unrecorded'} | "
                        f"{r['budget_minutes']:g} | {st['model_id']} ({st['steps']}) | {r['steps'] - st['steps']} | "
                        f"{where(r)} | {p['bpp']:.3f} | {p['psnr']:.2f} | "
                        f"{p['gap_to_jpeg_db']:+.2f} | {'' if gain is None else f'{gain:+.2f}'} |")
    return "\n".join(rows) if len(rows) > 2 else ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--anchor", default="shared_partitions")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    t = table(args.anchor)
    ft = fine_tune_table()
    if ft:
        t += "\n\nFine-tunes of a shipped checkpoint (`train-bench ... -- --init CK`):\n\n" + ft
    print(t)
    if args.write:
        readme = BENCH / "README.md"
        s = readme.read_text() if readme.is_file() else f"# Training recipes\n\n{BEGIN}\n{END}\n"
        a, b = s.index(BEGIN) + len(BEGIN), s.index(END)
        readme.write_text(s[:a] + "\n" + t + "\n" + s[b:])


if __name__ == "__main__":
    main()
