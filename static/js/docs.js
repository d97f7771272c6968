// The /docs page: renders the server's own openapi.json (fetched from the
// same server, nothing from elsewhere) as operations grouped by tag, with
// their parameters, request bodies, responses and schemas.
"use strict";

(function () {
  const METHODS = ["get", "put", "post", "patch", "delete", "options", "head", "trace"];

  /** An element with attributes and children (strings become text). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  /** Description text: `backticks` become code, the rest stays text. */
  function rich(text, tag = "p") {
    if (!text) return null;
    const parts = String(text).split("`");
    return el(tag, { class: "text" },
      parts.map((part, i) => (i % 2 ? el("code", {}, part) : part)));
  }

  function json(value) {
    return JSON.stringify(value);
  }

  function anchor(kind, name) {
    return kind + "-" + name.replace(/[^A-Za-z0-9_-]/g, "_");
  }

  function resolve(doc, ref) {
    if (!ref.startsWith("#/")) return undefined;
    let obj = doc;
    for (const raw of ref.slice(2).split("/")) {
      const part = decodeURIComponent(raw).replace(/~1/g, "/").replace(/~0/g, "~");
      if (obj === undefined || obj === null) return undefined;
      obj = obj[part];
    }
    return obj;
  }

  function follow(doc, obj) {
    let guard = 0;
    while (obj && obj.$ref && guard++ < 20) obj = resolve(doc, obj.$ref);
    return obj;
  }

  function refName(ref) {
    return ref.split("/").pop();
  }

  function isNull(schema) {
    return schema && schema.type === "null" && Object.keys(schema).length === 1;
  }

  // -- schemas ---------------------------------------------------------------------

  /** The facts of a schema that fit on one line: type, format, enum, bounds. */
  function facts(schema) {
    const out = [];
    if (schema.type !== undefined) {
      const types = [].concat(schema.type);
      out.push(el("span", { class: "type" }, types.join(" | ")));
    }
    if (schema.format) out.push(el("span", { class: "fact" }, "format: " + schema.format));
    if (schema.const !== undefined) {
      out.push(el("span", { class: "fact" }, "always ", el("code", {}, json(schema.const))));
    }
    if (schema.enum) {
      out.push(el("span", { class: "fact" }, "one of ",
        schema.enum.map((v, i) => [i ? ", " : "", el("code", {}, json(v))])));
    }
    if (schema.pattern) {
      out.push(el("span", { class: "fact" }, "pattern ", el("code", {}, schema.pattern)));
    }
    for (const [key, label] of [["minimum", "≥"], ["maximum", "≤"], ["minLength", "length ≥"],
      ["maxLength", "length ≤"], ["minItems", "items ≥"], ["maxItems", "items ≤"]]) {
      if (schema[key] !== undefined) {
        out.push(el("span", { class: "fact" }, label + " " + schema[key]));
      }
    }
    if (schema.uniqueItems) out.push(el("span", { class: "fact" }, "unique items"));
    if (schema.default !== undefined) {
      out.push(el("span", { class: "fact" }, "default ", el("code", {}, json(schema.default))));
    }
    if (schema.contentMediaType) {
      out.push(el("span", { class: "fact" }, "text of " + schema.contentMediaType));
    }
    return out;
  }

  /** A link to a component schema that expands in place when opened. */
  function refView(doc, ref, depth) {
    const name = refName(ref);
    const target = resolve(doc, ref);
    const box = el("details", { class: "ref" },
      el("summary", {}, el("a", { href: "#" + anchor("schema", name) }, name),
        target && target.description && depth < 1 ? " — " : "",
        target && target.description && depth < 1 ? rich(target.description, "span") : null));
    let filled = false;
    box.addEventListener("toggle", () => {
      if (box.open && !filled && target) {
        filled = true;
        box.append(schemaView(doc, target, depth + 1, { noDescription: true }));
      }
    });
    // The schema of a body or an answer is shown open; what it names, closed.
    if (depth === 0) box.open = true;
    return box;
  }

  function propertiesView(doc, schema, depth) {
    const required = new Set(schema.required || []);
    const rows = Object.entries(schema.properties || {}).map(([name, prop]) =>
      el("tr", {},
        el("td", { class: "name" }, el("code", {}, name),
          required.has(name) ? el("span", { class: "required", title: "required" }, " *") : null),
        el("td", {}, schemaView(doc, prop, depth + 1))));
    for (const name of required) {
      if (!(schema.properties || {})[name]) {
        rows.push(el("tr", {}, el("td", { class: "name" }, el("code", {}, name),
          el("span", { class: "required" }, " *")), el("td", {}, "any value")));
      }
    }
    const parts = [];
    if (rows.length) parts.push(el("table", { class: "props" }, el("tbody", {}, rows)));
    if (schema.additionalProperties === false) {
      parts.push(el("p", { class: "note" }, "No other keys."));
    } else if (schema.additionalProperties && typeof schema.additionalProperties === "object") {
      parts.push(el("div", { class: "note" }, rows.length ? "Other keys: " : "Each value: ",
        schemaView(doc, schema.additionalProperties, depth + 1)));
    }
    return parts;
  }

  /** A schema as nested boxes; `$ref`s expand on demand, so recursion is safe. */
  function schemaView(doc, schema, depth = 0, options = {}) {
    if (schema === true || schema === undefined) return el("span", { class: "type" }, "any value");
    if (schema === false) return el("span", { class: "type" }, "nothing");
    if (schema.$ref && Object.keys(schema).length === 1) return refView(doc, schema.$ref, depth);
    const box = el("div", { class: "schema" });
    if (schema.$ref) box.append(refView(doc, schema.$ref, depth));
    const variants = schema.anyOf || schema.oneOf;
    if (variants) {
      const real = variants.filter((v) => !isNull(v));
      const nullableOne = real.length === 1 && variants.length === 2;
      if (nullableOne) {
        box.append(schemaView(doc, real[0], depth), el("span", { class: "fact" }, "or null"));
      } else {
        box.append(el("div", { class: "note" }, schema.anyOf ? "Any of:" : "One of:"),
          el("ul", { class: "variants" }, variants.map((v) => el("li", {},
            schemaView(doc, v, depth + 1)))));
      }
    }
    const line = facts(schema);
    if (line.length) box.append(el("div", { class: "facts" }, line));
    if (schema.description && !options.noDescription) box.append(rich(schema.description));
    if (schema.properties || schema.required || schema.additionalProperties !== undefined) {
      box.append(...propertiesView(doc, schema, depth));
    }
    if (schema.items) {
      box.append(el("div", { class: "note" }, "Items: ", schemaView(doc, schema.items, depth + 1)));
    }
    if (schema.contentSchema) {
      box.append(el("div", { class: "note" }, "Parsed: ",
        schemaView(doc, schema.contentSchema, depth + 1)));
    }
    if (schema.not) {
      box.append(el("div", { class: "note" }, "Not: ", schemaView(doc, schema.not, depth + 1)));
    }
    for (const rule of schema.allOf || []) {
      if (rule.if) {
        box.append(el("div", { class: "rule" }, "When ", schemaView(doc, rule.if, depth + 1),
          "then ", schemaView(doc, rule.then || true, depth + 1)));
      } else {
        box.append(el("div", { class: "rule" }, "Also: ", schemaView(doc, rule, depth + 1)));
      }
    }
    return box;
  }

  // -- operations --------------------------------------------------------------------

  function parametersView(doc, params) {
    if (!params.length) return null;
    return el("section", {}, el("h4", {}, "Parameters"),
      el("table", { class: "params" },
        el("thead", {}, el("tr", {}, el("th", {}, "Name"), el("th", {}, "In"),
          el("th", {}, "Schema"), el("th", {}, "Description"))),
        el("tbody", {}, params.map((p) => el("tr", {},
          el("td", { class: "name" }, el("code", {}, p.style === "form" && p.explode &&
            p.schema && p.schema.type === "object" ? "…" : p.name),
            p.required ? el("span", { class: "required", title: "required" }, " *") : null),
          el("td", {}, p.in),
          el("td", {}, schemaView(doc, p.schema || true, 1, { noDescription: true })),
          el("td", {}, rich(p.description)))))));
  }

  function contentView(doc, content) {
    return Object.entries(content || {}).map(([type, media]) =>
      el("div", { class: "media" }, el("div", { class: "ctype" }, type),
        media.schema ? schemaView(doc, media.schema, 0) : null));
  }

  function bodyView(doc, body) {
    if (!body) return null;
    body = follow(doc, body);
    return el("section", {}, el("h4", {}, "Request body", body.required ? "" : " (optional)"),
      rich(body.description), contentView(doc, body.content));
  }

  function responsesView(doc, responses) {
    return el("section", {}, el("h4", {}, "Responses"),
      Object.entries(responses || {}).map(([status, response]) => {
        response = follow(doc, response) || {};
        const kind = status[0] === "2" ? "ok" : status[0] === "4" ? "client" : "server";
        return el("details", { class: "response " + kind, open: status[0] === "2" },
          el("summary", {}, el("span", { class: "status " + kind }, status), " ",
            rich(response.description, "span")),
          contentView(doc, response.content));
      }));
  }

  function operationView(doc, path, method, operation) {
    const id = anchor("op", method + path);
    const secured = (operation.security || doc.security || []).length > 0;
    const params = (doc.paths[path].parameters || []).concat(operation.parameters || [])
      .map((p) => follow(doc, p));
    const card = el("details", { class: "op", id },
      el("summary", {},
        el("span", { class: "method " + method }, method.toUpperCase()), " ",
        el("code", { class: "path" }, path), " ",
        rich(operation.summary, "span") || "",
        secured ? el("span", { class: "lock", title: "needs a bearer token" }, "token") : null));
    let filled = false;
    const fill = () => {
      if (filled) return;
      filled = true;
      card.append(el("div", { class: "op-body" },
        rich(operation.description),
        secured ? el("p", { class: "note" }, "Needs ", el("code", {}, "Authorization: Bearer <token>"),
          " from ", el("code", {}, "POST /user/login"), ".") : null,
        parametersView(doc, params),
        bodyView(doc, operation.requestBody),
        responsesView(doc, operation.responses),
        el("p", { class: "permalink" }, el("a", { href: "#" + id }, "link to this operation"))));
    };
    card.addEventListener("toggle", () => card.open && fill());
    card.dataset.search = [method, path, operation.summary, operation.operationId,
      operation.description].join(" ").toLowerCase();
    return card;
  }

  function render(doc) {
    const content = document.getElementById("content");
    const toc = document.getElementById("toc-list");
    content.replaceChildren();
    document.getElementById("title").textContent =
      (doc.info.title || "API") + " " + (doc.info.version || "") + " — API reference";
    document.title = document.getElementById("title").textContent;
    const summary = document.getElementById("summary");
    summary.replaceChildren(rich(doc.info.description, "span") || "",
      " Rendered from ", el("a", { href: "openapi.json" }, "openapi.json"),
      " (OpenAPI " + doc.openapi + ").");

    const tags = (doc.tags || []).map((t) => t.name);
    const byTag = new Map(tags.map((t) => [t, []]));
    for (const [path, item] of Object.entries(doc.paths || {})) {
      for (const method of METHODS) {
        if (!item[method]) continue;
        const tag = (item[method].tags || ["other"])[0];
        if (!byTag.has(tag)) byTag.set(tag, []);
        byTag.get(tag).push([path, method, item[method]]);
      }
    }
    const tagInfo = new Map((doc.tags || []).map((t) => [t.name, t]));
    const cards = [];
    for (const [tag, ops] of byTag) {
      if (!ops.length) continue;
      const section = el("section", { class: "tag", id: anchor("tag", tag) },
        el("h2", {}, tag), rich((tagInfo.get(tag) || {}).description));
      const links = el("ul", {});
      for (const [path, method, operation] of ops) {
        const card = operationView(doc, path, method, operation);
        cards.push(card);
        section.append(card);
        const link = el("li", {}, el("a", { href: "#" + card.id },
          el("span", { class: "method small " + method }, method.toUpperCase()), " ", path));
        link.dataset.search = card.dataset.search;
        links.append(link);
      }
      content.append(section);
      toc.append(el("div", { class: "toc-tag" },
        el("a", { href: "#" + section.id, class: "toc-tag-name" }, tag), links));
    }

    const schemas = (doc.components || {}).schemas || {};
    const schemaSection = el("section", { class: "tag", id: "schemas" }, el("h2", {}, "Schemas"));
    for (const [name, schema] of Object.entries(schemas)) {
      schemaSection.append(el("div", { class: "component", id: anchor("schema", name) },
        el("h3", {}, name), schemaView(doc, schema, 0)));
    }
    content.append(schemaSection);
    toc.append(el("div", { class: "toc-tag" }, el("a", { href: "#schemas", class: "toc-tag-name" },
      "schemas")));

    const filter = document.getElementById("filter");
    filter.addEventListener("input", () => {
      const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
      const hit = (node) => words.every((w) => node.dataset.search.includes(w));
      for (const node of document.querySelectorAll("[data-search]")) {
        node.hidden = words.length > 0 && !hit(node);
      }
    });

    const openHash = () => {
      const target = location.hash && document.getElementById(decodeURIComponent(location.hash.slice(1)));
      if (!target) return;
      if (target.tagName === "DETAILS") target.open = true;
      target.scrollIntoView();
    };
    window.addEventListener("hashchange", openHash);
    openHash();
  }

  fetch("openapi.json", { headers: { Accept: "application/json" } })
    .then((resp) => {
      if (!resp.ok) throw new Error("GET openapi.json answered " + resp.status);
      return resp.json();
    })
    .then(render)
    .catch((err) => {
      const status = document.getElementById("status");
      if (status) status.textContent = "Could not render openapi.json: " + err.message;
    });
})();
