"""Indicators against small hand-computed cases, their one contract
(`Indicator.matrix(prompts, ctx)`, registered in `INDICATORS`), the new
`on_inputs` indicator, and the validation science the pages show."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from panda_core.errors import PandaError
from panda_core.indicators import INDICATORS, IndicatorContext, embedding, stimulation
from panda_core.indicators.base import dev_batches, make_scorer
from panda_core.indicators.correlation import rank_correlation
from panda_core.prompts import SoftPrompt

TASKS = ["imdb_uci", "yelp_uci", "amazon_uci"]  # small built offline tasks (dev inputs for model indicators)


@pytest.fixture(scope="module")
def tiny():
    from panda_core.backbones import tiny_mlm

    return tiny_mlm(0)


def random_prompts(k: int = 3, n: int = 4, d: int = 8, backbone: str = "minilm", seed: int = 0) -> list[SoftPrompt]:
    g = torch.Generator().manual_seed(seed)
    return [SoftPrompt(tensor=torch.randn(n, d, generator=g) * 0.05, backbone=backbone, task=TASKS[i % len(TASKS)],
                       prompt_id=f"{backbone}-p{seed}-{i}") for i in range(k)]


# ------------------------------------------------------------ hand cases
def test_binary_cosine_is_overlap_over_geometric_mean_of_sizes():
    a = torch.tensor([[1, 1, 0, 0, 1], [1, 0, 0, 1, 1], [0, 0, 1, 0, 0]], dtype=torch.float)
    on = stimulation.binary_cosine(a)
    # |A0 n A1| = 2, |A0| = |A1| = 3  -> 2/3; A2 shares nothing with A0
    assert on[0, 1] == pytest.approx(2 / 3)
    assert on[0, 2] == 0
    assert torch.allclose(on.diagonal(), torch.ones(3, dtype=on.dtype))


def test_c_avg_of_two_2x2_prompts_matches_hand_computation():
    p1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p2 = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    # cos pairs: (e1,[1,1])=1/sqrt2, (e1,e1)=1, (e2,[1,1])=1/sqrt2, (e2,e1)=0 -> mean
    expected = (1 / math.sqrt(2) + 1 + 1 / math.sqrt(2) + 0) / 4
    got = embedding.c_avg(torch.stack([p1, p2]))
    assert got[0, 1].item() == pytest.approx(expected)
    assert got[1, 0].item() == pytest.approx(expected)


def test_e_concat_e_avg_c_concat_spot_hand_cases():
    p1 = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    p2 = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    P = torch.stack([p1, p2])
    assert embedding.e_concat(P)[0, 1].item() == pytest.approx(1 / (1 + 5))
    # token distances: |0-(3,4)|=5, |0-0|=0, twice -> mean 2.5
    assert embedding.e_avg(P)[0, 1].item() == pytest.approx(1 / (1 + 2.5))
    q1 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    q2 = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    Q = torch.stack([q1, q2])
    # flattened (1,0,1,0).(0,1,2,0) = 2 ; norms sqrt2 * sqrt5
    assert embedding.c_concat(Q)[0, 1].item() == pytest.approx(2 / (math.sqrt(2) * math.sqrt(5)))
    # means (1,0) and (1,0.5)
    assert embedding.spot(Q)[0, 1].item() == pytest.approx(1 / math.sqrt(1.25))


@settings(max_examples=50, deadline=None)
@given(k=st.integers(2, 5), n=st.integers(1, 4), d=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_embedding_indicators_are_symmetric_with_unit_diagonal(k, n, d, seed):
    P = torch.randn(k, n, d, generator=torch.Generator().manual_seed(seed))
    for name, fn in embedding.EMBEDDING_FUNCS.items():
        M = fn(P)
        assert torch.allclose(M, M.T, atol=1e-9), name
        if name not in ("c_avg", "e_avg"):  # token-averaged: the diagonal compares a prompt's distinct tokens
            assert torch.allclose(M.diagonal(), torch.ones(k, dtype=M.dtype), atol=1e-9), name


def test_rank_correlation_perfect_and_reversed():
    measured = np.array([[np.nan, 1.0, 3.0], [2.0, np.nan, 2.0], [3.0, 3.0, np.nan], [1.0, 2.0, 1.0]])
    good = np.nan_to_num(measured, nan=0.0)
    res = rank_correlation(good, measured)
    assert res["spearman_pooled"] == pytest.approx(1.0)
    bad = rank_correlation(-good, measured)
    assert bad["spearman_pooled"] == pytest.approx(-1.0)
    assert res["n_pairs"] == 9


# ----------------------------------------------------- the one contract
def test_registry_holds_every_indicator_with_name_label_family_and_options():
    names = INDICATORS.names()
    assert names[:7] == ["e_concat", "e_avg", "c_concat", "c_avg", "spot", "on", "panda"]  # CLI values kept
    assert "on_inputs" in names
    for ind in INDICATORS:
        assert ind.label and ind.family in ("embedding", "model")
        assert ind.needs_backbone == (ind.family == "model")
        assert all(o.name and o.help for o in ind.options)


@pytest.mark.parametrize("name", INDICATORS.names())
def test_every_indicator_gives_a_k_by_k_matrix_through_one_call_shape(name, tiny):
    ind = INDICATORS.get(name)
    if ind.needs_backbone:
        prompts = random_prompts(3, 4, tiny.hidden_size, backbone=tiny.name)
        ctx = IndicatorContext.of(tiny, options={"n_inputs": 4})
    else:
        prompts = random_prompts(3, 4, 8)
        ctx = IndicatorContext(load_backbone=lambda: pytest.fail("an embedding indicator loaded a backbone"))
    M = ind.matrix(prompts, ctx)
    assert isinstance(M, np.ndarray) and M.shape == (3, 3) and np.isfinite(M).all()
    if ind.symmetric:
        assert np.allclose(M, M.T, atol=1e-9)


def test_unknown_indicator_is_refused_with_one_line_before_the_store(private_cache):
    from panda_core.indicators.similarity import indicator_matrix, similarity_table

    for call in (lambda: similarity_table("nope", "minilm", TASKS), lambda: indicator_matrix("nope", random_prompts())):
        with pytest.raises(PandaError) as err:
            call()
        msg = str(err.value)
        assert "\n" not in msg and msg.startswith("unknown indicator 'nope'")
        assert all(n in msg for n in INDICATORS.names())


def test_prompts_of_different_shapes_or_backbones_are_refused():
    a = SoftPrompt(tensor=torch.randn(4, 8), backbone="minilm", task="a")
    b = SoftPrompt(tensor=torch.randn(5, 8), backbone="minilm", task="b")
    c = SoftPrompt(tensor=torch.randn(4, 8), backbone="mpnet", task="c")
    c_avg = INDICATORS.get("c_avg")
    with pytest.raises(PandaError, match="different shapes"):
        c_avg.matrix([a, b])
    with pytest.raises(PandaError, match="different backbones"):
        c_avg.matrix([a, c])
    with pytest.raises(PandaError, match="indicator 'on' needs the backbone"):
        INDICATORS.get("on").matrix([a, a])


def test_context_loads_the_backbone_lazily_once(tiny):
    calls = []
    ctx = IndicatorContext(load_backbone=lambda: calls.append(1) or tiny)
    INDICATORS.get("spot").matrix(random_prompts(3, 4, 64, backbone=tiny.name), ctx)
    assert calls == []
    assert ctx.backbone is tiny and ctx.backbone is tiny
    assert calls == [1]


def test_on_layer_window_per_layer_view_cache_and_progress(tiny):
    prompts = random_prompts(3, 4, tiny.hidden_size, backbone=tiny.name)
    on = INDICATORS.get("on")
    cache, seen = {}, []
    per_layer = on.per_layer(prompts, IndicatorContext.of(tiny, cache=cache, options={"n_inputs": 4}))
    assert per_layer.shape == (tiny.num_layers, 3, 3) and len(cache) == 9  # each prompt on each target's inputs
    for layer in range(tiny.num_layers):
        ctx = IndicatorContext.of(tiny, options={"layers": (layer, layer + 1), "n_inputs": 4}, cache=cache,
                                  progress=lambda d, t: seen.append((d, t)))
        assert np.allclose(on.matrix(prompts, ctx), per_layer[layer])
    assert len(cache) == 9 and seen[:3] == [(1, 9), (2, 9), (3, 9)]
    alone = on.per_layer(prompts, IndicatorContext.of(tiny, cache=cache, options={"inputs": "prompt_alone"}))
    assert alone.shape == per_layer.shape and len(cache) == 12
    with pytest.raises(PandaError, match="layer window"):
        on.matrix(prompts, IndicatorContext.of(tiny, options={"layers": (0, 99), "n_inputs": 4}))
    with pytest.raises(PandaError, match="unknown ON inputs"):
        on.matrix(prompts, IndicatorContext.of(tiny, options={"inputs": "nowhere"}))


def test_on_reads_the_readout_positions_on_the_targets_inputs(tiny, monkeypatch):
    """ON's entry [s, t] compares s and t on t's dev inputs, read at exactly the
    positions the scorer's readout reads (the prompt-alone probe is an option)."""
    from panda_core.prompts import PromptScorer

    prompts = random_prompts(2, 4, tiny.hidden_size, backbone=tiny.name, seed=3)
    read = []
    real = PromptScorer.readout_positions

    def spy(self, mask, start, n):
        positions = real(self, mask, start, n)
        read.append((self.task.name, positions.clone()))
        return positions

    monkeypatch.setattr(PromptScorer, "readout_positions", spy)
    M = INDICATORS.get("on").matrix(prompts, IndicatorContext.of(tiny, options={"n_inputs": 4}))
    assert {task for task, _ in read} == {TASKS[0], TASKS[1]}  # every pair on the target's inputs
    monkeypatch.setattr(PromptScorer, "readout_positions", real)
    ref = [[_reference_readout_frequency(tiny, p.tensor, t, 4).reshape(-1) for t in TASKS[:2]] for p in prompts]
    for s, t in ((0, 1), (1, 0)):
        expected = stimulation.binary_cosine(torch.stack([ref[s][t], ref[t][t]]))[0, 1]
        assert M[s, t] == pytest.approx(float(expected), abs=1e-6)
    alone = INDICATORS.get("on").matrix(prompts, IndicatorContext.of(tiny, options={"inputs": "prompt_alone"}))
    assert not np.allclose(alone, M)


