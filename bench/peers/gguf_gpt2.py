"""Converts a GPT-2 folder (edgerun synth's, which has no tokenizer) into an fp32 GGUF with
llama.cpp's own converter, for llama-bench.

Usage: gguf_gpt2.py LLAMA_CPP_DIR MODEL_DIR OUT.gguf

The converter reads the tokenizer only to write it into the file; decode speed does not depend
on it. So the vocabulary written here is a synthetic byte-level BPE of the model's size: the 256
byte symbols of GPT-2's byte-to-unicode map, two-symbol merges up to the vocabulary size, and
<|endoftext|> last; it is declared with GPT-2's pre-tokenizer. Weights and hyperparameters go
through the converter unchanged (`GPT2Model`, `--outtype f32`).
"""
import json
import sys
from pathlib import Path


def bytes_to_unicode():
    """GPT-2's map from bytes to printable characters."""
    visible = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    chars = visible[:]
    extra = 0
    for b in range(256):
        if b not in visible:
            visible.append(b)
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def synthetic_vocab(size):
    symbols = bytes_to_unicode()
    tokens = list(symbols)
    merges = []
    for a in symbols:
        for b in symbols:
            if len(tokens) >= size - 1:
                break
            tokens.append(a + b)
            merges.append(f"{a} {b}")
    tokens.append("<|endoftext|>")
    return tokens, merges


def main():
    llama_dir, model_dir, out = (Path(a) for a in sys.argv[1:4])
    sys.path.insert(0, str(llama_dir / "gguf-py"))
    sys.path.insert(0, str(llama_dir))
    import convert_hf_to_gguf as convert
    from conversion.gpt2 import GPT2Model

    vocab_size = json.loads((model_dir / "config.json").read_text())["vocab_size"]

    def set_vocab(self):
        tokens, merges = synthetic_vocab(vocab_size)
        writer = self.gguf_writer
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("gpt-2")
        writer.add_token_list(tokens)
        writer.add_token_types([1] * (len(tokens) - 1) + [3])  # normal, then control
        writer.add_token_merges(merges)
        writer.add_bos_token_id(len(tokens) - 1)
        writer.add_eos_token_id(len(tokens) - 1)

    GPT2Model.set_vocab = set_vocab
    sys.argv = ["convert_hf_to_gguf.py", str(model_dir), "--outtype", "f32", "--outfile", str(out)]
    convert.main()


if __name__ == "__main__":
    main()
