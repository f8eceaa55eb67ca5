"""Peer timings for the warm-forward table: PyTorch eager and ONNX Runtime on the same
synthesized weights and the same inputs as bench/src/bin/forward.rs. Prints JSON lines.

python peers.py --model DIR --task bert|vit|gpt2|resnet [--runs 20] [--threads 2] [--seq 128]
"""
import argparse
import json
import os
import statistics
import time

import numpy as np
import torch
import transformers


def timed(fn, warmup, runs):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def inputs_for(task, seq):
    if task in ("bert", "gpt2"):
        ids = (100 + (np.arange(seq, dtype=np.int64) * 7919) % 20000).reshape(1, seq)
        return {"input_ids": torch.from_numpy(ids)}
    pixels = ((np.arange(3 * 224 * 224) % 255).astype(np.float32) / 127.5 - 1.0).reshape(1, 3, 224, 224)
    return {"pixel_values": torch.from_numpy(pixels)}


CLASSES = {
    "bert": transformers.BertModel,
    "vit": transformers.ViTForImageClassification,
    "gpt2": transformers.GPT2LMHeadModel,
    "resnet": transformers.ResNetForImageClassification,
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--task", required=True, choices=CLASSES)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--decode", type=int, default=32)
    p.add_argument("--onnx-dir", default="/tmp/edgerun-onnx")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model = CLASSES[a.task].from_pretrained(a.model, dtype=torch.float32).eval()
    if a.task == "gpt2":
        model.config.use_cache = False
    inputs = inputs_for(a.task, a.seq)

    with torch.inference_mode():
        ms = timed(lambda: model(**inputs), 3, a.runs) * 1e3
    row = {"engine": "pytorch", "task": a.task, "threads": a.threads, "forward_ms": ms, "torch": torch.__version__}
    if a.task == "gpt2":
        with torch.inference_mode():
            per = []
            for _ in range(min(a.runs, 5)):
                out = model(**inputs, use_cache=True)
                past = out.past_key_values
                t = time.perf_counter()
                for step in range(a.decode):
                    out = model(input_ids=torch.tensor([[500 + step]]), past_key_values=past, use_cache=True)
                    past = out.past_key_values
                per.append((time.perf_counter() - t) / a.decode)
        row["decode_ms_per_token"] = statistics.median(per) * 1e3
    print(json.dumps(row), flush=True)

    import onnxruntime as ort

    os.makedirs(a.onnx_dir, exist_ok=True)
    path = os.path.join(a.onnx_dir, f"{a.task}.onnx")
    names = list(inputs)

    class ByName(torch.nn.Module):
        """transformers' forward takes its inputs by keyword; the exporter passes them in order."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            out = self.inner(**dict(zip(names, args)))
            return out[0]

    wrapped = ByName(model)
    args = tuple(inputs.values())
    try:
        with torch.no_grad():
            torch.onnx.export(wrapped, args, path, input_names=names, dynamo=False, opset_version=17)
    except Exception as legacy_error:  # noqa: BLE001 - report and try the other exporter
        try:
            with torch.no_grad():
                torch.onnx.export(wrapped, args, path, input_names=names, dynamo=True)
        except Exception as dynamo_error:  # noqa: BLE001
            print(json.dumps({"engine": "onnxruntime", "task": a.task, "error": f"export failed: {legacy_error!s:.200} / {dynamo_error!s:.200}"}), flush=True)
            return
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    feed = {k: v.numpy() for k, v in inputs.items()}
    ms = timed(lambda: session.run(None, feed), 3, a.runs) * 1e3
    print(json.dumps({"engine": "onnxruntime", "task": a.task, "threads": a.threads, "forward_ms": ms, "ort": ort.__version__}), flush=True)


if __name__ == "__main__":
    main()
