#!/usr/bin/python3
"""gen_onnx.py - small models exported by a real exporter (torch.onnx.export
of PyTorch 1.13, Debian's python3-torch) for the importer's tests
(tests/test_onnx.c reads them).

Run with /usr/bin/python3 from anywhere:
    /usr/bin/python3 tests/golden/gen_onnx.py
Each model NAME writes onnx/NAME.onnx, onnx/NAME_x.npy (a batch of inputs)
and onnx/NAME_y.npy (PyTorch's output in evaluation mode); cnn_bn keeps its BatchNormalization
nodes (TrainingMode.PRESERVE of a model in eval mode), the others are
exported as usual (batch norm folded into the convolutions).  The batch axis
is exported as the symbolic dimension N (dynamic_axes), so the imported
model keeps it symbolic.
"""
import os
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "onnx")
torch.manual_seed(1234)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(20, 32)
        self.fc2 = nn.Linear(32, 16)
        self.fc3 = nn.Linear(16, 10)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        h = torch.tanh(self.fc2(h))
        return F.softmax(self.fc3(h), dim=1)


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 12, 5)
        self.fc1 = nn.Linear(12 * 2 * 2, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)            # Shape/Gather/Unsqueeze/Concat -> Reshape
        x = F.relu(self.fc1(x))
        return self.fc2(x)


class CNNBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


class ResBlock(nn.Module):
    """A torchvision-style BasicBlock with a downsampling shortcut."""
    def __init__(self, cin=4, cout=8):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.down(x))


