//! What `uaio bench` shows: the table, the JSON and the SVG chart.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use super::load::{Outcome, Workload};
use super::Engine;

/// The runs of one workload on one engine.
#[derive(Debug)]
pub struct Cell {
    /// The engine.
    pub engine: Engine,
    /// One outcome per round.
    pub runs: Vec<Outcome>,
    /// Why it did not run (then `runs` is empty).
    pub failure: Option<String>,
}

/// One workload on every engine.
#[derive(Debug)]
pub struct Row {
    /// The workload.
    pub workload: Workload,
    /// One cell per engine, in the engines' order.
    pub cells: Vec<Cell>,
}

/// Everything measured, with the settings and the notes.
#[derive(Debug)]
pub struct Report {
    /// The rows, in the workloads' order.
    pub rows: Vec<Row>,
    /// Remarks printed under the table.
    pub notes: Vec<String>,
    /// The settings, for the JSON.
    pub config: Value,
}

/// Medians of one cell.
#[derive(Debug, Clone, Copy)]
struct Summary {
    iops: f64,
    mbps: f64,
    mean_ns: f64,
    p99_ns: f64,
    /// `(max - min) / median` of IOPS.
    spread: f64,
    /// Median of the per-round ratios to kernel AIO.
    ratio: Option<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl Row {
    fn kernel(&self) -> Option<&Cell> {
        self.cells.iter().find(|c| c.engine == Engine::Kernel && c.failure.is_none() && !c.runs.is_empty())
    }

    fn summary(&self, c: &Cell) -> Option<Summary> {
        if c.failure.is_some() || c.runs.is_empty() {
            return None;
        }
        let iops: Vec<f64> = c.runs.iter().map(Outcome::iops).collect();
        let med = median(iops.clone());
        let (lo, hi) = iops.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        let ratio = self.kernel().and_then(|k| {
            // Round r of this engine against round r of the kernel.
            let r: Vec<f64> = k.runs.iter().zip(&c.runs).map(|(k, e)| e.iops() / k.iops()).collect();
            (!r.is_empty()).then(|| median(r))
        });
        Some(Summary {
            iops: med,
            mbps: median(c.runs.iter().map(Outcome::mbps).collect()),
            mean_ns: median(c.runs.iter().map(|o| o.mean_ns).collect()),
            p99_ns: median(c.runs.iter().map(|o| o.p99_ns as f64).collect()),
            spread: if med > 0.0 { (hi - lo) / med } else { 0.0 },
            ratio,
        })
    }
}

/// `1234567.8` -> `"1,234,568"`.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x);
    let mut s = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            s.push(',');
        }
        s.push(c);
    }
    s
}

/// A latency in the unit that suits it.
fn duration(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0}ns")
    } else if ns < 1e6 {
        format!("{:.1}us", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2}ms", ns / 1e6)
    } else {
        format!("{:.2}s", ns / 1e9)
    }
}

