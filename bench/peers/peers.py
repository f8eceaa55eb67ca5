"""Peer timings for the warm-forward table: PyTorch eager or ONNX Runtime on the same
synthesized weights and the same inputs as bench/src/bin/forward.rs. Prints one JSON line.

python peers.py --engine pytorch|onnxruntime|onnxruntime-int8|export --model DIR --task bert|vit|gpt2|resnet
                [--runs 20] [--threads 2] [--seq 128] [--onnx-dir /tmp/edgerun-onnx]

Each engine runs in its own process so its peak RSS (`peak_rss_bytes`, ru_maxrss) is its own:
`export` writes the ONNX file once (torch.onnx), and `onnxruntime` then imports neither torch nor
transformers.
"""
import argparse
import json
import os
import statistics
import time

import resource

import numpy as np


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
    """The inputs forward.rs feeds, as numpy arrays by input name."""
    if task in ("bert", "gpt2"):
        ids = (100 + (np.arange(seq, dtype=np.int64) * 7919) % 20000).reshape(1, seq)
        return {"input_ids": ids}
    pixels = ((np.arange(3 * 224 * 224) % 255).astype(np.float32) / 127.5 - 1.0).reshape(1, 3, 224, 224)
    return {"pixel_values": pixels}


TASKS = ("bert", "vit", "gpt2", "resnet")


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def load_torch_model(a):
    import torch
    import transformers

    classes = {
        "bert": transformers.BertModel,
        "vit": transformers.ViTForImageClassification,
        "gpt2": transformers.GPT2LMHeadModel,
        "resnet": transformers.ResNetForImageClassification,
    }
    torch.set_num_threads(a.threads)
    model = classes[a.task].from_pretrained(a.model, dtype=torch.float32).eval()
    if a.task == "gpt2":
        model.config.use_cache = False
    inputs = {k: torch.from_numpy(v) for k, v in inputs_for(a.task, a.seq).items()}
    return torch, model, inputs


def run_pytorch(a):
    torch, model, inputs = load_torch_model(a)
    with torch.inference_mode():
        ms = timed(lambda: model(**inputs), 3, a.runs) * 1e3
    row = {"engine": "pytorch", "task": a.task, "threads": a.threads, "runs": a.runs, "forward_ms": ms, "torch": torch.__version__}
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
    row["peak_rss_bytes"] = peak_rss_bytes()
    return row


def onnx_path(a):
    return os.path.join(a.onnx_dir, f"{a.task}-seq{a.seq}.onnx")


def export(a):
    """Writes the ONNX file unless one newer than the model's weights is there."""
    path = onnx_path(a)
    weights = [os.path.join(a.model, f) for f in os.listdir(a.model) if f.endswith(".safetensors")]
    if os.path.exists(path) and all(os.path.getmtime(path) > os.path.getmtime(w) for w in weights):
        return {"engine": "export", "task": a.task, "path": path, "cached": True}
    torch, model, inputs = load_torch_model(a)
    os.makedirs(a.onnx_dir, exist_ok=True)
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
    partial = path + ".partial"
    try:
        with torch.no_grad():
            torch.onnx.export(wrapped, args, partial, input_names=names, dynamo=False, opset_version=17)
    except Exception as legacy_error:  # noqa: BLE001 - report and try the other exporter
        try:
            with torch.no_grad():
                torch.onnx.export(wrapped, args, partial, input_names=names, dynamo=True)
        except Exception as dynamo_error:  # noqa: BLE001
            return {"engine": "onnxruntime", "task": a.task, "error": f"export failed: {legacy_error!s:.200} / {dynamo_error!s:.200}"}
    os.replace(partial, path)
    return {"engine": "export", "task": a.task, "path": path, "cached": False}


def quantized_path(a):
    """ONNX Runtime's dynamic int8 model of the exported one (weights int8 per channel,
    activations quantised per call), made once with onnxruntime.quantization.quantize_dynamic."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = onnx_path(a)
    path = source.replace(".onnx", "-int8.onnx")
    if not os.path.exists(path) or os.path.getmtime(path) < os.path.getmtime(source):
        partial = path + ".partial.onnx"
        quantize_dynamic(source, partial, weight_type=QuantType.QInt8, per_channel=True)
        os.replace(partial, path)
    return path


def run_onnxruntime(a):
    import onnxruntime as ort

    path = onnx_path(a)
    if not os.path.exists(path):
        return {"engine": a.engine, "task": a.task, "error": f"no {path}: run --engine export first"}
    if a.engine == "onnxruntime-int8":
        path = quantized_path(a)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    feed = inputs_for(a.task, a.seq)
    ms = timed(lambda: session.run(None, feed), 3, a.runs) * 1e3
    return {"engine": a.engine, "task": a.task, "threads": a.threads, "runs": a.runs, "forward_ms": ms, "ort": ort.__version__, "peak_rss_bytes": peak_rss_bytes()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--engine", required=True, choices=("pytorch", "onnxruntime", "onnxruntime-int8", "export"))
    p.add_argument("--model", required=True)
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--decode", type=int, default=32)
    p.add_argument("--onnx-dir", default="/tmp/edgerun-onnx")
    a = p.parse_args()
    run = {"pytorch": run_pytorch, "onnxruntime": run_onnxruntime, "onnxruntime-int8": run_onnxruntime, "export": export}[a.engine]
    print(json.dumps(run(a)), flush=True)


if __name__ == "__main__":
    main()
