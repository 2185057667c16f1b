// RegionDrag region editor: input handling. Pointer and keyboard events on the editor's own
// elements become shapes-model commands; what a command refuses is shown in the status line.
//
// Tools: polygon (click corners), brush (drag strokes), points (click a handle point inside a
// handle region, then its target point; drag a point to move it), select (drag a region, a corner
// or a point). The same handlers serve the classic renderer and Nodes 2.0.
//
// Listeners sit on the editor's canvas and root, never on the document: under Nodes 2.0 (Vue
// nodes) the widget wrapper stops pointer events on their way up (front-end >= 1.36), or the
// node takes them for a node drag (1.35). So every pointer event that starts in the editor
// stops here (it must never drag or resize the node), and a drag keeps its events with
// setPointerCapture. Positions come from getBoundingClientRect, which includes any CSS transform
// the front-end puts on the node or the graph.

import { MESSAGES } from "./regiondrag_model.js";

const CLOSE_PX = 9; // screen px: a click this close to the first corner closes a polygon; points: grab radius

export class EditorInput {
  /**
   * `ed`: the editor, giving `model`, `canvas`, `root`, `tool`, `brushSize`, `setNotice(text)`,
   * `changed()` (controls and drawing), `render()` and `host` (`forwardPointer(e, phase)`,
   * `forwardWheel(e)`: hand middle-button pans and wheel zooms to the graph).
   */
  constructor(ed) {
    this.ed = ed;
    this.stroke = null; // brush stroke being dragged: {size, points}
    this.dragging = false; // a region or corner is being dragged
    this.dragStart = null;
    this.hover = null;
    this.panning = false;
    const c = ed.canvas;
    c.addEventListener("pointerdown", (e) => this.onPointerDown(e));
    c.addEventListener("pointermove", (e) => this.onPointerMove(e));
    c.addEventListener("pointerup", (e) => this.onPointerUp(e));
    c.addEventListener("pointercancel", (e) => this.onPointerUp(e));
    c.addEventListener("pointerleave", () => {
      this.hover = null;
      ed.render();
    });
    c.addEventListener("contextmenu", (e) => e.preventDefault());
    // Nothing that starts in the editor reaches the node or the graph (no node drag, no
    // resize, no graph selection box), toolbar included.
    for (const type of ["pointerdown", "pointermove", "pointerup", "mousedown", "mousemove", "mouseup", "click", "dblclick"]) {
      ed.root.addEventListener(type, (e) => {
        if (!this.panning) e.stopPropagation();
      });
    }
    ed.root.addEventListener("keydown", (e) => this.onKeyDown(e));
    ed.root.addEventListener("wheel", (e) => {
      e.preventDefault();
      e.stopPropagation();
      ed.host.forwardWheel(e);
    }, { passive: false });
  }

  /** Image pixel coordinates of a pointer event (pixel centres on integers). */
  toImage(e) {
    const { model, canvas } = this.ed;
    const r = canvas.getBoundingClientRect();
    return [((e.clientX - r.left) / r.width) * model.W - 0.5, ((e.clientY - r.top) / r.height) * model.H - 0.5];
  }

  /** Image px per screen px (the graph may be zoomed). */
  pxScale() {
    const r = this.ed.canvas.getBoundingClientRect();
    return r.width > 0 ? this.ed.model.W / r.width : 1;
  }

  capture(e) {
    try {
      this.ed.canvas.setPointerCapture(e.pointerId);
    } catch {
      /* synthetic event without an active pointer */
    }
  }

