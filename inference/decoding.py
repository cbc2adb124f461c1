"""How the network's output becomes camera-frame points: one object built once from the
configuration and handed to test.py, the evaluation during training, the predictor of one
image (demo.py, videos) and the benchmarks.

The network outputs crop-normalised uvd per row (docs/method.md §3); decoding maps (u, v)
back through the crop's affine and back-projects with the intrinsics at the wrist depth plus
the relative depth times depth_box (§7). `fx_as_fy` and `as_published` are the published
code's choices (§11): fx for both axes, and (as_published) u, v floored to whole crop pixels.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch

from inference.precision import autocast
from inference.root_depth import place_at_root_depth
from utils.transforms import decode_uvd


@dataclass(frozen=True)
class Decoding:
    """The network's input size, output rows, decoding switches and precision.

    Attributes:
        crop_size: network input (height, width), px (config input_img_shape).
        depth_box: m per normalised depth unit (config depth_box).
        num_joint: joint rows at the end of the output; the rows before them are vertices.
        fx_as_fy: back-project with fx for both axes (config fx_as_fy, implied by as_published).
        as_published: also floor u, v to whole crop pixels (config as_published).
        amp_dtype: autocast dtype of the forward pass (None: fp32; inference.precision).
        channels_last: feed the image in channels_last layout (CUDA).
    """
    # The config fields of these names that decode the output, each listed once here:
    # ENCODED_WITH also encoded the training targets (dataset Preprocessing), so a network keeps
    # them (an exported file stores them); SWITCHES are the decoding choices a run may make on
    # any network, ONNX files included (docs/method.md §11).
    ENCODED_WITH = ('depth_box', 'fx_as_fy')
    SWITCHES = ('fx_as_fy', 'as_published')

    crop_size: Tuple[int, int]
    depth_box: float
    num_joint: int
    fx_as_fy: bool = False
    as_published: bool = False
    amp_dtype: Optional[torch.dtype] = None
    channels_last: bool = False

    @classmethod
    def from_config(cls, cfg, device, amp_dtype=None):
        """The decoding of a resolved configuration on `device`; amp_dtype as resolved (and
        logged) by inference.network.inference_amp or inference.precision.log_amp."""
        return cls(crop_size=tuple(cfg.input_img_shape), depth_box=cfg.depth_box,
                   num_joint=cfg.num_joint, fx_as_fy=cfg.fx_as_fy or cfg.as_published,
                   as_published=cfg.as_published, amp_dtype=amp_dtype,
                   channels_last=cfg.channels_last and device.type == 'cuda')

    def forward(self, model, img):
        """The network's coords for a batch of crops: B x 3 x H x W -> B x rows x 3 float32
        numpy (crop-normalised uvd), run in this decoding's precision and memory layout."""
        return self.device_coords(model, img).cpu().numpy()

    def device_coords(self, model, img):
        """`forward` before the copy to the host: a B x rows x 3 float32 tensor on img's
        device."""
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        with autocast(img.device, self.amp_dtype):
            coords = model({'img': img.contiguous(memory_format=memory_format)})['coords']
        return coords.float()

    def to_camera(self, coords, root_depth, crop2img, K):
        """Crop-normalised uvd -> camera-frame xyz, meters (utils.transforms.decode_uvd).

        Args:
            coords: (..., rows, 3). root_depth: wrist depth(s), m. crop2img: (..., 2, 3)
            crop -> image affine. K: (..., 3, 3) intrinsics.
        """
        return decode_uvd(coords, root_depth, crop2img, K, crop_size=self.crop_size,
                          depth_box=self.depth_box, fx_as_fy=self.fx_as_fy,
                          floor_uv=self.as_published)

    def split(self, xyz):
        """(..., rows, 3) -> (joints (..., num_joint, 3), vertices (..., rows - num_joint, 3))."""
        return xyz[..., -self.num_joint:, :], xyz[..., :-self.num_joint, :]

    def place_at(self, xyz_cam, root_depth, K):
        """Points moved so that the wrist (the first joint row) lies at `root_depth` (m) along
        its ray, each point keeping its pixel and its depth relative to the wrist.

        Args:
            xyz_cam: (..., rows, 3) m. root_depth: (...) m. K: (..., 3, 3) intrinsics.
        """
        return place_at_root_depth(xyz_cam, root_depth, K, self.fx_as_fy,
                                   num_joint=self.num_joint)

    def place_auto(self, xyz_cam, K, root_prior, names=None, keep_degenerate=False):
        """Points moved to the wrist depth where the predicted skeleton has root_prior's metric
        size (`--root_depth auto`, `--root_source auto`; inference.root_depth).

        Args:
            xyz_cam: (B, rows, 3) m, at the given (e.g. RootNet) wrist depths. K: (B, 3, 3).
            root_prior: inference.root_depth.RootDepthPrior. names: what an error calls each.
            keep_degenerate: a degenerate prediction (collapsed joints) keeps its given depth
                instead of raising ImageInputError.
        Returns:
            (points (B, rows, 3) m, wrist depths (B,) m, degenerate mask (B,)).
        """
        joints = self.split(xyz_cam)[0]
        if keep_degenerate:
            depth, bad = root_prior.root_depth_or_keep(joints, K, self.fx_as_fy)
        else:
            depth = root_prior.root_depth(joints, K, self.fx_as_fy, names)
            bad = np.zeros(np.shape(depth), dtype=bool)
        return self.place_at(xyz_cam, depth, K), depth, bad
