// Live editing without a browser: node --test tests/js
// * every finished gesture in the editor (region closed, moved or reshaped, point pair placed, undo,
//   delete) changes the saved text once, and a pointer move never does (EditorInput driving a
//   ShapesModel, as the editor's panel does, with a stand-in canvas);
// * the stale-run policy and the result picking of web/js/regiondrag_live.js.
import test from "node:test";
import assert from "node:assert/strict";

import { ShapesModel } from "../../web/js/regiondrag_model.js";
import { EditorInput } from "../../web/js/regiondrag_input.js";
import {
  downstream,
  editGraph,
  interruptsStale,
  ResultPicker,
  RunTracker,
  runningPrompt,
  SAMPLER_TYPE,
  sameShapes,
} from "../../web/js/regiondrag_live.js";

// ------------------------------------------------------------------ gestures -> writes

const W = 200, H = 100;

function target() {
  const listeners = {};
  return {
    listeners,
    addEventListener(type, fn) {
      (listeners[type] ||= []).push(fn);
    },
  };
}

/** An editor stand-in: the model, EditorInput on a canvas of W x H css px at (0, 0), and the
 * writes the panel would make (a "shapes" change whose text differs from the last one). */
function editor(tool = "polygon") {
  const model = new ShapesModel();
  model.load("", [W, H]);
  const canvas = Object.assign(target(), {
    getBoundingClientRect: () => ({ left: 0, top: 0, width: W, height: H }),
    setPointerCapture() {},
    releasePointerCapture() {},
  });
  const root = Object.assign(target(), { focus() {} });
  const ed = {
    model, canvas, root, tool, brushSize: 10, jsonArea: {}, // (not the event target: keys are commands)
    notices: [],
    setNotice(t) {
      if (t) this.notices.push(t);
    },
    changed() {},
    render() {},
    host: { forwardPointer() {}, forwardWheel() {} },
  };
  const writes = [];
  let last = "";
  model.subscribe((kind) => { // as the panel (regiondrag_panel.js, onModelChange) writes
    if (kind !== "shapes") return;
    const text = model.toText();
    if (!sameShapes(text, last)) {
      writes.push(text);
      last = text;
    }
  });
  const input = new EditorInput(ed);
  const ev = ([x, y], button = 0) => ({
    clientX: x + 0.5, clientY: y + 0.5, button, pointerId: 1,
    preventDefault() {}, stopPropagation() {},
  });
  const mouse = {
    down: (p) => input.onPointerDown(ev(p)),
    move: (p) => input.onPointerMove(ev(p)),
    up: (p) => input.onPointerUp(ev(p)),
    click(p) {
      this.down(p);
      this.up(p);
    },
    key: (key) => input.onKeyDown({ key, target: null, preventDefault() {}, stopPropagation() {} }),
  };
  const load = (text) => { // the widget's text read (as the panel's loadText)
    last = text;
    model.load(text);
  };
  return { ed, model, input, mouse, writes, load };
}

function polygon(mouse, pts) {
  for (const p of pts) mouse.click(p);
  mouse.click(pts[0]); // close on the first corner
}

const QUAD = [[10, 10], [50, 10], [50, 40], [10, 40]];
const TRI = [[70, 10], [110, 10], [90, 40]];

test("a pair drawn with clicks writes once: when the target closes (a handle alone is not saved)", () => {
  const { mouse, writes, model } = editor();
  polygon(mouse, QUAD);
  assert.equal(writes.length, 0, "the handle region alone changes nothing saved");
  assert.equal(model.pairs.length, 1);
  for (const p of TRI) mouse.click(p);
  assert.equal(writes.length, 0, "corners are not written");
  mouse.key("Enter");
  assert.equal(writes.length, 1);
  assert.equal(JSON.parse(writes[0]).pairs.length, 1);
});

