"""The Streamlit app, page by page, headless with streamlit.testing.AppTest.

A module-scoped cache holds three quickly trained MiniLM prompts (two
sentiment tasks and one topic task) so every page has real content; one test
starts a transfer from the Transfer page and waits for its background job.
"""

from __future__ import annotations

import io
import json
import shutil
import time
import zipfile
from pathlib import Path

import pytest
from conftest import PROJECT_CACHE

from panda_core.indicators import INDICATORS
from panda_core.transfer import METHODS

ROOT = Path(__file__).resolve().parent.parent
TASKS = ["imdb_uci", "yelp_uci", "r8"]
TIMEOUT = 120
PAGES = {
    "home": "app.py",
    "prompts": "pages/1_Prompts.py",
    "similarity": "pages/2_Similarity.py",
    "clusters": "pages/3_Clusters.py",
    "transfer": "pages/4_Transfer.py",
    "cross_model": "pages/5_Cross_model.py",
    "validation": "pages/6_Metric_validation.py",
    "runs": "pages/7_Runs.py",
}


def _link_cache(root: Path) -> None:
    try:
        from conftest import link_project_data
    except ImportError:  # older conftest: link the folders themselves
        for name in ("tasks", "models", "downloads"):
            if (PROJECT_CACHE / name).exists():
                (root / name).symlink_to(PROJECT_CACHE / name, target_is_directory=True)
    else:
        link_project_data(root)


@pytest.fixture(scope="module")
def app_cache(tmp_path_factory):
    """A private cache with tiny trained prompts for TASKS on MiniLM."""
    from panda_core.data import available_tasks

    missing = [t for t in TASKS if t not in available_tasks()]
    if missing:
        pytest.skip(f"task data missing for {missing}: run `make setup` first")
    root = tmp_path_factory.mktemp("app") / "cache"
    root.mkdir()
    _link_cache(root)
    mp = pytest.MonkeyPatch()
    mp.setenv("PANDA_CACHE", str(root))
    mp.setenv("PANDA_WARM_UMAP", "0")  # no background numba compile competing with the tests
    from panda_core.ops import train_prompt
    from panda_core.training import TrainConfig

    for task in TASKS:
        train_prompt(task, "minilm", TrainConfig(steps=6, eval_every=3, dev_limit=32, test_limit=64, batch_size=8,
                                                 max_length=64))
    yield root
    mp.undo()
    shutil.rmtree(root, ignore_errors=True)


def page(name: str, **state):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / PAGES[name]), default_timeout=TIMEOUT)
    for k, v in state.items():
        at.session_state[k] = v
    return at


def ok(at) -> None:
    """The page ran without an exception and without an error message."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def figures(at) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def values(v) -> list:
    """Plotly JSON arrays: plain lists, or typed arrays {"dtype", "bdata"(, "shape")} (plotly >= 6)."""
    if isinstance(v, dict) and "bdata" in v:
        import base64

        import numpy as np

        arr = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
        if "shape" in v:
            arr = arr.reshape([int(x) for x in str(v["shape"]).split(",")])
        return arr.tolist()
    return list(v)


def keys(widgets) -> set:
    return {w.key for w in widgets}


INTERVAL = r"0\.\d{3} \[0\.\d{3}, [01]\.\d{3}\]"  # "0.742 [0.712, 0.770]"
DIFFERENCE = r"[+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]"  # "+0.032 [+0.010, +0.055]"


def comparison_table(at):
    """The Transfer page's paired comparisons (a static table: its text is part of the page)."""
    return next(t.value for t in at.table if "verdict" in t.value.columns)


def row_styles(table) -> str:
    """The CSS of a styled st.table (the colours of its verdicts)."""
    return str(table.proto)


