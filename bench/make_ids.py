"""Writes a safetensors file with input_ids [1, SEQ] (int64), no dependencies.
python3 make_ids.py OUT SEQ"""
import json
import struct
import sys

out, seq = sys.argv[1], int(sys.argv[2])
ids = [100 + (i * 7919) % 20000 for i in range(seq)]
header = json.dumps({"input_ids": {"dtype": "I64", "shape": [1, seq], "data_offsets": [0, 8 * seq]}}).encode()
header += b" " * (-len(header) % 8)
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(header)) + header + struct.pack(f"<{seq}q", *ids))
