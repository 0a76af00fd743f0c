//! The areas measures are reported for, read from the snapshot's `organisations`
//! reference table: GP practices, their PCNs, sub-ICBs and ICBs, and the region. The
//! frame of a measure's answer is the areas listed here, so an area with no row in an
//! answer is still shown (as suppressed), never left out.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use poplar_queries::measures::{AreaCode, Level, REGION_CODE};

use crate::EngineError;
use crate::catalog::SnapshotContext;

/// One area: its code, name, level and the code of the area above it (empty for the
/// region).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Area {
    pub code: String,
    pub name: String,
    pub level: Level,
    pub parent: String,
    /// The codes of the area's ancestors at every level above it.
    pub ancestors: BTreeMap<Level, String>,
}

/// Every area of a snapshot, by level, each level sorted by code.
#[derive(Debug, Default)]
pub(super) struct Geography {
    by_level: BTreeMap<Level, Vec<Area>>,
}

/// The name of the one region-level area.
const REGION_NAME: &str = "Whole region";

/// The GP practice organisation type in `organisations.org_type`.
const GP_PRACTICE: &str = "gp_practice";

impl Geography {
    /// Read the areas from the snapshot's `organisations` (a reference table every role
    /// may read; this reads it directly, not through a caller's session).
    pub async fn read(snapshot: &SnapshotContext) -> Result<Geography, EngineError> {
        if snapshot.snapshot.is_none() {
            return Ok(Geography::with_practices(Vec::new()));
        }
        let sql = format!(
            "SELECT ods_code, name, pcn, pcn_name, sub_icb, icb FROM organisations WHERE org_type = '{GP_PRACTICE}'"
        );
        let batches = snapshot.context.sql(&sql).await?.collect().await?;
        let mut practices = Vec::new();
        for batch in &batches {
            practices.extend(rows(batch)?);
        }
        Ok(Geography::with_practices(practices))
    }

    fn with_practices(practices: Vec<PracticeRow>) -> Geography {
        let mut levels: BTreeMap<Level, BTreeMap<String, Area>> = BTreeMap::new();
        let region = |level: Level| -> Area {
            Area {
                code: REGION_CODE.into(),
                name: REGION_NAME.into(),
                level,
                parent: String::new(),
                ancestors: BTreeMap::new(),
            }
        };
        levels
            .entry(Level::Region)
            .or_default()
            .insert(REGION_CODE.into(), region(Level::Region));
        for p in practices {
            let mut ancestors = BTreeMap::from([
                (Level::SubIcb, p.sub_icb.clone()),
                (Level::Icb, p.icb.clone()),
                (Level::Region, REGION_CODE.to_string()),
            ]);
            if let Some(pcn) = &p.pcn {
                ancestors.insert(Level::Pcn, pcn.clone());
                let above = ancestors.clone().split_off(&Level::SubIcb);
                levels.entry(Level::Pcn).or_default().insert(
                    pcn.clone(),
                    Area {
                        code: pcn.clone(),
                        name: p.pcn_name.clone().unwrap_or_else(|| pcn.clone()),
                        level: Level::Pcn,
                        parent: p.sub_icb.clone(),
                        ancestors: above,
                    },
                );
            }
            // A sub-ICB and an ICB are named by code (organisations carries no names for
            // them); each is listed under the level above it.
            for (level, code, name) in [
                (Level::SubIcb, &p.sub_icb, format!("Sub-ICB {}", p.sub_icb)),
                (Level::Icb, &p.icb, format!("ICB {}", p.icb)),
            ] {
                let mut above = ancestors.clone().split_off(&level);
                above.remove(&level);
                let parent = above.values().next().cloned().unwrap_or_default();
                levels.entry(level).or_default().insert(
                    code.clone(),
                    Area {
                        code: code.clone(),
                        name,
                        level,
                        parent,
                        ancestors: above,
                    },
                );
            }
            let parent = p.pcn.clone().unwrap_or_else(|| p.sub_icb.clone());
            levels.entry(Level::Practice).or_default().insert(
                p.code.clone(),
                Area {
                    code: p.code,
                    name: p.name,
                    level: Level::Practice,
                    parent,
                    ancestors,
                },
            );
        }
        Geography {
            by_level: levels
                .into_iter()
                .map(|(level, areas)| (level, areas.into_values().collect()))
                .collect(),
        }
    }

