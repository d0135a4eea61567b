"""Run folders -> one self-contained HTML page: runs grouped by family, one summary table per family
(its key settings and headline metrics, from the recipe, so no column is empty for most rows),
then each run's metrics and figures. Reads only the JSON files and PNGs that runs wrote
(config.json, metrics.json, figures/*.png, the preview grids) and any extra figures given;
images are linked by relative path."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genlab import checkpoint, recipes


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return ", ".join(_fmt(x) for x in v)
    return html.escape(str(v))


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str],
           raw: Sequence[str] = ()) -> str:
    """An HTML table; cells of the ``raw`` columns are HTML already, the rest are escaped."""
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(
        f"<td>{r.get(c, '') if c in raw else _fmt(r.get(c, ''))}</td>" for c in columns)
        + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(path: Path, base: Path, caption: str) -> str:
    rel = html.escape(os.path.relpath(path, base))
    return (f'<figure><a href="{rel}"><img src="{rel}" alt="{html.escape(caption)}"></a>'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _family(run_dir: Path) -> str:
    """The family a run folder belongs to now (an older genlab's 'gan' in 'generate' mode is a
    'dcgan' run)."""
    return recipes.run_config(run_dir).family


def report(run_dirs: Sequence[str | Path], out: str | Path, title: str = "genlab report",
           extra_figures: Sequence[tuple[str, str | Path]] = ()) -> Path:
    """Write ``out`` (an .html file) comparing ``run_dirs``; returns its path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    base = out.parent
    runs = [Path(d) for d in run_dirs]
    by_family: dict[str, list[Path]] = {}
    for d in runs:
        by_family.setdefault(_family(d), []).append(d)
    parts = [f"<h1>{html.escape(title)}</h1>"]
    for family, members in by_family.items():
        recipe = recipes.get(family)
        rows = []
        for d in members:
            cfg, metrics = checkpoint.read_config_values(d), checkpoint.read_metrics(d)
            flat = _flatten(metrics)
            rows.append({"run": f"<a href='#{html.escape(d.name)}'>{html.escape(d.name)}</a>",
                         "dataset": cfg.get("dataset", ""),
                         **{k: cfg[k] for k in recipe.key_config if k in cfg},
                         **{k: flat[k] for k in recipe.headline if k in flat}})
        columns = ["run", "dataset", *[c for c in (*recipe.key_config, *recipe.headline)
                                       if any(c in r for r in rows)]]
        parts += [f"<h2>{html.escape(family)}: {html.escape(recipe.summary)}</h2>",
                  _table(rows, columns, raw=("run",))]
    if extra_figures:
        parts.append("<h2>Comparisons across runs</h2><div class='figs'>")
        parts += [_img(Path(p), base, caption) for caption, p in extra_figures]
        parts.append("</div>")
    for d in runs:
        metrics = checkpoint.read_metrics(d)
        parts.append(f"<h2 id='{html.escape(d.name)}'>{html.escape(d.name)}</h2>")
        parts.append(f"<p>run folder: <code>{html.escape(str(d))}</code> &middot; "
                     f"<a href='{html.escape(os.path.relpath(checkpoint.config_path(d), base))}'>"
                     f"config.json</a>"
                     + (" &middot; <a href="
                        f"'{html.escape(os.path.relpath(checkpoint.metrics_path(d), base))}'>"
                        "metrics.json</a>" if metrics else " &middot; not evaluated yet")
                     + "</p>")
        if metrics:
            flat = _flatten(metrics)
            parts.append(_table([{"metric": k, "value": v} for k, v in flat.items()],
                                ["metric", "value"]))
        figures = sorted(checkpoint.figures_dir(d).glob("*.png"))
        samples = checkpoint.previews(d)[-1:]
        if figures or samples:
            parts.append("<div class='figs'>")
            parts += [_img(p, base, p.stem) for p in figures]
            parts += [_img(p, base, f"samples at {p.stem}") for p in samples]
            parts.append("</div>")
    return _write_page(out, title, parts)


