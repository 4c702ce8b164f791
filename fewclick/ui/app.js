// The stand-alone labeling page of `fewclick serve`: image list, progress and saving around the
// reusable labeling core. Everything specific to the local server (/local/... routes) lives here, so
// the core stays usable inside a Ground Truth task template.

import { createLabeler, isTextEntry } from "./labeling-core.js";

const TOKEN_KEY = "fewclick.token";

// The token arrives in the URL fragment (never sent to a server); keep it for this tab and take it
// out of the address bar so it does not end up in screenshots or bookmarks. True if there was one.
function takeToken() {
  const match = /(?:^|[#&])token=([^&]+)/.exec(window.location.hash);
  if (!match) return false;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
  history.replaceState(null, "", window.location.pathname + window.location.search);
  return true;
}

takeToken();
// Not a constant: the printed URL pasted into this tab later brings a new one (see "hashchange").
let token = sessionStorage.getItem(TOKEN_KEY);
const $ = (id) => document.getElementById(id);

class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  describe() {
    if (this.status === 0) return `Cannot reach the fewclick server (${this.message}). Is \`fewclick serve\` running?`;
    if (this.status === 401 || this.status === 403) {
      return `Not authorised (${this.status}): open the URL that \`fewclick serve\` printed (it carries #token=…).`;
    }
    return `${this.code} (${this.status}): ${this.message}`;
  }
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (err) {
    throw new HttpError(0, "NETWORK", String(err.message || err));
  }
  if (!response.ok) {
    let error = {};
    try {
      error = (await response.json()).error || {};
    } catch {
      // not JSON: the status line says enough
    }
    throw new HttpError(response.status, error.code || `HTTP_${response.status}`, error.message || response.statusText);
  }
  return response;
}

const imageUrl = (name) => `/local/images/${encodeURIComponent(name)}`;
const labelsUrl = (name) => `/local/labels/${encodeURIComponent(name)}`;

function blobToBase64(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

// Names the proxy takes as an S3 key as they are (fewclick_proxy.image_source.parse_s3_uri); others go inline.
const S3_PLAIN_KEY = /^[^?#\\\u0000-\u001f\u007f/]+$/;

const state = {
  images: [],
  index: -1, // the image chosen in the navigation (may still be loading)
  shown: -1, // the image the labeler holds: the only one a save may write to
  loading: false,
  imageBucket: null, // set by /local/config when the proxy reads the images folder as a bucket
  objectUrl: null,
  saving: null,
  unfinishedWarning: false, // a move was refused for an unfinished object: its status message stays
};

let pageRetry = null; // what the page banner offers to try again: a new token tries it too

function showPageBanner(message, retry = null) {
  $("page-banner").hidden = false;
  $("page-banner-text").textContent = message;
  const button = $("page-banner-retry");
  button.hidden = !retry;
  pageRetry = retry;
  button.onclick = retry
    ? () => {
        hidePageBanner();
        retry();
      }
    : null;
}

function hidePageBanner() {
  $("page-banner").hidden = true;
  pageRetry = null;
}

function setSaveStatus(text, kind = "") {
  const status = $("save-status");
  status.textContent = text;
  status.dataset.kind = kind;
}

function renderProgress() {
  const done = state.images.filter((image) => image.done).length;
  const total = state.images.length;
  $("progress").max = Math.max(total, 1);
  $("progress").value = done;
  $("progress-text").textContent = `${done}/${total} done`;
  const select = $("image-select");
  select.replaceChildren(
    ...state.images.map((image, i) => {
      const option = document.createElement("option");
      option.value = String(i);
      option.textContent = `${image.done ? "✓" : "○"} ${i + 1}. ${image.name}`;
      option.selected = i === state.index;
      return option;
    }),
  );
  $("prev").disabled = state.index <= 0;
  $("next").disabled = state.index >= total - 1;
}

let labeler = null;

/** What to say about objects with 1-3 extreme points, or null if there are none. They have no mask,
 * so no save stores them: opening another image (or leaving the page) would lose them. */
function unfinishedObjects() {
  if (!labeler) return null;
  const unfinished = labeler.doc.objects
    .map((obj, i) => ({ number: i + 1, points: obj.points.length }))
    .filter(({ points }) => points > 0 && points < 4);
  if (!unfinished.length) return null;
  const names = unfinished.map(({ number, points }) => `#${number} (${points} of 4 extreme points)`).join(", ");
  const [plural, it] = unfinished.length > 1 ? ["s", "them"] : ["", "it"];
  return `Unfinished object${plural} ${names}: finish ${it} by clicking the remaining extreme points, ` +
    `or delete ${it} (Delete, or ✕ in the object list).`;
}

async function openImage(index) {
  const image = state.images[index];
  if (!image) return;
  state.index = index;
  state.loading = true;
  renderProgress();
  setSaveStatus(`Loading ${image.name}…`);
  let blob;
  let saved;
  try {
    [blob, saved] = await Promise.all([
      api(imageUrl(image.name)).then((r) => r.blob()),
      api(labelsUrl(image.name)).then((r) => r.json()),
    ]);
  } catch (err) {
    if (state.index === index) {
      // The labeler still shows (and may edit and save) the previous image: navigation says so too.
      state.index = state.shown;
      state.loading = false;
      renderProgress();
    }
    throw err;
  }
  if (state.index !== index) return; // the labeler moved on while this loaded
  if (state.objectUrl) URL.revokeObjectURL(state.objectUrl);
  state.objectUrl = URL.createObjectURL(blob);
  let base64 = null;
  try {
    await labeler.open({
      url: state.objectUrl,
      width: image.width,
      height: image.height,
      objects: saved.objects,
      // By name where the proxy reads the images folder as a bucket (any size, nothing to encode);
      // else the bytes, encoded once, on the first request that needs them (again only after SESSION_EXPIRED).
      getApiImage: async () => {
        if (state.imageBucket && S3_PLAIN_KEY.test(image.name)) return { s3Uri: `s3://${state.imageBucket}/${image.name}` };
        base64 ||= blobToBase64(blob);
        return { base64: await base64 };
      },
    });
  } finally {
    if (state.index === index) {
      // Only now does the labeler hold this image's saved objects (none, if it could not show the
      // image): until here a save would have written an empty list over them.
      state.loading = false;
      state.shown = labeler.image ? index : -1;
    }
  }
  document.title = `${image.name} · FewClick`;
  setSaveStatus(saved.saved ? `Saved earlier: ${saved.objects.length} object(s)` : "Not saved yet");
}

async function save() {
  if (state.saving) return state.saving;
  if (state.loading) {
    // The labeler still holds the previous image's objects; writing them now would put them
    // under the image being loaded.
    setSaveStatus("Not saved: an image is still loading", "warn");
    return false;
  }
  const image = state.images[state.shown];
  if (!image) return true;
  state.saving = (async () => {
    setSaveStatus("Waiting for masks…", "busy");
    await labeler.settled();
    const { objects, incomplete, withoutMask, doc } = labeler.exportObjects();
    if (withoutMask) {
      // Never drop an object silently: the labeler must retry or undo first.
      setSaveStatus(`Not saved: ${withoutMask} object(s) have no mask (server error): undo the click that failed, or Retry where offered.`, "error");
      return false;
    }
    setSaveStatus("Saving…", "busy");
    try {
      const response = await api(labelsUrl(image.name), {
        method: "PUT",
        headers: { "Content-Type": "application/json" },
        // The store works out which clicks a saved mask does not follow from the mask itself.
        body: JSON.stringify({ objects: objects.map(({ missedClicks: _, ...saved }) => saved) }),
      });
      const result = await response.json();
      labeler.markSaved(doc); // what was sent: edits made while it travelled stay unsaved
      image.done = true;
      image.objects = objects.length;
      renderProgress();
      const skipped = incomplete ? ` (${incomplete} object(s) with fewer than 4 points not saved)` : "";
      setSaveStatus(`Saved ${result.objects} object(s)${skipped}`, incomplete ? "warn" : "ok");
      return true;
    } catch (err) {
      setSaveStatus(`Not saved: ${err.describe ? err.describe() : err}`, "error");
      showPageBanner(`Saving failed: ${err.describe ? err.describe() : err}`, () => save());
      return false;
    }
  })();
  try {
    return await state.saving;
  } finally {
    state.saving = null;
  }
}

async function go(index) {
  if (index < 0 || index >= state.images.length || index === state.index) return;
  // Moving on saves first, so work is never left behind by a click on "Next"; again while edits
  // made during a save that was already travelling are still unsaved. An unfinished object cannot be
  // saved at all, so it holds the labeler here (checked again after each save: clicks go on meanwhile).
  for (;;) {
    const unfinished = unfinishedObjects();
    if (unfinished) {
      state.unfinishedWarning = true;
      setSaveStatus(`Not moved on. ${unfinished}`, "error");
      renderProgress(); // the image list shows the image still held, not the one picked
      return;
    }
    if (!labeler.dirty) break;
    if (!(await save())) {
      renderProgress();
      return;
    }
  }
  try {
    await openImage(index);
  } catch (err) {
    showPageBanner(`Cannot open ${state.images[index].name}: ${err.describe ? err.describe() : err}`, () => go(index));
  }
}

async function start() {
  hidePageBanner();
  let config;
  try {
    config = await (await api("/local/config")).json();
    state.imageBucket = config.imageBucket || null;
    state.images = (await (await api("/local/images")).json()).images;
  } catch (err) {
    showPageBanner(err.describe ? err.describe() : String(err), start);
    return;
  }
  if (!labeler) {
    labeler = createLabeler($("labeler"), {
      apiBaseUrl: config.apiBaseUrl,
      getToken: () => token,
      labels: config.labels,
      onChange: (info) => {
        $("save").classList.toggle("app-dirty", info.dirty);
        if (state.unfinishedWarning) {
          if (info.incomplete) return; // still unfinished: the refusal and what to do about it stay
          state.unfinishedWarning = false;
          if (!info.dirty) setSaveStatus("");
        }
        if (info.dirty && !state.saving) setSaveStatus("Unsaved changes", "warn");
      },
    });
    window.fewclick = { labeler, save, go, state }; // for the console and the browser tests
  }
  const first = state.images.findIndex((image) => !image.done);
  state.index = -1;
  await go(first >= 0 ? first : 0);
}

$("prev").addEventListener("click", () => go(state.index - 1));
$("next").addEventListener("click", () => go(state.index + 1));
$("image-select").addEventListener("change", (e) => go(Number(e.target.value)));
$("save").addEventListener("click", () => save());
$("help-toggle").addEventListener("click", () => {
  const help = $("help");
  help.hidden = !help.hidden;
  $("help-toggle").setAttribute("aria-expanded", String(!help.hidden));
});
window.addEventListener("keydown", (e) => {
  if ((e.ctrlKey || e.metaKey) && (e.key || "").toLowerCase() === "s") {
    e.preventDefault(); // the browser's "save page" is never what a labeler means here
    save();
    return;
  }
  // Arrow keys move sliders, drop-downs and text carets when those have the focus.
  if (isTextEntry(e.target) || ["INPUT", "SELECT"].includes(e.target.tagName)) return;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === "ArrowLeft") go(state.index - 1);
  else if (e.key === "ArrowRight") go(state.index + 1);
});
window.addEventListener("beforeunload", (e) => {
  // The browser asks before unsaved work is lost; an unfinished object is never saved, so it counts.
  if (labeler && (labeler.dirty || unfinishedObjects())) e.preventDefault();
});
// After a 401/403 the labeler pastes the printed URL into the same tab: only the fragment changes, so
// the page does not load again. Take the new token here and try again what the old one was refused.
window.addEventListener("hashchange", () => {
  if (!takeToken()) return;
  token = sessionStorage.getItem(TOKEN_KEY);
  const retry = pageRetry;
  hidePageBanner();
  if (labeler && labeler.failed.size) labeler.retry();
  if (retry) retry();
});

start();
