"""A head (docs/development.md, "Adding a head"): the reference head with LeakyReLU(0.3) in
place of SAR's 0.1.

A new head is a module like this one in model/ and one line in model.heads.HEADS:

    HEADS = {..., 'steep': steep_head.HEAD}

then `python train.py --head steep` trains with it (tests/test_docs_examples.py runs it). It
keeps the reference head's modules and parameter names (a LeakyReLU has no parameters), so
checkpoints of either head load into it; docs/method.md, "Changing the head", says how to
check a head against the fused one.
"""
from torch import nn

from model.heads import Head
from model.reference_head import ReferenceGraphBuilder, ReferenceGraphRegressor

SLOPE = 0.3  # negative slope of every LeakyReLU of the head (SAR: 0.1)


class SteepGraphBuilder(ReferenceGraphBuilder):
    """SAIGB with LeakyReLU(SLOPE) after its 1x1 convolution."""

    def __init__(self, in_channels, num_vert, num_fms):
        super().__init__(in_channels, num_vert, num_fms)
        self.group[1] = nn.LeakyReLU(SLOPE)


class SteepGraphRegressor(ReferenceGraphRegressor):
    """GBBMR with LeakyReLU(SLOPE) between the graph convolutions of reg_xy and reg_z."""

    def __init__(self, num_vert, num_joint, in_features, heatmap_size):
        super().__init__(num_vert, num_joint, in_features, heatmap_size)
        for regressor in (self.reg_xy, self.reg_z):
            regressor[1] = nn.LeakyReLU(SLOPE)


HEAD = Head(SteepGraphBuilder, SteepGraphRegressor)
