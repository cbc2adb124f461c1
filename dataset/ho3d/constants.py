"""HO3D v2 / v3 constants with their units (docs/ho3d.md §1-3)."""

HO3D_VERSIONS = ('v2', 'v3')
HO3D_IMG_SIZE = (480, 640)  # px (height, width)
# The official db_size of each split: the evaluator asserts pred.json has this many entries.
HO3D_SPLIT_SIZES = {'v2': {'train': 66034, 'evaluation': 11524},
                    'v3': {'train': 78297, 'evaluation': 20137}}
# HO3D joint order = MANO's 16 joints then the tips of thumb, index, middle, ring, pinky: the
# list manopth reorders to FreiHAND's, so FreiHAND-order joints = HO3D-order joints[HO3D_TO_FREIHAND].
HO3D_TO_FREIHAND = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)
FREIHAND_TO_HO3D = tuple(HO3D_TO_FREIHAND.index(k) for k in range(21))  # the inverse permutation
# HO3D's 3D annotations are in the OpenGL camera frame (the hand at negative z); the network's
# camera frame (x right, y down, z forward) is diag(1, -1, -1) times it, and back.
OPENGL_TO_CAMERA = (1.0, -1.0, -1.0)
