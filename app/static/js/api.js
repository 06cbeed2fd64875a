// Calls to the service: the API key header, round-trip timing and readable errors.

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

// The service answers errors as {"detail": str | [{loc, msg}]}; turn that into one sentence.
function describe(status, body, response) {
  let detail = body && body.detail;
  if (Array.isArray(detail)) {
    detail = detail.map((e) => `${(e.loc || []).filter((p) => p !== "body").join(".")}: ${e.msg}`).join("; ");
  }
  detail = detail || response.statusText || "no details";
  if (status === 401) return `${detail}. Enter the server's API key at the top of the page.`;
  if (status === 413) return `Too large: ${detail}.`;
  if (status === 503) {
    const retry = response.headers.get("Retry-After");
    return `The server is busy: ${detail}${retry ? ` (retry in ${retry} s)` : ""}.`;
  }
  if (status === 504) return `Took too long: ${detail}.`;
  return `${detail} (HTTP ${status}).`;
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
      throw new ApiError(describe(response.status, parsed, response), response.status);
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