STYLE = ("body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em}"
         "table{border-collapse:collapse;margin:1em 0;font-size:13px;display:block;"
         "max-width:100%;overflow-x:auto}"
         "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
         "th{background:#f3f3f3;overflow-wrap:break-word;font-weight:600}"
         "td:first-child{text-align:left;white-space:nowrap}"
         "td.best{background:#dff3df;font-weight:600}"
         ".figs{display:flex;flex-wrap:wrap;gap:12px}"
         "figure{margin:0}img{max-width:440px;max-height:440px;border:1px solid #ddd;"
         "image-rendering:pixelated}.same img{width:360px;height:auto}"
         "figcaption{font-size:12px;color:#555;max-width:440px}"
         ".wide img{max-width:100%;max-height:none;image-rendering:auto}"
         ".wide figcaption{max-width:none}"
         ".verdict{font-weight:600}.supported{color:#1a7f37}.contradicted{color:#b42318}"
         ".unsettled{color:#9a6700}.equivalent{color:#1f4e99}li{margin:.2em 0}"
         "table.summary th[scope=row]{text-align:left;font-weight:normal;min-width:14em;"
         "max-width:26em}"
         "table.summary td{white-space:nowrap}"
         ".lit-head{margin:.4em 0 0}.lit{font-size:14px}.lit-agree{color:#1a7f37}"
         ".lit-disagree{color:#b42318}.lit-undecided{color:#9a6700}.lit-context{color:#555}")


def _write_page(out: Path, title: str, parts: list[str]) -> Path:
    page = (f"<!doctype html><html><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width'><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")
    out.write_text(page)
    return out


def _verdict_class(verdict: str) -> str:
    return {"supported": "supported", "contradicted": "contradicted",
            "no meaningful difference": "equivalent"}.get(verdict, "unsettled")


def _cell(v: dict[str, Any]) -> str:
    """mean, and under it the [95% CI] over seeds (± SD where no interval)."""
    text = html.escape(f"{float(v['mean']):.3g}")
    if v.get("ci"):
        text += f"<br><small>[{float(v['ci'][0]):.3g}, {float(v['ci'][1]):.3g}]</small>"
    elif v.get("n", 1) > 1:
        text += f"<br><small>± {float(v['std']):.2g}</small>"
    return text


def _rule_text(state: dict[str, Any]) -> str:
    rule = state.get("rule", {})
    seeds, least = rule.get("seeds", state["settings"]["seeds"]), rule.get("min_seeds", 3)
    tested = sum(len(p.get("tests", [])) for v in state["verdicts"] for p in v.get("parts", []))
    text = (f"<p><b>Decision rule.</b> For each measure a claim rests on, the difference between "
            f"two families over the seeds gets a 95% Welch t interval; a part is "
            f"<i>supported</i> or <i>contradicted</i> only when the interval clears the "
            f"measure's minimal meaningful effect (below), <i>no meaningful difference</i> when "
            f"it lies inside ± the effect, and <i>undecided</i> otherwise, with the seeds that "
            f"would settle it. Holm's correction across the {tested} comparisons of a leg keeps "
            f"the chance of any false verdict at that budget at most "
            f"{rule.get('alpha', 0.05):g}. The verdict at the full budget is the claim's; the "
            f"strip shows it at 25% and 50%.</p>")
    if seeds < least:
        text += (f"<p class='verdict unsettled'>{seeds} seed(s) per family, fewer than "
                 f"{least}: this report describes the numbers and gives no verdicts (run "
                 f"--seeds 5).</p>")
    grouped: dict[tuple[str, str], list[str]] = {}  # measures that share an effect, together
    for key, e in rule.get("effects", {}).items():
        grouped.setdefault((e["effect"], e["reason"]), []).append(key)
    if grouped:
        text += _table([{"measures": ", ".join(keys), "minimal effect": effect, "why": reason}
                        for (effect, reason), keys in grouped.items()],
                       ["measures", "minimal effect", "why"])
    return text


def _budget_table(state: dict[str, Any]) -> str:
    rows = []
    for family, legs in state.get("budget", {}).items():
        for leg in legs:
            rows.append({
                "family": family, "leg": f"{leg['fraction']:.0%}",
                "minutes": f"{leg.get('minutes', 0):.2f} of {leg.get('budget_minutes', 0):.2f}",
                "steps": f"{leg.get('step', 0):.0f}", "epochs": f"{leg.get('epoch', 0):.2f}",
                "images seen": f"{leg.get('images_seen', 0):.0f}",
                "training FLOPs": (f"{leg['train_flops']:.3g}" if leg.get("train_flops")
                                   else "not counted"),
                "converged": "; ".join(leg.get("not_converged", [])) or "yes",
                "used its budget": (f"no: {leg['ended_early']} run(s) ran out of epochs first"
                                    if leg.get("ended_early") else "yes")})
    columns = ["family", "leg", "minutes", "steps", "epochs", "images seen", "training FLOPs",
               "converged", "used its budget"]
    return (("<h2>The budget each family had</h2><p>Means over seeds at the end of each leg. "
             "Not converged: in LR warm-up, under one epoch, or FID still falling by more than "
             "20% since the leg before (the 25% leg has none before it).</p>"
             + _table(rows, columns)) if rows else "")


