//! TensorBoard event files in a run directory: `event_file` writes the records (length,
//! masked CRC32C, payload); the summaries are built here from tensorboard-proto's types,
//! including text and the HParams plugin's session summaries,
//! so `tensorboard --logdir results/<experiment>` shows every run of an experiment side by
//! side: SCALARS, HISTOGRAMS, IMAGES, TEXT and HPARAMS.

use std::path::Path;

use protobuf::{Message, RepeatedField};
use tensorboard_proto::api::{
    DataType as HParamType, Experiment, HParamInfo, MetricInfo, MetricName, Status,
};
use tensorboard_proto::event::Event;
use tensorboard_proto::plugin_hparams::{HParamsPluginData, SessionEndInfo, SessionStartInfo};
use tensorboard_proto::plugin_text::TextPluginData;
use tensorboard_proto::summary::{
    HistogramProto, Summary, SummaryMetadata, SummaryMetadata_PluginData, Summary_Image,
    Summary_Value,
};
use tensorboard_proto::tensor::TensorProto;
use tensorboard_proto::tensor_shape::{TensorShapeProto, TensorShapeProto_Dim};
use tensorboard_proto::types::DataType;

use super::event_file::EventFile;

/// The scalar tags of a run's final metrics (step 0), which the HPARAMS tab shows per run.
pub const FINAL_METRIC_TAGS: [(&str, &str); 8] = [
    ("metrics/test_r2", "test r2"),
    ("metrics/test_rmse", "test rmse"),
    ("metrics/test_mae", "test mae"),
    ("metrics/test_mape", "test mape"),
    ("metrics/valid_r2", "valid r2"),
    ("metrics/valid_rmse", "valid rmse"),
    ("metrics/train_r2", "train r2"),
    ("metrics/train_rmse", "train rmse"),
];

/// Scalar tags (step 0) of what a trained neural run's early stopping chose: the epoch of the
/// checkpoint kept and its validation score (model.json's `best_epoch` and
/// `best_validation_score`), beside the final metrics in the HPARAMS tab.
pub const BEST_CHECKPOINT_TAGS: [(&str, &str); 2] = [
    ("metrics/best_epoch", "best_epoch"),
    ("metrics/best_valid_r2", "best_validation_score"),
];

/// One run's event file.
/// A write error is kept by the file and reported by `flush` and `close`.
pub struct Board {
    writer: EventFile,
}

/// A hyperparameter value for the HPARAMS tab: the same values summary.csv and the MLflow
/// export show (`records::run_params`).
pub use super::records::ParamValue as HParam;

fn summary(value: Summary_Value) -> Summary {
    let mut s = Summary::new();
    s.set_value(RepeatedField::from_vec(vec![value]));
    s
}

