//! The measures service (`poplar.measures.v1`): what population health teams read
//! instead of writing SQL, served on the Flight SQL port to the same users and tokens,
//! through the same request path. Every measure request is one query per period, planned
//! under the caller's policy, released by disclosure control (with every total beside its
//! breakdown, so secondary suppression covers them), audited with the measure's id and
//! parameters; values and intervals are then computed from the released counts only.
//!
//! - [`convert`]: wire enums and definitions;
//! - [`geography`]: the areas, from `organisations`;
//! - [`released`]: a measure request through the gate, read back as marked cells;
//! - [`values`]: the complete frame, values, intervals and comparisons;
//! - [`web`]: the dashboard's files, served beside the service.

mod convert;
mod geography;
mod released;
mod values;
pub mod web;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use poplar_proto::measures::v1 as pb;
use poplar_proto::measures::v1::measures_service_server::MeasuresService;
use poplar_queries::measures::stats::{self, Confidence, Polarity};
use poplar_queries::measures::{self, AreaCode, Level, Measure, Period, PeriodKind, Request, ValueType};
use tonic::{Response, Status};

pub use poplar_proto::measures::v1::measures_service_server::MeasuresServiceServer;

use crate::EngineError;
use crate::audit::{AuditRequest, bounded};
use crate::catalog::SnapshotContext;
use crate::gate::Gate;
use crate::identity::Principal;
use geography::{Area, Geography};

/// The most periods one trend may cover (three years of months): each is a query.
pub const MAX_TREND_PERIODS: usize = 36;
/// How many of one call's queries run at once (a trend's periods, a profile's measures).
const CONCURRENT_QUERIES: usize = 2;
/// Points along a funnel's limit curves.
const FUNNEL_POINTS: usize = 60;
/// How far back `ListPeriods` offers periods before the data's reference date.
const YEARS_LISTED: i32 = 5;

/// The service: transport over the gate.
#[derive(Debug)]
pub struct PoplarMeasures {
    gate: Arc<Gate>,
    /// The areas of the snapshot last read, by snapshot id.
    geography: Mutex<Option<(Option<i64>, Arc<Geography>)>>,
    /// Released answers already given (see [`released::Answers`]).
    answers: Mutex<released::Answers>,
}

impl PoplarMeasures {
    pub fn new(gate: Arc<Gate>) -> Self {
        Self {
            gate,
            geography: Mutex::new(None),
            answers: Mutex::new(released::Answers::default()),
        }
    }

    async fn principal<T>(&self, request: &tonic::Request<T>, rpc: &str) -> Result<Principal, Status> {
        self.gate
            .authenticate(crate::flight::bearer(request), rpc)
            .await
            .map_err(Status::from)
    }

    async fn geography(&self, snapshot: &SnapshotContext) -> Result<Arc<Geography>, EngineError> {
        let id = snapshot.snapshot_id();
        if let Some((cached, geography)) = &*self.geography.lock().unwrap_or_else(|p| p.into_inner())
            && *cached == id
        {
            return Ok(geography.clone());
        }
        let geography = Arc::new(Geography::read(snapshot).await?);
        *self.geography.lock().unwrap_or_else(|p| p.into_inner()) = Some((id, geography.clone()));
        Ok(geography)
    }

    /// The disclosure policy as the caller's answers get it, with the footnote a `*` points to.
    fn policy(&self, principal: &Principal) -> pb::DisclosurePolicy {
        match self.gate.policy() {
            Some(policy) if !principal.is_steward() => {
                let noised = policy.noised(principal.role);
                let noise = if noised {
                    " and carry a small, repeatable random adjustment"
                } else {
                    ""
                };
                pb::DisclosurePolicy {
                    min_group_size: policy.min_people as u32,
                    round_to: policy.round_to as u32,
                    noise: noised,
                    footnote: format!(
                        "* Suppressed to protect confidentiality: a group of fewer than {} people or a count from 1 to {} (primary), or a figure withheld so that a suppressed one cannot be worked out from a total (secondary). Counts are rounded to a multiple of {}{noise}; values and confidence intervals are computed from the released counts.",
                        policy.min_people, policy.suppress_up_to, policy.round_to
                    ),
                }
            }
            // Stewards read true counts: nothing is suppressed, so nothing may be
            // published from this view.
            Some(_) | None => pb::DisclosurePolicy {
                min_group_size: 0,
                round_to: 1,
                noise: false,
                footnote: "Steward view: exact counts with no disclosure control applied. Not for publication.".into(),
            },
        }
    }