# ----------------------------------------------------------------------- Home
def test_home_shows_backbone_tasks_and_prompts(app_cache):
    at = page("home").run()
    ok(at)
    assert "home_backbone" in keys(at.selectbox)
    assert at.selectbox(key="home_backbone").value == "minilm"
    tasks = next(df.value for df in at.dataframe if "prompt" in df.value.columns)
    trained = set(tasks.loc[tasks["prompt"] == "✅", "task"])
    assert set(TASKS) <= trained
    assert tasks.loc[tasks["prompt"] == "✅", "test acc [95% CI]"].str.fullmatch(INTERVAL).all()
    assert "home_train_tasks" in keys(at.multiselect)  # other tasks are still missing
    assert any(b.label == "Train missing prompts" for b in at.button)
    assert any("Device" == m.label for m in at.metric)


def test_home_guides_a_first_time_user(private_cache, monkeypatch):
    monkeypatch.setenv("PANDA_WARM_UMAP", "0")
    at = page("home").run()
    ok(at)
    assert any("First time here" in i.value for i in at.info)
    assert set(at.multiselect(key="home_train_tasks").value) >= set(TASKS)


def test_home_unknown_backbone_is_a_message_not_a_traceback(app_cache):
    at = page("home").run()
    at.selectbox(key="home_backbone").select(at.selectbox(key="home_backbone").options[-1]).run()
    at.text_input(key="home_custom").input(str(app_cache / "no_such_model")).run()
    at.button(key="home_use_custom").click().run()
    assert not at.exception
    assert at.error, "expected a readable error message"
    assert "Traceback" not in at.error[0].value


# -------------------------------------------------------------------- Prompts
def test_prompts_page_lists_trains_and_downloads(app_cache):
    at = page("prompts").run()
    ok(at)
    assert {"prompts_task", "prompts_download_id"} <= keys(at.selectbox)
    assert len(at.get("file_uploader")) == 2  # a prompt file and a task file
    table = next(df.value for df in at.dataframe if "id" in df.value.columns)
    assert set(TASKS) <= set(table["task"])
    # every accuracy with its Wilson 95% interval over the items its run scored
    for col in ("test acc [95% CI]", "dev acc [95% CI]", "untrained test acc [95% CI]"):
        assert table[col].str.fullmatch(INTERVAL).all(), table[col]
    labels = {b.label for b in at.get("download_button")}
    assert {"safetensors", "PEFT adapter (zip)"} <= labels


def test_prompt_downloads_are_valid_files(app_cache, tmp_path):
    from panda_app import ui
    from panda_core import store

    pid = store.latest_prompt_id("imdb_uci", "minilm", "pt")
    raw = ui.prompt_download(pid, "safetensors")
    (tmp_path / "p.safetensors").write_bytes(raw)
    prompt = store.read_prompt_file(tmp_path / "p.safetensors")
    assert prompt.task == "imdb_uci" and tuple(prompt.tensor.shape) == (20, 384)
    names = zipfile.ZipFile(io.BytesIO(ui.prompt_download(pid, "peft"))).namelist()
    assert {f"{pid}/adapter_config.json", f"{pid}/adapter_model.safetensors", f"{pid}/panda.json"} <= set(names)


# ----------------------------------------------------------------- Similarity
@pytest.mark.parametrize("metric", ["c_avg", "on"])
def test_similarity_heatmap_is_panda_core_matrix(app_cache, metric):
    from panda_core.indicators.similarity import similarity_table

    at = page("similarity", sim_metric_a=metric).run()
    ok(at)
    assert {"sim_tasks"} <= keys(at.multiselect) and "sim_mode" in keys(at.radio)
    fig = figures(at)[0]
    expected = similarity_table(metric, "minilm", TASKS)
    heat = fig["data"][0]
    assert heat["type"] == "heatmap"
    assert heat["x"] == expected["tasks"] and heat["y"] == expected["tasks"]
    assert values(heat["z"]) == expected["matrix"]
    assert {b.label for b in at.get("download_button")} >= {"Matrix (CSV)", "Figure (HTML)"}