test("moving a region writes once, on release; every pointer move in between writes nothing", () => {
  const { ed, mouse, writes } = editor();
  polygon(mouse, QUAD);
  polygon(mouse, TRI);
  assert.equal(writes.length, 1);
  ed.tool = "select";
  mouse.down([90, 20]); // inside the target triangle
  for (let k = 1; k <= 20; k++) mouse.move([90 + k, 20 + k / 2]);
  assert.equal(writes.length, 1, "no write while the pointer moves");
  mouse.up([110, 30]);
  assert.equal(writes.length, 2);
  const t = JSON.parse(writes[1]).pairs[0].target.points;
  assert.deepEqual(t, TRI.map(([x, y]) => [x + 20, y + 10]));
  // a corner drag (reshape) is one write too
  mouse.down([TRI[2][0] + 20, TRI[2][1] + 10]);
  for (let k = 1; k <= 5; k++) mouse.move([TRI[2][0] + 20, TRI[2][1] + 10 + k]);
  assert.equal(writes.length, 2);
  mouse.up([TRI[2][0] + 20, TRI[2][1] + 15]);
  assert.equal(writes.length, 3);
  // a press and release without a move, or a drag on empty image, writes nothing
  mouse.down([20, 20]);
  mouse.up([20, 20]);
  mouse.down([180, 90]);
  mouse.move([170, 80]);
  mouse.up([170, 80]);
  assert.equal(writes.length, 3);
});

test("a move the node would refuse is put back and writes nothing", () => {
  const { ed, mouse, writes, model } = editor();
  polygon(mouse, QUAD);
  polygon(mouse, TRI);
  ed.tool = "select";
  const before = model.toText();
  mouse.down([90, 20]);
  mouse.move([90 + 400, 20]); // off the image
  mouse.up([90 + 400, 20]);
  assert.equal(writes.length, 1);
  assert.equal(model.toText(), before);
  assert.ok(ed.notices.some((n) => n.includes("off the image")), ed.notices);
});

test("point pairs: each placed pair writes once, a dragged point once; undo, redo and delete once each", () => {
  const { ed, mouse, writes, model } = editor();
  polygon(mouse, QUAD);
  ed.tool = "points";
  mouse.click([20, 20]); // handle point
  assert.equal(writes.length, 0);
  mouse.click([80, 60]); // its target
  assert.equal(writes.length, 1);
  mouse.click([40, 30]);
  mouse.click([120, 70]);
  assert.equal(writes.length, 2);
  mouse.down([80, 60]); // drag the first target point
  for (let k = 1; k <= 8; k++) mouse.move([80 + k, 60]);
  assert.equal(writes.length, 2);
  mouse.up([88, 60]);
  assert.equal(writes.length, 3);
  assert.deepEqual(JSON.parse(writes[2]).pairs[0].points[0].target, [88, 60]);
  model.undo();
  assert.equal(writes.length, 4);
  model.redo();
  assert.equal(writes.length, 5);
  ed.tool = "select";
  mouse.click([120, 70]); // select the second point pair by its target
  mouse.key("Delete");
  assert.equal(writes.length, 6);
  assert.equal(JSON.parse(writes[5]).pairs[0].points.length, 1);
  // undo of a handle point still waiting for its target changes nothing saved
  ed.tool = "points";
  mouse.click([30, 20]);
  model.undo();
  assert.equal(writes.length, 6);
});

test("a brush stroke writes on release only (once its pair is complete)", () => {
  const { ed, mouse, writes } = editor("brush");
  mouse.down([20, 20]);
  for (let k = 1; k <= 10; k++) mouse.move([20 + k, 20]);
  mouse.up([30, 20]);
  mouse.key("Enter"); // the handle region is done; not saved yet
  assert.equal(writes.length, 0);
  mouse.down([120, 20]);
  for (let k = 1; k <= 10; k++) mouse.move([120 + k, 20]);
  assert.equal(writes.length, 0);
  mouse.up([130, 20]);
  assert.equal(writes.length, 1);
  mouse.down([120, 40]); // a second stroke into the same (open) target region
  mouse.move([125, 40]);
  assert.equal(writes.length, 1);
  mouse.up([125, 40]);
  assert.equal(writes.length, 2);
  assert.equal(ed.tool, "brush");
});

test("the same shapes written another way are not a change; other coordinates or sizes are", () => {
  const pair = { handle: { type: "polygon", points: [[18, 70], [44, 70], [44, 100]] },
    target: { type: "polygon", points: [[28, 62], [54, 62], [54, 92]] } };
  const compact = JSON.stringify({ version: 1, width: 128, height: 128, pairs: [pair] });
  const spaced = JSON.stringify({ pairs: [pair], height: 128, width: 128, version: 1 }, null, 1);
  assert.ok(sameShapes(compact, spaced));
  assert.ok(sameShapes("", JSON.stringify({ version: 1, width: 128, height: 128, pairs: [] })), "no pairs either way");
  assert.ok(!sameShapes(compact, ""));
  assert.ok(!sameShapes(compact, compact.replace("[18,70]", "[18.004,70]")), "any coordinate change counts");
  assert.ok(!sameShapes(compact, compact.replace('"width":128', '"width":256')));
  assert.ok(!sameShapes(compact, "{not json"), "unreadable text is never the same");
});

