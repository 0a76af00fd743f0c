//! The measures service over gRPC, from the generated Rust client against a served
//! synthetic region: every RPC as a steward and as a commissioner; the complete frame with
//! suppressed cells marked (primary and secondary) and never absent or 0; values and
//! intervals recomputed from the released counts; the same request, the same answer;
//! bad requests refused and audited; and the dashboard's files over plain HTTP/1.1.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use poplar_engine::audit::{self, AuditRequest, Outcome};
use poplar_proto::measures::v1 as pb;
use poplar_proto::measures::v1::measures_service_client::MeasuresServiceClient;
use poplar_queries::measures::{catalogue, stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

use crate::common::{serve_landed, synthetic_region};

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {token}").parse().expect("header");
    request.metadata_mut().insert("authorization", value);
    request
}

fn suppression(v: &pb::Value) -> pb::Suppression {
    pb::Suppression::try_from(v.suppression).expect("suppression")
}

/// A released value's value and intervals are exactly those of its released counts.
fn assert_from_released_counts(v: &pb::Value, multiplier: f64) {
    let (n, d) = (
        v.numerator.expect("numerator") as f64,
        v.denominator.expect("denominator") as f64,
    );
    let expected = stats::proportion(n.min(d), d, multiplier).expect("estimate");
    assert_eq!(v.value, Some(expected.value), "{v:?}");
    let ci = v.ci95.expect("ci95");
    assert_eq!((ci.lower, ci.upper), (expected.ci95.lower, expected.ci95.upper));
    let ci = v.ci998.expect("ci998");
    assert_eq!((ci.lower, ci.upper), (expected.ci998.lower, expected.ci998.upper));
}

