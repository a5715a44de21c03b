"""`minigpt compare` and `score --compare` against an independent float64 reference:
two models of different widths, depths and windows, past both windows."""

import json
import math

import pytest
import torch

from conftest import write_book_checkpoint
from minigpt.cli.main import main
from minigpt.text.tokenizer import cl100k
from reference import assert_top_candidates, book_h_params, book_logits, random_book_state_dict
from reference_gpt2 import gpt2_logits, random_nanogpt

V = 600  # both vocabularies: ids of the ASCII prompt below are smaller
HP_A = book_h_params(d_model=32, context_length=16, num_blocks=2, num_heads=4,
                     max_token_value=V)
HP_B = book_h_params(d_model=24, context_length=8, num_blocks=3, num_heads=3,
                     max_token_value=V)
PROMPT = "a b c d e f"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    return (write_book_checkpoint(folder / "a.ckpt", HP_A, seed=1),
            write_book_checkpoint(folder / "b.ckpt", HP_B, seed=2))


def reference_divergence(la: torch.Tensor, lb: torch.Tensor) -> tuple[float, float]:
    pa, pb = torch.softmax(la.double(), -1), torch.softmax(lb.double(), -1)
    m = (pa + pb) / 2
    kl = lambda p, q: float((p * (p / q).log()).sum())  # noqa: E731
    return kl(pa, pb), 0.5 * kl(pa, m) + 0.5 * kl(pb, m)


