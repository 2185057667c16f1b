// RegionDrag region editor: the ComfyUI binding. Puts the editor (regiondrag_panel.js) on every
// RegionMaskPair node, in the classic LiteGraph renderer and under Nodes 2.0 (Vue nodes).
//
// The node's `shapes` STRING widget keeps the regions as JSON (format: regiondrag_core/shapes.py,
// coordinates in image pixels, pixel centres on integers); the workflow saves it and the backend
// reads it. The editor is a view of that text. The widget is hidden (the JSON button shows the text
// in the editor);
// text the editor cannot read is left untouched for the backend to report, and the editor says so.
//
// Nodes 2.0 notes: the node body is not drawn through onDrawForeground (so the connected image is
// also polled), the widget wrapper stops or takes pointer events (regiondrag_input.js keeps them
// on the editor's own elements), and the body is laid out by content (sizes through
// getMinHeight/getHeight, the editor's height from its width and the image's aspect ratio).
//
// Live editing (regiondrag_live.js): each write of the shapes widget is one finished gesture, and
// the binding tells the front-end's change tracker at once (the editor keeps its pointer events to
// itself, so the window's mouseup that the tracker listens to never comes), which is what the
// "Run (On Change)" queue mode re-queues on. With that mode on, this tab's prompt that carries
// other shapes than the node has now is interrupted, by its id, once its RegionDrag KSampler is
// denoising ("Stop stale", on by default): the front-end queues the newest drawing as soon as the
// queue is empty. The "Result" layer shows the edit the graph made, taken from the front-end's
// "executed" events of the nodes after the sampler, and its latent previews during the run.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";
import { RegionEditor } from "./regiondrag_panel.js";
import { editGraph, interruptsStale, ResultPicker, RunTracker, runningPrompt } from "./regiondrag_live.js";

const NODE_TYPE = "RegionMaskPair";
const CSS_URL = new URL("../css/regiondrag_editor.css", import.meta.url).href;
const SOURCE_POLL_MS = 300;
const MIN_HEIGHT = 240;
// node.properties keys of the editor's toggles, and their defaults
const OPTIONS = {
  result: ["regiondrag_show_result", false],
  stopStale: ["regiondrag_stop_stale", true],
};
const RUN_EVENTS = ["execution_start", "executing", "progress", "execution_success", "execution_error",
  "execution_interrupted"];

const runs = new RunTracker(); // this tab's running prompt, for every editor
const bindings = new Set();
let listening = false;

/** Read the running prompt from the server's queue (for the stale test), then let the editors look. */
async function readRunningPrompt(promptId) {
  try {
    const res = await api.fetchApi("/queue");
    runs.setPrompt(promptId, runningPrompt(await res.json(), promptId));
  } catch {
    return; // no queue to read: nothing is called stale
  }
  for (const b of bindings) b.stopStaleRun();
}

/** Follow the front-end's execution events once, for every editor on the page. */
function listenToRuns() {
  if (listening) return;
  listening = true;
  for (const type of RUN_EVENTS) {
    api.addEventListener(type, (e) => {
      runs.onEvent(type, e.detail);
      if (type === "execution_start" && e.detail?.prompt_id && bindings.size && queueMode() === "change") {
        readRunningPrompt(e.detail.prompt_id); // only "Run (On Change)" interrupts stale runs
      }
      for (const b of bindings) b.onRunEvent(type);
    });
  }
  api.addEventListener("executed", (e) => {
    for (const b of bindings) b.onGraphExecuted(e.detail);
  });
  api.addEventListener("b_preview_with_metadata", (e) => {
    for (const b of bindings) b.onLatentPreview(e.detail);
  });
}

/** The front-end's auto-queue mode: "disabled", "change", "instant" (or 1.58's "instant-idle",
 * "instant-running"). The queue button's store (1.3x+), else the legacy menu's switch. */
export function queueMode() {
  const qs = app.extensionManager?.queueSettings;
  if (typeof qs?.mode === "string") return qs.mode;
  return app.ui?.autoQueueEnabled ? app.ui.autoQueueMode || "disabled" : "disabled";
}

/**
 * Tell the front-end's change tracker that the graph changed now (its undo history, the
 * workflow's modified mark and the "Run (On Change)" queue): a before/after-change pair, as the
 * canvas emits around its own edits; where a front-end has no such events, its tracker directly.
 */
