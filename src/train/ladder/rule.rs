//! The acceptance rule of the premise ladder (`ladder --rule <file>`): the thresholds of
//! docs/benchmark-acceptance.md as YAML, and the verdict of each threshold on a preset's
//! means.
//!
//! ```yaml
//! t0_max: 0.05               # T0 R² <= this
//! spearman_max: 0.1          # every acquisition parameter's |mean Spearman| < this
//! t1_min: 0.30               # best T1 test R² >= this
//! t2_min: 0.75               # T2 test R² >= this
//! headroom_min: 0.15         # T2 − best T1 >= this
//! morans_i: [0.5, 0.85]      # Moran's I of ln emission within [lo, hi]
//! top1_share: [0.10, 0.60]   # share of the total held by the top 1 % of tiles, [lo, hi]
//! total_factor: 3            # total within [reference / f, reference × f]
//! reference_total_mt:        # Mt CO2 / yr per preset; a preset not listed: "no reference"
//!   london6: 40.0            # an example value
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigProblem, Error, Result};

/// A validated acceptance rule (`AcceptanceRule::load` is the only way to make one from a
/// file; every field but the reference totals is required).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptanceRule {
    pub t0_max: f64,
    pub spearman_max: f64,
    pub t1_min: f64,
    pub t2_min: f64,
    pub headroom_min: f64,
    pub morans_i: [f64; 2],
    pub top1_share: [f64; 2],
    pub total_factor: f64,
    #[serde(default)]
    pub reference_total_mt: BTreeMap<String, f64>,
}

/// A rule file is a dozen lines; a megabyte is already a mistake.
const MAX_RULE_BYTES: u64 = 1 << 20;

impl AcceptanceRule {
    /// Read and validate a rule file; every problem is reported with its YAML path (exit 2).
    pub fn load(file: &Path) -> Result<AcceptanceRule> {
        let text =
            crate::data::read_capped_string(file, crate::data::InputLimit::Fixed(MAX_RULE_BYTES))
                .map_err(|m| Error::config(file, "", m))?;
        let value: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!("line {}", l.line()))
                .unwrap_or_default();
            Error::config(file, at, format!("not valid YAML: {e}"))
        })?;
        let rule: AcceptanceRule = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            Error::config(file, path, e.into_inner().to_string())
        })?;
        let problems = rule.problems();
        if problems.is_empty() {
            Ok(rule)
        } else {
            Err(Error::Config {
                file: file.to_path_buf(),
                problems,
            })
        }
    }

    fn problems(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut add = |path: String, message: String| out.push(ConfigProblem { path, message });
        for (name, v) in [
            ("t0_max", self.t0_max),
            ("spearman_max", self.spearman_max),
            ("t1_min", self.t1_min),
            ("t2_min", self.t2_min),
            ("headroom_min", self.headroom_min),
        ] {
            if !v.is_finite() {
                add(name.into(), format!("is {v}, expected a finite number"));
            }
        }
        for (name, [lo, hi]) in [("morans_i", self.morans_i), ("top1_share", self.top1_share)] {
            if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                add(
                    name.into(),
                    format!("is [{lo}, {hi}], expected [lo, hi] with lo <= hi"),
                );
            }
        }
        if !(self.total_factor.is_finite() && self.total_factor >= 1.0) {
            add(
                "total_factor".into(),
                format!("is {}, expected a number >= 1", self.total_factor),
            );
        }
        for (preset, v) in &self.reference_total_mt {
            if !(v.is_finite() && *v > 0.0) {
                add(
                    format!("reference_total_mt.{preset}"),
                    format!("is {v}, expected Mt CO2 / yr > 0"),
                );
            }
        }
        out
    }
}

/// How a preset fares on one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
    /// The statistic could not be computed (no runs of a kind, an empty part).
    Undefined,
    /// The rule holds no reference total for the preset.
    NoReference,
}

