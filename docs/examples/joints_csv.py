"""A demo output (docs/development.md, "Adding a demo output"): every hand's 2D joints as CSV.

A new output is a writer `(stem, scene) -> path or None` like this one in wild/outputs.py and
one line in OUTPUTS (with a per-video opener as its second field, or `no_video='why'`):

    OUTPUTS = {..., 'joints_csv': Output(write_joints_csv, no_video='a CSV per frame is not written')}

then `python demo.py --input hand.jpg --checkpoint CKPT --outputs json,joints_csv` writes
<name>_joints.csv beside the record (tests/test_docs_examples.py runs it). `scene` is a
wild.outputs.Scene: the image, its hands (wild.records.Hand) and the mesh faces.
"""
import csv

from utils.files.atomic import atomic_open

COLUMNS = ('hand', 'side', 'joint', 'u_px', 'v_px')


def write_joints_csv(stem, scene):
    """<stem>_joints.csv: one row per hand and joint, image pixels (the record's joints_2d,
    which rounds them to 0.01 px)."""
    path = f'{stem}_joints.csv'
    with atomic_open(path, 'w', newline='') as f:  # no half-written file under its name
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for k, hand in enumerate(scene.hands):
            for joint, (u, v) in enumerate(hand.joints_uv):
                writer.writerow((k, hand.side, joint, float(u), float(v)))
    return path