fn plugin_metadata(plugin: &str, content: Vec<u8>) -> SummaryMetadata {
    let mut data = SummaryMetadata_PluginData::new();
    data.set_plugin_name(plugin.into());
    data.set_content(content);
    let mut m = SummaryMetadata::new();
    m.set_plugin_data(data);
    m
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Board {
    /// Start an event file in `dir` (created).
    pub fn open(dir: &Path) -> Board {
        Board {
            writer: EventFile::create(dir),
        }
    }

    fn add_summary(&mut self, summary: Summary, step: usize) {
        let mut event = Event::new();
        event.set_summary(summary);
        self.writer.add(event, step);
    }

    /// A SessionLog START at `step`: TensorBoard then drops the events at `step` and later
    /// that earlier files of this run hold (the records of a killed attempt after the
    /// checkpoint a resumed run continues from).
    pub fn session_start(&mut self, step: usize) {
        let mut log = tensorboard_proto::event::SessionLog::new();
        log.set_status(tensorboard_proto::event::SessionLog_SessionStatus::START);
        let mut event = Event::new();
        event.set_session_log(log);
        self.writer.add(event, step);
    }

    pub fn scalar(&mut self, tag: &str, value: f64, step: usize) {
        let mut v = Summary_Value::new();
        v.set_tag(tag.into());
        v.set_simple_value(value as f32);
        self.add_summary(summary(v), step);
    }

    /// A histogram of `values` over 30 equal buckets between their minimum and maximum.
    pub fn histogram(&mut self, tag: &str, values: &[f32], step: usize) {
        let finite: Vec<f64> = values
            .iter()
            .map(|v| *v as f64)
            .filter(|v| v.is_finite())
            .collect();
        if finite.is_empty() {
            return;
        }
        let (lo, hi) = finite
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(*v), b.max(*v))
            });
        const BUCKETS: usize = 30;
        let width = ((hi - lo) / BUCKETS as f64).max(1e-12);
        let mut counts = vec![0.0f64; BUCKETS];
        for v in &finite {
            counts[(((v - lo) / width) as usize).min(BUCKETS - 1)] += 1.0;
        }
        let mut h = HistogramProto::new();
        h.set_min(lo);
        h.set_max(hi);
        h.set_num(finite.len() as f64);
        h.set_sum(finite.iter().sum());
        h.set_sum_squares(finite.iter().map(|v| v * v).sum());
        // bucket_limit[i] is the right edge of bucket i.
        h.set_bucket_limit((1..=BUCKETS).map(|i| lo + i as f64 * width).collect());
        h.set_bucket(counts);
        let mut v = Summary_Value::new();
        v.set_tag(tag.into());
        v.set_histo(h);
        self.add_summary(summary(v), step);
    }

    /// An image from PNG bytes.
    pub fn image_png(&mut self, tag: &str, png: Vec<u8>, width: usize, height: usize, step: usize) {
        let mut img = Summary_Image::new();
        img.set_width(width as i32);
        img.set_height(height as i32);
        img.set_colorspace(3);
        img.set_encoded_image_string(png);
        let mut v = Summary_Value::new();
        v.set_tag(tag.into());
        v.set_image(img);
        self.add_summary(summary(v), step);
    }

    /// Markdown text for the TEXT tab.
    pub fn text(&mut self, tag: &str, markdown: &str, step: usize) {
        let mut shape = TensorShapeProto::new();
        let mut dim = TensorShapeProto_Dim::new();
        dim.set_size(1);
        shape.set_dim(RepeatedField::from_vec(vec![dim]));
        let mut t = TensorProto::new();
        t.set_dtype(DataType::DT_STRING);
        t.set_tensor_shape(shape);
        t.set_string_val(RepeatedField::from_vec(vec![markdown.as_bytes().to_vec()]));
        let content = TextPluginData::new().write_to_bytes().unwrap_or_default();
        let mut v = Summary_Value::new();
        v.set_tag(tag.into());
        v.set_metadata(plugin_metadata("text", content));
        v.set_tensor(t);
        self.add_summary(summary(v), step);
    }

    /// This run's session for the HPARAMS tab: its hyperparameter values and a successful
    /// end. The session group is the run id, so the tab shows one row per run (a group would
    /// average its sessions' metrics, e.g. over datasets). The experiment record that names
    /// the columns is written once per experiment by `report` (`write_hparams_experiment`).
    pub fn hparams_session(&mut self, params: &[(String, HParam)], group: &str) {
        let mut start = SessionStartInfo::new();
        for (name, value) in params {
            start
                .mut_hparams()
                .insert(name.clone(), hparam_value(value));
        }
        start.set_group_name(group.into());
        start.set_start_time_secs(now_secs());
        let mut end = SessionEndInfo::new();
        end.set_status(Status::STATUS_SUCCESS);
        end.set_end_time_secs(now_secs());
        let mut d = HParamsPluginData::new();
        d.set_session_start_info(start);
        self.hparams_record("_hparams_/session_start_info", d);
        let mut d = HParamsPluginData::new();
        d.set_session_end_info(end);
        self.hparams_record("_hparams_/session_end_info", d);
    }

    fn hparams_record(&mut self, tag: &str, mut data: HParamsPluginData) {
        data.set_version(0);
        let mut v = Summary_Value::new();
        v.set_tag(tag.into());
        v.set_metadata(plugin_metadata(
            "hparams",
            data.write_to_bytes().unwrap_or_default(),
        ));
        self.add_summary(summary(v), 0);
    }

    /// Push the buffered events to the file; the first write error so far.
    pub fn flush(&mut self) -> crate::error::Result<()> {
        let path = self.writer.path().to_path_buf();
        self.writer
            .flush()
            .map_err(|e| crate::error::Error::io(&path, e))
    }

    /// Close the event file; the first write error of any event.
    pub fn close(self) -> crate::error::Result<()> {
        let path = self.writer.path().to_path_buf();
        self.writer
            .close()
            .map_err(|e| crate::error::Error::io(&path, e))
    }
}

