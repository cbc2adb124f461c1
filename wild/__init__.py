"""Your own photos and videos (demo.py): intrinsics, hand boxes and tracking, the video loop,
MANO fitting and the records of each hand."""
