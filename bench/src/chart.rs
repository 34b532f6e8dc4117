//! The chart in bench/README.md: grouped bars (median, with a whisker from the rounds' minimum to
//! maximum) per scenario and system, one panel per metric. The orchestrator (bench/run.mjs) decides
//! what goes in; this only draws it.

use plotters::prelude::*;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Chart {
    pub title: String,
    pub panels: Vec<Panel>,
}

#[derive(Debug, Deserialize)]
pub struct Panel {
    pub title: String,
    pub unit: String,
    pub groups: Vec<String>,
    pub series: Vec<Series>,
}

#[derive(Debug, Deserialize)]
pub struct Series {
    pub label: String,
    /// One per group; `None` where the system has no figure (it failed the scenario).
    pub values: Vec<Option<Spread>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(230, 120, 20),
    RGBColor(60, 110, 200),
    RGBColor(120, 170, 60),
    RGBColor(170, 80, 160),
    RGBColor(120, 120, 120),
    RGBColor(40, 170, 170),
];

pub fn draw(chart: &Chart, path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let height = 60 + 360 * chart.panels.len() as u32;
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(&chart.title, ("sans-serif", 22))?;
    let areas = root.split_evenly((chart.panels.len(), 1));
    for (panel, area) in chart.panels.iter().zip(areas.iter()) {
        draw_panel(panel, area)?;
    }
    root.present()?;
    Ok(())
}

fn draw_panel(panel: &Panel, area: &DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<(), Box<dyn std::error::Error>> {
    let top = panel
        .series
        .iter()
        .flat_map(|s| s.values.iter().flatten().map(|v| v.max.max(v.median)))
        .fold(0.0f64, f64::max)
        .max(1e-9)
        // Headroom above the tallest whisker for the legend.
        * 1.6;
    let groups = panel.groups.len();
    let n = panel.series.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{} ({})", panel.title, panel.unit), ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..groups as f64, 0.0..top)?;
    let labels = panel.groups.clone();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.01 {
                labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| compact(*y))
        .draw()?;
    let width = 0.8 / n as f64;
    for (s, series) in panel.series.iter().enumerate() {
        let color = COLORS[s % COLORS.len()];
        let bars = series.values.iter().enumerate().filter_map(|(g, v)| v.map(|v| (g, v))).map(|(g, v)| {
            let x0 = g as f64 + 0.1 + s as f64 * width;
            Rectangle::new([(x0, 0.0), (x0 + width * 0.9, v.median)], color.filled())
        });
        chart
            .draw_series(bars)?
            .label(series.label.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        let whiskers = series.values.iter().enumerate().filter_map(|(g, v)| v.map(|v| (g, v))).map(|(g, v)| {
            let x = g as f64 + 0.1 + s as f64 * width + width * 0.45;
            PathElement::new(vec![(x, v.min), (x, v.max)], BLACK.stroke_width(1))
        });
        chart.draw_series(whiskers)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn compact(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
