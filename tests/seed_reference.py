# ruff: noqa: UP008  (transcribed as the notes wrote it)
"""The networks of the study notes (study notes 000-004), transcribed from their code.

Text-extraction damage in the notes (``in channels`` for ``in_channels``, ``def init`` for
``def __init__``, ``kernel_size=8`` for ``kernel_size=3`` in ``conv3_2`` of ``VGG_SKIP``, whose
parameter count the note's other listings fix at 3) is repaired; nothing else is changed. These are
the references selab's own builders are checked against: same parameter counts, and the same
outputs given the same weights.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# -- 003: the small VGG and its variants (CIFAR-10) ------------------------------------------------


class Model(nn.Module):
    def __init__(self):
        super(Model, self).__init__()
        self.conv1_1 = nn.Conv2d(in_channels=3, out_channels=16, kernel_size=3, padding=1)
        self.conv1_2 = nn.Conv2d(in_channels=16, out_channels=32, kernel_size=3, padding=1)
        self.conv2_1 = nn.Conv2d(in_channels=32, out_channels=32, kernel_size=3, padding=1)
        self.conv2_2 = nn.Conv2d(in_channels=32, out_channels=64, kernel_size=3, padding=1)
        self.conv3_1 = nn.Conv2d(in_channels=64, out_channels=128, kernel_size=3, padding=1)
        self.conv3_2 = nn.Conv2d(in_channels=128, out_channels=256, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(in_features=4096, out_features=512)
        self.fc2 = nn.Linear(in_features=512, out_features=256)
        self.fc3 = nn.Linear(in_features=256, out_features=10)
        self.relu = nn.ReLU()
        self.avgPool2d = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x):
        out = self.relu(self.conv1_1(x))
        out = self.relu(self.conv1_2(out))
        out = self.avgPool2d(out)
        out = self.relu(self.conv2_1(out))
        out = self.relu(self.conv2_2(out))
        out = self.avgPool2d(out)
        out = self.relu(self.conv3_1(out))
        out = self.relu(self.conv3_2(out))
        out = self.avgPool2d(out)
        out = torch.reshape(out, (-1, 4096))
        out = self.relu(self.fc1(out))
        out = self.relu(self.fc2(out))
        out = self.fc3(out)
        return out


class VGG_SKIP(nn.Module):
    def __init__(self):
        super(VGG_SKIP, self).__init__()
        self.conv1_1 = nn.Conv2d(in_channels=3, out_channels=16, kernel_size=3, padding=1)
        self.conv1_2 = nn.Conv2d(in_channels=16, out_channels=32, kernel_size=3, padding=1)
        self.conv2_1 = nn.Conv2d(in_channels=32, out_channels=32, kernel_size=3, padding=1)
        self.conv2_2 = nn.Conv2d(in_channels=32, out_channels=64, kernel_size=3, padding=1)
        self.conv3_1 = nn.Conv2d(in_channels=64, out_channels=128, kernel_size=3, padding=1)
        self.conv3_2 = nn.Conv2d(in_channels=128, out_channels=256, kernel_size=3, padding=1)
        self.conv_skip1 = nn.Conv2d(in_channels=3, out_channels=32, kernel_size=3, padding=1)
        self.conv_skip2 = nn.Conv2d(in_channels=32, out_channels=64, kernel_size=3, padding=1)
        self.conv_skip3 = nn.Conv2d(in_channels=64, out_channels=256, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(in_features=4096, out_features=512)
        self.fc2 = nn.Linear(in_features=512, out_features=256)
        self.fc3 = nn.Linear(in_features=256, out_features=10)
        self.relu = nn.ReLU()
        self.avgPool2d = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x):
        input_feature1 = x
        out = self.relu(self.conv1_1(x))
        out = self.relu(self.conv1_2(out))
        input_skip1 = self.relu(self.conv_skip1(input_feature1))
        out = torch.add(out, input_skip1)
        out = self.avgPool2d(out)
        input_feature2 = out
        out = self.relu(self.conv2_1(out))
        out = self.relu(self.conv2_2(out))
        input_skip2 = self.relu(self.conv_skip2(input_feature2))
        out = torch.add(out, input_skip2)
        out = self.avgPool2d(out)
        input_feature3 = out
        out = self.relu(self.conv3_1(out))
        out = self.relu(self.conv3_2(out))
        input_skip3 = self.relu(self.conv_skip3(input_feature3))
        out = torch.add(out, input_skip3)
        out = self.avgPool2d(out)
        out = out.view(-1, 4096)
        out = self.relu(self.fc1(out))
        out = self.relu(self.fc2(out))
        out = self.fc3(out)
        return out


class VGG_DENSE(nn.Module):
    def __init__(self):
        super(VGG_DENSE, self).__init__()
        self.conv1_1 = nn.Conv2d(in_channels=3, out_channels=16, kernel_size=3, padding=1)
        self.conv1_2 = nn.Conv2d(in_channels=16, out_channels=32, kernel_size=3, padding=1)
        self.conv2_1 = nn.Conv2d(in_channels=35, out_channels=32, kernel_size=3, padding=1)
        self.conv2_2 = nn.Conv2d(in_channels=32, out_channels=64, kernel_size=3, padding=1)
        self.conv3_1 = nn.Conv2d(in_channels=99, out_channels=128, kernel_size=3, padding=1)
        self.conv3_2 = nn.Conv2d(in_channels=128, out_channels=256, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(in_features=4096, out_features=512)
        self.fc2 = nn.Linear(in_features=512, out_features=256)
        self.fc3 = nn.Linear(in_features=256, out_features=10)
        self.relu = nn.ReLU()
        self.avgPool2d = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x):
        out1 = self.relu(self.conv1_1(x))
        out1 = self.relu(self.conv1_2(out1))
        out1 = torch.cat([x, out1], dim=1)
        out1 = self.avgPool2d(out1)
        out2 = self.relu(self.conv2_1(out1))
        out2 = self.relu(self.conv2_2(out2))
        out2 = torch.cat([out1, out2], dim=1)
        out2 = self.avgPool2d(out2)
        out3 = self.relu(self.conv3_1(out2))
        out3 = self.relu(self.conv3_2(out3))
        # out3 = torch.cat([out2, out3], dim=1)
        out = self.avgPool2d(out3)
        out = out.view(-1, 4096)
        out = self.relu(self.fc1(out))
        out = self.relu(self.fc2(out))
        out = self.fc3(out)
        return out


class VGG_CA(nn.Module):
    def __init__(self):
        super(VGG_CA, self).__init__()
        self.conv1_1 = nn.Conv2d(in_channels=3, out_channels=16, kernel_size=3, padding=1)
        self.conv1_2 = nn.Conv2d(in_channels=16, out_channels=32, kernel_size=3, padding=1)
        self.conv2_1 = nn.Conv2d(in_channels=32, out_channels=32, kernel_size=3, padding=1)
        self.conv2_2 = nn.Conv2d(in_channels=32, out_channels=64, kernel_size=3, padding=1)
        self.conv3_1 = nn.Conv2d(in_channels=64, out_channels=128, kernel_size=3, padding=1)
        self.conv3_2 = nn.Conv2d(in_channels=128, out_channels=256, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(in_features=4096, out_features=512)
        self.fc2 = nn.Linear(in_features=512, out_features=256)
        self.fc3 = nn.Linear(in_features=256, out_features=10)
        self.adaptiveAvgPool2d = nn.AdaptiveAvgPool2d((1, 1))
        self.caconv1 = nn.Conv2d(in_channels=64, out_channels=64, kernel_size=1)
        self.caconv2 = nn.Conv2d(in_channels=64, out_channels=64, kernel_size=1)
        self.sigmoid = nn.Sigmoid()
        self.relu = nn.ReLU()
        self.avgPool2d = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x):
        out = self.relu(self.conv1_1(x))
        out = self.relu(self.conv1_2(out))
        out = self.avgPool2d(out)
        out = self.relu(self.conv2_1(out))
        out = self.relu(self.conv2_2(out))
        caout = self.adaptiveAvgPool2d(out)
        caout = self.relu(self.caconv1(caout))
        caout = self.sigmoid(self.caconv2(caout))
        CA_map = caout.expand_as(out)
        out = out * CA_map
        out = self.avgPool2d(out)
        out = self.relu(self.conv3_1(out))
        out = self.relu(self.conv3_2(out))
        out = self.avgPool2d(out)
        out = out.view(-1, 4096)
        out = self.relu(self.fc1(out))
        out = self.relu(self.fc2(out))
        out = self.fc3(out)
        return out


# -- 000: MobileNetV1 + SE (STL10) ------------------------------------------------------------------


class SEBlock(nn.Module):
    def __init__(self, in_channels, r=16):
        super(SEBlock, self).__init__()
        self.squeeze = nn.AdaptiveAvgPool2d((1, 1))
        self.excitation = nn.Sequential(
            nn.Linear(in_channels, in_channels // r),
            nn.ReLU(),
            nn.Linear(in_channels // r, in_channels),
            nn.Sigmoid(),
        )

    def forward(self, x):
        x = self.squeeze(x)
        x = x.view(x.size(0), -1)
        x = self.excitation(x)
        x = x.view(x.size(0), x.size(1), 1, 1)
        return x


class Depthwise(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1):
        super(Depthwise, self).__init__()
        self.depthwise = nn.Sequential(
            nn.Conv2d(
                in_channels,
                in_channels,
                kernel_size=3,
                stride=stride,
                padding=1,
                groups=in_channels,
                bias=False,
            ),
            nn.BatchNorm2d(in_channels),
            nn.ReLU6(),
        )
        self.pointwise = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(),
        )
        self.seblock = SEBlock(out_channels)

    def forward(self, x):
        x = self.depthwise(x)
        x = self.pointwise(x)
        x = self.seblock(x) * x
        return x


class BasicConv2d(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, **kwargs):
        super(BasicConv2d, self).__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size, **kwargs),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(),
        )

    def forward(self, x):
        return self.conv(x)


class MobileNetV1(nn.Module):
    def __init__(self, width_multiplier, num_classes=10, init_weights=True):
        super().__init__()
        self.init_weights = init_weights
        alpha = width_multiplier
        self.conv1 = BasicConv2d(3, int(32 * alpha), int(64 * alpha), stride=1)
        self.conv2 = Depthwise(int(32 * alpha), int(64 * alpha), stride=1)
        self.conv3 = nn.Sequential(
            Depthwise(int(64 * alpha), int(128 * alpha), stride=2),
            Depthwise(int(128 * alpha), int(128 * alpha), stride=1),
        )
        self.conv4 = nn.Sequential(
            Depthwise(int(128 * alpha), int(256 * alpha), stride=2),
            Depthwise(int(256 * alpha), int(256 * alpha), stride=1),
        )
        self.conv5 = nn.Sequential(
            Depthwise(int(256 * alpha), int(512 * alpha), stride=2),
            Depthwise(int(512 * alpha), int(512 * alpha), stride=1),
            Depthwise(int(512 * alpha), int(512 * alpha), stride=1),
            Depthwise(int(512 * alpha), int(512 * alpha), stride=1),
            Depthwise(int(512 * alpha), int(512 * alpha), stride=1),
            Depthwise(int(512 * alpha), int(512 * alpha), stride=1),
        )
        self.conv6 = nn.Sequential(Depthwise(int(512 * alpha), int(1024 * alpha), stride=2))
        self.conv7 = nn.Sequential(Depthwise(int(1024 * alpha), int(1024 * alpha), stride=2))
        self.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear = nn.Linear(int(1024 * alpha), num_classes)
        if self.init_weights:
            self._initialize_weights()

    def forward(self, x):
        x = self.conv1(x)
        x = self.conv2(x)
        x = self.conv3(x)
        x = self.conv4(x)
        x = self.conv5(x)
        x = self.conv6(x)
        x = self.conv7(x)
        x = self.avg_pool(x)
        x = x.view(x.size(0), -1)
        return self.linear(x)

    def _initialize_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)


# -- 004: Shake-Shake 26 2x32d (CIFAR-10) ---------------------------------------------------------

device = "cpu"


class ShakeShake(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input1, input2, alpha, beta=None):
        ctx.save_for_backward(input1, input2, alpha, beta)
        out = alpha * input1 + (1 - alpha) * input2
        return out

    @staticmethod
    def backward(ctx, grad_output):
        input1, input2, alpha, beta = ctx.saved_tensors
        grad_input1 = beta * grad_output
        grad_input2 = (1 - beta) * grad_output
        return grad_input1, grad_input2, None, None


class ResidualBranch(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1):
        super(ResidualBranch, self).__init__()
        self.conv1 = nn.Conv2d(
            in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(
            out_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False
        )
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.relu(x)
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.conv2(x)
        out = self.bn2(x)
        return out


class SkippingBranch(nn.Module):
    def __init__(self, in_channels, stride=2):
        super(SkippingBranch, self).__init__()
        self.avg_pool = nn.AvgPool2d(kernel_size=1, stride=stride, padding=0)
        self.conv1 = nn.Conv2d(
            in_channels, in_channels, kernel_size=1, stride=1, padding=0, bias=False
        )
        self.conv2 = nn.Conv2d(
            in_channels, in_channels, kernel_size=1, stride=1, padding=0, bias=False
        )

    def forward(self, x):
        out1 = self.avg_pool(x)
        out1 = self.conv1(out1)
        shift_x = x[:, :, 1:, 1:]
        shift_x = F.pad(shift_x, (0, 1, 0, 1))
        out2 = self.avg_pool(shift_x)
        out2 = self.conv2(out2)
        out = torch.cat([out1, out2], dim=1)
        return out


class ShakeBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1, down_sample=None):
        super(ShakeBlock, self).__init__()
        self.residual_branch1 = ResidualBranch(in_channels, out_channels, stride)
        self.residual_branch2 = ResidualBranch(in_channels, out_channels, stride)
        if down_sample is not None:
            self.down_sample = SkippingBranch(in_channels, stride)
        else:
            self.down_sample = nn.Sequential()
        self.shake_shake = ShakeShake.apply

    def forward(self, x):
        residual = x
        out1 = self.residual_branch1(x)
        out2 = self.residual_branch2(x)
        batch_size = out1.size(0)
        if self.training:
            alpha = torch.rand(batch_size).to(device)
            beta = torch.rand(batch_size).to(device)
            beta = beta.view(batch_size, 1, 1, 1)
            alpha = alpha.view(batch_size, 1, 1, 1)
            out = self.shake_shake(out1, out2, alpha, beta)
        else:
            alpha = torch.Tensor([0.5]).to(device)
            out = self.shake_shake(out1, out2, alpha)
        skip = self.down_sample(residual)
        return out + skip


class ShakeResNet(nn.Module):
    def __init__(self, num_layers, block, num_classes=10):
        super(ShakeResNet, self).__init__()
        self.in_channels = 16
        self.num_layers = num_layers
        self.conv1 = nn.Conv2d(
            in_channels=3, out_channels=16, kernel_size=3, stride=1, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.stage1 = self.get_layers(block, 16, 32, stride=1)
        self.stage2 = self.get_layers(block, 32, 64, stride=2)
        self.stage3 = self.get_layers(block, 64, 128, stride=2)
        self.avg_pool = nn.AvgPool2d(8, stride=1)
        self.fc_out = nn.Linear(128, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def get_layers(self, block, in_channels, out_channels, stride):
        if stride == 2:
            down_sample = True
        else:
            down_sample = False
        layers_list = nn.ModuleList([block(in_channels, out_channels, stride, down_sample)])
        for _ in range(self.num_layers - 1):
            layers_list.append(block(out_channels, out_channels))
        return nn.Sequential(*layers_list)

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.stage1(x)
        x = self.stage2(x)
        x = self.stage3(x)
        x = self.avg_pool(x)
        x = x.view(x.size(0), -1)
        x = self.fc_out(x)
        return x
