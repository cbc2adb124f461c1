"""MANO model constants, named once (docs/method.md §9).

Index lists refer to MANO's internal joint order unless the name says otherwise.
"""

NUM_VERTS = 778
NUM_FACES = 1538
NUM_MANO_JOINTS = 16  # regressed joints: wrist + 3 per finger
NUM_JOINTS = 21  # 16 regressed + 5 fingertips, FreiHAND order
NUM_BETAS = 10
NUM_POSE = 48  # 3 global axis-angle + 15 joints x 3
WRIST_RING_SIZE = 16  # vertices on the wrist opening (Euler: V - E + F = 1)

# MANO internal joint order: 0 wrist; 1-3 index; 4-6 middle; 7-9 pinky; 10-12 ring; 13-15 thumb.
MANO_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
KINTREE_ROOT_PARENT = 2 ** 32 - 1  # how the official files store the root's parent (uint32 -1)

# Fingertip vertices, order (thumb, index, middle, ring, pinky).
TIP_VERTS_MANOPTH_RIGHT = (745, 317, 444, 556, 673)  # manopth, right hand
TIP_VERTS_MANOPTH_LEFT = (745, 317, 445, 556, 673)  # manopth, left hand
TIP_VERTS_FREIHAND = (744, 320, 443, 555, 672)  # FreiHAND ground truth (docs/method.md §1)

# Index list taking [16 MANO joints, thumb, index, middle, ring, pinky tips] to FreiHAND order.
MANO_TO_FREIHAND = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)
