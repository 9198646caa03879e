#!/usr/bin/python3
"""onnx_cnn.py OUT.onnx - the CNN of examples/cnn_bn.nnd in PyTorch 1.13
(Debian's python3-torch), exported with torch.onnx.export in evaluation mode
with its BatchNormalization nodes kept and a dynamic batch axis: the model
bench/onnx_bench.sh imports and times against ONNX Runtime."""
import sys
import torch
import torch.nn as nn
import torch.nn.functional as F


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)
        self.conv2, self.bn2 = nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64)
        self.fc1, self.bn3 = nn.Linear(64 * 7 * 7, 128, bias=False), nn.BatchNorm1d(128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = F.relu(self.bn3(self.fc1(x.flatten(1))))
        return F.softmax(self.fc2(x), dim=1)


torch.manual_seed(0)
m = CNN().eval()
torch.onnx.export(m, torch.randn(1, 1, 28, 28), sys.argv[1], input_names=["x"], output_names=["probs"],
                  dynamic_axes={"x": {0: "N"}, "probs": {0: "N"}}, opset_version=13,
                  training=torch.onnx.TrainingMode.PRESERVE)