# ---------------------------------------------------------- on_inputs
def _reference_readout_frequency(bb, prompt: torch.Tensor, task: str, n_inputs: int) -> torch.Tensor:
    """Written out independently of PromptScorer.pool: the positions each kind's readout reads."""
    scorer = make_scorer(bb, task, prompt.shape[0])
    n = prompt.shape[0]
    sums, count = None, 0
    with stimulation.ffn_capture(bb) as captured, torch.inference_mode():
        for batch in dev_batches(scorer, n_inputs, 16):
            captured.clear()
            embeds, mask, start = scorer.splice(batch, prompt)
            scorer.trunk(embeds, mask)
            rows = []
            for c in captured:
                on = (c > 0).float()
                if bb.kind == "mlm":
                    rows.append(on[:, start + n])
                elif bb.kind == "causal":
                    rows.append(on[torch.arange(on.shape[0]), mask.sum(1) - 1])
                else:  # encoder: every text token ([CLS], text, [SEP]), not the prompt rows
                    text = mask.clone().float()
                    text[:, start : start + n] = 0
                    rows.append((on * text[..., None]).sum(1) / text.sum(1, keepdim=True))
            acts = torch.stack(rows, 1)
            sums = acts.sum(0) if sums is None else sums + acts.sum(0)
            count += acts.shape[0]
    return sums / count