def test_similarity_difference_and_side_by_side(app_cache):
    from panda_core.indicators.similarity import similarity_table

    at = page("similarity", sim_metric_a="spot").run()
    at.radio(key="sim_mode").set_value("Two side by side").run()
    ok(at)
    assert len(figures(at)) == 2
    at.selectbox(key="sim_metric_b").set_value("e_concat").run()
    at.radio(key="sim_mode").set_value("Difference (A − B)").run()
    ok(at)
    z = values(figures(at)[0]["data"][0]["z"])
    a = similarity_table("spot", "minilm", TASKS)["matrix"]
    b = similarity_table("e_concat", "minilm", TASKS)["matrix"]
    expected = [x - y for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True)]
    assert [x for row in z for x in row] == pytest.approx(expected, abs=1e-6)


def test_similarity_every_indicator_grid(app_cache):
    from panda_core.indicators.similarity import similarity_table

    at = page("similarity", sim_mode="Every indicator").run()
    ok(at)
    heat = figures(at)[0]["data"]
    assert [h["name"] for h in heat] == INDICATORS.names()  # every registered indicator, in registry order
    assert values(heat[4]["z"]) == similarity_table("spot", "minilm", TASKS)["matrix"]


def test_similarity_on_layer_window(app_cache):
    from panda_core.indicators.similarity import similarity_table

    at = page("similarity", sim_metric_a="on").run()
    at.radio(key="sim_which").set_value("a window of layers").run()
    at.slider(key="sim_window").set_value((2, 4)).run()
    ok(at)
    expected = similarity_table("on", "minilm", TASKS, layers=(1, 4))
    assert values(figures(at)[0]["data"][0]["z"]) == expected["matrix"]


# ------------------------------------------------------------------- Clusters
@pytest.mark.parametrize("mode", ["prompt", "token"])
def test_clusters_plot_every_prompt(app_cache, mode):
    at = page("clusters", clu_method="pca", clu_mode=mode).run()
    ok(at)
    assert {"clu_method", "clu_mode"} <= keys(at.radio)
    fig = figures(at)[0]
    n = sum(len(values(tr["x"])) for tr in fig["data"])
    assert n == (3 if mode == "prompt" else 3 * 20)
    names = {tr["legendgroup"] for tr in fig["data"]}
    assert any("sentiment" in g for g in names) and any("topic" in g for g in names)


def test_cluster_layouts_are_seeded(app_cache):
    from panda_core.indicators.clusters import prompt_points

    a = prompt_points("minilm", TASKS[:2], mode="token", method="tsne", seed=3)
    b = prompt_points("minilm", TASKS[:2], mode="token", method="tsne", seed=3)
    assert list(a.columns) == ["x", "y", "task", "family", "token", "prompt_id", "method", "seed", "origin"]
    assert a[["x", "y"]].equals(b[["x", "y"]])