async fn http_get(addr: SocketAddr, path: &str) -> (String, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("headers end");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    (head, response[split + 4..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_measures_service_serves_every_rpc_with_disclosure_control() {
    let dir = tempfile::tempdir().expect("tempdir");
    synthetic_region(dir.path()).await;
    // A researcher too: noised like a commissioner, so the same released answers, but
    // asked afresh rather than given again from the service's copy of the answer.
    let researcher =
        poplar_engine::auth::UsersFile::add(&dir.path().join("users.toml"), "rae", poplar_engine::Role::Researcher)
            .expect("researcher");
    let (store, running, steward, commissioner) = serve_landed(dir.path(), Default::default()).await;
    let addr = running.addr;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut client = MeasuresServiceClient::new(channel);

    // No token, a wrong token: unauthenticated.
    let refused = client
        .list_measures(pb::ListMeasuresRequest {})
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let refused = client
        .list_measures(with_token(pb::ListMeasuresRequest {}, "ppl_wrong"))
        .await
        .expect_err("wrong token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    // The catalogue, the policy and its footnote, the data's date.
    let listed = client
        .list_measures(with_token(pb::ListMeasuresRequest {}, &commissioner))
        .await
        .expect("measures")
        .into_inner();
    assert_eq!(listed.measures.len(), catalogue().len());
    let policy = listed.policy.expect("policy");
    assert!(
        policy.noise && policy.min_group_size >= 8 && policy.round_to >= 5,
        "{policy:?}"
    );
    assert!(policy.footnote.starts_with('*'), "{}", policy.footnote);
    assert!(!listed.data_as_of.is_empty());

    // Areas: the hierarchy from organisations.
    let areas = |level: pb::AreaLevel, parent: &str| {
        let mut client = client.clone();
        let (token, parent) = (commissioner.clone(), parent.to_string());
        async move {
            client
                .list_areas(with_token(
                    pb::ListAreasRequest {
                        level: level as i32,
                        parent_code: parent,
                    },
                    &token,
                ))
                .await
                .expect("areas")
                .into_inner()
                .areas
        }
    };
    let practices = areas(pb::AreaLevel::Practice, "").await;
    assert_eq!(practices.len(), 20);
    let icbs = areas(pb::AreaLevel::Icb, "").await;
    assert!(!icbs.is_empty());
    let within = areas(pb::AreaLevel::Practice, &icbs[0].code).await;
    assert!(!within.is_empty() && within.len() <= practices.len());
    let region = areas(pb::AreaLevel::Region, "").await;
    let pcns = areas(pb::AreaLevel::Pcn, "").await;
    assert_eq!(region.len(), 1);

    // Periods, newest last, ending with the one holding the data's date.
    let periods = client
        .list_periods(with_token(
            pb::ListPeriodsRequest {
                r#type: pb::PeriodType::FinancialYear as i32,
            },
            &commissioner,
        ))
        .await
        .expect("periods")
        .into_inner();
    let last = periods.periods.last().expect("a period");
    assert!(
        last.start <= periods.data_as_of && periods.data_as_of <= last.end,
        "{periods:?}"
    );

    let values = |token: &str, breakdown: Vec<pb::Dimension>, level: pb::AreaLevel| {
        let mut client = client.clone();
        let token = token.to_string();
        async move {
            client
                .get_values(with_token(
                    pb::GetValuesRequest {
                        measure_id: "prevalence_hypertension".into(),
                        level: level as i32,
                        breakdown: breakdown.into_iter().map(|d| d as i32).collect(),
                        ..Default::default()
                    },
                    &token,
                ))
                .await
        }
    };

    // A steward: exact counts, nothing suppressed, values from the counts.
    let exact = values(&steward, vec![], pb::AreaLevel::Practice)
        .await
        .expect("steward values")
        .into_inner();
    let multiplier = exact.measure.as_ref().expect("definition").multiplier;
    assert_eq!(exact.values.len(), 20, "one value per practice");
    assert_eq!(exact.comparator.len(), 1, "the region");
    for v in &exact.values {
        assert_eq!(suppression(v), pb::Suppression::None);
        assert_from_released_counts(v, multiplier);
    }
    let total: i64 = exact.values.iter().map(|v| v.denominator.expect("d")).sum();
    assert_eq!(
        exact.comparator[0].denominator,
        Some(total),
        "the region is every practice together"
    );

    // Within a parent, each area is whole: a PCN's denominator is the same asked within its
    // sub-ICB as asked across the region (where the hierarchy does not nest, a PCN's
    // practices can lie in two sub-ICBs).
    let mut steward_client = client.clone();
    let across = steward_client
        .get_values(with_token(
            pb::GetValuesRequest {
                measure_id: "prevalence_hypertension".into(),
                level: pb::AreaLevel::Pcn as i32,
                ..Default::default()
            },
            &steward,
        ))
        .await
        .expect("PCNs")
        .into_inner();
    let within_parent = steward_client
        .get_values(with_token(
            pb::GetValuesRequest {
                measure_id: "prevalence_hypertension".into(),
                level: pb::AreaLevel::Pcn as i32,
                parent_code: pcns[0].parent_code.clone(),
                ..Default::default()
            },
            &steward,
        ))
        .await
        .expect("PCNs within a sub-ICB")
        .into_inner();
    assert!(!within_parent.values.is_empty());
    for v in &within_parent.values {
        let whole = across
            .values
            .iter()
            .find(|a| a.area_code == v.area_code)
            .expect("same PCN");
        assert_eq!(v.denominator, whole.denominator, "{} is whole", v.area_code);
    }

    // A commissioner, by age band and sex: the complete frame, small cells marked.
    let broken = values(
        &commissioner,
        vec![pb::Dimension::AgeBand, pb::Dimension::Sex],
        pb::AreaLevel::Practice,
    )
    .await
    .expect("commissioner values")
    .into_inner();
    // 20 practices × (20 bands × 4 sexes + 20 band totals + 4 sex totals + 1 total).
    assert_eq!(broken.values.len(), 20 * (20 * 4 + 20 + 4 + 1));
    assert_eq!(broken.comparator.len(), 20 * 4 + 20 + 4 + 1);
    let keys: BTreeSet<(String, Vec<(i32, String)>)> = broken
        .values
        .iter()
        .map(|v| {
            let categories = v.categories.iter().map(|c| (c.dimension, c.code.clone())).collect();
            (v.area_code.clone(), categories)
        })
        .collect();
    assert_eq!(keys.len(), broken.values.len(), "every cell once");
    let mut marks = std::collections::BTreeMap::new();
    for v in broken.values.iter().chain(&broken.comparator) {
        *marks.entry(suppression(v)).or_insert(0) += 1;
        match suppression(v) {
            pb::Suppression::None => {
                let n = v.numerator.expect("a released cell has its counts");
                assert_eq!(n % 5, 0, "released counts are rounded: {v:?}");
                assert_eq!(v.denominator.expect("d") % 5, 0);
                assert_from_released_counts(v, multiplier);
            }
            pb::Suppression::Primary | pb::Suppression::Secondary => {
                // No value; a count shown beside it is one the engine released on its own.
                assert_eq!((v.value, v.ci95, v.ci998), (None, None, None), "{v:?}");
                assert!(v.numerator.is_none() || v.denominator.is_none(), "{v:?}");
                for count in [v.numerator, v.denominator].into_iter().flatten() {
                    assert_eq!(count % 5, 0, "{v:?}");
                }
                assert_eq!(v.vs_comparator, pb::Significance::NotCompared as i32);
            }
            pb::Suppression::NotPublished => panic!("a proportion is always published: {v:?}"),
        }
    }
    assert!(
        marks.get(&pb::Suppression::Primary).copied().unwrap_or(0) > 0,
        "{marks:?}"
    );
    assert!(
        marks.get(&pb::Suppression::Secondary).copied().unwrap_or(0) > 0,
        "{marks:?}"
    );
    assert!(marks.get(&pb::Suppression::None).copied().unwrap_or(0) > 0, "{marks:?}");
    // Significance is against the comparator's value for the same categories.
    let region_total = broken
        .comparator
        .iter()
        .find(|c| c.categories.is_empty())
        .and_then(|c| c.value)
        .expect("region total");
    for v in broken
        .values
        .iter()
        .filter(|v| v.categories.is_empty() && v.value.is_some())
    {
        let ci = v.ci95.expect("ci");
        let expected = stats::compare(
            Some(stats::Interval {
                lower: ci.lower,
                upper: ci.upper,
            }),
            Some(region_total),
            stats::Polarity::NoJudgement,
        );
        let wire = match expected {
            stats::Significance::Similar => pb::Significance::Similar,
            stats::Significance::Higher => pb::Significance::Higher,
            stats::Significance::Lower => pb::Significance::Lower,
            other => panic!("prevalence passes no judgement: {other:?}"),
        };
        assert_eq!(v.vs_comparator, wire as i32, "{v:?}");
    }
    // The same request, the same answer: asked again by the commissioner (given again,
    // and audited) and afresh by a researcher (sticky noise, suppressions chosen in key
    // order, so the engine releases the same cells).
    let entries_before = audit::entries(&store).await.expect("entries").len();
    let again = values(
        &commissioner,
        vec![pb::Dimension::AgeBand, pb::Dimension::Sex],
        pb::AreaLevel::Practice,
    )
    .await
    .expect("again")
    .into_inner();
    assert_eq!(again.values, broken.values);
    let entries_after = audit::entries(&store).await.expect("entries");
    assert_eq!(
        entries_after.len(),
        entries_before + 1,
        "an answer given again is audited once"
    );
    let last = &entries_after.last().expect("entry").record;
    assert_eq!((last.user.as_str(), &last.outcome), ("cam", &Outcome::Answered));
    let afresh = values(
        &researcher,
        vec![pb::Dimension::AgeBand, pb::Dimension::Sex],
        pb::AreaLevel::Practice,
    )
    .await
    .expect("researcher")
    .into_inner();
    let again = afresh;
    let differences: Vec<_> = again
        .values
        .iter()
        .zip(&broken.values)
        .filter(|(a, b)| a != b)
        .take(5)
        .collect();
    assert!(differences.is_empty(), "{differences:#?}");

    // A trend: one value per area per period.
    let mut trend_client = client.clone();
    let quarters = client
        .list_periods(with_token(
            pb::ListPeriodsRequest {
                r#type: pb::PeriodType::Quarter as i32,
            },
            &commissioner,
        ))
        .await
        .expect("quarters")
        .into_inner()
        .periods;
    let (from, to) = (&quarters[quarters.len() - 3].label, &quarters[quarters.len() - 1].label);
    let trend = trend_client
        .get_values(with_token(
            pb::GetValuesRequest {
                measure_id: "emergency_admissions".into(),
                level: pb::AreaLevel::Icb as i32,
                from: from.clone(),
                to: to.clone(),
                ..Default::default()
            },
            &commissioner,
        ))
        .await
        .expect("trend")
        .into_inner();
    assert_eq!(trend.values.len(), icbs.len() * 3);
    assert_eq!(trend.comparator.len(), 3);

    // A funnel: limits around the target, which is the region's value.
    let funnel = client
        .get_funnel(with_token(
            pb::GetFunnelRequest {
                measure_id: "prevalence_hypertension".into(),
                level: pb::AreaLevel::Practice as i32,
                ..Default::default()
            },
            &commissioner,
        ))
        .await
        .expect("funnel")
        .into_inner();
    let target = funnel.target.expect("target");
    assert_eq!(funnel.values.len(), 20);
    assert!(!funnel.limits.is_empty());
    for l in &funnel.limits {
        let (a, b) = (l.limit95.expect("95"), l.limit998.expect("99.8"));
        assert!(b.lower <= a.lower && a.lower <= target && target <= a.upper && a.upper <= b.upper);
    }

    // An area profile: every measure for one practice.
    let profile = client
        .get_area_profile(with_token(
            pb::GetAreaProfileRequest {
                area_code: practices[0].code.clone(),
                level: pb::AreaLevel::Practice as i32,
                period: String::new(),
            },
            &commissioner,
        ))
        .await
        .expect("profile")
        .into_inner();
    assert_eq!(profile.rows.len(), catalogue().len());
    for row in &profile.rows {
        let value = row.value.as_ref().expect("the area's value");
        assert_eq!(value.area_code, practices[0].code);
        if let (Some(q25), Some(q75)) = (row.q25, row.q75) {
            assert!(q25 <= q75);
        }
    }

    // Bad requests: refused with a clear message that echoes nothing, and audited.
    let unknown = client
        .get_values(with_token(
            pb::GetValuesRequest {
                measure_id: "<no such measure>".into(),
                level: pb::AreaLevel::Practice as i32,
                ..Default::default()
            },
            &commissioner,
        ))
        .await
        .expect_err("unknown measure");
    assert_eq!(unknown.code(), tonic::Code::InvalidArgument);
    assert!(!unknown.message().contains("<no such"), "{}", unknown.message());
    let three = client
        .get_values(with_token(
            pb::GetValuesRequest {
                measure_id: "gp_contacts".into(),
                level: pb::AreaLevel::Practice as i32,
                breakdown: vec![1, 2, 3],
                ..Default::default()
            },
            &commissioner,
        ))
        .await
        .expect_err("three breakdowns");
    assert_eq!(three.code(), tonic::Code::InvalidArgument);
    let no_level = client
        .get_values(with_token(
            pb::GetValuesRequest {
                measure_id: "gp_contacts".into(),
                ..Default::default()
            },
            &commissioner,
        ))
        .await
        .expect_err("no level");
    assert_eq!(no_level.code(), tonic::Code::InvalidArgument);

    // Every measure request is in the audit log with its id and parameters.
    let entries = audit::entries(&store).await.expect("entries");
    let answered: Vec<_> = entries
        .iter()
        .filter(|e| e.record.outcome == Outcome::Answered)
        .filter_map(|e| match &e.record.request {
            AuditRequest::Measure { id, parameters } => Some((e.record.user.clone(), id.clone(), parameters.clone())),
            _ => None,
        })
        .collect();
    assert!(
        answered.iter().any(|(user, id, p)| user == "cam"
            && id == "prevalence_hypertension"
            && p.get("breakdown").map(String::as_str) == Some("age_band,sex")
            && p.get("level").map(String::as_str) == Some("practice")),
        "{answered:?}"
    );
    assert!(
        entries
            .iter()
            .any(|e| matches!(&e.record.request, AuditRequest::Measure { .. })
                && matches!(&e.record.outcome, Outcome::Refused { .. } | Outcome::Failed { .. }))
    );
    assert!(
        entries
            .iter()
            .any(|e| matches!(&e.record.request, AuditRequest::Call { rpc } if rpc == "ListAreas"))
    );
    audit::verify(&store).await.expect("the chain verifies");

    // The dashboard's files and the protocol's descriptors over plain HTTP/1.1.
    let (head, body) = http_get(addr, "/poplar-descriptors.binpb").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, poplar_proto::FILE_DESCRIPTOR_SET);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-security-policy: default-src 'self'"),
        "{head}"
    );
    let (head, _) = http_get(addr, "/../Cargo.toml").await;
    assert!(!head.starts_with("HTTP/1.1 200"), "{head}");

    running.stop().await.expect("stop");
}
