"""Launch-option variants for the benchmarks that time them
(draw_variants.py, stats_variants.py): a stand-in for
``tokensampler.triton._layout`` that edits each new layout once.
"""
import tokensampler.triton as tt


def edited_layouts(edit):
    """``(shipped, layout)``: the shipped ``_layout`` and a stand-in that
    calls ``edit(L)`` on each layout it returns, once, before its first
    launch (the launcher checks that a key's keywords stay the same).
    Install it with ``tt._layout = layout`` after ``shipped.cache_clear()``
    and put ``shipped`` back afterwards."""
    shipped = tt._layout

    def layout(*args):
        L = shipped(*args)
        if not getattr(L, "edited", False):
            edit(L)
            L.edited = True
        return L

    layout.cache_clear = shipped.cache_clear
    return shipped, layout
