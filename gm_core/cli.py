"""Command line: python -m gm_core {compress,decompress,info,train,eval,rd,bench}.

Every failure prints one line on stderr saying what is wrong and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path


class UserError(Exception):
    pass


def _common(p, decode=False):
    p.add_argument("--checkpoint", default=None, help="safetensors checkpoint (default: shipped tiny)")
    p.add_argument("--partition", default=None,
                   help="group partition spec, e.g. kc=4,grid=2x2 or slices=32+32+64+64,grid=4x4")
    p.add_argument("--no-cache", action="store_true", help="decode without the context cache")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")


def _setup(args):
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    if getattr(args, "device", "cpu") == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but no CUDA device is available")


def _load_codec(args):
    from .codec import Codec
    return Codec.load(args.checkpoint, args.device)


def cmd_compress(args):
    from .images import load_image
    img, notices = load_image(args.input)
    for n in notices:
        print(f"note: {n}", file=sys.stderr)
    codec = _load_codec(args)
    data, trace = codec.compress(img, args.partition, args.quality)
    Path(args.output).write_bytes(data)
    print(json.dumps({"output": args.output, "bytes": len(data), "bpp": round(trace.bpp, 4),
                      "partition": trace.partition.to_spec(), "groups": trace.partition.num_groups,
                      "quality": trace.quality, "seconds": {k: round(v, 4) for k, v in trace.timings.items()}}))


def cmd_decompress(args):
    from .images import save_png
    data = Path(args.input).read_bytes()
    codec = _load_codec(args)
    if args.partition:
        h = codec.read_header(data)
        if codec.partition(args.partition) != h.partition:
            raise UserError(f"--partition {args.partition} differs from the stream's "
                            f"{h.partition.to_spec()} (the stream's partition is used by default)")
    img, trace = codec.decompress(data, use_cache=not args.no_cache)
    save_png(img, args.output)
    print(json.dumps({"output": args.output, "size": [trace.image_size[1], trace.image_size[0]],
                      "cache": not args.no_cache,
                      "seconds": {k: round(v, 4) for k, v in trace.timings.items()}}))


def cmd_info(args):
    if args.file and Path(args.file).suffix == ".safetensors":  # a checkpoint, not a stream
        args.checkpoint, args.file = args.file, None
    if args.file:
        from . import container
        data = Path(args.file).read_bytes()
        header, _ = container.parse_header(data)
        out = header.to_json()
        try:
            container.unpack(data)
            out["checksum"] = "ok"
        except container.ContainerError as e:
            out["checksum"] = str(e)
        print(json.dumps(out, indent=2))
        return
    from .config import get_config
    from .model import GroupedMixerModel, parameter_counts
    if args.config:
        cfg = get_config(args.config)
        counts = parameter_counts(GroupedMixerModel(cfg))
        print(json.dumps({"config": cfg.to_dict(), "parameters": counts}, indent=2))
        return
    from .checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    model, mid, meta = load_checkpoint(args.checkpoint or DEFAULT_CHECKPOINT)
    print(json.dumps({"checkpoint": str(args.checkpoint or DEFAULT_CHECKPOINT), "model_id": mid,
                      "config": model.cfg.to_dict(), "meta": meta,
                      "parameters": parameter_counts(model)}, indent=2))


def build_parser():
    p = argparse.ArgumentParser(prog="python -m gm_core",
                                description="GroupedMixer learned image codec")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compress", help="image -> .gmx")
    c.add_argument("input")
    c.add_argument("output")
    c.add_argument("--quality", type=float, default=None,
                   help="rate point: 0 (lowest rate) .. number of lambdas - 1; fractions interpolate")
    _common(c)
    d = sub.add_parser("decompress", help=".gmx -> PNG")
    d.add_argument("input")
    d.add_argument("output")
    _common(d, decode=True)
    i = sub.add_parser("info", help="print a .gmx header, a config's or a checkpoint's facts")
    i.add_argument("file", nargs="?", help="a .gmx stream or a .safetensors checkpoint")
    i.add_argument("--config", default=None)
    _common(i)
    from . import train as train_mod
    t = sub.add_parser("train", help="train or resume a model")
    train_mod.add_arguments(t)
    b = sub.add_parser("bench", help="latency against CompressAI's mbt2018 and hyperprior")
    b.add_argument("--image", required=True)
    b.add_argument("--out", default=None)
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--random-weights", action="store_true")
    b.add_argument("--config", default="tiny")
    b.add_argument("--no-peers", action="store_true")
    _common(b)
    from . import evaluate, train_bench
    evaluate.add_parsers(sub)
    train_bench.add_parser(sub)
    return p


def main(argv=None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    args = build_parser().parse_args(argv)
    from .checkpoint import CheckpointError
    from .container import ContainerError
    from .images import ImageError
    from .partition import PartitionError
    try:
        if args.cmd == "train":
            from .train import train
            train(args)
            return 0
        if args.cmd == "train-bench":
            from .train_bench import main as tb_main
            tb_main(args)
            return 0
        _setup(args)
        if args.cmd == "compress":
            cmd_compress(args)
        elif args.cmd == "decompress":
            cmd_decompress(args)
        elif args.cmd == "info":
            cmd_info(args)
        elif args.cmd == "bench":
            from .bench import bench_main
            bench_main(args)
        else:
            from . import evaluate
            evaluate.run(args)
    except (UserError, CheckpointError, ContainerError, ImageError, PartitionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        print(f"error: {e.strerror or e}: {e.filename}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 2
    except Exception as e:  # never a traceback for a user
        print(f"error: unexpected failure: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    return 0
