//! Figures drawn with plotters and a system TrueType font: the maps of true, predicted and
//! error log emission of a run and its predicted-vs-true scatter, with axes, units and
//! colour bars, for both `report`'s figure files and the TensorBoard images of every run
//! (one drawing, two destinations), and titles that wrap instead of being clipped.

use std::path::PathBuf;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::records::PredictionRow;
use super::render::{ramp, robust_range, Picture};
use crate::error::{Error, Result};

/// The family name figures register their font under.
pub const FONT: &str = "sans-serif";

/// Register a system DejaVu Sans (or $OPENCARBON_FONT) once; false when none is found.
pub fn font_ready() -> bool {
    static READY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *READY.get_or_init(|| {
        let candidates = std::env::var_os("OPENCARBON_FONT")
            .map(PathBuf::from)
            .into_iter()
            .chain(
                [
                    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                    "/usr/share/fonts/TTF/DejaVuSans.ttf",
                    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
                    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
                    "/Library/Fonts/Arial.ttf",
                ]
                .map(PathBuf::from),
            );
        for path in candidates {
            if let Ok(bytes) = std::fs::read(&path) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font(FONT, FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

pub fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("figure: {e}"))
}

/// Width in pixels of `text` in the figure font at `size`.
pub fn text_width(text: &str, size: u32) -> Result<u32> {
    let font = (FONT, size).into_font();
    font.box_size(text).map(|(w, _)| w).map_err(plot_err)
}

/// Space kept free on each side of a title line.
const TITLE_MARGIN: u32 = 8;

/// A figure's title broken into lines that fit its width: at spaces, and inside a word only
/// where one word alone is wider than the figure. Nothing is left out or clipped.
pub struct Title {
    pub lines: Vec<String>,
    pub size: u32,
}

impl Title {
    /// `text` at `size` for a figure `width` pixels wide.
    pub fn new(text: &str, size: u32, width: u32) -> Result<Title> {
        let room = width.saturating_sub(2 * TITLE_MARGIN).max(size);
        let fits = |s: &str| text_width(s, size).map(|w| w <= room);
        let mut lines: Vec<String> = Vec::new();
        let mut line = String::new();
        for word in text.split(' ') {
            let candidate = if line.is_empty() {
                word.to_string()
            } else {
                format!("{line} {word}")
            };
            if fits(&candidate)? {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            // A word wider than the figure: broken between characters.
            for ch in word.chars() {
                line.push(ch);
                if !fits(&line)? && line.chars().count() > 1 {
                    line.pop();
                    lines.push(std::mem::replace(&mut line, ch.to_string()));
                }
            }
        }
        lines.push(line);
        Ok(Title { lines, size })
    }

    fn line_height(&self) -> u32 {
        self.size + self.size / 3
    }

    /// Pixels the title takes at the top of a figure.
    pub fn height(&self) -> u32 {
        self.line_height() * self.lines.len() as u32 + 2 * TITLE_MARGIN
    }

    /// Draw the lines centred at the top of `area`; returns the area below them.
    pub fn draw<'a>(
        &self,
        area: &DrawingArea<BitMapBackend<'a>, Shift>,
    ) -> Result<DrawingArea<BitMapBackend<'a>, Shift>> {
        let (width, _) = area.dim_in_pixel();
        let style = TextStyle::from((FONT, self.size).into_font())
            .pos(Pos::new(HPos::Center, VPos::Top))
            .color(&BLACK);
        for (i, line) in self.lines.iter().enumerate() {
            let y = (TITLE_MARGIN + self.line_height() * i as u32) as i32;
            area.draw(&Text::new(line.clone(), ((width / 2) as i32, y), &style))
                .map_err(plot_err)?;
        }
        Ok(area.split_vertically(self.height()).1)
    }
}

/// A white PNG figure at `path`, `width` × `height` + the title's height, with `title` drawn
/// at its top; the area below the title (presenting it writes the file).
pub fn titled_file<'a>(
    path: &'a std::path::Path,
    title: &str,
    title_size: u32,
    (width, height): (u32, u32),
) -> Result<DrawingArea<BitMapBackend<'a>, Shift>> {
    let title = Title::new(title, title_size, width)?;
    let root = BitMapBackend::new(path, (width, height + title.height())).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    title.draw(&root)
}

/// Draw into a white RGB picture of `width` × `height` + the title's height, under `title`.
pub fn picture_with_title(
    title: &str,
    title_size: u32,
    (width, height): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
) -> Result<Picture> {
    let title = Title::new(title, title_size, width)?;
    let height = height + title.height();
    let mut rgb = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        let below = title.draw(&root)?;
        draw(&below)?;
        root.present().map_err(plot_err)?;
    }
    Ok(Picture {
        rgb,
        width: width as usize,
        height: height as usize,
    })
}