def run_json(capsys, *args) -> list[dict]:
    assert main([str(a) for a in args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_compare_json_matches_the_float64_reference_past_both_windows(pair, capsys):
    a, b = pair
    steps = run_json(capsys, "compare", a, b, "--prompt", PROMPT, "--json", "--temperature",
                     "0", "--max-new-tokens", 24, "--device", "cpu")
    assert len(steps) == 24
    sd_a, sd_b = random_book_state_dict(HP_A, 1), random_book_state_dict(HP_B, 2)
    ids = cl100k().encode(PROMPT)
    for n, step in enumerate(steps, 1):
        la, lb = book_logits(sd_a, HP_A, ids)[-1], book_logits(sd_b, HP_B, ids)[-1]
        pa, pb = torch.softmax(la.double(), -1), torch.softmax(lb.double(), -1)
        assert step["step"] == n
        assert_top_candidates([c["id"] for c in step["a"]], [c["prob"] for c in step["a"]],
                              pa, tol=1e-4)
        assert_top_candidates([c["id"] for c in step["b"]], [c["prob"] for c in step["b"]],
                              pb, tol=1e-4)
        chosen = step["chosen"]["id"]
        assert pa[chosen] >= pa.max() - 1e-6  # greedy on A
        assert step["chosen"]["prob_a"] == pytest.approx(float(pa[chosen]), abs=1e-4)
        assert step["chosen"]["prob_b"] == pytest.approx(float(pb[chosen]), abs=1e-4)
        kl, js = reference_divergence(la, lb)
        assert step["kl_ab"] == pytest.approx(kl, abs=1e-4)
        assert step["js"] == pytest.approx(js, abs=1e-4)
        ids.append(chosen)
    assert steps[-1]["text"].startswith(PROMPT)


def test_book_and_nanogpt_compare_with_one_tokenizer(pair, tmp_path, capsys):
    args = dict(n_layer=1, n_head=2, n_embd=16, block_size=10, bias=True, vocab_size=V)
    ckpt = random_nanogpt(args)
    torch.save(ckpt, tmp_path / "ckpt.pt")
    steps = run_json(capsys, "compare", pair[0], tmp_path / "ckpt.pt", "--prompt", PROMPT,
                     "--json", "--temperature", "0", "--max-new-tokens", 12, "--device", "cpu",
                     "--tokenizer", "cl100k_base")
    ids = cl100k().encode(PROMPT)
    for step in steps:
        lb = gpt2_logits(ckpt["model"], args, ids[-args["block_size"]:])[-1]
        la = book_logits(random_book_state_dict(HP_A, 1), HP_A, ids)[-1]
        kl, js = reference_divergence(la, lb)
        assert step["kl_ab"] == pytest.approx(kl, abs=1e-4)
        assert step["js"] == pytest.approx(js, abs=1e-4)
        ids.append(step["chosen"]["id"])


def test_different_vocabularies_are_one_line(pair, tmp_path, capsys):
    other = write_book_checkpoint(tmp_path / "other.ckpt", dict(HP_B, max_token_value=700))
    assert main(["compare", str(pair[0]), str(other), "--prompt", "x", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has 600 tokens" in err and "has 700" in err


def test_text_output_shows_both_top5_and_the_divergence(pair, capsys):
    assert main(["compare", str(pair[0]), str(pair[1]), "--prompt", PROMPT,
                 "--max-new-tokens", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "A token" in out and "B token" in out and "KL(A‖B)" in out and "JS" in out


def test_score_compare_gives_both_perplexities_and_the_biggest_differences(pair, capsys):
    text = "a b c d e f g h a b c d e f g h a b c d e f g"
    report = run_json(capsys, "score", pair[0], "--compare", pair[1], "--text", text,
                      "--json", "--device", "cpu")[0]
    ids = cl100k().encode(text)
    sd_a, sd_b = random_book_state_dict(HP_A, 1), random_book_state_dict(HP_B, 2)
    a, b = report["a"], report["b"]
    assert len(a["tokens"]) == len(b["tokens"]) == len(ids) - 1
    diffs = {t["index"]: t["difference"] for t in report["most_different"]}
    biggest = max(abs(ta["log_prob"] - tb["log_prob"]) for ta, tb in zip(a["tokens"],
                                                                         b["tokens"]))
    assert max(abs(d) for d in diffs.values()) == pytest.approx(biggest)
    first = a["tokens"][0]  # token 1, predicted from token 0 by A (reference check)
    ref = torch.log_softmax(book_logits(sd_a, HP_A, ids[:1])[-1].double(), -1)[ids[1]]
    assert first["log_prob"] == pytest.approx(float(ref), abs=1e-4)
    assert a["perplexity"] > 0 and b["perplexity"] > 0 and a["perplexity"] != b["perplexity"]


def test_train_snapshots_are_book_checkpoints_that_compare(tmp_path, capsys):
    from pathlib import Path
    corpus = tmp_path / "orders.txt"
    lines = (Path(__file__).parent.parent / "data" / "orders.txt").read_text(
        encoding="utf-8").splitlines()[:80]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "run" / "model.ckpt"
    tiny = ["--d-model", "16", "--num-blocks", "1", "--num-heads", "2", "--context-length",
            "8", "--batch-size", "4", "--max-iters", "4", "--eval-interval", "2",
            "--eval-iters", "1", "--dropout", "0", "--device", "cpu"]
    assert main(["train", str(corpus), "--out", str(out), "--save-every", "2", *tiny]) == 0
    snaps = sorted(p.name for p in out.parent.glob("ckpt-iter*.ckpt"))
    assert snaps == ["ckpt-iter2.ckpt", "ckpt-iter4.ckpt"]
    stored = torch.load(out.parent / "ckpt-iter2.ckpt", weights_only=True)
    assert set(stored) == {"model_state_dict", "h_params"}  # the book's inference.py reads it
    capsys.readouterr()
    steps = run_json(capsys, "compare", out.parent / "ckpt-iter2.ckpt",
                     out.parent / "ckpt-iter4.ckpt", "--prompt", "农夫", "--json",
                     "--max-new-tokens", 3, "--device", "cpu")
    assert len(steps) == 3 and all(s["kl_ab"] >= 0 for s in steps)


def test_a_model_against_itself_in_bfloat16(pair, capsys):
    """The real-model pass: compare could not ask what bfloat16 changes, A and B shared
    --dtype. --dtype-b gives B its own: B's numbers are the model's at bfloat16."""
    from minigpt.engine.engine import Engine
    from minigpt.models.checkpoint import load
    from minigpt.settings import SamplingSettings

    a, _ = pair
    steps = run_json(capsys, "compare", a, a, "--dtype-b", "bfloat16", "--prompt", PROMPT,
                     "--json", "--temperature", "0", "--max-new-tokens", 3, "--device", "cpu")
    sd = random_book_state_dict(HP_A, 1)
    b = Engine.from_loaded(load(a, device="cpu", dtype="bfloat16"), SamplingSettings())
    ids = cl100k().encode(PROMPT)
    b.reset(PROMPT)
    for step in steps:
        pa = torch.softmax(book_logits(sd, HP_A, ids)[-1].double(), -1)
        pb = torch.softmax(b._logits().double(), -1)
        chosen = step["chosen"]["id"]
        assert step["chosen"]["prob_a"] == pytest.approx(float(pa[chosen]), abs=1e-4)
        assert step["chosen"]["prob_b"] == pytest.approx(float(pb[chosen]), abs=1e-4)
        assert step["chosen"]["prob_a"] != step["chosen"]["prob_b"] and step["kl_ab"] > 0
        ids.append(chosen)
        b.step(chosen)
    assert main(["score", str(a), "--compare", str(a), "--dtype-b", "bfloat16", "--text",
                 PROMPT, "--json", "--device", "cpu"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["a"]["perplexity"] != scored["b"]["perplexity"]


def test_a_served_models_divergence_is_a_lower_bound_of_the_whole_one():
    """Grouping B's tail into one cell never raises KL or JS: on random distributions the
    bound from B's top-N stays at or below the divergence over the whole vocabulary, and
    reaches it when N covers the vocabulary."""
    import torch

    from minigpt.backends.served_api import Option
    from minigpt.engine.compare import divergence, divergence_bound

    generator = torch.Generator().manual_seed(3)
    for n in (1, 5, 20, 100):
        logits_a = torch.randn(100, generator=generator, dtype=torch.float64) * 3
        logits_b = torch.randn(100, generator=generator, dtype=torch.float64) * 3
        log_q = torch.log_softmax(logits_b, dim=-1)
        top = torch.topk(log_q, n)
        options = [Option(int(i), None, float(lp)) for lp, i in zip(top.values, top.indices)]
        bound = divergence_bound(torch.softmax(logits_a, dim=-1), options)
        whole = divergence(logits_a, logits_b)
        assert bound.lower_bound and bound.kl_ab <= whole.kl_ab + 1e-9
        assert bound.js <= whole.js + 1e-9
        if n == 100:
            assert bound.kl_ab == pytest.approx(whole.kl_ab, abs=1e-9)


def test_entropy_bounds_from_a_top_n_hold_the_whole_entropy():
    """H of the whole distribution lies within the bounds its top-N and the rest give."""
    import math

    import torch

    from minigpt.backends.served_why import entropy_bounds

    generator = torch.Generator().manual_seed(5)
    for scale in (0.5, 2.0, 6.0):
        probs = torch.softmax(torch.randn(500, generator=generator, dtype=torch.float64)
                              * scale, dim=-1)
        whole = float(-(probs * probs.log()).sum())
        for n in (1, 5, 20, 500):
            low, high, rest = entropy_bounds(torch.sort(probs, descending=True)
                                             .values[:n].tolist(), 500)
            assert low - 1e-9 <= whole <= high + 1e-9
            assert rest == pytest.approx(1 - float(torch.sort(probs, descending=True)
                                                   .values[:n].sum()), abs=1e-12)
            if n == 500:
                assert low == pytest.approx(whole) and high == pytest.approx(whole)


def test_a_served_top_n_summing_past_one_keeps_the_bound_finite():
    """float32 probabilities from a server can sum to a hair over 1: B's rest is then 0,
    and A's mass there made the "bound" 6.96 nats against a true 0.21."""
    import torch

    from minigpt.backends.served_api import Option
    from minigpt.engine.compare import divergence_bound

    probs_a = torch.tensor([0.6, 0.39, 0.01], dtype=torch.float64)
    top_b = [Option(0, None, math.log(0.60000003)), Option(1, None, math.log(0.40000003))]
    assert divergence_bound(probs_a, top_b).kl_ab < 0.1
