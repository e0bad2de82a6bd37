/* Sightline console: a single page over the HTTP API (docs/console.md).
 *
 * Vanilla JavaScript, no framework and no build step. The key typed at login is kept in
 * this tab's sessionStorage and sent as "Authorization: Bearer <key>" with every API
 * call; nothing is loaded from anywhere but this origin. Pages are hash routes
 * (#/search, #/alerts, #/density, #/operations, #/audit) and only those the key's role
 * may use (GET /whoami) are offered.
 */
"use strict";

(() => {
  const KEY_STORE = "sightline.key";
  const API_ROOT = new URL("../", window.location.href); // the console lives at <api>/console/
  const SVG_NS = "http://www.w3.org/2000/svg";

  const state = {
    who: null, // {principal, role, key_id}
    site: null, // GET /site, or null when it cannot be read
    palette: [], // [{name, rgb}]
    cleanup: [], // run when leaving a page (timers, streams)
    search: null, // {id, query, result, routes: {key: route}, photoNames: []}
  };

  // ------------------------------------------------------------------ small helpers

  /** An element: h("div", {class: "x", onclick: fn}, child, "text", ...). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  /** An SVG element, same calling convention as h(). */
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function setAttrs(el, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on") && typeof value === "function") {
        el.addEventListener(name.slice(2), value);
      } else if (name === "text") {
        el.textContent = String(value);
      } else {
        el.setAttribute(name, value === true ? "" : String(value));
      }
    }
  }

  function append(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  }

  function $(id) {
    return document.getElementById(id);
  }

  function toast(message) {
    const el = $("toast");
    el.textContent = message;
    window.clearTimeout(toast.timer);
    toast.timer = window.setTimeout(() => {
      el.textContent = "";
    }, 5000);
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const timer = window.setTimeout(resolve, ms);
      if (signal) signal.addEventListener("abort", () => {
        window.clearTimeout(timer);
        resolve();
      });
    });
  }

  /** A time (ISO string or epoch seconds) as "2026-03-02 14:00:05 UTC". */
  function fmtTime(value) {
    if (value === null || value === undefined || value === "") return "—";
    const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    if (Number.isNaN(date.getTime())) return String(value);
    return date.toISOString().replace("T", " ").replace(/\.\d+Z$|Z$/, "") + " UTC";
  }

  function fmtNum(value, digits = 2) {
    if (value === null || value === undefined || Number.isNaN(Number(value))) return "—";
    return Number(value).toFixed(digits);
  }

  function pct(value) {
    return value === null || value === undefined ? "—" : `${Math.round(value * 100)} %`;
  }

  /** A datetime-local value (read as UTC) as an ISO string, or null. */
  function localToIso(value) {
    if (!value) return null;
    const withSeconds = value.length === 16 ? `${value}:00` : value;
    return `${withSeconds}Z`;
  }

  /** A Date as a datetime-local value in UTC (minutes). */
  function isoToLocal(date) {
    return date.toISOString().slice(0, 16);
  }

  // ------------------------------------------------------------------ API

  class ApiError extends Error {
    constructor(status, kind, detail) {
      super(`HTTP ${status} ${kind}: ${detail}`);
      this.status = status;
      this.kind = kind;
      this.detail = detail;
    }
  }

  function key() {
    return window.sessionStorage.getItem(KEY_STORE);
  }

  function apiUrl(path, params) {
    const url = new URL(path.replace(/^\//, ""), API_ROOT);
    for (const [name, value] of Object.entries(params || {})) {
      if (value === null || value === undefined || value === "") continue;
      for (const v of Array.isArray(value) ? value : [value]) url.searchParams.append(name, v);
    }
    return url;
  }

  async function asError(response) {
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    const kind = (body && body.error) || response.statusText || "error";
    const detail = body && body.detail !== undefined ? body.detail : "";
    return new ApiError(
      response.status,
      kind,
      typeof detail === "string" ? detail : JSON.stringify(detail),
    );
  }

  /** Call the API; JSON in and out unless `raw`. 401 logs out. */
  async function api(path, { method = "GET", params, json, body, raw = false, signal } = {}) {
    const headers = { Authorization: `Bearer ${key()}` };
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    }
    const response = await fetch(apiUrl(path, params), { method, headers, body, signal });
    if (!response.ok) {
      const error = await asError(response);
      if (response.status === 401 && state.who) {
        logout(`Your key was refused (${error.detail}). Log in again.`);
      }
      throw error;
    }
    if (raw) return response;
    return response.json();
  }

  function errorBox(error) {
    const text = error instanceof ApiError ? error.message : `Error: ${error.message || error}`;
    return h("div", { class: "errors", role: "alert" }, text);
  }

  function liveError(error) {
    if (error instanceof ApiError && error.status === 503) {
      return h("p", { class: "notice", role: "status" },
        "Pipeline not running: ", error.detail);
    }
    return errorBox(error);
  }

  // ------------------------------------------------------------------ pages and routing

  const PAGES = [
    { id: "search", title: "Search", roles: ["analyst"], render: renderSearch },
    {
      id: "alerts",
      title: (role) => (role === "analyst" ? "Watches & alerts" : "Alerts"),
      roles: ["analyst", "data", "operator"],
      render: renderAlerts,
    },
    { id: "density", title: "Density", roles: ["data"], render: renderDensity },
    { id: "operations", title: "Operations", roles: ["operator"], render: renderOperations },
    { id: "audit", title: "Audit", roles: ["admin"], render: renderAudit },
  ];

  function pageTitle(page) {
    return typeof page.title === "function" ? page.title(state.who.role) : page.title;
  }

  function allowedPages() {
    return state.who ? PAGES.filter((p) => p.roles.includes(state.who.role)) : [];
  }

  function leavePage() {
    for (const fn of state.cleanup.splice(0)) {
      try {
        fn();
      } catch (_) {
        /* ignore */
      }
    }
  }

  function renderNav(current) {
    const nav = clear($("nav"));
    for (const page of allowedPages()) {
      nav.append(h("a", {
        href: `#/${page.id}`,
        "aria-current": page.id === current ? "page" : null,
        text: pageTitle(page),
      }));
    }
    $("who").textContent = state.who ? `${state.who.principal} · ${state.who.role}` : "";
    $("logout").hidden = !state.who;
    $("site-name").textContent = state.site ? state.site.name : "";
  }

  function pageHeading(text) {
    return h("h1", { id: "page-title", tabindex: "-1", text });
  }

  async function route() {
    leavePage();
    const main = clear($("main"));
    const id = (window.location.hash.replace(/^#\/?/, "").split("?")[0] || "").trim();
    if (!state.who) {
      renderNav(null);
      renderLogin(main);
      return;
    }
    const allowed = allowedPages();
    if (!id || id === "login") {
      window.location.replace(`#/${allowed.length ? allowed[0].id : "none"}`);
      return;
    }
    renderNav(id);
    const page = PAGES.find((p) => p.id === id);
    if (!page || !allowed.includes(page)) {
      main.append(
        pageHeading("Not available"),
        h("p", { class: "notice", role: "status" },
          page
            ? `The ${pageTitle(page)} page is not available to the ${state.who.role} role.`
            : "There is no such page.",
          allowed.length ? " Use the pages in the menu above." : ""),
      );
      focusHeading();
      return;
    }
    document.title = `${pageTitle(page)} · Sightline`;
    page.render(main);
    focusHeading();
  }

  function focusHeading() {
    const heading = $("page-title");
    if (heading) heading.focus({ preventScroll: true });
  }

  // ------------------------------------------------------------------ login

  function renderLogin(main) {
    document.title = "Log in · Sightline";
    const errors = h("div", { class: "errors", role: "alert", id: "login-errors" });
    const input = h("input", {
      id: "api-key", name: "api-key", type: "password", autocomplete: "off",
      spellcheck: "false", required: true, "aria-describedby": "api-key-hint",
    });
    const form = h("form", { class: "panel login", novalidate: true },
      pageHeading("Log in"),
      h("label", { for: "api-key", text: "API key" }),
      input,
      h("p", { class: "hint", id: "api-key-hint" },
        "Paste the key you were given (sl_…). It is kept in this browser tab only and sent "
          + "with each request; closing the tab forgets it."),
      errors,
      h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", text: "Log in" })),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clear(errors);
      const value = input.value.trim();
      if (!value) {
        input.setAttribute("aria-invalid", "true");
        errors.textContent = "Enter an API key.";
        input.focus();
        return;
      }
      input.removeAttribute("aria-invalid");
      window.sessionStorage.setItem(KEY_STORE, value);
      try {
        await login();
      } catch (error) {
        window.sessionStorage.removeItem(KEY_STORE);
        errors.textContent = error instanceof ApiError && error.status === 401
          ? `The key was refused: ${error.detail}`
          : `Cannot log in: ${error.message || error}`;
        input.focus();
      }
    });
    main.append(form);
    window.setTimeout(() => input.focus(), 0);
  }

  async function login() {
    state.who = await api("whoami");
    const [site, palette] = await Promise.all([
      api("site").catch(() => null),
      fetch(new URL("palette.json", window.location.href))
        .then((r) => (r.ok ? r.json() : { colours: [] }))
        .catch(() => ({ colours: [] })),
    ]);
    state.site = site;
    state.palette = palette.colours || [];
    const first = allowedPages()[0];
    const wanted = window.location.hash.replace(/^#\/?/, "");
    if (wanted && wanted !== "login" && allowedPages().some((p) => p.id === wanted)) {
      route();
    } else {
      window.location.hash = `#/${first ? first.id : "none"}`;
    }
  }

  function logout(message) {
    leavePage();
    window.sessionStorage.removeItem(KEY_STORE);
    state.who = null;
    state.search = null;
    window.location.hash = "#/login";
    route();
    if (message) toast(message);
  }

  // ------------------------------------------------------------------ site map (SVG)

  /** A map of the site: outline, zones (optionally filled by `zoneFill(zone)`), cameras
   * with their footprints; returns {svg, px(x, y), ground(vx, vy)} so callers can draw
   * on it (px: metres to SVG units; ground: SVG units back to metres). */
  function siteMap({ title, extraPoints = [], zoneFill = null, width = 800 } = {}) {
    const site = state.site;
    let [x0, y0, x1, y1] = site ? site.bounds : [0, 0, 1, 1];
    const cameraPoints = site ? (site.cameras || []).filter((c) => c.position).map((c) => c.position) : [];
    for (const [x, y] of cameraPoints) {
      // room for the marker and its label (to the right)
      x0 = Math.min(x0, x - 1.5);
      y0 = Math.min(y0, y - 1.5);
      x1 = Math.max(x1, x + 6);
      y1 = Math.max(y1, y + 1.5);
    }
    for (const [x, y] of extraPoints) {
      x0 = Math.min(x0, x - 1);
      y0 = Math.min(y0, y - 1);
      x1 = Math.max(x1, x + 1);
      y1 = Math.max(y1, y + 1);
    }
    const scale = width / Math.max(x1 - x0, 1e-6);
    const height = Math.max(120, Math.round((y1 - y0) * scale));
    const px = (x, y) => [(x - x0) * scale, (y1 - y) * scale];
    const ground = (vx, vy) => [vx / scale + x0, y1 - vy / scale];
    const pts = (poly) => poly.map(([x, y]) => px(x, y).map((v) => v.toFixed(1)).join(",")).join(" ");
    const svg = s("svg", {
      class: "map", viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-label": title || "Site map",
    }, s("title", { text: title || "Site map" }));
    if (!site) {
      svg.append(s("text", { x: 10, y: 20, "font-size": 14, fill: "#666", text: "Site map unavailable (GET /site)" }));
      return { svg, px, ground };
    }
    if (site.outline) {
      svg.append(s("polygon", { points: pts(site.outline), fill: "#ffffff", stroke: "#444", "stroke-width": 2 }));
    }
    for (const cam of site.cameras || []) {
      if (cam.footprint && cam.footprint.length >= 3) {
        svg.append(s("polygon", {
          points: pts(cam.footprint), fill: "#93c5fd", "fill-opacity": 0.12,
          stroke: "#60a5fa", "stroke-dasharray": "4 3", "stroke-width": 1,
        }));
      }
    }
    for (const zone of site.zones || []) {
      const fill = zoneFill ? zoneFill(zone) : "#fde68a";
      const poly = s("polygon", {
        points: pts(zone.polygon), fill, "fill-opacity": zoneFill ? 0.75 : 0.35,
        stroke: "#b45309", "stroke-width": 1.5, "data-zone": zone.id,
      }, s("title", { text: `zone ${zone.name || zone.id}` }));
      svg.append(poly);
      const cx = zone.polygon.reduce((a, p) => a + p[0], 0) / zone.polygon.length;
      const cy = zone.polygon.reduce((a, p) => a + p[1], 0) / zone.polygon.length;
      const [tx, ty] = px(cx, cy);
      svg.append(s("text", { x: tx, y: ty, "text-anchor": "middle", "font-size": 14, fill: "#78350f", text: zone.name || zone.id }));
    }
    for (const cam of site.cameras || []) {
      if (!cam.position) continue;
      const [cx, cy] = px(cam.position[0], cam.position[1]);
      svg.append(
        s("rect", { x: cx - 6, y: cy - 6, width: 12, height: 12, fill: "#1d4ed8", stroke: "#fff" },
          s("title", { text: `camera ${cam.id}` })),
        s("text", { x: cx + 9, y: cy + 4, "font-size": 13, fill: "#1e3a8a", text: cam.id }),
      );
    }
    return { svg, px, ground };
  }

  // ------------------------------------------------------------------ search page

  function colourPicker(name, legend) {
    const group = h("fieldset", { class: "swatches" }, h("legend", { text: legend }));
    const options = [{ name: "", rgb: null }, ...state.palette];
    for (const colour of options) {
      const id = `${name}-${colour.name || "any"}`;
      group.append(h("label", { class: "swatch", for: id },
        h("input", { type: "radio", name, id, value: colour.name, checked: colour.name === "" }),
        colour.rgb
          ? s("svg", { width: 14, height: 14, "aria-hidden": "true" },
            s("rect", { width: 14, height: 14, fill: colour.rgb }))
          : null,
        colour.name || "any"));
    }
    return group;
  }

  function field(id, labelText, input, hint) {
    input.id = id;
    if (!input.name) input.name = id;
    const parts = [h("label", { for: id }, labelText, hint ? h("span", { class: "hint", text: ` ${hint}` }) : null), input];
    return h("div", {}, parts);
  }

  function searchForm() {
    const now = new Date();
    now.setUTCSeconds(0, 0);
    const dayAgo = new Date(now.getTime() - 24 * 3600 * 1000);
    const cameras = state.site ? state.site.cameras.map((c) => c.id) : [];
    const form = h("form", { id: "search-form", novalidate: true, "aria-labelledby": "search-form-title" },
      h("h2", { id: "search-form-title", text: "New search" }),
      h("fieldset", {}, h("legend", { text: "Case" }),
        field("case-id", "Case id", h("input", { type: "text", required: true, maxlength: 200, autocomplete: "off" }), "(required)"),
        field("reason", "Reason", h("textarea", { required: true, maxlength: 2000, rows: 2 }), "(required, recorded)"),
      ),
      h("fieldset", {}, h("legend", { text: "Who" }),
        field("photos", "Reference photos", h("input", { type: "file", multiple: true, accept: "image/png,image/jpeg" }), "(up to 8)"),
        colourPicker("upper", "Top colour"),
        colourPicker("lower", "Trousers/skirt colour"),
        h("div", { class: "row" },
          field("height-min", "Height from (m)", h("input", { type: "number", min: 0.5, max: 2.5, step: 0.05 })),
          field("height-max", "to (m)", h("input", { type: "number", min: 0.5, max: 2.5, step: 0.05 })),
        ),
        field("child", "Child or adult", h("select", {},
          h("option", { value: "", text: "either" }),
          h("option", { value: "true", text: "child" }),
          h("option", { value: "false", text: "adult" }))),
      ),
      h("fieldset", {}, h("legend", { text: "When and where" }),
        field("start", "From (UTC)", h("input", { type: "datetime-local", step: 1, required: true, value: isoToLocal(dayAgo) })),
        field("end", "To (UTC)", h("input", { type: "datetime-local", step: 1, required: true, value: isoToLocal(now) })),
        cameras.length
          ? h("fieldset", { class: "swatches" }, h("legend", { text: "Cameras (none ticked: all)" }),
            h("div", { class: "checks" }, cameras.map((id) => h("label", { for: `cam-${id}` },
              h("input", { type: "checkbox", id: `cam-${id}`, name: "cameras", value: id }), id))))
          : field("cameras-text", "Cameras", h("input", { type: "text" }), "(comma-separated; empty: all)"),
        h("details", {},
          h("summary", { text: "More filters" }),
          field("area", "Area", h("input", { type: "text", placeholder: "x1,y1;x2,y2;x3,y3" }), "(ground polygon, metres: type it, or click its corners on the map)"),
          areaMap(),
          h("div", { class: "row" },
            field("seen-x", "Last seen x (m)", h("input", { type: "number", step: "any" })),
            field("seen-y", "y (m)", h("input", { type: "number", step: "any" })),
          ),
          field("seen-time", "Last seen at (UTC)", h("input", { type: "datetime-local", step: 1 })),
          h("div", { class: "row" },
            field("min-confidence", "Good match from", h("input", { type: "number", min: 0, max: 1, step: 0.05, value: 0.8 })),
            field("max-candidates", "Candidates", h("input", { type: "number", min: 1, max: 1000, step: 1, value: 20 })),
          ),
        ),
      ),
      h("div", { id: "search-errors", class: "errors", role: "alert" }),
      h("div", { class: "actions" },
        h("button", { type: "submit", class: "primary", id: "run-search", text: "Search" }),
        h("button", { type: "button", id: "open-watch", text: "Open as watch" }),
      ),
      h("p", { id: "search-busy", class: "busy", role: "status", "aria-live": "polite" }),
    );
    return form;
  }

  /** Parse "x1,y1;x2,y2;..." into points; null when malformed. */
  function parseArea(text) {
    if (!text.trim()) return [];
    const points = text.split(";").map((p) => p.split(",").map((v) => Number(v.trim())));
    return points.some((p) => p.length !== 2 || p.some((v) => !Number.isFinite(v))) ? null : points;
  }

  /** The site map under "More filters": each click adds a corner of the search area
   * to the #area field (which stays the keyboard way in); the polygon is drawn. */
  function areaMap() {
    const { svg, px, ground } = siteMap({ title: "Search area: click its corners", width: 600 });
    svg.id = "area-map";
    svg.classList.add("drawable");
    const layer = s("g", { class: "area-layer" });
    svg.append(layer);
    const box = h("div", { class: "area-draw" }, svg,
      h("div", { class: "actions" },
        h("button", { type: "button", id: "area-undo", text: "Undo corner" }),
        h("button", { type: "button", id: "area-clear", text: "Clear area" })));
    const input = () => document.getElementById("area");
    function redraw() {
      clear(layer);
      const points = parseArea(input() ? input().value : "") || [];
      const at = points.map(([x, y]) => px(x, y).map((v) => v.toFixed(1)).join(",")).join(" ");
      if (points.length >= 3) {
        layer.append(s("polygon", { class: "area", points: at, fill: "#dc2626", "fill-opacity": 0.15, stroke: "#dc2626", "stroke-width": 2 }));
      } else if (points.length === 2) {
        layer.append(s("polyline", { class: "area", points: at, fill: "none", stroke: "#dc2626", "stroke-width": 2 }));
      }
      for (const [x, y] of points) {
        const [cx, cy] = px(x, y);
        layer.append(s("circle", { class: "area-corner", cx, cy, r: 5, fill: "#dc2626" }));
      }
    }
    function setPoints(points) {
      input().value = points.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(";");
      redraw();
    }
    svg.addEventListener("click", (event) => {
      const matrix = svg.getScreenCTM();
      if (!matrix) return;
      const at = new DOMPoint(event.clientX, event.clientY).matrixTransform(matrix.inverse());
      setPoints([...(parseArea(input().value) || []), ground(at.x, at.y)]);
    });
    box.querySelector("#area-undo").addEventListener("click", () => setPoints((parseArea(input().value) || []).slice(0, -1)));
    box.querySelector("#area-clear").addEventListener("click", () => setPoints([]));
    window.setTimeout(() => {
      if (input()) input().addEventListener("input", redraw);
    }, 0);
    return box;
  }

  /** The form as {query, photos} plus a list of problems (client-side checks). */
  function readSearchForm(form) {
    const value = (id) => form.querySelector(`#${id}`).value.trim();
    const problems = [];
    const query = {
      case_id: value("case-id"),
      reason: value("reason"),
      start: localToIso(value("start")),
      end: localToIso(value("end")),
    };
    if (!query.case_id) problems.push(["case-id", "Case id is required: every search names its case."]);
    if (!query.reason) problems.push(["reason", "Reason is required: it is recorded with the search."]);
    if (!query.start) problems.push(["start", "Give the start of the time window."]);
    if (!query.end) problems.push(["end", "Give the end of the time window."]);
    const description = {};
    const upper = form.querySelector('input[name="upper"]:checked');
    const lower = form.querySelector('input[name="lower"]:checked');
    if (upper && upper.value) description.upper_colour = upper.value;
    if (lower && lower.value) description.lower_colour = lower.value;
    if (value("height-min")) description.height_min_m = Number(value("height-min"));
    if (value("height-max")) description.height_max_m = Number(value("height-max"));
    if (value("child")) description.child = value("child") === "true";
    if (Object.keys(description).length) query.description = description;
    const photos = Array.from(form.querySelector("#photos").files || []);
    if (photos.length > 8) problems.push(["photos", "At most 8 photos."]);
    if (!photos.length && !query.description) {
      problems.push(["photos", "Upload a photo or describe the person (a colour, height or child)."]);
    }
    const ticked = Array.from(form.querySelectorAll('input[name="cameras"]:checked')).map((c) => c.value);
    const typed = form.querySelector("#cameras-text");
    const cams = typed ? typed.value.split(",").map((c) => c.trim()).filter(Boolean) : ticked;
    if (cams.length) query.cameras = cams;
    const area = value("area");
    if (area) {
      const points = parseArea(area);
      if (!points || points.length < 3) {
        problems.push(["area", "Area: at least 3 points as x1,y1;x2,y2;x3,y3 (metres)."]);
      } else {
        query.area = points;
      }
    }
    const [sx, sy, st] = [value("seen-x"), value("seen-y"), value("seen-time")];
    if (sx || sy || st) {
      if (!(sx && sy && st)) problems.push(["seen-x", "Last seen needs x, y and a time."]);
      else query.last_seen = { x: Number(sx), y: Number(sy), time: localToIso(st) };
    }
    if (value("min-confidence")) query.min_confidence = Number(value("min-confidence"));
    if (value("max-candidates")) query.max_candidates = Number(value("max-candidates"));
    return { query, photos, problems };
  }

  function showProblems(form, box, problems) {
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    clear(box);
    if (!problems.length) return;
    box.append(h("strong", { text: "Please fix:" }),
      h("ul", {}, problems.map(([id, text]) => {
        const target = form.querySelector(`#${id}`);
        if (target) target.setAttribute("aria-invalid", "true");
        return h("li", {}, h("a", { href: `#${id}`, onclick: (e) => { e.preventDefault(); if (target) target.focus(); } }, text));
      })));
    box.querySelector("a").focus();
  }

  function searchBody(query, photos) {
    if (!photos.length) return { json: query };
    const data = new FormData();
    data.append("query", JSON.stringify(query));
    for (const file of photos) data.append("photos", file, file.name);
    return { body: data };
  }

  function renderSearch(main) {
    const form = searchForm();
    const results = h("section", { id: "results", class: "panel", "aria-labelledby": "results-title" });
    main.append(pageHeading("Search"), h("div", { class: "cols" }, h("div", { class: "panel" }, form), results));
    const errors = form.querySelector("#search-errors");
    const busy = form.querySelector("#search-busy");
    const buttons = form.querySelectorAll("button");

    async function submit(kind) {
      const { query, photos, problems } = readSearchForm(form);
      showProblems(form, errors, problems);
      if (problems.length) return;
      buttons.forEach((b) => { b.disabled = true; });
      busy.textContent = kind === "watch" ? "Opening the watch…" : "Searching… (photos are cropped and embedded first)";
      try {
        if (kind === "watch") {
          const threshold = query.min_confidence;
          const created = await api("watches", { method: "POST", ...searchBody({ ...query, threshold }, photos) });
          toast(`Watch ${created.watch_id} opened; its alerts arrive on the Watches & alerts page.`);
          busy.textContent = `Watch ${created.watch_id} opened.`;
        } else {
          await runSearch(query, photos, results, busy);
          const title = $("results-title");
          if (title) title.focus();
        }
      } catch (error) {
        busy.textContent = "";
        clear(errors).append(error instanceof ApiError
          ? `The API refused it: ${error.message}`
          : `Request failed: ${error.message || error}`);
      } finally {
        buttons.forEach((b) => { b.disabled = false; });
      }
    }

    form.addEventListener("submit", (event) => { event.preventDefault(); submit("search"); });
    form.querySelector("#open-watch").addEventListener("click", () => submit("watch"));
    renderResults(results);
  }

  function newSearch(id, query, photos, extra) {
    if (state.search && state.search.abort) state.search.abort.abort();
    for (const entry of Object.values((state.search && state.search.thumbs) || {})) {
      entry.then((t) => { if (t.url) URL.revokeObjectURL(t.url); });
    }
    state.search = { id, query, result: null, routes: {}, thumbs: {}, photoNames: photos.map((p) => p.name), ...extra };
    return state.search;
  }

  /** Run the search as a job (results stream in with progress, cancellable); an API
   * without the pipeline (503) runs it in the request instead. */
  async function runSearch(query, photos, results, busy) {
    let started;
    try {
      started = await api("searches/jobs", { method: "POST", ...searchBody(query, photos) });
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 503) throw error;
      busy.textContent = "Searching in the request (the pipeline, which runs search jobs, is not running)…";
      const created = await api("searches", { method: "POST", ...searchBody(query, photos) });
      const search = newSearch(created.search_id, query, photos, { job: null });
      search.result = created.result;
      busy.textContent = `Search ${created.search_id}: ${created.result.candidates.length} candidates.`;
      renderResults(results);
      return;
    }
    const search = newSearch(started.job_id, query, photos, { job: started.status, abort: new AbortController() });
    state.cleanup.push(() => search.abort.abort());
    busy.textContent = `Search job ${started.job_id} started; results stream in below.`;
    renderResults(results);
    const signal = search.abort.signal;
    while (!signal.aborted) {
      let read;
      try {
        read = await api(`searches/jobs/${encodeURIComponent(search.id)}`, { signal });
      } catch (error) {
        if (signal.aborted) return;
        throw error;
      }
      if (state.search !== search) return;
      search.job = read.status;
      search.result = read.result;
      renderResults(results);
      if (["done", "failed", "cancelled"].includes(read.status.state)) break;
      await sleep(700, signal);
    }
    if (state.search === search) {
      const n = search.result ? search.result.candidates.length : 0;
      busy.textContent = `Search job ${search.id} ${search.job.state}: ${n} candidates.`;
    }
  }

  function jobRunning(search) {
    return Boolean(search && search.job && !["done", "failed", "cancelled"].includes(search.job.state));
  }

  /** Progress of a search job: bar, phase, partitions, candidates so far, cancel. */
  function jobProgress(search) {
    const job = search.job;
    if (!job) return null;
    const running = jobRunning(search);
    const ingest = job.ingest;
    let phase = `${job.state}`;
    let value = job.progress || 0;
    if (job.state === "ingesting" && ingest) {
      phase = "ingesting recorded footage first";
      value = ingest.progress || 0;
    }
    const parts = [
      h("label", { for: "search-progress", text: `Job ${phase}: ` }),
      h("progress", { id: "search-progress", max: 1, value }),
      h("span", { class: "muted", text: ` ${Math.round(value * 100)} % · ${job.partitions_done}/${job.partitions_total || "?"} partitions searched · ${job.candidates_so_far} candidates so far` }),
    ];
    if (running) {
      parts.push(" ", h("button", { type: "button", id: "cancel-search", onclick: () => cancelSearch(search) }, "Cancel"));
    }
    if (job.error) parts.push(h("div", { class: "errors", text: job.error }));
    return h("div", { class: "job-progress", id: "job-progress", role: "status" }, parts);
  }

  async function cancelSearch(search) {
    try {
      const answer = await api(`searches/jobs/${encodeURIComponent(search.id)}`, { method: "DELETE" });
      search.job = answer.status;
      toast(`Search job ${search.id} cancelled.`);
    } catch (error) {
      toast(error.message || String(error));
    }
  }

  function renderResults(section) {
    clear(section);
    const search = state.search;
    if (!search) {
      section.append(h("h2", { id: "results-title", tabindex: "-1", text: "Results" }),
        h("p", { class: "muted", text: "Run a search to see candidates here." }));
      return;
    }
    const result = search.result;
    if (!result) {
      section.append(h("h2", { id: "results-title", tabindex: "-1", text: "Results" }),
        jobProgress(search), h("p", { class: "busy", text: "Waiting for the first partitions…" }));
      return;
    }
    const running = jobRunning(search);
    const good = result.candidates.filter((c) => c.good_match).length;
    append(section, [
      h("h2", { id: "results-title", tabindex: "-1", text: `Results for case ${result.case_id}` }),
      h("div", { class: "result-head" },
        h("span", { class: `verdict ${running ? "partial" : result.no_good_match ? "none" : "good"}`, id: "verdict" },
          running ? `Partial: ${good} good match${good === 1 ? "" : "es"} so far`
            : result.no_good_match ? "No good match" : `${good} good match${good === 1 ? "" : "es"}`),
        h("span", {}, "Search id ", h("code", { id: "search-id", text: search.id })),
        h("span", { class: "muted" }, `window ${fmtTime(result.start)} – ${fmtTime(result.end)}`),
        h("button", { type: "button", id: "export-report", disabled: running, onclick: () => exportReport() }, "Export report (HTML)"),
      ),
      jobProgress(search),
      result.warnings && result.warnings.length
        ? h("div", { class: "notice" }, h("strong", { text: "Warnings: " }), result.warnings.join(" · "))
        : null,
      h("p", { class: "hint" },
        `Tracklets searched: ${Object.entries(result.counts || {}).map(([k, v]) => `${k} ${v}`).join(", ") || "—"}. `,
        "Thumbnails show the candidate; everyone else's head is blurred. ",
        running ? "Confirm and reject are offered once the job is done." : ""),
    ]);
    // the route goes above the cards, so a confirmed candidate's route is seen at once
    section.append(h("section", { id: "route", "aria-live": "polite" }));
    const list = h("ol", { class: "cards", id: "candidates", "aria-label": "Candidates, best first" });
    for (const c of result.candidates) list.append(candidateCard(c, running));
    section.append(result.candidates.length ? list : h("p", { text: "No candidates in this window." }));
    if (search.routeKey && result.candidates.some((c) => c.key === search.routeKey)) {
      showRoute(search.routeKey);
    }
  }

  /** The candidate's thumbnail (GET .../thumbnail with the key, as a blob URL), once
   * per tracklet: {url, blob} or {note} when withheld or missing. */
  function loadThumbnail(search, c) {
    const id = c.best_tracklet_id;
    if (!search.thumbs[id]) {
      const path = `searches/${encodeURIComponent(search.id)}/candidates/${encodeURIComponent(c.key)}/thumbnail`;
      search.thumbs[id] = api(path, { raw: true, params: { tracklet_id: id } })
        .then((response) => response.blob())
        .then((blob) => ({ url: URL.createObjectURL(blob), blob }))
        .catch((error) => ({
          note: error.status === 409 ? "withheld: bystanders could not be blurred"
            : error.status === 404 ? "no thumbnail stored" : `thumbnail failed: ${error.message || error}`,
        }));
    }
    return search.thumbs[id];
  }

  function thumbnailBox(c) {
    const label = c.global_id || c.key;
    const box = h("div", { class: "thumb" }, h("span", { class: "muted", text: "…" }));
    const search = state.search;
    loadThumbnail(search, c).then((t) => {
      clear(box).append(t.url
        ? h("img", { class: "thumb-img", src: t.url, alt: `Best sighting of ${label} (other people's heads blurred)` })
        : h("span", { class: "muted", text: t.note }));
    });
    return box;
  }

  function candidateCard(c, running = false) {
    const cams = [...new Set(c.sightings.map((x) => x.camera_id))];
    const first = c.sightings.length ? c.sightings.reduce((a, x) => (x.t_start < a ? x.t_start : a), c.sightings[0].t_start) : null;
    const last = c.sightings.length ? c.sightings.reduce((a, x) => (x.t_end > a ? x.t_end : a), c.sightings[0].t_end) : null;
    const label = c.global_id || c.key;
    return h("li", {
      class: `card ${c.good_match ? "good" : "weak"}${c.confirmed ? " confirmed" : ""}`,
      "data-key": c.key, "data-rank": c.rank, "aria-label": `Rank ${c.rank}: ${label}`,
    },
    h("header", {},
      h("h3", {}, `#${c.rank} `, h("span", { text: label })),
      h("span", { class: "conf", title: "calibrated confidence" }, pct(c.confidence))),
    thumbnailBox(c),
    h("div", {},
      h("span", { class: `badge ${c.good_match ? "good" : "weak"}`, text: c.good_match ? "good match" : "no good match" }),
      " ",
      c.confirmed ? h("span", { class: "badge confirmed", text: "confirmed" }) : null,
      c.colour_contradictions ? h("span", { class: "badge bad", text: `${c.colour_contradictions} colour contradiction(s)` }) : null),
    h("dl", {},
      h("dt", { text: "Cameras" }), h("dd", { text: cams.join(", ") || "—" }),
      h("dt", { text: "Seen" }), h("dd", { text: `${fmtTime(first)} – ${fmtTime(last)}` }),
      h("dt", { text: "Sightings" }), h("dd", { text: String(c.sightings.length) }),
      h("dt", { text: "Best tracklet" }), h("dd", { text: c.best_tracklet_id })),
    h("div", { class: "actions" },
      h("button", { type: "button", class: "confirm", disabled: c.confirmed || running, "aria-label": `Confirm ${label}`, onclick: () => refineCandidate(c.key, "confirmed") }, "Confirm"),
      h("button", { type: "button", class: "reject danger", disabled: running, "aria-label": `Reject ${label}`, onclick: () => refineCandidate(c.key, "rejected") }, "Reject"),
      h("button", { type: "button", class: "show-route", "aria-label": `Show the route of ${label}`, onclick: () => showRoute(c.key, true) }, "Route")));
  }

  async function refineCandidate(candidateKey, decision) {
    const search = state.search;
    const section = $("results");
    const status = h("p", { class: "busy", role: "status", text: "Re-ranking…" });
    section.prepend(status);
    section.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    try {
      const body = { confirmed: [], rejected: [] };
      body[decision].push(candidateKey);
      const refined = await api(`searches/${encodeURIComponent(search.id)}/refine`, { method: "POST", json: body });
      search.result = refined.result;
      search.routes = {};
      if (decision === "confirmed") search.routeKey = candidateKey;
      renderResults(section);
      toast(`${candidateKey} ${decision}; candidates re-ranked.`);
      const card = section.querySelector(`li[data-key="${CSS.escape(candidateKey)}"] .show-route`);
      if (card) card.focus();
      else $("results-title").focus();
    } catch (error) {
      status.remove();
      section.prepend(errorBox(error));
      section.querySelectorAll("button").forEach((b) => { b.disabled = false; });
    }
  }

  async function showRoute(candidateKey, focus = false) {
    const search = state.search;
    const target = $("route");
    if (!target) return;
    search.routeKey = candidateKey;
    clear(target).append(h("p", { class: "busy", text: `Loading the route of ${candidateKey}…` }));
    try {
      let routeData = search.routes[candidateKey];
      if (!routeData) {
        routeData = await api(`searches/${encodeURIComponent(search.id)}/candidates/${encodeURIComponent(candidateKey)}/route`);
        search.routes[candidateKey] = routeData;
      }
      renderRoute(target, routeData);
      if (focus) $("route-title").focus();
    } catch (error) {
      clear(target).append(errorBox(error));
    }
  }

  function routePoints(sighting) {
    const out = [];
    for (const [x, y] of [[sighting.first_x, sighting.first_y], [sighting.world_x, sighting.world_y], [sighting.last_x, sighting.last_y]]) {
      if (x !== null && x !== undefined && y !== null && y !== undefined) out.push([x, y]);
    }
    return out;
  }

  function renderRoute(target, data) {
    const steps = data.route || [];
    const all = steps.flatMap(routePoints);
    const title = `Route of ${data.global_id || data.key}`;
    const { svg, px } = siteMap({ title: `${title} on the site map`, extraPoints: all });
    const line = all.map(([x, y]) => px(x, y).map((v) => v.toFixed(1)).join(",")).join(" ");
    if (all.length >= 2) {
      svg.append(s("polyline", { points: line, fill: "none", stroke: "#dc2626", "stroke-width": 3, "stroke-linejoin": "round", "stroke-opacity": 0.85 }));
    }
    steps.forEach((step, i) => {
      if (step.world_x === null || step.world_x === undefined) return;
      const [cx, cy] = px(step.world_x, step.world_y);
      svg.append(s("g", { class: "route-step" },
        s("circle", { cx, cy, r: 10, fill: "#dc2626", stroke: "#fff", "stroke-width": 2 }),
        s("text", { x: cx, y: cy + 4, "text-anchor": "middle", "font-size": 12, fill: "#fff", text: String(i + 1) }),
        s("title", { text: `${i + 1}: ${step.camera_id} ${fmtTime(step.t_start)}` })));
    });
    const table = h("table", { id: "route-timeline" },
      h("caption", { class: "visually-hidden", text: `${title}, in time order` }),
      h("thead", {}, h("tr", {},
        ["#", "Camera", "From", "To", "Where (x, y m)", "Confidence"].map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, steps.map((step, i) => h("tr", {},
        h("td", { text: String(i + 1) }),
        h("td", { text: step.camera_id }),
        h("td", { text: fmtTime(step.t_start) }),
        h("td", { text: fmtTime(step.t_end) }),
        h("td", { text: step.world_x === null || step.world_x === undefined ? "—" : `${fmtNum(step.world_x, 1)}, ${fmtNum(step.world_y, 1)}` }),
        h("td", { class: "num", text: step.confidence === null || step.confidence === undefined ? "not scored" : pct(step.confidence) })))));
    clear(target).append(
      h("h2", { id: "route-title", tabindex: "-1", text: title }),
      h("div", { class: "cols2" },
        h("div", {}, svg, h("p", { class: "legend" },
          h("span", { text: "■ blue: cameras (dashed: what they see)" }),
          h("span", { text: "yellow: zones" }),
          h("span", { text: "red: the route, numbered in time order" }))),
        h("div", { class: "table-wrap" }, h("h3", { text: "Timeline" }), table)),
    );
  }

  // ------------------------------------------------------------------ export

  function esc(text) {
    return String(text === null || text === undefined ? "" : text)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  }

  function dataUrl(blob) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(blob);
    });
  }

  /** Candidate key -> the thumbnail as a data: URL, for those shown in the cards. */
  async function reportImages(search) {
    const out = {};
    for (const c of search.result.candidates) {
      const entry = search.thumbs[c.best_tracklet_id];
      const t = entry ? await entry : null;
      if (t && t.blob) out[c.key] = await dataUrl(t.blob);
    }
    return out;
  }

  function reportHtml(images = {}) {
    const search = state.search;
    const r = search.result;
    const rows = r.candidates.map((c) => {
      const cams = [...new Set(c.sightings.map((x) => x.camera_id))].join(", ");
      const first = c.sightings.map((x) => x.t_start).sort()[0];
      const last = c.sightings.map((x) => x.t_end).sort().slice(-1)[0];
      const img = images[c.key] && images[c.key].startsWith("data:image/") ? `<img alt="" src="${esc(images[c.key])}">` : "";
      return `<tr><td>${c.rank}</td><td>${img}</td><td>${esc(c.global_id || c.key)}</td><td>${(c.confidence * 100).toFixed(1)} %</td>`
        + `<td>${c.good_match ? "good match" : "no good match"}</td><td>${c.confirmed ? "yes" : ""}</td>`
        + `<td>${esc(cams)}</td><td>${esc(fmtTime(first))}</td><td>${esc(fmtTime(last))}</td><td>${c.sightings.length}</td></tr>`;
    }).join("\n");
    const routes = Object.values(search.routes).map((route) => {
      const steps = route.route.map((x, i) => `<tr><td>${i + 1}</td><td>${esc(x.camera_id)}</td><td>${esc(fmtTime(x.t_start))}</td>`
        + `<td>${esc(fmtTime(x.t_end))}</td><td>${x.world_x === null ? "" : `${x.world_x.toFixed(1)}, ${x.world_y.toFixed(1)}`}</td>`
        + `<td>${x.confidence === null || x.confidence === undefined ? "not scored" : `${(x.confidence * 100).toFixed(1)} %`}</td></tr>`).join("\n");
      return `<h2>Route of ${esc(route.global_id || route.key)}</h2><table><thead><tr><th>#</th><th>Camera</th><th>From</th><th>To</th>`
        + `<th>Where (x, y m)</th><th>Confidence</th></tr></thead><tbody>${steps}</tbody></table>`;
    }).join("\n");
    const q = search.query;
    const described = q.description ? esc(JSON.stringify(q.description)) : "—";
    return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sightline case ${esc(r.case_id)} – search ${esc(search.id)}</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;color:#111}table{border-collapse:collapse;width:100%;margin:0.5rem 0 1.5rem}
th,td{border:1px solid #bbb;padding:0.25rem 0.5rem;text-align:left}th{background:#eee}dt{font-weight:600}dd{margin:0 0 0.4rem 0}
.verdict{font-weight:700}td img{height:96px}</style></head><body>
<h1>Sightline search report</h1>
<dl>
<dt>Case id</dt><dd>${esc(r.case_id)}</dd>
<dt>Reason</dt><dd>${esc(r.reason)}</dd>
<dt>Requested by</dt><dd>${esc(r.requested_by)}</dd>
<dt>Audit reference</dt><dd>search id <code id="audit-search-id">${esc(search.id)}</code> (the audit log's entries for this search carry it as search_id or job_id, with the case id)</dd>
<dt>Window</dt><dd>${esc(fmtTime(r.start))} – ${esc(fmtTime(r.end))}</dd>
<dt>Query</dt><dd>photos: ${search.photoNames.length ? esc(search.photoNames.join(", ")) : "none"}; description: ${described}; cameras: ${esc((q.cameras || ["all"]).join(", "))}; good match from ${r.min_confidence}</dd>
<dt>Result</dt><dd class="verdict">${r.no_good_match ? "No good match" : "Good match found"}</dd>
<dt>Exported</dt><dd>${esc(fmtTime(new Date().toISOString()))} by ${esc(state.who.principal)}</dd>
</dl>
<h2>Candidates</h2>
<table><thead><tr><th>Rank</th><th>Thumbnail</th><th>Identity</th><th>Confidence</th><th>Verdict</th><th>Confirmed</th><th>Cameras</th><th>First seen</th><th>Last seen</th><th>Sightings</th></tr></thead>
<tbody>${rows}</tbody></table>
${routes}
<p>Confidence is calibrated; a candidate below the threshold is not a good match. Thumbnails show the candidate; every other person's head is blurred.</p>
</body></html>
`;
  }

  async function exportReport() {
    const search = state.search;
    const blob = new Blob([reportHtml(await reportImages(search))], { type: "text/html" });
    const url = URL.createObjectURL(blob);
    const safe = (v) => String(v).replace(/[^A-Za-z0-9._-]+/g, "_");
    const link = h("a", { href: url, download: `sightline-case-${safe(search.result.case_id)}-${safe(search.id)}.html` });
    document.body.append(link);
    link.click();
    link.remove();
    window.setTimeout(() => URL.revokeObjectURL(url), 10000);
    toast("Report downloaded.");
  }

  // ------------------------------------------------------------------ events (SSE over fetch)

  function parseSse(block) {
    const event = { event: "message", data: [], id: null };
    for (const raw of block.split("\n")) {
      const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const name = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (name === "data") event.data.push(value);
      else if (name === "event") event.event = value;
      else if (name === "id") event.id = value;
      else if (name === "retry") event.retry = Number(value);
    }
    return event.data.length || event.retry !== undefined ? { ...event, data: event.data.join("\n") } : null;
  }

  /** Follow GET /events until `signal` aborts, reconnecting with the last seq seen.
   * EventSource cannot send an Authorization header, so this reads the stream with fetch. */
  async function followEvents(signal, onEvent, onState) {
    const cursors = { watch_alert: 0, density_alert: 0 };
    let retry = 1000;
    while (!signal.aborted) {
      try {
        const response = await fetch(apiUrl("events", {
          since_watch: cursors.watch_alert, since_density: cursors.density_alert,
        }), { headers: { Authorization: `Bearer ${key()}`, Accept: "text/event-stream" }, signal, cache: "no-store" });
        if (!response.ok) {
          const error = await asError(response);
          onState("error", error);
          if (response.status === 401 || response.status === 403) return;
          await sleep(Math.max(retry, 5000), signal);
          continue;
        }
        onState("open");
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let end = buffer.indexOf("\n\n");
          while (end >= 0) {
            const parsed = parseSse(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
            end = buffer.indexOf("\n\n");
            if (!parsed) continue;
            if (parsed.retry) retry = parsed.retry;
            if (!parsed.data) continue;
            let payload;
            try {
              payload = JSON.parse(parsed.data);
            } catch (_) {
              payload = parsed.data;
            }
            if (payload && typeof payload === "object" && payload.seq !== undefined && cursors[parsed.event] !== undefined) {
              cursors[parsed.event] = Math.max(cursors[parsed.event], Number(payload.seq));
            }
            onEvent(parsed.event, payload);
          }
        }
        onState("closed");
      } catch (error) {
        if (signal.aborted) return;
        onState("error", error);
      }
      await sleep(retry, signal);
    }
  }

  // ------------------------------------------------------------------ alerts page

  function renderAlerts(main) {
    const role = state.who.role;
    const streamState = h("p", { class: "stream-state", id: "stream-state", role: "status", text: "Connecting to the live stream…" });
    const list = h("ul", { class: "events", id: "live-alerts", "aria-label": "Live alerts, newest first" });
    const empty = h("li", { class: "muted", id: "no-alerts", text: "No alerts yet." });
    list.append(empty);
    const live = h("section", { class: "panel", "aria-labelledby": "live-title" },
      h("h2", { id: "live-title", text: role === "analyst" ? "Live watch alerts" : "Live crowd alerts" }),
      streamState, list);
    main.append(pageHeading(role === "analyst" ? "Watches & alerts" : "Alerts"));
    const columns = h("div", { class: "cols2" });
    main.append(columns);
    let watches = null;
    if (role === "analyst") {
      watches = h("section", { class: "panel", id: "watches", "aria-labelledby": "watches-title" });
      columns.append(watches, live);
      loadWatches(watches);
    } else {
      columns.append(live);
      if (role === "data") {
        const history = h("section", { class: "panel", id: "alert-history", "aria-labelledby": "history-title" });
        columns.append(history);
        loadAlertHistory(history);
      }
    }
    const controller = new AbortController();
    state.cleanup.push(() => controller.abort());
    followEvents(controller.signal, (kind, payload) => {
      if (kind === "error") {
        streamState.textContent = `The pipeline did not answer: ${payload}`;
        return;
      }
      empty.remove();
      list.prepend(alertItem(kind, payload));
      if (kind === "watch_alert" && watches) loadWatches(watches); // its alert count
    }, (what, error) => {
      if (what === "open") streamState.textContent = "Live: connected.";
      else if (what === "closed") streamState.textContent = "Stream closed; reconnecting…";
      else if (error instanceof ApiError && error.status === 503) streamState.textContent = `Pipeline not running (${error.detail}); retrying…`;
      else streamState.textContent = `Stream error: ${error && error.message ? error.message : error}; retrying…`;
    });
  }

  function alertItem(kind, a) {
    if (kind === "density_alert") {
      const started = a.state === "start";
      return h("li", { class: started ? "start" : "end", "data-kind": kind },
        h("strong", { text: started ? `Crowd alert in ${a.zone_id}` : `Crowd alert over in ${a.zone_id}` }),
        ` — peak ${fmtNum(a.peak_count, 1)} people, ${fmtNum(a.peak_density, 3)} /m² (alert at ${fmtNum(a.alert_density, 3)}); `,
        `from ${fmtTime(a.t_start)}${a.t_end ? ` to ${fmtTime(a.t_end)}` : ""}`);
    }
    if (kind === "watch_alert") {
      return h("li", { class: "watch", "data-kind": kind },
        h("strong", { text: `Watch ${a.watch_id} (case ${a.case_id})` }),
        ` — ${a.global_id || a.tracklet_id} on ${a.camera_id}, ${pct(a.confidence)}, `,
        `${fmtTime(a.t_start)} – ${fmtTime(a.t_end)}`);
    }
    return h("li", {}, `${kind}: ${JSON.stringify(a)}`);
  }

  async function loadWatches(section) {
    clear(section).append(h("h2", { id: "watches-title", text: "Open watches" }), h("p", { class: "busy", text: "Loading…" }));
    try {
      const watches = await api("watches");
      section.lastChild.remove();
      if (!watches.length) {
        section.append(h("p", { class: "muted", text: "No open watches. Open one from the Search page (“Open as watch”)." }));
        return;
      }
      section.append(h("div", { class: "table-wrap" }, h("table", { id: "watch-table" },
        h("thead", {}, h("tr", {}, ["Watch", "Case", "Reason", "By", "Threshold", "Alerts", ""].map((t) => h("th", { scope: "col", text: t })))),
        h("tbody", {}, watches.map((w) => h("tr", {},
          h("td", { text: w.watch_id }),
          h("td", { text: w.case_id || "" }),
          h("td", { text: w.reason || "" }),
          h("td", { text: w.requested_by || "" }),
          h("td", { class: "num", text: fmtNum(w.threshold) }),
          h("td", { class: "num", text: String(w.alerts ?? 0) }),
          h("td", {}, h("button", {
            type: "button", class: "danger", "aria-label": `Close watch ${w.watch_id}`,
            onclick: async () => {
              try {
                await api(`watches/${encodeURIComponent(w.watch_id)}`, { method: "DELETE" });
                toast(`Watch ${w.watch_id} closed.`);
              } catch (error) {
                toast(error.message);
              }
              loadWatches(section);
            },
          }, "Close"))))))));
    } catch (error) {
      section.lastChild.remove();
      section.append(liveError(error));
    }
  }

  async function loadAlertHistory(section) {
    clear(section).append(h("h2", { id: "history-title", text: "Crowd alerts in the store" }), h("p", { class: "busy", text: "Loading…" }));
    try {
      const rows = await api("density/alerts");
      section.lastChild.remove();
      if (!rows.length) {
        section.append(h("p", { class: "muted", text: "No crowd alerts stored." }));
        return;
      }
      section.append(alertTable(rows));
    } catch (error) {
      section.lastChild.remove();
      section.append(errorBox(error));
    }
  }

  function alertTable(rows) {
    return h("div", { class: "table-wrap" }, h("table", { id: "alert-table" },
      h("thead", {}, h("tr", {}, ["Zone", "State", "From", "Peak at", "To", "Peak people", "Peak /m²"].map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, rows.map((a) => h("tr", {},
        h("td", { text: a.zone_id }),
        h("td", { text: a.state }),
        h("td", { text: fmtTime(a.t_start) }),
        h("td", { text: fmtTime(a.t_peak) }),
        h("td", { text: a.t_end ? fmtTime(a.t_end) : "open" }),
        h("td", { class: "num", text: fmtNum(a.peak_count, 1) }),
        h("td", { class: "num", text: fmtNum(a.peak_density, 3) }))))));
  }

  // ------------------------------------------------------------------ density page

  /** Green → amber → red by density relative to the zone's alert density. */
  function densityColour(ratio) {
    if (ratio === null || ratio === undefined || Number.isNaN(ratio)) return "#e5e7eb";
    const t = Math.max(0, Math.min(1, ratio));
    const stops = [[0, [34, 197, 94]], [0.6, [245, 158, 11]], [1, [220, 38, 38]]];
    let i = 0;
    while (i < stops.length - 2 && t > stops[i + 1][0]) i += 1;
    const [ta, ca] = stops[i];
    const [tb, cb] = stops[i + 1];
    const f = (t - ta) / (tb - ta || 1);
    const rgb = ca.map((v, k) => Math.round(v + (cb[k] - v) * f));
    return `rgb(${rgb.join(",")})`;
  }

  function renderDensity(main) {
    const nowBox = h("section", { class: "panel", id: "density-now", "aria-labelledby": "now-title" },
      h("h2", { id: "now-title", text: "Zones now" }), h("p", { class: "busy", text: "Loading…" }));
    const windowForm = h("form", { id: "density-window", class: "row", novalidate: true },
      field("d-start", "From (UTC)", h("input", { type: "datetime-local", step: 1, required: true })),
      field("d-end", "To (UTC)", h("input", { type: "datetime-local", step: 1, required: true })),
      h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", text: "Show window" })));
    const chartBox = h("section", { class: "panel", id: "density-series", "aria-labelledby": "series-title" },
      h("h2", { id: "series-title", text: "People per zone over time" }));
    const heatBox = h("section", { class: "panel", id: "density-heatmap", "aria-labelledby": "heat-title" },
      h("h2", { id: "heat-title", text: "Occupancy heatmap" }));
    const historyBox = h("section", { class: "panel", id: "alert-history", "aria-labelledby": "history-title" });
    main.append(pageHeading("Density"),
      h("div", { class: "cols2" }, nowBox, h("div", {}, h("section", { class: "panel", "aria-label": "Time window" }, windowForm), historyBox)),
      h("div", { class: "cols2" }, chartBox, heatBox));
    loadAlertHistory(historyBox);

    let defaultEnd = null;
    const refreshNow = async () => {
      try {
        const now = await api("density/now");
        drawNow(nowBox, now);
        const newest = Object.values(now).map((z) => z.ts).filter(Boolean).sort().slice(-1)[0];
        if (newest && !defaultEnd) defaultEnd = new Date(newest);
      } catch (error) {
        clear(nowBox).append(h("h2", { id: "now-title", text: "Zones now" }), liveError(error), siteMap({ title: "Site map" }).svg);
      }
    };
    const timer = window.setInterval(refreshNow, 10000);
    state.cleanup.push(() => window.clearInterval(timer));
    const urls = [];
    state.cleanup.push(() => urls.forEach((u) => URL.revokeObjectURL(u)));

    const showWindow = async () => {
      const start = localToIso(windowForm.querySelector("#d-start").value);
      const end = localToIso(windowForm.querySelector("#d-end").value);
      if (!start || !end) return;
      const seconds = Math.max(1, (new Date(end) - new Date(start)) / 1000);
      const bucket = Math.min(3600, Math.max(1, Math.round(seconds / 120)));
      clear(chartBox).append(h("h2", { id: "series-title", text: "People per zone over time" }), h("p", { class: "busy", text: "Loading…" }));
      clear(heatBox).append(h("h2", { id: "heat-title", text: "Occupancy heatmap" }), h("p", { class: "busy", text: "Loading…" }));
      try {
        const rows = await api("density/zones", { params: { start, end, bucket_s: bucket } });
        chartBox.lastChild.remove();
        chartBox.append(zoneChart(rows, bucket));
      } catch (error) {
        chartBox.lastChild.remove();
        chartBox.append(errorBox(error));
      }
      try {
        const response = await api("density/heatmap.png", { params: { start, end }, raw: true });
        const url = URL.createObjectURL(await response.blob());
        urls.push(url);
        heatBox.lastChild.remove();
        heatBox.append(h("img", { class: "heatmap", id: "heatmap-img", src: url, alt: `Mean people per square metre from ${fmtTime(start)} to ${fmtTime(end)}, on the site map` }));
      } catch (error) {
        heatBox.lastChild.remove();
        heatBox.append(errorBox(error));
      }
    };
    windowForm.addEventListener("submit", (event) => { event.preventDefault(); showWindow(); });

    refreshNow().then(() => {
      const end = defaultEnd ? new Date(defaultEnd.getTime() + 60000) : new Date();
      end.setUTCSeconds(0, 0);
      const start = new Date(end.getTime() - 15 * 60000);
      windowForm.querySelector("#d-start").value = isoToLocal(start);
      windowForm.querySelector("#d-end").value = isoToLocal(end);
      showWindow();
    });
  }

  function drawNow(box, now) {
    const zones = (state.site && state.site.zones) || [];
    const byId = Object.fromEntries(zones.map((z) => [z.id, z]));
    const { svg } = siteMap({
      title: "Zones coloured by density now",
      zoneFill: (zone) => {
        const z = now[zone.id];
        return z ? densityColour(z.density_per_m2 / (zone.alert_density || 1)) : "#e5e7eb";
      },
    });
    const ids = [...new Set([...zones.map((z) => z.id), ...Object.keys(now)])];
    clear(box).append(
      h("h2", { id: "now-title", text: "Zones now" }),
      svg,
      h("p", { class: "legend" }, "Colour: density as a share of the zone's alert density (green low, red at the alert level); grey: not counted."),
      h("div", { class: "table-wrap" }, h("table", { id: "now-table" },
        h("thead", {}, h("tr", {}, ["Zone", "Second", "People", "Peak", "Per m²", "Alert at", "Coverage"].map((t) => h("th", { scope: "col", text: t })))),
        h("tbody", {}, ids.map((id) => {
          const z = now[id] || {};
          return h("tr", { "data-zone": id },
            h("td", { text: (byId[id] && byId[id].name) || id }),
            h("td", { text: fmtTime(z.ts) }),
            h("td", { class: "num", text: fmtNum(z.count, 1) }),
            h("td", { class: "num", text: z.peak ?? "—" }),
            h("td", { class: "num", text: fmtNum(z.density_per_m2, 3) }),
            h("td", { class: "num", text: byId[id] ? fmtNum(byId[id].alert_density, 3) : "—" }),
            h("td", { class: "num", text: pct(z.coverage) }));
        })))));
  }

  const SERIES_COLOURS = ["#1d4ed8", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#4b5563"];

  function zoneChart(rows, bucket) {
    if (!rows.length) return h("p", { class: "muted", text: "No counts in this window." });
    const byZone = {};
    for (const r of rows) (byZone[r.zone_id] = byZone[r.zone_id] || []).push(r);
    const times = rows.map((r) => new Date(r.ts).getTime());
    const t0 = Math.min(...times);
    const t1 = Math.max(...times, t0 + 1000);
    const top = Math.max(1, ...rows.map((r) => r.count || 0));
    const [w, hgt, left, bottom, pad] = [720, 260, 48, 34, 12];
    const x = (t) => left + ((t - t0) / (t1 - t0)) * (w - left - pad);
    const y = (v) => hgt - bottom - (v / top) * (hgt - bottom - pad);
    const svg = s("svg", { class: "chart", viewBox: `0 0 ${w} ${hgt}`, role: "img", "aria-label": `Mean people per zone in ${bucket}-second buckets` },
      s("title", { text: "People per zone over time" }),
      s("line", { x1: left, y1: hgt - bottom, x2: w - pad, y2: hgt - bottom, stroke: "#555" }),
      s("line", { x1: left, y1: pad, x2: left, y2: hgt - bottom, stroke: "#555" }));
    for (const v of [0, top / 2, top]) {
      svg.append(s("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#444", text: fmtNum(v, 1) }),
        s("line", { x1: left, y1: y(v), x2: w - pad, y2: y(v), stroke: "#e5e7eb" }));
    }
    for (const [t, anchor] of [[t0, "start"], [(t0 + t1) / 2, "middle"], [t1, "end"]]) {
      svg.append(s("text", { x: x(t), y: hgt - bottom + 16, "text-anchor": anchor, "font-size": 11, fill: "#444", text: new Date(t).toISOString().slice(11, 19) }));
    }
    const legend = h("p", { class: "legend" });
    Object.entries(byZone).forEach(([zone, zrows], i) => {
      const colour = SERIES_COLOURS[i % SERIES_COLOURS.length];
      const sorted = zrows.slice().sort((a, b) => (a.ts < b.ts ? -1 : 1));
      const points = sorted.map((r) => `${x(new Date(r.ts).getTime()).toFixed(1)},${y(r.count || 0).toFixed(1)}`).join(" ");
      svg.append(s("polyline", { points, fill: "none", stroke: colour, "stroke-width": 2, "data-zone": zone }));
      legend.append(h("span", {}, s("svg", { width: 12, height: 12, "aria-hidden": "true" }, s("rect", { width: 12, height: 12, fill: colour })), ` ${zone}`));
    });
    return h("div", {}, svg, legend,
      h("p", { class: "hint", text: `Mean people per ${bucket}-s bucket, ${fmtTime(t0 / 1000)} – ${fmtTime(t1 / 1000)}.` }));
  }

  // ------------------------------------------------------------------ operations page

  function renderOperations(main) {
    const cams = h("section", { class: "panel", id: "cameras", "aria-labelledby": "cameras-title" },
      h("h2", { id: "cameras-title", text: "Cameras" }), h("p", { class: "busy", text: "Loading…" }));
    const deps = h("section", { class: "panel", id: "deployments", "aria-labelledby": "deployments-title" },
      h("h2", { id: "deployments-title", text: "Deployments" }), h("p", { class: "busy", text: "Loading…" }));
    const add = addCameraForm(() => refresh());
    main.append(pageHeading("Operations"), cams, h("div", { class: "cols2" }, deps, add));
    const refresh = async () => {
      await Promise.all([loadCameras(cams, refresh), loadDeployments(deps)]);
    };
    refresh();
    const timer = window.setInterval(() => {
      // do not redraw under a pending "confirm remove"
      if (!cams.querySelector(".confirm-remove")) refresh();
    }, 5000);
    state.cleanup.push(() => window.clearInterval(timer));
  }

  async function loadCameras(section, refresh) {
    try {
      const cameras = await api("cameras");
      // a refresh that was already under way must not wipe a pending "confirm remove"
      if (section.querySelector(".confirm-remove")) return;
      const table = h("table", { id: "camera-table" },
        h("thead", {}, h("tr", {}, ["Camera", "State", "fps in", "fps out", "Lag (s)", "Drops", "Decode errors", "Reconnects", "Last frame", "Progress", ""].map((t) => h("th", { scope: "col", text: t })))),
        h("tbody", {}, cameras.map((c) => {
          const hl = c.health || {};
          return h("tr", { "data-camera": c.id },
            h("th", { scope: "row", text: c.id }),
            h("td", { class: `state-${hl.state || "unknown"}`, text: c.health ? hl.state : "no pipeline" }),
            h("td", { class: "num", text: fmtNum(hl.fps_in, 1) }),
            h("td", { class: "num", text: fmtNum(hl.fps_out, 1) }),
            h("td", { class: "num", text: fmtNum(hl.lag_s, 2) }),
            h("td", { class: "num", text: hl.drops ?? "—" }),
            h("td", { class: "num", text: hl.decode_errors ?? "—" }),
            h("td", { class: "num", text: hl.reconnects ?? "—" }),
            h("td", { text: fmtTime(hl.last_frame_time) }),
            h("td", { class: "num", text: pct(hl.progress) }),
            h("td", {}, removeButton(c.id, refresh)));
        })));
      clear(section).append(h("h2", { id: "cameras-title", text: "Cameras" }), h("div", { class: "table-wrap" }, table));
    } catch (error) {
      clear(section).append(h("h2", { id: "cameras-title", text: "Cameras" }), liveError(error));
    }
  }

  function removeButton(cameraId, refresh) {
    const cell = h("span", {});
    const ask = h("button", { type: "button", class: "danger", "aria-label": `Remove camera ${cameraId}`, text: "Remove" });
    ask.addEventListener("click", () => {
      const yes = h("button", { type: "button", class: "danger confirm-remove", text: `Yes, remove ${cameraId}` });
      const no = h("button", { type: "button", text: "Cancel" });
      yes.addEventListener("click", async () => {
        clear(cell).append(h("span", { class: "busy", text: "Removing…" }));
        try {
          await api(`cameras/${encodeURIComponent(cameraId)}`, { method: "DELETE" });
          toast(`Camera ${cameraId} removed.`);
        } catch (error) {
          toast(error.message);
        }
        refresh();
      });
      no.addEventListener("click", () => {
        clear(cell).append(ask);
        ask.focus();
      });
      clear(cell).append(yes, " ", no);
      yes.focus();
    });
    cell.append(ask);
    return cell;
  }

  async function loadDeployments(section) {
    try {
      const d = await api("deployments");
      const rows = [];
      for (const [appName, app] of Object.entries(d.applications || {})) {
        for (const [depName, dep] of Object.entries(app.deployments || {})) {
          rows.push(h("tr", {},
            h("td", { text: appName }), h("td", { text: depName }), h("td", { text: dep.status }),
            h("td", { text: Object.entries(dep.replicas || {}).map(([k, v]) => `${k} ${v}`).join(", ") || "—" })));
        }
      }
      const batches = Object.entries(d.batches || {}).map(([kind, b]) => h("tr", {},
        h("td", { text: kind }),
        h("td", { class: "num", text: b.max_batch_size ?? "—" }),
        h("td", { class: "num", text: fmtNum(b.mean_batch_size, 2) }),
        h("td", { class: "num", text: b.max_batch_size_seen ?? "—" }),
        h("td", { class: "num", text: b.batches ?? "—" }),
        h("td", { class: "num", text: b.items ?? "—" }),
        h("td", { text: b.error || b.device || "" })));
      clear(section).append(
        h("h2", { id: "deployments-title", text: "Deployments" }),
        h("div", { class: "table-wrap" }, h("table", { id: "deployment-table" },
          h("thead", {}, h("tr", {}, ["Application", "Deployment", "Status", "Replicas"].map((t) => h("th", { scope: "col", text: t })))),
          h("tbody", {}, rows))),
        h("h3", { text: "Batching (the replica that answered)" }),
        h("div", { class: "table-wrap" }, h("table", { id: "batch-table" },
          h("thead", {}, h("tr", {}, ["Model", "Max batch", "Mean batch", "Largest seen", "Batches", "Items", "Device"].map((t) => h("th", { scope: "col", text: t })))),
          h("tbody", {}, batches))));
    } catch (error) {
      clear(section).append(h("h2", { id: "deployments-title", text: "Deployments" }), liveError(error));
    }
  }

  function addCameraForm(refresh) {
    const example = {
      id: "gate2",
      source: "rtsp://10.0.0.7/stream1",
      fps: 10,
      resolution: [640, 360],
      calibration: [
        { image: [0, 360], ground: [0, 0] },
        { image: [640, 360], ground: [8, 0] },
        { image: [640, 200], ground: [8, 12] },
        { image: [0, 200], ground: [0, 12] },
      ],
    };
    const errors = h("div", { class: "errors", role: "alert", id: "camera-errors" });
    const text = h("textarea", { class: "code", spellcheck: "false", "aria-describedby": "camera-json-hint" });
    text.value = JSON.stringify(example, null, 2);
    const form = h("form", { class: "panel", id: "add-camera", novalidate: true, "aria-labelledby": "add-camera-title" },
      h("h2", { id: "add-camera-title", text: "Add a camera" }),
      field("camera-json", "Camera settings (JSON)", text),
      h("p", { class: "hint", id: "camera-json-hint", text: "As one entry of site.yaml's cameras: list. The change lives in the running service only: add it to site.yaml too." }),
      errors,
      h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", text: "Add camera" })));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clear(errors);
      let settings;
      try {
        settings = JSON.parse(text.value);
      } catch (error) {
        text.setAttribute("aria-invalid", "true");
        errors.textContent = `Not JSON: ${error.message}`;
        text.focus();
        return;
      }
      text.removeAttribute("aria-invalid");
      try {
        const added = await api("cameras", { method: "POST", json: settings });
        toast(`Camera ${added.id || settings.id} added.`);
        refresh();
      } catch (error) {
        errors.textContent = error.message;
      }
    });
    return form;
  }

  // ------------------------------------------------------------------ audit page (admin)

  function renderAudit(main) {
    const out = h("div", { id: "audit-result", role: "status" });
    main.append(pageHeading("Audit"),
      h("section", { class: "panel" },
        h("p", { text: "Check the audit log's hash chain (GET /audit/verify). The check is itself audited." }),
        h("div", { class: "actions" }, h("button", {
          type: "button", class: "primary", id: "verify-audit",
          onclick: async () => {
            clear(out).append(h("p", { class: "busy", text: "Checking…" }));
            try {
              const report = await api("audit/verify");
              clear(out).append(h("p", { class: report.ok ? "verdict good" : "verdict none", text: report.ok ? `Chain intact (${report.entries} entries).` : `Chain broken at entry ${report.first_bad}.` }),
                h("pre", { text: JSON.stringify(report, null, 2) }));
            } catch (error) {
              clear(out).append(errorBox(error));
            }
          },
        }, "Verify the audit chain")),
        out));
  }

  // ------------------------------------------------------------------ start

  async function start() {
    $("logout").addEventListener("click", () => logout("Logged out."));
    // the skip link must not change the hash (the hash is the page)
    document.querySelector(".skip").addEventListener("click", (event) => {
      event.preventDefault();
      $("main").focus();
    });
    window.addEventListener("hashchange", route);
    if (key()) {
      try {
        await login();
        return;
      } catch (_) {
        window.sessionStorage.removeItem(KEY_STORE);
      }
    }
    route();
  }

  start();
})();
