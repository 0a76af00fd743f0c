//! The statistics a measure's released counts are turned into: Wilson score intervals for
//! proportions, Byar's (or, for fewer than 10 events, exact Poisson) limits for counts and
//! crude rates, directly standardised rates (European Standard Population 2013) with
//! Dobson intervals, funnel-plot control limits, and the Fingertips comparison with a
//! comparator.
//!
//! The methods, thresholds and constants follow OHID Fingertips' technical guidance as
//! implemented by the `PHEindicatormethods` R package (`R/utils.R`, `R/Rates.R`,
//! `R/DSR.R`) and Fingertips' own comparers (`fingertips-open`,
//! `SpcForProportionsComparer.cs`, `SpcForDsrComparer.cs`, `SingleOverlappingCIsComparer.cs`),
//! so a value Poplar shows agrees with the same value on Fingertips. The tests check
//! each method against those projects' published test values.
//!
//! Every function returns `None` where the statistic is undefined (an empty denominator,
//! a count outside its range, a non-finite input): a caller can never show a NaN.

/// The normal quantile for a two-sided 95% interval, `qnorm(0.975)`.
pub const Z95: f64 = 1.959_963_984_540_054;
/// The normal quantile for a two-sided 99.8% interval, `qnorm(0.999)`.
pub const Z998: f64 = 3.090_232_306_167_813;

/// Below this many events Fingertips uses exact Poisson limits instead of Byar's
/// approximation, and leaves a directly standardised rate blank.
pub const MIN_EVENTS_FOR_APPROXIMATION: f64 = 10.0;

/// The two confidence levels Fingertips publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Confidence {
    /// 95%: the interval shown with each value and used for comparisons.
    P95,
    /// 99.8%: the outer funnel limit (about three standard deviations).
    P998,
}

impl Confidence {
    /// Both levels, in the order Fingertips lists them.
    pub const ALL: [Confidence; 2] = [Confidence::P95, Confidence::P998];

    /// The two-sided normal quantile.
    pub fn z(self) -> f64 {
        match self {
            Confidence::P95 => Z95,
            Confidence::P998 => Z998,
        }
    }

    /// The probability left in each tail (0.025 or 0.001).
    pub fn tail(self) -> f64 {
        match self {
            Confidence::P95 => 0.025,
            Confidence::P998 => 0.001,
        }
    }
}

/// A confidence interval or control limits, in the units of the value they go with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub lower: f64,
    pub upper: f64,
}

impl Interval {
    /// Whether `value` lies inside, limits included (as Fingertips compares).
    pub fn contains(&self, value: f64) -> bool {
        self.lower <= value && value <= self.upper
    }

    fn scaled(self, factor: f64) -> Interval {
        Interval {
            lower: self.lower * factor,
            upper: self.upper * factor,
        }
    }
}

/// A value with its 95% and 99.8% confidence intervals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub value: f64,
    pub ci95: Interval,
    pub ci998: Interval,
}

fn finite(values: &[f64]) -> bool {
    values.iter().all(|v| v.is_finite())
}

// ----- proportions -----

/// Wilson score interval for `numerator` out of `denominator`, as a proportion (0 to 1).
/// `None` when the denominator is not positive or the numerator is outside `0..=denominator`.
pub fn wilson(numerator: f64, denominator: f64, level: Confidence) -> Option<Interval> {
    if !finite(&[numerator, denominator]) || denominator <= 0.0 || numerator < 0.0 || numerator > denominator {
        return None;
    }
    Some(wilson_around(numerator, denominator, level.z()))
}

/// `(2x + z² ∓ z√(z² + 4x(1 − x/n))) / (2(n + z²))`: the Wilson interval for `x` of `n`,
/// and (with `x` the expected count) Fingertips' funnel limits for proportions.
fn wilson_around(x: f64, n: f64, z: f64) -> Interval {
    let z2 = z * z;
    // Rounding can make the radicand a hair negative when x is 0 or n.
    let spread = z * (z2 + 4.0 * x * (1.0 - x / n)).max(0.0).sqrt();
    let centre = 2.0 * x + z2;
    let scale = 2.0 * (n + z2);
    Interval {
        lower: ((centre - spread) / scale).max(0.0),
        upper: ((centre + spread) / scale).min(1.0),
    }
}