# ------------------------------------------------------------------- Transfer
def test_transfer_run_from_the_page_completes(app_cache):
    at = page("transfer").run()
    ok(at)
    assert {"tr_target", "tr_steps"} <= keys(at.selectbox) | keys(at.number_input)
    at.selectbox(key="tr_target").set_value("yelp_uci").run()
    at.multiselect(key="tr_sources").set_value(["imdb_uci"])
    at.multiselect(key="tr_methods").set_value(["zero-shot", "pt"])
    at.number_input(key="tr_steps").set_value(20)
    at.number_input(key="tr_eval_every").set_value(10)
    at.number_input(key="tr_dev_limit").set_value(60)
    at.number_input(key="tr_test_limit").set_value(100)
    at.run()
    assert not at.button(key="tr_run").disabled, [w.value for w in at.warning]
    at.button(key="tr_run").click().run()
    ok(at)
    ids = at.session_state["tr_batch"]
    assert len(ids) == 2
    deadline = time.time() + 400
    table = None
    while time.time() < deadline:
        time.sleep(3)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        tables = [df.value for df in at.dataframe if "method" in df.value.columns and "test acc" in df.value.columns]
        if tables and tables[0]["status"].str.contains("done").all() and len(tables[0]) == 2:
            table = tables[0]
            break
    assert table is not None, "the transfer runs did not finish in time"
    assert set(table["method"]) == {"Zero-shot", "PT (from scratch)"}
    assert table["test acc"].between(0, 1).all()
    zs = table[table["method"] == "Zero-shot"].iloc[0]
    assert zs["source"] == "imdb_uci" and zs["target"] == "yelp_uci"
    # every accuracy with its 95% interval, next to the majority class on the same 100 items
    assert table["test acc [95% CI]"].str.fullmatch(INTERVAL).all()
    assert (table["test items"] == 100).all() and table["majority class"].between(0, 1).all()
    # zero-shot against PT, paired on the same test items, with its verdict in words
    cmp = comparison_table(at)
    assert list(cmp["A"]) == ["Zero-shot from imdb_uci"] and list(cmp["B"]) == ["PT (from scratch)"]
    assert cmp["Δ A − B [95% CI]"].str.fullmatch(DIFFERENCE).all() and (cmp["items"] == "100").all()
    assert cmp["verdict"].iloc[0] in {"▲ better", "▼ worse", "≈ within noise"}
    curves = figures(at)[0]
    names = [tr["name"] for tr in curves["data"]]
    assert len(names) == 2 and any("Zero-shot" in n for n in names)  # PT's curve and zero-shot's level
    ok(at)


def test_transfer_ranking_of_sources(app_cache):
    at = page("transfer", tr_target="yelp_uci").run()
    ok(at)
    ranking = next(df.value for df in at.dataframe if "rank spot" in df.value.columns)
    assert set(ranking.index) == {"imdb_uci", "r8"}
    assert {"rank e_concat", "rank c_avg", "zero-shot", "pot-gain", "panda-gain"} <= set(ranking.columns)


# ------------------------------------------- registries drive the selectors
def test_selectors_list_every_registered_method_and_indicator(app_cache):
    at = page("transfer", tr_target="yelp_uci").run()
    ok(at)
    assert at.multiselect(key="tr_methods").options == [m.label for m in METHODS]
    at = page("similarity").run()
    ok(at)
    assert at.selectbox(key="sim_metric_a").options == [f"{i.name}: {i.label}" for i in INDICATORS]
    at = page("validation").run()
    ok(at)
    assert len(at.multiselect(key="mv_metrics").options) == len(INDICATORS)


@pytest.fixture
def extra_entries():
    """One more transfer method and one more indicator, registered as a new
    module would register them (and removed afterwards)."""
    import torch

    from panda_core.indicators import Indicator, stack_prompts
    from panda_core.transfer import TransferMethod

    class NewMethod(TransferMethod):
        name, label, help = "test-new-method", "Brand-new method", "registered by a test"

    class NewIndicator(Indicator):
        name, label = "test_new_indicator", "Brand-new indicator"

        def compute(self, prompts, ctx):
            flat = stack_prompts(prompts).flatten(1)
            return -torch.cdist(flat, flat)

    METHODS.register(NewMethod())
    INDICATORS.register(NewIndicator())
    yield NewMethod, NewIndicator
    METHODS._entries.pop(NewMethod.name)
    INDICATORS._entries.pop(NewIndicator.name)


def test_a_newly_registered_method_and_indicator_appear_with_no_page_edit(app_cache, extra_entries):
    method, indicator = extra_entries
    at = page("transfer", tr_target="yelp_uci").run()
    ok(at)
    assert method.label in at.multiselect(key="tr_methods").options
    assert any(method.label in c.value for c in at.caption)  # the page's explanation of each method
    ranking = next(df.value for df in at.dataframe if "rank spot" in df.value.columns)
    assert f"rank {indicator.name}" in ranking.columns  # an embedding indicator: ranked by default
    at = page("similarity", sim_metric_a=indicator.name).run()
    ok(at)
    assert f"{indicator.name}: {indicator.label}" in at.selectbox(key="sim_metric_a").options
    assert figures(at)[0]["data"][0]["type"] == "heatmap"


