"""The HTML report: one self-contained file (inline SVG plots, inline CSS and JavaScript, no network).

Plots are drawn with matplotlib (the ``eval`` extra) as SVG and placed in the
page; the per-item table is plain HTML that a few lines of inline JavaScript
sort and filter, so the page opens offline and works without a server.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from typing import Any

from promptask.evaluate.calibration_plots import calibration_section
from promptask.evaluate.svg import figure_module, margins, svg

__all__ = ["render_html"]

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;
color:#1d2330;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d8dde6;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}.meta{color:#5b6475;margin:0 0 12px}
table{border-collapse:collapse;margin:6px 0 12px}th,td{border:1px solid #d8dde6;padding:4px 8px;text-align:left;
vertical-align:top}th{background:#f1f4f9}td.num{text-align:right;font-variant-numeric:tabular-nums}
.plots{display:flex;flex-wrap:wrap;gap:12px}.plots figure{margin:0;border:1px solid #e3e7ee;padding:6px;
background:#fff}.plots svg{display:block;max-width:560px;height:auto}
.comparison{font-family:ui-monospace,monospace;margin:2px 0}.problems li{color:#8a4b00}
#items td{max-width:340px;overflow-wrap:anywhere}#items th{cursor:pointer;user-select:none}
#items tr.failed td.status{color:#b3261e;font-weight:600}#items tr.passed td.status{color:#1b7f3b}
.controls{margin:8px 0;display:flex;gap:16px;align-items:center}code{font-size:12px}
"""

# The page may load nothing: a report opened from a mail or a CI artefact never reaches the network.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

_JS = """
(function(){
  var table=document.getElementById('items');
  var body=table.tBodies[0];
  var failures=document.getElementById('failures-only');
  var variant=document.getElementById('variant-filter');
  var count=document.getElementById('shown-count');
  function apply(){
    var shown=0;
    Array.prototype.forEach.call(body.rows,function(row){
      var hide=(failures.checked&&row.dataset.failed!=='1')||(variant.value&&row.dataset.variant!==variant.value);
      row.style.display=hide?'none':'';
      if(!hide){shown++;}
    });
    count.textContent=shown+' of '+body.rows.length+' rows';
  }
  failures.addEventListener('change',apply);
  variant.addEventListener('change',apply);
  Array.prototype.forEach.call(table.tHead.rows[0].cells,function(cell,index){
    cell.addEventListener('click',function(){
      var ascending=cell.dataset.order!=='asc';
      Array.prototype.forEach.call(table.tHead.rows[0].cells,function(c){delete c.dataset.order;});
      cell.dataset.order=ascending?'asc':'desc';
      var rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){
        var x=a.cells[index].dataset.sort||a.cells[index].textContent;
        var y=b.cells[index].dataset.sort||b.cells[index].textContent;
        var nx=parseFloat(x),ny=parseFloat(y);
        var order=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);
        return ascending?order:-order;
      });
      rows.forEach(function(row){body.appendChild(row);});
    });
  });
  apply();
})();
"""


