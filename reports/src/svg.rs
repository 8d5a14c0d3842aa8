//! Static SVG charts (plotters' SVG backend) drawn from a [`Chart`]: what the report shows with
//! JavaScript off, and what a reader sees before uPlot takes over.
//!
//! It owns mapping axes (log axes are drawn as linear axes over log10 values, labelled with the
//! original values) and shading fault spans. It must never draw anything the [`Chart`] does not
//! hold.

use plotters::prelude::*;

use crate::view::{Axis, Chart, LOG_FLOOR_MS};

/// Size of every static chart, pixels.
pub const SVG_SIZE: (u32, u32) = (760, 300);

fn to_axis(axis: Axis, value: f64) -> f64 {
    match axis {
        Axis::Linear => value,
        Axis::Log | Axis::Percentile => value.max(LOG_FLOOR_MS).log10(),
    }
}

fn label(axis: Axis, value: f64) -> String {
    match axis {
        Axis::Linear => compact(value),
        Axis::Log => compact(10f64.powf(value)),
        Axis::Percentile => percentile_label(10f64.powf(value)),
    }
}

/// `1 / (1 - q)` as a percentile label: 10 -> `90%`, 1000 -> `99.9%`.
pub fn percentile_label(inverse: f64) -> String {
    let percent = 100.0 * (1.0 - 1.0 / inverse.max(1.0));
    let digits = (inverse.log10().round() as usize).saturating_sub(2);
    format!("{percent:.digits$}%")
}

fn compact(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if magnitude >= 1e4 {
        format!("{:.0}k", value / 1e3)
    } else if magnitude >= 100.0 || magnitude == 0.0 {
        format!("{value:.0}")
    } else if magnitude >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

fn rgb(css: &str) -> RGBColor {
    let hex = css.trim_start_matches('#');
    let channel =
        |index: usize| u8::from_str_radix(hex.get(index..index + 2).unwrap_or("00"), 16).unwrap_or(0);
    RGBColor(channel(0), channel(2), channel(4))
}

/// The chart as an SVG document, or an SVG that says there is no data.
pub fn render(chart: &Chart) -> String {
    chart.assert_valid();
    let mut svg = String::new();
    let drawn = draw(chart, &mut svg);
    // plotters only fails on a backend error, and a String backend has none; a failure would be a
    // bug here, but a report without one chart is better than no report.
    if let Err(message) = drawn {
        svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"><desc>{message}</desc></svg>"
        );
    }
    assert!(svg.contains("<svg"));
    svg
}

fn draw(chart: &Chart, svg: &mut String) -> Result<(), String> {
    let root = SVGBackend::with_string(svg, SVG_SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|error| error.to_string())?;
    let points: Vec<Vec<(f64, f64)>> = chart
        .lines
        .iter()
        .map(|line| {
            chart
                .x
                .iter()
                .zip(&line.values)
                .filter_map(|(&x, value)| {
                    value
                        .filter(|value| value.is_finite())
                        .map(|value| (to_axis(chart.x_axis, x), to_axis(chart.y_axis, value)))
                })
                .collect()
        })
        .collect();
    let all: Vec<&(f64, f64)> = points.iter().flatten().collect();
    let mut x_range =
        chart.x.first().zip(chart.x.last()).map_or((0.0, 1.0), |(first, last)| {
            (to_axis(chart.x_axis, *first), to_axis(chart.x_axis, *last))
        });
    for span in &chart.spans {
        x_range.1 = x_range.1.max(to_axis(chart.x_axis, span.to));
    }
    let mut y_range =
        all.iter().fold((f64::MAX, f64::MIN), |(low, high), (_, y)| (low.min(*y), high.max(*y)));
    if all.is_empty() {
        y_range = (0.0, 1.0);
    }
    if chart.y_axis == Axis::Linear {
        y_range.0 = y_range.0.min(0.0);
    }
    if y_range.1 - y_range.0 < 1e-9 {
        y_range.1 = y_range.0 + 1.0;
    }
    if x_range.1 - x_range.0 < 1e-9 {
        x_range.1 = x_range.0 + 1.0;
    }
    let y_range = (y_range.0, y_range.1 + (y_range.1 - y_range.0) * 0.05);
    let mut context = ChartBuilder::on(&root)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x_range.0..x_range.1, y_range.0..y_range.1)
        .map_err(|error| error.to_string())?;
    let (x_axis, y_axis) = (chart.x_axis, chart.y_axis);
    let x_formatter = move |value: &f64| label(x_axis, *value);
    let y_formatter = move |value: &f64| label(y_axis, *value);
    context
        .configure_mesh()
        .x_desc(chart.x_label.as_str())
        .y_desc(chart.y_label.as_str())
        .x_label_formatter(&x_formatter)
        .y_label_formatter(&y_formatter)
        .light_line_style(RGBColor(240, 240, 240))
        .draw()
        .map_err(|error| error.to_string())?;
    let shade = RGBColor(220, 50, 32);
    for span in &chart.spans {
        let (from, to) = (to_axis(chart.x_axis, span.from), to_axis(chart.x_axis, span.to));
        if to > from {
            context
                .draw_series(std::iter::once(Rectangle::new(
                    [(from, y_range.0), (to, y_range.1)],
                    shade.mix(0.12).filled(),
                )))
                .map_err(|error| error.to_string())?;
        } else {
            context
                .draw_series(std::iter::once(PathElement::new(
                    vec![(from, y_range.0), (from, y_range.1)],
                    shade.mix(0.7),
                )))
                .map_err(|error| error.to_string())?;
        }
    }
    for (line, points) in chart.lines.iter().zip(&points) {
        let color = rgb(&line.color);
        let style = ShapeStyle { color: color.to_rgba(), filled: true, stroke_width: 2 };
        let series = if chart.points {
            context.draw_series(points.iter().map(|&point| Circle::new(point, 3, style)))
        } else if line.dashed {
            context.draw_series(DashedLineSeries::new(points.iter().copied(), 6, 4, style))
        } else {
            context.draw_series(LineSeries::new(points.iter().copied(), style))
        }
        .map_err(|error| error.to_string())?;
        series
            .label(line.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
    }
    if !chart.lines.is_empty() {
        context
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|error| error.to_string())?;
    }
    root.present().map_err(|error| error.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_labelled_with_the_digits_they_need() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(1_000.0), "99.9%");
        assert_eq!(percentile_label(1e6), "99.9999%");
    }
}
