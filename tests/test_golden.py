"""The golden vectors in tests/js/golden/ (which pin the editor's JS preview to the core, see
tests/js/golden.test.mjs) are what regiondrag_core computes now: regenerated in memory and compared,
so a change of the Python mapping or rasterisation shows up here until the files are rewritten
with ``python tools/make_golden.py`` (and the JS port checked against them with node --test)."""
from __future__ import annotations

import json
import os

import make_golden


def test_golden_files_match_the_core():
    files = make_golden.build()
    assert set(files) == {"shapes.json", "masks.json"}
    for name, content in files.items():
        path = os.path.join(make_golden.GOLDEN_DIR, name)
        with open(path) as f:
            stored = json.load(f)
        fresh = json.loads(make_golden.render(content))
        assert [c["name"] for c in stored["cases"]] == [c["name"] for c in fresh["cases"]], name
        for old, new in zip(stored["cases"], fresh["cases"]):
            assert old == new, (f"{name}: case {old['name']} differs from regiondrag_core now; "
                                "run python tools/make_golden.py, then node --test tests/js")


def test_golden_set_covers_every_mapping_path():
    files = make_golden.build()
    methods = [c["method"] for f in files.values() for c in f["cases"]]
    assert {"affine", "perspective", "algorithm1"} <= set(methods)
    # the transform cases exercise the snap to the nearest handle pixel, Algorithm 1 its hole fix
    assert sum(len(c["map"]["target"]) for f in files.values() for c in f["cases"]) > 5000
