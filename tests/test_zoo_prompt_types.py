"""docs/zoo.md's deep-against-input table follows from the shipped manifest:
regenerating it gives the committed block, and each paired difference is the
difference of the two prompts' accuracies on the same check items."""

from __future__ import annotations

from devtools.zoo_prompt_types import MARK, comparisons, render
from panda_core.paths import REPO_ROOT
from panda_core.stats.items import decode_items
from panda_core.zoo import files as zoo_files

SHIPPED = REPO_ROOT / "zoo"


def test_the_committed_table_is_what_the_manifest_gives():
    rows = comparisons(zoo_files.read_manifest(SHIPPED))
    page = (REPO_ROOT / "docs" / "zoo.md").read_text()
    block = page.split(f"<!-- {MARK}:start -->\n", 1)[1].split(f"\n<!-- {MARK}:end -->", 1)[0]
    assert block == render(rows)


def test_each_paired_difference_is_on_the_same_items():
    manifest = zoo_files.read_manifest(SHIPPED)
    by_key = {(e["backbone"], e["prompt_type"], e["task"]): e for e in manifest["prompts"]}
    rows = comparisons(manifest)
    assert len(rows) == sum(k[1] == "deep" and (k[0], "input", k[2]) in by_key for k in by_key)
    for r in rows:
        deep = decode_items(by_key[(r["backbone"], "deep", r["task"])]["check"]["items"])
        shallow = decode_items(by_key[(r["backbone"], "input", r["task"])]["check"]["items"])
        n = min(deep.size, shallow.size)
        p = r["paired"]
        assert p["n"] == n
        assert abs(p["diff"] - (deep[:n].mean() - shallow[:n].mean())) < 1e-4
        assert p["low"] <= p["diff"] <= p["high"] and 0.0 <= p["p_value"] <= 1.0
        assert p["verdict"] == ("within noise" if p["low"] <= 0 <= p["high"] else
                                "better" if p["low"] > 0 else "worse")
