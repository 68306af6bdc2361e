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
    return StagedCNN(in_channels, n_classes, size, stages=_STAGES[arch])
