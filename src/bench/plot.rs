//! `--plot PATH.svg`: the livelock rate of each configuration as a bar with its 95 % Wilson
//! interval as a whisker, drawn with `plotters` on its SVG backend only. No font files are
//! needed: without plotters' `ttf` feature text is laid out with a fixed estimate and written
//! as SVG `<text>` elements, which the viewer renders with its own fonts.

use super::doc::BenchDoc;
use plotters::coord::ranged1d::SegmentedCoord;
use plotters::coord::types::{RangedCoordf64, RangedCoordusize};
use plotters::prelude::*;

/// Blue bars, dark whiskers.
const BAR: RGBColor = RGBColor(66, 114, 196);
const INK: RGBColor = RGBColor(40, 40, 40);

/// The chart as an SVG document.
pub fn svg(doc: &BenchDoc) -> Result<String, String> {
    let summaries = doc.summaries();
    let n = doc.configs.len().max(1);
    let width = (170 * n as u32 + 180).max(640);
    let height = 520;
    let top = summaries.iter().map(|s| s.wilson.hi).fold(0.0f64, f64::max);
    // The y axis in percent: up to the highest whisker plus room for its label above it, in
    // steps of 10 (ticks above 100% stay unlabelled).
    let y_max = ((top * 100.0 + 8.0) / 10.0).ceil().max(1.0) * 10.0;
    let trials = summaries.iter().map(|s| s.trials).max().unwrap_or(0);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let caption = format!(
            "Livelock rate per configuration ({} trials each{}), 95% Wilson interval",
            trials,
            doc.shard.map_or(String::new(), |s| format!(", shard {s}"))
        );
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18).into_font().color(&INK))
            .margin(16)
            .x_label_area_size(56)
            .y_label_area_size(64)
            // A segmented usize range is inclusive: 0..n-1 is n segments.
            .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..y_max)
            .map_err(|e| e.to_string())?;
        let labels: Vec<String> = doc.configs.iter().map(|c| c.short_label()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_max_light_lines(1)
            .bold_line_style(INK.mix(0.12))
            .x_labels(n)
            .x_label_formatter(&|v: &SegmentValue<usize>| match v {
                SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .y_label_formatter(&|y: &f64| {
                if *y <= 100.0 {
                    format!("{y:.0}%")
                } else {
                    String::new()
                }
            })
            .x_desc(doc.axes.join(" / "))
            .y_desc("trials with a livelock")
            .axis_desc_style(("sans-serif", 15))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| e.to_string())?;
        let seg = |i: usize| SegmentValue::Exact(i);
        chart
            .draw_series(summaries.iter().enumerate().map(|(i, s)| {
                let mut r =
                    Rectangle::new([(seg(i), 0.0), (seg(i + 1), s.rate * 100.0)], BAR.filled());
                r.set_margin(0, 0, 28, 28);
                r
            }))
            .map_err(|e| e.to_string())?;
        draw_whiskers(&mut chart, &summaries)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

type Chart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<SegmentedCoord<RangedCoordusize>, RangedCoordf64>>;

/// The interval of each bar (a vertical line with caps) and its rate as text above it.
fn draw_whiskers(
    chart: &mut Chart<'_, '_>,
    summaries: &[super::doc::Summary],
) -> Result<(), String> {
    let style = ShapeStyle::from(&INK).stroke_width(2);
    for (i, s) in summaries.iter().enumerate() {
        let x = SegmentValue::CenterOf(i);
        let (lo, hi) = (s.wilson.lo * 100.0, s.wilson.hi * 100.0);
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x.clone(), lo), (x.clone(), hi)],
                style,
            )))
            .map_err(|e| e.to_string())?;
        for y in [lo, hi] {
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((x.clone(), y))
                        + PathElement::new(vec![(-10, 0), (10, 0)], style),
                ))
                .map_err(|e| e.to_string())?;
        }
        let text = format!("{:.1}% ({}/{})", s.rate * 100.0, s.livelocked, s.trials);
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((x.clone(), hi))
                    + Text::new(text, (-44, -22), ("sans-serif", 13).into_font().color(&INK)),
            ))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
