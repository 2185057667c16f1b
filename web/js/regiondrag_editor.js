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
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";
import { RegionEditor } from "./regiondrag_panel.js";

const NODE_TYPE = "RegionMaskPair";
const CSS_URL = new URL("../css/regiondrag_editor.css", import.meta.url).href;
const SOURCE_POLL_MS = 300;
const MIN_HEIGHT = 240;

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
    if (!node.properties) node.properties = {};
    this.editor = new RegionEditor({
      brushSize: node.properties.regiondrag_brush_size,
      setBrushSize(d) {
        node.properties.regiondrag_brush_size = d;
      },
      writeText(text) {
        shapes.value = text;
        node.setDirtyCanvas?.(true, true);
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
    return Math.max(MIN_HEIGHT, Math.round(90 + (W && H ? (w * H) / W : w * 0.75)));
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
    if (!img?.filename) return;
    const q = new URLSearchParams({ filename: img.filename, type: img.type || "output", subfolder: img.subfolder || "" });
    this.editor.setBackground(api.apiURL(`/view?${q}`));
  }

  destroy() {
    this.destroyed = true;
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
