"""Writes a safetensors file with pixel_values [1, 3, SIZE, SIZE] (float32), no dependencies.
python3 make_pixels.py OUT SIZE"""
import json
import struct
import sys

out, size = sys.argv[1], int(sys.argv[2])
n = 3 * size * size
values = [(i % 255) / 127.5 - 1.0 for i in range(n)]
header = json.dumps({"pixel_values": {"dtype": "F32", "shape": [1, 3, size, size], "data_offsets": [0, 4 * n]}}).encode()
header += b" " * (-len(header) % 8)
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(header)) + header + struct.pack(f"<{n}f", *values))
