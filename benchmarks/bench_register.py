"""Benchmark of infrared -> visible registration (ivfuse.register) against plain OpenCV ECC.

Every aligned pair of a test set gets a known, seeded random transform applied to its infrared image:
rotation up to +-10 deg, scale 0.8-1.25, translation up to +-10 % of the size, a mild perspective term
(the visible image's corners move by up to about 2.5 % of the half size), then the infrared image is
resampled to another resolution (default 640x512, anisotropic for most pairs). Content the infrared
camera would see outside the original frame is filled by mirroring. Both methods then recover the
infrared -> visible homography from the warped infrared and the visible image.

Reported per set and method: mean and median corner error (the 4 visible-image corners sent to the
infrared image by the estimate and back by the truth; visible pixels), success rate (corner error
<= 2 px), the success rate on contrast-inverted pairs (aligned IR and visible intensities negatively
correlated), the median error over a 9x9 grid of the visible image ("grid med"), and milliseconds per
pair (registration only, one thread). "accepted": share of pairs whose confidence reaches ivfuse
register's default --min-confidence (DEFAULT_MIN_CONFIDENCE, 0.2); "acc. ok": success rate among
those. "self mean/med/ok":
the corner error against the known transform composed with the same method's registration of the
undistorted pair (started at the identity); "inv. self ok": its success on the contrast-inverted
pairs. It separates "the known transform was recovered" from "the data set's alignment is not the
structural optimum": scenes are not planar and the two cameras see them from different places, so no
homography aligns every depth, and a data set's alignment and a structural optimum are two different
compromises. A second table gives the confidence separation: at each threshold, how many pairs
recovered within 2 px (self) it would refuse and how many misregistrations (self error > 5 px) it
would pass.

``--mask-fill``: ivfuse is told which infrared pixels are the mirrored fill (``ir_mask``; a real
camera sees real content there) and the undistorted pair is registered on the visible region that the
distorted infrared image really covers (``vi_mask``), so that the self error compares two fits of the
same content. ``--identity``: the visible image (gray) is used as the infrared image too; with one
modality every method should recover the known transform to about 0.1 px (a check of the benchmark's
conventions: composition order, pixel centres of the resampling).

Peer ("opencv-ecc"): cv2.findTransformECC, homography, on the raw intensities, coarse-to-fine over the
same pyramid (longest side 160 px, doubling to the full size), started from the size-ratio resampling.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_register.py --data DATA_ROOT [--sets tno,roadscene,flir_test]
        [--limit N] [--vi-size native|WxH] [--ir-size 640x512] [--seed 0] [--json out.json]
        [--methods ivfuse,ivfuse-ecc,opencv-ecc] [--mask-fill] [--identity] [--verbose]
        [--option KEY=VALUE ...] [--only SET/STEM,...]

``--option hypotheses=3 --option check=true``: keyword arguments of ivfuse.register.register for the
ivfuse methods (VALUE as JSON; the reference fit gets them too, except ``check``). With
``check=true`` a third table gives the forward/backward consistency's separation of good and bad
registrations (alone and with confidence >= 0.2) and the areas under the ROC curve.

DATA_ROOT holds ``<set>/ir`` and ``<set>/vi`` with the same stems (roadscene: only the 41 pairs of
``splits/roadscene_not_in_flir_train.txt``, the ones outside the FLIR training split).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from ivfuse.cli.register import DEFAULT_MIN_CONFIDENCE  # noqa: E402
from ivfuse.io import read_image  # noqa: E402
from ivfuse.register import FINEST, _levels, _scale_matrix, corner_error, register  # noqa: E402


def grid_error(estimate: np.ndarray, truth: np.ndarray, vi_size: tuple[int, int]) -> float:
    """Like the corner error, averaged over a 9x9 grid of points covering the visible image."""
    w, h = vi_size
    xs, ys = np.meshgrid(np.linspace(0, w - 1, 9), np.linspace(0, h - 1, 9))
    c = np.stack([xs.ravel(), ys.ravel()], 1)[None].astype(np.float64)
    back = cv2.perspectiveTransform(c, truth @ np.linalg.inv(estimate))
    return float(np.linalg.norm(back - c, axis=-1).mean())


cv2.setNumThreads(1)
SETS = ("tno", "roadscene", "flir_test")
SUCCESS_PX = 2.0
MIN_CONFIDENCE = DEFAULT_MIN_CONFIDENCE  # what ivfuse register / fuse --register refuse below
BAD_PX = 5.0  # a self error above this is a misregistration the confidence should refuse
THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.3)
CONSISTENCY_PX = (1.0, 2.0, 3.0, 5.0)  # forward/backward disagreement thresholds (--option check=true)


def list_pairs(root: Path, name: str) -> list[tuple[str, Path, Path]]:
    stems: list[str] | None = None
    if name == "roadscene":
        split = root / "splits" / "roadscene_not_in_flir_train.txt"
        stems = [ln.split("/", 1)[1] for ln in split.read_text().split() if ln.startswith("roadscene/")]
    ir_files = {p.stem: p for p in sorted((root / name / "ir").iterdir())}
    vi_files = {p.stem: p for p in sorted((root / name / "vi").iterdir())}
    stems = stems if stems is not None else sorted(set(ir_files) & set(vi_files))
    return [(s, ir_files[s], vi_files[s]) for s in stems if s in ir_files and s in vi_files]


def gray(a: np.ndarray) -> np.ndarray:
    if a.ndim == 3:
        a = cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2GRAY)
    return a


def random_transform(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """IR' pixel -> visible pixel on a w x h grid: rotation, scale, translation, perspective."""
    ang = np.deg2rad(rng.uniform(-10, 10))
    s = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
    tx, ty = rng.uniform(-0.1, 0.1) * w, rng.uniform(-0.1, 0.1) * h
    p1, p2 = rng.uniform(-0.025, 0.025) / (w / 2), rng.uniform(-0.025, 0.025) / (h / 2)
    c = np.array([[1, 0, -(w - 1) / 2], [0, 1, -(h - 1) / 2], [0, 0, 1]], dtype=np.float64)
    rs = np.array([[s * np.cos(ang), -s * np.sin(ang), 0], [s * np.sin(ang), s * np.cos(ang), 0], [0, 0, 1]])
    persp = np.array([[1, 0, 0], [0, 1, 0], [p1, p2, 1]])
    back = np.array([[1, 0, (w - 1) / 2 + tx], [0, 1, (h - 1) / 2 + ty], [0, 0, 1]])
    return back @ persp @ rs @ c