fn hparam_value(value: &HParam) -> protobuf::well_known_types::Value {
    let mut v = protobuf::well_known_types::Value::new();
    match value {
        HParam::Number(x) => v.set_number_value(*x),
        HParam::Text(s) => v.set_string_value(s.clone()),
        HParam::Flag(b) => v.set_bool_value(*b),
    }
    v
}

/// The folder, beside the experiments of a results directory, of the views of runs by name
/// (its `.` keeps it apart from any experiment's name).
pub const NAMED_VIEWS: &str = "tensorboard.runs";

/// `<results>/tensorboard.runs/<experiment>/`: one folder per run, named by its short name
/// (`names::run_names`), holding links to the run's event files, and `_hparams/` linking the
/// experiment's HParams record; so `tensorboard --logdir results/tensorboard.runs/<experiment>`
/// lists the runs by name while their directories stay the run ids (and `--logdir
/// results/<experiment>` still shows each run once, by id). Rebuilt whole by each report,
/// through a temporary sibling and a rename.
pub fn write_named_view(
    experiment_dir: &Path,
    runs: &[(String, String)],
) -> crate::error::Result<()> {
    use crate::error::Error;
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| Error::io(&p, e)
    };
    // `report .` names the experiment by the directory's real name.
    let experiment_dir = &experiment_dir.canonicalize().map_err(io(experiment_dir))?;
    let Some(results) = experiment_dir.parent() else {
        return Ok(());
    };
    let experiment = experiment_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let views = results.join(NAMED_VIEWS);
    std::fs::create_dir_all(&views).map_err(io(&views))?;
    // Temporaries of killed reports: `<experiment>.tmp-…` and `<experiment>.old.tmp-…`
    // (experiment names hold no `.`, so the prefix is this experiment's alone).
    super::remove_dead_temps_of(&views, &format!("{experiment}."))?;
    let view = views.join(&experiment);
    let tmp = super::temp_path(&view);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    // From <results>/tensorboard.runs/<experiment>/<name>/<file> to <results>/<experiment>/...
    let up = Path::new("..").join("..").join("..").join(&experiment);
    let link_events = |from: &Path, into: &Path, target: &Path| -> crate::error::Result<()> {
        std::fs::create_dir_all(into).map_err(io(into))?;
        for entry in std::fs::read_dir(from).map_err(io(from))?.flatten() {
            let file = entry.file_name();
            if file.to_string_lossy().starts_with("events.out.tfevents.") {
                let link = into.join(&file);
                std::os::unix::fs::symlink(target.join(&file), &link).map_err(io(&link))?;
            }
        }
        Ok(())
    };
    for (run_id, name) in runs {
        let dir = tmp.join(super::names::as_dir_name(name, run_id));
        link_events(&experiment_dir.join(run_id), &dir, &up.join(run_id))?;
    }
    let hparams = experiment_dir.join("_hparams");
    if hparams.is_dir() {
        link_events(&hparams, &tmp.join("_hparams"), &up.join("_hparams"))?;
    }
    super::fault::point("replace a named TensorBoard view");
    let old = super::temp_path(&views.join(format!("{experiment}.old")));
    // Several processes may report at once (runs sharing a results directory end together):
    // another one may move the view away first, or place its own (the same runs) first.
    match std::fs::rename(&view, &old) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&view, e)),
        _ => {}
    }
    let placed = std::fs::rename(&tmp, &view);
    let _ = std::fs::remove_dir_all(&old);
    match placed {
        Ok(()) => Ok(()),
        Err(_) if view.is_dir() => {
            // Another report's view took the place: equally current; ours goes.
            std::fs::remove_dir_all(&tmp).map_err(io(&tmp))
        }
        Err(e) => Err(Error::io(&view, e)),
    }
}

