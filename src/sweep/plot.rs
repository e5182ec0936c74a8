//! SVG figures of a sweep: accuracy against each cost figure (integer, minifloat and mixed
//! series with the Pareto front drawn as a staircase and its points labelled), and one W×A
//! accuracy heat map per format-family pair.
//!
//! Figures are drawn with plotters' SVG backend into memory and written atomically. Text is
//! emitted as SVG `<text>` with a generic `sans-serif` family, so no font files are needed at
//! build or run time; layout uses plotters' built-in text-size estimate.

use super::format_name::{compare_format_names, format_info, Family};
use super::report::metric_label;
use super::schema::{ResultEntry, ResultsFile, PARETO_METRICS};
use crate::util::atomic::{write_atomic, AtomicWriteError};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Error raised while drawing a figure.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot draw figure {name}: {message}")]
    Draw { name: String, message: String },
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
}

const FONT: &str = "sans-serif";
const INT_COLOR: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const FLOAT_COLOR: RGBColor = RGBColor(0xd6, 0x5f, 0x00);
const MIXED_COLOR: RGBColor = RGBColor(0x88, 0x88, 0x88);
const FRONT_COLOR: RGBColor = RGBColor(0x20, 0x20, 0x20);
/// Font size of point labels, in pixels.
const LABEL_SIZE: f64 = 13.0;

/// The quality axis of a figure: accuracy (the default figures) or one fidelity metric of the
/// results (`top1_agreement`, `sqnr_db`, `cosine`, …), for workloads whose labels are too few
/// or absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quality {
    /// `accuracy` of each configuration, in percent.
    Accuracy,
    /// `fidelity[name]` of each configuration (fractions such as agreement shown in percent).
    Fidelity(String),
}

impl Quality {
    /// Parses a figure metric name: `accuracy` or a fidelity key.
    pub fn parse(name: &str) -> Quality {
        match name {
            "accuracy" => Quality::Accuracy,
            other => Quality::Fidelity(other.to_string()),
        }
    }

    fn percent(&self) -> bool {
        match self {
            Quality::Accuracy => true,
            Quality::Fidelity(n) => n.contains("agreement") || n.contains("accuracy"),
        }
    }

    /// The plotted value of one configuration (`None` when it lacks the metric).
    fn value(&self, c: &ResultEntry) -> Option<f64> {
        let v = match self {
            Quality::Accuracy => Some(c.accuracy),
            Quality::Fidelity(n) => c.fidelity.get(n).copied(),
        }?;
        let v = if self.percent() { 100.0 * v } else { v };
        v.is_finite().then_some(v)
    }

    /// File-name stem (`accuracy`, `sqnr_db`, …).
    fn stem(&self) -> &str {
        match self {
            Quality::Accuracy => "accuracy",
            Quality::Fidelity(n) => n,
        }
    }

    /// Short name for titles.
    fn title(&self) -> String {
        match self {
            Quality::Accuracy => "accuracy".into(),
            Quality::Fidelity(n) => match n.as_str() {
                "top1_agreement" => "top-1 agreement with float".into(),
                "sqnr_db" => "output SQNR".into(),
                "cosine" => "output cosine similarity".into(),
                other => other.replace('_', " "),
            },
        }
    }

    /// Axis label with unit.
    fn axis_label(&self, kind: &str) -> String {
        match self {
            Quality::Accuracy if kind == "agreement" => "top-1 agreement with float (%)".into(),
            Quality::Accuracy => "top-1 accuracy (%)".into(),
            Quality::Fidelity(n) if n == "sqnr_db" => "output SQNR vs float (dB)".into(),
            q if q.percent() => format!("{} (%)", q.title()),
            q => q.title(),
        }
    }
}

/// Series a configuration belongs to in scatter plots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Series {
    Integer,
    Minifloat,
    Mixed,
}

fn family(name: &str) -> Option<Family> {
    format_info(name).ok().map(|f| f.family)
}