    /// Check a values or funnel request before any query runs.
    async fn check(
        &self,
        snapshot: &SnapshotContext,
        wanted: Wanted<'_>,
    ) -> Result<(Asked, Arc<Geography>), EngineError> {
        let measure = measure(wanted.measure_id)?;
        let level = convert::level(wanted.level)?;
        let geography = self.geography(snapshot).await?;
        let parent = parent(&geography, level, wanted.parent_code)?;
        let from = if wanted.from.is_empty() {
            latest_year(snapshot)?
        } else {
            period(wanted.from)?
        };
        let to = if wanted.to.is_empty() { from } else { period(wanted.to)? };
        let periods = Period::range(from, to).map_err(convert::bad_request)?;
        if periods.len() > MAX_TREND_PERIODS {
            return Err(EngineError::InvalidRequest(format!(
                "a trend may cover at most {MAX_TREND_PERIODS} periods"
            )));
        }
        let breakdown = wanted
            .breakdown
            .iter()
            .map(|d| convert::dimension(*d))
            .collect::<Result<Vec<_>, _>>()?;
        let within = geography
            .areas(level, parent.as_ref())
            .iter()
            .map(|a| AreaCode::new(&a.code).map_err(convert::bad_request))
            .collect::<Result<Vec<_>, _>>()?;
        if parent.is_some() && within.is_empty() {
            return Err(EngineError::InvalidRequest(format!(
                "that area has no areas of {level} level within it"
            )));
        }
        let asked = Asked {
            measure,
            data_as_of: snapshot.reference_date,
            level,
            within,
            parent,
            periods,
            breakdown,
        };
        // The SQL generator checks breakdowns and parents; check before any query.
        measure.sql(&asked.request(from, true)?).map_err(convert::bad_request)?;
        Ok((asked, geography))
    }

    /// A values or funnel request from start to finish: checked (a refusal audited), one
    /// query per period through the gate, each answer shaped into the complete frame.
    async fn answer(
        &self,
        principal: &Principal,
        snapshot: &SnapshotContext,
        wanted: Wanted<'_>,
    ) -> Result<(&'static Measure, Vec<values::PeriodValues>), Status> {
        let (asked, geography) = match self.check(snapshot, wanted).await {
            Ok(checked) => checked,
            Err(e) => return Err(self.refuse(principal, wanted.measure_id, e).await),
        };
        let answers = run_periods(&self.gate, &self.answers, principal, &asked)
            .await
            .map_err(Status::from)?;
        Ok((asked.measure, asked.shape(&geography, &answers, missing(principal))))
    }

    /// Audit a measure call refused before it could run and return the error to send.
    async fn refuse(&self, principal: &Principal, id: &str, error: EngineError) -> Status {
        let audit = AuditRequest::Measure {
            id: bounded(id.to_string()),
            parameters: BTreeMap::new(),
        };
        Status::from(self.gate.request(principal, audit).fail(error).await)
    }

    async fn metadata<T, F, Fut>(&self, principal: &Principal, rpc: &str, answer: F) -> Result<Response<T>, Status>
    where
        F: FnOnce(Arc<SnapshotContext>) -> Fut,
        Fut: Future<Output = Result<T, EngineError>>,
    {
        self.gate
            .metadata(principal, rpc, answer)
            .await
            .map(Response::new)
            .map_err(Status::from)
    }
}

/// What a cell with no row means for `principal`'s answers: a steward's are exact, so
/// it is empty; anyone else's are released, so it may be a group too small to show.
fn missing(principal: &Principal) -> values::Missing {
    if principal.is_steward() {
        values::Missing::Empty
    } else {
        values::Missing::Withheld
    }
}

fn data_as_of(snapshot: &SnapshotContext) -> String {
    snapshot.reference_date.map(|d| d.to_string()).unwrap_or_default()
}

fn reference(snapshot: &SnapshotContext) -> Result<chrono::NaiveDate, EngineError> {
    snapshot
        .reference_date
        .ok_or_else(|| EngineError::InvalidRequest("no data has been loaded yet".into()))
}

