//! Plots with `plotters`, as SVG and PNG: ops/s vs cores per system for
//! one workload (median, with a min–max bar per point), and a summary per
//! accelerator (geometric mean over workloads of each system's speed-up
//! ops(N)/ops(1), beside the ideal line).
//!
//! Text is laid out (both formats) and drawn (PNG) with `ab_glyph` from a
//! TrueType file found at run time (`font()`: `COMPARISON_FONT`, Debian's
//! DejaVu Sans from fonts-dejavu-core, a few other usual places, then
//! `fc-match`).  Invariants: a plot only ever holds one accelerator's
//! numbers; empty or degenerate data still gives a valid (if empty) plot,
//! never a panic; without a font every plot call is an error that says
//! which package to install.  It must not read records from disk (except the
//! font file) or run anything but `fc-match`.

use super::stats::{geomean, Group, GroupKey};
use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Width and height of every plot, in pixels (SVG user units).
pub const SIZE: (u32, u32) = (800, 500);

/// Environment variable naming a TrueType font file for the plots.
pub const FONT_ENV: &str = "COMPARISON_FONT";

/// Where Linux distributions put a sans-serif TrueType font; Debian's
/// fonts-dejavu-core first.
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
];

fn find_font_file() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(FONT_ENV) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{FONT_ENV}={} is not a file", path.display());
        }
        return Ok(path);
    }
    if let Some(found) = FONT_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    {
        return Ok(found);
    }
    let from_fontconfig = std::process::Command::new("fc-match")
        .args(["-f", "%{file}", "sans-serif:fontformat=TrueType"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_file());
    from_fontconfig.with_context(|| {
        format!(
            "no TrueType font for the plots: install Debian's fonts-dejavu-core \
             (tools/setup.sh does) or set {FONT_ENV}=/path/to/font.ttf"
        )
    })
}

/// Find a font and register it as plotters' `sans-serif` (once per
/// process); the path of the font file.
pub fn font() -> Result<&'static PathBuf> {
    static FONT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let load = || -> Result<PathBuf> {
            let path = find_font_file()?;
            let bytes = std::fs::read(&path)
                .with_context(|| format!("reading the font {}", path.display()))?;
            // The font table wants 'static bytes: one font per process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| anyhow!("{} is not a TrueType/OpenType font", path.display()))?;
            Ok(path)
        };
        load().map_err(|e| format!("{e:#}"))
    })
    .as_ref()
    .map_err(|e| anyhow!("{e}"))
}

/// Draw with `draw` into an SVG string.
pub(crate) fn to_svg(
    draw: impl FnOnce(DrawingArea<SVGBackend, Shift>) -> Result<()>,
) -> Result<String> {
    font()?;
    let mut svg = String::new();
    draw(SVGBackend::with_string(&mut svg, SIZE).into_drawing_area())?;
    Ok(svg)
}

/// Draw with `draw` into an RGB image and encode it as PNG.
pub(crate) fn to_png(
    draw: impl FnOnce(DrawingArea<BitMapBackend, Shift>) -> Result<()>,
) -> Result<Vec<u8>> {
    font()?;
    let (w, h) = SIZE;
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    draw(BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area())?;
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().context("encoding a PNG")?;
        writer.write_image_data(&rgb).context("encoding a PNG")?;
    }
    Ok(out)
}

/// Colours for systems, in display order.
pub(crate) fn color(index: usize) -> RGBColor {
    const PALETTE: [RGBColor; 6] = [
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0xd6, 0x27, 0x28),
        RGBColor(0x2c, 0xa0, 0x2c),
        RGBColor(0x94, 0x67, 0xbd),
        RGBColor(0xff, 0x7f, 0x0e),
        RGBColor(0x8c, 0x56, 0x4b),
    ];
    PALETTE[index % PALETTE.len()]
}

/// Keep file names portable: letters, digits, `-`, `_`, `.`.
pub(crate) fn clean(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `<accel>-<workload>-<mode>[-<unit>].svg`; the PNG has the same stem.
pub fn group_file_name(key: &GroupKey) -> String {
    let unit = if key.unit == "ops" {
        String::new()
    } else {
        format!("-{}", clean(&key.unit))
    };
    format!(
        "{}-{}-{}{unit}.svg",
        clean(&key.accel),
        clean(&key.workload),
        clean(&key.mode)
    )
}

/// `<accel>-summary.svg`; the PNG has the same stem.
pub fn summary_file_name(accel: &str) -> String {
    format!("{}-summary.svg", clean(accel))
}

pub(crate) fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a plot: {e:?}")
}

/// The SVG text of one workload's plot.
pub fn group_svg(key: &GroupKey, group: &Group) -> Result<String> {
    to_svg(|root| draw_group(root, key, group))
}

