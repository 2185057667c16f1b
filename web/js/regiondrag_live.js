// RegionDrag region editor: live editing with the front-end's "Run (On Change)" queue mode. Plain
// logic, no DOM and no ComfyUI (the binding, regiondrag_editor.js, feeds it the front-end's api
// events and a view of the graph); `node --test tests/js/` runs it (tests/js/live.test.mjs).
//
// * RunTracker follows this tab's running prompt (the server sends execution events only to the
//   client that queued the prompt), which node it is executing and the prompt itself (read from the
//   server's queue), and names a stale run: one of our prompts whose RegionMaskPair shapes differ
//   from the node's shapes now, while a RegionDrag KSampler fed by that node is denoising. Never
//   while DDPM Invert-and-Cache runs: an interrupted inversion is not cached, so the next run would
//   redo it; an interrupted sampler leaves the inversion in ComfyUI's cache. The prompt is compared,
//   not the time it was queued: the front-end's auto-queue can queue a prompt made before a gesture
//   just after it (its queue count comes from the server a moment late).
// * editGraph() finds, downstream of the editor's node, the RegionDrag KSamplers it feeds and the
//   nodes after them (the decoder, the Preview/Save Image that shows the edit), with distances.
// * sameShapes() tells a rewrite of the same shapes (nothing to write) from a change.
// * ResultPicker keeps the image to show as the editor's "Result" layer: from the nearest image
//   output after the sampler, newest prompt first.

import { parseShapes } from "./regiondrag_geometry.js";

export const SAMPLER_TYPE = "RegionDragKSampler";

/**
 * Whether two shapes texts say the same to the node (same size, same pairs, coordinates equal),
 * however they are written (spacing, key order, "" or no pairs): the editor then keeps the text as
 * it is instead of writing it again, which would re-run the graph for nothing.
 */
export function sameShapes(a, b) {
  if (a === b) return true;
  const ra = parseShapes(a), rb = parseShapes(b);
  if (!ra.ok || !rb.ok) return false;
  const key = (r) => (r.pairs.length ? JSON.stringify([r.width, r.height, r.pairs]) : "");
  return key(ra) === key(rb);
}

/**
 * Breadth-first distances from `start` along `graph.targets(id)` (ids of the nodes fed by node id),
 * `start` excluded: Map id -> hops. Ids are compared as strings.
 */
export function downstream(graph, start) {
  const dist = new Map();
  let frontier = [String(start)];
  const seen = new Set(frontier);
  for (let d = 1; frontier.length; d++) {
    const next = [];
    for (const id of frontier) {
      for (const t of graph.targets(id) || []) {
        const k = String(t);
        if (seen.has(k)) continue;
        seen.add(k);
        dist.set(k, d);
        next.push(k);
      }
    }
    frontier = next;
  }
  return dist;
}

/**
 * What the editor's node `start` feeds: `samplers` (Set of RegionDrag KSampler ids downstream of it)
 * and `results` (Map id -> hops from the nearest of those samplers, for every node after them).
 * `graph`: {type(id), targets(id)}.
 */
export function editGraph(graph, start) {
  const samplers = new Set();
  for (const id of downstream(graph, start).keys()) if (graph.type(id) === SAMPLER_TYPE) samplers.add(id);
  const results = new Map();
  for (const s of samplers) {
    for (const [id, d] of downstream(graph, s)) {
      if (samplers.has(id)) continue;
      if (!results.has(id) || results.get(id) > d) results.set(id, d);
    }
  }
  return { samplers, results };
}

/** The node id an "executing"/"progress" event names: a bare id (front-ends 1.3x+), or {node}. */
function eventNode(detail) {
  const node = detail !== null && typeof detail === "object" ? detail.node ?? detail.display_node : detail;
  return node == null ? null : String(node);
}

/** The API-format prompt of a `/queue` answer's running entry with id `promptId`, or null. */
export function runningPrompt(queue, promptId) {
  for (const item of queue?.queue_running || []) {
    if (Array.isArray(item) && item[1] === promptId && item[2] && typeof item[2] === "object") return item[2];
  }
  return null;
}

/** Follows this tab's running prompt from the front-end's api events. */
export class RunTracker {
  constructor() {
    this.running = null; // {promptId, node, interrupted}
    this.prompts = new Map(); // prompt id -> its API-format prompt (the last few)
  }

  /** The running prompt's content (from the server's queue), kept for the stale test. */
  setPrompt(promptId, prompt) {
    if (!promptId || !prompt) return;
    this.prompts.set(promptId, prompt);
    while (this.prompts.size > 8) this.prompts.delete(this.prompts.keys().next().value);
  }

  /** Feed one api event (`type`, its `detail`). */
  onEvent(type, detail) {
    switch (type) {
      case "execution_start":
        this.running = { promptId: detail?.prompt_id ?? null, node: null, interrupted: false };
        break;
      case "executing": {
        const node = eventNode(detail);
        if (node == null) this.running = null; // the prompt is done
        else if (this.running) this.running.node = node;
        else this.running = { promptId: detail?.prompt_id ?? null, node, interrupted: false };
        break;
      }
      case "progress": {
        const node = eventNode(detail);
        const id = detail?.prompt_id ?? null;
        if (!this.running || (id && this.running.promptId && id !== this.running.promptId)) {
          this.running = { promptId: id, node, interrupted: false };
        } else {
          if (id) this.running.promptId = id;
          if (node != null) this.running.node = node;
        }
        break;
      }
      case "execution_success":
      case "execution_error":
      case "execution_interrupted":
        if (!this.running || !detail?.prompt_id || this.running.promptId === detail.prompt_id) this.running = null;
        break;
    }
  }

  /**
   * The prompt id to interrupt: our running prompt while one of `samplers` (ids) is executing, when
   * its RegionMaskPair `owner` had other shapes than `text` (the node's shapes now); once per
   * prompt; else null. A prompt not read yet, or whose shapes came through a link, is not stale.
   */
  staleRun(samplers, owner, text) {
    const r = this.running;
    if (!r || !r.promptId || r.node == null || r.interrupted || !samplers.has(r.node)) return null;
    const node = this.prompts.get(r.promptId)?.[String(owner)];
    const shapes = node?.inputs?.shapes;
    if (node?.class_type !== "RegionMaskPair" || typeof shapes !== "string" || shapes === text) return null;
    r.interrupted = true;
    return r.promptId;
  }
}

/** The "Stop stale" policy: interrupt only where the front-end re-queues the newest drawing by
 * itself ("Run (On Change)"), and only when the node's option is on (the default). */
export function interruptsStale(enabled, queueMode) {
  return enabled !== false && queueMode === "change";
}

/**
 * The image the editor's "Result" layer shows: the first image of the nearest node after the
 * sampler that reported images, for the newest prompt seen.
 */
export class ResultPicker {
  constructor() {
    this.image = null; // {filename, subfolder, type}
    this.promptId = null;
    this.hops = Infinity;
  }

  /** An "executed" event's detail ({node, output, prompt_id}) with `results` (Map id -> hops): true
   * when it changes the image to show. */
  offer(detail, results) {
    const node = detail?.display_node ?? detail?.node;
    const img = detail?.output?.images?.[0];
    if (node == null || !img?.filename || !results.has(String(node))) return false;
    const hops = results.get(String(node));
    const prompt = detail.prompt_id ?? null;
    if (prompt === this.promptId && this.image && hops > this.hops) return false;
    this.promptId = prompt;
    this.hops = hops;
    this.image = { filename: img.filename, subfolder: img.subfolder || "", type: img.type || "output" };
    return true;
  }
}