    /// The areas of `level`, all of them or those within `parent`.
    pub fn areas(&self, level: Level, parent: Option<&Area>) -> Vec<&Area> {
        self.by_level
            .get(&level)
            .into_iter()
            .flatten()
            .filter(|a| parent.is_none_or(|p| a.ancestors.get(&p.level) == Some(&p.code)))
            .collect()
    }

    /// The area with `code` at a level above `below` (the nearest such level first), for
    /// a parent given by code alone.
    pub fn parent_of_level(&self, code: &str, below: Level) -> Result<&Area, EngineError> {
        AreaCode::new(code).map_err(super::convert::bad_request)?;
        Level::ALL
            .into_iter()
            .filter(|l| *l > below)
            .find_map(|l| self.find(l, code))
            .ok_or_else(|| {
                EngineError::InvalidRequest(format!(
                    "no area above {below} level has that code: ListAreas lists them"
                ))
            })
    }

    /// The area with `code` at `level`.
    pub fn find(&self, level: Level, code: &str) -> Option<&Area> {
        self.by_level.get(&level)?.iter().find(|a| a.code == code)
    }
}

struct PracticeRow {
    code: String,
    name: String,
    pcn: Option<String>,
    pcn_name: Option<String>,
    sub_icb: String,
    icb: String,
}

fn rows(batch: &RecordBatch) -> Result<Vec<PracticeRow>, EngineError> {
    let column = |i: usize| -> Result<arrow::array::StringArray, EngineError> {
        Ok(cast(batch.column(i), &DataType::Utf8)?.as_string::<i32>().clone())
    };
    let (code, name, pcn, pcn_name, sub_icb, icb) =
        (column(0)?, column(1)?, column(2)?, column(3)?, column(4)?, column(5)?);
    let text = |a: &arrow::array::StringArray, r: usize| (!a.is_null(r)).then(|| a.value(r).to_string());
    Ok((0..batch.num_rows())
        .filter_map(|r| {
            // Areas are quoted into measure SQL; a code that is not a safe area code cannot
            // be reported on, and the loader never lands one.
            let safe = |c: &Option<String>| c.as_deref().is_none_or(|c| AreaCode::new(c).is_ok());
            let row = PracticeRow {
                code: text(&code, r)?,
                name: text(&name, r).unwrap_or_default(),
                pcn: text(&pcn, r),
                pcn_name: text(&pcn_name, r),
                sub_icb: text(&sub_icb, r)?,
                icb: text(&icb, r)?,
            };
            let codes = [
                Some(row.code.clone()),
                row.pcn.clone(),
                Some(row.sub_icb.clone()),
                Some(row.icb.clone()),
            ];
            codes.iter().all(safe).then_some(row)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn practice(code: &str, pcn: Option<&str>, sub_icb: &str, icb: &str) -> PracticeRow {
        PracticeRow {
            code: code.into(),
            name: format!("Practice {code}"),
            pcn: pcn.map(str::to_string),
            pcn_name: pcn.map(|p| format!("PCN {p}")),
            sub_icb: sub_icb.into(),
            icb: icb.into(),
        }
    }

    #[test]
    fn the_hierarchy_runs_practice_pcn_sub_icb_icb_region() {
        let g = Geography::with_practices(vec![
            practice("P1", Some("N1"), "S1", "I1"),
            practice("P2", Some("N1"), "S1", "I1"),
            practice("P3", None, "S2", "I1"),
        ]);
        let codes = |level, parent: Option<&Area>| -> Vec<String> {
            g.areas(level, parent).iter().map(|a| a.code.clone()).collect()
        };
        assert_eq!(codes(Level::Practice, None), ["P1", "P2", "P3"]);
        assert_eq!(codes(Level::Pcn, None), ["N1"]);
        assert_eq!(codes(Level::Region, None), [REGION_CODE]);
        let s1 = g.find(Level::SubIcb, "S1").expect("S1");
        assert_eq!(codes(Level::Practice, Some(s1)), ["P1", "P2"]);
        let pcn = g.parent_of_level("N1", Level::Practice).expect("N1");
        assert_eq!(pcn.level, Level::Pcn);
        assert_eq!(pcn.parent, "S1");
        assert_eq!(g.find(Level::Practice, "P3").expect("P3").parent, "S2");
        assert!(
            g.parent_of_level("P1", Level::Practice).is_err(),
            "a practice is no parent"
        );
        assert!(g.parent_of_level("bad code!", Level::Practice).is_err());
    }
}
