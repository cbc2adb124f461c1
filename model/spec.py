"""The network's shape: utils/network_spec.py holds the one definition (NetworkSpec: the fields,
their defaults and the derived sizes; config.Config inherits the fields); the model checks it
against its backbone registry (model/backbone.RESNET_SPECS) with `check_spec`.
"""
from model.backbone import RESNET_SPECS


def check_spec(spec):
    """`spec.check` against the backbone registry: ValueError listing every field that
    disagrees (an unknown backbone names the registered ones); returns spec."""
    return spec.check(RESNET_SPECS)