/// The PNG file of one workload's plot.
pub fn group_png(key: &GroupKey, group: &Group) -> Result<Vec<u8>> {
    to_png(|root| draw_group(root, key, group))
}

/// One system's line on a plot: the line with its legend entry and a dot
/// at every core count.
pub(crate) fn draw_system_line<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    system: &str,
    c: RGBColor,
    points: Vec<(f64, f64)>,
) -> Result<()> {
    chart
        .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
        .map_err(err)?
        .label(system)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    chart
        .draw_series(points.iter().map(|p| Circle::new(*p, 4, c.filled())))
        .map_err(err)?;
    Ok(())
}

fn draw_group<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    key: &GroupKey,
    group: &Group,
) -> Result<()> {
    {
        root.fill(&WHITE).map_err(err)?;
        let cores = group.core_counts();
        let max_cores = cores.last().copied().unwrap_or(1);
        let y_max = group
            .cells
            .values()
            .flat_map(|m| m.values().map(|s| s.max))
            .fold(0.0f64, f64::max);
        let y_top = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
        let unit = if key.unit == "ops" {
            "ops/s".to_string()
        } else {
            format!("{}/s", key.unit)
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{} ({}), accel {}", key.workload, key.mode, key.accel),
                ("sans-serif", 22),
            )
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(80)
            .build_cartesian_2d(0.5f64..(max_cores as f64 + 0.5), 0.0f64..y_top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("cores")
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .y_desc(unit)
            .x_labels((max_cores as usize + 1).min(16))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| super::report::fmt_rate(*y))
            .draw()
            .map_err(err)?;
        for (i, system) in group.systems().iter().enumerate() {
            let c = color(i);
            let points: Vec<(f64, f64)> = group.cells[system]
                .iter()
                .map(|(n, s)| (*n as f64, s.median))
                .collect();
            draw_system_line(&mut chart, system, c, points)?;
            // The spread over runs: a vertical bar from min to max.
            chart
                .draw_series(group.cells[system].iter().map(|(n, s)| {
                    PathElement::new(
                        vec![(*n as f64, s.min), (*n as f64, s.max)],
                        c.stroke_width(1),
                    )
                }))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(())
}

/// Per system, the geometric mean over `groups` of ops(N)/ops(1) at each
/// core count N (groups without a 1-core result for that system are left
/// out).
pub fn speedups<'a>(
    groups: impl Iterator<Item = &'a Group>,
) -> BTreeMap<String, BTreeMap<u32, f64>> {
    let mut raw: BTreeMap<String, BTreeMap<u32, Vec<f64>>> = BTreeMap::new();
    for g in groups {
        for (system, cells) in &g.cells {
            let Some(base) = cells.get(&1).map(|s| s.median).filter(|b| *b > 0.0) else {
                continue;
            };
            for (n, s) in cells {
                raw.entry(system.clone())
                    .or_default()
                    .entry(*n)
                    .or_default()
                    .push(s.median / base);
            }
        }
    }
    raw.into_iter()
        .map(|(sys, m)| {
            (
                sys,
                m.into_iter()
                    .filter_map(|(n, v)| geomean(&v).map(|g| (n, g)))
                    .collect(),
            )
        })
        .collect()
}

/// The SVG text of one accelerator's summary plot.
pub fn summary_svg(accel: &str, groups: &BTreeMap<GroupKey, Group>) -> Result<String> {
    to_svg(|root| draw_summary(root, accel, groups))
}

/// The PNG file of one accelerator's summary plot.
pub fn summary_png(accel: &str, groups: &BTreeMap<GroupKey, Group>) -> Result<Vec<u8>> {
    to_png(|root| draw_summary(root, accel, groups))
}

fn draw_summary<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    accel: &str,
    groups: &BTreeMap<GroupKey, Group>,
) -> Result<()> {
    let in_accel: Vec<&Group> = groups
        .iter()
        .filter(|(k, _)| k.accel == accel)
        .map(|(_, g)| g)
        .collect();
    let workloads = in_accel.len();
    let speed = speedups(in_accel.into_iter());
    let mut systems: Vec<&String> = speed.keys().collect();
    systems.sort_by_key(|n| (super::stats::system_rank(n), (*n).clone()));
    let max_cores = speed
        .values()
        .flat_map(|m| m.keys().copied())
        .max()
        .unwrap_or(1);
    let y_max = speed
        .values()
        .flat_map(|m| m.values().copied())
        .fold(max_cores as f64, f64::max);
    {
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("speed-up ops(N)/ops(1), geometric mean of {workloads} workloads, accel {accel}"),
                ("sans-serif", 20),
            )
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(0.5f64..(max_cores as f64 + 0.5), 0.0f64..(y_max * 1.1))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("cores")
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .y_desc("speed-up")
            .x_labels((max_cores as usize + 1).min(16))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(err)?;
        let grey = RGBColor(0x99, 0x99, 0x99);
        chart
            .draw_series(LineSeries::new(
                vec![(1.0, 1.0), (max_cores as f64, max_cores as f64)],
                grey.stroke_width(1),
            ))
            .map_err(err)?
            .label("ideal")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(1))
            });
        for (i, system) in systems.iter().enumerate() {
            let c = color(i);
            let points: Vec<(f64, f64)> = speed[*system]
                .iter()
                .map(|(n, v)| (*n as f64, *v))
                .collect();
            draw_system_line(&mut chart, system, c, points)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::record::sample;
    use super::super::stats::aggregate;
    use super::*;

    fn groups() -> BTreeMap<GroupKey, Group> {
        aggregate(&[
            sample("ours", "getppid", 1, 0, 1000.0),
            sample("ours", "getppid", 2, 0, 2000.0),
            sample("ours", "getppid", 2, 1, 1800.0),
            sample("linux", "getppid", 1, 0, 800.0),
            sample("linux", "getppid", 2, 0, 800.0),
            sample("ours", "stat", 1, 0, 10.0),
            sample("ours", "stat", 2, 0, 10.0),
        ])
    }

    #[test]
    fn workload_plot_is_an_svg_with_every_system() {
        let g = groups();
        let (key, group) = g.iter().next().unwrap();
        assert_eq!(group_file_name(key), "tcg-getppid-threads.svg");
        let svg = group_svg(key, group).unwrap();
        assert!(
            svg.starts_with("<svg") || svg.contains("<svg"),
            "{}",
            &svg[..100.min(svg.len())]
        );
        assert!(svg.contains("ours") && svg.contains("linux") && svg.contains("getppid"));
        assert!(
            svg.contains("<polyline") || svg.contains("<path"),
            "lines are drawn"
        );
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn summary_speedups_are_geometric_means() {
        let g = groups();
        let s = speedups(g.values());
        // ours: getppid 1900/1000 = 1.9, stat 1.0 -> sqrt(1.9).
        assert!((s["ours"][&2] - 1.9f64.sqrt()).abs() < 1e-9);
        assert_eq!(s["linux"][&2], 1.0);
        let svg = summary_svg("tcg", &g).unwrap();
        assert!(svg.contains("ideal") && svg.contains("2 workloads"));
        assert_eq!(summary_file_name("tcg"), "tcg-summary.svg");
    }

    /// Decode a PNG: (width, height, RGB or RGBA bytes per pixel, pixels).
    fn decode(bytes: &[u8]) -> (u32, u32, usize, Vec<u8>) {
        let mut reader = png::Decoder::new(bytes).read_info().expect("a PNG header");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).expect("PNG image data");
        buf.truncate(info.buffer_size());
        (info.width, info.height, info.color_type.samples(), buf)
    }

    #[test]
    fn png_plots_decode_at_the_plot_size() {
        font().expect("a font for the plots (tools/setup.sh installs fonts-dejavu-core)");
        let g = groups();
        let (key, group) = g.iter().next().unwrap();
        for bytes in [
            group_png(key, group).unwrap(),
            summary_png("tcg", &g).unwrap(),
        ] {
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
            let (w, h, samples, pixels) = decode(&bytes);
            assert_eq!((w, h), SIZE);
            assert_eq!(samples, 3);
            assert_eq!(pixels.len(), (w * h * 3) as usize);
            // White background with lines, points and text drawn on it.
            let white = pixels.chunks(3).filter(|p| p == &[255, 255, 255]).count();
            let total = (w * h) as usize;
            assert!(white > total / 2, "mostly background: {white}/{total}");
            assert!(white < total - 2000, "something is drawn: {white}/{total}");
            // Some pixel has the first system's colour (lines or points).
            assert!(pixels.chunks(3).any(|p| p == [0x1f, 0x77, 0xb4]));
        }
    }

    #[test]
    fn degenerate_data_still_plots() {
        let g = aggregate(&[sample("ours", "x/y z", 3, 0, 0.0)]);
        let (key, group) = g.iter().next().unwrap();
        assert_eq!(group_file_name(key), "tcg-x_y_z-threads.svg");
        assert!(group_svg(key, group).unwrap().contains("</svg>"));
        assert!(summary_svg("tcg", &g).unwrap().contains("</svg>"));
        assert!(summary_svg("kvm", &BTreeMap::new())
            .unwrap()
            .contains("</svg>"));
        assert_eq!(decode(&group_png(key, group).unwrap()).0, SIZE.0);
        assert_eq!(
            decode(&summary_png("kvm", &BTreeMap::new()).unwrap()).1,
            SIZE.1
        );
    }
}
