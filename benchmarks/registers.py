"""Registers per thread of the chunked kernels, compiled for sm_90 on any
machine (no GPU needed: Triton's own compiler and cuobjdump).

A streaming kernel whose per-row tail needs many registers gets them for
every program: at 8 warps, 188 registers let one program sit on an SM where
77 let three, and the whole read slows down (benchmarks/RESULTS.md, seventh
session). The instruction count matters too: the stats pass ran at half
the read rate while issuing 50 instructions a token (eighth session). Run
this after changing a kernel or its tail:

    python benchmarks/registers.py [name ...]

Counts come from the Triton installed here; the GPU machine's Triton may
differ. It did by more than a few registers' worth: the sixteenth
session's unrolled search showed 128 registers and 8 bytes of stack here
(Triton 3.9), like main, yet slowed top-k 50's select by 60% on the GPU
(Triton 3.6). Where it matters, run this on the GPU machine too.
"""
import os
import re
import subprocess
import sys
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from tokensampler.triton import chunked

POINTERS = dict(x_ptr="*fp32", t_ptr="*fp32", pi_ptr="*i32", pf_ptr="*fp32", gm_ptr="*i32",
                plan_ptr="*i32", gl_ptr="*i32", k_ptr="*i64", p_ptr="*fp32", st_ptr="*i32",
                arrived_ptr="*i32", seed_ptr="*i64", off_ptr="*i64", idx_ptr="*i64",
                out_ptr="*i32", valid_ptr="*i1", draws_ptr="*i32", part_ptr="*fp32",
                mp_ptr="*fp32", cand_ptr="*i64", above_ptr="*fp32",
                n_above_ptr="*i32", mass_ptr="*fp32")
FLOATS = {"t_val", "p_val", "mp_val"}
# Workspace slices that do not start on 16 bytes (final_kernel's chunk masses
# are plain sampling's float partials from their third entry).
UNALIGNED = {"mass_ptr"}
ROW = dict(HAS_INDICES=False, FROM_LOGITS=False, T_ROW=False, STREAM_IS_POS=True, CP2=64)
STATS = dict(ROW, WITH_GM=False, CHUNK=4096, GROUP=32, PLAN=False, HAS_K=False, K_ROW=False,
             HAS_P=False, P_ROW=False, JOINT=False, GP2=64, BRACKET=False, NS=3, REJECT=False,
             DRAWS=4)
# The V=128256 variants of the samplers' launches (name: kernel, constexprs).
KERNELS = {
    "stats": (chunked.stats_kernel, STATS),
    "stats_reject": (chunked.stats_kernel, dict(STATS, PLAN=True, HAS_P=True, REJECT=True)),
    "stats_plan_joint": (chunked.stats_kernel, dict(STATS, WITH_GM=True, PLAN=True, HAS_K=True,
                                                    HAS_P=True, JOINT=True, GP2=8192)),
    # Round 0's draw 0 (nearly every row), then all four draws of a round.
    "check": (chunked.check_kernel, dict(ROW, P_ROW=False, CHUNK=4096, BLOCK=1024, DRAWS=4,
                                         ROUNDS=3, FIRST=True, SPAN=1, NQ=1)),
    "check_later": (chunked.check_kernel, dict(ROW, P_ROW=False, CHUNK=4096, BLOCK=1024,
                                               DRAWS=4, ROUNDS=3, FIRST=False, SPAN=4, NQ=4)),
    "compact_select": (chunked.compact_kernel, dict(ROW, HAS_K=True, K_ROW=False, HAS_P=True,
                                                    P_ROW=False, HAS_MINP=False, MINP_ROW=False,
                                                    JOINT=True, CAP=4096, BLOCK=1024,
                                                    CHUNK=4096, BRACKET=False, SELECT=True,
                                                    GROUP=32)),
    "select_top_k": (chunked.select_kernel, dict(ROW, HAS_K=True, K_ROW=False, HAS_P=False,
                                                 P_ROW=False, HAS_MINP=False, MINP_ROW=False,
                                                 JOINT=False, CAP=4096, BLOCK=1024, CHUNK=4096,
                                                 BRACKET=False)),
    "select_joint": (chunked.select_kernel, dict(ROW, HAS_K=True, K_ROW=False, HAS_P=True,
                                                 P_ROW=False, HAS_MINP=False, MINP_ROW=False,
                                                 JOINT=True, CAP=4096, BLOCK=1024, CHUNK=4096,
                                                 BRACKET=False)),
    "compact_select_top_k": (chunked.compact_kernel, dict(ROW, HAS_K=True, K_ROW=False,
                                                          HAS_P=False, P_ROW=False,
                                                          HAS_MINP=False, MINP_ROW=False,
                                                          JOINT=False, CAP=4096, BLOCK=1024,
                                                          CHUNK=4096, BRACKET=False, SELECT=True,
                                                          GROUP=32)),
    "draw": (chunked.draw_kernel, dict(ROW, P_ROW=False, CHUNK=4096, DRAWS=4)),
    "final": (chunked.final_kernel, dict(ROW, HAS_MINP=False, MINP_ROW=False, CHUNK=4096)),
}