def _check_on_inputs(bb, n_inputs: int = 4) -> None:
    from panda_core.indicators.on_inputs import readout_activations

    prompts = random_prompts(3, 4, bb.hidden_size, backbone=bb.name, seed=1)
    M = INDICATORS.get("on_inputs").matrix(prompts, IndicatorContext.of(bb, options={"n_inputs": n_inputs}))
    assert M.shape == (3, 3) and np.allclose(M, M.T) and np.allclose(np.diag(M), 1.0)
    got = readout_activations(bb, prompts[0].tensor, TASKS[0], n_inputs)
    assert got.shape == (bb.num_layers, bb.ffn_size)
    assert torch.allclose(got, _reference_readout_frequency(bb, prompts[0].tensor, TASKS[0], n_inputs), atol=1e-6)
    # it reads each prompt's OWN task: prompt 1 on its task, not on prompt 0's
    own = readout_activations(bb, prompts[1].tensor, TASKS[1], n_inputs)
    rows = torch.stack([got.reshape(-1), own.reshape(-1)])
    assert M[0, 1] == pytest.approx(float(stimulation.binary_cosine(rows)[0, 1]))


def test_on_inputs_on_a_masked_lm_reads_the_mask_position(tiny):
    _check_on_inputs(tiny)


def test_on_inputs_on_an_encoder_reads_every_text_token():
    from panda_core.backbones import get_backbone

    bb = get_backbone("minilm")
    _check_on_inputs(bb, n_inputs=2)
    # ... which is not the prompt-alone probe
    prompt = random_prompts(1, 4, bb.hidden_size, seed=1)[0].tensor
    probe = stimulation.ffn_activations(bb, prompt)  # Su et al.'s prompt-alone probe
    from panda_core.indicators.on_inputs import readout_activations

    assert not torch.allclose(probe, readout_activations(bb, prompt, TASKS[0], 2))


