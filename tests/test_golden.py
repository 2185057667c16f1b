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
    assert set(files) == {"shapes.json", "masks.json", "points.json"}
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
    assert {"affine", "perspective", "algorithm1", "points"} <= set(methods)
    # the transform cases exercise the snap to the nearest handle pixel, Algorithm 1 its hole fix
    assert sum(len(c["map"]["target"]) for f in files.values() for c in f["cases"]) > 5000


def test_golden_points_cover_parts_ties_and_the_reference_cut():
    """The region + points cases move brush regions of several parts (one left in place), fill a
    ring's hole, drop rows off the image, tie distances, and use the 100-reference cut."""
    import numpy as np

    from regiondrag_core.masks import pairs_from_shapes
    from regiondrag_core.points import MAX_FILL_REFERENCES
    from regiondrag_core.shapes import parse_shapes
    cases = {c["name"]: c for c in make_golden.build()["points.json"]["cases"]}
    idle = cases["points-brush-two-parts-one-idle"]
    assert len(idle["part"]) < len(idle["handle_mask"])
    ring = cases["points-ring-hole-filled"]
    assert len(ring["part"]) > len(ring["handle_mask"])
    off = cases["points-partly-off-image"]
    (pair,) = pairs_from_shapes(parse_shapes(off["shapes"]), tuple(off["size"]))
    assert len(off["region"]) < pair.target.sum()  # target pixels whose source falls off the image
    assert max(len(c["part"]) for c in cases.values()) > 10 * MAX_FILL_REFERENCES
    assert len(json.loads(cases["points-32-pairs"]["shapes"])["pairs"][0]["points"]) == 32
    for c in cases.values():
        assert len(c["map"]["target"]) == len(c["map"]["handle"]) > 0
        assert set(c["map"]["target"]) == set(c["region"])
        assert np.isin(c["map"]["handle"], np.arange(c["size"][0] * c["size"][1])).all()