def compile_sm90(fn, constexprs, num_warps=8):
    """``fn`` compiled for sm_90 with these constexprs, as the GPU would."""
    sig = {}
    for name in fn.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        else:
            sig[name] = POINTERS.get(name, "fp32" if name in FLOATS else "i32")
    # As the launcher specialises at V=128256: pointers (but those that start
    # mid-buffer, UNALIGNED), and V and the row stride unless the kernel
    # opts out, divisible by 16. Without it the row loads compile as 4-byte
    # scalar loads (16-byte vectors on the GPU), and the counts are not the
    # GPU's (nineteenth session: 2096 against 1958 instructions for stats).
    attrs = {(i,): [["tt.divisibility", 16]] for i, (name, param) in
             enumerate(zip(fn.arg_names, fn.params))
             if name not in constexprs and not param.do_not_specialize
             and ((sig[name].startswith("*") and name not in UNALIGNED)
                  or name in ("V", "stride_row"))}
    src = ASTSource(fn=fn, signature=sig, attrs=attrs,
                    constexprs={(fn.arg_names.index(k),): v for k, v in constexprs.items()})
    return triton.compile(src, target=GPUTarget("cuda", 90, 32),
                          options=dict(num_warps=num_warps))


def cuobjdump(kernel, option: str) -> str:
    """cuobjdump's output for the compiled kernel (Triton ships the tool)."""
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin",
                        "cuobjdump")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "k.cubin")
        with open(path, "wb") as f:
            f.write(kernel.asm["cubin"])
        return subprocess.run([tool, option, path], capture_output=True, text=True,
                              check=True).stdout


def resource_usage(kernel) -> str:
    out = cuobjdump(kernel, "--dump-resource-usage")
    return next(line.strip() for line in out.splitlines() if "REG:" in line)


def instructions(kernel) -> int:
    """SASS instructions in the kernel, NOPs aside: every path, rare tails
    included, each counted once (a streaming kernel without loops runs about
    this many per thread and chunk)."""
    return sum(1 for line in cuobjdump(kernel, "-sass").splitlines()
               if re.search(r"/\*[0-9a-f]{4,}\*/", line) and "NOP" not in line)


def main():
    for name in sys.argv[1:] or KERNELS:
        fn, constexprs = KERNELS[name]
        kernel = compile_sm90(fn, constexprs)
        usage = resource_usage(kernel)
        regs = int(usage.split("REG:")[1].split()[0])
        # 65536 registers an SM; a program of 8 warps is 256 threads.
        print(f"{name:<18} {usage.split(' STACK')[0]:<8} -> {65536 // (regs * 256)} programs "
              f"of 8 warps per SM, {instructions(kernel)} instructions   ({usage})", flush=True)


if __name__ == "__main__":
    main()
