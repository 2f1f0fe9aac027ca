//! The webapp benchmark's figures as SVG, from its results (`latest.json`): operator requests
//! and operator CPU per WebApp by phase and variant (grouped bars), and WebApps Ready over time in
//! the create phase (when the results record it).

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Deserialize;

use super::driver::{Figures, Variant};

/// The part of `latest.json` the figures read (the rest is ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct Results {
    /// WebApps per phase.
    pub n: usize,
    /// The variants' figures, in the order they ran.
    pub variants: Vec<Figures>,
}

/// The phases, in the order they run.
const PHASES: [&str; 5] = ["create", "edit", "idle", "restart", "delete"];

/// The figures' file names.
const REQUESTS_SVG: &str = "requests.svg";
const CPU_SVG: &str = "cpu.svg";
const CONVERGE_SVG: &str = "converge.svg";

fn color(v: Variant) -> RGBColor {
    match v {
        Variant::Staircase => RGBColor(0x1f, 0x77, 0xb4),
        Variant::KubeRuntime => RGBColor(0xff, 0x7f, 0x0e),
        Variant::ControllerRuntime => RGBColor(0x2c, 0xa0, 0x2c),
    }
}

/// Reads `json` (a `latest.json`) and writes the figures beside it; returns their paths.
pub fn draw_from(json: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(json)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", json.display()))?;
    let results: Results = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("parsing {}: {e}", json.display()))?;
    let dir = json.parent().unwrap_or(Path::new("."));
    draw(&results, dir)
}

/// Writes `requests.svg`, `cpu.svg` and, when the create phase recorded when each WebApp became
/// Ready, `converge.svg` into `dir`; returns their paths.
pub fn draw(results: &Results, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let n = results.n.max(1) as f64;
    let mut written = Vec::new();
    let path = dir.join(REQUESTS_SVG);
    bars(
        &path,
        &format!("Operator requests per WebApp, N = {}", results.n),
        "requests per WebApp",
        results,
        |p| p.operator.by_resource.values().sum::<u64>() as f64 / n,
    )?;
    written.push(path);
    let path = dir.join(CPU_SVG);
    bars(
        &path,
        &format!("Operator CPU per WebApp, N = {}", results.n),
        "CPU per WebApp, ms",
        results,
        |p| p.operator_cpu_ms / n,
    )?;
    written.push(path);
    if results
        .variants
        .iter()
        .any(|f| f.phases.first().is_some_and(|p| !p.ready_s.is_empty()))
    {
        let path = dir.join(CONVERGE_SVG);
        converge(&path, results)?;
        written.push(path);
    }
    Ok(written)
}

/// Grouped bars: a group per phase, a bar per variant, its value printed above it.
fn bars(
    path: &Path,
    title: &str,
    y_desc: &str,
    results: &Results,
    value: impl Fn(&super::driver::Phase) -> f64,
) -> anyhow::Result<()> {
    let of = |f: &Figures, phase: &str| {
        f.phases
            .iter()
            .find(|p| p.name == phase)
            .map(&value)
            .unwrap_or(0.0)
    };
    let max = results
        .variants
        .iter()
        .flat_map(|f| PHASES.iter().map(move |ph| of(f, ph)))
        .fold(0.0, f64::max);
    let top = if max > 0.0 { max * 1.15 } else { 1.0 };
    let root = SVGBackend::new(path, (800, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(56)
        // Phases sit on the integers; a group spans 0.8 of its slot.
        .build_cartesian_2d(-0.5f64..(PHASES.len() as f64 - 0.5), 0f64..top)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .x_labels(PHASES.len())
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                PHASES.get(i as usize).copied().unwrap_or("").to_string()
            } else {
                String::new()
            }
        })
        .y_desc(y_desc)
        .draw()
        .map_err(plot_err)?;
    let k = results.variants.len().max(1) as f64;
    let width = 0.8 / k;
    for (j, f) in results.variants.iter().enumerate() {
        let c = color(f.variant);
        let left = |i: usize| i as f64 - 0.4 + j as f64 * width;
        let values: Vec<f64> = PHASES.iter().map(|ph| of(f, ph)).collect();
        chart
            .draw_series(values.iter().enumerate().map(|(i, v)| {
                Rectangle::new([(left(i), 0.0), (left(i) + width * 0.92, *v)], c.filled())
            }))
            .map_err(plot_err)?
            .label(f.variant.name())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
        chart
            .draw_series(values.iter().enumerate().map(|(i, v)| {
                Text::new(
                    short(*v),
                    (left(i) + width * 0.46, *v + top * 0.01),
                    ("sans-serif", 11)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Center, VPos::Bottom)),
                )
            }))
            .map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// WebApps seen Ready over time in the create phase, a step line per variant.
