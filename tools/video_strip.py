"""The tracking picture of docs/own_images.md: a synthetic clip's frames with a tracker's boxes.

    python -m tools.video_strip --clip DIR --out docs/video_strip.png [--jsonl DEMO.jsonl]
        [--label TEXT] [--frames 0,5,10,14,19,23] [--cols 3] [--scale 1.0]

On each chosen frame of the clip (python -m synthetic.clip) it draws, in green, the box that
the tracking loop (wild.tracking.track) crops with when the ground-truth joints stand in for
the network (synthetic.clip.TruthPredictor, started from the true first box); with --jsonl,
in orange, the boxes a demo.py run on the same clip cropped with (its JSON lines), and the
IoU of those with the true box. A legend under the frames says which is which.
"""
import argparse
import json
import os
import sys

import cv2
import numpy as np

from wild.tracking import track
from synthetic.clip import FRAMES_DIR, TruthPredictor, read_clip
from utils.vis.drawing import make_grid
from utils.files.images import save_image
from utils.transforms import HandBox
from wild.boxes import box_iou, box_xywh
from utils.files.video import FolderFrames

TRUTH_RGB = (40, 200, 40)  # boxes tracked with the ground-truth joints
RUN_RGB = (255, 140, 0)  # boxes of the demo.py run
LEGEND_HEIGHT_PX = 44
CAPTION_HEIGHT_PX = 20
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _rectangle(img, box, color, thickness):
    x, y, w, h = (int(round(v)) for v in box_xywh(box))
    cv2.rectangle(img, (x, y), (x + w, y + h), color, thickness, cv2.LINE_AA)


def _caption(width, text):
    """A white bar with black text, to sit above a frame."""
    bar = np.full((CAPTION_HEIGHT_PX, width, 3), 255, dtype=np.uint8)
    cv2.putText(bar, text, (4, CAPTION_HEIGHT_PX - 6), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return bar


def _legend(width, lines):
    """A white bar with one coloured line of text per (text, rgb)."""
    bar = np.full((LEGEND_HEIGHT_PX // 2 * len(lines) + 4, width, 3), 255, dtype=np.uint8)
    for k, (text, color) in enumerate(lines):
        cv2.putText(bar, text, (6, 16 + 22 * k), FONT, 0.5, color, 1, cv2.LINE_AA)
    return bar


def make_strip(clip_dir, frames, jsonl=None, label='demo.py run', cols=3, scale=1.0):
    """The picture (H x W x 3 uint8 RGB) and {'truth_iou', 'run_iou'} per frame of the clip."""
    clip = read_clip(clip_dir)
    truth_results = [r for _, r in track(FolderFrames(os.path.join(clip_dir, FRAMES_DIR)),
                                         TruthPredictor(clip), clip['boxes'][0])]
    truth_iou = [box_iou(r.box, clip['boxes'][r.index]) for r in truth_results]
    run_boxes, run_iou = None, None
    if jsonl:
        with open(jsonl) as f:
            records = [json.loads(line) for line in f]
        if len(records) != len(truth_results):
            raise ValueError(f'{jsonl} has {len(records)} frames, the clip {len(truth_results)}')
        run_boxes = [HandBox(np.array([x + w / 2, y + h / 2]), w)
                     for x, y, w, h in (r['box'] for r in records)]
        run_iou = [box_iou(box, true) for box, true in zip(run_boxes, clip['boxes'])]
    cells = []
    for k in frames:
        img = cv2.imread(clip['files'][k])[:, :, ::-1].copy()
        _rectangle(img, truth_results[k].box, TRUTH_RGB, 2)
        text = f'frame {k}'
        if run_boxes is not None:
            _rectangle(img, run_boxes[k], RUN_RGB, 2)
            text += f', orange IoU {run_iou[k]:.2f}'
        if scale != 1.0:
            img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        cells.append(np.concatenate([_caption(img.shape[1], text), img]))
    grid = make_grid(cells, cols, pad_value=255)
    lines = [(f'green: box tracked with the ground-truth joints (min IoU {min(truth_iou):.2f} '
              f'over {len(truth_iou)} frames)', TRUTH_RGB)]
    if run_boxes is not None:
        lines.append((f'orange: box tracked by {label} (IoU with the true box)', RUN_RGB))
    return np.concatenate([grid, _legend(grid.shape[1], lines)]), {'truth_iou': truth_iou,
                                                                     'run_iou': run_iou}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--clip', required=True, help='folder written by python -m synthetic.clip')
    parser.add_argument('--out', required=True, help='picture to write (.png)')
    parser.add_argument('--jsonl', help='JSON lines of a demo.py run on the clip\'s video')
    parser.add_argument('--label', default='demo.py run', help='what --jsonl came from')
    parser.add_argument('--frames', default='0,5,10,14,19,23', help='frame indices to show')
    parser.add_argument('--cols', type=int, default=3, help='frames per row (default 3)')
    parser.add_argument('--scale', type=float, default=1.0, help='resize the frames by this')
    args = parser.parse_args(argv)
    frames = [int(k) for k in args.frames.split(',')]
    picture, iou = make_strip(args.clip, frames, args.jsonl, args.label, args.cols, args.scale)
    save_image(args.out, picture)
    print(f'wrote {args.out} ({os.path.getsize(args.out) / 1024:.0f} KB)')
    for name, values in iou.items():
        if values is not None:
            print(f'{name}: min {min(values):.3f}, per frame {np.round(values, 2).tolist()}')


if __name__ == '__main__':
    sys.exit(main())
