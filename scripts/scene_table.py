"""Target contrast and texture detail of every method on the synthetic night scene.

    python scripts/scene_table.py [--height 360 --width 480 --seed 0] [--methods lp,didfuse]

The scene is the one ``ivfuse demo`` fuses (same default size and seed). Its ground truth says
where the warm targets and the visible-only texture are, so two numbers tell what a fusion keeps
from each source (``ivfuse.data.synthetic``): the targets' thermal contrast (IR alone has all of
it, VI none) and the texture gradient (VI alone has all of it). Prints a Markdown table, with the
time of each fusion. Methods without shipped weights are skipped.
"""

from __future__ import annotations

import argparse
import time

from ivfuse import api
from ivfuse.data.synthetic import night_scene, target_contrast, texture_detail


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--width", type=int, default=480)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default=None, help="comma-separated (default: all registered)")
    args = ap.parse_args()

    scene = night_scene(args.height, args.width, args.seed)
    infos = {m.name: m for m in api.list_methods()}
    names = args.methods.split(",") if args.methods else list(infos)
    ir_c, vi_c = target_contrast(scene.ir, scene), target_contrast(scene.vi, scene)
    ir_t, vi_t = texture_detail(scene.ir, scene), texture_detail(scene.vi, scene)
    print(f"scene {args.height}x{args.width}, seed {args.seed}")
    print()
    print(
        f"| method | target contrast (IR: {ir_c:.3f}, VI: {vi_c:.3f}) "
        f"| texture gradient (VI: {vi_t:.4f}, IR: {ir_t:.4f}) | ms |"
    )
    print("|---|--:|--:|--:|")
    for name in names:
        info = infos[name]
        if info.weights and not info.weights_shipped:
            continue
        fuser = api.load(name)
        t0 = time.perf_counter()
        fused = fuser.fuse(scene.ir, scene.vi)
        ms = 1000 * (time.perf_counter() - t0)
        c, t = target_contrast(fused, scene), texture_detail(fused, scene)
        print(f"| {name} | {c:.3f} ({c / ir_c:.0%}) | {t:.4f} ({t / vi_t:.0%}) | {ms:.0f} |")


if __name__ == "__main__":
    main()