def _stability_table(state: dict[str, Any]) -> str:
    """The learning-rate grid (--lr-grid): per family and rate, the runs, how many diverged or
    collapsed, and the spread of the final FID; then the family over the whole grid."""
    grid = state.get("stability") or {}
    if not grid.get("families"):
        return ""

    def fid(row: dict[str, Any]) -> str:
        f = row.get("fid")
        if not f:
            return "–"
        spread = f" ± {f['std']:.3g}" if f["n"] > 1 else ""
        return f"{f['mean']:.3g}{spread} [{f['min']:.3g}, {f['max']:.3g}] (n={f['n']})"

    def counts(row: dict[str, Any], key: str) -> str:
        if key == "collapsed" and row["collapse_measured"] < row["runs"]:
            return f"{row[key]} of {row['collapse_measured']} measured"
        return f"{row[key]} of {row['runs']}"

    rows = []
    for family, entry in grid["families"].items():
        for row in [*entry["rows"], {**entry["overall"], "factor": None}]:
            lrs = ", ".join(f"{k} {v:.3g}" for k, v in row.get("lrs", {}).items())
            rows.append({
                "family": family,
                "learning rate": ("all rates" if row["factor"] is None
                                  else f"x{row['factor']:g}" + (f" ({lrs})" if lrs else "")),
                "runs": str(row["runs"]), "diverged": counts(row, "diverged"),
                "collapsed": counts(row, "collapsed"),
                "failed (either)": (f"{row['failed_rate']:.0%}" if row["failed_rate"] is not None
                                    else "–"),
                "final FID (runs that did not diverge)": fid(row),
                "loss spikes (descriptive)": (f"{row['loss_spikes']:.3g}"
                                              if "loss_spikes" in row else "–")})
    columns = ["family", "learning rate", "runs", "diverged", "collapsed", "failed (either)",
               "final FID (runs that did not diverge)", "loss spikes (descriptive)"]
    seeds = int(grid["seeds"])
    return ("<h2>Stability over seeds and a learning-rate grid</h2><p>As Lucic et al. 2018 "
            "measured GANs: each family's default preset at x0.5, x1 and x2 its learning rates, "
            f"seeds 0..{seeds - 1} each (x1: the main runs of those seeds), the full budget. "
            "Diverged: a non-finite loss stopped the run. Collapsed: its samples fall in under "
            "half of the classes (modes, on Stacked MNIST) that as many real test images fall "
            "in. FID: mean ± SD [min, max] over the runs that did not diverge. Descriptive: no "
            "verdict rests on this table; loss spikes are shown, not tested.</p>"
            + _table(rows, columns))


def _control_table(state: dict[str, Any]) -> str:
    """The control sweep of class-conditional runs: per family and guidance scale, the mean FID
    and requested-class accuracy over seeds, and how many seeds' matched row it is."""
    rows, ceiling, n = [], None, None
    for family in state["settings"]["families"]:
        records = [r for r in state["runs"].values()
                   if r["family"] == family and r.get("final", {}).get("control_sweep")]
        if not records:
            continue
        matched = [r.get("matched_guidance", "?") for r in records]
        by_scale: dict[Any, list[dict[str, Any]]] = {}
        for r in records:
            ceiling = r["final"].get("class_accuracy_real", ceiling)
            for row in r["final"]["control_sweep"]:
                by_scale.setdefault(row["guidance"], []).append(row)
                n = row["num_samples"]
        for scale, got in by_scale.items():
            rows.append({
                "family": family, "guidance": "none (one network call)" if scale is None
                else f"{scale:g}",
                "FID": f"{sum(g['fid'] for g in got) / len(got):.4g}",
                "requested-class accuracy":
                    f"{sum(g['class_accuracy'] for g in got) / len(got):.3f}",
                "seeds": len(got),
                "matched FID here": f"{sum(m == scale for m in matched)} of {len(records)}"})
    if not rows:
        return ""
    return ("<h2>Control: requested-class accuracy across guidance</h2><p>Class-conditional "
            f"runs after the last leg, {n} samples per scale (the classes in turn), means over "
            "seeds. A guided run is compared at the scale whose FID is nearest the unguided "
            "families' mean FID (matched FID)"
            + (f"; the classifier reads {ceiling:.3f} of the real test images as their own "
               f"class, the ceiling" if ceiling is not None else "") + ".</p>"
            + _table(rows, ["family", "guidance", "FID", "requested-class accuracy", "seeds",
                            "matched FID here"]))


