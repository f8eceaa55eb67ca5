"""NVIDIA's tritonclient (PyPI tritonclient[http]) against `edgerun serve`: health, metadata,
infer with JSON and with binary data, a split tail; outputs compared with `edgerun run`'s.

usage: triton_client.py URL MODEL_NAME INPUTS.safetensors EXPECTED.safetensors
"""

import json
import struct
import sys

import numpy as np
import tritonclient.http as httpclient

DTYPES = {"F32": np.float32, "I64": np.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        start, end = e["data_offsets"]
        out[name] = np.frombuffer(body[start:end], dtype=DTYPES[e["dtype"]]).reshape(e["shape"])
    return out


def main():
    url, model, inputs_path, expected_path = sys.argv[1:5]
    inputs = read_safetensors(inputs_path)
    expected = read_safetensors(expected_path)
    client = httpclient.InferenceServerClient(url=url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(model)
    meta = client.get_model_metadata(model)
    assert meta["name"] == model, meta
    declared = [o["name"] for o in meta["outputs"]]
    assert set(declared) == set(expected), (declared, list(expected))
    checked = 0
    for binary in (False, True):
        request = []
        for name, array in inputs.items():
            datatype = "INT64" if array.dtype == np.int64 else "FP32"
            tensor = httpclient.InferInput(name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array, binary_data=binary)
            request.append(tensor)
        outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in expected]
        result = client.infer(model, request, outputs=outputs)
        for name, want in expected.items():
            got = result.as_numpy(name)
            assert got is not None, name
            assert got.shape == want.shape, (name, got.shape, want.shape)
            if binary:
                assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), name
            else:
                # JSON carries each f32 as a decimal that reads back to the same float.
                assert np.array_equal(got.astype(np.float32), want), name
            checked += 1
    # A bad request is an exception with the server's message, and the server goes on.
    try:
        bad = httpclient.InferInput("input_ids", [1, 2], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 2), np.float32))
        client.infer(model, [bad])
        raise SystemExit("a float input_ids was accepted")
    except httpclient.InferenceServerException as e:
        assert "integer" in str(e), str(e)
    assert client.is_server_ready()
    print(f"tritonclient: {checked} outputs equal edgerun run's, JSON and binary")


if __name__ == "__main__":
    main()