def _esc(value: Any) -> str:
    return html.escape(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "variant"


def _confusion_plot(figure: Any, labels: dict[str, Any], title: str, salt: str) -> str:
    rows, columns, matrix = labels["labels"], labels["columns"], labels["confusion"]
    size = max(2.2, 0.55 * len(columns) + 0.8)
    fig = figure.Figure(figsize=(size, max(1.6, 0.5 * len(rows))))
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues", aspect="auto")
    peak = max((max(r) for r in matrix if r), default=0) or 1
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            if value:  # zeros are left blank: less clutter, and many fewer texts to draw for many labels
                ax.text(j, i, str(value), ha="center", va="center", color="white" if value > peak / 2 else "#1d2330")
    ax.set_xticks(range(len(columns)), columns, rotation=35, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(f"Confusion matrix: {title}", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    margins(fig, below=columns, beside=rows, right=0.45)  # the colour bar's tick labels
    return svg(fig, salt)


def _f1_plot(figure: Any, labels: dict[str, Any], title: str, salt: str) -> str:
    names = list(labels["per_label"])
    values = [labels["per_label"][n]["f1"] for n in names]
    fig = figure.Figure(figsize=(max(2.4, 0.6 * len(names)), 1.8))
    ax = fig.add_subplot()
    ax.bar(range(len(names)), values, color="#3b6fb6")
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    ax.set_title(f"Per-label F1: {title}", fontsize=10)
    margins(fig, below=names, beside=["0.00"])
    return svg(fig, salt)


def _histogram(figure: Any, series: dict[str, list[float]], xlabel: str, title: str, salt: str) -> str:
    fig = figure.Figure(figsize=(4.2, 1.8))
    ax = fig.add_subplot()
    values = [v for vs in series.values() for v in vs]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    bins = 10 if high > low else 1
    for name, data in series.items():
        if data:
            ax.hist(data, bins=bins, range=(low, high if high > low else low + 1), alpha=0.55, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("items")
    ax.set_title(title, fontsize=10)
    if len(series) > 1:
        ax.legend(fontsize=8)
    margins(fig, below=["0"], beside=["000"])
    return svg(fig, salt)


def _summary_table(report: dict[str, Any]) -> str:
    metrics: list[str] = report["metrics"]
    head = "".join(f"<th>{_esc(m)} [95% CI]</th>" for m in metrics)
    rows = []
    for v in report["variants"]:
        cells = []
        for m in metrics:
            value = v["metrics"].get(m)
            digits = 1 if value and value["scale"] == "0-100" else 3
            if value is None:
                cells.append("<td>-</td>")
                continue
            low, high = value["low"], value["high"]
            cells.append(f'<td class="num">{value["value"]:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]</td>')
        tokens = v["prompt_tokens"] + v["completion_tokens"]
        rows.append(
            f"<tr><td>{_esc(v['name'])}</td><td>{_esc(v['backend'])}</td>{''.join(cells)}"
            f'<td class="num">{v["valid"]}/{v["items"]} ({v["valid_rate"]:.0%})</td>'
            f'<td class="num">{v["mean_latency_s"]:.3f} s</td><td class="num">{tokens:,}</td></tr>'
        )
    return (
        f'<table id="summary"><thead><tr><th>variant</th><th>backend</th>{head}<th>valid outputs</th>'
        f"<th>mean latency</th><th>tokens</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _label_tables(variant: dict[str, Any], index: int) -> str:
    labels = variant["labels"]
    columns = "".join(f"<th>{_esc(c)}</th>" for c in labels["columns"])
    matrix = "".join(
        f"<tr><th>{_esc(label)}</th>{''.join(f'<td class=num>{n}</td>' for n in row)}</tr>"
        for label, row in zip(labels["labels"], labels["confusion"], strict=True)
    )
    per_label = "".join(
        f"<tr><td>{_esc(name)}</td><td class=num>{v['precision']:.3f}</td><td class=num>{v['recall']:.3f}</td>"
        f"<td class=num>{v['f1']:.3f}</td><td class=num>{v['support']}</td></tr>"
        for name, v in labels["per_label"].items()
    )
    return (
        f'<table class="confusion" id="confusion-{index}"><thead><tr><th>reference \\ predicted</th>{columns}</tr>'
        f"</thead><tbody>{matrix}</tbody></table>"
        f'<table class="per-label"><thead><tr><th>label</th><th>precision</th><th>recall</th><th>F1</th>'
        f"<th>support</th></tr></thead><tbody>{per_label}</tbody></table>"
    )


def _item_rows(report: dict[str, Any], metrics: Sequence[str], confident: bool) -> str:
    rows = []
    for r in report["records"]:
        inputs = "; ".join(f"{k}: {v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}"
                           for k, v in r["inputs"].items())  # fmt: skip
        output = r["output"] if r["error"] is None else {"error": r["error"]}
        scores = "".join(
            f'<td class="num" data-sort="{"" if r["scores"].get(m) is None else r["scores"][m]}">'
            f"{'' if r['scores'].get(m) is None else format(r['scores'][m], '.3g')}</td>"
            for m in metrics
        )
        if confident:  # a column only where some item has a confidence
            conf = r.get("confidence")
            scores += f'<td class="num" data-sort="{"" if conf is None else conf}">{_confidence(conf)}</td>'
        status = "no valid output" if r["error"] is not None else "failed" if r["failed"] else "passed"
        rows.append(
            f'<tr class="{"failed" if r["failed"] else "passed"}" data-failed="{int(r["failed"])}" '
            f'data-variant="{_esc(r["variant"])}"><td>{_esc(r["variant"])}</td><td>{_esc(r["id"])}</td>'
            f"<td>{_esc(inputs[:600])}</td><td>{_esc(r['reference'])}</td><td>{_esc(output)}</td>{scores}"
            f'<td class="num">{r["attempts"]}</td><td class="num" data-sort="{r["latency_s"]}">{r["latency_s"]:.3f}'
            f'</td><td class="status">{status}</td></tr>'
        )
    return "".join(rows)


def _confidence(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def render_html(report: dict[str, Any]) -> str:
    """The report page for :meth:`EvalReport.to_dict` data (matplotlib draws the plots)."""
    figure = figure_module()
    metrics: list[str] = report["metrics"]
    primary = metrics[0]
    sections = []
    for index, variant in enumerate(report["variants"]):
        if not variant.get("labels"):
            continue
        slug = _slug(variant["name"])
        plots = _confusion_plot(figure, variant["labels"], variant["name"], f"cm-{slug}-{index}")
        plots_f1 = _f1_plot(figure, variant["labels"], variant["name"], f"f1-{slug}-{index}")
        sections.append(
            f"<h3>{_esc(variant['name'])}</h3><div class='plots'><figure class='confusion-plot'>{plots}</figure>"
            f"<figure class='f1-plot'>{plots_f1}</figure></div>{_label_tables(variant, index)}"
        )
    scores = {
        v["name"]: [r["scores"][primary] for r in report["records"]
                    if r["variant"] == v["name"] and r["scores"].get(primary) is not None]
        for v in report["variants"]
    }  # fmt: skip
    latencies = {
        v["name"]: [r["latency_s"] for r in report["records"] if r["variant"] == v["name"] and r["error"] is None]
        for v in report["variants"]
    }
    distributions = []
    if any(scores.values()):
        distributions.append(_histogram(figure, scores, primary, f"Per-item {primary}", "scores"))
    distributions.append(_histogram(figure, latencies, "seconds", "Latency per item", "latency"))
    comparisons = "".join(f"<p class='comparison'>{_esc(_comparison_line(c))}</p>" for c in report["comparisons"])
    problems = "".join(f"<li>{_esc(p)}</li>" for p in report["problems"])
    options = "".join(f"<option value='{_esc(v['name'])}'>{_esc(v['name'])}</option>" for v in report["variants"])
    confident = any(r.get("confidence") is not None for r in report["records"])
    score_heads = "".join(f"<th>{_esc(m)}</th>" for m in metrics) + ("<th>confidence</th>" if confident else "")
    item_rows = _item_rows(report, metrics, confident)
    described = "".join(f"<li><code>{_esc(k)}</code>: {_esc(v)}</li>" for k, v in report["metric_descriptions"].items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<title>promptask eval: {_esc(report["task"])}</title><style>{_CSS}</style></head>
<body>
<h1>promptask eval: {_esc(report["task"])}</h1>
<p class="meta">{len(report["variants"])} variant(s) on {report["variants"][0]["items"]} items from
{_esc(report["data"] or "rows given")}; field <code>{_esc(report["field"] or "(whole output)")}</code>, reference
<code>{_esc(report["reference"])}</code>; 95% bootstrap intervals ({report["resamples"]} resamples, seed
{report["seed"]}); {report["skipped"]} rows skipped.</p>
<h2>Summary</h2>{_summary_table(report)}{comparisons}
<ul class="metrics">{described}</ul>
{"<h2>Problems</h2><ul class='problems'>" + problems + "</ul>" if problems else ""}
{"<h2>Labels</h2>" + "".join(sections) if sections else ""}
{calibration_section(figure, report)}
<h2>Distributions</h2><div class="plots">{"".join(f"<figure>{d}</figure>" for d in distributions)}</div>
<h2>Items</h2>
<div class="controls"><label><input type="checkbox" id="failures-only"> failures only</label>
<label>variant <select id="variant-filter"><option value="">all</option>{options}</select></label>
<span id="shown-count"></span></div>
<table id="items"><thead><tr><th>variant</th><th>id</th><th>input</th><th>reference</th><th>output</th>{score_heads}
<th>attempts</th><th>latency (s)</th><th>status</th></tr></thead><tbody>{item_rows}</tbody></table>
<script>{_JS}</script>
</body></html>
"""


def _comparison_line(c: dict[str, Any]) -> str:
    digits = 1 if c["scale"] == "0-100" else 3
    return (
        f"{c['variant']} - {c['baseline']}: {c['metric']} {c['difference']:+.{digits}f} "
        f"[{c['low']:+.{digits}f}, {c['high']:+.{digits}f}] ({c['n']} paired items)"
    )