fn measure(id: &str) -> Result<&'static Measure, EngineError> {
    measures::measure(id).map_err(convert::bad_request)
}

fn period(label: &str) -> Result<Period, EngineError> {
    label.parse().map_err(convert::bad_request)
}

fn area_to_wire(area: &Area) -> pb::Area {
    pb::Area {
        code: area.code.clone(),
        name: area.name.clone(),
        level: convert::level_to_wire(area.level) as i32,
        parent_code: area.parent.clone(),
    }
}

/// What a values or funnel request asks, as sent.
#[derive(Clone, Copy)]
struct Wanted<'a> {
    measure_id: &'a str,
    level: i32,
    parent_code: &'a str,
    /// A period label; empty for the latest financial year.
    from: &'a str,
    /// The last period of a trend; empty for `from` alone.
    to: &'a str,
    breakdown: &'a [i32],
}

impl<'a> From<&'a pb::GetValuesRequest> for Wanted<'a> {
    fn from(asked: &'a pb::GetValuesRequest) -> Self {
        Wanted {
            measure_id: &asked.measure_id,
            level: asked.level,
            parent_code: &asked.parent_code,
            from: &asked.from,
            to: &asked.to,
            breakdown: &asked.breakdown,
        }
    }
}

/// A funnel is one period's values, not broken down.
impl<'a> From<&'a pb::GetFunnelRequest> for Wanted<'a> {
    fn from(asked: &'a pb::GetFunnelRequest) -> Self {
        Wanted {
            measure_id: &asked.measure_id,
            level: asked.level,
            parent_code: &asked.parent_code,
            from: &asked.period,
            to: "",
            breakdown: &[],
        }
    }
}

/// What a values request asks, checked.
struct Asked {
    measure: &'static Measure,
    /// The data's reference date: no register is judged after it.
    data_as_of: Option<chrono::NaiveDate>,
    level: Level,
    parent: Option<Area>,
    /// With a parent: the codes of the whole areas recorded under it. Selecting areas by
    /// code, not people by the parent, keeps each area whole where the hierarchy does not
    /// nest (a PCN whose practices lie in two sub-ICBs).
    within: Vec<AreaCode>,
    periods: Vec<Period>,
    breakdown: Vec<measures::Dimension>,
}

impl Asked {
    /// Each period's answer as the complete frame of values and comparators.
    fn shape(
        &self,
        geography: &Geography,
        answers: &[(Period, Arc<released::Cells>)],
        missing: values::Missing,
    ) -> Vec<values::PeriodValues> {
        let areas = geography.areas(self.level, self.parent.as_ref());
        let comparator = comparator(geography, self.level, self.parent.as_ref());
        answers
            .iter()
            .map(|(period, cells)| {
                values::period_values(
                    self.measure,
                    period,
                    cells,
                    &areas,
                    comparator,
                    &self.breakdown,
                    missing,
                )
            })
            .collect()
    }

    fn request(&self, period: Period, totals: bool) -> Result<Request, EngineError> {
        let mut request = Request::new(self.level, period);
        if self.parent.as_ref().is_some_and(|p| p.level != Level::Region) {
            request.areas = self.within.clone();
        }
        request.breakdown = self.breakdown.clone();
        request.totals = totals;
        request.data_as_of = self.data_as_of;
        Ok(request)
    }
}

/// The parent area named by `code` (empty: none), checked to be above `level`.
fn parent(geography: &Geography, level: Level, code: &str) -> Result<Option<Area>, EngineError> {
    if code.is_empty() {
        return Ok(None);
    }
    geography.parent_of_level(code, level).cloned().map(Some)
}

/// The comparator of areas of `level` within `parent`: the parent, or the region; none
/// when the areas are the region itself.
fn comparator<'g>(geography: &'g Geography, level: Level, parent: Option<&'g Area>) -> Option<&'g Area> {
    if level == Level::Region {
        return None;
    }
    parent.or_else(|| geography.find(Level::Region, measures::REGION_CODE))
}

/// The period to report when none is named: the financial year holding the reference date.
fn latest_year(snapshot: &SnapshotContext) -> Result<Period, EngineError> {
    Period::containing(PeriodKind::FinancialYear, reference(snapshot)?).map_err(convert::bad_request)
}

