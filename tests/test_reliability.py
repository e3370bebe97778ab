"""Issue 4, sections 1-3 on the CPU: the watchdog, the fallback, warm-up and
``tokensampler doctor``, each driven into the failure it exists for.

A stage that blocks is simulated with a kernel stand-in that waits on a
``threading.Event``; the real never-finishing GPU kernel is in
tests/test_gpu.py.
"""

import json
import math
import threading
import time
import types
import warnings

import pytest
import torch

import tokensampler as ts
from helpers import DEVICE, available_backends
from tokensampler import dispatch, doctor, info, watchdog
from tokensampler.ops import OPS

needs_triton = pytest.mark.skipif("triton" not in available_backends(DEVICE),
                                  reason="Triton backend unusable here (see tokensampler info)")


@pytest.fixture
def release():
    """An event that blocked stand-ins wait on; set at teardown, whatever happened."""
    event = threading.Event()
    yield event
    event.set()


def probs(batch=3, vocab=37, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(batch, vocab, generator=g), dim=1).to(DEVICE)


class StandInKernel:
    """Looks like a Triton kernel to the launcher; blocks or raises when launched."""

    def __init__(self, name, release=None, error=None):
        self.fn = types.SimpleNamespace(__name__=name)
        self.release, self.error, self.launches = release, error, 0

    def __getitem__(self, grid):
        def run(*args, **kwargs):
            self.launches += 1
            if self.error is not None:
                raise self.error
            self.release.wait()
        return run


# ------------------------------------------------------------------ watchdog

@pytest.mark.parametrize("bad, error", [(-1, ts.ArgumentError), (0, ts.ArgumentError),
                                        (float("nan"), ts.ArgumentError),
                                        ("5", ts.ArgumentTypeError), (True, ts.ArgumentTypeError)])
def test_timeout_argument_is_checked(bad, error):
    with pytest.raises(error, match="timeout_s"):
        ts.sampling_from_probs(probs(), timeout_s=bad)


def test_default_timeout_precedence(monkeypatch):
    monkeypatch.setenv(watchdog.ENV_VAR, "2.5")
    try:
        assert ts.get_default_timeout() == 2.5
        ts.set_default_timeout(0.75)
        assert ts.get_default_timeout() == 0.75
        assert watchdog.resolve_timeout("op", 3) == 3.0
        ts.set_default_timeout(math.inf)   # no limit, whatever the environment says
        assert ts.get_default_timeout() is None
        ts.set_default_timeout(None)
        assert ts.get_default_timeout() == 2.5
        monkeypatch.setenv(watchdog.ENV_VAR, "soon")
        with pytest.raises(ts.ArgumentError, match="TOKENSAMPLER_TIMEOUT_S.*'soon'"):
            ts.sampling_from_probs(probs())
    finally:
        ts.set_default_timeout(None)


def test_same_tokens_with_and_without_a_timeout(backend):
    x = probs(5, 300)
    for fn, kw in [(ts.top_k_top_p_sampling_from_probs, dict(top_k=20, top_p=0.8)),
                   (ts.sampling_from_probs, {})]:
        plain = fn(x, **kw, seed=9, return_valid=True, backend=backend)
        guarded = fn(x, **kw, seed=9, return_valid=True, backend=backend, timeout_s=30)
        assert all(torch.equal(a, b) for a, b in zip(plain, guarded))
    assert torch.equal(ts.softmax(x, backend=backend, timeout_s=30), ts.softmax(x, backend=backend))


def test_errors_inside_the_guarded_call_keep_their_type():
    with pytest.raises(ts.ArgumentError, match="top_p"):
        ts.top_p_sampling_from_probs(probs(), 2.0, timeout_s=5)


