"""Launch-option variants for the benchmarks that time them
(draw_variants.py, stats_variants.py): each variant's layouts edited once,
the call timed launch by launch, and its tokens compared with the shipped
form's.
"""
import contextlib

import tokensampler.triton as tt
from top_p_rounds import launch_times


@contextlib.contextmanager
def edited_layouts(edit):
    """Within: new layouts (``tokensampler.triton._layout``) pass through
    ``edit(L)`` once, before their first launch (the launcher checks that a
    key's keywords stay the same). The layout cache is cleared on entry and
    on exit, so no edited layout outlives the block."""
    shipped = tt._layout

    def layout(*args):
        L = shipped(*args)
        if not getattr(L, "edited", False):
            edit(L)
            L.edited = True
        return L

    layout.cache_clear = shipped.cache_clear
    shipped.cache_clear()
    tt._layout = layout
    try:
        yield
    finally:
        tt._layout = shipped
        shipped.cache_clear()


def measure(name, edit, fn, baseline):
    """Call ``fn`` under ``edit``'s layouts, print its launches' GPU µs and
    the fraction of its tokens equal to ``baseline``'s (None: this is the
    baseline); returns the tokens."""
    with edited_layouts(edit):
        got = fn()
        times = launch_times(fn)
    same = 1.0 if baseline is None else (got == baseline).float().mean().item()
    print(f"  {name:<24} same tokens {same:.4f}; total {sum(t for _, t in times):6.1f} µs: "
          + ", ".join(f"{n} {t:.1f}" for n, t in times), flush=True)
    return got