fn series_of(c: &ResultEntry) -> Series {
    match (family(&c.weights), family(&c.acts)) {
        (Some(Family::Integer), Some(Family::Integer)) => Series::Integer,
        (Some(Family::Minifloat), Some(Family::Minifloat)) => Series::Minifloat,
        _ => Series::Mixed,
    }
}

fn draw_err<E: std::fmt::Debug>(name: &str) -> impl Fn(E) -> PlotError + '_ {
    move |e| PlotError::Draw {
        name: name.to_string(),
        message: format!("{e:?}"),
    }
}

/// Draws every accuracy figure for `results` into `dir`; returns the paths written.
pub fn write_figures(
    results: &ResultsFile,
    dir: &Path,
    inputs: &[&Path],
) -> Result<Vec<PathBuf>, PlotError> {
    write_quality_figures(results, dir, inputs, &Quality::Accuracy)
}

/// Draws the figures of one quality metric: `<metric>_vs_<cost>.svg` per cost figure and
/// `heatmap_<W>_<A>.svg` (accuracy) or `heatmap_<metric>_<W>_<A>.svg` (fidelity) per family
/// pair. Configurations without the metric are left out; nothing is drawn when none has it.
pub fn write_quality_figures(
    results: &ResultsFile,
    dir: &Path,
    inputs: &[&Path],
    quality: &Quality,
) -> Result<Vec<PathBuf>, PlotError> {
    let mut written = Vec::new();
    if !results.configs.iter().any(|c| quality.value(c).is_some()) {
        return Ok(written);
    }
    for metric in PARETO_METRICS {
        if !results.configs.iter().any(|c| c.cost.get(metric).is_some()) {
            continue;
        }
        let name = format!("{}_vs_{metric}.svg", quality.stem());
        let svg = scatter_svg(results, metric, &name, quality)?;
        let path = dir.join(&name);
        write_atomic(&path, svg.as_bytes(), inputs)?;
        written.push(path);
    }
    let mut pairs: BTreeSet<(Family, Family)> = BTreeSet::new();
    for c in &results.configs {
        if let (Some(w), Some(a)) = (family(&c.weights), family(&c.acts)) {
            pairs.insert((w, a));
        }
    }
    for (wf, af) in pairs {
        let name = match quality {
            Quality::Accuracy => format!("heatmap_{}_{}.svg", wf.tag(), af.tag()),
            q => format!("heatmap_{}_{}_{}.svg", q.stem(), wf.tag(), af.tag()),
        };
        let svg = heatmap_svg(results, wf, af, &name, quality)?;
        let path = dir.join(&name);
        write_atomic(&path, svg.as_bytes(), inputs)?;
        written.push(path);
    }
    Ok(written)
}

/// Rounds a range outward to "nice" tick-friendly bounds.
fn nice_range(lo: f64, hi: f64) -> (f64, f64) {
    let span = (hi - lo).abs().max(hi.abs() * 0.05).max(1e-9);
    let step = 10f64.powf(span.log10().floor() - 1.0);
    let lo = ((lo - span * 0.04) / step).floor() * step;
    let hi = ((hi + span * 0.04) / step).ceil() * step;
    (lo.max(0.0), hi)
}

fn short_label(c: &ResultEntry) -> String {
    format!("{}/{}", c.weights, c.acts)
}

