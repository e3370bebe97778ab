"""``tokensampler doctor``: find the stage that is broken, without hanging.

Each stage runs in a child process of its own under a timeout, so a stage
that never returns (a compiler waiting on a lock, a launch behind a hung
kernel, a synchronize that never ends) is killed and reported as HUNG, and
the doctor goes on. Stages, in order:

==============  ===========================================================
environment     versions of Python, torch, Triton, tokensampler; settings
device          the device is visible and usable by torch
compiler        Triton imports and finds its compiler for the device
cache           Triton's cache directory is writable
noop kernel     compile and run a one-store kernel, read the result back
allocate        allocate and fill 64 MiB on the device
copy            host to device and back, bit for bit
<op>            one stage per public function (``ops.OPS``): launch it
                on a small batch, synchronize, compare with the reference
                backend token for token, time one more call
==============  ===========================================================

A stage whose prerequisite did not pass is SKIPPED. Inside a stage the child
reports each step as it finishes (``launch``, ``synchronize``, ...), so a
HUNG or FAILED stage says which step it was in and which finished last.

On the CPU the kernels run under Triton's interpreter (the child sets
``TRITON_INTERPRET=1``), which checks them but says nothing about a GPU.

For testing the doctor itself, ``TOKENSAMPLER_DOCTOR_INJECT=stage:hang`` (or
``stage:fail``, or ``stage:hang:step``) makes that stage hang or fail.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Optional

INJECT_VAR = "TOKENSAMPLER_DOCTOR_INJECT"
BASE_STAGES = ["environment", "device", "compiler", "cache", "noop kernel", "allocate", "copy"]
NEEDS = {"device": ["environment"], "compiler": ["device"], "cache": ["compiler"],
         "noop kernel": ["compiler", "cache"], "allocate": ["device"], "copy": ["allocate"]}
OP_NEEDS = ["noop kernel", "copy"]


def _op_names() -> list[str]:
    from .ops import OPS   # imports torch: only the runner's stage list needs it

    return list(OPS)


@dataclass
class StageResult:
    stage: str
    status: str = "OK"          # OK, FAILED, HUNG, SKIPPED
    seconds: float = 0.0
    detail: str = ""
    steps: list = field(default_factory=list)   # [(step, seconds)] that finished


# ---------------------------------------------------------------- the child

class _Child:
    """Runs one stage, printing a line as each step starts and ends."""

    def __init__(self, stage: str, device: str, vocab: int):
        self.stage, self.device, self.vocab = stage, device, vocab
        inject = os.environ.get(INJECT_VAR, "").split(":")
        self.inject = inject if len(inject) >= 2 and inject[0] == stage else None

    def step(self, name: str):
        self._emit("start", name)
        if self.inject and self.inject[2:] in ([], [name]):
            if self.inject[1] == "hang":
                while True:   # injected: a stage that never returns
                    time.sleep(3600)
            raise RuntimeError(f"injected failure ({INJECT_VAR}) in step {name!r}")
        return _Step(self, name)

    @staticmethod
    def _emit(kind: str, *fields) -> None:
        print("@@", kind, *fields, flush=True)

    def run(self) -> None:
        try:
            if self.inject and len(self.inject) == 2:
                self.step("begin")   # injected at the stage's start
            detail = getattr(self, "_" + self.stage.replace(" ", "_"), self._op)()
            self._emit("ok", json.dumps(detail or ""))
        except BaseException as exc:   # reported to the parent, never raised
            self._emit("failed", json.dumps(f"{type(exc).__name__}: {exc}"))

    def _torch_device(self):
        import torch

        return torch.device(self.device)

    def _environment(self):
        with self.step("import"):
            import platform

            import torch
            from . import __version__
            try:
                import triton
                triton_version = triton.__version__
            except Exception as exc:   # reported, the compiler stage fails on it
                triton_version = f"not importable ({type(exc).__name__}: {exc})"
        settings = {k: os.environ[k] for k in ("TRITON_INTERPRET", "TOKENSAMPLER_BACKEND",
                                               "TOKENSAMPLER_TIMEOUT_S", "CUDA_VISIBLE_DEVICES",
                                               "TRITON_CACHE_DIR") if k in os.environ}
        cuda = (f"ROCm {torch.version.hip}" if torch.version.hip else
                f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only build")
        return (f"python {platform.python_version()}, torch {torch.__version__} ({cuda}), "
                f"triton {triton_version}, tokensampler {__version__}"
                + (f"; {settings}" if settings else ""))

    def _device(self):
        import torch

        dev = self._torch_device()
        if dev.type == "cpu":
            return "cpu (Triton kernels run under the interpreter)"
        with self.step("query"):
            if not torch.cuda.is_available():
                raise RuntimeError("torch.cuda.is_available() is False: no GPU visible "
                                   "(driver, CUDA_VISIBLE_DEVICES, or a CPU-only torch build)")
            index = dev.index or 0
            if index >= torch.cuda.device_count():
                raise RuntimeError(f"{dev} asked for, but torch sees "
                                   f"{torch.cuda.device_count()} device(s)")
            props = torch.cuda.get_device_properties(index)
        return f"{props.name}, {props.multi_processor_count} SMs, {props.total_memory / 2**30:.0f} GiB"

    def _compiler(self):
        with self.step("import triton"):
            import triton
        if self._torch_device().type == "cpu":
            return f"triton {triton.__version__}, interpreter mode"
        with self.step("find backend"):
            target = triton.runtime.driver.active.get_current_target()
        return f"triton {triton.__version__}, target {target.backend} {target.arch}"

    def _cache(self):
        import tempfile

        from triton import knobs

        path = knobs.cache.dir
        with self.step("write"):
            os.makedirs(path, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path, prefix="tokensampler-doctor-"):
                pass
        return path

    def _noop_kernel(self):
        import torch
        import triton
        import triton.language as tl

        @triton.jit
        def store_one(ptr):
            tl.store(ptr, 1)

        out = torch.zeros(1, dtype=torch.int32, device=self._torch_device())
        with self.step("compile and launch"):
            store_one[(1,)](out)
        with self.step("synchronize"):
            value = int(out.item())
        if value != 1:
            raise RuntimeError(f"the kernel ran but wrote {value}, expected 1")
        return "wrote 1, read 1"

    def _allocate(self):
        import torch

        with self.step("allocate"):
            buf = torch.empty(16 << 20, dtype=torch.float32, device=self._torch_device())
        with self.step("fill"):
            buf.fill_(1.5)
            total = float(buf[:: 1 << 20].sum().item())
        if total != 1.5 * 16:
            raise RuntimeError(f"filled 1.5, read back a sum of {total}, expected 24")
        return "64 MiB"

    def _copy(self):
        import torch

        host = torch.randn(1 << 20)
        with self.step("host to device"):
            dev = host.to(self._torch_device())
        with self.step("device to host"):
            back = dev.cpu()
        if not torch.equal(back, host):
            raise RuntimeError("the round trip changed the data")
        return "4 MiB round trip, bit for bit"

    def _op(self):
        import torch

        from .ops import OPS, call_op, example_inputs

        if self.stage not in OPS:
            raise RuntimeError(f"unknown stage {self.stage!r}")
        dev = self._torch_device()
        sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
        logits, probs = example_inputs(self.vocab, 3, torch.float32, dev, seed=1)
        with self.step("launch"):
            got = call_op(self.stage, logits, probs, True, backend="triton")
        with self.step("synchronize"):
            sync()
        with self.step("compare"):
            ref = call_op(self.stage, logits, probs, True, backend="reference")
            got, ref = (got, ref) if isinstance(got, tuple) else ((got,), (ref,))
            same = all(torch.equal(a.cpu(), b.cpu()) if a.dtype != torch.float32 else
                       torch.allclose(a.cpu(), b.cpu(), rtol=1e-5, atol=1e-6, equal_nan=True)
                       for a, b in zip(got, ref))
        if not same:
            raise RuntimeError(f"the Triton result differs from the reference backend's: "
                               f"{got[0].flatten()[:8].tolist()} against "
                               f"{ref[0].flatten()[:8].tolist()}")
        with self.step("time"):
            start = time.perf_counter()
            call_op(self.stage, logits, probs, True, backend="triton")
            sync()
            micro = (time.perf_counter() - start) * 1e6
        return f"matches the reference (3 x {self.vocab}); one call {micro:.0f} us"


class _Step:
    def __init__(self, child: _Child, name: str):
        self.child, self.name, self.start = child, name, time.perf_counter()

    def __enter__(self):
        return self

    def __exit__(self, kind, *_):
        if kind is None:
            self.child._emit("end", self.name, f"{time.perf_counter() - self.start:.6f}")
        return False


# --------------------------------------------------------------- the parent

def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def run_stage(stage: str, device: str, timeout: float, vocab: int) -> StageResult:
    """Run one stage in a child process; never waits longer than ``timeout``."""
    env = dict(os.environ)
    if device.startswith("cpu"):
        env["TRITON_INTERPRET"] = "1"
    cmd = [sys.executable, "-m", "tokensampler.doctor", "--child", stage, "--device", device,
           "--vocab", str(vocab)]
    result = StageResult(stage)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    errors: list[str] = []
    err_reader = threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True)
    err_reader.start()
    current, outcome = "set-up, before the stage's first step", None
    deadline = start + timeout
    while outcome is None:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        parts = line.split(maxsplit=2)
        if len(parts) < 2 or parts[0] != "@@":
            continue
        kind, rest = parts[1], (parts[2] if len(parts) > 2 else "")
        if kind == "start":
            current = rest.strip()
        elif kind == "end":
            step, seconds = rest.rsplit(maxsplit=1)
            result.steps.append((step, float(seconds)))
            current = f"after {step}"
        elif kind in ("ok", "failed"):
            outcome = (kind, json.loads(rest))
    result.seconds = time.monotonic() - start
    # The child has answered, died or run out of time: give it what is left of
    # the time to exit, then kill its whole process group (it may have started
    # others), so that nothing it left behind can hold the doctor up.
    try:
        proc.wait(timeout=max(0.5, deadline - time.monotonic()))
        exited = True
    except subprocess.TimeoutExpired:
        exited = False
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    err_reader.join(timeout=1.0)
    last = result.steps[-1][0] if result.steps else "none"
    if outcome is None:
        if result.seconds >= timeout or not exited:
            result.status = "HUNG"
            result.detail = (f"no answer within {timeout:g} s, stuck in step '{current}'; "
                             f"last step finished: {last}")
        else:
            tail = "".join(errors[-5:]).strip().splitlines()
            result.status = "FAILED"
            result.detail = (f"the child process died (exit {proc.returncode}) in step "
                             f"'{current}': {tail[-1] if tail else 'no message'}")
        return result
    kind, detail = outcome
    if kind == "failed":
        result.status = "FAILED"
        result.detail = f"in step '{current}': {detail}"
    elif not exited:
        result.status = "HUNG"
        result.detail = (f"the stage passed ({detail}) but its process did not exit within "
                         f"{timeout:g} s (stuck in shutdown, e.g. releasing the device)")
    else:
        result.detail = detail
    return result


def diagnose(device: str = "auto", timeout: float = 120.0, stages: Optional[list[str]] = None,
             vocab: int = 1000, progress=None) -> list[StageResult]:
    """Run the stages (all by default) and return their results in order."""
    if device == "auto":
        device = "cuda" if _cuda_visible() else "cpu"
    order = BASE_STAGES + _op_names()
    chosen = order if not stages else [s for s in order if s in stages]
    unknown = sorted(set(stages or ()) - set(order))
    if unknown:
        raise SystemExit(f"tokensampler doctor: --stages names unknown stages {unknown}; "
                         f"known: {order}")
    results: dict[str, StageResult] = {}
    for stage in chosen:
        needs = NEEDS.get(stage, OP_NEEDS if stage not in BASE_STAGES else [])
        broken = [n for n in needs if n in results and results[n].status != "OK"]
        if broken:
            results[stage] = StageResult(stage, "SKIPPED", 0.0, f"needs {', '.join(broken)}")
        else:
            if progress:
                progress(stage)
            results[stage] = run_stage(stage, device, timeout, vocab)
        if results[stage].status == "HUNG":
            done = [s for s in results if results[s].status == "OK"]
            results[stage].detail += f"; last stage that finished: {done[-1] if done else 'none'}"
    return [results[s] for s in chosen]


def _cuda_visible() -> bool:
    # Asked in a child as well, so that a driver which hangs cannot hang us.
    try:
        out = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                             capture_output=True, text=True, timeout=60)
        return out.stdout.strip() == "True"
    except subprocess.TimeoutExpired:
        return True   # something is there and it hangs: the stages will say where


def render(results: list[StageResult], device: str) -> str:
    rows = [("stage", "result", "time", "detail")]
    # One line a stage; --json keeps the whole message.
    rows += [(r.stage, r.status, f"{r.seconds:.1f} s", (r.detail.splitlines() or [""])[0])
             for r in results]
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"tokensampler doctor on {device}"]
    for row in rows:
        lines.append("  ".join(cell.ljust(width[i]) for i, cell in enumerate(row[:3]))
                     + "  " + row[3])
    bad = [r for r in results if r.status in ("FAILED", "HUNG")]
    lines.append("all stages passed" if not bad else
                 f"{len(bad)} stage(s) broken; the first: {bad[0].stage} ({bad[0].status})")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """The CLI entry (``tokensampler doctor``); exit status 1 if any stage broke."""
    device = args.device
    if device == "auto":
        device = "cuda" if _cuda_visible() else "cpu"
    stages = [s.strip() for s in args.stages.split(",")] if args.stages else None
    progress = None if args.json else (lambda s: print(f"... {s}", file=sys.stderr, flush=True))
    results = diagnose(device, args.timeout, stages, args.vocab, progress)
    if args.json:
        print(json.dumps({"device": device, "stages": [asdict(r) for r in results]}, indent=2))
    else:
        print(render(results, device))
    return int(any(r.status in ("FAILED", "HUNG") for r in results))


def _device_arg(value: str) -> str:
    head, _, index = value.partition(":")
    if value == "auto" or (head in ("cpu", "cuda") and (not index or index.isdigit())):
        return value
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {value!r}")


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value!r}")
    return seconds


def _vocab(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return int(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", type=_device_arg,
                        help="cpu, cuda or cuda:N (default: cuda if torch sees one, else cpu)")
    parser.add_argument("--timeout", type=_seconds, default=120.0,
                        help="seconds each stage may take before it is killed as HUNG "
                             "(default 120: a cold Triton compile takes a few seconds a kernel)")
    parser.add_argument("--stages", default=None,
                        help="comma-separated subset of stages (default: all)")
    parser.add_argument("--vocab", type=_vocab, default=1000,
                        help="vocabulary of the test batch")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


if __name__ == "__main__":   # the child: python -m tokensampler.doctor --child STAGE
    child = argparse.ArgumentParser()
    child.add_argument("--child", required=True)
    child.add_argument("--device", required=True)
    child.add_argument("--vocab", type=int, required=True)
    a = child.parse_args()
    _Child(a.child, a.device, a.vocab).run()