test("a workflow's text written by another program: a gesture that changes nothing saved keeps it", () => {
  const { mouse, writes, load } = editor();
  const spaced = JSON.stringify({ version: 1, width: W, height: H, pairs: [
    { handle: { type: "polygon", points: QUAD }, target: { type: "polygon", points: TRI } }] }, null, 2);
  load(spaced);
  polygon(mouse, [[120, 60], [160, 60], [150, 90]]); // a new handle alone
  assert.equal(writes.length, 0);
  polygon(mouse, [[120, 10], [160, 10], [150, 40]]); // its target: a change
  assert.equal(writes.length, 1);
});

// --------------------------------------------------------------------------- graph

// LoadImage 1 -> RegionMaskPair 2 -> Mapping 3 -> KSampler 5 -> Decode 6 -> Preview 7, Save 8;
// Mapping 3 -> Preview 9 (copy-paste preview); Inversion 4 -> KSampler 5; Decode 6 -> Upscale 10 -> Save 11
const NODES = {
  1: ["LoadImage", [2, 4]], 2: ["RegionMaskPair", [3]], 3: ["RegionToPointMapping", [5, 9]],
  4: ["DDPMInvertAndCache", [5]], 5: [SAMPLER_TYPE, [6]], 6: ["VAEDecode", [7, 8, 10]], 7: ["PreviewImage", []],
  8: ["SaveImage", []], 9: ["PreviewImage", []], 10: ["ImageScaleBy", [11]], 11: ["SaveImage", []],
};
const GRAPH = { type: (id) => NODES[id]?.[0] ?? null, targets: (id) => NODES[id]?.[1] ?? [] };

test("downstream distances and the edit's samplers and result nodes", () => {
  assert.deepEqual([...downstream(GRAPH, 2)], [["3", 1], ["5", 2], ["9", 2], ["6", 3], ["7", 4], ["8", 4], ["10", 4], ["11", 5]]);
  const { samplers, results } = editGraph(GRAPH, 2);
  assert.deepEqual([...samplers], ["5"]);
  assert.deepEqual(Object.fromEntries(results), { 6: 1, 7: 2, 8: 2, 10: 2, 11: 3 });
  assert.ok(!results.has("9"), "the mapping's copy-paste preview is not the edit");
  // a RegionMaskPair that feeds no sampler has neither
  const other = editGraph({ type: GRAPH.type, targets: (id) => (id === "12" ? [9] : []) }, 12);
  assert.equal(other.samplers.size, 0);
  assert.equal(other.results.size, 0);
});

// ---------------------------------------------------------------------- stale runs

const OLD = "{old shapes}", NEW = "{new shapes}";
const prompt = (shapes) => ({ 2: { class_type: "RegionMaskPair", inputs: { shapes } }, 5: { class_type: SAMPLER_TYPE, inputs: {} } });

test("a stale run: our prompt with other shapes, while the RegionDrag KSampler denoises; never the inversion; once", () => {
  const { samplers } = editGraph(GRAPH, 2);
  const r = new RunTracker();
  assert.equal(r.staleRun(samplers, 2, NEW), null, "nothing running");
  r.onEvent("execution_start", { prompt_id: "p1" });
  r.setPrompt("p1", prompt(OLD));
  assert.equal(r.staleRun(samplers, 2, NEW), null, "started, no node yet");
  r.onEvent("executing", "4"); // DDPM Invert-and-Cache
  r.onEvent("progress", { value: 1, max: 10, prompt_id: "p1", node: "4" });
  assert.equal(r.staleRun(samplers, 2, NEW), null, "never while the inversion runs");
  r.onEvent("executing", "3");
  assert.equal(r.staleRun(samplers, 2, NEW), null, "the mapping: not the denoising half");
  r.onEvent("executing", "5");
  r.onEvent("progress", { value: 1, max: 2, prompt_id: "p1", node: "5" });
  assert.equal(r.staleRun(samplers, 2, OLD), null, "the prompt has the node's shapes: not stale");
  assert.equal(r.staleRun(samplers, 2, NEW), "p1");
  assert.equal(r.staleRun(samplers, 2, NEW), null, "once per prompt");
  r.onEvent("execution_interrupted", { prompt_id: "p1", node_id: "5" });
  assert.equal(r.running, null);
  // the next prompt, stale too: its decoder is not interrupted (the run is nearly done)
  r.onEvent("execution_start", { prompt_id: "p2" });
  r.setPrompt("p2", prompt(OLD));
  r.onEvent("executing", "5");
  r.onEvent("executing", "6");
  assert.equal(r.staleRun(samplers, 2, NEW), null);
  r.onEvent("executing", null); // the prompt is done
  assert.equal(r.running, null);
  // a prompt not read from the queue yet is not called stale; once read, it is
  r.onEvent("progress", { value: 1, max: 2, prompt_id: "p3", node: "5" });
  assert.equal(r.staleRun(samplers, 2, NEW), null);
  r.setPrompt("p3", prompt(OLD));
  assert.equal(r.staleRun(samplers, 2, NEW), "p3");
  // an older front-end's executing event is an object
  r.onEvent("execution_success", { prompt_id: "p3" });
  r.onEvent("executing", { node: "5", prompt_id: "p4" });
  r.setPrompt("p4", prompt(OLD));
  assert.equal(r.staleRun(samplers, 2, NEW), "p4");
});

