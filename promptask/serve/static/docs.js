// The API docs page: every operation of this server's OpenAPI document, with its request and answer schemas.
"use strict";

(() => {
  const { api, message, askForKey, setUpKeyForm, hasKey, resolve, element } = promptask;

  function schemaBlock(title, schema, root) {
    const details = element("details", { open: "" });
    details.appendChild(element("summary", {}, title));
    details.appendChild(element("pre", {}, JSON.stringify(resolve(schema, root), null, 2)));
    return details;
  }

  function show(document_) {
    const container = document.getElementById("operations");
    container.replaceChildren();
    const info = document_.info || {};
    document.getElementById("status").textContent =
      (info.title || "API") + " " + (info.version || "") + (info.description ? ": " + info.description : "");
    for (const [path, methods] of Object.entries(document_.paths || {})) {
      for (const [method, operation] of Object.entries(methods)) {
        const section = element("section", { class: "operation panel", id: (operation.operationId || path) });
        section.appendChild(element("h2", {}, method.toUpperCase() + " " + path));
        if (operation.summary) section.appendChild(element("p", {}, operation.summary));
        if (operation.description) section.appendChild(element("p", { class: "muted" }, operation.description));
        const body = operation.requestBody && operation.requestBody.content && operation.requestBody.content["application/json"];
        if (body) section.appendChild(schemaBlock("request body", body.schema, document_));
        const ok = operation.responses && operation.responses["200"];
        const content = ok && ok.content && ok.content["application/json"];
        if (content && content.schema && Object.keys(content.schema).length) {
          section.appendChild(schemaBlock("200 answer", content.schema, document_));
        }
        const codes = Object.keys(operation.responses || {}).filter((code) => code !== "200");
        if (codes.length) {
          const list = element("ul", { class: "codes" });
          for (const code of codes) list.appendChild(element("li", {}, code + ": " + operation.responses[code].description));
          section.appendChild(list);
        }
        container.appendChild(section);
      }
    }
  }

  async function load() {
    const answer = await api("openapi.json");
    if (answer.status === 401) {
      askForKey(load, hasKey());
      return;
    }
    if (answer.status !== 200) {
      document.getElementById("status").textContent = message(answer);
      return;
    }
    show(answer.body);
  }

  document.addEventListener("DOMContentLoaded", () => {
    setUpKeyForm();
    load();
  });
})();
