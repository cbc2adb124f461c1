"""The network on one image and hand box (demo.py, videos, the web app)."""
import logging

import numpy as np
import torch

from utils.errors import ImageInputError
from utils.preprocessing import crop_and_augment, normalize
from utils.transforms import project

logger = logging.getLogger(__name__)


class HandPredictor:
    """The network on one image and hand box: crop (docs/method.md §2), forward, decode (§7).

    A callable `(img_bgr, box) -> (xyz_cam, joints_uv)`, the form wild.tracking's loop and
    wild.boxes.refine_box take.

    Args:
        model: what `load_inference_model` returns (PyTorch or ONNX Runtime, same interface).
        K: 3 x 3 intrinsics of the images, pixels.
        decoding: inference.decoding.Decoding (input size, depth box, joints, the published
            decoding switches, precision).
        device: torch device of the network's input.
        root_depth: wrist depth, m (the network predicts depths relative to it), or 'auto':
            the depth where the predicted skeleton has the metric size of `root_prior`
            (inference.root_depth.RootDepthPrior); a degenerate prediction raises
            utils.errors.ImageInputError.
        root_prior: the RootDepthPrior of root_depth='auto'.
        left: the images show left hands: each image is mirrored (u -> W - 1 - u), the network
            (trained on right hands) predicts, and the points are mirrored back (x -> -x in the
            camera frame; draw the mesh with re-wound faces).
    """

    def __init__(self, model, K, decoding, device=torch.device('cpu'), *, root_depth,
                 root_prior=None, left=False):
        if root_depth == 'auto' and root_prior is None:
            raise ValueError("root_depth='auto' needs root_prior (inference.root_depth.RootDepthPrior)")
        self.model = model.eval()
        self.K = np.asarray(K, dtype=np.float64)
        self.decoding, self.device = decoding, device
        self.root_depth, self.root_prior, self.left = root_depth, root_prior, left
        self.fallback_depth = None  # m: root_depth='auto' places a degenerate prediction here, if set
        self.root_source = 'given' if root_depth != 'auto' else None  # of the last prediction

    def _place_auto(self, xyz_cam, K, name):
        """The prediction at its auto root depth; a degenerate one raises ImageInputError, or,
        with `fallback_depth` set (videos), goes to that depth (logged; root_source says it)."""
        try:
            xyz_cam = self.decoding.place_auto(xyz_cam, K, self.root_prior, names=[name])[0]
            self.root_source = 'auto'
        except ImageInputError as err:
            if self.fallback_depth is None:
                raise
            logger.warning('%s: placed at %.3f m instead', err, self.fallback_depth)
            xyz_cam = self.decoding.place_at(xyz_cam, self.fallback_depth, K)
            self.root_source = 'fallback'
        return xyz_cam

    @torch.inference_mode()
    def __call__(self, img_bgr, box, name='image'):
        """Predict the hand in `box` of one image.

        Args:
            img_bgr: H x W x 3 uint8 BGR image.
            box: (center (2,), side) hand box in image pixels (utils.transforms.HandBox).
            name: what an error message calls the image.
        Returns:
            xyz_cam: 799 x 3 float64, meters, camera frame (rows 0..777 vertices, 778..798
                the 21 joints; num_vert + num_joint rows in general); joints_uv: num_joint x 2
                float64, the joints' image pixels.
        """
        center, side = box
        center = np.asarray(center, dtype=np.float64)
        K = self.K
        if self.left:
            # In the mirrored image the principal point's column is W - 1 - cx; decoding with
            # it and negating x gives the points of the original image.
            width = img_bgr.shape[1]
            img_bgr = img_bgr[:, ::-1].copy()
            center = np.array([width - 1 - center[0], center[1]])
            K = K.copy()
            K[0, 2] = width - 1 - K[0, 2]
        decoding = self.decoding
        crop, _, crop2img = crop_and_augment(img_bgr, center, side, decoding.crop_size)
        img = torch.from_numpy(normalize(crop))[None].to(self.device)
        coords = decoding.forward(self.model, img)[0]  # (799, 3)
        auto = self.root_depth == 'auto'
        xyz_cam = decoding.to_camera(coords, 1.0 if auto else self.root_depth, crop2img, K)
        if auto:  # the pixels and relative depths stay; the wrist moves along its ray
            xyz_cam = self._place_auto(xyz_cam, K, name)
        if self.left:
            xyz_cam = xyz_cam * np.array([-1.0, 1.0, 1.0])
        joints_uv = project(decoding.split(xyz_cam)[0], self.K, decoding.fx_as_fy)[:, :2]
        return xyz_cam, joints_uv