/// One answer per period of `asked`, a few at a time, in period order.
async fn run_periods(
    gate: &Gate,
    answers: &Mutex<released::Answers>,
    principal: &Principal,
    asked: &Asked,
) -> Result<Vec<(Period, Arc<released::Cells>)>, EngineError> {
    let requests: Vec<(Period, Request)> = asked
        .periods
        .iter()
        .map(|p| Ok((*p, asked.request(*p, true)?)))
        .collect::<Result<_, EngineError>>()?;
    futures::stream::iter(requests)
        .map(|(period, request)| async move {
            let cells = released::run(gate, answers, principal, asked.measure, &request).await?;
            Ok::<_, EngineError>((period, cells))
        })
        .buffered(CONCURRENT_QUERIES)
        .try_collect()
        .await
}

#[tonic::async_trait]
impl MeasuresService for PoplarMeasures {
    async fn list_measures(
        &self,
        request: tonic::Request<pb::ListMeasuresRequest>,
    ) -> Result<Response<pb::ListMeasuresResponse>, Status> {
        let principal = self.principal(&request, "ListMeasures").await?;
        let policy = self.policy(&principal);
        self.metadata(&principal, "ListMeasures", |snapshot| async move {
            Ok(pb::ListMeasuresResponse {
                measures: measures::catalogue().iter().map(convert::definition).collect(),
                data_as_of: data_as_of(&snapshot),
                policy: Some(policy),
            })
        })
        .await
    }

    async fn list_areas(
        &self,
        request: tonic::Request<pb::ListAreasRequest>,
    ) -> Result<Response<pb::ListAreasResponse>, Status> {
        let principal = self.principal(&request, "ListAreas").await?;
        let asked = request.into_inner();
        self.metadata(&principal, "ListAreas", |snapshot| async move {
            let level = convert::level(asked.level)?;
            let geography = self.geography(&snapshot).await?;
            let parent = parent(&geography, level, &asked.parent_code)?;
            Ok(pb::ListAreasResponse {
                areas: geography
                    .areas(level, parent.as_ref())
                    .into_iter()
                    .map(area_to_wire)
                    .collect(),
            })
        })
        .await
    }

