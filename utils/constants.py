"""SAR's constants with their units, named once (docs/method.md §1-3, 7); a data set's own
constants live in its package (dataset/<name>/)."""

# FreiHAND joint order (21): wrist; thumb 1-4; index 1-4; middle 1-4; ring 1-4; pinky 1-4 (tip last).
JOINT_NAMES = (
    'wrist',
    'thumb1', 'thumb2', 'thumb3', 'thumb4',
    'index1', 'index2', 'index3', 'index4',
    'middle1', 'middle2', 'middle3', 'middle4',
    'ring1', 'ring2', 'ring3', 'ring4',
    'pinky1', 'pinky2', 'pinky3', 'pinky4',
)
ROOT_JOINT_IDX = 0  # wrist
# Bones as (parent, child) pairs in FreiHAND order, for drawing skeletons.
SKELETON = tuple(
    pair
    for finger in range(5)
    for pair in ((0 if k == 0 else 1 + 4 * finger + k - 1, 1 + 4 * finger + k) for k in range(4))
)
SCALE_BONE = (9, 10)  # training_scale.json: length (m) of middle MCP -> PIP

# The training framing (docs/method.md §2): a hand box of TRAINING_BOX_SIZE px centred at
# TRAINING_BOX_CENTER in a square image of TRAINING_IMAGE_SIZE px, FreiHAND's fixed box. Crops of
# other images (the demo's centred box) keep its proportion.
TRAINING_IMAGE_SIZE = 224  # px, side of the square image
TRAINING_BOX_CENTER = (112.0, 112.0)  # px, the hand box's centre in it
TRAINING_BOX_SIZE = 130.0  # px, the hand box's side

# Wrist-relative depth per normalised target unit (docs/method.md §3), m: the published value
# and config.py's default (depth_box).
DEPTH_BOX_M = 0.3

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB
IMAGENET_STD = (0.229, 0.224, 0.225)  # RGB
