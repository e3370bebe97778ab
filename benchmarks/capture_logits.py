"""Capture real next-token logits from the demo model, for the benchmark's 'real' inputs.

Runs on the CPU (the model's package is too large to carry to a GPU machine):
generates continuations of a few prompts and keeps the logits of every step,
as bfloat16 (rows, 49152), about 100 KB a row.

    python benchmarks/capture_logits.py --rows 256 --out .data/smollm2_logits.pt
"""

import argparse
import os

import torch

from tokensampler import demo

PROMPTS = ["Once upon a time", "The capital of France is", "def fibonacci(n):",
           "In 1905, Albert Einstein", "A good recipe for bread needs", "The stock market"]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--out", default=".data/smollm2_logits.pt")
    args = ap.parse_args(argv)
    model, tokenizer = demo.load_model(demo.locate_model())
    rows = []
    per_prompt = -(-args.rows // len(PROMPTS))
    with torch.no_grad():
        for i, prompt in enumerate(PROMPTS):
            ids = tokenizer(prompt, return_tensors="pt").input_ids
            past = None
            for step in range(per_prompt):
                out = model(ids if past is None else ids[:, -1:], past_key_values=past,
                            use_cache=True)
                past = out.past_key_values
                logits = out.logits[0, -1].float()
                rows.append(logits.to(torch.bfloat16))
                nxt = torch.multinomial(torch.softmax(logits, -1), 1,
                                        generator=torch.Generator().manual_seed(i * 1000 + step))
                ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
    real = torch.stack(rows[:args.rows])
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    torch.save(real, args.out)
    print(f"saved {tuple(real.shape)} {real.dtype} to {args.out}")


if __name__ == "__main__":
    main()
