"""DIDFuse on TNO (40 pairs): EN, MI, SD, VIF, AG in the ``ma2019`` profile vs the paper's
Table 4, plus the full ``vifb`` profile.

    python scripts/eval_didfuse_tno.py [--weights W.safetensors] [--data DIR] [--rule sum]
        [--limit N] [--save-fused DIR] [--json OUT]

Follows the official test pipeline: 8-bit gray sources / 255, fuse, scale by 255 and round to
an 8-bit image, then score that image (metrics on the 0..255 scale, see metrics.md sec. 6).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ivfuse.data.training import training_pairs
from ivfuse.methods.didfuse import create_didfuse
from ivfuse.metrics import evaluate

#: DIDFuse paper, Table 4, TNO row (SF 13.126 is not reproducible with any known formula)
PAPER_TNO = {"EN": 7.006, "MI": 2.347, "SD": 42.657, "VIF": 0.623, "AG": 4.294}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help="safetensors file (default: shipped weights)")
    ap.add_argument("--data", default="/work/shared/data/tno")
    ap.add_argument("--rule", default="sum")
    ap.add_argument("--limit", type=int, default=None, help="only the first N pairs")
    ap.add_argument("--save-fused", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    fuser = create_didfuse(rule=args.rule, weights=args.weights)
    pairs = training_pairs(args.data)[: args.limit]
    ma, vifb = [], []
    t0 = time.perf_counter()
    for i, p in enumerate(pairs, 1):
        ir = np.asarray(Image.open(p.ir).convert("L"), np.float32) / 255
        vi = np.asarray(Image.open(p.vi).convert("L"), np.float32) / 255
        fused = np.round(fuser.fuse(ir, vi) * 255).astype(np.uint8)
        if args.save_fused:
            Path(args.save_fused).mkdir(parents=True, exist_ok=True)
            Image.fromarray(fused, "L").save(Path(args.save_fused) / f"{p.stem}.png")
        ir8, vi8 = np.round(ir * 255).astype(np.uint8), np.round(vi * 255).astype(np.uint8)
        ma.append(evaluate(fused, ir8, vi8, ["EN", "MI", "SD", "VIF", "AG"], profile="ma2019"))
        vifb.append(evaluate(fused, ir8, vi8, profile="vifb"))
        print(f"[{i}/{len(pairs)}] {p.stem} {time.perf_counter() - t0:.0f}s", flush=True)
    mean_ma = {k: float(np.mean([r[k] for r in ma])) for k in ma[0]}
    mean_vifb = {k: float(np.mean([r[k] for r in vifb])) for k in vifb[0]}
    print(f"\nTNO, {len(pairs)} pairs, rule={args.rule}, ma2019 profile")
    print(f"{'metric':<6} {'ours':>9} {'paper':>9} {'diff %':>8}")
    for k, ref in PAPER_TNO.items():
        print(f"{k:<6} {mean_ma[k]:9.3f} {ref:9.3f} {100 * (mean_ma[k] - ref) / ref:+8.2f}")
    print("\nvifb profile: " + ", ".join(f"{k} {v:.4g}" for k, v in mean_vifb.items()))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "test_set": "tno",
                    "pairs": len(pairs),
                    "rule": args.rule,
                    "ma2019": mean_ma,
                    "paper_table4": PAPER_TNO,
                    "vifb": mean_vifb,
                    "command": "python scripts/eval_didfuse_tno.py " + " ".join(sys.argv[1:]),
                },
                indent=2,
            )  # fmt: skip
            + "\n"
        )


if __name__ == "__main__":
    main()
