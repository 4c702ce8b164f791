// FewClick labeling core: extreme points -> mask -> corrective clicks, for one image at a time.
//
// Reusable on purpose: the stand-alone page (app.js, `fewclick serve`) and the SageMaker Ground Truth
// custom task template (crowd-form) both embed this file. It therefore knows nothing about image lists,
// saving or where images come from: the host page passes a small config object and an image, and reads
// the objects back with `exportObjects()`. Plain ES module, no dependencies, no build step.
//
// Contract: POST {apiBaseUrl}/segment (see fewclick_contract/api.py). Masks arrive as COCO compressed
// RLE (column-major) and are decoded here.

export const CLICK_COLORS = Object.freeze({
  positive: "#2ecc40",
  negative: "#ff4136",
  boundary: "#1e90ff",
  extreme: "#ffffff",
});
// Mask colours avoid the click colours so a dot never disappears into its own mask.
export const OBJECT_COLORS = Object.freeze([
  "#ff9800", "#00e5ff", "#ff00c8", "#c6ff00", "#b388ff", "#ffd600", "#ff6e40", "#18ffff",
]);
const RETRYABLE_STATUS = new Set([0, 429, 502, 503, 504]);
// The API refuses more corrective clicks per object (fewclick_contract.api.MAX_CLICKS; a test keeps
// the two equal): the UI stops at the limit instead of sending a request that can only fail.
export const MAX_CORRECTIVE_CLICKS = 100;
// The stand-alone page's way out of a 401/403; a host page with another one passes `authHint`.
const DEFAULT_AUTH_HINT = "Open the link that carries the token.";
const HISTORY_LIMIT = 500;
const DRAG_THRESHOLD_PX = 5;
// Two extreme points this close mark one side of the object twice (a repeated or slipped click): the
// box they span, and so the mask, would be degenerate.
const MIN_EXTREME_DISTANCE_PX = 2;
// However the view was zoomed or panned, this much of the image stays inside the stage to click on.
const MIN_VISIBLE_PX = 48;
// The ring around a click the mask does not follow (`missedClicks` of the API's answer).
const MISSED_RING_PX = 12;
const MISSED_RING_COLOR = "#ffd600";

// ---------------------------------------------------------------------------------------------
// COCO RLE

/** Decode pycocotools' compressed counts string (rleFrString) into run lengths. */
export function decodeRleCounts(s) {
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0;
    let k = 0;
    let more = 1;
    while (more) {
      if (p >= s.length) throw new Error("truncated RLE counts");
      const c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p += 1;
      k += 1;
      if (!more && c & 0x10) x |= -1 << (5 * k); // sign-extend: counts after the 2nd are deltas
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

/** A COCO RLE `{size: [h, w], counts}` -> `{width, height, data}` with data row-major 0/1 bytes. */
export function rleToMask(rle) {
  const [height, width] = rle.size;
  const data = new Uint8Array(width * height);
  const counts = typeof rle.counts === "string" ? decodeRleCounts(rle.counts) : rle.counts;
  let index = 0; // column-major position: COCO runs go down each column first
  let value = 0;
  for (const run of counts) {
    if (run < 0 || index + run > width * height) throw new Error("RLE counts do not fit the mask size");
    if (value) {
      for (let i = index; i < index + run; i += 1) {
        const row = i % height;
        const col = (i - row) / height;
        data[row * width + col] = 1;
      }
    }
    index += run;
    value ^= 1;
  }
  return { width, height, data };
}

// ---------------------------------------------------------------------------------------------
// API client

export class ApiError extends Error {
  constructor(status, code, message, retryAfterS = null, authHint = DEFAULT_AUTH_HINT) {
    super(message);
    this.name = "ApiError";
    this.status = status; // 0 = the server could not be reached
    this.code = code;
    this.retryAfterS = retryAfterS;
    this.authHint = authHint; // what a refused labeler can do: the page that made the client knows
  }

  get retryable() {
    return RETRYABLE_STATUS.has(this.status);
  }

  /** What a labeler should read: the server's message, plus what to do about it. */
  describe() {
    switch (this.status) {
      case 0:
        return `Cannot reach the segmentation server (${this.message}).`;
      case 401:
      case 403:
        return `Not authorised (${this.status} ${this.code}): ${this.message}. ${this.authHint}`;
      case 413:
        return `Too large (${this.code}): ${this.message}`;
      case 429:
        return "Too many requests: the server is throttling.";
      case 502:
      case 503:
      case 504:
        return `The model is unavailable (${this.status} ${this.code}): ${this.message}`;
      default:
        return `${this.code || "Error"} (${this.status}): ${this.message}`;
    }
  }
}

/** POST /segment with auth; every failure becomes an ApiError (never a silent one). */
export class SegmentClient {
  constructor({ apiBaseUrl = "/v1", getToken = () => null, fetchImpl = null, authHint = DEFAULT_AUTH_HINT } = {}) {
    this.apiBaseUrl = apiBaseUrl.replace(/\/+$/, "");
    this.getToken = getToken;
    this.authHint = authHint;
    this.fetch = fetchImpl || globalThis.fetch.bind(globalThis);
  }

  async segment(body) {
    const headers = { "Content-Type": "application/json" };
    const token = await this.getToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await this.fetch(`${this.apiBaseUrl}/segment`, {
        method: "POST",
        headers,
        body: JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiError(0, "NETWORK", String(err && err.message ? err.message : err));
    }
    let payload = null;
    try {
      payload = await response.json();
    } catch {
      payload = null;
    }
    if (!response.ok) {
      const error = payload && payload.error ? payload.error : {};
      const retryAfter = Number.parseFloat(response.headers.get("Retry-After"));
      throw new ApiError(
        response.status,
        error.code || `HTTP_${response.status}`,
        error.message || (payload && payload.message) || response.statusText || "request failed",
        Number.isFinite(retryAfter) ? retryAfter : null,
        this.authHint,
      );
    }
    if (!payload || !payload.mask || !payload.sessionId) {
      throw new ApiError(502, "BAD_RESPONSE", "the server answered 200 without a mask");
    }
    return payload;
  }
}

// ---------------------------------------------------------------------------------------------
// Document model: immutable snapshots, so undo/redo is a pointer move and masks are cached by state.

function freezeObject(id, label, points = []) {
  return Object.freeze({ id, label, points: Object.freeze(points.map((p) => Object.freeze({ ...p }))) });
}

/** The request-relevant state of an object: masks are cached under this. */
function objectKey(obj) {
  return `${obj.id}|${obj.points.map((p) => `${p.x},${p.y},${p.type}`).join(";")}`;
}

function docKeys(doc) {
  return new Set(doc.objects.map(objectKey));
}

/** What the ringed clicks are and what to do about them, by the kinds among them. */
function missedHint(obj, missed) {
  const count = (type) => missed.filter((i) => obj.points[4 + i].type === type).length;
  const clicks = (n, what) => `${n} ${what} click${n === 1 ? "" : "s"}`;
  const [boundary, positive, negative] = [count("boundary"), count("positive"), count("negative")];
  const parts = [];
  if (boundary) parts.push(`${clicks(boundary, "boundary")} off the mask's edge`);
  if (positive) parts.push(`${clicks(positive, "positive")} outside the mask`);
  if (negative) parts.push(`${clicks(negative, "negative")} inside it`);
  let advice = "";
  if (boundary) {
    advice += "Beside a ringed boundary click, add a positive click where the object should reach it, " +
      "or a negative one where the mask should give way. ";
  }
  // Region clicks are enforced where they were made, so one is missed only where a later click disagrees.
  if (positive || negative) advice += "A later click overrides a ringed positive or negative one: undo one of the two. ";
  return `Ringed: ${parts.join(", ")}. ${advice}Or undo (Ctrl-Z).`;
}

function isComplete(obj) {
  return obj.points.length >= 4;
}

export class History {
  constructor(initial) {
    this.current = initial;
    this.undoStack = [];
    this.redoStack = [];
  }

  push(doc) {
    this.undoStack.push(this.current);
    if (this.undoStack.length > HISTORY_LIMIT) this.undoStack.shift();
    this.current = doc;
    this.redoStack = [];
  }

  undo() {
    if (!this.undoStack.length) return false;
    this.redoStack.push(this.current);
    this.current = this.undoStack.pop();
    return true;
  }

  redo() {
    if (!this.redoStack.length) return false;
    this.undoStack.push(this.current);
    this.current = this.redoStack.pop();
    return true;
  }
}

// ---------------------------------------------------------------------------------------------
// The labeler

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== false && value !== null && value !== undefined) node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) node.append(child);
  return node;
}

