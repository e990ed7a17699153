#!/usr/bin/env python
"""Execute the teaching notebooks top to bottom and store them with their outputs, in place.

    .venv/bin/python scripts/run_notebooks.py                 # every notebooks/*.ipynb
    .venv/bin/python scripts/run_notebooks.py 01_tour         # one (name or path)

Run it after new weights land in assets/ so that the stored outputs show the shipped checkpoint.
Each notebook runs in its own kernel with notebooks/ as the working directory (as in Jupyter);
the run time and the stored size of each are printed. A notebook that fails is left unchanged
and the script exits with status 1. The CI test (tests/test_notebooks.py) executes the same
notebooks without writing anything back.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
MAX_BYTES = 2 * 1024 * 1024  # notebooks are read on a code host: keep each one small


def notebook_paths(names=None) -> list[Path]:
    if not names:
        return sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))
    out = []
    for n in names:
        p = Path(n)
        if not p.suffix:
            p = NOTEBOOKS / f"{n}.ipynb"
        if not p.is_file():
            p = NOTEBOOKS / p.name
        if not p.is_file():
            raise SystemExit(f"error: no notebook {n!r} in {NOTEBOOKS}")
        out.append(p)
    return out


def execute(path: Path, timeout: int = 600, cwd: Path | None = None):
    """Run a notebook in a fresh kernel; returns (executed notebook, seconds)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    # the kernel imports gm_core from this checkout, wherever the notebook is executed
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = str(ROOT) + (os.pathsep + env_path if env_path else "")
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                resources={"metadata": {"path": str(cwd or path.parent)}})
        t0 = time.perf_counter()
        client.execute()
        return nb, time.perf_counter() - t0
    finally:
        if env_path:
            os.environ["PYTHONPATH"] = env_path
        else:
            os.environ.pop("PYTHONPATH", None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", help="names (01_tour) or paths; default: all")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = ap.parse_args(argv)
    import nbformat
    from nbclient.exceptions import CellExecutionError

    failed = 0
    for path in notebook_paths(args.notebooks):
        print(f"{path.name}: running ...", flush=True)
        try:
            nb, secs = execute(path, args.timeout)
        except CellExecutionError as e:
            print(f"{path.name}: FAILED, left unchanged\n{str(e)[-3000:]}", file=sys.stderr)
            failed += 1
            continue
        nbformat.write(nb, path)
        size = path.stat().st_size
        note = "" if size <= MAX_BYTES else f"  WARNING: over {MAX_BYTES >> 20} MB"
        print(f"{path.name}: {secs:.0f} s, {size / 1024:.0f} KB stored{note}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