/// A proportion scaled by `multiplier` (100 for a percentage) with Wilson intervals.
pub fn proportion(numerator: f64, denominator: f64, multiplier: f64) -> Option<Estimate> {
    if !multiplier.is_finite() || multiplier <= 0.0 {
        return None;
    }
    Some(Estimate {
        value: numerator / denominator * multiplier,
        ci95: wilson(numerator, denominator, Confidence::P95)?.scaled(multiplier),
        ci998: wilson(numerator, denominator, Confidence::P998)?.scaled(multiplier),
    })
}

// ----- counts and crude rates -----

/// Byar's approximation to the Poisson limits of an observed count `observed` (Breslow &
/// Day 1987), as `PHEindicatormethods::byars_lower/upper`. Inaccurate for small counts:
/// use [`count_interval`], which switches to exact limits below 10.
pub fn byar(observed: f64, level: Confidence) -> Option<Interval> {
    if !observed.is_finite() || observed < 0.0 {
        return None;
    }
    let z = level.z();
    let lower = if observed == 0.0 {
        0.0
    } else {
        observed * (1.0 - 1.0 / (9.0 * observed) - z / (3.0 * observed.sqrt())).powi(3)
    };
    let next = observed + 1.0;
    let upper = next * (1.0 - 1.0 / (9.0 * next) + z / (3.0 * next.sqrt())).powi(3);
    Some(Interval {
        // Byar's lower limit goes negative for very small counts; a count cannot.
        lower: lower.max(0.0),
        upper,
    })
}

/// Exact Poisson limits of an observed count: `χ²(α/2; 2O)/2` and `χ²(1−α/2; 2O+2)/2`,
/// which are the gamma quantiles below. Defined for non-integer counts too (funnel limits
/// around an expected count).
pub fn poisson_exact(observed: f64, level: Confidence) -> Option<Interval> {
    if !observed.is_finite() || observed < 0.0 {
        return None;
    }
    let tail = level.tail();
    let lower = if observed == 0.0 {
        0.0
    } else {
        gamma_quantile(observed, tail)?
    };
    let upper = gamma_quantile(observed + 1.0, 1.0 - tail)?;
    Some(Interval { lower, upper })
}

/// Limits of an observed count the Fingertips way: exact Poisson below 10 events,
/// Byar's method from 10.
pub fn count_interval(observed: f64, level: Confidence) -> Option<Interval> {
    if observed < MIN_EVENTS_FOR_APPROXIMATION {
        poisson_exact(observed, level)
    } else {
        byar(observed, level)
    }
}

/// A crude rate: `events` per `multiplier` of `population`, with [`count_interval`]
/// limits (`PHEindicatormethods::phe_rate`). `None` when the population is not positive.
pub fn crude_rate(events: f64, population: f64, multiplier: f64) -> Option<Estimate> {
    if !finite(&[population, multiplier]) || population <= 0.0 || multiplier <= 0.0 {
        return None;
    }
    let per = multiplier / population;
    Some(Estimate {
        value: events * per,
        ci95: count_interval(events, Confidence::P95)?.scaled(per),
        ci998: count_interval(events, Confidence::P998)?.scaled(per),
    })
}

/// A count with its Poisson limits (value type `Count`).
pub fn count(observed: f64) -> Option<Estimate> {
    Some(Estimate {
        value: observed,
        ci95: count_interval(observed, Confidence::P95)?,
        ci998: count_interval(observed, Confidence::P998)?,
    })
}

// ----- directly standardised rates -----