/// `HParamInfo.differs` (field 7), which tensorboard-proto's generated type predates.
const HPARAM_INFO_DIFFERS: u32 = 7;

/// One `HParamInfo` per hyperparameter name of `runs`, in first-seen order: the type when
/// every run's value has one kind (number, flag or text), the domain (the distinct values;
/// for numbers their interval), and `differs` when runs hold two different values.
fn hparam_infos(runs: &[Vec<(String, HParam)>]) -> Vec<HParamInfo> {
    let mut names: Vec<&str> = Vec::new();
    let mut values: std::collections::HashMap<&str, Vec<&HParam>> = Default::default();
    for run in runs {
        for (name, value) in run {
            let seen = values.entry(name.as_str()).or_default();
            if seen.is_empty() {
                names.push(name);
            }
            if !seen.contains(&value) {
                seen.push(value);
            }
        }
    }
    names
        .into_iter()
        .map(|name| {
            let seen = &values[name];
            let mut info = HParamInfo::new();
            info.set_name(name.into());
            let numbers: Vec<f64> = seen
                .iter()
                .filter_map(|v| match v {
                    HParam::Number(x) => Some(*x),
                    _ => None,
                })
                .collect();
            let all = |f: fn(&HParam) -> bool| seen.iter().all(|v| f(v));
            if numbers.len() == seen.len() {
                info.set_field_type(HParamType::DATA_TYPE_FLOAT64);
                let mut interval = tensorboard_proto::api::Interval::new();
                interval.set_min_value(numbers.iter().copied().fold(f64::INFINITY, f64::min));
                interval.set_max_value(numbers.iter().copied().fold(f64::NEG_INFINITY, f64::max));
                info.set_domain_interval(interval);
            } else if all(|v| matches!(v, HParam::Flag(_))) || all(|v| matches!(v, HParam::Text(_)))
            {
                info.set_field_type(if matches!(seen[0], HParam::Flag(_)) {
                    HParamType::DATA_TYPE_BOOL
                } else {
                    HParamType::DATA_TYPE_STRING
                });
                let mut list = protobuf::well_known_types::ListValue::new();
                list.set_values(RepeatedField::from_vec(
                    seen.iter().map(|v| hparam_value(v)).collect(),
                ));
                info.set_domain_discrete(list);
            }
            if seen.len() > 1 {
                info.mut_unknown_fields().add_varint(HPARAM_INFO_DIFFERS, 1);
            }
            info
        })
        .collect()
}

/// The file under `<experiment>/_hparams/` that holds the experiment-level record.
const HPARAMS_EVENTS: &str = "events.out.tfevents.0.opencarbon";