/// One threshold's verdict on a preset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// The rule's key (`t0_max`, `morans_i`, ...).
    pub rule: &'static str,
    /// What is compared, in words with the bound (`T0 R² <= 0.05`).
    pub test: String,
    pub value: f64,
    pub outcome: Outcome,
}

/// A preset's means that the rule judges.
#[derive(Debug, Clone, Copy)]
pub struct Judged {
    pub t0_r2: f64,
    /// The largest |mean Spearman| over the acquisition parameters.
    pub max_abs_spearman: f64,
    pub best_t1_test_r2: f64,
    pub t2_test_r2: f64,
    pub morans_i: f64,
    pub top1_share: f64,
    pub total_mt: f64,
}

impl AcceptanceRule {
    /// The eight verdicts of docs/benchmark-acceptance.md, in its order.
    pub fn judge(&self, preset: &str, m: &Judged) -> Vec<Verdict> {
        let check = |rule, test: String, value: f64, ok: bool| Verdict {
            rule,
            test,
            value,
            outcome: if value.is_nan() {
                Outcome::Undefined
            } else if ok {
                Outcome::Pass
            } else {
                Outcome::Fail
            },
        };
        let within = |v: f64, [lo, hi]: [f64; 2]| lo <= v && v <= hi;
        let headroom = m.t2_test_r2 - m.best_t1_test_r2;
        let mut out = vec![
            check(
                "t0_max",
                format!("T0 R² <= {}", self.t0_max),
                m.t0_r2,
                m.t0_r2 <= self.t0_max,
            ),
            check(
                "spearman_max",
                format!("max |Spearman| < {}", self.spearman_max),
                m.max_abs_spearman,
                m.max_abs_spearman < self.spearman_max,
            ),
            check(
                "t1_min",
                format!("best T1 >= {}", self.t1_min),
                m.best_t1_test_r2,
                m.best_t1_test_r2 >= self.t1_min,
            ),
            check(
                "t2_min",
                format!("T2 >= {}", self.t2_min),
                m.t2_test_r2,
                m.t2_test_r2 >= self.t2_min,
            ),
            check(
                "headroom_min",
                format!("T2 − best T1 >= {}", self.headroom_min),
                headroom,
                headroom >= self.headroom_min,
            ),
            check(
                "morans_i",
                format!("Moran's I in [{}, {}]", self.morans_i[0], self.morans_i[1]),
                m.morans_i,
                within(m.morans_i, self.morans_i),
            ),
            check(
                "top1_share",
                format!(
                    "top-1 % share in [{}, {}]",
                    self.top1_share[0], self.top1_share[1]
                ),
                m.top1_share,
                within(m.top1_share, self.top1_share),
            ),
        ];
        let f = self.total_factor;
        out.push(match self.reference_total_mt.get(preset) {
            Some(&reference) => check(
                "total_factor",
                format!("total within ×/÷ {f} of {reference} Mt"),
                m.total_mt,
                within(m.total_mt, [reference / f, reference * f]),
            ),
            None => Verdict {
                rule: "total_factor",
                test: format!("total within ×/÷ {f} of the reference"),
                value: m.total_mt,
                outcome: Outcome::NoReference,
            },
        });
        out
    }
}