function graphChanged() {
  const c = app.canvas;
  if (typeof c?.emitBeforeChange === "function" && typeof c.emitAfterChange === "function") {
    c.emitBeforeChange();
    c.emitAfterChange();
    return;
  }
  const t = app.extensionManager?.workflow?.activeWorkflow?.changeTracker;
  (t?.captureCanvasState ?? t?.checkState)?.call(t);
}

/** A view of a LiteGraph graph for regiondrag_live.js: {type(id), targets(id)}. */
function graphView(graph) {
  const get = (id) => graph?.getNodeById?.(id) ?? graph?.getNodeById?.(Number(id)) ?? null;
  return {
    type: (id) => get(id)?.type ?? null,
    targets(id) {
      const n = get(id), out = [];
      (n?.outputs || []).forEach((_, slot) => {
        try {
          for (const t of n.getOutputNodes(slot) || []) out.push(t.id);
        } catch {
          /* a link into a subgraph's boundary: not followed */
        }
      });
      return out;
    },
  };
}

/** `/view` URL of an image an output node reported ({filename, subfolder, type}). */
function viewUrl(img) {
  const q = new URLSearchParams({ filename: img.filename, type: img.type || "output", subfolder: img.subfolder || "" });
  return api.apiURL(`/view?${q}`);
}

function chainCallback(object, property, callback) {
  const original = object[property];
  object[property] = function (...args) {
    const r = original?.apply(this, args);
    callback.apply(this, args);
    return r;
  };
}

function ensureStylesheet() {
  if (document.getElementById("regiondrag-editor-css")) return;
  const link = document.createElement("link");
  link.id = "regiondrag-editor-css";
  link.rel = "stylesheet";
  link.href = CSS_URL;
  document.head.appendChild(link);
}

/** `/view` URL of a LoadImage-style widget value ("sub/name.png", optionally "name.png [output]"). */
export function viewUrlForFileValue(value) {
  let name = String(value).trim();
  let type = "input";
  const m = name.match(/^(.*) \[(input|output|temp)\]$/);
  if (m) {
    name = m[1];
    type = m[2];
  }
  const slash = name.lastIndexOf("/");
  const subfolder = slash >= 0 ? name.slice(0, slash) : "";
  const filename = slash >= 0 ? name.slice(slash + 1) : name;
  if (!filename) return null;
  const q = new URLSearchParams({ filename, type, subfolder });
  return api.apiURL(`/view?${q}`);
}

/**
 * Hide a widget, keeping it serialised: `hidden` for the classic renderer (and its DOM element),
 * `options.hidden` for Nodes 2.0, and a zero size for front-ends that still lay out hidden widgets
 * (1.27).
 */
function hideWidget(widget) {
  widget.hidden = true;
  widget.options = widget.options || {};
  widget.options.hidden = true;
  widget.computeSize = () => [0, -4];
}

/** The URL of the image file of the node connected to `node`'s image input, or null. */
function sourceUrl(node) {
  const slot = node.findInputSlot?.("image") ?? -1;
  if (slot < 0 || node.inputs?.[slot]?.link == null) return null;
  let src = null;
  try {
    src = node.getInputNode(slot);
  } catch {
    return null;
  }
  const w = src?.widgets?.find((x) => x.name === "image" && typeof x.value === "string");
  if (!w || !w.value) return null;
  return viewUrlForFileValue(w.value);
}

