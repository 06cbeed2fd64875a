// The page's shared pieces: element lookups and the state every other module reads and changes.
// The prompts, answer, candidate and history here are those of the object being prompted.

export const $ = (id) => document.getElementById(id);
export const area = $("stage-area");
export const imageCanvas = $("image-canvas");
export const overlay = $("overlay");
export const promptLayer = $("prompts");

export const state = {
  image: null, // {name, width, height, embeddingId}
  prompts: { points: [], labels: [], box: null }, // XY / XYXY pixels of the image
  history: [], // earlier prompts, for undo
  answer: null, // the /segment answer for the prompts, masks decoded
  selected: 0, // index into answer.masks
  logitsId: null, // of the last answer, for refining
  // Finished objects: {id, label, prompts, history, answer, selected, logitsId, visible}.
  objects: [],
  editing: null, // id of the object being prompted, when it is a reopened one
  nextObjectId: 1,
  view: "prompt", // "prompt" | "everything" | "edges"
  everything: null, // {key, masks} of /masks
  edges: null, // {key, bitmap} of /edges
  segmentCalls: 0,
  inFlight: null, // AbortController of the /segment call under way
};