fn fmt_tick(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A quality metric (accuracy in %, or a fidelity metric) against one cost figure.
fn scatter_svg(
    results: &ResultsFile,
    metric: &str,
    name: &str,
    quality: &Quality,
) -> Result<String, PlotError> {
    let pts: Vec<(&ResultEntry, f64, f64)> = results
        .configs
        .iter()
        .filter_map(|c| Some((c, c.cost.get(metric)?, quality.value(c)?)))
        .collect();
    let (xmin, xmax) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
    let (ymin, ymax) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.2), b.max(p.2))
        });
    let (x0, x1) = nice_range(xmin, xmax);
    let (y0, y1) = if quality.percent() {
        let y0 = ((ymin - 2.0) / 10.0).floor().max(0.0) * 10.0;
        let y1 = ((ymax + 2.0) / 5.0).ceil().min(20.0) * 5.0;
        (y0, if y1 <= y0 { y0 + 10.0 } else { y1 })
    } else {
        let span = (ymax - ymin).max(1.0);
        let step = 10f64.powf(span.log10().floor());
        let y0 = ((ymin - 0.05 * span) / step).floor() * step;
        let y1 = ((ymax + 0.05 * span) / step).ceil() * step;
        (y0, if y1 <= y0 { y0 + step } else { y1 })
    };
    let front_ids: Vec<&str> = match quality {
        Quality::Accuracy => results
            .pareto
            .get(metric)
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default(),
        _ => {
            let idx: Vec<(usize, f64, f64)> =
                pts.iter().enumerate().map(|(i, p)| (i, p.1, p.2)).collect();
            super::pareto::pareto_front(&idx)
                .into_iter()
                .map(|i| pts[i].0.id.as_str())
                .collect()
        }
    };
    let by_id: HashMap<&str, &ResultEntry> =
        results.configs.iter().map(|c| (c.id.as_str(), c)).collect();
    let front: Vec<(f64, f64, &ResultEntry)> = front_ids
        .iter()
        .filter_map(|id| by_id.get(id))
        .filter_map(|c| Some((c.cost.get(metric)?, quality.value(c)?, *c)))
        .collect();

    let mut svg = String::new();
    {
        let e = draw_err(name);
        let root = SVGBackend::with_string(&mut svg, (900, 620)).into_drawing_area();
        root.fill(&WHITE).map_err(&e)?;
        let kind = results
            .configs
            .first()
            .map_or("top1", |c| c.accuracy_kind.as_str());
        let ylabel = quality.axis_label(kind);
        let title = if results.grid.is_empty() {
            let t = quality.title();
            let mut c = t.chars();
            let t = c
                .next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default();
            format!("{t} vs {}", metric_label(metric))
        } else {
            format!(
                "{}: {} vs {}",
                results.grid,
                quality.title(),
                metric_label(metric)
            )
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 24))
            .margin(18)
            .x_label_area_size(58)
            .y_label_area_size(72)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(&e)?;
        chart
            .configure_mesh()
            .x_desc(metric_label(metric))
            .y_desc(ylabel)
            .axis_desc_style((FONT, 18))
            .label_style((FONT, 15))
            .x_labels(8)
            .y_labels(8)
            .x_label_formatter(&|v| fmt_tick(*v))
            .y_label_formatter(&|v| {
                if (y1 - y0) < 8.0 {
                    format!("{v:.1}")
                } else {
                    format!("{v:.0}")
                }
            })
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .bold_line_style(RGBColor(0xd8, 0xd8, 0xd8))
            .draw()
            .map_err(&e)?;

        // Pareto staircase underneath the points.
        let mut stairs = Vec::new();
        for (k, p) in front.iter().enumerate() {
            if k > 0 {
                stairs.push((p.0, front[k - 1].1));
            }
            stairs.push((p.0, p.1));
        }
        if let Some(last) = front.last() {
            stairs.push((x1, last.1));
        }
        if !front.is_empty() {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    stairs.clone(),
                    FRONT_COLOR.stroke_width(2),
                )))
                .map_err(&e)?
                .label("Pareto front")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], FRONT_COLOR.stroke_width(2))
                });
        }
        for series in [Series::Integer, Series::Minifloat, Series::Mixed] {
            let mine: Vec<(f64, f64)> = pts
                .iter()
                .filter(|p| series_of(p.0) == series)
                .map(|p| (p.1, p.2))
                .collect();
            if mine.is_empty() {
                continue;
            }
            match series {
                Series::Integer => {
                    chart
                        .draw_series(
                            mine.iter()
                                .map(|&p| Circle::new(p, 5, INT_COLOR.mix(0.75).filled())),
                        )
                        .map_err(&e)?
                        .label("integer W / integer A")
                        .legend(|(x, y)| Circle::new((x + 10, y), 5, INT_COLOR.filled()));
                }
                Series::Minifloat => {
                    chart
                        .draw_series(
                            mine.iter().map(|&p| {
                                TriangleMarker::new(p, 6, FLOAT_COLOR.mix(0.75).filled())
                            }),
                        )
                        .map_err(&e)?
                        .label("minifloat W / minifloat A")
                        .legend(|(x, y)| TriangleMarker::new((x + 10, y), 6, FLOAT_COLOR.filled()));
                }
                Series::Mixed => {
                    chart
                        .draw_series(
                            mine.iter()
                                .map(|&p| Cross::new(p, 4, MIXED_COLOR.stroke_width(2))),
                        )
                        .map_err(&e)?
                        .label("mixed families")
                        .legend(|(x, y)| Cross::new((x + 10, y), 4, MIXED_COLOR.stroke_width(2)));
                }
            }
        }
        // Ring and label every front point.
        chart
            .draw_series(
                front
                    .iter()
                    .map(|p| Circle::new((p.0, p.1), 8, FRONT_COLOR.stroke_width(2))),
            )
            .map_err(&e)?;
        // Label front points where the label fits without overlapping earlier labels; the
        // region above and left of the staircase is empty, so labels go there first.
        let (px, py) = chart.plotting_area().get_pixel_range();
        // Rings of front points are obstacles too.
        let mut placed: Vec<(i32, i32, i32, i32)> = front
            .iter()
            .map(|p| {
                let (x, y) = chart.backend_coord(&(p.0, p.1));
                (x - 7, y - 7, x + 7, y + 7)
            })
            .collect();
        let stair_px: Vec<(i32, i32)> = stairs.iter().map(|p| chart.backend_coord(p)).collect();
        let mut labels = Vec::new();
        for p in &front {
            let text = short_label(p.2);
            let (cx, cy) = chart.backend_coord(&(p.0, p.1));
            let w = (text.len() as f64 * LABEL_SIZE * 0.6).ceil() as i32;
            let h = LABEL_SIZE as i32 + 2;
            // (offset, anchor, box relative to the point)
            let candidates = [
                (
                    (-9, -5),
                    Pos::new(HPos::Right, VPos::Bottom),
                    (-9 - w, -5 - h, -9, -5),
                ),
                (
                    (-11, 0),
                    Pos::new(HPos::Right, VPos::Center),
                    (-11 - w, -h / 2, -11, h / 2),
                ),
                (
                    (0, -11),
                    Pos::new(HPos::Center, VPos::Bottom),
                    (-w / 2, -11 - h, w / 2, -11),
                ),
                (
                    (11, 0),
                    Pos::new(HPos::Left, VPos::Center),
                    (11, -h / 2, 11 + w, h / 2),
                ),
                (
                    (0, 11),
                    Pos::new(HPos::Center, VPos::Top),
                    (-w / 2, 11, w / 2, 11 + h),
                ),
                (
                    (9, 6),
                    Pos::new(HPos::Left, VPos::Top),
                    (9, 6, 9 + w, 6 + h),
                ),
                (
                    (9, -6),
                    Pos::new(HPos::Left, VPos::Bottom),
                    (9, -6 - h, 9 + w, -6),
                ),
            ];
            for (off, pos, (x0, y0, x1, y1)) in candidates {
                let bx = (cx + x0, cy + y0, cx + x1, cy + y1);
                let inside =
                    bx.0 >= px.start && bx.2 <= px.end && bx.1 >= py.start && bx.3 <= py.end;
                let clear = placed
                    .iter()
                    .all(|q| bx.2 < q.0 || bx.0 > q.2 || bx.3 < q.1 || bx.1 > q.3)
                    && stair_px.windows(2).all(|seg| {
                        // Axis-aligned segment against the label box.
                        let (sx0, sx1) = (seg[0].0.min(seg[1].0), seg[0].0.max(seg[1].0));
                        let (sy0, sy1) = (seg[0].1.min(seg[1].1), seg[0].1.max(seg[1].1));
                        sx1 < bx.0 || sx0 > bx.2 || sy1 < bx.1 || sy0 > bx.3
                    });
                if inside && clear {
                    placed.push(bx);
                    let style = TextStyle::from((FONT, LABEL_SIZE).into_font())
                        .color(&FRONT_COLOR)
                        .pos(pos);
                    // A translucent white plate keeps the label readable over markers.
                    labels.push(
                        EmptyElement::at((p.0, p.1))
                            + Rectangle::new(
                                [(x0 - 1, y0), (x1 + 1, y1)],
                                WHITE.mix(0.75).filled(),
                            )
                            + Text::new(text, off, style),
                    );
                    break;
                }
            }
        }
        chart.draw_series(labels).map_err(&e)?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .margin(12)
            .label_font((FONT, 15))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(0x99, 0x99, 0x99))
            .draw()
            .map_err(&e)?;
        root.present().map_err(&e)?;
    }
    Ok(svg)
}

