"""The built-in networks. Each takes (N, C, H, W) floats and returns logits."""
from __future__ import annotations

from torch import nn

from pseudolabel.exceptions import InputError

# (channels, convs) per stage; every stage ends in 2x2 max-pooling where the image is large enough.
_STAGES = {
    "fast": ((32, 1), (64, 1), (128, 1)),
    "wide": ((32, 2), (64, 2), (128, 2)),
}


def _conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class StagedCNN(nn.Module):
    """conv-BN-ReLU stages with max-pooling, global average pooling and one linear layer.

    Works for any image size from 1 x d strips up: pooling shrinks each side only while it is > 1.
    """

    def __init__(self, in_channels: int, n_classes: int, size: tuple[int, int],
                 stages=_STAGES["fast"], dropout: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        h, w = size
        for width, convs in stages:
            for _ in range(convs):
                layers += _conv_bn(c, width)
                c = width
            kh, kw = (2 if h > 1 else 1), (2 if w > 1 else 1)
            if kh > 1 or kw > 1:
                layers.append(nn.MaxPool2d((kh, kw), ceil_mode=True))
                h, w = -(-h // kh), -(-w // kw)
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c, n_classes))

    def forward(self, x):
        return self.head(self.features(x))


class StridedCNN(nn.Module):
    """Strided conv-BN-ReLU layers (no pooling layers), global average pooling, one linear layer.

    The first layer (5x5, stride 2) halves the image at once, so every later layer works on a
    quarter of the pixels: on 28x28 digits it does about 40 % of the seed CNN's multiply-adds
    (4.7 M against 12 M) and trains 3.3x and predicts 4.2x as fast on a 2-core CPU
    (docs/benchmarks.md).
    A side of 1 pixel (flat feature strips) is never strided.
    """

    def __init__(self, in_channels: int, n_classes: int, size: tuple[int, int],
                 layers=((32, 5, 2), (64, 3, 2), (128, 3, 1)), dropout: float = 0.1):
        super().__init__()
        mods: list[nn.Module] = []
        c = in_channels
        h, w = size
        for width, k, stride in layers:
            sh, sw = (stride if h > 1 else 1), (stride if w > 1 else 1)
            kh, kw = (k if h > 1 else 1), (k if w > 1 else 1)
            mods += [nn.Conv2d(c, width, (kh, kw), stride=(sh, sw), padding=(kh // 2, kw // 2), bias=False),
                     nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            c = width
            h, w = -(-h // sh), -(-w // sw)
        self.features = nn.Sequential(*mods)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c, n_classes))

    def forward(self, x):
        return self.head(self.features(x))


class SeedCNN(nn.Module):
    """The case study's CNN: conv 32, conv 64 (3x3, ReLU), 2x2 max-pool, dropout 0.25,
    dense 128, dropout 0.5, dense to the classes. Kept for baselines."""

    def __init__(self, in_channels: int, n_classes: int, size: tuple[int, int]):
        super().__init__()
        h, w = size
        if h < 5 or w < 5:
            raise InputError(f"the seed CNN needs images of at least 5x5 pixels, got {h}x{w}; use arch='fast'.")
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Dropout(0.25), nn.Flatten(), nn.Linear(64 * ((h - 4) // 2) * ((w - 4) // 2), 128), nn.ReLU(),
            nn.Dropout(0.5), nn.Linear(128, n_classes),
        )

    def forward(self, x):
        return self.net(x)


def build_network(arch: str, in_channels: int, n_classes: int, size: tuple[int, int]) -> nn.Module:
    if arch == "seed":
        return SeedCNN(in_channels, n_classes, size)
    if arch == "strided":
        return StridedCNN(in_channels, n_classes, size)
    return StagedCNN(in_channels, n_classes, size, stages=_STAGES[arch])
