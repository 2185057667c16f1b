"""Every example workflow's UI file and its API twin agree (same nodes, wiring and values), and the
generated ones are up to date with ``tools/make_workflows.py``. No ComfyUI needed; the browser tier
(test_editor_browser.py) loads each UI file in the real front-end and checks what it queues."""
from __future__ import annotations

import glob
import json
import os

import pytest

import make_workflows
from support import REPO

UI_FILES = sorted(glob.glob(os.path.join(REPO, "example_workflows", "*.json")))
NAMES = [os.path.basename(p)[:-len(".json")] for p in UI_FILES]
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")


def twin(name):
    with open(os.path.join(REPO, "example_workflows", f"{name}.json")) as f:
        ui = json.load(f)
    with open(os.path.join(REPO, "example_workflows", "api", f"{name}_api.json")) as f:
        api = json.load(f)
    return ui, api


def test_every_example_has_an_api_twin_and_the_chains_are_covered():
    apis = sorted(os.path.basename(p)[:-len("_api.json")]
                  for p in glob.glob(os.path.join(REPO, "example_workflows", "api", "*_api.json")))
    assert apis == NAMES
    types = {n: {v["class_type"] for v in twin(n)[1].values()} for n in NAMES}
    for needed in ("ControlNetApplyAdvanced", "LoraLoader", "ConditioningCombine", "LatentUpscaleBy",
                   "ImageScaleBy", "CLIPTextEncodeSDXL"):
        assert any(needed in t for t in types.values()), needed
    assert any("RegionDragBenchScore" in t for t in types.values())
    for name, t in types.items():
        assert {"DDPMInvertAndCache", "RegionDragKSampler"} <= t, name
        assert {"RegionMaskPair", "RegionToPointMapping"} <= t or "RegionDragPointPairs" in t, name


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_and_api_twin_agree(name):
    ui, api = twin(name)
    assert {str(n["id"]): n["type"] for n in ui["nodes"]} == {k: v["class_type"] for k, v in api.items()}
    links = {link[0]: link for link in ui["links"]}
    for link_id, src, slot, dst, dst_slot, typ in ui["links"]:
        node = next(n for n in ui["nodes"] if n["id"] == dst)
        assert node["inputs"][dst_slot]["link"] == link_id, (name, link_id)
        out = next(n for n in ui["nodes"] if n["id"] == src)["outputs"][slot]
        assert link_id in out["links"] and out["type"] == typ, (name, link_id)
    for n in ui["nodes"]:
        wired = {i["name"]: [str(links[i["link"]][1]), links[i["link"]][2]]
                 for i in n.get("inputs", []) if i.get("link")}
        inputs = api[str(n["id"])]["inputs"]
        assert {k: v for k, v in inputs.items() if isinstance(v, list)} == wired, (name, n["type"])
        values = [v for v in inputs.values() if not isinstance(v, list)]
        # a widget fed by a link keeps a value in the UI file; the API twin has the link instead
        linked = {make_workflows.SPECS[n["type"]][1].index(i["widget"]["name"])
                  for i in n.get("inputs", []) if i.get("widget") and i.get("link")}
        widgets = [w for i, w in enumerate(n.get("widgets_values", []))
                   if not (w in CONTROL_VALUES and i > 0)                        # seed's control_after_generate
                   and not (n["type"] == "LoadImage" and w == "image")           # the upload button
                   and i not in linked]
        assert widgets == values, (name, n["type"])


def test_generated_examples_are_up_to_date():
    assert make_workflows.main(["--check"]) == 0, "run python tools/make_workflows.py"
