// Shared by the playground and the docs page: JSON requests to this server, and the API key.
// The key lives in this variable only: never in storage, cookies or the URL.
"use strict";

const promptask = (() => {
  let apiKey = null;
  let retry = null;

  async function api(path, options) {
    const init = Object.assign({}, options || {});
    const headers = Object.assign({ Accept: "application/json" }, init.headers || {});
    if (apiKey !== null) headers.Authorization = "Bearer " + apiKey;
    init.headers = headers;
    const response = await fetch(path, init);
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    return { status: response.status, body, headers: response.headers };
  }

  function message(answer) {
    if (answer.body && answer.body.error) return answer.body.error.message;
    return "HTTP " + answer.status;
  }

  // Ask for the key (once: it is reused until the server refuses it), then call `then` again.
  function askForKey(then, refused) {
    retry = then;
    const panel = document.getElementById("key-panel");
    const error = document.getElementById("key-error");
    panel.hidden = false;
    error.hidden = !refused;
    error.textContent = refused ? "The server refused that key." : "";
    document.getElementById("api-key").focus();
  }

  function setUpKeyForm() {
    const form = document.getElementById("key-form");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const input = document.getElementById("api-key");
      apiKey = input.value.trim();
      input.value = "";
      document.getElementById("key-panel").hidden = true;
      if (retry) retry();
    });
  }

  function hasKey() {
    return apiKey !== null;
  }

  // Inline every local $ref against `root` (a cycle stops at its first repeat).
  function resolve(schema, root, seen) {
    const trail = seen || [];
    if (Array.isArray(schema)) return schema.map((item) => resolve(item, root, trail));
    if (!schema || typeof schema !== "object") return schema;
    if (typeof schema.$ref === "string" && schema.$ref.startsWith("#/")) {
      if (trail.includes(schema.$ref)) return { $ref: schema.$ref };
      let target = root;
      for (const part of schema.$ref.slice(2).split("/")) {
        target = target ? target[part.replace(/~1/g, "/").replace(/~0/g, "~")] : undefined;
      }
      const rest = Object.assign({}, schema);
      delete rest.$ref;
      return resolve(Object.assign({}, target || {}, rest), root, trail.concat([schema.$ref]));
    }
    const out = {};
    for (const [key, value] of Object.entries(schema)) {
      if (key !== "$defs") out[key] = resolve(value, root, trail);
    }
    return out;
  }

  function element(tag, attributes, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  return { api, message, askForKey, setUpKeyForm, hasKey, resolve, element };
})();
