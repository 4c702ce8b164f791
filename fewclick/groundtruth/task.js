// FewClick Ground Truth task glue: runs the labeling core against the segmentation API inside a
// crowd-form task and submits the worker's label map plus the clicks that produced it.
//
// Not a module of its own: fewclick/groundtruth/template.py inlines it right AFTER
// fewclick/ui/labeling-core.js into one <script type="module">, so the core's top-level
// `createLabeler` and `rleToMask` are in scope here (one JS source for the labeling logic).
// Everything task-specific arrives through #fc-task's data attributes (see template.liquid.html).

const taskData = document.getElementById("fc-task").dataset;
const taskLabels = Array.from(document.querySelectorAll("#fc-labels > li"), (li) => li.textContent.trim()).filter(
  (label) => label.length > 0,
);
const taskPalette = JSON.parse(taskData.palette);
const answerInput = document.getElementById("fc-answer");
const statusLine = document.getElementById("fc-status");

function setStatus(kind, text) {
  statusLine.dataset.kind = kind;
  statusLine.textContent = text;
}

function colorOf(label) {
  // Class i (1-based, label-category order) is painted palette[i - 1]; the consolidation Lambda
  // reads colours back through labelMappings, so they only need to be distinct and exact.
  const index = taskLabels.indexOf(label);
  return taskPalette[index >= 0 ? index : 0];
}

function rgbOf(hex) {
  const n = Number.parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

const taskLabeler = createLabeler(document.getElementById("fc-root"), {
  // The task route: same contract as /v1/segment, authorised by the task token (an API Gateway
  // Lambda authorizer) instead of Cognito, and limited to this task's image.
  apiBaseUrl: `${taskData.apiUrl.replace(/\/+$/, "")}/v1/task`,
  getToken: () => taskData.token,
  // A worker has no link with a token: the task's own token expired (the task outlived it) or was refused.
  authHint: "This task's access has expired: release the task and take it again from your worker portal.",
  labels: taskLabels.length ? taskLabels : ["object"],
  onChange: (info) => {
    if (info.pending) setStatus("info", "Segmenting…");
    else if (info.withoutMask) setStatus("error", `${info.withoutMask} object(s) have no mask (the request failed, see above): retry or undo.`);
    else if (info.incomplete) setStatus("info", `${info.incomplete} object(s) still need 4 extreme points.`);
    else setStatus("info", `${info.complete} object(s) ready to submit.`);
  },
});

taskLabeler
  .open({ url: taskData.imageUrl, getApiImage: async () => ({ s3Uri: taskData.imageS3 }) })
  .catch((err) => setStatus("error", `The image could not be loaded: ${err && err.message ? err.message : err}`));

/** The answer (shape documented in fewclick_contract/labelmap.py); null while nothing can be submitted. */
function buildAnswer() {
  if (!taskLabeler.image) return null;
  const { objects, incomplete, withoutMask } = taskLabeler.exportObjects();
  const { width, height } = taskLabeler.image;
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(width, height);
  pixels.data.fill(255); // white, opaque: the background colour, and alpha 255 keeps colours exact
  for (const obj of objects) {
    // Later objects are painted over earlier ones (the object list's order).
    const [r, g, b] = rgbOf(colorOf(obj.label));
    const bits = rleToMask(obj.mask);
    for (let i = 0; i < bits.data.length; i += 1) {
      if (bits.data[i]) {
        pixels.data[4 * i] = r;
        pixels.data[4 * i + 1] = g;
        pixels.data[4 * i + 2] = b;
      }
    }
  }
  context.putImageData(pixels, 0, 0);
  const pngImageData = canvas.toDataURL("image/png").split(",", 2)[1];
  return {
    format: taskData.answerFormat,
    inputImageProperties: { height, width },
    labelMappings: Object.fromEntries(taskLabels.map((label) => [label, { color: colorOf(label) }])),
    labeledImage: { pngImageData },
    // Auditable and replayable: the clicks of every object, and the model that turned them into masks.
    objects: objects.map((obj) => ({
      label: obj.label,
      extremePoints: obj.extremePoints,
      clicks: obj.clicks,
      modelVersion: obj.modelVersion,
      // Indices into `clicks` the submitted mask does not follow (the API's answer): a reviewer can
      // find the objects a worker accepted against their own clicks.
      missedClicks: obj.missedClicks,
    })),
    skipped: { incomplete, withoutMask },
  };
}

function submitProblem() {
  if (!taskLabeler.image) return "The image has not loaded yet.";
  const { incomplete, withoutMask } = taskLabeler.exportObjects();
  if (incomplete) return `${incomplete} object(s) have fewer than 4 extreme points: finish or delete them.`;
  if (withoutMask) {
    return `${withoutMask} object(s) have no mask yet: wait for segmenting to finish, or retry / delete them.`;
  }
  return null;
}

// crowd-form calls onsubmit before it serialises its named inputs; preventDefault() keeps the task
// open (the validation pattern of Ground Truth's sample templates).
document.querySelector("crowd-form").onsubmit = (event) => {
  const problem = submitProblem();
  if (problem) {
    event.preventDefault();
    setStatus("error", problem);
    return;
  }
  answerInput.value = JSON.stringify(buildAnswer());
};

// For debugging in the worker's console and for the headless test.
window.fewclickTask = { labeler: taskLabeler, buildAnswer, submitProblem };