def make_case(ir0, vi0, rng, vi_size, ir_size):
    """(ir, vi, truth IR->VI, inverted?, u: original grid -> visible grid) from an aligned pair."""
    h0, w0 = vi0.shape[:2]
    vw, vh = vi_size if vi_size else (w0, h0)
    u = _scale_matrix(vw / w0, vh / h0)  # original grid -> visible grid
    vi = vi0 if (vw, vh) == (w0, h0) else cv2.resize(vi0, (vw, vh), interpolation=cv2.INTER_CUBIC)
    t = random_transform(rng, vw, vh)  # IR' (visible-size canvas) -> visible
    iw, ih = ir_size
    r = _scale_matrix(iw / vw, ih / vh)  # IR' -> IR
    m = np.linalg.inv(u) @ t @ np.linalg.inv(r)  # IR pixel -> original IR pixel
    ir = cv2.warpPerspective(
        ir0, m, (iw, ih), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101
    )
    truth = t @ np.linalg.inv(r)
    # where the infrared image holds real content (not the mirrored fill), and where that content
    # lands on the original (undistorted) grid
    ones = np.ones(ir0.shape[:2], np.uint8)
    ir_valid = cv2.warpPerspective(ones, m, (iw, ih), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
    covered = cv2.warpPerspective(ir_valid, np.linalg.inv(u) @ truth, (w0, h0), flags=cv2.INTER_NEAREST)
    a, b = gray(ir0).astype(np.float64).ravel(), gray(vi0).astype(np.float64).ravel()
    inverted = bool(np.corrcoef(a, b)[0, 1] < 0) if a.std() > 0 and b.std() > 0 else False
    return ir, vi, truth, inverted, u, ir_valid, covered


def peer_ecc(
    ir: np.ndarray, vi: np.ndarray, init: np.ndarray | None = None, **_masks: object
) -> tuple[np.ndarray, float]:
    """Plain OpenCV ECC (homography) on raw intensities, coarse to fine, from the size-ratio guess."""
    gi, gv = gray(ir).astype(np.float32), gray(vi).astype(np.float32)
    vh, vw = gv.shape
    s0 = _scale_matrix(vw / gi.shape[1], vh / gi.shape[0])
    h_full = np.eye(3) if init is None else init @ np.linalg.inv(s0)
    for f in _levels((vw, vh), 160, FINEST):
        size = (round(vw * f), round(vh * f))
        d = _scale_matrix(size[0] / vw, size[1] / vh)
        lv = cv2.resize(gv, size, interpolation=cv2.INTER_AREA)
        li = cv2.resize(gi, size, interpolation=cv2.INTER_AREA)
        w = (d @ np.linalg.inv(h_full) @ np.linalg.inv(d)).astype(np.float32)
        crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 60, 1e-6)
        try:
            _, w = cv2.findTransformECC(lv, li, w, cv2.MOTION_HOMOGRAPHY, crit, None, 5)
            h_full = np.linalg.inv(d) @ np.linalg.inv(w.astype(np.float64)) @ d
        except cv2.error:
            pass
    return h_full @ s0, float("nan")