@needs_triton
def test_a_launch_that_never_returns_is_named(monkeypatch, release):
    from tokensampler.triton import chunked

    x = probs(4, 37)
    ts.sampling_from_probs(x, seed=1, backend="triton")   # compile before the clock starts
    stuck = StandInKernel("final_kernel", release=release)
    monkeypatch.setattr(chunked, "final_kernel", stuck)
    start, cpu = time.monotonic(), time.process_time()
    with pytest.raises(ts.SamplingTimeoutError) as info_:
        ts.sampling_from_probs(x, seed=1, timeout_s=1.0, backend="triton")
    waited, cpu_used = time.monotonic() - start, time.process_time() - cpu
    err = info_.value
    assert 1.0 <= waited < 2.0
    assert cpu_used < 0.5, "the wait must sleep, not spin"
    # startswith: on a GPU, a first call's stages read "launch ... (just compiled)".
    assert err.stage.startswith("launch final_kernel")
    assert err.last_finished.startswith("launch stats_kernel")
    assert (err.function, err.backend, err.shape, err.dtype) == (
        "sampling_from_probs", "triton", (4, 37), torch.float32)
    assert isinstance(err, TimeoutError) and isinstance(err, ts.TokenSamplerError)
    for text in ("sampling_from_probs", "launch final_kernel", "(4, 37) float32", "triton",
                 "tokensampler doctor"):
        assert text in str(err)
    # The stuck worker was abandoned: the next call gets a fresh one.
    monkeypatch.undo()
    assert torch.equal(ts.sampling_from_probs(x, seed=1, timeout_s=30, backend="triton"),
                       ts.sampling_from_probs(x, seed=1, backend="reference"))


def test_a_blocked_reference_backend_is_named(monkeypatch, release):
    from tokensampler import reference

    monkeypatch.setattr(reference, "renorm", lambda call: release.wait())
    with pytest.raises(ts.SamplingTimeoutError, match="run the reference backend") as err:
        ts.top_p_renorm_probs(probs(), 0.5, backend="reference", timeout_s=0.3)
    assert err.value.last_finished == "check arguments and choose a backend"


def test_the_default_timeout_guards_calls_that_pass_none(monkeypatch, release):
    from tokensampler import reference

    monkeypatch.setattr(reference, "sample", lambda call: release.wait())
    monkeypatch.setenv(watchdog.ENV_VAR, "0.3")
    with pytest.raises(ts.SamplingTimeoutError):
        ts.sampling_from_probs(probs(), backend="reference")


# ------------------------------------------------------------------ fallback

@needs_triton
def test_automatic_backend_falls_back_once_with_a_warning(monkeypatch):
    from tokensampler.triton import chunked

    broken = StandInKernel("stats_kernel", error=RuntimeError(
        "Triton Error [CUDA]: device kernel image is invalid (sm_999)"))
    monkeypatch.setattr(chunked, "stats_kernel", broken)
    monkeypatch.setattr(dispatch, "_kernels_serve", lambda device: True)
    monkeypatch.setattr(dispatch, "_fallbacks", {})
    x = probs(4, 37)
    want = ts.top_p_sampling_from_probs(x, 0.7, seed=3, backend="reference")
    with pytest.warns(ts.FallbackWarning, match="stats_kernel.*kernel image is invalid") as record:
        got = ts.top_p_sampling_from_probs(x, 0.7, seed=3)
    assert len(record) == 1 and torch.equal(got, want)
    assert record[0].filename == __file__   # the warning points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the second call neither warns nor retries
        assert torch.equal(ts.top_p_sampling_from_probs(x, 0.7, seed=3), want)
    assert broken.launches == 1
    assert "stats_kernel" in dispatch.fallbacks()[str(x.device)]
    report = info.collect()
    assert str(x.device) in report["fallbacks"]
    assert "fallback on" in info.render(report)
    # Named explicitly, Triton never falls back: the cause is raised.
    with pytest.raises(ts.BackendFailedError, match="launch stats_kernel.*sm_999") as err:
        ts.top_p_sampling_from_probs(x, 0.7, seed=3, backend="triton")
    assert isinstance(err.value.__cause__, RuntimeError)


