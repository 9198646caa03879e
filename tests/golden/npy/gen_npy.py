# gen_npy.py - writes the .npy files test_npy.c reads and compares against
# (run with /usr/bin/python3 from this directory; numpy writes every file).
import numpy as np
import numpy.lib.format as fmt

def save(name, a, version=None):
    with open(name, "wb") as f:
        if version is None:
            np.save(f, a)
        else:
            fmt.write_array(f, a, version=version)

save("f4_2x3.npy", np.array([[1.5, -2.25, 3.0], [0.1, 1e-30, -7e20]], dtype="<f4"))
save("i4_4.npy", np.array([0, -1, 2147483647, -2147483648], dtype="<i4"))
save("i8_2x2.npy", np.array([[5, -6], [1 << 40, -(1 << 33)]], dtype="<i8"))
save("u1_2x2x2.npy", np.arange(8, dtype=np.uint8).reshape(2, 2, 2) * 30)
save("f4_scalar.npy", np.array(42.5, dtype="<f4"))
save("f4_0x3.npy", np.zeros((0, 3), dtype="<f4"))
save("f4_v2.npy", np.array([1, 2, 3], dtype="<f4"), version=(2, 0))
save("i4_v3.npy", np.array([[7, 8]], dtype="<i4"), version=(3, 0))
save("f8_bad.npy", np.array([1.0], dtype="<f8"))
save("f4_fortran_bad.npy", np.asfortranarray(np.ones((2, 3), dtype="<f4")))
save("f4_be_bad.npy", np.array([1, 2], dtype=">f4"))