impl Report {
    /// The table for people.
    pub fn table(&self) -> String {
        let wname = self.rows.iter().map(|r| r.workload.name.len()).max().unwrap_or(8).max(8);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\n{:<wname$}  {:<12} {:>12} {:>9} {:>9} {:>9} {:>9} {:>7}",
            "workload", "engine", "IOPS", "MB/s", "mean lat", "p99 lat", "vs kernel", "spread"
        );
        for row in &self.rows {
            for (i, c) in row.cells.iter().enumerate() {
                let name = if i == 0 { row.workload.name.as_str() } else { "" };
                match (row.summary(c), &c.failure) {
                    (Some(m), _) => {
                        let mbps = if m.mbps > 0.0 { format!("{:.1}", m.mbps) } else { "-".into() };
                        let ratio = match m.ratio {
                            Some(r) => format!("{r:.2}x"),
                            None if c.engine == Engine::Kernel => "-".into(),
                            None => "n/a".into(),
                        };
                        let _ = writeln!(
                            s,
                            "{name:<wname$}  {:<12} {:>12} {:>9} {:>9} {:>9} {:>9} {:>6.1}%",
                            c.engine.name(),
                            thousands(m.iops),
                            mbps,
                            duration(m.mean_ns),
                            duration(m.p99_ns),
                            ratio,
                            m.spread * 100.0
                        );
                    }
                    (None, why) => {
                        let why = why.as_deref().unwrap_or("no run");
                        let _ = writeln!(s, "{name:<wname$}  {:<12} {:>12}  {why}", c.engine.name(), "n/a");
                    }
                }
            }
        }
        let rounds = self.config["rounds"].as_u64().unwrap_or(0);
        let _ = writeln!(
            s,
            "\nMedians of {rounds} rounds. vs kernel: median of the per-round IOPS ratios to kernel AIO; \
             spread: (max - min) / median of IOPS;\nlatency: per request, io_submit to io_getevents; \
             MB/s in 10^6 B/s."
        );
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        s
    }

    /// The numbers for machines.
    pub fn to_json(&self) -> Value {
        let mut results = Vec::new();
        for row in &self.rows {
            for c in &row.cells {
                let mut v = json!({
                    "workload": row.workload.name,
                    "description": row.workload.describe(),
                    "engine": c.engine.name(),
                    "available": c.failure.is_none(),
                    "reason": c.failure,
                    "rounds": c.runs.iter().map(Outcome::to_json).collect::<Vec<_>>(),
                });
                if let Some(m) = row.summary(c) {
                    v["iops"] = json!(m.iops);
                    v["mb_s"] = json!(m.mbps);
                    v["lat_mean_us"] = json!(m.mean_ns / 1e3);
                    v["lat_p99_us"] = json!(m.p99_ns / 1e3);
                    v["spread"] = json!(m.spread);
                    v["ratio_to_kernel"] = json!(m.ratio);
                }
                results.push(v);
            }
        }
        json!({ "config": self.config, "notes": self.notes, "results": results })
    }

    /// Writes a bar chart: IOPS of every engine (log scale) and the ratio
    /// of each uaio engine to kernel AIO, one group of bars per workload.
    pub fn svg(&self, path: &Path) -> Result<(), String> {
        // Drawn in memory, then written: plotters' own file output can lose
        // a write error (a full file system gave an empty file and success).
        let mut text = String::new();
        self.draw_svg(&mut text).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| e.to_string())
    }

    fn draw_svg(&self, out: &mut String) -> Result<(), Box<dyn std::error::Error + '_>> {
        use plotters::prelude::*;
        use plotters::style::text_anchor::{HPos, Pos, VPos};

        let engines: Vec<Engine> =
            self.rows.first().map(|r| r.cells.iter().map(|c| c.engine).collect()).unwrap_or_default();
        let color = |e: Engine| match e {
            Engine::Kernel => RGBColor(140, 140, 140),
            Engine::Uring => RGBColor(31, 119, 180),
            Engine::Threads => RGBColor(255, 127, 14),
        };
        let n = self.rows.len().max(1);
        let per = engines.len().max(1);
        let label_w = 300u32;
        let height = 90 + (n * (12 * per + 12)) as u32;
        let root = SVGBackend::with_string(out, (1300, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(label_w + 560);

        let sums: Vec<Vec<Option<Summary>>> =
            self.rows.iter().map(|r| r.cells.iter().map(|c| r.summary(c)).collect()).collect();
        let all_iops = sums.iter().flatten().flatten().map(|m| m.iops).filter(|&x| x > 0.0);
        let max_iops = all_iops.clone().fold(1.0f64, f64::max) * 2.0;
        let min_iops = all_iops.fold(f64::MAX, f64::min).min(max_iops / 10.0) / 2.0;
        // Row i occupies y in [n - 1 - i, n - i); bar j a slice of it.
        let bar = |i: usize, j: usize| {
            let top = (n - i) as f64 - 0.1;
            let h = 0.8 / per as f64;
            (top - h * (j as f64 + 1.0), top - h * j as f64 - h * 0.15)
        };

        let mut chart = ChartBuilder::on(&left)
            .caption("IOPS (log scale)", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(label_w)
            .build_cartesian_2d((min_iops..max_iops).log_scale(), 0f64..n as f64)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|_| String::new())
            .x_label_formatter(&|v| {
                if *v >= 1e6 {
                    format!("{:.0}M", v / 1e6)
                } else if *v >= 1e3 {
                    format!("{:.0}k", v / 1e3)
                } else {
                    format!("{v:.0}")
                }
            })
            .draw()?;
        for (j, &e) in engines.iter().enumerate() {
            let c = color(e);
            chart
                .draw_series(sums.iter().enumerate().filter_map(|(i, s)| {
                    let m = s.get(j).copied().flatten()?;
                    let (y0, y1) = bar(i, j);
                    Some(Rectangle::new([(min_iops, y0), (m.iops.max(min_iops), y1)], c.filled()))
                }))?
                .label(e.name())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        let name_style = ("sans-serif", 13).into_font().color(&BLACK).pos(Pos::new(HPos::Right, VPos::Center));
        for (i, row) in self.rows.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(min_iops, (n - i) as f64 - 0.5));
            root.draw(&Text::new(row.workload.name.clone(), (px - 8, py), name_style.clone()))?;
        }

        let ratios = sums.iter().flatten().flatten().filter_map(|m| m.ratio).filter(|&r| r > 0.0);
        let hi_ratio = ratios.clone().fold(2.0f64, f64::max) * 1.6;
        let lo_ratio = ratios.fold(0.5f64, f64::min) / 1.3;
        let mut chart = ChartBuilder::on(&right)
            .caption("ratio to kernel AIO (log scale)", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(5)
            .build_cartesian_2d((lo_ratio..hi_ratio).log_scale(), 0f64..n as f64)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_labels(8)
            .x_label_formatter(&|v| if *v >= 10.0 { format!("{v:.0}x") } else { format!("{v:.1}x") })
            .draw()?;
        let text_style = ("sans-serif", 11).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
        for (j, &e) in engines.iter().enumerate() {
            if e == Engine::Kernel {
                continue;
            }
            let c = color(e);
            let ratio_of = |i: usize| sums[i].get(j).copied().flatten().and_then(|m| m.ratio).filter(|&r| r > 0.0);
            chart.draw_series((0..sums.len()).filter_map(|i| {
                let r = ratio_of(i)?;
                let (y0, y1) = bar(i, j);
                Some(Rectangle::new([(1.0, y0), (r, y1)], c.filled()))
            }))?;
            chart.draw_series((0..sums.len()).filter_map(|i| {
                let r = ratio_of(i)?;
                let (y0, y1) = bar(i, j);
                Some(Text::new(format!("{r:.2}x"), (r.max(1.0) * 1.03, (y0 + y1) / 2.0), text_style.clone()))
            }))?;
        }
        chart.draw_series(
            sums.iter().enumerate().filter(|(_, s)| s.iter().flatten().all(|m| m.ratio.is_none())).map(|(i, _)| {
                Text::new("no kernel AIO run".to_string(), (1.03, (n - i) as f64 - 0.5), text_style.clone())
            }),
        )?;
        chart.draw_series(LineSeries::new([(1.0, 0.0), (1.0, n as f64)], BLACK.stroke_width(1)))?;
        root.present()?;
        Ok(())
    }
}
