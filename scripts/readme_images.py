"""Regenerate the README's pictures from a finished ``avworld demo`` run.

    python scripts/readme_images.py avworld-demo docs/images

Writes ``demo-report.png`` (the top of ``<root>/report/index.html`` in headless Chromium via
Playwright, Debian's ``/usr/bin/chromium``) and ``demo-rollout.png`` (a frame from the middle of
the rollout video, decoded with PyAV).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import av
import numpy as np
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")


def report_screenshot(report: Path, out: Path, width: int = 1100, height: int = 1400) -> None:
    """Screenshot the first ``height`` pixels of ``report`` at ``width``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(report.resolve().as_uri())
        page.wait_for_load_state("load")
        # Show a frame of each video rather than the black box of a video not yet played.
        page.evaluate(
            """() => Promise.all([...document.querySelectorAll('video')].map(v => new Promise(done => {
                v.addEventListener('seeked', done, {once: true});
                v.currentTime = v.duration / 2;
            })))"""
        )
        page.wait_for_timeout(1000)  # let the seek's loading spinner fade
        page.screenshot(path=str(out), full_page=False)
        browser.close()


def video_still(video: Path, out: Path, fraction: float = 0.5) -> None:
    """Save the frame at ``fraction`` of ``video``'s length."""
    with av.open(str(video)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    if not frames:
        raise ValueError(f"{video}: no video frames")
    frame: np.ndarray = frames[min(len(frames) - 1, int(fraction * len(frames)))]
    Image.fromarray(frame).save(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the demo root (demo.root)")
    parser.add_argument("out", type=Path, help="where the PNGs go")
    args = parser.parse_args(argv)
    report = args.root / "report" / "index.html"
    if not report.is_file():
        print(f"{report}: no report; run `avworld demo` first", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    report_screenshot(report, args.out / "demo-report.png")
    video_results = sorted(args.root.glob("video-*/result.json"), key=lambda f: f.stat().st_mtime)
    if not video_results:
        print(f"{args.root}: no finished video stage", file=sys.stderr)
        return 1
    video = Path(json.loads(video_results[-1].read_text())["video"])
    video_still(video, args.out / "demo-rollout.png")
    print(f"wrote {args.out / 'demo-report.png'} and {args.out / 'demo-rollout.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