@pytest.mark.slow
def test_on_inputs_on_a_causal_lm_reads_the_last_position():
    from panda_core.backbones import get_backbone

    _check_on_inputs(get_backbone("smollm2"), n_inputs=2)


# ------------------------------------------------- validation and the pages' science
def test_steps_to_reach_finds_the_first_eval_at_the_threshold():
    from panda_core.indicators.source_ranking import steps_to_reach

    curve = [(0, 0.5), (20, 0.69995), (40, 0.72), (60, 0.71)]
    assert steps_to_reach(curve, 0.7) == 20  # 4-decimal rounding of stored scores
    assert steps_to_reach(curve, 0.72) == 40
    assert steps_to_reach(curve, 0.9) is None
    assert steps_to_reach(curve, None) is None


def _save_pt(task: str, dev: float, test: float, created: float, length: int = 4, hidden: int = 8) -> str:
    from panda_core import store

    g = torch.Generator().manual_seed(int(created))
    return store.save_prompt(SoftPrompt(tensor=torch.randn(length, hidden, generator=g) * 0.05, backbone="minilm",
                                        task=task,
                                        scores={"dev_acc": dev, "test_acc": test}, created=created))


def _run(method: str, source: str | None, target: str, test: float, curve=(), steps: int = 100) -> dict:
    from panda_core import store

    rid = store.create_run("transfer", method, target, "minilm", {"train": {"prompt_length": 4}}, source=source)
    for step, acc in curve:
        store.add_curve_point(rid, step, acc)
    store.update_run(rid, status="done", result={"test_acc": test, "dev_acc": max((a for _, a in curve), default=None),
                                                 "seconds": 50.0, "steps": steps, "dev_curve": [list(p) for p in curve]})
    return store.get_run(rid)


@pytest.fixture
def study(private_cache):
    """PT prompts of three tasks (the older imdb one superseded) and a few transfers."""
    from panda_core import store

    _save_pt("imdb_uci", 0.70, 0.60, created=1000.0)
    newest = _save_pt("imdb_uci", 0.80, 0.75, created=2000.0)
    _save_pt("yelp_uci", 0.70, 0.80, created=1000.0)
    _save_pt("amazon_uci", 0.60, 0.50, created=1000.0)
    pt_run = store.create_run("train", "pt", "imdb_uci", "minilm", {"prompt_length": 4})  # the newest prompt's run
    store.update_run(pt_run, status="done", result={"test_acc": 0.75, "prompt_id": newest})
    runs = [_run("pot", "yelp_uci", "imdb_uci", 0.78, [(0, 0.5), (20, 0.79), (40, 0.81)]),
            _run("zero-shot", "yelp_uci", "imdb_uci", 0.60),
            _run("zero-shot", "amazon_uci", "imdb_uci", 0.30),
            _run("pt", None, "imdb_uci", 0.77, [(0, 0.6), (20, 0.82)])]
    return {"newest_imdb": newest, "runs": runs}


