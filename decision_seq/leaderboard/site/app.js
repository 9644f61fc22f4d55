// decision-seq leaderboard page: sortable tables, filters, the per-cell detail and its chart (uPlot).
// The data is the leaderboard.json document embedded in index.html (docs/leaderboard-json.md); every
// number shown is read from it, nothing is recomputed here.
"use strict";

const D = JSON.parse(document.getElementById("leaderboard-data").textContent);
const cellsById = new Map(D.cells.map((c) => [c.id, c]));
let openCell = null; // the cell whose detail is shown
let chart = null; // its uPlot instance

// ---------------------------------------------------------------------------------------------
// Formatting (one decimal, as in leaderboard.md; "-" for a missing number)

function fmt(x) {
  if (x === null || x === undefined) return "-";
  // An exact tie at one decimal (x = odd / 4: .25, .75): Python, which writes leaderboard.md, rounds it to
  // even and toFixed rounds it up; round like Python so both show the same digits.
  if (Number.isInteger(x * 4) && !Number.isInteger(x * 2)) {
    const down = Math.floor(x * 10);
    return ((down % 2 === 0 ? down : down + 1) / 10).toFixed(1);
  }
  return x.toFixed(1);
}
const fmtCI = (lo, hi) => (lo === null || hi === null ? "" : `[${fmt(lo)}, ${fmt(hi)}]`);
const fmtMeanStd = (s) => `${fmt(s.mean)} ± ${fmt(s.std)}`;
const fmtEstimate = (e) => `${fmt(e.value)} ${fmtCI(e.ci_low, e.ci_high)}`.trim();
const fmtPublished = (p) => (p ? `${fmt(p.value)}${p.exact ? "" : "†"} (${p.source})` : "-");
const fmtValue = (v) => (v === null || v === undefined ? "-" : Array.isArray(v) ? `[${v.join(", ")}]` : String(v));

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

// ---------------------------------------------------------------------------------------------
// A table sorted by clicking a header (again: reversed); missing values sort last either way.

