"""The cold start a user would otherwise get: transformers from_pretrained on the same HF folder
plus one forward, in a fresh process after the caller dropped the page cache. Prints JSON with
the time from from_pretrained to the end of the forward and the process's peak RSS.

python cold.py --model DIR --task bert|gpt2|vit [--threads 2] [--seq 128]
(vit: one 224x224 image)
"""
import argparse
import json
import resource
import time

import torch
import transformers

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--task", required=True, choices=["bert", "gpt2", "vit"])
p.add_argument("--threads", type=int, default=2)
p.add_argument("--seq", type=int, default=128)
a = p.parse_args()
torch.set_num_threads(a.threads)
cls = {
    "bert": transformers.BertModel,
    "gpt2": transformers.GPT2LMHeadModel,
    "vit": transformers.ViTForImageClassification,
}[a.task]
if a.task == "vit":
    inputs = {"pixel_values": torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))}
else:
    inputs = {"input_ids": torch.tensor([[100 + (i * 7919) % 20000 for i in range(a.seq)]])}
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
start = time.perf_counter()
model = cls.from_pretrained(a.model, dtype=torch.float32).eval()
loaded = time.perf_counter()
with torch.inference_mode():
    model(**inputs)
end = time.perf_counter()
print(json.dumps({
    "engine": "pytorch-cold", "task": a.task, "threads": a.threads, "torch": torch.__version__,
    "wall_s": end - start, "load_s": loaded - start, "compute_s": end - loaded,
    "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "rss_before_load_bytes": rss_before,
}))
