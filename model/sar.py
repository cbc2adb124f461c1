"""SAR: spatial-aware regression of the 3D hand mesh and joints from one RGB crop (docs/method.md §4, 5).

The default configuration has exactly the state-dict keys and shapes of the published model,
so the authors' checkpoint loads with `load_state_dict(ckpt['net'], strict=True)`.
"""

import copy

import numpy as np
import torch
from torch import nn

from model.backbone import (HIGH_STRIDE, MID_STRIDE, build_resnet, fold_batch_norms,
                            high_level_features, load_imagenet_state_dict, mid_level_features,
                            resnet_spec, use_inference_max_pools)
from model.heads import DEFAULT_HEAD, get_head
from model.loss import stage_losses

TEMPLATE_COORDS = 3  # xyz appended to every vertex's features


def consistent_sizes(input_img_shape):
    """heatmap_size and feature_size that fit a square input (sides divisible by 32).

    Returns:
        (heatmap_size, feature_size): side of the stride-8 map, pixel count of the stride-32 map.
    """
    side = input_img_shape[0]
    return side // MID_STRIDE, (side // HIGH_STRIDE) ** 2


def _is_positive_int(value):
    """True for Python or numpy integers above 0 (bool excluded)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


def check_config(backbone, num_stage, num_FMs, feature_size, heatmap_size, num_vert, num_joint,
                 input_img_shape):
    """Raise one ValueError listing every field that disagrees, with consistent values.

    The heatmaps must have the size of the stride-8 features they are fused with, and each
    vertex gets num_FMs maps of the stride-32 features, flattened (feature_size pixels each).
    """
    resnet_spec(backbone)  # ValueError naming the valid backbones
    problems = []
    for name, value in (('num_stage', num_stage), ('num_FMs', num_FMs),
                        ('feature_size', feature_size), ('heatmap_size', heatmap_size),
                        ('num_vert', num_vert), ('num_joint', num_joint)):
        if not _is_positive_int(value):
            problems.append(f'{name}={value!r} must be a positive integer')
    try:
        shape = tuple(input_img_shape)
    except TypeError:
        shape = ()
    if (len(shape) != 2 or not all(_is_positive_int(side) for side in shape)
            or shape[0] != shape[1] or shape[0] % HIGH_STRIDE != 0):
        problems.append(f'input_img_shape={input_img_shape!r} must be square with sides divisible '
                        f'by {HIGH_STRIDE}, e.g. (128, 128) or (256, 256)')
    elif _is_positive_int(heatmap_size) and _is_positive_int(feature_size):
        good_sizes = consistent_sizes(shape)
        wrong = [f'{name}={value!r}' for name, value, good in
                 (('heatmap_size', heatmap_size, good_sizes[0]),
                  ('feature_size', feature_size, good_sizes[1])) if value != good]
        if wrong:
            verb = 'disagree' if len(wrong) > 1 else 'disagrees'
            message = (f'{" and ".join(wrong)} {verb} with input_img_shape={shape} (heatmaps '
                       f'have the side of the stride-{MID_STRIDE} features, feature_size is the '
                       f'pixel count of the stride-{HIGH_STRIDE} features): use heatmap_size='
                       f'{good_sizes[0]} and feature_size={good_sizes[1]}')
            implied_side = heatmap_size * MID_STRIDE
            if (implied_side % HIGH_STRIDE == 0
                    and consistent_sizes((implied_side,)) == (heatmap_size, feature_size)):
                message += f', or input_img_shape={(implied_side, implied_side)}'
            problems.append(message)
    if problems:
        raise ValueError('inconsistent SAR configuration: ' + '; '.join(problems))


def _as_numpy(array):
    """numpy view of a numpy array, tensor (any device) or nested list."""
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def _template_tensor(template, num_vert):
    """Template vertices as a float32 num_vert x 3 tensor; ValueError on a wrong shape."""
    template_np = _as_numpy(template)
    if template_np.shape != (num_vert, 3) or not np.issubdtype(template_np.dtype, np.floating):
        raise ValueError(f'template must be a float array of shape ({num_vert}, 3) (num_vert '
                         f'vertices, meters); got dtype {template_np.dtype}, shape '
                         f'{template_np.shape}. Pass the MANO v_template or change num_vert.')
    return torch.tensor(template_np, dtype=torch.float32)


def _faces_tensor(faces, num_vert):
    """Faces as a long F x 3 tensor; ValueError on a wrong shape, dtype or index range."""
    faces_np = _as_numpy(faces)
    if faces_np.ndim != 2 or faces_np.shape[1] != 3 or not np.issubdtype(faces_np.dtype,
                                                                          np.integer):
        raise ValueError(f'faces must be an integer array of shape (F, 3); got dtype '
                         f'{faces_np.dtype}, shape {faces_np.shape}. Pass the MANO faces (f).')
    if faces_np.size and (faces_np.min() < 0 or faces_np.max() >= num_vert):
        raise ValueError(f'faces index vertices {faces_np.min()}..{faces_np.max()}, outside '
                         f'[0, {num_vert}) for num_vert={num_vert}')
    return torch.tensor(faces_np.astype(np.int64))


class SAR(nn.Module):
    """Spatial-Aware Regression network: image crop -> uvd of 778 vertices + 21 joints.

    Structure (docs/method.md §4): a shared ResNet stem (`extract_mid`, stride 8), then per stage its own
    ResNet layer3+4 (`extract_high[i]`), the spatial-aware graph builder (`saigb[i]`) and the
    graph-based 2.5D regressor (`gbbmr[i]`); stage i > 0 first fuses the previous stage's joint
    heatmaps into the mid features (`fuse[i-1]`, 1x1 conv).

    Initialisation: the ResNet parts keep torchvision's initialisation (or ImageNet weights
    with `pretrained_backbone=True`, each part from its own copy); every other plain layer
    (Conv2d, Linear) keeps PyTorch's default initialisation as in the published code; the
    graph adjacencies start as the identity.

    Args:
        template: num_vert x 3 template vertices in meters (numpy or tensor), kept as a
            non-persistent buffer (not in the state dict) and appended to the vertex features.
        faces: F x 3 integer vertex indices (MANO 1538 x 3) for the mesh losses, kept as a
            non-persistent long buffer.
        backbone: 'resnet18', 'resnet34', 'resnet50', 'resnet101' or 'resnet152'.
        num_stage: number of refinement stages (>= 1); every stage's output is supervised.
        num_FMs: feature maps per vertex in the graph builder.
        feature_size: pixels of the stride-32 feature map, (input side / 32) ** 2.
        heatmap_size: side of the heatmaps, input side / 8.
        num_vert, num_joint: rows of the output (vertices first).
        input_img_shape: (H, W) of the input crop, square with sides divisible by 32.
        pretrained_backbone: load ImageNet weights (torch hub cache; RuntimeError naming the
            file to place there if it is missing and cannot be downloaded).
        head: the SAIGB + GBBMR implementation, a name of model/heads.HEADS: 'fused' (the
            fast path of model/layers.py) or 'reference' (docs/method.md §4 as written); the
            same state dict either way.
    Raises:
        ValueError if the sizes disagree, naming the fields and consistent values, or for an
        unknown head.
    """

    def __init__(self, template, faces, backbone='resnet34', num_stage=2, num_FMs=8,
                 feature_size=64, heatmap_size=32, num_vert=778, num_joint=21,
                 input_img_shape=(256, 256), pretrained_backbone=False, head=DEFAULT_HEAD):
        super().__init__()
        check_config(backbone, num_stage, num_FMs, feature_size, heatmap_size, num_vert,
                     num_joint, input_img_shape)
        head_classes = get_head(head)
        template_tensor = _template_tensor(template, num_vert)
        faces_tensor = _faces_tensor(faces, num_vert)
        self.num_stage = num_stage
        self.num_vert = num_vert
        self.num_joint = num_joint
        self.input_img_shape = tuple(input_img_shape)
        self.head = head

        spec = resnet_spec(backbone)
        imagenet_state_dict = load_imagenet_state_dict(backbone) if pretrained_backbone else None
        self.extract_mid = mid_level_features(build_resnet(backbone, imagenet_state_dict))
        self.extract_high = nn.ModuleList(
            high_level_features(build_resnet(backbone, imagenet_state_dict))
            for _ in range(num_stage))
        self.saigb = nn.ModuleList(
            head_classes.builder(spec.high_channels, num_vert, num_FMs)
            for _ in range(num_stage))
        self.gbbmr = nn.ModuleList(
            head_classes.regressor(num_vert, num_joint, num_FMs * feature_size + TEMPLATE_COORDS,
                                   heatmap_size)
            for _ in range(num_stage))
        self.fuse = nn.ModuleList(
            nn.Conv2d(spec.mid_channels + 2 * num_joint, spec.mid_channels, 1)
            for _ in range(num_stage - 1))
        self.register_buffer('template', template_tensor, persistent=False)
        self.register_buffer('faces', faces_tensor, persistent=False)
        self.inference_only = False  # True on the copies made by fuse_for_inference

    def _check_img(self, img):
        """ValueError unless img is B x 3 x H x W with (H, W) = input_img_shape."""
        if img.ndim != 4 or img.shape[1] != 3 or tuple(img.shape[2:]) != self.input_img_shape:
            raise ValueError(f"inputs['img'] must be B x 3 x {self.input_img_shape[0]} x "
                             f"{self.input_img_shape[1]} (input_img_shape); got "
                             f"{tuple(img.shape)}")

    def _stages(self, img, maps):
        """Run every stage; `maps` as in the head's regressor (GraphRegressor25D) for the last
        stage ('all' also returns every row of the earlier stages; otherwise they keep the
        joint rows the next stage fuses)."""
        self._check_img(img)
        features_mid = self.extract_mid(img)  # (B, C_mid, h, w)
        stage_input = features_mid
        outputs = []
        for stage in range(self.num_stage):
            if stage > 0:
                previous = outputs[-1]
                stage_input = self.fuse[stage - 1](torch.cat(
                    (features_mid, previous.prob[:, -self.num_joint:],
                     previous.prob_depth[:, -self.num_joint:]), dim=1))  # (B, C_mid, h, w)
            features_high = self.extract_high[stage](stage_input)
            vert_features = self.saigb[stage](features_high)  # in the head's layout
            last = stage == self.num_stage - 1
            outputs.append(self.gbbmr[stage](
                vert_features, shared_columns=self.template,
                maps=maps if last or maps == 'all' else 'joints'))
        return outputs

    def predict_stages(self, img):
        """Every stage's outputs, for deep supervision and inspection.

        Args:
            img: B x 3 x H x W ImageNet-normalised RGB crop, (H, W) = input_img_shape.
        Returns:
            list of num_stage StageOutput (coords B x (V+J) x 3 crop-normalised uvd, prob and
            prob_depth B x (V+J) x h x w).
        """
        return self._stages(img, maps='all')

    def fuse_for_inference(self):
        """An evaluation-only copy of this network with every batch norm folded into the
        convolution before it and the stem's max-pool computed as two strided passes.

        The copy computes the same function as this model in evaluation mode (to float
        rounding) without the normalisation passes. This model, its parameters and its state
        dict are unchanged; the copy's state dict has conv biases instead of batch norms (save
        and load the original's). The copy's parameters do not require gradients and
        `train()` on it raises.
        """
        fused = copy.deepcopy(self)
        fused.eval()
        for part in (fused.extract_mid, *fused.extract_high):
            use_inference_max_pools(fold_batch_norms(part))
        fused.requires_grad_(False)
        fused.inference_only = True
        return fused

    def train(self, mode=True):
        if mode and self.inference_only:
            raise RuntimeError('this SAR was made by fuse_for_inference() (batch norms folded '
                               'into the convolutions, evaluation only); train the original '
                               'model instead')
        return super().train(mode)

    def forward(self, inputs, targets=None):
        """Loss dict in training mode, last-stage coordinates in evaluation mode.

        Args:
            inputs: {'img': B x 3 x H x W}.
            targets: training only, {'mesh_pose_uvd': B x (V+J) x 3 crop-normalised uvd}.
        Returns:
            training: {'coord_0', 'normal_0', 'edge_0', 'coord_1', ...} scalar tensors (normal
                already weighted by 0.1); evaluation: {'coords': B x (V+J) x 3}.
        """
        img = inputs['img']
        self._check_img(img)
        if not self.training:
            return {'coords': self._stages(img, maps='none')[-1].coords}
        if targets is None or 'mesh_pose_uvd' not in targets:
            raise ValueError("SAR in training mode needs targets['mesh_pose_uvd'] "
                             "(B x (num_vert + num_joint) x 3); call model.eval() for inference")
        gt_uvd = targets['mesh_pose_uvd']
        expected_shape = (img.shape[0], self.num_vert + self.num_joint, 3)
        if tuple(gt_uvd.shape) != expected_shape:
            raise ValueError(f"targets['mesh_pose_uvd'] must have shape {expected_shape}; got "
                             f"{tuple(gt_uvd.shape)}")
        stages = self._stages(img, maps='joints')
        losses = {}
        for stage, output in enumerate(stages):
            for name, value in stage_losses(output.coords, gt_uvd, self.faces,
                                            self.num_vert).items():
                losses[f'{name}_{stage}'] = value
        return losses