/// A map panel: one square per tile coloured on [lo, hi], with a labelled colour bar.
pub fn map_panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    title: &str,
    tiles: &[(u32, u32, f64)],
    (lo, hi): (f64, f64),
    colour: &dyn Fn(f64) -> RGBColor,
    unit: &str,
) -> Result<()> {
    let (x0, x1) = tiles
        .iter()
        .fold((u32::MAX, 0), |(a, b), t| (a.min(t.0), b.max(t.0)));
    let (y0, y1) = tiles
        .iter()
        .fold((u32::MAX, 0), |(a, b), t| (a.min(t.1), b.max(t.1)));
    let (map_area, bar_area) = area.split_vertically(area.dim_in_pixel().1 - 70);
    let mut chart = ChartBuilder::on(&map_area)
        .caption(title, (FONT, 15))
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(48)
        .build_cartesian_2d(x0 as f64..(x1 + 1) as f64, -((y1 + 1) as f64)..-(y0 as f64))
        .map_err(plot_err)?;
    // Tile column and row indices (y grows southwards, as in the slippy-map scheme).
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(4)
        .y_labels(4)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{:.0}", -v))
        .x_desc("tile x")
        .y_desc("tile y")
        .label_style((FONT, 10))
        .axis_desc_style((FONT, 11))
        .draw()
        .map_err(plot_err)?;
    chart
        .draw_series(tiles.iter().map(|&(x, y, v)| {
            Rectangle::new(
                [(x as f64, -(y as f64)), (x as f64 + 1.0, -(y as f64 + 1.0))],
                colour(v).filled(),
            )
        }))
        .map_err(plot_err)?;
    let mut bar = ChartBuilder::on(&bar_area)
        .margin_left(20)
        .margin_right(20)
        .x_label_area_size(34)
        .build_cartesian_2d(lo..hi, 0.0..1.0f64)
        .map_err(plot_err)?;
    bar.configure_mesh()
        .disable_mesh()
        .disable_y_axis()
        .x_labels(5)
        .x_desc(unit)
        .label_style((FONT, 11))
        .axis_desc_style((FONT, 11))
        .draw()
        .map_err(plot_err)?;
    let steps = 100;
    bar.draw_series((0..steps).map(|i| {
        let a = lo + (hi - lo) * i as f64 / steps as f64;
        let b = lo + (hi - lo) * (i + 1) as f64 / steps as f64;
        Rectangle::new([(a, 0.0), (b, 1.0)], colour((a + b) / 2.0).filled())
    }))
    .map_err(plot_err)?;
    Ok(())
}

/// "ln emission, ln(<unit>)", or saying the unit is not recorded.
fn ln_unit(unit: Option<&str>) -> String {
    match unit {
        Some(u) => format!("ln emission, ln({u})"),
        None => "ln emission (unit not recorded)".into(),
    }
}

/// Maps of true, predicted and error (predicted − true) log emission of `rows` (the tiles of
/// one dataset in one run), with tile indices on the axes and a colour bar under each.
pub fn maps(title: &str, rows: &[&PredictionRow], unit: Option<&str>) -> Result<Picture> {
    let truth: Vec<(u32, u32, f64)> = rows.iter().map(|r| (r.x, r.y, r.target)).collect();
    let pred: Vec<(u32, u32, f64)> = rows.iter().map(|r| (r.x, r.y, r.prediction)).collect();
    let err: Vec<(u32, u32, f64)> = rows
        .iter()
        .map(|r| (r.x, r.y, r.prediction - r.target))
        .collect();
    let range = robust_range(truth.iter().map(|t| t.2));
    let e_max = robust_range(err.iter().map(|t| t.2.abs())).1;
    let viridis = move |v: f64| {
        let c = ramp(v, range.0, range.1);
        RGBColor(c[0], c[1], c[2])
    };
    // Diverging blue-white-red for the error.
    let diverging = move |v: f64| {
        let t = (v / e_max).clamp(-1.0, 1.0);
        let (r, g, b) = if t < 0.0 {
            (1.0 + t, 1.0 + t, 1.0)
        } else {
            (1.0, 1.0 - t, 1.0 - t)
        };
        RGBColor((r * 255.0) as u8, (g * 255.0) as u8, (b * 255.0) as u8)
    };
    let unit_text = ln_unit(unit);
    picture_with_title(title, 18, (1200, 500), |root| {
        let panels = root.split_evenly((1, 3));
        map_panel(&panels[0], "true", &truth, range, &viridis, &unit_text)?;
        map_panel(&panels[1], "predicted", &pred, range, &viridis, &unit_text)?;
        map_panel(
            &panels[2],
            "error: predicted − true",
            &err,
            (-e_max, e_max),
            &diverging,
            "difference of ln emission (ln of the ratio)",
        )
    })
}