/// A preset's overall verdict: accepted when every threshold passes; not accepted when one
/// fails or cannot be computed; otherwise (a reference total missing) incomplete.
pub fn accepted(verdicts: &[Verdict]) -> &'static str {
    if verdicts
        .iter()
        .any(|v| matches!(v.outcome, Outcome::Fail | Outcome::Undefined))
    {
        "no"
    } else if verdicts.iter().all(|v| v.outcome == Outcome::Pass) {
        "yes"
    } else {
        "incomplete"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = "t0_max: 0.05\nspearman_max: 0.1\nt1_min: 0.30\nt2_min: 0.75\nheadroom_min: 0.15\nmorans_i: [0.5, 0.85]\ntop1_share: [0.10, 0.60]\ntotal_factor: 3\nreference_total_mt:\n  london6: 40.0\n";

    fn load(text: &str) -> Result<AcceptanceRule> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("acceptance.yaml");
        std::fs::write(&f, text).unwrap();
        AcceptanceRule::load(&f)
    }

    fn good() -> Judged {
        Judged {
            t0_r2: 0.01,
            max_abs_spearman: 0.05,
            best_t1_test_r2: 0.4,
            t2_test_r2: 0.8,
            morans_i: 0.7,
            top1_share: 0.2,
            total_mt: 30.0,
        }
    }

    #[test]
    fn a_rule_file_reads_and_bad_ones_name_their_fields() {
        let rule = load(RULE).unwrap();
        assert_eq!(rule.morans_i, [0.5, 0.85]);
        assert_eq!(rule.reference_total_mt["london6"], 40.0);
        let e = load(&RULE.replace("t0_max", "t0_maks")).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("unknown field `t0_maks`"), "{e}");
        let e = load(&RULE.replace("t2_min: 0.75\n", "")).unwrap_err();
        assert!(e.to_string().contains("missing field `t2_min`"), "{e}");
        let e = load(
            &RULE
                .replace("[0.5, 0.85]", "[0.85, 0.5]")
                .replace("total_factor: 3", "total_factor: 0.5")
                .replace("40.0", "-1"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("3 problems"), "{e}");
        for field in [
            "morans_i: is [0.85, 0.5]",
            "total_factor: is 0.5",
            "reference_total_mt.london6: is -1",
        ] {
            assert!(e.contains(field), "{field}: {e}");
        }
        let e = load(&RULE.replace("morans_i: [0.5, 0.85]", "morans_i: 0.5")).unwrap_err();
        assert!(e.to_string().contains("morans_i: invalid type"), "{e}");
    }

    #[test]
    fn every_threshold_passes_fails_or_is_undefined_on_its_own() {
        let rule = load(RULE).unwrap();
        let outcomes = |m: &Judged, preset: &str| -> Vec<Outcome> {
            rule.judge(preset, m).iter().map(|v| v.outcome).collect()
        };
        assert!(outcomes(&good(), "london6")
            .iter()
            .all(|o| *o == Outcome::Pass));
        assert_eq!(accepted(&rule.judge("london6", &good())), "yes");
        let no_reference = rule.judge("beijing6", &good());
        assert_eq!(no_reference[7].outcome, Outcome::NoReference);
        assert_eq!(accepted(&no_reference), "incomplete");
        // One statistic at a time just outside its bound fails that threshold alone.
        type Change = fn(&mut Judged);
        let cases: [(usize, Change); 9] = [
            (0, |m| m.t0_r2 = 0.051),
            (1, |m| m.max_abs_spearman = 0.1),
            (2, |m| m.best_t1_test_r2 = 0.29),
            (3, |m| m.t2_test_r2 = 0.74),
            (4, |m| m.best_t1_test_r2 = 0.66),
            (5, |m| m.morans_i = 0.86),
            (6, |m| m.top1_share = 0.09),
            (7, |m| m.total_mt = 121.0),
            (7, |m| m.total_mt = 13.0),
        ];
        for (k, change) in cases {
            let mut m = good();
            change(&mut m);
            let o = outcomes(&m, "london6");
            for (i, outcome) in o.iter().enumerate() {
                let expected = if i == k { Outcome::Fail } else { Outcome::Pass };
                assert_eq!(*outcome, expected, "case {k}, threshold {i}");
            }
            assert_eq!(accepted(&rule.judge("london6", &m)), "no");
        }
        let mut m = good();
        m.t2_test_r2 = f64::NAN;
        assert_eq!(outcomes(&m, "london6")[3], Outcome::Undefined);
        assert_eq!(accepted(&rule.judge("london6", &m)), "no");
    }
}