    async fn list_periods(
        &self,
        request: tonic::Request<pb::ListPeriodsRequest>,
    ) -> Result<Response<pb::ListPeriodsResponse>, Status> {
        let principal = self.principal(&request, "ListPeriods").await?;
        let asked = request.into_inner();
        self.metadata(&principal, "ListPeriods", |snapshot| async move {
            let kind = convert::period_kind(asked.r#type)?;
            let Some(reference) = snapshot.reference_date else {
                return Ok(pb::ListPeriodsResponse::default());
            };
            let last = Period::containing(kind, reference).map_err(convert::bad_request)?;
            let earliest = chrono::Datelike::with_year(&reference, chrono::Datelike::year(&reference) - YEARS_LISTED)
                .unwrap_or(reference);
            let first = Period::containing(kind, earliest).map_err(convert::bad_request)?;
            let periods = Period::range(first, last).map_err(convert::bad_request)?;
            Ok(pb::ListPeriodsResponse {
                periods: periods.iter().map(convert::period_to_wire).collect(),
                data_as_of: reference.to_string(),
            })
        })
        .await
    }

    async fn get_values(
        &self,
        request: tonic::Request<pb::GetValuesRequest>,
    ) -> Result<Response<pb::GetValuesResponse>, Status> {
        let principal = self.principal(&request, "GetValues").await?;
        let asked = request.into_inner();
        let snapshot = self.gate.snapshot();
        let (measure, shaped) = self.answer(&principal, &snapshot, Wanted::from(&asked)).await?;
        let mut response = pb::GetValuesResponse {
            measure: Some(convert::definition(measure)),
            values: Vec::new(),
            comparator: Vec::new(),
            policy: Some(self.policy(&principal)),
            data_as_of: data_as_of(&snapshot),
        };
        for out in shaped {
            response.values.extend(out.values);
            response.comparator.extend(out.comparator);
        }
        Ok(Response::new(response))
    }

    async fn get_funnel(
        &self,
        request: tonic::Request<pb::GetFunnelRequest>,
    ) -> Result<Response<pb::GetFunnelResponse>, Status> {
        let principal = self.principal(&request, "GetFunnel").await?;
        let asked = request.into_inner();
        let snapshot = self.gate.snapshot();
        let (measure, shaped) = self.answer(&principal, &snapshot, Wanted::from(&asked)).await?;
        let mut response = pb::GetFunnelResponse {
            measure: Some(convert::definition(measure)),
            policy: Some(self.policy(&principal)),
            data_as_of: data_as_of(&snapshot),
            ..Default::default()
        };
        let Some(out) = shaped.into_iter().next() else {
            return Ok(Response::new(response));
        };
        let target = out.comparator_total.and_then(|c| c.value);
        response.target = target;
        let denominators: Vec<f64> = out
            .totals
            .values()
            .filter_map(|c| c.denominator)
            .filter(|d| *d > 0.0)
            .collect();
        response.limits = funnel_limits(measure, target, &denominators);
        response.values = out
            .values
            .into_iter()
            .map(|mut v| {
                let limits = v
                    .denominator
                    .and_then(|d| funnel_limit(measure, target, d as f64, Confidence::P998));
                v.vs_comparator =
                    convert::significance_to_wire(stats::funnel_significance(v.value, limits, measure.polarity)) as i32;
                v
            })
            .collect();
        Ok(Response::new(response))
    }

    async fn get_area_profile(
        &self,
        request: tonic::Request<pb::GetAreaProfileRequest>,
    ) -> Result<Response<pb::GetAreaProfileResponse>, Status> {
        let principal = self.principal(&request, "GetAreaProfile").await?;
        let asked = request.into_inner();
        let snapshot = self.gate.snapshot();
        let checked = async {
            let level = convert::level(asked.level)?;
            let geography = self.geography(&snapshot).await?;
            AreaCode::new(&asked.area_code).map_err(convert::bad_request)?;
            let area = geography
                .find(level, &asked.area_code)
                .cloned()
                .ok_or_else(|| EngineError::InvalidRequest("no area of that level has that code".into()))?;
            let period = if asked.period.is_empty() {
                latest_year(&snapshot)?
            } else {
                period(&asked.period)?
            };
            Ok((area, period, geography))
        }
        .await;
        let (area, period, geography) = match checked {
            Ok(checked) => checked,
            Err(e) => return Err(self.refuse(&principal, "profile", e).await),
        };
        // Every measure for every area of the level (its peers) over the region.
        let peers = geography.areas(area.level, None);
        let region = comparator(&geography, area.level, None);
        let rows = profile_rows(
            (&self.gate, &self.answers),
            &principal,
            &area,
            &peers,
            region,
            (period, snapshot.reference_date),
        )
        .await
        .map_err(Status::from)?;
        Ok(Response::new(pb::GetAreaProfileResponse {
            area: Some(area_to_wire(&area)),
            period: Some(convert::period_to_wire(&period)),
            rows,
            policy: Some(self.policy(&principal)),
            data_as_of: data_as_of(&snapshot),
        }))
    }
}

/// Every measure for every area of `area`'s level (its peers) against the region, a few
/// at a time, in catalogue order.
async fn profile_rows(
    (gate, answers): (&Gate, &Mutex<released::Answers>),
    principal: &Principal,
    area: &Area,
    peers: &[&Area],
    region: Option<&Area>,
    (period, data_as_of): (Period, Option<chrono::NaiveDate>),
) -> Result<Vec<pb::ProfileRow>, EngineError> {
    // By index: a stream of borrowed items trips the compiler's higher-ranked lifetime
    // check inside the service's boxed futures.
    let catalogue = measures::catalogue();
    futures::stream::iter(0..catalogue.len())
        .map(|i| async move {
            let measure = &catalogue[i];
            let mut request = Request::new(area.level, period).with_totals();
            request.data_as_of = data_as_of;
            let cells = released::run(gate, answers, principal, measure, &request).await?;
            let out = values::period_values(measure, &period, &cells, peers, region, &[], missing(principal));
            Ok::<_, EngineError>(profile_row(measure, area, out))
        })
        .buffered(CONCURRENT_QUERIES)
        .try_collect()
        .await
}

fn profile_row(measure: &Measure, area: &Area, out: values::PeriodValues) -> pb::ProfileRow {
    let value = out.values.iter().find(|v| v.area_code == area.code).cloned();
    let comparator = out.comparator.first().cloned();
    let mut released: Vec<f64> = out.totals.values().filter_map(|c| c.value).collect();
    released.sort_by(f64::total_cmp);
    let (low, high) = (released.first().copied(), released.last().copied());
    let (worst, best) = match measure.polarity {
        Polarity::HighIsGood => (low, high),
        // With no judgement, the spine runs low to high.
        Polarity::LowIsGood => (high, low),
        Polarity::NoJudgement => (low, high),
    };
    pb::ProfileRow {
        measure: Some(convert::definition(measure)),
        value,
        comparator,
        worst,
        q25: quantile(&released, 0.25),
        q75: quantile(&released, 0.75),
        best,
    }
}

/// The `q` quantile of sorted values (linear between closest ranks, as R's type 7).
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let position = q * (sorted.len() - 1) as f64;
    let (below, above) = (position.floor() as usize, position.ceil() as usize);
    let fraction = position - below as f64;
    Some(sorted[below] + (sorted[above] - sorted[below]) * fraction)
}