/// The experiment-level HParams record of an experiment directory: every hyperparameter any
/// of its runs has (`runs`, each run's `records::viewer_params`), declared with its type, its
/// domain (the values seen, or their range for numbers) and whether it differs between runs
/// (TensorBoard lists those first and shows the first few: the columns that tell runs apart,
/// not the constant ones), and the metric tags, in an event file of its own under
/// `<experiment>/_hparams/`. `report` writes it from all finished runs, so index runs and
/// shards need not agree. The file is replaced by an atomic rename, so processes that report
/// at the same time (several `run`s sharing a results directory) never fail on each other.
pub fn write_hparams_experiment(
    experiment_dir: &Path,
    runs: &[Vec<(String, HParam)>],
    metric_tags: &[&str],
) -> crate::error::Result<()> {
    use crate::error::Error;
    let dir = experiment_dir.join("_hparams");
    let tmp = super::temp_path(&dir);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    {
        let mut board = Board::open(&tmp);
        let mut exp = Experiment::new();
        exp.set_time_created_secs(now_secs());
        exp.set_hparam_infos(RepeatedField::from_vec(hparam_infos(runs)));
        exp.set_metric_infos(RepeatedField::from_vec(
            metric_tags
                .iter()
                .map(|tag| {
                    let mut n = MetricName::new();
                    n.set_tag((*tag).into());
                    let mut i = MetricInfo::new();
                    i.set_name(n);
                    i
                })
                .collect(),
        ));
        let mut d = HParamsPluginData::new();
        d.set_experiment(exp);
        board.hparams_record("_hparams_/experiment", d);
        board.close()?;
    }
    // The board names its file itself: take its bytes and place them under a fixed name.
    let written: Vec<std::path::PathBuf> = std::fs::read_dir(&tmp)
        .map_err(|e| Error::io(&tmp, e))?
        .flatten()
        .map(|e| e.path())
        .collect();
    let bytes = match written.as_slice() {
        [file] => std::fs::read(file).map_err(|e| Error::io(file, e))?,
        _ => {
            return Err(Error::Internal(format!(
                "{}: expected one event file",
                tmp.display()
            )))
        }
    };
    std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    super::atomic_write(&dir.join(HPARAMS_EVENTS), &bytes)?;
    // Event files of earlier layouts and dead processes' temps go; another live process's
    // temp (it is about to rename it) stays.
    for entry in std::fs::read_dir(&dir)
        .map_err(|e| Error::io(&dir, e))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != HPARAMS_EVENTS && (!name.contains(".tmp-") || super::is_dead_temp(&name)) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each hyperparameter is declared with its type and domain, `differs` exactly where runs
    /// disagree; model fields are namespaced by kind (`records::viewer_params`).
    #[test]
    fn hparams_are_declared_with_type_domain_and_whether_they_differ() {
        use crate::track::records::viewer_params;
        let run = |kind: &str, alpha: f64| {
            viewer_params(&[
                ("kind".to_string(), HParam::Text(kind.into())),
                ("input.image".to_string(), HParam::Flag(true)),
                ("model.alpha".to_string(), HParam::Number(alpha)),
            ])
        };
        let runs = vec![
            run("lasso", 0.1),
            run("lasso", 0.01),
            run("opencarbon", 1.0),
        ];
        let infos = hparam_infos(&runs);
        let names: Vec<&str> = infos.iter().map(|i| i.get_name()).collect();
        assert_eq!(
            names,
            ["kind", "input.image", "lasso.alpha", "opencarbon.alpha"]
        );
        let differs = |i: &HParamInfo| {
            let bytes = i.write_to_bytes().unwrap();
            // Field 7, varint: tag byte 0x38, value 1.
            bytes.windows(2).any(|w| w == [0x38, 1])
        };
        assert_eq!(
            infos.iter().map(differs).collect::<Vec<_>>(),
            [true, false, true, false]
        );
        assert_eq!(infos[0].get_field_type(), HParamType::DATA_TYPE_STRING);
        assert_eq!(infos[0].get_domain_discrete().get_values().len(), 2);
        assert_eq!(infos[1].get_field_type(), HParamType::DATA_TYPE_BOOL);
        let alpha = infos[2].get_domain_interval();
        assert_eq!((alpha.get_min_value(), alpha.get_max_value()), (0.01, 0.1));
        assert_eq!(infos[2].get_field_type(), HParamType::DATA_TYPE_FLOAT64);
    }
}