class Attention(nn.Module):
    """One pre-norm self-attention block with a GELU MLP (T=6, D=16, 2 heads)."""
    def __init__(self, d=16, h=2):
        super().__init__()
        self.h = h
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 32)
        self.fc2 = nn.Linear(32, d)

    def forward(self, x):
        n, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q = q.reshape(n, t, self.h, d // self.h).transpose(1, 2)
        k = k.reshape(n, t, self.h, d // self.h).transpose(1, 2)
        v = v.reshape(n, t, self.h, d // self.h).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(2, 3) / (d // self.h) ** 0.5, dim=-1)
        y = (a @ v).transpose(1, 2).reshape(n, t, d)
        x = x + self.proj(y)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class LSTMClassifier(nn.Module):
    """nn.LSTM (exported as an ONNX LSTM node) over 5 steps, the last state classified."""
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(6, 12, batch_first=True)
        self.fc = nn.Linear(12, 4)

    def forward(self, x):
        y, (h, c) = self.lstm(x)
        return self.fc(h[0]) + y.mean(dim=1)[:, :4]


class GRUTagger(nn.Module):
    """nn.GRU (an ONNX GRU node, linear_before_reset) and nn.RNN (an RNN node), time-major."""
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(6, 10)
        self.rnn = nn.RNN(10, 8)

    def forward(self, x):
        y, _ = self.gru(x)
        z, h = self.rnn(torch.relu(y))
        return z + h


class AutoEncoder(nn.Module):
    """shared/models/autoencoder.nnd in small: relu encoder to a code, sigmoid decoder."""
    def __init__(self):
        super().__init__()
        self.e1, self.e2 = nn.Linear(24, 12), nn.Linear(12, 4)
        self.d1, self.d2 = nn.Linear(4, 12), nn.Linear(12, 24)

    def forward(self, x):
        code = torch.relu(self.e2(torch.relu(self.e1(x))))
        return torch.sigmoid(self.d2(torch.relu(self.d1(code))))


class DeepMLP(nn.Module):
    """shared/models/deep_mlp.nnd in small: ELU layers with dropout (gone in evaluation)."""
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(20, 16), nn.Linear(16, 16), nn.Linear(16, 10)
        self.drop = nn.Dropout(0.2)

    def forward(self, x):
        h = self.drop(F.elu(self.fc1(x)))
        h = self.drop(F.elu(self.fc2(h)))
        return F.softmax(self.fc3(h), dim=1)


class LogReg(nn.Module):
    """shared/models/logreg.nnd: images flattened, one linear layer, softmax."""
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(7 * 7, 10)

    def forward(self, x):
        return F.softmax(self.fc(torch.flatten(x, 1)), dim=1)


class LinReg(nn.Module):
    """shared/models/linreg.nnd: y = x @ w + b."""
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 1)

    def forward(self, x):
        return self.fc(x)


class RNNLoop(nn.Module):
    """shared/models/rnn.nnd: a tanh cell written as a Python loop over x[:, t] (traced: unrolled)."""
    def __init__(self):
        super().__init__()
        self.wx, self.wh, self.out = nn.Linear(6, 8), nn.Linear(8, 8, bias=False), nn.Linear(8, 10)

    def forward(self, x):
        h = torch.zeros(x.shape[0], 8)
        for t in range(x.shape[1]):
            h = torch.tanh(self.wx(x[:, t]) + self.wh(h))
        return F.softmax(self.out(h), dim=1)


def randomize_bn(m):
    """Running statistics that are not the defaults, so the test sees them."""
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            c = mod.num_features
            mod.running_mean.copy_(torch.randn(c) * 0.1)
            mod.running_var.copy_(torch.rand(c) + 0.5)
            mod.weight.data.copy_(torch.rand(c) + 0.5)
            mod.bias.data.copy_(torch.randn(c) * 0.1)


def export(name, model, x, dynamic=True, keep_bn=False):
    model.eval()
    randomize_bn(model)
    with torch.no_grad():
        y = model(x)
    path = os.path.join(OUT, name + ".onnx")
    axes = {"x": {0: "N"}, "y": {0: "N"}} if dynamic else None
    torch.onnx.export(model, x, path, input_names=["x"], output_names=["y"], dynamic_axes=axes,
                      opset_version=13, do_constant_folding=True,
                      training=torch.onnx.TrainingMode.PRESERVE if keep_bn else torch.onnx.TrainingMode.EVAL)
    np.save(os.path.join(OUT, name + "_x.npy"), x.numpy())
    np.save(os.path.join(OUT, name + "_y.npy"), y.numpy())


def error_models():
    """Small hand-made models that import must refuse with a clear error."""
    from onnx import helper, TensorProto
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])

    def save(name, nodes, inits=(), inputs=(x,), opset=13):
        g = helper.make_graph(nodes, name, list(inputs), [y], initializer=list(inits))
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="gen_onnx.py")
        with open(os.path.join(OUT, name + ".onnx"), "wb") as f:
            f.write(m.SerializeToString())

    w = helper.make_tensor("W", TensorProto.FLOAT, [4, 3], np.ones(12, np.float32).tobytes(), raw=True)
    # three unsupported nodes of two ops, among supported ones
    save("err_unsupported", [helper.make_node("Relu", ["x"], ["a"], name="relu1"),
                             helper.make_node("Hardmax", ["a"], ["b"], name="hm1"),
                             helper.make_node("Hardmax", ["b"], ["c"], name="hm2"),
                             helper.make_node("Round", ["c"], ["d"], name="round1"),
                             helper.make_node("MatMul", ["d", "W"], ["y"], name="mm")], [w])
    # an initializer whose data is shorter than its shape
    short = TensorProto()
    short.name, short.data_type, short.raw_data = "W", TensorProto.FLOAT, np.ones(2, np.float32).tobytes()
    short.dims.extend([4, 3])
    save("err_init_size", [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], [short])
    # an initializer in an external file
    ext = TensorProto()
    ext.name, ext.data_type = "W", TensorProto.FLOAT
    ext.dims.extend([4, 3])
    ext.data_location = TensorProto.EXTERNAL
    e = ext.external_data.add()
    e.key, e.value = "location", "weights.bin"
    save("err_external", [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], [ext])
    # a dynamic dimension that is not the first
    xt = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T"])
    save("err_dynamic", [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], [w], inputs=(xt,))
    # an opset from the future
    save("err_opset", [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], [w], opset=99)
    # an attribute nndc has no equivalent for
    xi = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 5, 5])
    save("err_attr", [helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 3])], inputs=(xi,))


def main():
    os.makedirs(OUT, exist_ok=True)
    error_models()
    export("mlp", MLP(), torch.randn(5, 20))
    export("lenet", LeNet(), torch.randn(3, 1, 16, 16))
    export("cnn_bn", CNNBN(), torch.randn(4, 3, 8, 8), keep_bn=True)   # BatchNormalization nodes kept
    export("resblock", ResBlock(), torch.randn(2, 4, 8, 8))
    export("attention", Attention(), torch.randn(3, 6, 16), dynamic=False)
    export("lstm", LSTMClassifier(), torch.randn(3, 5, 6))
    export("gru_rnn", GRUTagger(), torch.randn(4, 2, 6), dynamic=False)
    # the shared models not above, in small (appended: the models above keep their draws)
    export("autoencoder", AutoEncoder(), torch.rand(4, 24))
    export("deep_mlp", DeepMLP(), torch.randn(5, 20))
    export("logreg", LogReg(), torch.rand(3, 1, 7, 7))
    export("linreg", LinReg(), torch.randn(6, 3))
    export("rnn_loop", RNNLoop(), torch.randn(3, 5, 6))


if __name__ == "__main__":
    main()