/// Viridis-like colour for t in [0, 1].
fn colormap(t: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 6] = [
        (68.0, 1.0, 84.0),
        (65.0, 68.0, 135.0),
        (42.0, 120.0, 142.0),
        (34.0, 168.0, 132.0),
        (122.0, 209.0, 81.0),
        (253.0, 231.0, 37.0),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (STOPS.len() - 1) as f64;
    let k = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - k as f64;
    let (a, b) = (STOPS[k], STOPS[k + 1]);
    let lerp = |p: f64, q: f64| (p + (q - p) * f).round().clamp(0.0, 255.0) as u8;
    RGBColor(lerp(a.0, b.0), lerp(a.1, b.1), lerp(a.2, b.2))
}

fn text_color_on(c: RGBColor) -> &'static RGBColor {
    let lum = 0.299 * f64::from(c.0) + 0.587 * f64::from(c.1) + 0.114 * f64::from(c.2);
    if lum > 140.0 {
        &BLACK
    } else {
        &WHITE
    }
}

/// W×A heat map of accuracy for one (weight family, activation family) pair; cells hold the
/// best accuracy over the other axes.
fn heatmap_svg(
    results: &ResultsFile,
    wf: Family,
    af: Family,
    name: &str,
    quality: &Quality,
) -> Result<String, PlotError> {
    let mut cells: BTreeMap<(String, String), (f64, usize)> = BTreeMap::new();
    for c in &results.configs {
        let Some(q) = quality.value(c) else { continue };
        if family(&c.weights) == Some(wf) && family(&c.acts) == Some(af) {
            let e = cells
                .entry((c.weights.clone(), c.acts.clone()))
                .or_insert((f64::NEG_INFINITY, 0));
            e.0 = e.0.max(q);
            e.1 += 1;
        }
    }
    let mut ws: Vec<String> = cells.keys().map(|k| k.0.clone()).collect();
    let mut acts: Vec<String> = cells.keys().map(|k| k.1.clone()).collect();
    ws.sort_by(|a, b| compare_format_names(a, b));
    ws.dedup();
    acts.sort_by(|a, b| compare_format_names(a, b));
    acts.dedup();
    let several = cells.values().any(|v| v.1 > 1);
    let (vmin, vmax) = cells
        .values()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v.0), b.max(v.0))
        });
    let (vmin, vmax) = if vmax - vmin < 1e-9 {
        (vmin - 0.5, vmax + 0.5)
    } else {
        (vmin, vmax)
    };
    let (nx, ny) = (acts.len() as i32, ws.len() as i32);
    let cell = (640 / nx.max(ny)).clamp(26, 90);
    let tick_font: i32 = if nx > 16 { 12 } else { 14 };
    let text_px =
        |v: &[String]| v.iter().map(|s| s.len()).max().unwrap_or(0) as i32 * tick_font * 6 / 10;
    // Column labels turn vertical when they are wider than a cell.
    let rotate = text_px(&acts) > cell - 6;
    let x_area = if rotate { text_px(&acts) + 50 } else { 60 };
    let y_area = text_px(&ws) + 52;
    let plot_w = ((cell * nx + y_area + 40) as u32).max(430);
    let plot_h = (cell * ny + x_area + 70) as u32;
    let width = plot_w + 120;
    let height = plot_h.max(360);
    let value_font = ((cell as f64) * 0.36).clamp(9.0, 16.0);
    let bar_fmt = |v: &f64| {
        let span = vmax - vmin;
        if span >= 5.0 {
            format!("{v:.0}")
        } else if span >= 0.5 {
            format!("{v:.1}")
        } else {
            format!("{v:.2}")
        }
    };

    let mut svg = String::new();
    {
        let e = draw_err(name);
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(&e)?;
        let kind = results
            .configs
            .first()
            .map_or("top1", |c| c.accuracy_kind.as_str());
        let unit = quality.axis_label(kind);
        let mut title = format!(
            "{unit}: {} weights × {} activations",
            wf.label(),
            af.label()
        );
        if let Some(f) = title.get(0..1) {
            title = f.to_uppercase() + &title[1..];
        }
        if !results.grid.is_empty() {
            title = format!("{}: {title}", results.grid);
        }
        // Shrink the title to the figure width (estimated 0.6 em per character).
        let caption_size = ((width as f64 - 30.0) / (0.6 * title.chars().count() as f64))
            .clamp(11.0, 20.0)
            .floor();
        let (title_area, body) = root.split_vertically(40);
        title_area
            .draw(&Text::new(
                title,
                ((width / 2) as i32, 22),
                TextStyle::from((FONT, caption_size).into_font())
                    .pos(Pos::new(HPos::Center, VPos::Center)),
            ))
            .map_err(&e)?;
        let (left, right) = body.split_horizontally(plot_w);
        let mut chart = ChartBuilder::on(&left)
            .margin(12)
            .x_label_area_size(x_area)
            .y_label_area_size(y_area)
            .build_cartesian_2d(0.0..f64::from(nx), 0.0..f64::from(ny))
            .map_err(&e)?;
        // Tick labels are drawn by hand at cell centres.
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(0)
            .y_labels(0)
            .x_desc(format!("activation format ({})", af.label()))
            .y_desc(format!("weight format ({})", wf.label()))
            .axis_desc_style((FONT, 17))
            .draw()
            .map_err(&e)?;
        let tick_style = TextStyle::from((FONT, tick_font).into_font());
        for (i, a) in acts.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
            let (x, y) = (x - left.get_base_pixel().0, y - left.get_base_pixel().1);
            let style = if rotate {
                tick_style
                    .clone()
                    .transform(FontTransform::Rotate270)
                    .pos(Pos::new(HPos::Right, VPos::Center))
            } else {
                tick_style.clone().pos(Pos::new(HPos::Center, VPos::Top))
            };
            left.draw(&Text::new(a.clone(), (x, y + 8), style))
                .map_err(&e)?;
        }
        for (j, w) in ws.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(0.0, j as f64 + 0.5));
            let (x, y) = (x - left.get_base_pixel().0, y - left.get_base_pixel().1);
            left.draw(&Text::new(
                w.clone(),
                (x - 8, y),
                tick_style.clone().pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(&e)?;
        }
        let index = |v: &[String], s: &str| v.iter().position(|x| x == s).unwrap_or(0) as f64;
        let mut rects = Vec::new();
        let mut texts = Vec::new();
        for ((w, a), (acc, _)) in &cells {
            let (x, y) = (index(&acts, a), index(&ws, w));
            let color = colormap((acc - vmin) / (vmax - vmin));
            rects.push(Rectangle::new([(x, y), (x + 1.0, y + 1.0)], color.filled()));
            let style = TextStyle::from((FONT, value_font).into_font())
                .color(text_color_on(color))
                .pos(Pos::new(HPos::Center, VPos::Center));
            let txt = if quality.percent() && *acc >= 99.95 {
                "100".to_string()
            } else if cell >= 40 {
                format!("{acc:.1}")
            } else {
                format!("{acc:.0}")
            };
            texts.push(Text::new(txt, (x + 0.5, y + 0.5), style));
        }
        chart.draw_series(rects).map_err(&e)?;
        chart.draw_series(texts).map_err(&e)?;
        // White rules between minifloat groups of different total width.
        let bits = |s: &String| format_info(s).map_or(0, |f| f.bits);
        let mut rules = Vec::new();
        if af == Family::Minifloat {
            for i in 1..acts.len() {
                if bits(&acts[i]) != bits(&acts[i - 1]) {
                    let x = i as f64;
                    rules.push(PathElement::new(
                        vec![(x, 0.0), (x, f64::from(ny))],
                        WHITE.stroke_width(3),
                    ));
                }
            }
        }
        if wf == Family::Minifloat {
            for i in 1..ws.len() {
                if bits(&ws[i]) != bits(&ws[i - 1]) {
                    let y = i as f64;
                    rules.push(PathElement::new(
                        vec![(0.0, y), (f64::from(nx), y)],
                        WHITE.stroke_width(3),
                    ));
                }
            }
        }
        chart.draw_series(rules).map_err(&e)?;
        let (_, hy) = chart.plotting_area().get_pixel_range();
        let base_y = body.get_base_pixel().1;
        let (top, bottom) = (hy.start - base_y, hy.end - base_y);
        if several {
            left.draw(&Text::new(
                "best over the other grid axes",
                (12, plot_h as i32 - 16),
                (FONT, 13).into_font().color(&RGBColor(0x55, 0x55, 0x55)),
            ))
            .map_err(&e)?;
        }

        // Colour bar, aligned with the cells.
        right
            .draw(&Text::new(
                match quality {
                    Quality::Accuracy => "accuracy (%)".to_string(),
                    q => q.axis_label(""),
                },
                (4, (top - 14).max(0)),
                (FONT, 14).into_font().color(&BLACK),
            ))
            .map_err(&e)?;
        let body_h = (height as i32 - 40).max(0);
        let mut bar = ChartBuilder::on(&right)
            .margin_top(top.max(0) as u32)
            .margin_bottom((body_h - bottom).max(0) as u32)
            .margin_left(8)
            .margin_right(50)
            .y_label_area_size(0)
            .right_y_label_area_size(52)
            .build_cartesian_2d(0.0..1.0, vmin..vmax)
            .map_err(&e)?;
        bar.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(6)
            .y_label_formatter(&bar_fmt)
            .label_style((FONT, 13))
            .draw()
            .map_err(&e)?;
        let steps = 100;
        bar.draw_series((0..steps).map(|k| {
            let t0 = k as f64 / steps as f64;
            let t1 = (k + 1) as f64 / steps as f64;
            Rectangle::new(
                [
                    (0.0, vmin + t0 * (vmax - vmin)),
                    (1.0, vmin + t1 * (vmax - vmin)),
                ],
                colormap((t0 + t1) / 2.0).filled(),
            )
        }))
        .map_err(&e)?;
        root.present().map_err(&e)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colormap_ends_and_contrast() {
        assert_eq!(colormap(0.0), RGBColor(68, 1, 84));
        assert_eq!(colormap(1.0), RGBColor(253, 231, 37));
        assert_eq!(*text_color_on(colormap(0.0)), WHITE);
        assert_eq!(*text_color_on(colormap(1.0)), BLACK);
    }

    #[test]
    fn nice_ranges_cover_data() {
        for (lo, hi) in [(22.0, 159.0), (0.5, 0.9), (1000.0, 1000.0), (3.0e6, 9.1e6)] {
            let (a, b) = nice_range(lo, hi);
            assert!(a <= lo && b >= hi && a >= 0.0, "{lo}..{hi} -> {a}..{b}");
        }
    }
}