def _claim(v: dict[str, Any]) -> str:
    """One claim: its test, its verdict with the budget caveat, the verdict strip over the legs,
    the training each family had, and the evidence."""
    cls = _verdict_class(v["verdict"])
    strip = " → ".join(f"{leg['fraction']:.0%}: <span class='verdict "
                       f"{_verdict_class(leg['verdict'])}'>{html.escape(leg['verdict'])}</span>"
                       for leg in v.get("by_leg", []))
    stamps = "; ".join(
        f"{html.escape(f)}: {s.get('minutes', 0):.2f} min, {s.get('step', 0):.0f} steps, "
        f"{s.get('epoch', 0):.2f} epochs, {s.get('images_seen', 0):.0f} images"
        + (" (did not use its budget)" if s.get("ended_early") else "")
        for f, s in v.get("budget", {}).items())
    caveat = (f"<br><i>{html.escape(v['caveat'])}</i>" if v.get("caveat") else "")
    evidence = "".join(f"<li><code>{html.escape(e)}</code></li>" for e in v["evidence"])
    return (f"<li><p><q>{html.escape(v['claim'])}</q><br>Test: {html.escape(v['test'])}"
            f"<br>Verdict: <span class='verdict {cls}'>{html.escape(v['verdict'])}</span>"
            f"{caveat}" + (f"<br>As the budget grows: {strip}" if strip else "")
            + (f"<br>Budget: {stamps}" if stamps else "") + "</p>"
            + _literature(v) + f"<ul>{evidence}</ul></li>")


def _literature(v: dict[str, Any]) -> str:
    """What published results say about a claim, each beside genlab's verdict on the part it
    speaks to and whether they agree at this budget."""
    rows = []
    for f in v.get("literature", []):
        if f["agreement"] == "context":
            judged = "<span class='lit-context'>context: no part tests it</span>"
        else:
            budget = " at this budget" + (", before convergence" if v.get("caveat") else "")
            judged = (f"{html.escape(f['part'])}: the paper's finding reads "
                      f"{html.escape(f['expects'])}; genlab{budget}: "
                      f"<span class='verdict {_verdict_class(f['verdict'])}'>"
                      f"{html.escape(f['verdict'])}</span> → "
                      f"<b class='lit-{html.escape(f['agreement'])}'>"
                      f"{html.escape(f['agreement'])}</b>")
        rows.append(f"<li>{html.escape(f['says'])} <small>({html.escape(f['cite'])})</small>"
                    f"<br>{judged}</li>")
    return (f"<p class='lit-head'>What published results say:</p><ul class='lit'>"
            f"{''.join(rows)}</ul>") if rows else ""