/// The European Standard Population 2013's 19 five-year age bands, youngest first; the
/// codes are those of the age band breakdown and of `age_band_5()` in the engine.
pub const ESP2013_BANDS: [&str; 19] = [
    "0-4", "5-9", "10-14", "15-19", "20-24", "25-29", "30-34", "35-39", "40-44", "45-49", "50-54", "55-59", "60-64",
    "65-69", "70-74", "75-79", "80-84", "85-89", "90+",
];

/// The European Standard Population 2013 (Eurostat 2013, totalling 100,000), by band of
/// [`ESP2013_BANDS`].
pub const ESP2013: [f64; 19] = [
    5000.0, 5500.0, 5500.0, 5500.0, 6000.0, 6000.0, 6500.0, 7000.0, 7000.0, 7000.0, 7000.0, 6500.0, 6000.0, 5500.0,
    5000.0, 4000.0, 2500.0, 1500.0, 1000.0,
];

/// One age band's observed events and population, for a standardised rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandCount {
    pub observed: f64,
    pub population: f64,
}

/// Directly standardised rate per `multiplier` with Dobson intervals, over the 19 ESP2013
/// bands (`PHEindicatormethods::calculate_dsr`):
/// `DSR = Σ(Oᵢwᵢ/nᵢ)/Σwᵢ`, `var = Σ(Oᵢwᵢ²/nᵢ²)/(Σwᵢ)²`, limits
/// `DSR + √(var/O)·(O_lim − O)` with `O = ΣOᵢ` and `O_lim` Byar's limits of `O`.
///
/// `None` (blank, as Fingertips) when the total count is under 10, and when a band has
/// no population (its rate, and so the DSR, is undefined).
pub fn dsr_esp2013(bands: &[BandCount; 19], multiplier: f64) -> Option<Estimate> {
    dsr(bands, &ESP2013, multiplier)
}

/// A directly standardised rate with any standard population `weights` (one per band).
pub fn dsr(bands: &[BandCount], weights: &[f64], multiplier: f64) -> Option<Estimate> {
    if bands.len() != weights.len() || bands.is_empty() || !multiplier.is_finite() || multiplier <= 0.0 {
        return None;
    }
    let total_weight: f64 = weights.iter().sum();
    if !total_weight.is_finite() || total_weight <= 0.0 {
        return None;
    }
    let (mut weighted, mut variance, mut total) = (0.0, 0.0, 0.0);
    for (band, &w) in bands.iter().zip(weights) {
        if !finite(&[band.observed, band.population, w]) || band.observed < 0.0 || band.population <= 0.0 || w < 0.0 {
            return None;
        }
        weighted += band.observed * w / band.population;
        variance += band.observed * (w / band.population).powi(2);
        total += band.observed;
    }
    if total < MIN_EVENTS_FOR_APPROXIMATION {
        return None;
    }
    let value = weighted / total_weight;
    let variance = variance / total_weight.powi(2);
    let dobson = |level: Confidence| -> Option<Interval> {
        let limits = byar(total, level)?;
        let scale = (variance / total).sqrt();
        Some(Interval {
            lower: (value + scale * (limits.lower - total)) * multiplier,
            upper: (value + scale * (limits.upper - total)) * multiplier,
        })
    };
    Some(Estimate {
        value: value * multiplier,
        ci95: dobson(Confidence::P95)?,
        ci998: dobson(Confidence::P998)?,
    })
}

// ----- funnel plots -----

/// Funnel control limits for a proportion (0 to 1) around the comparator's `p0`, for an
/// area of `denominator` people (Fingertips `SpcForProportionsComparer`): with
/// `E = N·p₀`, `(2E + z² ∓ z√(z² + 4E(1 − E/N))) / (2(N + z²))`.
pub fn proportion_funnel(p0: f64, denominator: f64, level: Confidence) -> Option<Interval> {
    if !finite(&[p0, denominator]) || denominator <= 0.0 || !(0.0..=1.0).contains(&p0) {
        return None;
    }
    Some(wilson_around(denominator * p0, denominator, level.z()))
}