# --------------------------------------------------------- Cross model, Runs
def test_cross_model_page_widgets(app_cache):
    at = page("cross_model").run()
    ok(at)
    assert {"cm_source", "cm_target", "cm_train_task"} <= keys(at.selectbox)
    assert "cm_eval_tasks" in keys(at.multiselect) and "cm_method" in keys(at.radio)
    assert at.button(key="cm_run") is not None


def test_cross_model_results_carry_intervals_and_paired_verdicts(app_cache):
    from panda_core import store

    diff = {"diff": 0.21, "low": 0.15, "high": 0.27, "p_value": 0.0001, "n": 200, "within_noise": False}
    noise = {"diff": -0.01, "low": -0.05, "high": 0.03, "p_value": 0.7, "n": 200, "within_noise": True}
    result = {"projector_id": "proj-x", "source_backbone": "minilm", "target_backbone": "minilm", "method": "task",
              "train_task": "imdb_uci", "steps": 10, "seconds": 1.0, "results": [
                  {"task": "yelp_uci", "family": "sentiment", "n_test": 200, "majority_test_acc": 0.5,
                   "test_acc": 0.8, "test_acc_ci": [0.74, 0.85], "random_prompt_acc": 0.59,
                   "random_prompt_acc_ci": [0.52, 0.66], "target_pt_acc": 0.81, "target_pt_acc_ci": [0.75, 0.86],
                   "projected_vs_random": diff, "projected_vs_target_pt": noise}]}
    rid = store.create_run("project", "task", "imdb_uci", "minilm", {}, source="minilm")
    store.update_run(rid, status="done", result=result)
    at = page("cross_model").run()
    ok(at)
    table = next(t.value for t in at.table if "projected − random" in t.value.columns)
    row = table.iloc[0]
    assert row["projected prompt"] == "0.800 [0.740, 0.850]" and row["random prompt"] == "0.590 [0.520, 0.660]"
    assert row["projected − random"] == "+0.210 [+0.150, +0.270]"
    assert row["projected − own PT"] == "-0.010 [-0.050, +0.030]"
    bars = figures(at)[0]["data"]
    assert values(bars[0]["error_y"]["array"]) == [pytest.approx(0.05)]


def test_runs_page_lists_and_cancels(app_cache):
    from panda_core import ops, store

    queued = ops.submit("transfer", {"source": "imdb_uci", "target": "r8", "method": "zero-shot",
                                      "backbone": "minilm", "config": {}}, launch=False)
    at = page("runs").run()
    ok(at)
    table = next(df.value for df in at.dataframe if "status" in df.value.columns)
    assert queued in set(table["id"])
    at.multiselect(key="runs_cancel_pick").set_value([queued]).run()
    at.button(key="runs_cancel").click().run()
    ok(at)
    assert store.get_run(queued)["status"] == "cancelled"


def test_metric_validation_without_runs_says_what_to_do(app_cache):
    at = page("validation", mv_measure="panda-gain").run()
    assert not at.exception
    assert {"mv_tasks", "mv_metrics"} <= keys(at.multiselect) and "mv_measure" in keys(at.radio)
    ok(at)
    assert any("No PANDA transfer runs" in i.value for i in at.info)
    assert any(b.key == "mv_fill" for b in at.button)


