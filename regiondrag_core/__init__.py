"""RegionDrag in plain torch/numpy/opencv. Imports nothing from ComfyUI.

The region editor (web/js/) runs some of the same rules in the browser; each rule lives in one Python
file and its JS copy in one JS file, pinned together by tests/test_golden.py and tests/js/:

============  =============================  ==================================================
Python        JavaScript (web/js/)           what both hold
============  =============================  ==================================================
shapes.py     regiondrag_geometry.js         the shapes JSON: format, limits, parse (JS: parseShapes,
                                             serializeShapes)
geometry.py   regiondrag_geometry.js         shape geometry: the simple-polygon check, bounds,
                                             scaling (JS: polygonProblem, shapeBBox, scaleShape)
raster.py     regiondrag_raster.js           shapes to pixels as OpenCV draws them
mapping.py    regiondrag_mapping.js          region-to-point mapping and the copy-paste preview
masks.py      --                             region pairs from MASK inputs and from shapes
points.py     regiondrag_points.js           region + points: a region moved by point pairs (pinned
                                             to the released code by tests/test_points.py; JS for
                                             the preview, tests/js/golden/points.json)
--            regiondrag_model.js            the editor's shapes model (selection, undo/redo, the
                                             Points tool, the limits it draws within)
============  =============================  ==================================================

The rest is backend only: schedule.py (timesteps, DDPM step math), sampling.py (the two sampler
functions, the ``Inversion`` value), kvbank.py (the self-attention K/V cache and swap), errors.py,
dragbench.py (DragBench samples read through a restricted unpickler, the released evaluator's Mean
Distance math, a side-by-side picture, a synthetic set in the same format).
"""