test("not stale: another graph's sampler, another node's prompt, shapes through a link", () => {
  const r = new RunTracker();
  r.onEvent("execution_start", { prompt_id: "p1" });
  r.setPrompt("p1", prompt(OLD));
  r.onEvent("executing", "42");
  assert.equal(r.staleRun(new Set(["5"]), 2, NEW), null, "not our sampler");
  r.onEvent("executing", "5");
  assert.equal(r.staleRun(new Set(["5"]), 7, NEW), null, "the prompt has no RegionMaskPair 7");
  r.setPrompt("p1", { 2: { class_type: "RegionMaskPair", inputs: { shapes: ["9", 0] } } });
  assert.equal(r.staleRun(new Set(["5"]), 2, NEW), null, "shapes from a link: unknown");
});

test("the running prompt is read from the server's /queue answer; a few are kept", () => {
  const q = { queue_running: [[3, "p1", prompt(OLD), {}, ["7"]]], queue_pending: [[4, "p2", prompt(NEW), {}, ["7"]]] };
  assert.deepEqual(runningPrompt(q, "p1"), prompt(OLD));
  assert.equal(runningPrompt(q, "p2"), null, "pending, not running");
  assert.equal(runningPrompt({}, "p1"), null);
  const r = new RunTracker();
  for (let k = 0; k < 20; k++) r.setPrompt(`p${k}`, prompt(OLD));
  assert.equal(r.prompts.size, 8);
  assert.ok(r.prompts.has("p19") && !r.prompts.has("p0"));
});

test("Stop stale acts only in Run (On Change) mode and when the option is on (default on)", () => {
  assert.equal(interruptsStale(undefined, "change"), true);
  assert.equal(interruptsStale(true, "change"), true);
  assert.equal(interruptsStale(false, "change"), false);
  for (const mode of ["disabled", "instant", "instant-idle", "instant-running", undefined]) {
    assert.equal(interruptsStale(true, mode), false, mode);
  }
});

// -------------------------------------------------------------------------- result

test("the Result is the nearest image output after the sampler, newest prompt first", () => {
  const { results } = editGraph(GRAPH, 2);
  const p = new ResultPicker();
  const img = (name) => ({ images: [{ filename: name, subfolder: "", type: "temp" }] });
  assert.equal(p.offer({ node: "9", output: img("copy.png"), prompt_id: "a" }, results), false, "not the edit");
  assert.equal(p.offer({ node: "11", output: img("big.png"), prompt_id: "a" }, results), true);
  assert.equal(p.image.filename, "big.png");
  assert.equal(p.offer({ node: "7", output: img("edit.png"), prompt_id: "a" }, results), true, "nearer wins");
  assert.equal(p.offer({ node: "11", output: img("big2.png"), prompt_id: "a" }, results), false);
  assert.equal(p.image.filename, "edit.png");
  assert.equal(p.offer({ node: "11", output: img("big3.png"), prompt_id: "b" }, results), true, "a newer prompt");
  assert.equal(p.offer({ node: "8", output: { images: [{ filename: "s.png" }] }, prompt_id: "b" }, results), true);
  assert.deepEqual(p.image, { filename: "s.png", subfolder: "", type: "output" });
  assert.equal(p.offer({ node: "7", output: { text: ["x"] }, prompt_id: "c" }, results), false, "no image");
});