OPTIONS: dict = {}  # extra keyword arguments of ivfuse.register.register (--option)
LAST: dict = {}  # the last ivfuse registration's consistency (forward/backward, px)


def ours(ir: np.ndarray, vi: np.ndarray, init: np.ndarray | None = None, **masks) -> tuple[np.ndarray, float]:
    opts = dict(OPTIONS)
    if init is not None:  # the reference fit: no search, no consistency check
        opts.pop("check", None)
    r = register(ir, vi, "homography", init=init, return_warped=False, **masks, **opts)
    if init is None:
        LAST["consistency"] = r.consistency
    return r.matrix, r.confidence


def ours_ecc(
    ir: np.ndarray, vi: np.ndarray, init: np.ndarray | None = None, **masks
) -> tuple[np.ndarray, float]:
    """ivfuse with refine="ecc": cv2.findTransformECC on the gradient-magnitude maps at every level."""
    opts = {k: v for k, v in OPTIONS.items() if k != "check" or init is None}
    r = register(ir, vi, "homography", init=init, refine="ecc", return_warped=False, **masks, **opts)
    if init is None:
        LAST["consistency"] = r.consistency
    return r.matrix, r.confidence


METHODS = {"ivfuse": ours, "ivfuse-ecc": ours_ecc, "opencv-ecc": peer_ecc}


def parse_size(text: str) -> tuple[int, int] | None:
    if text == "native":
        return None
    w, h = text.lower().split("x")
    return int(w), int(h)