/// Predicted against true log emission of the test tiles among `rows`, with the 1:1 line;
/// `None` when there are none.
pub fn scatter(
    title: &str,
    rows: &[&PredictionRow],
    unit: Option<&str>,
) -> Result<Option<Picture>> {
    let test: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| r.split == "test")
        .map(|r| (r.target, r.prediction))
        .collect();
    if test.is_empty() {
        return Ok(None);
    }
    let (lo, hi) = test
        .iter()
        .flat_map(|p| [p.0, p.1])
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    let pad = (hi - lo).max(1e-6) * 0.05;
    let (lo, hi) = (lo - pad, hi + pad);
    let unit_text = ln_unit(unit);
    let picture =
        picture_with_title(title, 16, (560, 540), |root| {
            let mut chart = ChartBuilder::on(root)
                .margin(12)
                .x_label_area_size(44)
                .y_label_area_size(56)
                .build_cartesian_2d(lo..hi, lo..hi)
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_desc(format!("true {unit_text}"))
                .y_desc(format!("predicted {unit_text}"))
                .label_style((FONT, 12))
                .axis_desc_style((FONT, 13))
                .draw()
                .map_err(plot_err)?;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(lo, lo), (hi, hi)],
                    RED.stroke_width(2),
                )))
                .map_err(plot_err)?
                .label("1:1")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED.stroke_width(2)));
            chart
                .draw_series(test.iter().map(|&(t, p)| {
                    Circle::new((t, p), 3, RGBColor(31, 119, 180).mix(0.6).filled())
                }))
                .map_err(plot_err)?
                .label(format!("test tiles ({})", test.len()))
                .legend(|(x, y)| Circle::new((x + 8, y), 3, RGBColor(31, 119, 180).filled()));
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .label_font((FONT, 12))
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(plot_err)
        })?;
    Ok(Some(picture))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<PredictionRow> {
        (0..36)
            .map(|i| PredictionRow {
                dataset: "london".into(),
                x: 100 + i % 6,
                y: 200 + i / 6,
                split: if i % 3 == 0 { "test" } else { "train" }.into(),
                target: 8.0 + (i as f64 * 0.37).sin(),
                prediction: 8.1 + (i as f64 * 0.41).sin(),
            })
            .collect()
    }

    /// The longest short name among the committed experiments' runs (summary.csv's `name`
    /// column, as `report` writes it), with a fixed 260-character worst case beside it.
    fn longest_names() -> Vec<String> {
        let results = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
        let mut longest = String::new();
        for entry in std::fs::read_dir(&results).into_iter().flatten().flatten() {
            let Ok(mut reader) = csv::Reader::from_path(entry.path().join("summary.csv")) else {
                continue;
            };
            let Some(column) = reader
                .headers()
                .ok()
                .and_then(|h| h.iter().position(|c| c == "name"))
            else {
                continue;
            };
            for record in reader.records().flatten() {
                if let Some(name) = record.get(column) {
                    if name.len() > longest.len() {
                        longest = name.to_string();
                    }
                }
            }
        }
        let worst = format!("opencarbon no-se no-cl {}", "lr=0.00123456789 ".repeat(14));
        vec![longest, worst]
    }

    /// Whether column `x` of the top `rows` pixel rows of `pic` is all white.
    fn column_is_white(pic: &Picture, x: usize, rows: usize) -> bool {
        (0..rows).all(|y| {
            let o = (y * pic.width + x) * 3;
            pic.rgb[o..o + 3] == [255, 255, 255]
        })
    }

    /// A title made of the longest run name wraps into lines that each fit the figure, keeps
    /// every word, and leaves the figure's outer columns white (no glyph cut at an edge),
    /// on both the maps and the scatter.
    #[test]
    fn titles_are_never_cut() {
        if !font_ready() {
            // CI sets OPENCARBON_REQUIRE_FONT where the machine has the font (.ci/run).
            assert!(
                std::env::var_os("OPENCARBON_REQUIRE_FONT").is_none(),
                "OPENCARBON_REQUIRE_FONT is set but no font could be loaded"
            );
            eprintln!("no TrueType font: skipped");
            return;
        }
        let rows = rows();
        let refs: Vec<&PredictionRow> = rows.iter().collect();
        for name in longest_names() {
            let title = format!("yinchuan>london, split block4: {name} (seed 2, run 0123456789)");
            for (width, size) in [(1200, 18), (560, 16)] {
                let wrapped = Title::new(&title, size, width).unwrap();
                assert_eq!(wrapped.lines.join(" "), title, "every word kept");
                for line in &wrapped.lines {
                    let w = text_width(line, size).unwrap();
                    assert!(w + 2 * TITLE_MARGIN <= width, "{line}: {w} px of {width}");
                }
            }
            let maps = maps(&title, &refs, Some("t CO2 / year")).unwrap();
            let scatter = scatter(&title, &refs, Some("t CO2 / year"))
                .unwrap()
                .unwrap();
            for pic in [&maps, &scatter] {
                let band = Title::new(
                    &title,
                    if pic.width == 1200 { 18 } else { 16 },
                    pic.width as u32,
                )
                .unwrap()
                .height() as usize;
                assert!(column_is_white(pic, 0, band) && column_is_white(pic, pic.width - 1, band));
                let inked = (0..band * pic.width)
                    .filter(|&p| pic.rgb[p * 3] < 128)
                    .count();
                assert!(inked > 100, "the title is drawn ({inked} dark pixels)");
            }
        }
        // A single word wider than the figure is broken, not clipped.
        let long_word = "x".repeat(400);
        let wrapped = Title::new(&long_word, 16, 560).unwrap();
        assert!(wrapped.lines.len() > 1);
        assert_eq!(wrapped.lines.concat(), long_word);
    }
}
