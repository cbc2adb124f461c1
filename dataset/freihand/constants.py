"""FreiHAND's own constants (docs/data.md): its image size, the four training image versions and
the RootNet file published for it. Its fixed hand box is the training framing every data set
and the demo share (utils/constants.py TRAINING_BOX_CENTER, TRAINING_BOX_SIZE)."""
from utils.constants import TRAINING_IMAGE_SIZE

FREIHAND_IMG_SIZE = TRAINING_IMAGE_SIZE  # px, square RGB images: the training framing is FreiHAND's
FREIHAND_VERSIONS = ('gs', 'hom', 'sample', 'auto')  # training image versions, file index i + N*v
ROOTNET_FILE = 'bbox_root_freihand_output.json'  # wrist depths and boxes of the evaluation set
