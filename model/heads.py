"""The SAR heads by name (config field `head`): a head is its SAIGB and its GBBMR class.

A new head is one module in model/ and one line in HEADS (docs/development.md, "Adding a
head"; how to check it against the fused head: docs/method.md, "Changing the head").
Each head must keep the published state-dict layout (so a checkpoint loads into any head) and
the interface SAR uses:
    builder(in_channels, num_vert, num_fms); builder(features_high B x C x h x w) -> per-vertex
        features, in the layout of the head's own regressor;
    regressor(num_vert, num_joint, in_features, heatmap_size);
        regressor(vert_features, shared_columns=template V x 3, maps='all' | 'joints' | 'none')
        -> model.layers.StageOutput, batch-first.
"""

from typing import NamedTuple

from model.layers import GraphRegressor25D, SpatialAwareGraphBuilder
from model.reference_head import ReferenceGraphBuilder, ReferenceGraphRegressor
from utils.network_spec import DEFAULT_HEAD


class Head(NamedTuple):
    """The two module classes of one head."""

    builder: type  # saigb[i]: spatial-aware initial graph builder
    regressor: type  # gbbmr[i]: graph-based 2.5D mesh regressor


HEADS = {
    'fused': Head(SpatialAwareGraphBuilder, GraphRegressor25D),  # model/layers.py (DEFAULT_HEAD)
    'reference': Head(ReferenceGraphBuilder, ReferenceGraphRegressor),  # model/reference_head.py
}


def get_head(name=DEFAULT_HEAD):
    """The Head registered as `name` (DEFAULT_HEAD, in utils/network_spec.py where config.py
    reads it too, when not given); ValueError naming the registered heads otherwise."""
    if name not in HEADS:
        raise ValueError(f'head={name!r} is not a registered SAR head; use one of '
                         f'{tuple(HEADS)} (model/heads.py)')
    return HEADS[name]
