// The playground: list the tasks, build a form from the chosen task's input schema, run it, show the answer.
"use strict";

(() => {
  const { api, message, askForKey, setUpKeyForm, hasKey, resolve, element } = promptask;
  const $ = (id) => document.getElementById(id);
  let tasks = [];
  let current = null; // {task, fields: [{name, read, node}]}

  // The schema without its null alternative, and whether null is allowed.
  function nonNull(schema) {
    const options = schema.anyOf || schema.oneOf;
    if (Array.isArray(options)) {
      const rest = options.filter((option) => option.type !== "null");
      if (rest.length === 1 && rest.length < options.length) {
        const merged = Object.assign({}, schema, rest[0]);
        delete merged.anyOf;
        delete merged.oneOf;
        return { schema: merged, nullable: true };
      }
    }
    if (Array.isArray(schema.type)) {
      const types = schema.type.filter((type) => type !== "null");
      if (types.length === 1) return { schema: Object.assign({}, schema, { type: types[0] }), nullable: true };
    }
    return { schema, nullable: false };
  }

  function isScalar(schema) {
    return ["string", "integer", "number"].includes(schema && schema.type);
  }

  // One input: a control for its type, and a reader giving {present, value}.
  function control(name, raw, required) {
    const { schema, nullable } = nonNull(raw);
    const id = "input-" + name;
    const hasDefault = Object.prototype.hasOwnProperty.call(raw, "default");
    const initial = hasDefault ? raw.default : undefined;
    let node;
    let read;
    if (Array.isArray(schema.enum)) {
      node = element("select", { id, name });
      if (!required) node.appendChild(element("option", { value: "" }, nullable ? "(none)" : "(default)"));
      schema.enum.forEach((value, i) => {
        const option = element("option", { value: String(i) }, typeof value === "string" ? value : JSON.stringify(value));
        if (value === initial) option.selected = true;
        node.appendChild(option);
      });
      read = () => (node.value === "" ? { present: false } : { present: true, value: schema.enum[Number(node.value)] });
    } else if (schema.type === "boolean") {
      node = element("input", { id, name, type: "checkbox" });
      node.checked = initial === true;
      read = () => ({ present: true, value: node.checked });
    } else if (schema.type === "integer" || schema.type === "number") {
      node = element("input", { id, name, type: "number", step: schema.type === "integer" ? "1" : "any" });
      if (schema.minimum !== undefined) node.min = String(schema.minimum);
      if (schema.maximum !== undefined) node.max = String(schema.maximum);
      if (typeof initial === "number") node.value = String(initial);
      read = () => {
        const text = node.value.trim();
        if (text === "") return { present: false };
        const number = Number(text);
        return { present: true, value: Number.isFinite(number) ? number : text }; // the server names a bad number
      };
    } else if (schema.type === "array" && isScalar(schema.items)) {
      node = element("textarea", { id, name, rows: "4", placeholder: "one item per line" });
      if (Array.isArray(initial)) node.value = initial.join("\n");
      const numeric = schema.items.type !== "string";
      read = () => {
        const lines = node.value.split("\n").map((line) => line.trim()).filter((line) => line !== "");
        if (lines.length === 0 && !required) return { present: false };
        return { present: true, value: numeric ? lines.map((line) => (Number.isFinite(Number(line)) ? Number(line) : line)) : lines };
      };
    } else if (schema.type === "string") {
      node = element("textarea", { id, name, rows: "4" });
      if (schema.maxLength !== undefined) node.maxLength = schema.maxLength;
      if (typeof initial === "string") node.value = initial;
      read = () => {
        if (node.value === "" && !required) return { present: false };
        return { present: true, value: node.value };
      };
    } else {
      // Objects, arrays of objects, unions: JSON text.
      node = element("textarea", { id, name, rows: "4", placeholder: "JSON", class: "json" });
      if (initial !== undefined) node.value = JSON.stringify(initial, null, 2);
      read = () => {
        const text = node.value.trim();
        if (text === "") return { present: false };
        try {
          return { present: true, value: JSON.parse(text) };
        } catch (_) {
          return { present: true, value: text }; // the server says what is wrong with it
        }
      };
    }
    node.dataset.kind = node.tagName.toLowerCase() === "input" ? node.type : node.tagName.toLowerCase();
    return { node, read };
  }

  function showTask(task) {
    const schema = resolve(task.input_schema, task.input_schema);
    const required = new Set(schema.required || []);
    const container = $("fields");
    container.replaceChildren();
    const fields = [];
    for (const [name, property] of Object.entries(schema.properties || {})) {
      const { node, read } = control(name, property, required.has(name));
      const wrapper = element("div", { class: "field", "data-field": name });
      const label = element("label", { for: node.id }, (property.title || name) + (required.has(name) ? " *" : ""));
      wrapper.appendChild(label);
      if (property.description) wrapper.appendChild(element("p", { class: "hint" }, property.description));
      wrapper.appendChild(node);
      wrapper.appendChild(element("p", { class: "field-error", hidden: "" }));
      container.appendChild(wrapper);
      fields.push({ name, read, wrapper });
    }
    current = { task, fields };
    $("task-name").textContent = task.name;
    $("task-description").textContent = task.description || "";
    $("task-panel").hidden = false;
    $("result").hidden = true;
    $("error").hidden = true;
    for (const item of document.querySelectorAll("#task-list button")) {
      item.setAttribute("aria-current", item.dataset.task === task.name ? "true" : "false");
    }
  }

  function clearErrors() {
    $("error").hidden = true;
    $("error").replaceChildren();
    for (const field of current.fields) {
      field.wrapper.classList.remove("invalid");
      const note = field.wrapper.querySelector(".field-error");
      note.hidden = true;
      note.textContent = "";
    }
  }

  function showError(answer) {
    const box = $("error");
    box.replaceChildren(element("strong", {}, "HTTP " + answer.status + ": "), document.createTextNode(message(answer)));
    const error = (answer.body && answer.body.error) || {};
    for (const problem of error.fields || []) {
      const field = current.fields.find((f) => f.name === problem.field.split(".")[0]);
      if (!field) continue;
      field.wrapper.classList.add("invalid");
      const note = field.wrapper.querySelector(".field-error");
      note.hidden = false;
      note.textContent = problem.message;
    }
    if (Array.isArray(error.attempts)) {
      const list = element("ol", { class: "attempts" });
      for (const attempt of error.attempts) list.appendChild(element("li", {}, attempt.error + " — " + attempt.raw));
      box.appendChild(list);
    }
    box.hidden = false;
  }

  function showResult(body) {
    $("output").textContent = JSON.stringify(body.output, null, 2);
    $("confidence").textContent = typeof body.confidence === "number" ? body.confidence.toFixed(3) : "not scored by this backend";
    $("attempts").textContent = String(body.attempts.length);
    $("latency").textContent = body.latency_s < 1 ? (body.latency_s * 1000).toFixed(1) + " ms" : body.latency_s.toFixed(2) + " s";
    $("cached").textContent = body.cached ? "yes" : "no";
    const usage = body.usage || {};
    $("tokens").textContent = (usage.prompt_tokens || 0) + " prompt, " + (usage.completion_tokens || 0) + " completion";
    $("result").hidden = false;
  }

  async function run(event) {
    if (event) event.preventDefault();
    if (!current) return;
    clearErrors();
    const inputs = {};
    for (const field of current.fields) {
      const { present, value } = field.read();
      if (present) inputs[field.name] = value;
    }
    $("run").disabled = true;
    $("running").hidden = false;
    try {
      const answer = await api(current.task.endpoint.replace(/^\//, ""), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(inputs),
      });
      if (answer.status === 401) {
        askForKey(() => run(), hasKey());
      } else if (answer.status === 200) {
        showResult(answer.body);
      } else {
        $("result").hidden = true;
        showError(answer);
      }
    } catch (error) {
      showError({ status: 0, body: { error: { message: "the server cannot be reached (" + error + ")" } } });
    } finally {
      $("run").disabled = false;
      $("running").hidden = true;
    }
  }

  function listTasks() {
    const list = $("task-list");
    list.replaceChildren();
    for (const task of tasks) {
      const button = element("button", { type: "button", "data-task": task.name, title: task.description || "" }, task.name);
      button.addEventListener("click", () => showTask(task));
      const item = element("li");
      item.appendChild(button);
      list.appendChild(item);
    }
    $("status").textContent = tasks.length + " task" + (tasks.length === 1 ? "" : "s");
  }

  async function load() {
    let answer;
    try {
      answer = await api("tasks");
    } catch (error) {
      $("status").textContent = "The server cannot be reached (" + error + ").";
      return;
    }
    if (answer.status === 401) {
      $("status").textContent = "Waiting for the API key…";
      askForKey(load, hasKey());
      return;
    }
    if (answer.status !== 200) {
      $("status").textContent = message(answer);
      return;
    }
    tasks = answer.body.tasks;
    listTasks();
    const wanted = new URLSearchParams(location.search).get("task");
    const first = tasks.find((task) => task.name === wanted) || null;
    if (first) showTask(first);
  }

  document.addEventListener("DOMContentLoaded", () => {
    setUpKeyForm();
    $("task-form").addEventListener("submit", run);
    load();
  });
})();