def test_metric_validation_scores_every_indicator(app_cache):
    from panda_core.ops import run_transfer
    from panda_core.training import TrainConfig
    from panda_core.transfer import TransferConfig

    cfg = TransferConfig(train=TrainConfig(dev_limit=40, test_limit=80))
    for s in TASKS:
        for t in TASKS:  # s == t: each target's own prompt, the reference of a relative measure
            run_transfer(s, t, "zero-shot", "minilm", cfg)
    at = page("validation", mv_measure="zero-shot").run()
    ok(at)
    summary = next(t.value for t in at.table if "indicator" in t.value.columns)
    assert set(summary["indicator"]) == set(INDICATORS.names())
    assert (summary["pairs"] == 6).all()
    # correlations with their bootstrap intervals, NDCG@3, top-beats-median and a verdict in words
    pooled = summary["Spearman (pooled) [95% CI]"]
    assert pooled.str.fullmatch(r"-?\d\.\d{3} \[-?\d\.\d{3}, -?\d\.\d{3}\]").any()
    assert {"Kendall (pooled) [95% CI]", "NDCG@3", "top source beats median"} <= set(summary.columns)
    assert set(summary["verdict (pooled Spearman)"]) <= {"▲ predicts", "▼ reversed", "≈ within noise", "—"}
    assert any("Every ordered pair" in c.value for c in at.caption)  # the form agrees: nothing missing
    scatter = figures(at)[0]
    assert sum(len(values(tr["x"])) for tr in scatter["data"]) == len(INDICATORS) * 6


# ------------------------------------------- intervals and within-noise marks
def test_transfer_comparisons_mark_noise_in_words_and_colour(app_cache):
    """A batch with a clear gain, a clear loss and a tie: each comparison's verdict in
    words, and its row coloured (grey and muted when within noise). The rows are
    written directly, in a configuration no other test measures."""
    from panda_core import store

    def done(method, source, items, **result):
        rid = store.create_run("transfer", method, "yelp_uci", "minilm", {"train": {"prompt_length": 3}},
                               source=source)
        store.update_run(rid, status="done", result={"test_acc": items.count("1") / len(items),
                                                     "test_correct": items, "majority_test_acc": 0.5} | result)
        return rid

    half = "10" * 100
    ids = [done("pt", None, half), done("pot", "imdb_uci", "1" * 180 + "0" * 20, test_acc_ci=[0.85, 0.93]),
           done("panda", "imdb_uci", "1" * 179 + "0" * 21), done("model-tuning", None, "0" * 200)]
    at = page("transfer", tr_batch=ids).run()
    ok(at)
    results = next(df.value for df in at.dataframe if "test acc [95% CI]" in df.value.columns)
    assert results["test acc [95% CI]"].str.fullmatch(INTERVAL).all()
    assert "0.900 [0.850, 0.930]" in set(results["test acc [95% CI]"])  # the stored interval is the one shown
    cmp = comparison_table(at)
    verdicts = dict(zip(cmp["A"] + " vs " + cmp["B"], cmp["verdict"], strict=True))
    assert verdicts == {"Vanilla PoT from imdb_uci vs PT (from scratch)": "▲ better",
                        "PANDA from imdb_uci vs PT (from scratch)": "▲ better",
                        "Model tuning vs PT (from scratch)": "▼ worse",
                        "PANDA from imdb_uci vs Vanilla PoT from imdb_uci": "≈ within noise"}
    table = next(t for t in at.table if "verdict" in t.value.columns)
    css = row_styles(table)
    assert "#efefef" in css and "#e2f3df" in css and "#fbe1de" in css  # grey, green and red rows
    assert any("within noise" in m.value for m in at.markdown)  # the legend says what grey means


