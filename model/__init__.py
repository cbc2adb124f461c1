"""SAR network, its layers and losses (docs/method.md §4, 5)."""

from model.heads import HEADS, get_head
from model.layers import (GraphConv, GraphRegressor25D, SoftHeatmap, SpatialAwareGraphBuilder,
                          StageOutput)
from model.loss import coord_l1_loss, edge_length_loss, normal_loss, stage_losses
from model.sar import SAR
from utils.network_spec import NetworkSpec