def test_pt_reference_prefers_the_batch_run_then_the_newest_stored_prompt(study):
    from panda_core.indicators.source_ranking import pt_reference

    runs = study["runs"]
    ref = pt_reference(runs, "minilm", "imdb_uci", 4)
    assert (ref.origin, ref.dev, ref.test, ref.id) == ("run", 0.82, 0.77, runs[3]["id"])
    ref = pt_reference(runs[:3], "minilm", "imdb_uci", 4)
    assert (ref.origin, ref.dev, ref.test, ref.id) == ("stored", 0.80, 0.75, study["newest_imdb"])
    assert pt_reference(runs[:3], "minilm", "imdb_uci", 20).origin == "none"


def test_transfer_gains_against_the_reference(study):
    from panda_core.indicators.source_ranking import pt_reference, transfer_gains

    runs = study["runs"]
    ref = pt_reference(runs[:3], "minilm", "imdb_uci", 4)  # stored: dev 0.80, test 0.75
    gains = transfer_gains(runs, ref)
    pot = gains[runs[0]["id"]]
    assert pot.delta_test == pytest.approx(0.03) and pot.steps_to_pt_dev == 40
    assert pot.seconds_to_pt_dev == pytest.approx(20.0)  # 50 s * 40 / 100 steps
    assert gains[runs[1]["id"]].steps_to_pt_dev is None  # zero-shot: nothing trained
    assert gains[runs[3]["id"]].steps_to_pt_dev is None  # PT is the reference itself


def test_measured_matrix_missing_pairs_and_validation(study):
    from panda_core.indicators.validation import measured_matrix, missing_pairs, validate_indicators

    tasks = ["imdb_uci", "yelp_uci", "amazon_uci"]
    zs = measured_matrix("minilm", tasks, "zero-shot")
    assert zs[1, 0] == pytest.approx(0.60 / 0.75) and zs[2, 0] == pytest.approx(0.30 / 0.75)  # newest PT prompt
    # against PT of the same settings (the batch's PT run, 0.77), not the stored prompt's 0.75
    assert measured_matrix("minilm", tasks, "pot-gain")[1, 0] == pytest.approx(0.01)
    assert ("yelp_uci", "imdb_uci") not in missing_pairs("minilm", tasks, "zero-shot")
    assert len(missing_pairs("minilm", tasks, "zero-shot")) == 4
    with pytest.raises(PandaError, match="unknown measure 'nope'"):
        measured_matrix("minilm", tasks, "nope")
    out = validate_indicators("minilm", tasks, "zero-shot", ["spot", "c_avg"], prompt_length=4)
    assert set(out["indicators"]) == {"spot", "c_avg"} and out["best"] in ("spot", "c_avg")
    with pytest.raises(PandaError, match="unknown indicator"):
        validate_indicators("minilm", tasks, "zero-shot", ["spot", "nope"], prompt_length=4)