fn converge(path: &Path, results: &Results) -> anyhow::Result<()> {
    let create = |f: &Figures| {
        f.phases
            .iter()
            .find(|p| p.name == "create")
            .map(|p| p.ready_s.clone())
            .unwrap_or_default()
    };
    let end = results
        .variants
        .iter()
        .filter_map(|f| create(f).last().copied())
        .fold(0.0, f64::max);
    let end = if end > 0.0 { end * 1.05 } else { 1.0 };
    let root = SVGBackend::new(path, (800, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("WebApps Ready during the create phase, N = {}", results.n),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..end, 0f64..(results.n.max(1) as f64 * 1.05))
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc("s since the first create")
        .y_desc("WebApps Ready")
        .draw()
        .map_err(plot_err)?;
    for f in &results.variants {
        let ready = create(f);
        if ready.is_empty() {
            continue;
        }
        let mut points = vec![(0.0, 0.0)];
        for (i, t) in ready.iter().enumerate() {
            points.push((*t, i as f64));
            points.push((*t, (i + 1) as f64));
        }
        let c = color(f.variant);
        chart
            .draw_series(std::iter::once(PathElement::new(points, c.stroke_width(2))))
            .map_err(plot_err)?
            .label(f.variant.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// A bar's label: two significant figures or so, no trailing noise.
fn short(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v < 0.01 {
        // Not "0.00": a few requests in all, not none.
        "<0.01".into()
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn plot_err<E: std::error::Error + Send + Sync + 'static>(
    e: DrawingAreaErrorKind<E>,
) -> anyhow::Error {
    anyhow::anyhow!("drawing: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A three-WebApp run of the driver (the end-to-end smoke test's size).
    const FIXTURE: &str = include_str!("../../fixtures/webapp-n3.json");

    #[test]
    fn draws_every_figure_from_a_small_result() {
        let results: Results = serde_json::from_str(FIXTURE).expect("fixture parses");
        let dir = std::env::temp_dir().join(format!("webapp-plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let written = draw(&results, &dir).expect("draws");
        let names: Vec<_> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [REQUESTS_SVG, CPU_SVG, CONVERGE_SVG]);
        for path in &written {
            let svg = std::fs::read_to_string(path).unwrap();
            assert!(svg.starts_with("<svg"), "{}: not an SVG", path.display());
            for v in Variant::ALL {
                assert!(
                    svg.contains(v.name()),
                    "{} does not mention {}",
                    path.display(),
                    v.name()
                );
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn results_written_before_the_ready_times_still_draw_without_the_curve() {
        let mut results: Results = serde_json::from_str(FIXTURE).unwrap();
        for f in &mut results.variants {
            for p in &mut f.phases {
                p.ready_s.clear();
            }
        }
        // The older format: no `ready_s` key at all.
        let json = serde_json::to_string(&serde_json::json!({
            "n": results.n,
            "variants": results.variants,
        }))
        .unwrap();
        assert!(!json.contains("ready_s"));
        let results: Results = serde_json::from_str(&json).unwrap();
        let dir = std::env::temp_dir().join(format!("webapp-plot-old-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let written = draw(&results, &dir).expect("draws");
        assert_eq!(written.len(), 2, "no convergence curve without ready times");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
