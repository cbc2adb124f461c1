"""SAR: spatial-aware regression of the 3D hand mesh and joints from one RGB crop (docs/method.md §4, 5).

The default configuration has exactly the state-dict keys and shapes of the published model,
so the authors' checkpoint loads with `load_state_dict(ckpt['net'], strict=True)`.
"""

import copy

import numpy as np
import torch
from torch import nn

from model.backbone import (build_resnet, fold_batch_norms, high_level_features,
                            load_imagenet_state_dict, mid_level_features,
                            resnet_spec, use_inference_max_pools)
from model.heads import get_head
from model.loss import stage_losses
from model.spec import check_spec
from utils.network_spec import DEFAULT_HEAD, NetworkSpec

TEMPLATE_COORDS = 3  # xyz appended to every vertex's features


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
        spec: utils.network_spec.NetworkSpec, the network's shape (backbone, stages, feature
            maps per vertex, feature and heatmap sizes, rows, input size); the published one by
            default.
        pretrained_backbone: load ImageNet weights (torch hub cache; RuntimeError naming the
            file to place there if it is missing and cannot be downloaded).
        head: the SAIGB + GBBMR implementation, a name of model/heads.HEADS: 'fused' (the
            fast path of model/layers.py) or 'reference' (docs/method.md §4 as written); the
            same state dict either way.
    Raises:
        ValueError if the sizes disagree, naming the fields and consistent values, or for an
        unknown head.
    """

    def __init__(self, template, faces, spec=NetworkSpec(), pretrained_backbone=False,
                 head=DEFAULT_HEAD):
        super().__init__()
        check_spec(spec)
        head_classes = get_head(head)
        num_vert, num_joint = spec.num_vert, spec.num_joint
        template_tensor = _template_tensor(template, num_vert)
        faces_tensor = _faces_tensor(faces, num_vert)
        self.spec = spec
        self.num_stage = spec.num_stage
        self.num_vert = num_vert
        self.num_joint = num_joint
        self.input_img_shape = tuple(spec.input_img_shape)
        self.head = head

        resnet = resnet_spec(spec.backbone)
        imagenet_state_dict = (load_imagenet_state_dict(spec.backbone) if pretrained_backbone
                               else None)
        self.extract_mid = mid_level_features(build_resnet(spec.backbone, imagenet_state_dict))
        self.extract_high = nn.ModuleList(
            high_level_features(build_resnet(spec.backbone, imagenet_state_dict))
            for _ in range(spec.num_stage))
        self.saigb = nn.ModuleList(
            head_classes.builder(resnet.high_channels, num_vert, spec.num_FMs)
            for _ in range(spec.num_stage))
        self.gbbmr = nn.ModuleList(
            head_classes.regressor(num_vert, num_joint,
                                   spec.num_FMs * spec.feature_size + TEMPLATE_COORDS,
                                   spec.heatmap_size)
            for _ in range(spec.num_stage))
        self.fuse = nn.ModuleList(
            nn.Conv2d(resnet.mid_channels + 2 * num_joint, resnet.mid_channels, 1)
            for _ in range(spec.num_stage - 1))
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
            targets: training only, {'mesh_pose_uvd': B x (V+J) x 3 crop-normalised uvd,
                optional 'verts_valid': B (0 for items with joints only: their vertex rows are
                placeholders; model.loss.stage_losses)}.
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
        verts_valid = targets.get('verts_valid')
        if verts_valid is not None and tuple(verts_valid.shape) != (img.shape[0],):
            raise ValueError(f"targets['verts_valid'] must have shape ({img.shape[0]},); got "
                             f"{tuple(verts_valid.shape)}")
        stages = self._stages(img, maps='joints')
        losses = {}
        for stage, output in enumerate(stages):
            for name, value in stage_losses(output.coords, gt_uvd, self.faces, self.num_vert,
                                            verts_valid).items():
                losses[f'{name}_{stage}'] = value
        return losses
