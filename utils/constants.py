"""FreiHAND and SAR constants with their units, named once (docs/method.md §1-3, 7)."""

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

FREIHAND_IMG_SIZE = 224  # px, square RGB images
FREIHAND_VERSIONS = ('gs', 'hom', 'sample', 'auto')  # training image versions, file index i + N*v
HAND_BOX_CENTER = (112.0, 112.0)  # px, fixed hand box on the 224x224 image
HAND_BOX_SIZE = 130.0  # px, side of the fixed hand box

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB
IMAGENET_STD = (0.229, 0.224, 0.225)  # RGB

ROOTNET_FILE = 'bbox_root_freihand_output.json'
