"""Pack a training checkpoint for git (weights exact, Adam's second moment in 8 bits, first moment
dropped) or rebuild a resumable checkpoint from a packed one. See scripts/compact.py.

    python scripts/compact_checkpoint.py pack runs/NAME/checkpoint.pt training_state/NAME/compact.pt
    python scripts/compact_checkpoint.py unpack training_state/NAME/compact.pt runs/NAME/checkpoint.pt
"""

from __future__ import annotations

import argparse

from compact import pack_file, unpack_file  # scripts/compact.py, beside this script


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=("pack", "unpack"))
    ap.add_argument("src")
    ap.add_argument("dst")
    args = ap.parse_args()
    if args.action == "pack":
        size = pack_file(args.src, args.dst)
        print(f"packed {args.src} -> {args.dst} ({size / 1e6:.1f} MB)")
    else:
        unpack_file(args.src, args.dst)
        print(f"unpacked {args.src} -> {args.dst}")


if __name__ == "__main__":
    main()