def test_measure_more_pairs_offers_the_pt_references_gains_need(app_cache, monkeypatch):
    """PoT gains are taken against a PT run of the same settings: the form launches those
    too, in the page's prompt length, and the missing pairs agree with validation's."""
    from panda_core import ops, store
    from panda_core.indicators.validation import missing_pairs

    monkeypatch.setattr("panda_core.ops.jobs.start_worker", lambda run_id: 0)  # queue only
    at = page("validation", mv_measure="pot-gain").run()
    ok(at)
    assert len(missing_pairs("minilm", TASKS, "pot-gain", 20)) == 6
    assert any("6 Vanilla PoT runs missing, 3 PT (from scratch) reference runs missing" in e.label
               for e in at.expander)
    at.number_input(key="mv_steps").set_value(10)
    at.number_input(key="mv_test").set_value(40)
    at.run()
    at.button(key="mv_fill").click().run()
    queued = [store.get_run(i) for i in at.session_state["mv_runs"]]
    try:
        assert sorted(r["method"] for r in queued) == ["pot"] * 6 + ["pt"] * 3
        assert {r["target"] for r in queued if r["method"] == "pt"} == set(TASKS)
        assert all(r["source"] is None for r in queued if r["method"] == "pt")
        train = [r["config"]["job"]["config"]["train"] for r in queued]
        assert all(t["prompt_length"] == 20 and t["steps"] == 10 and t["test_limit"] == 40 for t in train)
    finally:
        for r in queued:
            ops.cancel(r["id"])  # never run: a queued job would hold up later ones


# ------------------------------------------------------------- prompt types
def test_pages_follow_the_prompt_type_chosen_on_home(app_cache):
    """Choosing "deep" on Home makes Similarity, Clusters and the training form work on
    deep prompts (per-layer prefixes of MiniLM's 6 layers), never on input prompts."""
    import torch

    from panda_core import store
    from panda_core.indicators.similarity import similarity_table
    from panda_core.prompts import SoftPrompt

    at = page("home").run()
    assert at.selectbox(key="home_prompt_type").options == ["input: input-level prompt (n x d rows in the input "
                                                            "embeddings)", "deep: deep prompt (per-layer key/value "
                                                            "prefixes, P-tuning v2)"]
    at.selectbox(key="home_prompt_type").set_value("deep").run()
    ok(at)
    assert at.session_state["prompt_type"] == "deep"
    assert set(at.multiselect(key="home_train_tasks").value) >= set(TASKS)  # no deep prompt trained yet
    g = torch.Generator().manual_seed(0)
    ids = [store.save_prompt(SoftPrompt(tensor=0.05 * torch.randn(6, 2, 20, 384, generator=g), backbone="minilm",
                                        task=t)) for t in TASKS]
    try:
        at = page("similarity", prompt_type="deep", sim_metric_a="c_avg").run()
        ok(at)
        heat = figures(at)[0]["data"][0]
        expected = similarity_table("c_avg", "minilm", TASKS, prompt_type="deep")
        assert values(heat["z"]) == expected["matrix"] != similarity_table("c_avg", "minilm", TASKS)["matrix"]
        at = page("clusters", prompt_type="deep", clu_method="pca").run()
        ok(at)
        assert any("3 deep prompts" in c.value for c in at.caption)
    finally:
        for pid in ids:
            store.delete_prompt(pid)


def test_home_offers_a_backbone_that_is_only_imported(app_cache, tmp_path):
    """Published prompts of a backbone that is not installed (RoBERTa-base, 100 x 768)
    make it a choice on Home, labelled as such; training is not offered for it."""
    import numpy as np

    from panda_core import store
    from panda_core.ops import import_prompt

    path = tmp_path / "mr.npy"
    np.save(path, np.random.default_rng(0).standard_normal((100, 768)).astype(np.float32))
    pid = import_prompt(path, backbone="roberta-base")["prompt_id"]
    try:
        at = page("home").run()
        ok(at)
        assert "roberta-base" in at.selectbox(key="home_backbone").options[-2]
        at.selectbox(key="home_backbone").set_value("roberta-base").run()
        assert at.session_state["prompt_length"] == 100  # the length its prompts have
        at = page("home", backbone="roberta-base").run()
        ok(at)
        assert any("not installed here" in i.value for i in at.info)
        assert "home_train_tasks" not in keys(at.multiselect)
    finally:
        store.delete_prompt(pid)