class EditorBinding {
  constructor(node, shapes) {
    this.node = node;
    this.shapes = shapes;
    this.linkUrl = undefined;
    this.unannounced = false; // the widget holds text the change tracker has not been told about
    this.picker = new ResultPicker();
    if (!node.properties) node.properties = {};
    const binding = this;
    this.editor = new RegionEditor({
      brushSize: node.properties.regiondrag_brush_size,
      setBrushSize(d) {
        node.properties.regiondrag_brush_size = d;
      },
      writeText(text, options) {
        binding.writeText(text, options);
      },
      option(name) {
        const [key, dflt] = OPTIONS[name];
        const v = node.properties?.[key];
        return typeof v === "boolean" ? v : dflt;
      },
      setOption(name, on) {
        node.properties[OPTIONS[name][0]] = !!on;
        binding.editor.changed();
      },
      shapesLinked() {
        const linked = node.inputs?.find((i) => i.name === "shapes" || i.widget?.name === "shapes");
        return linked?.link != null;
      },
      forwardPointer(e, phase) {
        const c = app.canvas;
        const fn = { down: c?.processMouseDown, move: c?.processMouseMove, up: c?.processMouseUp }[phase];
        fn?.call(c, e);
      },
      forwardWheel(e) {
        app.canvas?.canvas?.dispatchEvent(new WheelEvent(e.type, e));
      },
    });
    const root = this.editor.root;
    this.editor.loadText(shapes.value, true);
    this.poll = setInterval(() => {
      if (this.destroyed) return;
      this.adoptStaleElement();
      this.placed();
      this.checkSource();
      if (shapes.value !== this.editor.lastText) this.editor.loadText(shapes.value);
    }, SOURCE_POLL_MS);
    this.widget = node.addDOMWidget("region_editor", "regiondrag_editor", root, {
      serialize: false,
      hideOnZoom: true,
      getMinHeight: () => MIN_HEIGHT,
      getHeight: () => this.preferredHeight(),
    });
    this.widget.serialize = false;
    new ResizeObserver(() => this.placed()).observe(root);
    bindings.add(this);
    listenToRuns();
  }

  /**
   * The editor's text into the shapes widget. A finished change (not `typing` in the JSON text)
   * is announced to the change tracker once, then may stop the run it made stale.
   */
  writeText(text, { typing = false } = {}) {
    if (this.shapes.value !== text) {
      this.shapes.value = text;
      this.node.setDirtyCanvas?.(true, true);
      this.unannounced = true;
    }
    if (typing || !this.unannounced) return;
    this.unannounced = false;
    graphChanged();
    this.stopStaleRun();
  }

  /** What this node feeds: its RegionDrag KSamplers and the nodes after them (regiondrag_live.js). */
  edit() {
    return editGraph(graphView(this.node.graph ?? app.graph), this.node.id);
  }

  /** With "Run (On Change)" and "Stop stale": interrupt this tab's prompt while one of this node's
   * samplers is denoising shapes the node no longer has (called after each write, at each step of
   * a run and when the running prompt has been read). By prompt id, so another client's prompt is
   * never touched. */
  stopStaleRun() {
    if (this.destroyed || !runs.running || !interruptsStale(this.editor.option("stopStale"), queueMode())) return;
    const prompt = runs.staleRun(this.edit().samplers, this.node.id, this.shapes.value);
    if (!prompt) return;
    api.fetchApi("/interrupt", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt_id: prompt }) }).catch((err) => {
      console.warn("RegionDrag editor: could not interrupt the stale run", err);
    });
  }

  onRunEvent(type) {
    if (type === "execution_start") this.editor.setRunning(true);
    else if (type === "execution_success" || type === "execution_error" || type === "execution_interrupted") {
      this.editor.setRunning(!!runs.running);
    } else if (type === "executing" || type === "progress") {
      this.stopStaleRun();
    }
  }

  /** An output node reported images: the nearest one after this node's sampler is the Result. */
  onGraphExecuted(detail) {
    if (this.destroyed || !detail?.output?.images?.length) return;
    if (this.picker.offer(detail, this.edit().results)) this.editor.setResult(viewUrl(this.picker.image));
  }

  /** A latent preview of this node's sampler (front-ends that tell the node): on the Result layer
   * while the run goes on, as the sampler node shows it. */
  onLatentPreview(detail) {
    if (this.destroyed || !detail?.blob || !this.editor.option("result")) return;
    const id = detail.displayNodeId ?? detail.nodeId;
    if (id == null || !this.edit().samplers.has(String(id))) return;
    this.editor.setResult(URL.createObjectURL(detail.blob), true);
  }

  /**
   * Nodes 2.0 (1.35) keeps a node's widget component when a new graph has a node of the same id
   * (graph cleared, another workflow loaded), and with it the removed node's editor element: put
   * this editor in its place.
   */
  adoptStaleElement() {
    const root = this.editor.root;
    if (root.isConnected || !window.LiteGraph?.vueNodesMode) return;
    const nodeEl = document.querySelector(`[data-node-id="${CSS.escape(String(this.node.id))}"]`);
    const stale = nodeEl?.querySelector(".regiondrag-editor[data-removed]");
    if (stale && stale !== root) stale.replaceWith(root);
  }

  /** Where the element went: Nodes 2.0 puts it in the node's own DOM, the classic renderer in a
   * `.dom-widget` overlay sized by the widget's height. Switches the Nodes 2.0 layout on or off. */
  placed() {
    const root = this.editor.root;
    if (!root.isConnected) return;
    const nodeEl = root.closest("[data-node-id]");
    const inVue = !root.closest(".dom-widget") && !!nodeEl;
    // The node's output image is its input image, which the editor shows: the classic renderer
    // skips it (onDrawBackground), Nodes 2.0 hides it by this mark (CSS).
    if (inVue && !nodeEl.hasAttribute("data-regiondrag-node")) nodeEl.setAttribute("data-regiondrag-node", "");
    if (inVue !== this.inVue) {
      this.inVue = inVue;
      root.classList.toggle("rd-in-vue-node", inVue);
      this.updateAspect();
      this.editor.layout();
    }
  }

  updateAspect() {
    const { W, H } = this.editor.model;
    this.editor.stage.style.aspectRatio = this.inVue && W && H ? `${W} / ${H}` : "";
  }

  /** Height for the classic layout: the image's aspect at the node's width, toolbar and status added. */
  preferredHeight() {
    const { W, H } = this.editor.model;
    const w = Math.max(100, (this.node.size?.[0] ?? 420) - 20);
    return Math.max(MIN_HEIGHT, Math.round(110 + (W && H ? (w * H) / W : w * 0.75)));
  }

  /** Follow the connected LoadImage's file (called on draw, on connection changes, and polled). */
  checkSource() {
    const url = sourceUrl(this.node);
    if (url === this.linkUrl) return;
    this.linkUrl = url;
    if (url) this.editor.setBackground(url);
  }

  onExecuted(message) {
    const img = message?.images?.[0];
    if (img?.filename) this.editor.setBackground(viewUrl(img));
  }

  destroy() {
    this.destroyed = true;
    bindings.delete(this);
    this.editor.root.dataset.removed = "1";
    clearInterval(this.poll);
    this.editor.destroy();
  }
}