def test_rank_sources_and_predicted_transfer(study):
    from panda_core.indicators.source_ranking import predicted_transfer, rank_sources

    scores = {"imdb_uci": 0.0, "yelp_uci": 0.9, "amazon_uci": 0.4}

    def table(metric, backbone, tasks, length, prompt_type="input"):  # a fake indicator: column imdb = scores; "flip" reverses it
        order = sorted(tasks)
        col = {t: (-scores[t] if metric == "flip" else scores[t]) for t in order}
        return {"tasks": order, "matrix": [[col[s] if t == "imdb_uci" else 0.0 for t in order] for s in order]}

    r = rank_sources("minilm", "imdb_uci", ["spot", "flip"], 4, table=table)
    assert r.sources == ["yelp_uci", "amazon_uci"]
    assert r.ranks == {"spot": {"yelp_uci": 1, "amazon_uci": 2}, "flip": {"yelp_uci": 2, "amazon_uci": 1}}
    assert r.best == {"spot": "yelp_uci", "flip": "amazon_uci"}
    assert r.measured["zero-shot"] == {"yelp_uci": 0.8, "amazon_uci": 0.4}
    assert r.measured["panda-gain"] == {"yelp_uci": None, "amazon_uci": None}
    assert r.measured_ci["zero-shot"] == {"yelp_uci": None, "amazon_uci": None}  # these runs kept no items
    assert predicted_transfer("spot", "minilm", ["yelp_uci", "imdb_uci", "mr"], "imdb_uci", 4, table=table) \
        == {"yelp_uci": 0.9}
    with pytest.raises(PandaError, match="ranking sources"):
        rank_sources("minilm", "mr", ["spot"], 4, table=table)


def test_similarity_table_serves_the_new_indicator_from_the_registry_alone(private_cache):
    from panda_core.indicators.similarity import similarity_table

    ids = {t: _save_pt(t, 0.7, 0.7, created=1000.0 + i, hidden=384) for i, t in enumerate(TASKS)}
    table = similarity_table("on_inputs", "minilm", TASKS, prompt_length=4, n_inputs=2)
    assert table["metric"] == "on_inputs" and sorted(table["tasks"]) == sorted(TASKS)
    assert table["prompt_ids"] == [ids[t] for t in table["tasks"]]
    M = np.array(table["matrix"])
    assert M.shape == (3, 3) and np.allclose(M, M.T) and np.allclose(np.diag(M), 1.0)


# ------------------------------------------------ per-task seeds and delta P
def test_each_tasks_fresh_prompt_has_its_own_reproducible_seed():
    from panda_core.prompts import task_seed

    seeds = {t: task_seed(t, 0) for t in TASKS}
    assert len(set(seeds.values())) == len(TASKS)  # no shared starting point
    assert seeds == {t: task_seed(t, 0) for t in TASKS} and task_seed(TASKS[0], 1) != seeds[TASKS[0]]
    assert all(0 <= s < 2**63 for s in seeds.values())


@pytest.mark.parametrize("name", ["e_concat", "e_avg", "c_concat", "c_avg", "spot"])
def test_delta_p_compares_what_training_moved(name, tiny):
    from panda_core.indicators.embedding import EMBEDDING_FUNCS
    from panda_core.prompts import init_prompt, task_seed

    g = torch.Generator().manual_seed(5)
    prompts, moves = [], []
    for i, task in enumerate(TASKS):
        seed = task_seed(task, 0)
        start = init_prompt(tiny.embeddings(), 4, "vocab", seed=seed)
        move = torch.randn(4, tiny.hidden_size, generator=g) * 0.1
        prompts.append(SoftPrompt(tensor=start + move, backbone=tiny.name, task=task, prompt_id=f"d{i}",
                                  extra={"config": {"init": "vocab"}, "init_seed": seed}))
        moves.append(move)
    ind = INDICATORS.get(name)
    got = ind.matrix(prompts, IndicatorContext.of(tiny, options={"delta": True}))
    assert np.allclose(got, EMBEDDING_FUNCS[name](torch.stack(moves)).numpy(), atol=1e-5)
    assert not np.allclose(got, ind.matrix(prompts, IndicatorContext.of(tiny)))
    legacy = SoftPrompt(tensor=prompts[0].tensor, backbone=tiny.name, task="x", seed=0,
                        extra={"config": {"init": "vocab"}})  # saved before per-task seeds: started from `seed`
    from panda_core.prompts import recorded_init

    assert recorded_init(legacy) == ("vocab", 0)
    with pytest.raises(PandaError, match="records no initialisation"):
        ind.matrix([prompts[0], SoftPrompt(tensor=prompts[1].tensor, backbone=tiny.name, task="y")],
                   IndicatorContext.of(tiny, options={"delta": True}))