function hexToRgb(hex) {
  const n = Number.parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

const NON_TEXT_INPUTS = new Set(["range", "checkbox", "radio", "button", "submit", "reset", "color"]);

/** Focus is in a field that takes text: shortcuts must leave its keys (Ctrl-Z included) alone. */
export function isTextEntry(target) {
  if (!target) return false;
  if (target.isContentEditable || target.tagName === "TEXTAREA") return true;
  return target.tagName === "INPUT" && !NON_TEXT_INPUTS.has(target.type);
}

const TAKES_SPACE = "button, a[href], input, select, textarea, summary, " +
  "[role=button], [role=checkbox], [role=switch], [role=tab], [role=menuitem], [role=option]";

/** Focus is on a control whose own action is Space (press a button, tick a box, open a list). */
function takesSpace(target) {
  return Boolean(target && typeof target.closest === "function" && target.closest(TAKES_SPACE));
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

/**
 * Create a labeler inside `root`.
 *
 * config:
 *   apiBaseUrl      base of the segment API ("/v1", or the deployed stage URL)
 *   getToken()      returns (or resolves to) the Bearer token, or null
 *   labels          class labels offered per object (default: object, person, car, animal)
 *   output          API output kinds (default ["rle"])
 *   maxAutoRetries  automatic retries of a busy/unreachable server before asking (default 2)
 *   maxRetryDelayS  cap on Retry-After waits (default 10)
 *   onChange(info)  called after every change: {dirty, objects, complete, pending, canUndo, canRedo}
 *   keyTarget       where keyboard shortcuts listen (default: window)
 *   fetchImpl       fetch to use (tests, or a signing fetch)
 *   authHint        what to do after a 401/403 (default: open the link that carries the token)
 */
export function createLabeler(root, config = {}) {
  return new Labeler(root, config);
}

export class Labeler {
  constructor(root, config = {}) {
    this.config = {
      apiBaseUrl: "/v1",
      getToken: () => null,
      labels: ["object", "person", "car", "animal"],
      output: ["rle"],
      maxAutoRetries: 2,
      maxRetryDelayS: 10,
      onChange: () => {},
      keyTarget: window,
      ...config,
    };
    if (!this.config.labels.length) this.config.labels = ["object"];
    this.client = new SegmentClient(this.config);
    this.root = root;
    this.opacity = 0.5;
    this.boundaryMode = false;
    this.view = { scale: 1, tx: 0, ty: 0 };
    this.viewFitted = true; // the view is fit()'s, not one the labeler zoomed or panned since
    this.image = null; // {element, width, height, getApiImage}
    this.history = new History({ objects: [], selected: -1 });
    this.savedDoc = this.history.current;
    this.masks = new Map(); // objectKey -> {rle, modelVersion, bits?, canvas?}
    this.lastMaskKey = new Map(); // object id -> key of its newest mask (shown while a new one is pending)
    this.failed = new Map(); // objectKey -> ApiError (no automatic resend; Retry clears it)
    // One API session per image, shared by its objects: the proxy's token names the image and the
    // model session; a new object's crop is answered SESSION_EXPIRED and re-sent with the image.
    this.sessionId = null;
    this.inflight = null;
    this.generation = 0; // bumped by open(): answers for a previous image are dropped
    this.lastLabel = this.config.labels[0];
    this._nextId = 0;
    this.latency = null;
    this.spaceDown = false;
    this.drag = null;
    this._settleWaiters = [];
    this._build();
    this._bindInput();
    this._render();
  }

  // -- public API ----------------------------------------------------------------------------

  /**
   * Show an image. `image`: {url, width?, height?, getApiImage: async () => ({base64}|{s3Uri}),
   * objects?: saved objects [{label, extremePoints, clicks, mask, modelVersion, missedClicks?}]}.
   */
  async open(image) {
    this.generation += 1;
    const generation = this.generation;
    this.inflight = null;
    this.masks.clear();
    this.lastMaskKey.clear();
    this.failed.clear();
    this.sessionId = null;
    // Nothing of the previous image may be clicked or requested while the next one loads.
    this.image = null;
    this.history = new History({ objects: [], selected: -1 });
    this.savedDoc = this.history.current;
    this._hideBanner();
    this._changed();
    const element = new Image();
    element.decoding = "async";
    element.src = image.url;
    try {
      await element.decode();
    } catch (err) {
      this._showBanner("error", `Cannot display the image: ${err && err.message ? err.message : err}`);
      throw err;
    }
    if (generation !== this.generation) return;
    const width = element.naturalWidth;
    const height = element.naturalHeight;
    if ((image.width && image.width !== width) || (image.height && image.height !== height)) {
      // The server measured another size (e.g. an EXIF-rotated JPEG): clicks would land elsewhere.
      this._showBanner(
        "error",
        `The image displays as ${width}x${height} but the server reports ${image.width}x${image.height}; ` +
          "masks would not line up.",
      );
    }
    this.image = { element, width, height, getApiImage: image.getApiImage };
    this._nextId = 0; // the first object of every image gets the first colour
    const objects = (image.objects || []).map((saved) => {
      const points = [
        ...saved.extremePoints.map((p) => ({ x: p.x, y: p.y, type: "extreme" })),
        ...(saved.clicks || []).map((c) => ({ x: c.x, y: c.y, type: c.type })),
      ];
      const obj = this._makeObject(saved.label || this.config.labels[0], points);
      if (saved.mask) {
        const key = objectKey(obj);
        // The store names the saved mask's missed clicks (fewclick/local/labels.py), so they stay ringed.
        this.masks.set(key, { rle: saved.mask, modelVersion: saved.modelVersion || null, missed: saved.missedClicks });
        this.lastMaskKey.set(obj.id, key);
      }
      return obj;
    });
    this.history = new History({ objects, selected: objects.length ? objects.length - 1 : -1 });
    this.savedDoc = this.history.current;
    this.latency = null;
    this.fit();
    this._changed();
  }

  /** Objects with masks, as the API names things (`missedClicks`: the clicks each mask does not
   * follow, as the API answered); plus counts of what could not be exported, and the document they
   * came from (give it to `markSaved` once they are stored). */
  exportObjects() {
    const doc = this.doc;
    const objects = [];
    let incomplete = 0;
    let withoutMask = 0;
    for (const obj of doc.objects) {
      if (!obj.points.length) continue;
      if (!isComplete(obj)) {
        incomplete += 1;
        continue;
      }
      const mask = this.masks.get(objectKey(obj));
      if (!mask) {
        withoutMask += 1;
        continue;
      }
      objects.push({
        label: obj.label,
        extremePoints: obj.points.slice(0, 4).map((p) => ({ x: p.x, y: p.y })),
        clicks: obj.points.slice(4).map((p) => ({ x: p.x, y: p.y, type: p.type })),
        mask: { size: mask.rle.size, counts: mask.rle.counts },
        modelVersion: mask.modelVersion,
        missedClicks: this.missedClicks(obj),
      });
    }
    return { objects, incomplete, withoutMask, doc };
  }

  /** Resolves when no mask request is in flight or queued (for saving). */
  settled() {
    if (!this._busy()) return Promise.resolve();
    return new Promise((resolve) => this._settleWaiters.push(resolve));
  }

  get doc() {
    return this.history.current;
  }

  get dirty() {
    // Objects, not the whole document: selecting another object is not an edit.
    return this.doc.objects !== this.savedDoc.objects;
  }

  /** `doc`: the document that was stored (default: the current one). Edits made after it was
   * exported, while the save travelled, keep the labeler dirty. */
  markSaved(doc = this.doc) {
    this.savedDoc = doc;
    this._changed();
  }

  newObject(label = this.lastLabel) {
    const doc = this.doc;
    const current = doc.objects[doc.selected];
    if (current && !current.points.length) {
      // An empty object is already waiting for clicks: relabel it instead of stacking empties.
      this.setLabel(label);
      return;
    }
    const objects = [...doc.objects, this._makeObject(label)];
    this._commit({ objects, selected: objects.length - 1 });
  }

  selectObject(index) {
    if (index < 0 || index >= this.doc.objects.length || index === this.doc.selected) return;
    // Selection is not an edit: it does not enter the undo history.
    this.history.current = { ...this.doc, selected: index };
    this._changed();
  }

  deleteObject(index = this.doc.selected) {
    const doc = this.doc;
    if (index < 0 || index >= doc.objects.length) return;
    const objects = doc.objects.filter((_, i) => i !== index);
    // The selection stays on its object: one before it going away shifts its index down.
    let selected = doc.selected;
    if (index < doc.selected) selected -= 1;
    this._commit({ objects, selected: Math.min(selected, objects.length - 1) });
  }

  resetObject() {
    const obj = this.doc.objects[this.doc.selected];
    if (!obj || !obj.points.length) return;
    this._replaceSelected(this._makeObject(obj.label));
  }

  setLabel(label) {
    this.lastLabel = label;
    const obj = this.doc.objects[this.doc.selected];
    if (!obj || obj.label === label) {
      this._changed();
      return;
    }
    // Same id and points: the cached mask still applies.
    this._replaceSelected(Object.freeze({ ...obj, label }));
  }

  undo() {
    this._move(() => this.history.undo());
  }

  redo() {
    this._move(() => this.history.redo());
  }

  setOpacity(value) {
    this.opacity = Math.min(1, Math.max(0, Number(value)));
    if (this.ui) this.ui.opacity.value = String(this.opacity);
    this._render();
  }

  setBoundaryMode(on) {
    this.boundaryMode = Boolean(on);
    this._paintPanel();
    this._render();
  }

  /** Retry what failed (after a server error) and carry on with anything queued. */
  retry() {
    this.failed.clear();
    this._hideBanner();
    this._pump();
  }

  /** Image pixel (x, y) -> client (viewport) coordinates of that pixel's centre. */
  imageToClient(x, y) {
    const rect = this.ui.top.getBoundingClientRect();
    return {
      x: rect.left + this.view.tx + (x + 0.5) * this.view.scale,
      y: rect.top + this.view.ty + (y + 0.5) * this.view.scale,
    };
  }

  clientToImage(clientX, clientY) {
    const rect = this.ui.top.getBoundingClientRect();
    return {
      x: Math.floor((clientX - rect.left - this.view.tx) / this.view.scale),
      y: Math.floor((clientY - rect.top - this.view.ty) / this.view.scale),
    };
  }

  fit() {
    if (!this.image) return;
    const { clientWidth: w, clientHeight: h } = this.ui.stage;
    const scale = Math.min(w / this.image.width, h / this.image.height) * 0.95 || 1;
    this.view = {
      scale,
      tx: (w - this.image.width * scale) / 2,
      ty: (h - this.image.height * scale) / 2,
    };
    this.viewFitted = true;
    this._render();
  }

  /** Pull the image back until at least MIN_VISIBLE_PX of it (or all of it, if smaller) is in the stage. */
  _clampView() {
    const { clientWidth: w, clientHeight: h } = this.ui.stage;
    if (!this.image || !w || !h) return; // a hidden stage has no size to keep the image in
    const { scale, tx, ty } = this.view;
    const iw = this.image.width * scale;
    const ih = this.image.height * scale;
    const mx = Math.min(MIN_VISIBLE_PX, iw, w);
    const my = Math.min(MIN_VISIBLE_PX, ih, h);
    this.view.tx = Math.min(w - mx, Math.max(mx - iw, tx));
    this.view.ty = Math.min(h - my, Math.max(my - ih, ty));
  }

  destroy() {
    this.generation += 1;
    this._unbind();
    this.root.replaceChildren();
  }

  /** Ids are unique per opened image (masks are cached by id) and pick the object's colour. */
  _makeObject(label, points = []) {
    this._nextId += 1;
    return freezeObject(this._nextId, label, points);
  }

  // -- building the DOM ------------------------------------------------------------------------

  _build() {
    const button = (text, title, onclick, extra = {}) => el("button", { type: "button", title, onclick, ...extra, text });
    const ui = {};
    ui.newObject = button("New object", "Start another object (N)", () => this.newObject());
    ui.undo = button("Undo", "Undo (Ctrl-Z)", () => this.undo());
    ui.redo = button("Redo", "Redo (Ctrl-Shift-Z)", () => this.redo());
    ui.reset = button("Reset object", "Remove all points of the selected object", () => this.resetObject());
    ui.boundary = button("Boundary mode", "Clicks add boundary points (B; or Alt-click)", () =>
      this.setBoundaryMode(!this.boundaryMode), { "aria-pressed": "false", "data-role": "boundary-mode" });
    ui.fit = button("Fit", "Fit the image to the view (F)", () => this.fit());
    ui.opacity = el("input", {
      type: "range", min: "0", max: "1", step: "0.05", value: String(this.opacity), "aria-label": "Mask opacity",
      oninput: (e) => this.setOpacity(e.target.value),
    });
    ui.latency = el("span", { class: "fc-latency", "data-role": "latency", text: "" });
    ui.toolbar = el("div", { class: "fc-toolbar" }, [
      ui.newObject, ui.undo, ui.redo, ui.reset, ui.boundary, ui.fit,
      el("label", { class: "fc-opacity" }, ["Opacity ", ui.opacity]),
      ui.latency,
    ]);
    ui.base = el("canvas", { class: "fc-layer fc-image" });
    ui.mask = el("canvas", { class: "fc-layer fc-mask", "data-role": "mask-layer" });
    ui.top = el("canvas", {
      class: "fc-layer fc-points",
      "data-role": "click-layer",
      tabindex: "0",
      role: "application",
      "aria-label": "Image: click the object's four extreme points, then corrective clicks",
    });
    ui.stage = el("div", { class: "fc-stage" }, [ui.base, ui.mask, ui.top]);
    ui.objects = el("ol", { class: "fc-object-list", "data-role": "objects" });
    ui.panel = el("aside", { class: "fc-objects" }, [el("h2", { text: "Objects" }), ui.objects]);
    ui.hint = el("div", { class: "fc-hint", "data-role": "hint" });
    ui.bannerText = el("span", { class: "fc-banner-text" });
    ui.bannerRetry = button("Retry", "Send the request again", () => this.retry(), { hidden: true });
    ui.banner = el("div", { class: "fc-banner", role: "alert", "data-role": "banner", hidden: true }, [
      ui.bannerText, ui.bannerRetry,
    ]);
    this.root.classList.add("fc-labeler");
    this.root.replaceChildren(ui.toolbar, ui.banner, el("div", { class: "fc-main" }, [ui.stage, ui.panel]), ui.hint);
    this.ui = ui;
  }

  _bindInput() {
    const top = this.ui.top;
    const listeners = [];
    const on = (target, type, fn, opts) => {
      target.addEventListener(type, fn, opts);
      listeners.push(() => target.removeEventListener(type, fn, opts));
    };
    on(top, "contextmenu", (e) => e.preventDefault()); // right-click is a negative click, not a menu
    on(top, "pointerdown", (e) => this._pointerDown(e));
    // Pointer events carry no click count (detail is 0); the mouse event that follows pointerdown does.
    on(top, "mousedown", (e) => {
      if (this.drag) this.drag.count = e.detail || 1;
    });
    on(top, "pointermove", (e) => this._pointerMove(e));
    on(top, "pointerup", (e) => this._pointerUp(e));
    on(top, "pointercancel", () => { this.drag = null; });
    on(top, "auxclick", (e) => e.preventDefault()); // middle-click must not paste/open on Linux
    on(top, "wheel", (e) => this._wheel(e), { passive: false });
    const keys = this.config.keyTarget;
    on(keys, "keydown", (e) => this._keyDown(e));
    on(keys, "keyup", (e) => {
      if (e.code === "Space") this.spaceDown = false;
    });
    on(window, "blur", () => { this.spaceDown = false; });
    const observer = new ResizeObserver(() => {
      // A smaller window would leave a fitted image partly outside the stage, where clicks are ignored:
      // the fitted view follows the stage; a view the labeler chose is kept, but within reach.
      if (this.viewFitted) this.fit();
      else {
        this._clampView();
        this._render();
      }
    });
    observer.observe(this.ui.stage);
    listeners.push(() => observer.disconnect());
    this._unbind = () => listeners.forEach((off) => off());
  }

  _keyDown(e) {
    if (isTextEntry(e.target)) return;
    const mod = e.ctrlKey || e.metaKey;
    // Plain keys belong to a focused drop-down (type-to-select); Ctrl combinations still work there.
    if (!mod && e.target && e.target.tagName === "SELECT") return;
    const key = (e.key || "").toLowerCase();
    if (mod && key === "z") {
      e.preventDefault();
      if (e.shiftKey) this.redo();
      else this.undo();
    } else if (mod && key === "y") {
      e.preventDefault();
      this.redo();
    } else if (mod || e.altKey) {
      return;
    } else if (e.code === "Space") {
      // Held Space turns a drag on the image into a pan (pointerdown moves the focus to the image, so a
      // focused button is not pressed by it); its default is cancelled only where it would scroll the
      // page, never where it presses the focused button or ticks the focused box.
      this.spaceDown = true;
      if (!takesSpace(e.target)) e.preventDefault();
    } else if (key === "b") {
      this.setBoundaryMode(!this.boundaryMode);
    } else if (key === "n") {
      this.newObject();
    } else if (key === "f") {
      this.fit();
    } else if (key === "delete") {
      this.deleteObject();
    }
  }

  _pointerDown(e) {
    this.ui.top.focus({ preventScroll: true });
    const pan = e.button === 1 || (e.button === 0 && this.spaceDown);
    this.drag = { pan, button: e.button, startX: e.clientX, startY: e.clientY, lastX: e.clientX, lastY: e.clientY,
      moved: false, shift: e.shiftKey, alt: e.altKey, count: 1 };
    try {
      this.ui.top.setPointerCapture(e.pointerId); // a drag that leaves the canvas still ends here
    } catch {
      // synthetic events have no capturable pointer; nothing to do
    }
    if (pan || e.button === 1) e.preventDefault();
  }

  _pointerMove(e) {
    const drag = this.drag;
    if (!drag) return;
    if (Math.hypot(e.clientX - drag.startX, e.clientY - drag.startY) > DRAG_THRESHOLD_PX) drag.moved = true;
    if (drag.pan) {
      this.view.tx += e.clientX - drag.lastX;
      this.view.ty += e.clientY - drag.lastY;
      this.viewFitted = false;
      this._clampView();
      this._render();
    }
    drag.lastX = e.clientX;
    drag.lastY = e.clientY;
  }

  _pointerUp(e) {
    const drag = this.drag;
    this.drag = null;
    if (!drag || drag.pan || drag.moved || drag.button !== e.button) return;
    if (e.button !== 0 && e.button !== 2) return;
    // The second click of a double-click lands on the first one's pixel: one point, not two alike.
    if (drag.count > 1) return;
    this._addClick(this.clientToImage(e.clientX, e.clientY), {
      right: e.button === 2,
      shift: drag.shift || e.shiftKey,
      alt: drag.alt || e.altKey,
    });
  }

  _wheel(e) {
    e.preventDefault();
    if (!this.image) return;
    const rect = this.ui.top.getBoundingClientRect();
    const px = e.clientX - rect.left;
    const py = e.clientY - rect.top;
    const factor = Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015));
    const scale = Math.min(64, Math.max(0.02, this.view.scale * factor));
    // Keep the image point under the cursor where it is.
    this.view.tx = px - ((px - this.view.tx) * scale) / this.view.scale;
    this.view.ty = py - ((py - this.view.ty) * scale) / this.view.scale;
    this.view.scale = scale;
    this.viewFitted = false;
    this._clampView();
    this._render();
  }

  // -- editing ---------------------------------------------------------------------------------

  _addClick(point, { right, shift, alt }) {
    if (!this.image) return;
    if (point.x < 0 || point.y < 0 || point.x >= this.image.width || point.y >= this.image.height) return;
    let doc = this.doc;
    if (doc.selected < 0) {
      doc = { objects: [...doc.objects, this._makeObject(this.lastLabel)], selected: doc.objects.length };
    }
    const obj = doc.objects[doc.selected];
    if (obj.points.length >= 4 + MAX_CORRECTIVE_CLICKS) {
      this._showBanner(
        "info",
        `An object takes at most ${MAX_CORRECTIVE_CLICKS} corrective clicks: undo some, or reset the object.`,
        { autoHideMs: 6000 },
      );
      return;
    }
    let type = "extreme";
    if (isComplete(obj)) {
      if (alt || this.boundaryMode) type = "boundary";
      else if (right || shift) type = "negative";
      else type = "positive";
    } else {
      const near = obj.points.findIndex(
        (p) => Math.max(Math.abs(p.x - point.x), Math.abs(p.y - point.y)) <= MIN_EXTREME_DISTANCE_PX,
      );
      if (near >= 0) {
        this._showBanner(
          "info",
          `Extreme point ${obj.points.length + 1} not added: (${point.x}, ${point.y}) is within ` +
            `${MIN_EXTREME_DISTANCE_PX} px of extreme point ${near + 1}. Click another side of the object ` +
            "(its left-, right-, top- or bottom-most pixel).",
          { autoHideMs: 6000 },
        );
        return;
      }
    }
    const updated = Object.freeze({ ...obj, points: Object.freeze([...obj.points, Object.freeze({ ...point, type })]) });
    const objects = doc.objects.map((o, i) => (i === doc.selected ? updated : o));
    this._commit({ objects, selected: doc.selected });
  }

  _replaceSelected(obj) {
    const doc = this.doc;
    const objects = doc.objects.map((o, i) => (i === doc.selected ? obj : o));
    this._commit({ objects, selected: doc.selected });
  }

  _commit(doc) {
    this._move(() => {
      this.history.push(Object.freeze(doc));
      return true;
    });
  }

  /** Apply a history step (`step()` says whether it moved), then what every new current state needs. */
  _move(step) {
    const before = this.doc;
    if (!step()) return;
    this._forgetFailures(before);
    this._changed();
  }

  /** A state that becomes current again (undo, redo, the same click made again) is a new attempt: the
   * mark of an earlier failure (a 403 that a new token has since fixed, say) must not keep it from
   * being requested, nor keep Save blocked. States that stayed current keep theirs: no resend loop. */
  _forgetFailures(before) {
    if (!this.failed.size) return;
    const previous = docKeys(before);
    for (const key of docKeys(this.doc)) if (!previous.has(key)) this.failed.delete(key);
  }

  _changed() {
    this._pump();
    if (
      this.bannerKind === "error" &&
      this.failed.size &&
      !this.doc.objects.some((o) => this.failed.has(objectKey(o)))
    ) {
      this._hideBanner(); // the failing state was undone or deleted: the error no longer applies
    }
    this._paintPanel();
    this._render();
    const { objects, incomplete, withoutMask } = this.exportObjects();
    this.config.onChange({
      dirty: this.dirty,
      objects: this.doc.objects.length,
      complete: objects.length,
      incomplete,
      withoutMask,
      pending: this._busy(),
      canUndo: this.history.undoStack.length > 0,
      canRedo: this.history.redoStack.length > 0,
    });
  }

  // -- requests ----------------------------------------------------------------------------------

  /** The next object whose current state has no mask: the selected one first. */
  _nextRequest() {
    const doc = this.doc;
    const order = [doc.selected, ...doc.objects.keys()].filter((i) => i >= 0 && i < doc.objects.length);
    for (const index of order) {
      const obj = doc.objects[index];
      if (!isComplete(obj)) continue;
      const key = objectKey(obj);
      if (!this.masks.has(key) && !this.failed.has(key)) return obj;
    }
    return null;
  }

  /** Indices into `obj`'s corrective clicks that its current mask does not follow (none while that
   * mask is pending: an older mask's indices would point at other clicks). */
  missedClicks(obj) {
    const entry = obj && isComplete(obj) ? this.masks.get(objectKey(obj)) : null;
    if (!entry || !Array.isArray(entry.missed)) return [];
    return entry.missed.filter((i) => Number.isInteger(i) && i >= 0 && 4 + i < obj.points.length);
  }

  _busy() {
    return Boolean(this.inflight) || Boolean(this.image && this._nextRequest());
  }

  _pump() {
    // One request at a time: the object's sessionId from the answer is needed by the next click, and
    // clicks made meanwhile are coalesced (only the newest state is sent).
    if (this.inflight || !this.image) {
      this._resolveSettled();
      return;
    }
    const obj = this._nextRequest();
    if (!obj) {
      this._resolveSettled();
      return;
    }
    const key = objectKey(obj);
    const generation = this.generation;
    this.inflight = { key };
    this._paintPanel();
    this._request(obj)
      .then(({ response, elapsedMs, resent }) => {
        if (generation !== this.generation) return;
        this.masks.set(key, {
          rle: response.mask,
          modelVersion: response.modelVersion || null,
          // Indices into the corrective clicks that this mask does not follow (an older server sends none).
          missed: Array.isArray(response.missedClicks) ? response.missedClicks : [],
        });
        this.lastMaskKey.set(obj.id, key);
        this.latency = { clientMs: elapsedMs, resent, ...(response.timings || {}) };
        if (this.bannerKind === "busy") this._hideBanner(); // recovered after automatic retries
      })
      .catch((err) => {
        if (generation !== this.generation) return;
        const error = err instanceof ApiError ? err : new ApiError(0, "CLIENT", String(err));
        this.failed.set(key, error);
        // Retry only where it can help (unreachable, busy); a refused request needs an undo instead.
        this._showBanner("error", error.describe(), { retry: error.retryable });
      })
      .finally(() => {
        if (generation !== this.generation) return;
        this.inflight = null;
        this._changed();
      });
  }

  async _request(obj) {
    const body = {
      extremePoints: obj.points.slice(0, 4).map((p) => ({ x: p.x, y: p.y })),
      clicks: obj.points.slice(4).map((p) => ({ x: p.x, y: p.y, type: p.type })),
      output: this.config.output,
    };
    // An object that already has a mask was being refined in this session: its expiry is news.
    const refining = this.lastMaskKey.has(obj.id);
    const generation = this.generation; // the image this request is for
    let sessionId = this.sessionId;
    let withImage = !sessionId;
    let resends = 0;
    let retries = 0;
    const started = performance.now(); // what the labeler waits, resends and retries included
    for (;;) {
      try {
        const request = { ...body };
        if (sessionId) request.sessionId = sessionId;
        if (withImage) request.image = await this.image.getApiImage();
        const response = await this.client.segment(request);
        // A late answer for the previous image must not lend its session to the next one.
        if (generation === this.generation) this.sessionId = response.sessionId;
        return { response, elapsedMs: performance.now() - started, resent: resends > 0 };
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        if (err.code === "SESSION_EXPIRED" && resends < 2) {
          // The server no longer holds what this click needs (session idle/expired, or a new crop):
          // send the image again with the same clicks. First with the session id, which keeps the
          // model session (the server replaces its crop); if even that is refused, as a new session.
          resends += 1;
          if (withImage) sessionId = null;
          withImage = true;
          if (refining) {
            this._showBanner("info", "Session expired: image sent again automatically.", { autoHideMs: 4000 });
          }
          continue;
        }
        if (err.retryable && retries < this.config.maxAutoRetries) {
          retries += 1;
          const waitS = Math.min(this.config.maxRetryDelayS, err.retryAfterS ?? retries);
          this._showBanner(
            "busy",
            `${err.describe()} Retrying in ${Math.ceil(waitS)} s (try ${retries} of ${this.config.maxAutoRetries})…`,
          );
          await sleep(waitS * 1000);
          continue;
        }
        throw err;
      }
    }
  }


  _resolveSettled() {
    if (this._busy()) return;
    const waiters = this._settleWaiters;
    this._settleWaiters = [];
    waiters.forEach((resolve) => resolve());
  }

  // -- banner ------------------------------------------------------------------------------------

  _showBanner(kind, message, { retry = false, autoHideMs = 0 } = {}) {
    const { banner, bannerText, bannerRetry } = this.ui;
    clearTimeout(this._bannerTimer);
    banner.hidden = false;
    banner.dataset.kind = kind;
    bannerText.textContent = message;
    bannerRetry.hidden = !retry;
    this.bannerKind = kind;
    if (autoHideMs) this._bannerTimer = setTimeout(() => this._hideBanner(), autoHideMs);
  }

  _hideBanner() {
    clearTimeout(this._bannerTimer);
    this.ui.banner.hidden = true;
    this.ui.bannerRetry.hidden = true;
    this.bannerKind = null;
  }

  // -- drawing -----------------------------------------------------------------------------------

  /** The object's mask as an image-sized canvas in its colour, plus its outline (cached per mask). */
  _maskCanvases(key, colorIndex) {
    const entry = this.masks.get(key);
    if (!entry) return null;
    if (entry.colorIndex === colorIndex && entry.canvases) return entry.canvases;
    entry.bits ||= rleToMask(entry.rle);
    const { width, height, data } = entry.bits;
    const [r, g, b] = hexToRgb(OBJECT_COLORS[colorIndex % OBJECT_COLORS.length]);
    const fill = new ImageData(width, height);
    const outline = new ImageData(width, height);
    // One 32-bit write per pixel (RGBA bytes in memory order; every browser we target is little-endian).
    const fill32 = new Uint32Array(fill.data.buffer);
    const outline32 = new Uint32Array(outline.data.buffer);
    const colour = ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0;
    const white = 0xffffffff;
    for (let y = 0; y < height; y += 1) {
      for (let x = 0; x < width; x += 1) {
        const i = y * width + x;
        if (!data[i]) continue;
        fill32[i] = colour;
        // An outline pixel has a 4-neighbour outside the mask: it stays visible at low opacity.
        const edge =
          x === 0 || y === 0 || x === width - 1 || y === height - 1 ||
          !data[i - 1] || !data[i + 1] || !data[i - width] || !data[i + width];
        if (edge) outline32[i] = white;
      }
    }
    const toCanvas = (pixels) => {
      const canvas = document.createElement("canvas");
      canvas.width = width;
      canvas.height = height;
      canvas.getContext("2d").putImageData(pixels, 0, 0);
      return canvas;
    };
    entry.canvases = { fill: toCanvas(fill), outline: toCanvas(outline) };
    entry.colorIndex = colorIndex;
    return entry.canvases;
  }


  _render() {
    if (this._frame) return;
    // Coalesce bursts of changes (wheel, drags) into one paint per frame.
    this._frame = requestAnimationFrame(() => {
      this._frame = null;
      this._paint();
    });
  }

  _sizeCanvas(canvas, dpr, w, h) {
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    return ctx;
  }

  _paint() {
    const { stage, base, mask, top } = this.ui;
    const dpr = window.devicePixelRatio || 1;
    const w = stage.clientWidth;
    const h = stage.clientHeight;
    const { scale, tx, ty } = this.view;
    const baseCtx = this._sizeCanvas(base, dpr, w, h);
    const maskCtx = this._sizeCanvas(mask, dpr, w, h);
    const topCtx = this._sizeCanvas(top, dpr, w, h);
    if (!this.image) return;
    const imageTransform = [dpr * scale, 0, 0, dpr * scale, dpr * tx, dpr * ty];
    baseCtx.setTransform(...imageTransform);
    // Pixels stay crisp when zoomed in: labelers click on individual pixels.
    baseCtx.imageSmoothingEnabled = scale < 1;
    baseCtx.drawImage(this.image.element, 0, 0);

    maskCtx.setTransform(...imageTransform);
    maskCtx.imageSmoothingEnabled = false;
    const doc = this.doc;
    doc.objects.forEach((obj, index) => {
      const key = this.masks.has(objectKey(obj)) ? objectKey(obj) : this.lastMaskKey.get(obj.id);
      if (!key || !isComplete(obj)) return;
      const canvases = this._maskCanvases(key, obj.id - 1);
      if (!canvases) return;
      maskCtx.globalAlpha = index === doc.selected ? this.opacity : this.opacity * 0.6;
      maskCtx.drawImage(canvases.fill, 0, 0);
      if (index === doc.selected) {
        maskCtx.globalAlpha = 0.9;
        maskCtx.drawImage(canvases.outline, 0, 0);
      }
    });
    maskCtx.globalAlpha = 1;

    // Points in screen space, so they keep their size at any zoom.
    topCtx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const selected = doc.objects[doc.selected];
    if (selected) {
      const missed = new Set(this.missedClicks(selected).map((i) => 4 + i));
      selected.points.forEach((p, i) => {
        const cx = tx + (p.x + 0.5) * scale;
        const cy = ty + (p.y + 0.5) * scale;
        if (missed.has(i)) {
          // A click the mask does not follow: a dashed ring the labeler cannot mistake for a point.
          topCtx.beginPath();
          topCtx.arc(cx, cy, MISSED_RING_PX, 0, 2 * Math.PI);
          topCtx.setLineDash([4, 3]);
          topCtx.lineWidth = 4;
          topCtx.strokeStyle = "#000";
          topCtx.stroke();
          topCtx.lineWidth = 2;
          topCtx.strokeStyle = MISSED_RING_COLOR;
          topCtx.stroke();
          topCtx.setLineDash([]);
        }
        topCtx.beginPath();
        topCtx.arc(cx, cy, p.type === "extreme" ? 8 : 6, 0, 2 * Math.PI);
        topCtx.fillStyle = CLICK_COLORS[p.type];
        topCtx.fill();
        topCtx.lineWidth = 2;
        topCtx.strokeStyle = "#000";
        topCtx.stroke();
        if (p.type === "extreme") {
          topCtx.fillStyle = "#000";
          topCtx.font = "bold 11px system-ui, sans-serif";
          topCtx.textAlign = "center";
          topCtx.textBaseline = "middle";
          topCtx.fillText(String(i + 1), cx, cy + 0.5);
        }
      });
    }
  }

  _paintPanel() {
    const ui = this.ui;
    const doc = this.doc;
    const selected = doc.objects[doc.selected];
    ui.undo.disabled = !this.history.undoStack.length;
    ui.redo.disabled = !this.history.redoStack.length;
    ui.reset.disabled = !selected || !selected.points.length;
    ui.boundary.setAttribute("aria-pressed", String(this.boundaryMode));
    ui.boundary.classList.toggle("fc-active", this.boundaryMode);
    const lat = this.latency;
    const pending = Boolean(this.inflight);
    ui.latency.textContent = pending
      ? "Segmenting…"
      : lat
        ? `Last click: ${Math.round(lat.clientMs)} ms` +
          (lat.modelMs != null ? ` (model ${Math.round(lat.modelMs)} ms)` : "") +
          (lat.resent ? ", image re-sent" : "")
        : "";
    ui.latency.classList.toggle("fc-pending", pending);

    // Hint: what the next click does.
    const missed = this.missedClicks(selected);
    let hint;
    if (!this.image) hint = "Loading image…";
    else if (!selected || selected.points.length < 4) {
      const n = selected ? selected.points.length : 0;
      hint = `Click extreme point ${n + 1} of 4 (left-, right-, top- or bottom-most pixel of the object).`;
    } else if (missed.length) {
      // The mode stays said: the advice is a region click, which boundary mode would not make.
      hint = (this.boundaryMode ? "Boundary mode (B to leave). " : "") + missedHint(selected, missed);
    } else if (this.boundaryMode) {
      hint = "Boundary mode: clicks add boundary points (blue). B to leave.";
    } else {
      hint = "Left-click: add to the object (green). Right- or Shift-click: remove (red). Alt-click: boundary (blue).";
    }
    ui.hint.textContent = hint;

    // Object list: rebuilt only when what it shows changed (an open class drop-down survives repaints).
    const signature = JSON.stringify([
      doc.selected,
      this.config.labels,
      doc.objects.map((obj) => [obj.id, obj.label, objectKey(obj), this.masks.has(objectKey(obj)),
        this.failed.has(objectKey(obj)), this.missedClicks(obj).length]),
    ]);
    if (signature === this._panelSignature) return;
    this._panelSignature = signature;
    const rows = doc.objects.map((obj, index) => {
      const key = objectKey(obj);
      let state = "";
      if (!isComplete(obj)) state = `${obj.points.length}/4 points`;
      else if (this.failed.has(key)) state = "failed";
      else if (!this.masks.has(key)) state = "segmenting…";
      else {
        state = obj.points.length === 5 ? "1 click" : `${obj.points.length - 4} clicks`;
        const notFollowed = this.missedClicks(obj).length;
        if (notFollowed) state += `, ${notFollowed} not followed`;
      }
      const select = el("select", {
        "aria-label": `Class of object ${index + 1}`,
        onchange: (e) => {
          this.selectObject(index);
          this.setLabel(e.target.value);
        },
      });
      const labels = this.config.labels.includes(obj.label) ? this.config.labels : [...this.config.labels, obj.label];
      for (const label of labels) select.append(el("option", { value: label, text: label, selected: label === obj.label }));
      const swatch = el("span", { class: "fc-swatch" });
      swatch.style.background = OBJECT_COLORS[(obj.id - 1) % OBJECT_COLORS.length];
      return el("li", {
        class: index === doc.selected ? "fc-selected" : "",
        "data-index": String(index),
        onclick: (e) => {
          if (e.target.tagName !== "SELECT" && e.target.tagName !== "BUTTON") this.selectObject(index);
        },
      }, [
        swatch,
        el("span", { class: "fc-object-name", text: `#${index + 1}` }),
        select,
        el("span", { class: "fc-object-state", text: state }),
        el("button", { type: "button", class: "fc-delete", title: "Delete this object (Delete)", text: "✕",
          "aria-label": `Delete object ${index + 1}`, onclick: () => this.deleteObject(index) }),
      ]);
    });
    if (!rows.length) rows.push(el("li", { class: "fc-empty", text: "No objects yet: click 4 extreme points." }));
    ui.objects.replaceChildren(...rows);
  }
}