/// Funnel control limits for a crude or standardised rate per `multiplier` around the
/// comparator's `rate0`, for an area of `population` (Fingertips `SpcForDsrComparer`):
/// exact Poisson limits of the expected count `E = rate₀·N/multiplier`, divided by `N`.
pub fn rate_funnel(rate0: f64, population: f64, multiplier: f64, level: Confidence) -> Option<Interval> {
    if !finite(&[rate0, population, multiplier]) || population <= 0.0 || multiplier <= 0.0 || rate0 < 0.0 {
        return None;
    }
    let expected = rate0 * population / multiplier;
    Some(poisson_exact(expected, level)?.scaled(multiplier / population))
}

// ----- comparison -----

/// Which direction of difference from a comparator is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Polarity {
    HighIsGood,
    LowIsGood,
    /// Higher or lower is reported, never better or worse (e.g. prevalence, where a
    /// higher recorded figure may be better case-finding or more illness).
    NoJudgement,
}

/// How an area compares with its comparator (England, its parent, its peers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Significance {
    /// No comparison possible: no interval, no comparator value.
    NotCompared,
    Similar,
    /// Statistically higher; the measure passes no judgement.
    Higher,
    Lower,
    Better,
    Worse,
}

/// Higher or lower, turned into better or worse by the measure's polarity.
fn judged(higher: bool, polarity: Polarity) -> Significance {
    match (polarity, higher) {
        (Polarity::NoJudgement, true) => Significance::Higher,
        (Polarity::NoJudgement, false) => Significance::Lower,
        (Polarity::HighIsGood, true) | (Polarity::LowIsGood, false) => Significance::Better,
        (Polarity::HighIsGood, false) | (Polarity::LowIsGood, true) => Significance::Worse,
    }
}

/// Fingertips' default comparison (`SingleOverlappingCIsComparer`): "similar" when the
/// comparator's value lies inside the area's interval (limits included), else higher or
/// lower, judged by polarity.
pub fn compare(area: Option<Interval>, comparator: Option<f64>, polarity: Polarity) -> Significance {
    match (area, comparator) {
        (Some(ci), Some(c)) if c.is_finite() && finite(&[ci.lower, ci.upper]) => {
            if ci.contains(c) {
                Significance::Similar
            } else {
                // Outside the interval, the area is higher exactly when the comparator is
                // below its lower limit.
                judged(c < ci.lower, polarity)
            }
        }
        _ => Significance::NotCompared,
    }
}

/// Where an area's value sits against funnel (or comparator control) limits: inside is
/// similar, above is higher, below is lower, judged by polarity.
pub fn funnel_significance(value: Option<f64>, limits: Option<Interval>, polarity: Polarity) -> Significance {
    match (value, limits) {
        (Some(v), Some(l)) if v.is_finite() => {
            if l.contains(v) {
                Significance::Similar
            } else {
                judged(v > l.upper, polarity)
            }
        }
        _ => Significance::NotCompared,
    }
}

// ----- the gamma distribution, for exact Poisson limits -----

/// ln Γ(x) for x > 0 (Lanczos, g = 7, nine coefficients; relative error about 1e-15).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection keeps the series in its accurate range.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEFFICIENTS[0];
    for (i, c) in COEFFICIENTS.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// The regularised lower incomplete gamma function P(a, x): the gamma(a, 1) CDF at x.
/// Series below a + 1, continued fraction (modified Lentz) above (Numerical Recipes §6.2).
fn gamma_p(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    let log_prefix = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        let (mut term, mut sum, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..10_000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-17 {
                break;
            }
        }
        (sum.ln() + log_prefix).exp().min(1.0)
    } else {
        const TINY: f64 = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < TINY {
                d = TINY;
            }
            c = b + an / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (1.0 - (log_prefix.exp() * h)).max(0.0)
    }
}

