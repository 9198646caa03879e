# gen_st.py - writes golden.safetensors the way the official safetensors
# library lays files out (__metadata__ first, tensors sorted by name, header
# padded with spaces to 8 bytes), for test_ckpt.c to read.  The format is
# written by hand because the safetensors package is not installed.
# Run with /usr/bin/python3 from this directory.
import json, struct
import numpy as np

tensors = {
    "h1.W": np.arange(6, dtype="<f4").reshape(2, 3) * 0.5 - 1,
    "h1.b": np.array([3.25, -0.125, 7], dtype="<f4"),
    "out\u00e9.s": np.array(2.5, dtype="<f4"),
}
header = {"__metadata__": {"format": "pt", "note": "a \"quoted\"\\ \u00e9 \ud83d\ude00 [x] {y}"}}
off, blobs = 0, []
for name in sorted(tensors):
    b = tensors[name].tobytes()
    header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [off, off + len(b)]}
    off += len(b)
    blobs.append(b)
h = json.dumps(header, ensure_ascii=True).encode()
h += b" " * (-len(h) % 8)
with open("golden.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
