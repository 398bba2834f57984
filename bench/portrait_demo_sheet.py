"""The demo's contact sheet (docs/portrait/demo.png): `fakelab demo`'s generated driving
clip and the astronaut animated by the portrait model at her native 512x512, 8 frames.

    python bench/portrait_demo_sheet.py [-o docs/portrait/demo.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2

from fakelab.animation.portrait import PortraitAnimator
from fakelab.demo import FPS, SECONDS, astronaut, driving_clip, grace_hopper
from fakelab.faces import largest_face
from portrait_common import REPO, contact_sheet, face_view


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=REPO / "docs" / "portrait" / "demo.png")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    driving = driving_clip(grace_hopper(), round(SECONDS * FPS))
    source = astronaut()
    animated = list(PortraitAnimator(fps=FPS).animate(source, driving))
    driving_view = face_view(largest_face(driving[0], "the driving clip"), driving[0].shape)
    contact_sheet(
        [("driving", driving, driving_view), ("portrait", animated, face_view(largest_face(source, "the astronaut"), source.shape))],
        args.output,
        tile=160,
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
