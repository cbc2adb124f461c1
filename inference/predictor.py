"""The network on one image and hand box (demo.py, videos, the web app)."""
import logging

import numpy as np
import torch

from inference.precision import autocast
from inference.root_depth import place_at_root_depth
from manopth.constants import NUM_JOINTS  # default of num_joint: the last 21 rows of 799
from utils.errors import ImageInputError
from utils.preprocessing import crop_and_augment, normalize
from utils.transforms import decode_uvd, project

logger = logging.getLogger(__name__)


class HandPredictor:
    """The network on one image and hand box: crop (docs/method.md §2), forward, decode (§7).

    A callable `(img_bgr, box) -> (xyz_cam, joints_uv)`, the form wild.video's tracking loop
    and wild.tracking.refine_box take.

    Args:
        model: what `load_inference_model` returns (PyTorch or ONNX Runtime, same interface).
        K: 3 x 3 intrinsics of the images, pixels.
        crop_size: network input (height, width), px (cfg.input_img_shape).
        depth_box: m per normalised depth unit (cfg.depth_box).
        root_depth: wrist depth, m (the network predicts depths relative to it), or 'auto':
            the depth where the predicted skeleton has the metric size of `root_prior`
            (inference.root_depth.RootDepthPrior); a degenerate prediction raises
            utils.errors.ImageInputError.
        root_prior: the RootDepthPrior of root_depth='auto'.
        fx_as_fy: decode with fx for both axes (cfg.fx_as_fy, docs/method.md §11).
        as_published: decode exactly as the published code (cfg.as_published: fx for both
            axes and u, v floored to whole crop pixels, utils.transforms.decode_uvd).
        num_joint: joint rows at the end of the network output (cfg.num_joint).
        left: the images show left hands: each image is mirrored (u -> W - 1 - u), the network
            (trained on right hands) predicts, and the points are mirrored back (x -> -x in the
            camera frame; draw the mesh with re-wound faces).
        device: torch device of the network's input.
        channels_last: feed the image in channels_last layout (CUDA).
        amp_dtype: autocast dtype of the forward pass (`inference_amp`; None: fp32).
    """

    def __init__(self, model, K, *, crop_size, depth_box, root_depth, fx_as_fy=False,
                 as_published=False, num_joint=NUM_JOINTS, left=False,
                 device=torch.device('cpu'), channels_last=False, amp_dtype=None, root_prior=None):
        if root_depth == 'auto' and root_prior is None:
            raise ValueError("root_depth='auto' needs root_prior (inference.root_depth.RootDepthPrior)")
        self.model = model.eval()
        self.K = np.asarray(K, dtype=np.float64)
        self.crop_size = tuple(crop_size)
        self.depth_box, self.root_depth = depth_box, root_depth
        self.fx_as_fy, self.as_published = fx_as_fy or as_published, as_published
        self.num_joint = num_joint
        self.left, self.root_prior = left, root_prior
        self.fallback_depth = None  # m: root_depth='auto' places a degenerate prediction here, if set
        self.root_source = 'given' if root_depth != 'auto' else None  # of the last prediction
        self.device = device
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.amp_dtype = amp_dtype

    def _place_auto(self, xyz_cam, K, name):
        """The prediction at its auto root depth; a degenerate one raises ImageInputError, or,
        with `fallback_depth` set (videos), goes to that depth (logged; root_source says it)."""
        try:
            xyz_cam = self.root_prior.place(xyz_cam, K, self.fx_as_fy, names=[name])[0]
            self.root_source = 'auto'
        except ImageInputError as err:
            if self.fallback_depth is None:
                raise
            logger.warning('%s: placed at %.3f m instead', err, self.fallback_depth)
            xyz_cam = place_at_root_depth(xyz_cam, self.fallback_depth, K, self.fx_as_fy)
            self.root_source = 'fallback'
        return xyz_cam

    @torch.inference_mode()
    def __call__(self, img_bgr, box, name='image'):
        """Predict the hand in `box` of one image.

        Args:
            img_bgr: H x W x 3 uint8 BGR image.
            box: (center (2,), side) hand box in image pixels (wild.tracking.HandBox).
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
        crop, _, crop2img = crop_and_augment(img_bgr, center, side, self.crop_size)
        img = torch.from_numpy(normalize(crop))[None].to(self.device)
        with autocast(self.device, self.amp_dtype):
            coords = self.model({'img': img.contiguous(memory_format=self.memory_format)})['coords']
        coords = coords[0].float().cpu().numpy()  # (799, 3)
        auto = self.root_depth == 'auto'
        xyz_cam = decode_uvd(coords, 1.0 if auto else self.root_depth, crop2img, K,
                             crop_size=self.crop_size, depth_box=self.depth_box,
                             fx_as_fy=self.fx_as_fy, floor_uv=self.as_published)
        if auto:  # the pixels and relative depths stay; the wrist moves along its ray
            xyz_cam = self._place_auto(xyz_cam, K, name)
        if self.left:
            xyz_cam = xyz_cam * np.array([-1.0, 1.0, 1.0])
        joints_uv = project(xyz_cam[-self.num_joint:], self.K, self.fx_as_fy)[:, :2]
        return xyz_cam, joints_uv
