"""Writes the YOLOv3 golden fixture edgerun's tests compare against (no golden exists upstream).

The backbone is timm's own `darknet53` (CspNet with its published stage config, shrunk in
width and depth, LeakyReLU slope set to Darknet's 0.1); the three heads follow yolov3.cfg
and are written here with torch.nn modules, under the tensor names documented in
crates/models/src/yolov3.rs. Weights and BatchNorm statistics are random; outputs come from
eval() in float32.

Usage: python3 bench/peers/yolov3_fixture.py OUT_DIR   (needs torch, timm, safetensors)
"""
import dataclasses
import json
import os
import sys

import timm
import torch
from safetensors.torch import save_file
from timm.models import cspnet
from torch import nn

WIDTHS = [8, 16, 32, 32, 64, 64]  # stem, then the five stages
DEPTHS = [1, 1, 2, 1, 1]
CLASSES, ANCHORS, SLOPE = 3, 3, 0.1


class ConvBnLeaky(nn.Module):
    def __init__(self, cin, cout, k, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return nn.functional.leaky_relu(self.bn(self.conv(x)), SLOPE)


class Head(nn.Module):
    def __init__(self, cin, c, outputs, route):
        super().__init__()
        dims = [(cin, c // 2, 1), (c // 2, c, 3), (c, c // 2, 1), (c // 2, c, 3), (c, c // 2, 1)]
        self.convs = nn.ModuleList(ConvBnLeaky(*d) for d in dims)
        self.out = ConvBnLeaky(c // 2, c, 3)
        self.pred = nn.Conv2d(c, outputs, 1, bias=True)
        self.route = ConvBnLeaky(c // 2, c // 4, 1) if route else None


class YoloV3(nn.Module):
    def __init__(self):
        super().__init__()
        base = cspnet.model_cfgs["darknet53"]
        cfg = dataclasses.replace(
            base,
            stem=dataclasses.replace(base.stem, out_chs=WIDTHS[0]),
            stages=dataclasses.replace(base.stages, depth=tuple(DEPTHS), out_chs=tuple(WIDTHS[1:])),
        )
        self.backbone = cspnet.CspNet(cfg, num_classes=0)
        for m in self.backbone.modules():
            if isinstance(m, nn.LeakyReLU):
                m.negative_slope = SLOPE
        outputs = ANCHORS * (5 + CLASSES)
        self.heads = nn.ModuleList(
            Head(WIDTHS[5 - s] if s == 0 else WIDTHS[6 - s] // 4 + WIDTHS[5 - s], WIDTHS[5 - s], outputs, s < 2)
            for s in range(3)
        )

    def forward(self, x):
        x = self.backbone.stem(x)
        features = []
        for stage in self.backbone.stages:
            x = stage(x)
            features.append(x)
        outs, x = [], features[4]
        for s, head in enumerate(self.heads):
            if s > 0:
                x = torch.cat([nn.functional.interpolate(x, scale_factor=2, mode="nearest"), features[4 - s]], 1)
            for conv in head.convs:
                x = conv(x)
            outs.append(head.pred(head.out(x)))
            if head.route is not None:
                x = head.route(x)
        return outs


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    model = YoloV3().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        pixels = torch.randn(2, 3, 64, 96)
        outs = model(pixels)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file(state, os.path.join(out, "model.safetensors"))
    save_file({"pixel_values": pixels}, os.path.join(out, "inputs.safetensors"))
    save_file({f"out{i}": o.contiguous() for i, o in enumerate(outs)}, os.path.join(out, "expected.safetensors"))
    config = {
        "library": "darknet",
        "architecture": "yolov3",
        "num_classes": CLASSES,
        "anchors_per_scale": ANCHORS,
        "leaky_slope": SLOPE,
        "overrides": {"widths": WIDTHS, "depths": DEPTHS},
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    meta = {
        "reference": f"timm {timm.__version__} darknet53 backbone + torch.nn heads (bench/peers/yolov3_fixture.py), torch {torch.__version__}, float32, eval()",
        "outputs": ["out0", "out1", "out2"],
        "tolerance": {"max_abs": 1e-4, "note": "relative to max |expected|"},
    }
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(sorted(state)[:4], [tuple(o.shape) for o in outs])


if __name__ == "__main__":
    main()