function sortableTable(table, columns, rows, onRow) {
  const state = { col: null, dir: 1, filter: () => true };
  const headRow = el("tr");
  columns.forEach((col) => {
    const th = el("th", { class: col.text ? "text" : "", "data-key": col.key, title: col.title || "" }, col.label);
    th.addEventListener("click", () => {
      state.dir = state.col === col ? -state.dir : 1;
      state.col = col;
      render();
    });
    headRow.append(th);
  });
  const tbody = el("tbody");
  table.replaceChildren(el("thead", {}, headRow), tbody);

  function compare(a, b) {
    const x = state.col.sort(a), y = state.col.sort(b);
    if (x === null || x === undefined) return y === null || y === undefined ? 0 : 1;
    if (y === null || y === undefined) return -1;
    return state.dir * (typeof x === "string" ? x.localeCompare(y) : x - y);
  }

  function render() {
    let shown = rows.filter(state.filter);
    if (state.col) shown = shown.slice().sort(compare);
    headRow.querySelectorAll("th").forEach((th, i) => {
      if (columns[i] === state.col) th.setAttribute("aria-sort", state.dir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    });
    tbody.replaceChildren(
      ...shown.map((row) => {
        const tr = el("tr");
        if (row.id) tr.dataset.id = row.id;
        if (openCell && row === openCell) tr.classList.add("selected");
        columns.forEach((col) => {
          const td = el("td", { class: col.text ? "text" : "", "data-key": col.key });
          td.append(col.show(row));
          tr.append(td);
        });
        if (onRow) tr.addEventListener("click", () => onRow(row));
        return tr;
      }),
    );
    return shown.length;
  }

  return {
    render,
    setFilter(fn) {
      state.filter = fn;
      return render();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Header, warnings and notes

const nRuns = D.cells.reduce((n, c) => n + c.runs.length, 0);
document.getElementById("meta").textContent =
  `${D.cells.length} rows, ${nRuns} runs · generated ${D.generated_at} · ${D.statistics.method}`;

function fillList(sectionId, listId, items) {
  if (!items.length) return;
  document.getElementById(listId).replaceChildren(...items.map((t) => el("li", {}, t)));
  document.getElementById(sectionId).hidden = false;
}
fillList("warnings", "warning-list", D.warnings);
const daggered = D.cells.some((c) => c.published && !c.published.exact);
fillList("notes-section", "note-list", [...D.notes, ...(daggered ? [D.rebuild_note] : [])]);

// ---------------------------------------------------------------------------------------------
// Aggregate table

const estimateColumn = (key, label, which, stat) => ({
  key,
  label,
  show: (a) => fmtEstimate(a[which][stat]),
  sort: (a) => a[which][stat].value,
});
const aggregateColumns = [
  { key: "model", label: "model", text: true, show: (a) => a.label, sort: (a) => a.label },
  { key: "datasets", label: "datasets", show: (a) => a.datasets.length, sort: (a) => a.datasets.length,
    title: "datasets pooled" },
  { key: "runs", label: "runs", show: (a) => a.n_runs, sort: (a) => a.n_runs },
  estimateColumn("last_mean", "last mean", "last", "mean"),
  estimateColumn("last_iqm", "last IQM", "last", "iqm"),
  estimateColumn("best_mean", "best mean", "best", "mean"),
  estimateColumn("best_iqm", "best IQM", "best", "iqm"),
  {
    key: "published",
    label: "published (mean over the same datasets)",
    text: true,
    show: (a) => a.published.map((p) => `${fmt(p.mean)}${p.exact ? "" : "†"} (${p.source})`).join("; ") || "-",
    sort: (a) => (a.published.length ? a.published[0].mean : null),
  },
];
if (D.aggregates.length) {
  sortableTable(document.getElementById("aggregate-table"), aggregateColumns, D.aggregates).render();
} else {
  document.getElementById("aggregate-table").hidden = true;
  document.getElementById("aggregate-empty").hidden = false;
}

// ---------------------------------------------------------------------------------------------
// Per dataset x model table, with filters

function modelCell(c) {
  if (!c.variant) return c.model;
  const span = el("span", {}, `${c.model} `);
  span.append(el("span", { class: "badge", title: "runs of this dataset and model differ in protocol" }, `⚠ ${c.variant}`));
  return span;
}
const summaryColumns = (which) => [
  { key: `${which}`, label: `${which} (mean ± std)`, show: (c) => fmtMeanStd(c[which]), sort: (c) => c[which].mean },
  { key: `${which}_ci`, label: `${which} 95% CI`, show: (c) => fmtCI(c[which].ci_low, c[which].ci_high),
    sort: (c) => c[which].ci_low },
];
const cellColumns = [
  {
    key: "dataset",
    label: "dataset",
    text: true,
    show: (c) => el("a", { href: `#cell=${c.id}` }, c.dataset.id + (c.score_unit === "return" ? " (raw return)" : "")),
    sort: (c) => c.dataset.id,
  },
  { key: "model", label: "model", text: true, show: modelCell, sort: (c) => c.label },
  { key: "backbone", label: "backbone", text: true, show: (c) => c.backbones.join(", "), sort: (c) => c.backbones.join() },
  { key: "seeds", label: "seeds", show: (c) => c.n_seeds, sort: (c) => c.n_seeds },
  ...summaryColumns("last"),
  ...summaryColumns("best"),
  { key: "published", label: "published", text: true, show: (c) => fmtPublished(c.published),
    sort: (c) => (c.published ? c.published.value : null) },
  { key: "dataset_mean", label: "dataset mean", show: (c) => fmt(c.dataset.normalized_score_mean),
    sort: (c) => c.dataset.normalized_score_mean, title: "the dataset's own mean score" },
];
const cellTable = sortableTable(document.getElementById("cell-table"), cellColumns, D.cells, (c) => {
  location.hash = `cell=${c.id}`;
});

const filterValues = { env: (c) => [c.dataset.env], level: (c) => [c.dataset.level], backbone: (c) => c.backbones };
const filters = [...document.querySelectorAll(".filters select")];
filters.forEach((select) => {
  const values = [...new Set(D.cells.flatMap(filterValues[select.dataset.key]))].filter((v) => v).sort();
  select.replaceChildren(el("option", { value: "" }, "all"), ...values.map((v) => el("option", { value: v }, v)));
  select.addEventListener("change", applyFilters);
});
function applyFilters() {
  const active = filters.filter((s) => s.value).map((s) => [filterValues[s.dataset.key], s.value]);
  const shown = cellTable.setFilter((c) => active.every(([values, v]) => values(c).includes(v)));
  document.getElementById("row-count").textContent = `${shown} of ${D.cells.length} rows`;
}
applyFilters();

// ---------------------------------------------------------------------------------------------
// Per-cell detail: protocol, command, runs, learning curves. Opened by the URL fragment #cell=<id>.

const PROTOCOL_ROWS = [
  ["dataset", (c) => c.dataset.id],
  ["dataset version", (c) => c.dataset.version || "-"],
  ["eval targets", (c) => fmtValue(c.protocol.targets)],
  ["episodes per target", (c) => fmtValue(c.protocol.episodes)],
  ["training steps", (c) => fmtValue(c.protocol.steps)],
  ["eval env", (c) => fmtValue(c.protocol.eval_env)],
  ["eval every", (c) => fmtValue(c.protocol.eval_every)],
  ["eval mode", (c) => fmtValue(c.protocol.mode)],
  ["context length", (c) => fmtValue(c.protocol.context_len)],
  ["rtg scale", (c) => fmtValue(c.protocol.rtg_scale)],
  ["top fraction", (c) => fmtValue(c.protocol.top_fraction)],
  ["score", (c) => (c.score_unit === "normalized" ? "normalized (0-100)" : "raw return")],
];
function showDetail(c) {
  openCell = c;
  document.getElementById("detail").hidden = false;
  document.getElementById("detail-title").textContent = `${c.dataset.id} / ${c.label}`;
  const warning = document.getElementById("detail-warning");
  warning.hidden = !c.variant;
  warning.textContent = c.variant
    ? `⚠ Protocol mismatch: runs of ${c.dataset.id} / ${c.model} differ in protocol; this row holds those with ` +
      `${c.variant} (not averaged with the others).`
    : "";
  const link = document.getElementById("detail-permalink");
  link.href = `#cell=${c.id}`;
  link.textContent = `#cell=${c.id}`;
  document.getElementById("protocol-table").replaceChildren(
    ...PROTOCOL_ROWS.map(([name, value]) => el("tr", {}, el("th", {}, name), el("td", { "data-field": name }, value(c)))),
  );
  document.getElementById("detail-command").textContent = c.command;
  const head = el("tr", {}, ...["path", "seed", "backbone", "git commit", "last", "best"].map((h, i) =>
    el("th", { class: i < 4 ? "text" : "" }, h)));
  document.getElementById("runs-table").replaceChildren(
    el("thead", {}, head),
    el("tbody", {}, ...c.runs.map((r) => el("tr", {},
      el("td", { class: "text" }, r.path),
      el("td", { class: "text" }, fmtValue(r.seed)),
      el("td", { class: "text" }, fmtValue(r.backbone)),
      el("td", { class: "text", title: r.git_commit || "" }, r.git_commit ? r.git_commit.slice(0, 12) : "-"),
      el("td", {}, fmt(r.last)),
      el("td", {}, fmt(r.best)),
    ))),
  );
  const pub = document.getElementById("detail-published");
  pub.replaceChildren();
  if (c.published) {
    pub.append(el("h3", {}, "Published"), el("ul", {}, ...c.published.sources.map((s) =>
      el("li", {}, `${s.source}: ${fmt(s.value)}${c.published.exact ? "" : "† (our rebuild of the task)"}`))));
  }
  document.querySelectorAll("#cell-table tbody tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.id === c.id));
  drawChart(c);
}

const cssVar = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

function drawChart(c) {
  const box = document.getElementById("chart");
  if (chart) chart.destroy();
  chart = null;
  box.replaceChildren();
  const steps = c.curve.steps;
  if (!steps.length) {
    box.append(el("p", { class: "hint" }, "No evaluation curve in these runs."));
    return;
  }
  // One column per series on the x values of the band (every step any run evaluated); null: no eval there.
  const seedLines = c.runs.map((r) => {
    const at = new Map(r.curve.map(([s, v]) => [s, v]));
    return steps.map((s) => (at.has(s) ? at.get(s) : null));
  });
  const fg = cssVar("--fg"), grid = { stroke: cssVar("--grid") };
  const series = [
    { label: "step" },
    { label: "mean", stroke: cssVar("--mean"), width: 2.5 },
    { label: "CI low", stroke: cssVar("--band"), width: 1, points: { show: false } },
    { label: "CI high", stroke: cssVar("--band"), width: 1, points: { show: false } },
    ...c.runs.map((r, i) => ({
      label: `seed ${r.seed}`,
      stroke: cssVar(`--seed${(i % 6) + 1}`),
      width: 1,
      spanGaps: true,
    })),
  ];
  const opts = {
    width: Math.max(320, box.clientWidth || 800),
    height: 300,
    series,
    bands: [{ series: [3, 2], fill: cssVar("--band") }],
    scales: { x: { time: false } },
    axes: [
      { label: "training step", stroke: fg, grid, ticks: grid },
      { label: c.score_unit === "normalized" ? "eval score (normalized)" : "eval return", stroke: fg, grid, ticks: grid },
    ],
  };
  chart = new uPlot(opts, [steps, c.curve.mean, c.curve.ci_low, c.curve.ci_high, ...seedLines], box);
}

function openFromHash() {
  const m = location.hash.match(/^#cell=(.+)$/);
  const c = m && cellsById.get(decodeURIComponent(m[1]));
  if (!c) return;
  showDetail(c);
  document.getElementById("detail").scrollIntoView();
}
window.addEventListener("hashchange", openFromHash);
window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => openCell && drawChart(openCell));
openFromHash();
