//! The results chart: requests/s and p99 per case, side by side, as SVG (plotters, SVG
//! backend only: no font files needed, text is left to the viewer).

use crate::report::Summary;
use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// Bar colours: Envoy alone and native filters grey-blue, the wasm floor amber, ours green
/// (callers and SigV4 teal, the `auto` engine purple); cases 2 and 4 with the log line
/// (17, 18) in lighter shades of theirs.
fn colour(case: usize) -> RGBColor {
    match case {
        1 | 11 => RGBColor(120, 130, 145),
        2 | 3 => RGBColor(70, 110, 170),
        17 => RGBColor(130, 165, 215),
        4 => RGBColor(220, 150, 40),
        18 => RGBColor(240, 195, 120),
        8..=10 => RGBColor(40, 130, 140),
        13..=16 => RGBColor(130, 80, 160),
        _ => RGBColor(60, 150, 90),
    }
}

pub fn draw(file: &Path, title: &str, summaries: &[Summary]) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", file.display());
    let root = SVGBackend::new(file, (2200, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(title, ("sans-serif", 16))
        .map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(1100);
    let rps: Vec<(usize, &str, f64, String)> = summaries
        .iter()
        .map(|s| (s.id, s.label, s.rps, format!("{:.0}", s.rps)))
        .collect();
    let p99: Vec<(usize, &str, f64, String)> = summaries
        .iter()
        .map(|s| {
            (
                s.id,
                s.label,
                s.p99_us / 1000.0,
                format!("{:.2}", s.p99_us / 1000.0),
            )
        })
        .collect();
    panel(&left, "requests/s (median, higher is better)", &rps, 0).map_err(|e| err(&e))?;
    panel(&right, "p99 latency, ms (median, lower is better)", &p99, 1).map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    bars: &[(usize, &str, f64, String)],
    y_decimals: usize,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let n = bars.len().max(1) as f64;
    let top = bars.iter().map(|b| b.2).fold(0.0, f64::max).max(1e-9) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 14))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..n, 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(6)
        .y_label_formatter(&|v| format!("{v:.y_decimals$}"))
        .label_style(("sans-serif", 11))
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (case, _, v, _))| {
        let x = i as f64;
        Rectangle::new([(x + 0.15, 0.0), (x + 0.85, *v)], colour(*case).filled())
    }))?;
    let above = Pos::new(HPos::Center, VPos::Bottom);
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, _, v, text))| {
        Text::new(
            text.clone(),
            (i as f64 + 0.5, *v),
            TextStyle::from(("sans-serif", 11).into_font()).pos(above),
        )
    }))?;
    let below = Pos::new(HPos::Center, VPos::Top);
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, label, _, _))| {
        Text::new(
            label.to_string(),
            (i as f64 + 0.5, 0.0),
            TextStyle::from(("sans-serif", 10).into_font()).pos(below),
        )
    }))?;
    Ok(())
}