def compare_report(state: dict[str, Any], out: str | Path,
                   figures: dict[str, str] | None = None) -> Path:
    """The page of ``genlab compare``: the decision rule, a summary table (a row per measure, a
    column per family, mean and 95% interval over seeds, units and better direction marked,
    the best value highlighted only where the intervals separate it), the budget each family
    had at each leg, each claim with its test, verdict, verdict strip over the legs, what
    published results say beside it (and whether they agree at this budget) and evidence,
    then the figures side by side at the same scale, then the runs."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings, table = state["settings"], state["summary"]
    title = f"genlab compare: {settings['dataset']}"
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>{html.escape(', '.join(settings['families']))}: default presets, "
             f"{float(settings['minutes']):g} training minutes each, {int(settings['seeds'])} "
             f"seed(s); every measure at 25%, 50% and 100% of the budget, on "
             f"{int(settings['num_samples'])} samples (N) against the test split in the "
             f"features of a classifier trained on the dataset. Cells: mean [95% t interval] "
             f"over seeds.</p>",
             _rule_text(state), "<h2>Summary (full budget)</h2>"]
    # a row per measure and a column per family: as many measures as there are, the table
    # grows down, not sideways (it fits 1280 px with five families)
    families = list(table["families"])
    head = "<th>measure</th>" + "".join(f"<th>{html.escape(f)}</th>" for f in families)
    measures = [m for m in table["measures"]  # only the rows some family has a value for
                if any(m[0] in row for row in table["families"].values())]
    rows = []
    for key, label, unit, better in measures:
        arrow = {"lower": "↓ lower is better", "higher": "↑ higher is better"}.get(better, "")
        unit_text = f" ({unit})" if unit else ""
        if key in ("fid", "kid", "modes_covered", "mode_kl"):
            unit_text += f", N = {int(settings['num_samples'])} a set"
        if key == "fd_inf" and table.get("fd_inf_sizes"):
            sizes = table["fd_inf_sizes"]
            unit_text += f", fit over N = {', '.join(str(int(n)) for n in sizes)}"
        cells = [f"<th scope='row' title='{html.escape(key)}'>{html.escape(label + unit_text)}"
                 + (f" <small>{html.escape(arrow)}</small>" if arrow else "") + "</th>"]
        for family in families:
            row = table["families"][family]
            if key not in row:
                cells.append("<td>–</td>")
                continue
            best = " class='best'" if table["best"].get(key) == family else ""
            cells.append(f"<td{best}>{_cell(row[key])}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    parts.append(f"<table id='summary' class='summary'><thead><tr>{head}</tr></thead>"
                 f"<tbody>{''.join(rows)}</tbody></table>")
    parts.append("<p><small>Highlighted: the best mean where 95% Welch intervals (Holm across "
                 "the other families) separate it from every other family's; none where they "
                 "overlap. Likelihood bounds under different pixel models are separate rows "
                 "and not ranked; path length compares a family with itself only. FID is biased "
                 "upwards by an amount that falls as 1/N and differs between models; FD∞ (Chong "
                 "& Forsyth 2020) fits FID at the subset sizes shown as FD∞ + slope / N and "
                 "reads it at 1/N = 0: it is shown beside FID, and claims rest on FID at equal "
                 "N.</small></p>")
    reference = table.get("mode_reference")
    if reference:
        parts.append(
            f"<p><small>Modes (Stacked MNIST): each channel of a sample read by the MNIST "
            f"classifier, the digit triple its mode, of {int(reference['num_modes'])}. Both "
            f"numbers depend on N: at N = {int(reference['mode_num_samples'])} the real test "
            f"images cover {int(reference['modes_covered_real'])} modes, KL(real modes || "
            f"uniform) {float(reference['mode_kl_real']):.3g} nats, and an even draw of the "
            f"modes covers {float(reference['modes_covered_even']):.0f} on average; "
            f"a generator is compared with these, not with {int(reference['num_modes'])} "
            f"and 0.</small></p>")
    parts.append(_budget_table(state))
    parts.append(_stability_table(state))
    parts.append(_control_table(state))
    parts.append("<h2>The claims, tested</h2>")
    if not state["verdicts"]:
        parts.append("<p>No claim applies to these families: the claims compare diffusion "
                     "models with VAEs and GANs (compare vae,dcgan,ddpm,flow).</p>")
    parts.append("<ol>")
    parts += [_claim(v) for v in state["verdicts"]]
    parts.append("</ol>")
    base = out.parent
    curves = [(caption, base / figures[key]) for key, caption in
              (("fid_vs_minutes", "FID against training minutes and training FLOPs (25%, 50%, "
                                  "100% of the budget)"),
               ("fid_vs_nfe", "FID against network evaluations per sample"))
              if figures and key in figures]
    if curves:
        parts.append("<h2>Quality against compute</h2><div class='figs wide'>")
        parts += [_img(p, base, caption) for caption, p in curves]
        parts.append("</div>")
    for kind, heading in (("samples", "Samples (seed 0, same scale)"),
                          ("control", "What a user can steer")):
        figs = []
        for record in state["runs"].values():
            made = record.get("figures", {})
            names = [k for k in made if (k == "samples") == (kind == "samples")]
            figs += [(f"{record['family']}: {k}", base / made[k]) for k in names]
        if figs:
            parts.append(f"<h2>{heading}</h2><div class='figs same'>")
            parts += [_img(p, base, caption) for caption, p in figs]
            parts.append("</div>")
    parts.append("<h2>Runs</h2>")
    run_rows = [{"run": name, "family": r["family"], "seed": r["seed"],
                 "steps": r.get("final", {}).get("step", ""),
                 "train seconds": r.get("final", {}).get("train_seconds", ""),
                 "diverged": r.get("diverged", "")} for name, r in state["runs"].items()]
    parts.append(_table(run_rows, ["run", "family", "seed", "steps", "train seconds",
                                   "diverged"]))
    return _write_page(out, title, parts)