  onPointerDown(e) {
    const ed = this.ed, model = ed.model;
    if (e.button === 1) {
      this.panning = true;
      ed.host.forwardPointer(e, "down"); // middle button pans the graph
      return;
    }
    e.stopPropagation();
    if (e.button !== 0) return;
    e.preventDefault();
    ed.root.focus({ preventScroll: true });
    ed.setNotice(null);
    if (!model.canDraw()) {
      ed.changed();
      return;
    }
    const p = this.toImage(e);
    const tol = CLOSE_PX * this.pxScale();
    if (ed.tool === "polygon") {
      const d = model.draft;
      let problem = null;
      if (d.length >= 3 && Math.hypot(p[0] - d[0][0], p[1] - d[0][1]) <= tol) {
        problem = model.closePolygon();
      } else if (d.length && Math.hypot(p[0] - d[d.length - 1][0], p[1] - d[d.length - 1][1]) <= tol * 0.6) {
        if (d.length >= 3) problem = model.closePolygon(); // second click of a double-click
      } else {
        problem = model.addCorner(p);
      }
      if (problem) ed.setNotice(problem);
      return;
    }
    if (ed.tool === "brush") {
      const { room, problem } = model.strokeRoom();
      if (problem) {
        ed.setNotice(problem);
        return;
      }
      this.capture(e);
      this.stroke = { size: ed.brushSize, points: [p], room };
      ed.render();
      return;
    }
    if (ed.tool === "points") {
      // the target of the handle point just placed; else a point to drag; else a new handle point
      let problem = null;
      if (model.pendingPoint) {
        problem = model.completePoint(p);
      } else {
        const hit = model.pointAt(p, tol * 0.7);
        if (hit) {
          model.select(hit);
          this.startDrag(e, p, "point");
          return;
        }
        problem = model.beginPoint(p);
      }
      if (problem) ed.setNotice(problem);
      return;
    }
    // select: a point of a point pair, a corner of the selected polygon, else the topmost region
    // under the pointer
    const pt = model.pointAt(p, tol * 0.7);
    if (pt) {
      model.select(pt);
      this.startDrag(e, p, "point");
      return;
    }
    const k = model.vertexAt(p, tol);
    if (k >= 0) {
      this.startDrag(e, p, "vertex", k);
      return;
    }
    const hit = model.hitTest(p, tol * 0.5);
    model.select(hit);
    if (hit) this.startDrag(e, p, "move");
  }

  startDrag(e, p, kind, vertex = -1) {
    this.capture(e);
    this.dragging = this.ed.model.beginEdit(kind, vertex);
    this.dragStart = p;
  }

  onPointerMove(e) {
    const ed = this.ed, model = ed.model;
    if (this.panning) {
      ed.host.forwardPointer(e, "move");
      return;
    }
    e.stopPropagation();
    if (!model.canDraw()) return;
    const p = this.toImage(e);
    this.hover = p;
    if (this.stroke) {
      const pts = this.stroke.points;
      const [lx, ly] = pts[pts.length - 1];
      if (Math.hypot(p[0] - lx, p[1] - ly) >= Math.max(0.5, this.pxScale())) {
        if (pts.length < this.stroke.room) pts.push(p);
        else if (!this.stroke.full) {
          this.stroke.full = true; // the stroke ends here: the region holds no more points
          ed.setNotice(MESSAGES.brushFull);
        }
      }
    } else if (this.dragging) {
      model.updateEdit(p[0] - this.dragStart[0], p[1] - this.dragStart[1]);
      return; // the model's change redraws
    }
    ed.render();
  }

  onPointerUp(e) {
    const ed = this.ed, model = ed.model;
    if (this.panning) {
      this.panning = false;
      ed.host.forwardPointer(e, "up");
      return;
    }
    e.stopPropagation();
    if (this.stroke) {
      const { size, points } = this.stroke;
      this.stroke = null;
      const problem = model.addStroke({ size, points });
      if (problem) ed.setNotice(problem);
    } else if (this.dragging) {
      this.dragging = false;
      const problem = model.commitEdit();
      if (problem) ed.setNotice(problem);
    }
    try {
      ed.canvas.releasePointerCapture(e.pointerId);
    } catch {
      /* not captured */
    }
  }

  onKeyDown(e) {
    const ed = this.ed, model = ed.model;
    const handled = () => {
      e.preventDefault();
      e.stopPropagation(); // keep Delete/Backspace/Enter from reaching the graph
    };
    if (e.target === ed.jsonArea) {
      e.stopPropagation(); // typing in the JSON text: keys are text, not graph or editor commands
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return; // Ctrl+Z etc. stay ComfyUI's (its undo restores the shapes too)
    switch (e.key) {
      case "Enter": {
        handled();
        const problem = model.finishOpen();
        if (problem) ed.setNotice(problem);
        break;
      }
      case "Escape":
        if (model.cancel()) {
          handled();
          ed.setNotice(null);
        }
        break;
      case "Backspace":
      case "Delete":
        handled();
        if (!model.removeCorner()) model.deleteSelected();
        break;
    }
  }
}
