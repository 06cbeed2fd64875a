// Calls to the service: the API key header, round-trip timing and readable errors.

export class ApiError extends Error {
  /**
   * @param {string} message A sentence for the page.
   * @param {number} status The HTTP status (0: no answer).
   * @param {string} [kind] For a 503: "failed", "loading" or "busy" (see unavailability).
   * @param {string} [detail] The server's own words.
   */
  constructor(message, status, kind = "", detail = "") {
    super(message);
    this.status = status;
    this.kind = kind;
    this.detail = detail;
  }
}

/**
 * What a 503 means, from its body: the service words a model that failed to load (for good)
 * "the model failed to load: ...", one still loading "the model is still loading..."
 * (app/inference.py, routes/health.py); anything else is a full queue or a shutdown (busy).
 * @param {string} detail The body's detail.
 * @returns {"failed" | "loading" | "busy"}
 */
export function unavailability(detail) {
  if (/^the model failed to load/i.test(detail)) return "failed";
  if (/^the model is still loading/i.test(detail)) return "loading";
  return "busy";
}

/** The service's {"detail": str | [{loc, msg}]} as one string. */
export function detailOf(body) {
  const detail = body && body.detail;
  if (!Array.isArray(detail)) return detail ? String(detail) : "";
  return detail.map((e) => `${(e.loc || []).filter((p) => p !== "body").join(".")}: ${e.msg}`).join("; ");
}

export function sentence(text) {
  return text.charAt(0).toUpperCase() + text.slice(1).replace(/[.\s]*$/, ".");
}

/** An ApiError for an answer that is not 2xx, worded for the page. */
function failure(status, body, response) {
  const detail = detailOf(body) || response.statusText || "no details";
  const error = (message, kind = "") => new ApiError(message, status, kind, detail);
  if (status === 401) return error(`${detail}. Enter the server's API key at the top of the page.`);
  if (status === 413) return error(`Too large: ${detail}.`);
  if (status === 503) {
    const kind = unavailability(detail);
    if (kind !== "busy") return error(sentence(detail), kind);
    const retry = response.headers.get("Retry-After");
    return error(`The server is busy: ${detail}${retry ? ` (retry in ${retry} s)` : ""}.`, kind);
  }
  if (status === 504) return error(`Took too long: ${detail}.`);
  return error(`${detail} (HTTP ${status}).`);
}

export class Api {
  /**
   * @param {() => string} apiKey The current API key ("" for none).
   * @param {(entry: {label: string, ms: number, ok: boolean, note?: string}) => void} onTiming
   */
  constructor(apiKey, onTiming) {
    this.apiKey = apiKey;
    this.onTiming = onTiming;
  }

  async request(label, path, { json, form, signal, accept = "json" } = {}) {
    const headers = {};
    const key = this.apiKey();
    if (key) headers["X-API-Key"] = key;
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form !== undefined) {
      body = form;
    }
    const started = performance.now();
    let response;
    try {
      response = await fetch(path, { method: body ? "POST" : "GET", headers, body, signal });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      this.onTiming({ label, ms: performance.now() - started, ok: false, note: "no answer" });
      throw new ApiError(`Cannot reach the server for ${label} (${err.message}).`, 0);
    }
    if (!response.ok) {
      const text = await response.text();
      let parsed = null;
      try { parsed = JSON.parse(text); } catch { parsed = { detail: text.slice(0, 200) }; }
      this.onTiming({ label, ms: performance.now() - started, ok: false, note: `HTTP ${response.status}` });
      throw failure(response.status, parsed, response);
    }
    const result = accept === "blob" ? await response.blob() : await response.json();
    return { result, ms: performance.now() - started };
  }

  embed(file) {
    const form = new FormData();
    form.append("image", file, file.name || "image");
    return this.request("encode", "/embed", { form });
  }

  segment(body, signal) {
    return this.request("decode", "/segment", { json: body, signal });
  }

  masks(body) {
    return this.request("everything", "/masks", { json: body });
  }

  edges(body) {
    return this.request("edges", "/edges", { json: { ...body, format: "png" }, accept: "blob" });
  }
}