def _auc(scores: list[float], rows: list[dict]) -> float:
    """Area under the ROC curve of ``scores`` for telling good (self error <= 2 px) from bad (> 5 px)
    registrations: the chance that a good pair scores above a bad one (ties count half)."""
    sc = np.asarray(scores, dtype=np.float64)
    err = np.array([r["self"] for r in rows])
    good, bad = sc[err <= SUCCESS_PX], sc[err > BAD_PX]
    if not len(good) or not len(bad) or not np.isfinite(sc).all():
        return float("nan")
    diff = good[:, None] - bad[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def _separation_consistency(rows: list[dict]) -> dict:
    out = {}
    cons = [r.get("consistency", float("nan")) for r in rows]
    if not all(np.isfinite(cons)):
        return out
    for t in CONSISTENCY_PX:
        for both in (False, True):
            ok = [
                c <= t and (not both or r["confidence"] >= MIN_CONFIDENCE)
                for c, r in zip(cons, rows, strict=True)
            ]
            out[(f"conf>={MIN_CONFIDENCE:g} & " if both else "") + f"cons<={t:g}"] = {
                "refused_good": int(
                    sum(not k and r["self"] <= SUCCESS_PX for k, r in zip(ok, rows, strict=True))
                ),
                "good": int(sum(r["self"] <= SUCCESS_PX for r in rows)),
                "passed_bad": int(sum(k and r["self"] > BAD_PX for k, r in zip(ok, rows, strict=True))),
                "bad": int(sum(r["self"] > BAD_PX for r in rows)),
            }
    return out


def summarise(rows: list[dict]) -> dict:
    err = np.array([r["error"] for r in rows])
    inv = [r for r in rows if r["inverted"]]
    acc = [r["error"] <= SUCCESS_PX for r in rows if r["confidence"] >= MIN_CONFIDENCE]
    return {
        "pairs": len(rows),
        "mean_px": float(err.mean()),
        "median_px": float(np.median(err)),
        "success": float((err <= SUCCESS_PX).mean()),
        "grid_median_px": float(np.median([r["grid"] for r in rows])),
        "self_median_px": float(np.median([r["self"] for r in rows])),
        "self_success": float(np.mean([r["self"] <= SUCCESS_PX for r in rows])),
        "self_mean_px": float(np.mean([r["self"] for r in rows])),
        "inverted_self_success": (
            float(np.mean([r["self"] <= SUCCESS_PX for r in inv])) if inv else float("nan")
        ),
        # confidence separation (self error): good = <= 2 px, bad = > 5 px (a misregistration)
        "separation": {
            f"{t:g}": {
                "refused_good": int(sum(r["confidence"] < t and r["self"] <= SUCCESS_PX for r in rows)),
                "good": int(sum(r["self"] <= SUCCESS_PX for r in rows)),
                "passed_bad": int(sum(r["confidence"] >= t and r["self"] > BAD_PX for r in rows)),
                "bad": int(sum(r["self"] > BAD_PX for r in rows)),
            }
            for t in THRESHOLDS
        },
        # the forward/backward consistency check (register(check=True)), alone and with confidence >= 0.2
        "separation_consistency": _separation_consistency(rows),
        "auc_confidence": _auc([r["confidence"] for r in rows], rows),
        "auc_consistency": _auc([-r.get("consistency", float("nan")) for r in rows], rows),
        "inverted_pairs": len(inv),
        "inverted_success": float(np.mean([r["error"] <= SUCCESS_PX for r in inv])) if inv else float("nan"),
        "ms_per_pair": float(np.mean([r["ms"] for r in rows])),
        # pairs the CLI's default --min-confidence accepts, and the success among them
        "accepted": float(np.mean([r["confidence"] >= MIN_CONFIDENCE for r in rows])),
        "accepted_success": float(np.mean(acc)) if acc else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data", type=Path, required=True, help="folder with tno/, roadscene/, flir_test/, splits/"
    )
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--limit", type=int, default=0, help="first N pairs per set (0: all)")
    ap.add_argument("--vi-size", default="native", help="native, or WxH to upsample the visible image")
    ap.add_argument("--ir-size", default="640x512")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="ivfuse,opencv-ecc")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--verbose", action="store_true", help="one line per pair")
    ap.add_argument(
        "--mask-fill",
        action="store_true",
        help="tell ivfuse which infrared pixels are the benchmark's mirrored fill (ir_mask), and "
        "register the undistorted pair for the self error on the content both cases share (vi_mask)",
    )
    ap.add_argument(
        "--identity",
        action="store_true",
        help="use the visible image (gray) as the infrared image too: a check of the benchmark's "
        "geometry conventions (every method should recover the known transform to ~0.1 px)",
    )
    ap.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra keyword argument of ivfuse.register.register for the ivfuse methods, VALUE as JSON "
        "(e.g. --option hypotheses=4 --option check=true); repeatable",
    )
    ap.add_argument("--only", default="", help="comma-separated SET/STEM pairs to run (default: all)")
    args = ap.parse_args(argv)
    for item in args.option:
        key, _, value = item.partition("=")
        OPTIONS[key] = json.loads(value)
    only = set(filter(None, args.only.split(",")))
    vi_size, ir_size = parse_size(args.vi_size), parse_size(args.ir_size)
    assert ir_size is not None
    methods = args.methods.split(",")
    results: dict[str, dict[str, dict]] = {}
    per_pair: list[dict] = []
    for name in args.sets.split(","):
        pairs = list_pairs(args.data, name)
        if args.limit:
            pairs = pairs[: args.limit]
        rows: dict[str, list[dict]] = {m: [] for m in methods}
        for pi, (stem, ip, vp) in enumerate(pairs):
            if only and f"{name}/{stem}" not in only:
                continue
            rng = np.random.default_rng([args.seed, zlib.crc32(name.encode()), pi])
            ir0, vi0 = read_image(ip), read_image(vp)
            ir0 = gray(vi0) if args.identity else gray(ir0)
            ir, vi, truth, inverted, u, ir_valid, covered = make_case(ir0, vi0, rng, vi_size, ir_size)
            vs = (vi.shape[1], vi.shape[0])
            for m in methods:
                masks = {"ir_mask": ir_valid} if args.mask_fill else {}
                LAST.clear()
                t0 = time.perf_counter()
                est, conf = METHODS[m](ir, vi, **masks)
                ms = 1000 * (time.perf_counter() - t0)
                e = corner_error(est, truth, vs)
                g = grid_error(est, truth, vs)
                # the method's own optimum on the undistorted pair (started at the identity): the known
                # transform composed with it is what the method can recover at best
                ref_masks = {"vi_mask": covered} if args.mask_fill else {}
                h0 = METHODS[m](ir0, vi0, init=np.eye(3), **ref_masks)[0]
                truth_c = u @ h0 @ np.linalg.inv(u) @ truth
                c = corner_error(est, truth_c, vs)
                row = {
                    "set": name,
                    "stem": stem,
                    "method": m,
                    "error": e,
                    "grid": g,
                    "self": c,
                    "confidence": conf,
                    "ms": ms,
                    "inverted": inverted,
                    "consistency": LAST.get("consistency", float("nan")),
                }
                rows[m].append(row)
                per_pair.append(row)
                if args.verbose:
                    print(
                        f"{name}/{stem} {m:11s} err {e:9.3f} grid {g:8.3f} self {c:8.3f} px "
                        f"{ms:7.1f} ms inv={inverted} conf {conf:.3f} cons {row['consistency']:.2f}",
                        flush=True,
                    )
        results[name] = {m: summarise(r) for m, r in rows.items() if r}
    hdr = (
        f"{'set':10s} {'method':11s} {'pairs':>5s} {'mean px':>9s} {'median px':>9s} "
        f"{'success':>8s} {'inverted ok':>12s} {'grid med':>9s} "
        f"{'self mean':>9s} {'self med':>9s} {'self ok':>8s} {'inv. self ok':>12s} "
        f"{'accepted':>9s} {'acc. ok':>8s} "
        f"{'ms/pair':>8s}"
    )
    print(
        f"IR {args.ir_size}, VI {args.vi_size}, seed {args.seed}, success = corner error <= {SUCCESS_PX} px"
    )
    print(hdr)
    for name, by in results.items():
        for m, s in by.items():
            inv = (
                f"{100 * s['inverted_success']:.0f}% of {s['inverted_pairs']}" if s["inverted_pairs"] else "-"
            )
            inv_self = "-"
            if s["inverted_pairs"]:
                inv_self = f"{100 * s['inverted_self_success']:.0f}% of {s['inverted_pairs']}"
            has_conf = bool(np.isfinite(s["accepted_success"]) or s["accepted"] > 0)
            acc = f"{100 * s['accepted']:.0f}%" if has_conf else "-"
            acc_ok = f"{100 * s['accepted_success']:.0f}%" if np.isfinite(s["accepted_success"]) else "-"
            print(
                f"{name:10s} {m:11s} {s['pairs']:5d} {s['mean_px']:9.2f} {s['median_px']:9.3f} "
                f"{100 * s['success']:7.1f}% {inv:>12s} {s['grid_median_px']:9.3f} "
                f"{s['self_mean_px']:9.2f} {s['self_median_px']:9.3f} "
                f"{100 * s['self_success']:7.1f}% {inv_self:>12s} "
                f"{acc:>9s} {acc_ok:>8s} {s['ms_per_pair']:8.0f}"
            )
    print(
        f"\nconfidence separation (self error: good <= {SUCCESS_PX:g} px, bad > {BAD_PX:g} px): "
        "refused good / passed bad at each threshold"
    )
    print(f"{'set':10s} {'method':11s} " + " ".join(f"{'>= ' + format(t, 'g'):>14s}" for t in THRESHOLDS))
    for name, by in results.items():
        for m, s in by.items():
            if not np.isfinite(s["accepted_success"]) and s["accepted"] == 0:
                continue
            cells = []
            for t in THRESHOLDS:
                c = s["separation"][f"{t:g}"]
                cells.append(f"{c['refused_good']}/{c['good']} {c['passed_bad']}/{c['bad']}")
            print(f"{name:10s} {m:11s} " + " ".join(f"{x:>14s}" for x in cells))
    for name, by in results.items():
        for m, s in by.items():
            sep = s["separation_consistency"]
            if not sep:
                continue
            print(
                f"{name:10s} {m:11s} AUC confidence {s['auc_confidence']:.3f}, "
                f"-consistency {s['auc_consistency']:.3f}"
            )
            for key, c in sep.items():
                print(f"{'':22s} {key:26s} {c['refused_good']}/{c['good']} {c['passed_bad']}/{c['bad']}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": vars(args) | {"data": str(args.data), "json": str(args.json)},
                    "summary": results,
                    "pairs": per_pair,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
