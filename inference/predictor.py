"""The network on images and hand boxes: one predictor for photos, videos and the web app."""
import logging

import numpy as np
import torch

from inference.decoding import Decoding
from inference.network import inference_amp, load_inference_model
from inference.root_depth import root_prior_for
from utils.errors import ImageInputError
from utils.preprocessing import crop_and_augment, normalize
from utils.transforms import project

logger = logging.getLogger(__name__)


class HandPredictor:
    """The network and its decoding on any image and hand box: crop (docs/method.md §2),
    forward, decode (§7), place at the wrist depth.

    `predict(img_bgr, box, K, root_depth, ...)` predicts one hand; `for_image(K, root_depth,
    left)` gives the callable `(img_bgr, box) -> (xyz_cam, joints_uv)` of images with those
    intrinsics, the form wild.tracking's loop and wild.boxes.refine_box take.

    Args:
        model: what `load_inference_model` returns (PyTorch or ONNX Runtime, same interface).
        decoding: inference.decoding.Decoding (input size, depth box, joints, the published
            decoding switches, precision).
        device: torch device of the network's input.
        root_prior: the inference.root_depth.RootDepthPrior of root_depth='auto' (the depth
            where the predicted skeleton has its metric size).
        faces: F x 3 right-hand faces (MANO's), for the writers; hand_scale_m: the prior's
            size, for the records; mano_root: the MANO folder (wild.mano_fit fits with it).
    """

    def __init__(self, model, decoding, device=torch.device('cpu'), *, root_prior=None,
                 faces=None, hand_scale_m=None, mano_root=None):
        self.model = model.eval()
        self.decoding, self.device, self.root_prior = decoding, device, root_prior
        self.faces, self.hand_scale_m, self.mano_root = faces, hand_scale_m, mano_root

    @classmethod
    def from_config(cls, model, cfg, mano, device):
        """The predictor of a loaded network, its resolved configuration (decoding fields,
        hand_scale_m, mano_root) and its utils.mano.MANO model."""
        return cls(model, Decoding.from_config(cfg, device, inference_amp(cfg, device)), device,
                   root_prior=root_prior_for(mano, cfg.hand_scale_m), faces=mano.faces,
                   hand_scale_m=cfg.hand_scale_m, mano_root=cfg.mano_root)

    def for_image(self, K, root_depth, left=False):
        """`predict(img_bgr, box, name='image') -> (xyz_cam, joints_uv)` of images with the
        intrinsics K, at root_depth (m or 'auto'), of `left` hands (see `predict`)."""
        def predict_one(img_bgr, box, name='image'):
            return self.predict(img_bgr, box, K, root_depth, left=left, name=name)[:2]
        return predict_one

    def _place_auto(self, xyz_cam, K, name, fallback_depth):
        """(points, root source) at the auto root depth; a degenerate prediction raises
        ImageInputError or, with fallback_depth (videos), goes to that depth (logged)."""
        try:
            return self.decoding.place_auto(xyz_cam, K, self.root_prior, names=[name])[0], 'auto'
        except ImageInputError as err:
            if fallback_depth is None:
                raise
            logger.warning('%s: placed at %.3f m instead', err, fallback_depth)
            return self.decoding.place_at(xyz_cam, fallback_depth, K), 'fallback'

    @torch.inference_mode()
    def predict(self, img_bgr, box, K, root_depth, *, left=False, fallback_depth=None,
                name='image'):
        """Predict the hand in `box` of one image.

        Args:
            img_bgr: H x W x 3 uint8 BGR image.
            box: (center (2,), side) hand box in image pixels (utils.transforms.HandBox).
            K: 3 x 3 intrinsics of the image, pixels.
            root_depth: wrist depth, m (the network predicts depths relative to it), or 'auto'
                (root_prior); a degenerate auto prediction raises utils.errors.ImageInputError,
                or goes to fallback_depth (m) when that is given.
            left: a left hand: the image is mirrored (u -> W - 1 - u), the network (trained on
                right hands) predicts, and the points are mirrored back (x -> -x in the camera
                frame; draw the mesh with re-wound faces).
            name: what an error message calls the image.
        Returns:
            xyz_cam: 799 x 3 float64, meters, camera frame (rows 0..777 vertices, 778..798
                the 21 joints; num_vert + num_joint rows in general); joints_uv: num_joint x 2
                float64, the joints' image pixels; root source: 'given', 'auto' or 'fallback'.
        """
        if root_depth == 'auto' and self.root_prior is None:
            raise ValueError("root_depth='auto' needs root_prior (inference.root_depth.RootDepthPrior)")
        center, side = box
        center = np.asarray(center, dtype=np.float64)
        K_image = K = np.asarray(K, dtype=np.float64)
        if left:
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
        auto = root_depth == 'auto'
        xyz_cam = decoding.to_camera(coords, 1.0 if auto else root_depth, crop2img, K)
        source = 'given'
        if auto:  # the pixels and relative depths stay; the wrist moves along its ray
            xyz_cam, source = self._place_auto(xyz_cam, K, name, fallback_depth)
        if left:
            xyz_cam = xyz_cam * np.array([-1.0, 1.0, 1.0])
        joints_uv = project(decoding.split(xyz_cam)[0], K_image, decoding.fx_as_fy)[:, :2]
        return xyz_cam, joints_uv, source


def load_predictor(cfg, device):
    """The HandPredictor of a resolved configuration (its checkpoint or ONNX file)."""
    from utils.mano import MANO
    mano = MANO(cfg.mano_root)
    return HandPredictor.from_config(load_inference_model(cfg, mano, device), cfg, mano, device)