/// The `p` quantile of gamma(shape `a`, scale 1), i.e. `qchisq(p, 2a)/2`, by bisection:
/// P(a, ·) is increasing, so halving a bracket converges to full precision without the
/// derivative's trouble near zero.
fn gamma_quantile(a: f64, p: f64) -> Option<f64> {
    if !(a > 0.0 && p > 0.0 && p < 1.0) {
        return None;
    }
    let mut hi = a.max(1.0);
    while gamma_p(a, hi) < p {
        hi *= 2.0;
        if !hi.is_finite() {
            return None;
        }
    }
    let mut lo = 0.0;
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if gamma_p(a, mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(0.5 * (lo + hi))
}

// The expected values are copied digit for digit from their published sources, so that
// each can be checked against its source by eye: clippy's rounding of them is not wanted.
#[allow(clippy::excessive_precision)]
#[cfg(test)]
mod tests {
    use super::*;

    /// Relative agreement to 1e-9: the published values are R's doubles, and our
    /// quantiles and gamma function agree with R's to about that.
    fn close(actual: f64, expected: f64) {
        let tolerance = 1e-9 * expected.abs().max(1e-12);
        assert!(
            (actual - expected).abs() <= tolerance,
            "{actual} differs from the published {expected}"
        );
    }

    fn interval(actual: Option<Interval>, lower: f64, upper: f64) {
        let i = actual.expect("defined");
        close(i.lower, lower);
        close(i.upper, upper);
    }

    // Expected values in the next three tests: PHEindicatormethods
    // `tests/testthat/testdata_Byars_Wilson.xlsx`, sheet `testdata_B_W`
    // (ukhsa-collaboration/PHEindicatormethods@093fd28, used by testWilson.R and testByars.R).

    #[test]
    fn wilson_matches_phe_indicator_methods() {
        interval(
            wilson(65.0, 100.0, Confidence::P95),
            0.55254443296887967,
            0.73635751756902468,
        );
        interval(
            wilson(1045.0, 5000.0, Confidence::P95),
            0.19795549880013297,
            0.22049130373189027,
        );
        interval(
            wilson(0.445, 1.0, Confidence::P95),
            4.3817447720588223E-2,
            0.93346212769791559,
        );
        interval(
            wilson(65.0, 100.0, Confidence::P998),
            0.49549465740704313,
            0.77835406140896968,
        );
        interval(
            wilson(1045.0, 5000.0, Confidence::P998),
            0.19179381799015244,
            0.22731562902525818,
        );
        interval(
            wilson(0.445, 1.0, Confidence::P998),
            1.9347006132900975E-2,
            0.97022599470195414,
        );
    }

    #[test]
    fn byar_matches_phe_indicator_methods() {
        interval(byar(65.0, Confidence::P95), 50.163187710459454, 82.849138545939837);
        interval(byar(1045.0, Confidence::P95), 982.59320180733255, 1110.3312129856499);
        interval(byar(1.0, Confidence::P95), 1.3072132901504351E-2, 5.5637555824752605);
        interval(byar(65.0, Confidence::P998), 42.880261471480203, 94.000290844318016);
        interval(byar(1045.0, Confidence::P998), 947.94070356103737, 1148.8061609880331);
        interval(byar(10.0, Confidence::P998), 2.916318374695686, 24.193724927880535);
    }

    #[test]
    fn undefined_inputs_give_none_never_nan() {
        assert_eq!(wilson(0.0, 0.0, Confidence::P95), None);
        assert_eq!(wilson(5.0, 4.0, Confidence::P95), None);
        assert_eq!(wilson(-1.0, 4.0, Confidence::P95), None);
        assert_eq!(wilson(f64::NAN, 4.0, Confidence::P95), None);
        assert_eq!(proportion(0.0, 0.0, 100.0), None);
        assert_eq!(crude_rate(3.0, 0.0, 1000.0), None);
        assert_eq!(byar(-1.0, Confidence::P95), None);
        assert_eq!(proportion_funnel(0.5, 0.0, Confidence::P95), None);
        assert_eq!(rate_funnel(10.0, 0.0, 1e5, Confidence::P95), None);
        // Zero of n is defined: the lower limit is 0, the upper positive.
        let zero = wilson(0.0, 50.0, Confidence::P95).expect("defined");
        assert_eq!(zero.lower, 0.0);
        assert!(zero.upper > 0.0 && zero.upper < 0.1);
        let all = wilson(50.0, 50.0, Confidence::P95).expect("defined");
        assert_eq!(all.upper, 1.0);
        let none = count_interval(0.0, Confidence::P95).expect("defined");
        assert_eq!(none.lower, 0.0);
        // qchisq(0.975, 2)/2 = -ln(0.025)
        close(none.upper, -(0.025f64).ln());
    }

    /// PHEindicatormethods `tests/testthat/testdata_Rate.xlsx`, sheet `testdata_Rate`
    /// (`phe_rate`, multiplier 100,000): exact limits below 10 events, Byar's from 10.
    #[test]
    fn crude_rates_match_phe_indicator_methods() {
        let cases: [(f64, f64, [f64; 5]); 6] = [
            (
                1.0,
                100.0,
                [
                    1000.0,
                    25.317807984289896,
                    5571.6433909388979,
                    1.0005003335835343,
                    9233.4134764515857,
                ],
            ),
            (
                5.0,
                100.0,
                [
                    5000.0,
                    1623.4863901184199,
                    11668.332079322669,
                    739.37173191783893,
                    16454.745203680104,
                ],
            ),
            (
                20.0,
                100.0,
                [
                    20000.0,
                    12211.428834875936,
                    30889.880369197064,
                    8922.8023651441927,
                    38085.035625041914,
                ],
            ),
            (
                9856.0,
                12345.0,
                [
                    79837.991089509916,
                    78269.490589767578,
                    81430.016542721409,
                    77375.905432710526,
                    82354.472770954308,
                ],
            ),
            (
                7776456.0,
                7564336677.0,
                [
                    102.80420256339154,
                    102.73196005302074,
                    102.87648334092832,
                    102.690317308454,
                    102.91817639509068,
                ],
            ),
            (
                222.0,
                3215.0,
                [
                    6905.1321928460338,
                    6026.5748776526743,
                    7875.7293708718507,
                    5560.7376952598534,
                    8461.0466817334109,
                ],
            ),
        ];
        for (x, n, [value, l95, u95, l998, u998]) in cases {
            let e = crude_rate(x, n, 100_000.0).expect("defined");
            close(e.value, value);
            interval(Some(e.ci95), l95, u95);
            interval(Some(e.ci998), l998, u998);
        }
        // Sheet `testdata_Rate_g`: 2 events in 200, 95% only.
        interval(
            crude_rate(2.0, 200.0, 100_000.0).map(|e| e.ci95),
            121.10463927198258,
            3612.3438338619794,
        );
    }

    /// PHEindicatormethods `tests/testthat/testdata_DSR_ISR.xlsx`: inputs sheet
    /// `testdata_multiarea` (areas big, small, tiny), expected sheet `testresults_DSR` rows
    /// 5-7 (dsr per 100,000, as testDSRs.R compares with `calculate_dsr(..., esp2013)`).
    #[test]
    fn dsr_matches_phe_indicator_methods() {
        let populations = [
            636.0, 558.0, 609.0, 543.0, 384.0, 594.0, 669.0, 843.0, 660.0, 576.0, 606.0, 522.0, 426.0, 273.0, 300.0,
            288.0, 153.0, 123.0, 207.0,
        ];
        let bands = |counts: [f64; 19]| -> [BandCount; 19] {
            std::array::from_fn(|i| BandCount {
                observed: counts[i],
                population: populations[i],
            })
        };
        let big = bands([
            127.0, 25.0, 18.0, 21.0, 12.0, 27.0, 48.0, 27.0, 29.0, 32.0, 32.0, 34.0, 45.0, 65.0, 38.0, 68.0, 74.0,
            82.0, 91.0,
        ]);
        let e = dsr_esp2013(&big, 100_000.0).expect("895 events");
        close(e.value, 10430.247991469423);
        interval(Some(e.ci95), 9717.709067985681, 11178.94091547925);
        interval(Some(e.ci998), 9323.2878802199029, 11620.595999522058);

        let small = bands([
            12.0, 4.0, 3.0, 2.0, 3.0, 4.0, 8.0, 2.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 5.0, 6.0, 5.0, 5.0, 4.0,
        ]);
        let e = dsr_esp2013(&small, 100_000.0).expect("91 events");
        close(e.value, 1103.212025300104);
        interval(Some(e.ci95), 877.455767536709, 1367.0882227251795);
        interval(Some(e.ci998), 763.64203579398793, 1530.0328948244762);

        // 9 events: "dsr NA for total count < 10". (The sheet leaves 10-14 blank: zero.)
        let tiny = bands([
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 2.0, 3.0,
        ]);
        assert_eq!(dsr_esp2013(&tiny, 100_000.0), None);

        // A band with nobody in it leaves the rate undefined, not NaN.
        let mut empty = big;
        empty[18] = BandCount {
            observed: 0.0,
            population: 0.0,
        };
        assert_eq!(dsr_esp2013(&empty, 100_000.0), None);
        assert_eq!(ESP2013.iter().sum::<f64>(), 100_000.0);
    }

    /// Fingertips `SpcForProportionsComparerTest.cs` (fingertips-open,
    /// PholioVisualisation.AnalysisTest): real published values, low is good, unit 100.
    /// Fingertips uses z = 1.96 and 3.0902; the verdicts are the same with full-precision z.
    #[test]
    fn proportion_funnel_matches_fingertips_comparer() {
        let verdict = |comparator: f64, value: f64, denominator: f64, level: Confidence| {
            funnel_significance(
                Some(value / 100.0),
                proportion_funnel(comparator / 100.0, denominator, level),
                Polarity::LowIsGood,
            )
        };
        // Indicator 1, 2010.
        let c = 8.9611086876279327;
        for level in Confidence::ALL {
            assert_eq!(verdict(c, 7.7065767284991562, 5930.0, level), Significance::Better);
            assert_eq!(verdict(c, 9.8988121425428961, 2273.0, level), Significance::Similar);
            assert_eq!(verdict(c, 12.474645030425965, 1972.0, level), Significance::Worse);
        }
        // Indicator 514, 2010: significant at 95% but not at 99.8%.
        let c = 12.8379546895717;
        assert_eq!(
            verdict(c, 10.9783420463032, 1339.0, Confidence::P95),
            Significance::Better
        );
        assert_eq!(
            verdict(c, 10.9783420463032, 1339.0, Confidence::P998),
            Significance::Similar
        );
        assert_eq!(
            verdict(c, 15.9065628476085, 899.0, Confidence::P95),
            Significance::Worse
        );
        assert_eq!(
            verdict(c, 15.9065628476085, 899.0, Confidence::P998),
            Significance::Similar
        );
        // The limits are Wilson's interval around the expected count.
        let limits = proportion_funnel(0.65, 100.0, Confidence::P95).expect("defined");
        interval(Some(limits), 0.55254443296887967, 0.73635751756902468);
    }

    /// Fingertips `SpcForDsrComparerTest.cs`: indicator 501 (MRSA per 100,000, 2011),
    /// low is good; the limits are exact Poisson limits of the expected count.
    #[test]
    fn rate_funnel_matches_fingertips_comparer() {
        let c = 2.132708657734625;
        let verdict = |value: f64, population: f64, level: Confidence| {
            funnel_significance(
                Some(value),
                rate_funnel(c, population, 100_000.0, level),
                Polarity::LowIsGood,
            )
        };
        assert_eq!(
            verdict(1.1358436559886544, 616282.0, Confidence::P95),
            Significance::Better
        );
        assert_eq!(
            verdict(1.1358436559886544, 616282.0, Confidence::P998),
            Significance::Similar
        );
        assert_eq!(
            verdict(2.657913272289925, 601976.0, Confidence::P95),
            Significance::Similar
        );
        assert_eq!(
            verdict(2.657913272289925, 601976.0, Confidence::P998),
            Significance::Similar
        );
        assert_eq!(
            verdict(4.1515156695295845, 409489.0, Confidence::P95),
            Significance::Worse
        );
        assert_eq!(
            verdict(4.1515156695295845, 409489.0, Confidence::P998),
            Significance::Similar
        );
        // At an integer expected count the limits are the exact ones of testdata_Rate:
        // 5 expected in 100 at 100,000 per 100,000 -> Area2's exact limits.
        interval(
            rate_funnel(5_000.0, 100.0, 100_000.0, Confidence::P95),
            1623.4863901184199,
            11668.332079322669,
        );
    }

    /// Fingertips `SingleOverlappingCIsComparer.cs`: inside the area's interval (limits
    /// included) is similar; outside, higher or lower by which side, then polarity.
    #[test]
    fn comparison_with_a_comparator() {
        let ci = Some(Interval {
            lower: 10.0,
            upper: 12.0,
        });
        assert_eq!(compare(ci, Some(11.0), Polarity::HighIsGood), Significance::Similar);
        assert_eq!(compare(ci, Some(12.0), Polarity::HighIsGood), Significance::Similar);
        assert_eq!(compare(ci, Some(9.0), Polarity::HighIsGood), Significance::Better);
        assert_eq!(compare(ci, Some(9.0), Polarity::LowIsGood), Significance::Worse);
        assert_eq!(compare(ci, Some(9.0), Polarity::NoJudgement), Significance::Higher);
        assert_eq!(compare(ci, Some(13.0), Polarity::HighIsGood), Significance::Worse);
        assert_eq!(compare(ci, Some(13.0), Polarity::LowIsGood), Significance::Better);
        assert_eq!(compare(ci, Some(13.0), Polarity::NoJudgement), Significance::Lower);
        assert_eq!(
            compare(None, Some(13.0), Polarity::LowIsGood),
            Significance::NotCompared
        );
        assert_eq!(compare(ci, None, Polarity::LowIsGood), Significance::NotCompared);
        // The Fingertips 99.8% verdicts above via an area CI instead: the published 95%
        // CI of 5PY (indicator 514) excludes England's 12.84, so it is lower (better).
        let py = Some(Interval {
            lower: 9.41418865607498,
            upper: 12.7657535004819,
        });
        assert_eq!(
            compare(py, Some(12.8379546895717), Polarity::LowIsGood),
            Significance::Better
        );
    }

    /// The published 95% intervals in the Fingertips comparer tests are Wilson intervals of
    /// the value and denominator: e.g. 5PP's 7.7066% of 5930 (457 people).
    #[test]
    fn fingertips_published_intervals_are_wilson() {
        let e = proportion(457.0, 5930.0, 100.0).expect("defined");
        close(e.value, 7.7065767284991562);
        // Fingertips computed these with z = 1.96, not 1.959964: agree to 1e-5.
        assert!((e.ci95.lower - 7.0548320523366375).abs() < 1e-4, "{:?}", e.ci95);
        assert!((e.ci95.upper - 8.4130813590727076).abs() < 1e-4, "{:?}", e.ci95);
    }

    #[test]
    fn gamma_quantiles_agree_with_closed_forms() {
        // Shape 1 is the exponential: quantile -ln(1 - p).
        for p in [0.001, 0.025, 0.5, 0.975, 0.999] {
            close(gamma_quantile(1.0, p).expect("defined"), -(1.0 - p).ln());
        }
        // ln Γ(n) = ln (n-1)!
        close(ln_gamma(10.0), (362_880.0f64).ln());
        close(ln_gamma(0.5), std::f64::consts::PI.sqrt().ln());
    }
}
