//! The page around the sections: one HTML file with its style and script inline, nothing
//! fetched from anywhere, so it opens offline and can be mailed or archived as it is.
//!
//! The script only adds comfort (sortable tables, a table row lighting up its points in the
//! plots); everything is readable without it. Its first part records any script error on the
//! root element (`data-script-errors`) and its last line marks the page ready
//! (`data-report-ready`), which is what the browser test reads back.

use crate::draw::esc;
use std::fmt::Write;

const STYLE: &str = r#"
body { font-family: Helvetica, Arial, sans-serif; margin: 0 auto; max-width: 1180px; padding: 0 18px 40px; color: #222; }
header { border-bottom: 2px solid #446; margin-bottom: 8px; }
h1 { font-size: 22px; margin: 18px 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ccd; padding-bottom: 3px; }
h3 { font-size: 15px; margin: 14px 0 6px; }
.sub { color: #555; font-size: 13px; margin: 2px 0 10px; }
nav a { margin-right: 14px; font-size: 13px; color: #335; }
.tiles { display: flex; flex-wrap: wrap; gap: 10px; }
.tile { border: 1px solid #ccd; border-radius: 6px; padding: 8px 12px; min-width: 130px; background: #f7f8fc; }
.tile .v { font-size: 20px; font-weight: bold; }
.tile .k { font-size: 12px; color: #555; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; }
.plots svg.plot { width: 480px; max-width: 100%; height: auto; border: 1px solid #eee; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
th, td { border: 1px solid #dde; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eef; cursor: pointer; user-select: none; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
td.mono, .mono { font-family: Menlo, Consolas, monospace; font-size: 12px; word-break: break-all; }
table.config td:first-child { font-family: Menlo, Consolas, monospace; }
.cells { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start; }
.cells svg.cellnas-drawing { max-width: 100%; height: auto; }
td .cells svg.cellnas-drawing { max-width: 380px; }
figure { margin: 0; }
figcaption { font-size: 12px; color: #555; text-align: center; }
.warn { color: #a40; font-size: 13px; }
tr.lit td { background: #fff3c4; }
circle.lit { stroke: #000; stroke-width: 2; r: 6; }
footer { margin-top: 30px; color: #777; font-size: 12px; }
"#;

const ERROR_HOOK: &str = r#"
(function () {
  var root = document.documentElement;
  function note(msg) { root.setAttribute('data-script-errors', (root.getAttribute('data-script-errors') || '') + msg + '\n'); }
  window.addEventListener('error', function (e) { note(e.message || 'error'); });
  window.addEventListener('unhandledrejection', function (e) { note('unhandled rejection: ' + e.reason); });
})();
"#;

const SCRIPT: &str = r#"
(function () {
  // Sortable tables: click a header to sort by that column (numbers by their data-v).
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var heads = table.querySelectorAll('th');
    heads.forEach(function (th, col) {
      th.addEventListener('click', function () {
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var asc = th.getAttribute('data-sort') !== 'asc';
        heads.forEach(function (h) { h.removeAttribute('data-sort'); });
        th.setAttribute('data-sort', asc ? 'asc' : 'desc');
        function key(row) {
          var cell = row.cells[col];
          if (!cell) { return ''; }
          var v = cell.getAttribute('data-v');
          return v !== null ? parseFloat(v) : cell.textContent;
        }
        rows.sort(function (a, b) {
          var x = key(a), y = key(b);
          var c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  // A table row with data-id lights up that candidate's points in every plot, and back.
  function light(id, on) {
    document.querySelectorAll('circle.pt[data-id="' + id + '"]').forEach(function (c) { c.classList.toggle('lit', on); });
    document.querySelectorAll('tr[data-id="' + id + '"]').forEach(function (r) { r.classList.toggle('lit', on); });
  }
  document.querySelectorAll('tr[data-id], circle.pt[data-id]').forEach(function (el) {
    var id = el.getAttribute('data-id');
    el.addEventListener('mouseenter', function () { light(id, true); });
    el.addEventListener('mouseleave', function () { light(id, false); });
  });
  document.documentElement.setAttribute('data-report-ready', '1');
})();
"#;

/// A page under construction: sections appended in order, with a table of contents.
pub struct Page {
    title: String,
    subtitle: String,
    nav: Vec<(String, String)>,
    body: String,
}

impl Page {
    pub fn new(title: &str, subtitle: &str) -> Page {
        Page { title: title.to_string(), subtitle: subtitle.to_string(), nav: Vec::new(), body: String::new() }
    }

    /// A section `<h2>` with an anchor and its HTML.
    pub fn section(&mut self, id: &str, heading: &str, html: &str) {
        self.nav.push((id.to_string(), heading.to_string()));
        let _ = write!(self.body, "<section id=\"{}\">\n<h2>{}</h2>\n{html}</section>\n", esc(id), esc(heading));
    }

    pub fn finish(self, footer: &str) -> String {
        let mut nav = String::new();
        for (id, h) in &self.nav {
            let _ = write!(nav, "<a href=\"#{}\">{}</a>", esc(id), esc(h));
        }
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{STYLE}</style>\n<script>{ERROR_HOOK}</script>\n</head>\n<body>\n<header>\n<h1>{}</h1>\n<p class=\"sub\">{}</p>\n<nav>{nav}</nav>\n</header>\n{}<footer>{}</footer>\n<script>{SCRIPT}</script>\n</body>\n</html>\n",
            esc(&self.title),
            esc(&self.title),
            esc(&self.subtitle),
            self.body,
            esc(footer)
        )
    }
}

/// Figure tiles: (label, value).
pub fn tiles(items: &[(String, String)]) -> String {
    let mut o = String::from("<div class=\"tiles\">");
    for (k, v) in items {
        let _ = write!(o, "<div class=\"tile\"><div class=\"v\">{}</div><div class=\"k\">{}</div></div>", esc(v), esc(k));
    }
    o.push_str("</div>\n");
    o
}

/// A table cell: text, a number (sorted by its value), or raw HTML.
pub enum Td {
    Text(String),
    Num(f64, String),
    Html(String),
}

/// A sortable table; `rows` are (data-id, cells).
pub fn table(class: &str, heads: &[&str], rows: &[(Option<String>, Vec<Td>)]) -> String {
    let mut o = format!("<table class=\"sortable {}\">\n<thead><tr>", esc(class));
    for h in heads {
        let _ = write!(o, "<th>{}</th>", esc(h));
    }
    o.push_str("</tr></thead>\n<tbody>\n");
    for (id, cells) in rows {
        match id {
            Some(id) => {
                let _ = write!(o, "<tr data-id=\"{}\">", esc(id));
            }
            None => o.push_str("<tr>"),
        }
        for c in cells {
            match c {
                Td::Text(t) => {
                    let _ = write!(o, "<td>{}</td>", esc(t));
                }
                Td::Num(v, t) => {
                    let _ = write!(o, "<td class=\"n\" data-v=\"{}\">{}</td>", if v.is_finite() { v.to_string() } else { "NaN".into() }, esc(t));
                }
                Td::Html(h) => {
                    let _ = write!(o, "<td>{h}</td>");
                }
            }
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</tbody>\n</table>\n");
    o
}

/// A run's config.json as a two-column table of flattened keys (`train.lr`).
pub fn config_table(config: &serde_json::Value) -> String {
    fn walk(prefix: &str, v: &serde_json::Value, rows: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&key, v, rows);
                }
            }
            serde_json::Value::Number(n) => rows.push((prefix.to_string(), number(n))),
            serde_json::Value::String(s) => rows.push((prefix.to_string(), s.clone())),
            serde_json::Value::Array(a) if a.iter().all(|x| x.is_string() || x.is_number()) => {
                let items: Vec<String> = a.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string)).collect();
                rows.push((prefix.to_string(), items.join(", ")));
            }
            other => rows.push((prefix.to_string(), other.to_string())),
        }
    }
    let mut rows = Vec::new();
    walk("", config, &mut rows);
    let mut o = String::from("<table class=\"config\">\n<tbody>\n");
    for (k, v) in rows {
        let _ = writeln!(o, "<tr><td>{}</td><td class=\"mono\">{}</td></tr>", esc(&k), esc(&v));
    }
    o.push_str("</tbody>\n</table>\n");
    o
}

/// A JSON number as a person reads it: f32 flags stored as f64 (0.05000000074505806) shown
/// with 7 significant digits (0.05).
fn number(n: &serde_json::Number) -> String {
    if n.is_f64() {
        let v = n.as_f64().unwrap_or(f64::NAN);
        let s = format!("{:.6e}", v);
        // Back through f64 parsing so trailing zeros go: 5.000000e-2 -> 0.05.
        s.parse::<f64>().map_or(s, |x| x.to_string())
    } else {
        n.to_string()
    }
}
