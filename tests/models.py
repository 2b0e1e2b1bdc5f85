"""The small models the tests share, as Captum's ``testing/helpers/basic_models.py``.

Each model is named by its shape. The factories (lower-case) seed the RNG and
return the model in eval mode, exactly as the tests that first wrote them did,
so a test's numbers do not depend on which file builds the model. Fixtures over
these factories (``resnet18``, ``small_vgg``, ...) are in ``conftest.py``.
A model only one test file uses stays in that file, next to what it pins.
"""

from __future__ import annotations

import torch
import torchvision
from torch import Tensor, nn


# ------------------------------------------------------------- module classes
class SmallVgg(nn.Module):
    """conv-relu-maxpool-conv-relu-adaptiveavgpool-flatten-linear, no bias."""

    def __init__(self, num_classes: int = 5, bias: bool = False) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1, bias=bias),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3, padding=1, bias=bias),
            nn.ReLU(),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(6, num_classes, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.flatten(self.avgpool(self.features(x))))


class SmallVggBN(nn.Module):
    """SmallVgg with BatchNorm after each conv (and conv biases)."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(inplace=True),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


class ConvPoolLinearNet(nn.Module):
    """conv-relu, 2 x 2 average pool, linear; ``forward(x, scale)`` multiplies
    the logits by a per-example ``scale`` (an additional forward argument)."""

    def __init__(self, channels: int = 3, classes: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 4, classes)

    def forward(self, x: Tensor, scale: Tensor = None) -> Tensor:
        h = torch.relu(self.conv(x))
        h = nn.functional.adaptive_avg_pool2d(h, 2).flatten(1)
        out = self.fc(h)
        if scale is not None:
            out = out * scale.view(-1, 1)
        return out


class ResidualBlockNet(nn.Module):
    """conv-BN-ReLU, residual block, max-pool, conv, global pool, linear."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(6, 8, 3, padding=1)
        self.relu3 = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(x))
        out += x
        x = self.pool(torch.relu(out))
        x = self.relu3(self.conv3(x))
        return self.fc(torch.flatten(self.gap(x), 1))


class BnResidualMeanNet(nn.Module):
    """conv-BN-relu, conv-relu plus a functional residual add, spatial mean
    (``h.mean``, no pooling module), linear to 5 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.bn(self.conv1(x)))
        h = torch.relu(self.conv2(h)) + h
        return self.fc(h.mean((2, 3)))


class TwoConvReluNet(nn.Module):
    """conv-ReLU, conv-ReLU (8 channels), global pool, linear to 5 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(torch.flatten(self.pool(h), 1))


class BnResidualNet(nn.Module):
    """conv-bn-relu (in place), conv-relu with a functional residual add, pool,
    linear; seeded in ``__init__``, with moved BatchNorm statistics."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, classes)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.2, 0.2)
            self.bn.running_var.uniform_(0.5, 1.5)

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu1(self.bn(self.conv1(x)))
        h = self.relu2(self.conv2(h) + h)
        return self.fc(self.pool(h).flatten(1))


# ------------------------------------------------------------------ factories
def resnet18(num_classes: int = 1000) -> nn.Module:
    """torchvision's resnet18, random weights (seed 0), eval mode."""
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=num_classes).eval()


def small_vgg(seed: int) -> SmallVgg:
    """:class:`SmallVgg` (5 classes) with the weights of ``seed``, eval mode."""
    torch.manual_seed(seed)
    return SmallVgg().eval()


def residual_block_net() -> ResidualBlockNet:
    """:class:`ResidualBlockNet` with random BatchNorm statistics and affine
    parameters (so folding BatchNorm is not the identity)."""
    torch.manual_seed(0)
    model = ResidualBlockNet()
    for bn in (model.bn1, model.bn2):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        with torch.no_grad():
            bn.weight.uniform_(-1.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    return model.eval()


def bn_residual_mean_net() -> BnResidualMeanNet:
    """:class:`BnResidualMeanNet` with random BatchNorm statistics."""
    torch.manual_seed(0)
    net = BnResidualMeanNet()
    net.bn.running_mean.uniform_(-0.5, 0.5)
    net.bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


def two_conv_relu_net() -> TwoConvReluNet:
    torch.manual_seed(0)
    return TwoConvReluNet().eval()


def bn_residual_net() -> BnResidualNet:
    return BnResidualNet().eval()


def sequential_bn_net() -> nn.Sequential:
    """conv-BN-ReLU, conv-ReLU (8 channels), pool, linear to 4 classes."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    ).eval()


def sequential_net() -> nn.Sequential:
    """conv-ReLU, conv-ReLU (5 channels), pool, linear to 3 classes."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3),
    ).eval()  # fmt: skip