/// A funnel's control limits at one denominator, for a measure that has them.
fn funnel_limit(
    measure: &Measure,
    target: Option<f64>,
    denominator: f64,
    level: Confidence,
) -> Option<stats::Interval> {
    let target = target?;
    match measure.value_type {
        ValueType::Proportion => {
            let limits = stats::proportion_funnel(target / measure.multiplier, denominator, level)?;
            Some(stats::Interval {
                lower: limits.lower * measure.multiplier,
                upper: limits.upper * measure.multiplier,
            })
        }
        ValueType::CrudeRate | ValueType::DirectlyStandardisedRate => {
            stats::rate_funnel(target, denominator, measure.multiplier, level)
        }
        // A count or a cost has no funnel: no sampling model ties it to its denominator.
        ValueType::Count | ValueType::CostPerHead => None,
    }
}

/// Limit curves along a grid of denominators spanning the areas' (log-spaced).
fn funnel_limits(measure: &Measure, target: Option<f64>, denominators: &[f64]) -> Vec<pb::FunnelLimit> {
    let low = denominators.iter().copied().fold(f64::INFINITY, f64::min);
    let high = denominators.iter().copied().fold(0.0, f64::max);
    if !(low.is_finite() && high >= low && low > 0.0) {
        return Vec::new();
    }
    let (low, high) = ((low * 0.8).max(1.0).ln(), (high * 1.2).ln());
    (0..FUNNEL_POINTS)
        .filter_map(|i| {
            let n = (low + (high - low) * i as f64 / (FUNNEL_POINTS - 1) as f64).exp();
            let at = |level| {
                funnel_limit(measure, target, n, level).map(|l| pb::Interval {
                    lower: l.lower,
                    upper: l.upper,
                })
            };
            Some(pb::FunnelLimit {
                denominator: n,
                limit95: Some(at(Confidence::P95)?),
                limit998: Some(at(Confidence::P998)?),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_type_7() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.25), Some(2.0));
        assert_eq!(quantile(&v, 0.75), Some(4.0));
        assert_eq!(quantile(&[7.0], 0.25), Some(7.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn funnel_limits_narrow_as_denominators_grow() {
        let m = measures::measure("prevalence_diabetes").expect("measure");
        let limits = funnel_limits(m, Some(7.0), &[500.0, 20_000.0]);
        assert_eq!(limits.len(), FUNNEL_POINTS);
        let width = |l: &pb::FunnelLimit| {
            let i = l.limit95.expect("95");
            i.upper - i.lower
        };
        assert!(width(&limits[0]) > width(&limits[FUNNEL_POINTS - 1]));
        for l in &limits {
            let (a, b) = (l.limit95.expect("95"), l.limit998.expect("99.8"));
            assert!(b.lower <= a.lower && a.upper <= b.upper, "99.8% limits lie outside 95%");
            assert!(a.lower < 7.0 && 7.0 < a.upper);
        }
        let cost = measures::catalogue()
            .iter()
            .find(|m| m.value_type == ValueType::CostPerHead)
            .expect("a cost measure");
        assert!(funnel_limits(cost, Some(100.0), &[500.0]).is_empty());
    }
}
