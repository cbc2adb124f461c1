"""Export a SAR checkpoint to ONNX (the fused inference network) and check it with ONNX Runtime.

    python -m tools.export_onnx --checkpoint output/checkpoint/<exp>/snapshot_49.pth.tar \
        --out sar.onnx [--opset 18] [config overrides, e.g. --backbone resnet18]

Written only if ONNX Runtime reproduces PyTorch to 1e-4 (docs/deployment.md).
"""
import argparse
import dataclasses
import sys

import torch

from inference.network import load_for_inference
from inference.onnx import OPSET, SELF_CHECK_TOLERANCE, export_onnx
from run.config import resolve_config
from utils.runtime.launch import run_main
from utils.mano import MANO


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', required=True, help='SAR checkpoint (.pth.tar)')
    parser.add_argument('--out', required=True, help='the .onnx file to write')
    parser.add_argument('--opset', type=int, default=OPSET,
                        help=f'ONNX opset (default {OPSET}, the lowest the exporter implements)')
    return parser.parse_known_args(argv)


def main(argv):
    args, overrides = parse_args(argv)
    cfg, _ = resolve_config([*overrides, '--checkpoint', args.checkpoint], from_checkpoint=True)
    # The checkpoint supplies every weight (no ImageNet download); the export runs on the CPU.
    cfg = dataclasses.replace(cfg, pretrained_backbone=False, device='cpu')
    fused, _ = load_for_inference(cfg, MANO(cfg.mano_root), torch.device('cpu'))
    report = export_onnx(fused, cfg.to_dict(), args.out, opset=args.opset)
    print(f"wrote {report['path']}: opset {report['opset']}, "
          f"{report['num_bytes'] / 2 ** 20:.1f} MiB, max |ONNX Runtime - PyTorch| "
          f"{report['max_abs_diff']:.2e} on a batch of {report['sample_batch']} "
          f"(tolerance {SELF_CHECK_TOLERANCE:g}, crop-normalised coords)")


if __name__ == '__main__':
    sys.exit(run_main(main, sys.argv[1:], 'python -m tools.export_onnx'))