@needs_triton
@pytest.mark.parametrize("error", [TypeError("unexpected keyword 'CAP'"),
                                   RuntimeError("CUDA error: an illegal memory access")])
def test_bugs_are_raised_not_hidden_by_a_fallback(monkeypatch, error):
    """Only import, compiler and launcher failures fall back; a programming
    error or a CUDA error from elsewhere is raised as it is."""
    from tokensampler.triton import chunked

    monkeypatch.setattr(chunked, "stats_kernel", StandInKernel("stats_kernel", error=error))
    monkeypatch.setattr(dispatch, "_kernels_serve", lambda device: True)
    monkeypatch.setattr(dispatch, "_fallbacks", {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(type(error), match=str(error).split()[0]):
            ts.sampling_from_probs(probs(), seed=1)
    assert dispatch.fallbacks() == {}


# ------------------------------------------------------------------- warm-up

def test_warmup_reports_every_call():
    report = ts.warmup([37, 40], [torch.float32, torch.bfloat16], DEVICE, backend="reference")
    assert len(report) == 2 * 2 * len(OPS) * 2
    assert {r["op"] for r in report} == set(OPS)
    assert all(r["seconds"] > 0 for r in report)
    with pytest.raises(ts.ArgumentError, match="ops.*nope"):
        ts.warmup(ops=["nope"])


@needs_triton
def test_warmup_runs_the_kernels(monkeypatch):
    """Warm-up calls each op at a batch in each launch form: per-row steps
    at the end of the launch before them (small batches) and as launches of
    their own (above FUSE_ROWS; here lowered to 2 so that 3 rows reach it).
    Each form is its own compiled variant, so a server warmed at batch 2
    alone compiled at its first larger request."""
    import tokensampler.triton as tt
    monkeypatch.setattr(tt, "FUSE_ROWS", {"plan": 2, "narrow": 2, "select": 2, "draws": 0,
                                          "round0": 2})
    launched = []
    real = tt.launch_with
    monkeypatch.setattr(tt, "launch_with", lambda kernel, grid, a, kw: (
        launched.append(kernel.fn.__name__), real(kernel, grid, a, kw))[1])
    ops = ["top_k_top_p_sampling_from_logits", "top_k_renorm_probs"]
    report = ts.warmup([37], [torch.float16], DEVICE, ops=ops, backend="triton")
    assert tt.warm_batches() == (2, 3)
    assert [(r["batch"], r["op"], r["per_row"]) for r in report] == [
        (b, o, p) for b in (2, 3) for o in ops for p in (False, True)]
    assert {"plan_kernel", "select_kernel"} <= set(launched), launched   # the split form ran
    assert ts.warmup([37], [torch.float16], DEVICE, ops=ops[:1], per_row=[False],
                     backend="triton", batches=[5])[0]["batch"] == 5


# -------------------------------------------------------------------- doctor

def test_doctor_passes_every_stage_on_the_cpu():
    results = doctor.diagnose("cpu", timeout=300, vocab=40)
    assert [r.stage for r in results] == doctor.BASE_STAGES + list(OPS)
    assert all(r.status == "OK" for r in results), doctor.render(results, "cpu")
    ops = [r for r in results if r.stage not in doctor.BASE_STAGES]
    assert all([s for s, _ in r.steps] == ["launch", "synchronize", "compare", "time"]
               for r in ops)


def test_doctor_reports_a_hung_stage_and_goes_on(monkeypatch):
    monkeypatch.setenv(doctor.INJECT_VAR, "copy:hang:device to host")
    start = time.monotonic()
    results = doctor.diagnose("cpu", timeout=8, stages=["environment", "device", "allocate",
                                                        "copy", "softmax"])
    assert time.monotonic() - start < 60
    status = {r.stage: r for r in results}
    assert [status[s].status for s in ("environment", "device", "allocate")] == ["OK"] * 3
    hung = status["copy"]
    assert hung.status == "HUNG" and 8 <= hung.seconds < 20
    assert "stuck in step 'device to host'" in hung.detail
    assert "last step finished: host to device" in hung.detail
    assert "last stage that finished: allocate" in hung.detail
    assert status["softmax"].status == "SKIPPED" and "copy" in status["softmax"].detail
    assert "HUNG" in doctor.render(results, "cpu")


def test_doctor_cli_reports_a_failed_stage_as_json(monkeypatch, capsys):
    from tokensampler.cli import main

    monkeypatch.setenv(doctor.INJECT_VAR, "noop kernel:fail")
    code = main(["doctor", "--device", "cpu", "--json", "--timeout", "60",
                 "--stages", "environment,device,compiler,cache,noop kernel,softmax"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["device"] == "cpu"
    status = {s["stage"]: s for s in report["stages"]}
    assert status["noop kernel"]["status"] == "FAILED"
    assert "injected failure" in status["noop kernel"]["detail"]
    assert status["softmax"]["status"] == "SKIPPED"
    assert status["cache"]["status"] == "OK"


def test_doctor_rejects_unknown_stages():
    with pytest.raises(SystemExit, match="unknown stages"):
        doctor.diagnose("cpu", stages=["enviroment"])


def test_a_triton_backend_that_cannot_import_falls_back(monkeypatch):
    """A broken Triton install: the import itself fails."""
    def broken(name):
        if name == "triton":
            raise ImportError("libtriton.so: cannot open shared object file")
        return original(name)

    original = dispatch.load
    monkeypatch.setattr(dispatch, "load", broken)
    monkeypatch.setattr(dispatch, "_kernels_serve", lambda device: True)
    monkeypatch.setattr(dispatch, "_fallbacks", {})
    x = probs()
    with pytest.warns(ts.FallbackWarning, match="import the Triton backend.*libtriton"):
        got = ts.softmax(x)
    assert torch.equal(got, ts.softmax(x, backend="reference"))
    monkeypatch.setattr(dispatch, "_fallbacks", {})
    with pytest.warns(ts.FallbackWarning, match="libtriton"):   # warm-up falls back alike
        assert len(ts.warmup([40], device=DEVICE, ops=["softmax"])) == 2
    if "triton" in available_backends(DEVICE):
        with pytest.raises(ts.BackendFailedError, match="libtriton") as err:
            ts.softmax(x, backend="triton")
        assert isinstance(err.value.__cause__, ImportError)


@pytest.mark.parametrize("kwargs, match", [
    (dict(vocab_sizes=[0]), "vocab_sizes.*positive ints"),
    (dict(dtypes=[torch.int32]), "dtypes.*torch.int32"),
    (dict(device="tpu"), "device.*'tpu'"),
    (dict(ops="softmax"), r"ops.*ops=\['softmax'\]"),
])
def test_warmup_names_the_bad_argument(kwargs, match):
    with pytest.raises((ts.ArgumentError, ts.ArgumentTypeError), match=match):
        ts.warmup(**{"device": "cpu", **kwargs})


@pytest.mark.parametrize("kwargs, match", [
    (dict(vocab_sizes=32000), "vocab_sizes.*list"), (dict(dtypes=torch.float16), "dtypes.*list"),
    (dict(per_row=True), "per_row.*list"), (dict(backend="fast"), "warmup: argument 'backend'"),
    (dict(batches=64), "batches.*list"), (dict(batches=[0]), "batches.*positive ints"),
    (dict(threads=0), "threads.*positive int"),
])
def test_warmup_names_bare_values_and_bad_backends(kwargs, match):
    with pytest.raises((ts.ArgumentError, ts.ArgumentTypeError), match=match):
        ts.warmup(**{"device": "cpu", **kwargs})


def test_serving_timeout_does_not_reach_warmup_or_the_doctor(monkeypatch):
    """A serving limit far shorter than a compile must not fail the tools."""
    monkeypatch.setenv(watchdog.ENV_VAR, "0.000001")
    assert len(ts.warmup([37], device="cpu", ops=["softmax"], backend="reference")) == 2
    results = doctor.diagnose("cpu", timeout=120, stages=["environment", "device", "softmax"],
                              vocab=40)
    assert [r.status for r in results] == ["OK"] * 3, doctor.render(results, "cpu")


def test_a_watchdog_worker_ends_with_its_caller_thread():
    """Each calling thread gets a worker thread for its guarded calls. When
    the caller ends, so does its worker, and with it what the worker's
    thread held (the Triton backend's workspace buffers): a server that
    makes a thread per request must not keep a worker for each."""
    def ours():
        return [t for t in threading.enumerate() if t.name == "tokensampler-watchdog"]
    before = set(ours())

    def caller():
        ts.sampling_from_probs(torch.tensor([[0.0, 1.0]]), seed=0, timeout_s=5.0)
    threads = [threading.Thread(target=caller) for _ in range(3)]
    for t in threads:
        t.start()
        t.join()
    for worker in set(ours()) - before:
        worker.join(timeout=5.0)
    assert set(ours()) <= before


def test_guarded_calls_keep_the_callers_inference_mode():
    x = probs()
    with torch.inference_mode():
        assert ts.softmax(x, timeout_s=30).is_inference()
    assert not ts.softmax(x, timeout_s=30).is_inference()


def test_naming_the_triton_backend_checks_an_accelerator_once(monkeypatch):
    """backend='triton' asks whether Triton can serve the device once per
    accelerator type (fixed for the process), on the CPU every call (it
    follows TRITON_INTERPRET), and never keeps a refusal."""
    calls, interpret = [], [True]

    def status(device):
        calls.append(device.type)
        return device.type == "cuda" or (device.type == "cpu" and interpret[0]), "stand-in reason"
    monkeypatch.setattr(dispatch, "triton_status", status)
    monkeypatch.setattr(dispatch, "_serves", {})
    for _ in range(3):
        assert dispatch.choose("op", "triton", torch.device("cuda")) == ("triton", False)
    assert calls == ["cuda"]
    assert dispatch.choose("op", "triton", torch.device("cpu")) == ("triton", False)
    interpret[0] = False   # TRITON_INTERPRET unset: the CPU is refused from now on
    for device in ("cpu", "meta", "meta"):
        with pytest.raises(ts.BackendUnavailableError, match="stand-in reason"):
            dispatch.choose("op", "triton", torch.device(device))
    assert calls == ["cuda", "cpu", "cpu", "meta", "meta"]


def test_a_stuck_call_does_not_delay_another_threads_call(monkeypatch, release):
    """Each calling thread has its own worker: a job stuck on one thread
    leaves the others' calls alone."""
    from tokensampler import reference

    original = reference.renorm
    monkeypatch.setattr(reference, "renorm", lambda call: release.wait() and original(call))
    errors = []

    def stuck():
        try:
            ts.top_p_renorm_probs(probs(), 0.5, backend="reference", timeout_s=2.0)
        except ts.SamplingTimeoutError as err:
            errors.append(err)
    thread = threading.Thread(target=stuck)
    thread.start()
    time.sleep(0.2)
    start = time.monotonic()
    assert ts.softmax(probs(), backend="reference", timeout_s=5.0).shape == (3, 37)
    assert time.monotonic() - start < 1.0
    thread.join()
    assert len(errors) == 1


@pytest.mark.parametrize("argv, match", [
    (["--device", "tpu"], "--device: expected auto, cpu, cuda or cuda:N"),
    (["--timeout", "-1"], "--timeout: expected a positive number"),
    (["--vocab", "0"], "--vocab: expected a positive integer"),
])
def test_doctor_cli_names_the_bad_option(argv, match, capsys):
    from tokensampler.cli import main

    with pytest.raises(SystemExit):
        main(["doctor", *argv])
    assert match in capsys.readouterr().err
