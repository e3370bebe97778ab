"""Top-p alone draws by adaptive rejection (docs/semantics.md section 5).

The reference backend's rule: rounds of DRAWS two-stage draws from a set
that holds every kept token (first the whole row, then the tokens before the
round's earliest draw in the order); the first kept draw is the token; after
ROUNDS rounds, the two-stage race over the kept tokens.

Checked here, on the reference backend:

* it matches the brute-force model (tests/bruteforce.py) on rows longer than
  one chunk, where draws race chunks by the mass of a shrunken set;
* its draws follow the kept distribution (chi-square, ALPHA = 1e-4 per test,
  the machinery of test_frequency.py) for rows whose kept mass is small, so
  that the later rounds and the final race decide most outputs; and the same
  with the rule cut to one draw and one round (the final race) and to one draw
  a round (the shrinking), so each part is shown exact on its own;
* top-p >= 1 and a kept first draw give plain sampling's token (draw 0 is
  plain sampling's random numbers).
"""

from __future__ import annotations

import pytest
import torch

import bruteforce as bf
import tokensampler as ts
import tokensampler.reference as ref
from helpers import one_thread  # noqa: F401  (autouse fixture)
from test_frequency import assert_follows, draw_counts, expected


def _row(vocab: int, heavy: float = 2.0) -> torch.Tensor:
    """Token 0 weighs ``heavy``, every other token 1 (exact in float32)."""
    x = torch.ones(1, vocab)
    x[0, 0] = heavy
    return x


def _top_p_keeping_two(vocab: int, heavy: float = 2.0) -> float:
    """A top_p whose kept set is tokens 0 and 1 of ``_row``: the mass before
    token 1 is ``heavy`` and before token 2 ``heavy + 1`` (of ``heavy + vocab - 1``)."""
    return (heavy + 0.5) / (heavy + vocab - 1)


@pytest.mark.parametrize("rounds, draws", [(ref.ROUNDS, ref.DRAWS), (1, 1), (3, 1)],
                         ids=["as-defined", "final-race", "shrinking"])
@pytest.mark.parametrize("vocab", [64, 9000])
def test_rejection_follows_the_kept_distribution(rounds, draws, vocab, monkeypatch):
    """Kept {0, 1} with probabilities 2/3 and 1/3, out of 64 or 9000 tokens
    (kept mass 3/65 or 3/9001): the first round rarely decides."""
    monkeypatch.setattr(ref, "ROUNDS", rounds)
    monkeypatch.setattr(ref, "DRAWS", draws)
    x = _row(vocab)
    p = _top_p_keeping_two(vocab)
    probs = expected(x, False, top_p=p)
    assert probs[:2] == pytest.approx([2 / 3, 1 / 3]) and sum(probs[2:]) == 0
    counts = draw_counts(ts.top_p_sampling_from_probs, x, p, n=4_000 if vocab > 64 else 50_000)
    assert_follows(counts, probs)


def test_rejection_matches_the_bruteforce_model_across_chunks():
    """Rows of 5000 tokens (two chunks): every round's draws race the chunks
    by the mass of the shrunken set; the reference and the model agree."""
    g = torch.Generator().manual_seed(4)
    x = torch.rand(3, 5000, generator=g) ** 4
    p = torch.tensor([0.9, 0.05, 0.0005])
    got = ts.top_p_sampling_from_probs(x, p, seed=7, backend="reference").tolist()
    rows = x.to(torch.float64).tolist()
    want = [bf.brute_sample(rows[j], False, top_p=float(p[j]), seed=7, stream=j)[0]
            for j in range(3)]
    assert got == want


def test_draw_zero_is_plain_sampling():
    """With top_p = 1 every draw is kept: the token is the first draw, which
    uses plain sampling's random numbers. With top_p < 1 the token is plain
    sampling's whenever that one is kept."""
    g = torch.Generator().manual_seed(9)
    x = torch.softmax(torch.randn(64, 5000, generator=g), dim=1)
    plain = ts.sampling_from_probs(x, seed=3, backend="reference")
    assert torch.equal(ts.top_p_sampling_from_probs(x, 1.0, seed=3, backend="reference"), plain)
    top_p = ts.top_p_sampling_from_probs(x, 0.9, seed=3, backend="reference")
    renorm = ts.top_p_renorm_probs(x, 0.9, backend="reference")
    kept = renorm.gather(1, plain.long().unsqueeze(1)).squeeze(1) > 0
    assert kept.sum() > 40
    assert torch.equal(top_p[kept], plain[kept])