function attachEditor(node) {
  const shapes = node.widgets?.find((w) => w.name === "shapes");
  if (!shapes) {
    console.warn("RegionDrag editor: RegionMaskPair has no 'shapes' widget; editor not added.");
    return;
  }
  ensureStylesheet();
  // The JSON stays in the (serialised) shapes widget; the editor is its view.
  hideWidget(shapes);
  const binding = new EditorBinding(node, shapes);
  node.regionBinding = binding;
  node.regionEditor = binding.editor;
  chainCallback(shapes, "callback", () => binding.editor.loadText(shapes.value));
  binding.editor.model.subscribe(() => binding.updateAspect());
  const [w, h] = node.size;
  node.setSize([Math.max(w, 420), Math.max(h, 520)]);
}

app.registerExtension({
  name: "RegionDrag.RegionEditor",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE_TYPE) return;
    // The node's ui image is its input image: the editor shows it, not a preview below the editor.
    nodeType.prototype.onDrawBackground = function () {};
    chainCallback(nodeType.prototype, "onNodeCreated", function () {
      attachEditor(this);
    });
    chainCallback(nodeType.prototype, "onConfigure", function () {
      const b = this.regionBinding;
      if (!b) return;
      b.editor.setBrushSize(this.properties?.regiondrag_brush_size);
      b.editor.model.clearHistory();
      b.editor.loadText(b.shapes.value, true);
      b.editor.changed(); // the toggles kept in the node's properties
    });
    chainCallback(nodeType.prototype, "onExecuted", function (message) {
      this.regionBinding?.onExecuted(message);
    });
    // Classic renderer: look at the connected image whenever the node is drawn (Nodes 2.0 never
    // calls this; the binding polls as well).
    chainCallback(nodeType.prototype, "onDrawForeground", function () {
      this.regionBinding?.checkSource();
    });
    chainCallback(nodeType.prototype, "onConnectionsChange", function () {
      setTimeout(() => this.regionBinding?.checkSource(), 0);
    });
    chainCallback(nodeType.prototype, "onRemoved", function () {
      this.regionBinding?.destroy();
    });
  },
});
