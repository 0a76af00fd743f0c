// What the service's values mean to a reader: the words for its enums, number formats,
// why a value is withheld, and the Fingertips-style CSV. Shared by the charts, the tables
// and the download so the three never disagree.

// Fingertips' comparison colours (better green, worse red, similar amber, higher/lower in
// two blues for measures where neither direction is good), in a fixed order for legends.
// Each is also said in words next to it, so colour is never the only signal.
const SIGNIFICANCE = [
  ["BETTER", "Better", "#3d8c40"],
  ["SIMILAR", "Similar", "#f0b400"],
  ["WORSE", "Worse", "#c0282d"],
  ["HIGHER", "Higher", "#1f4e99"],
  ["LOWER", "Lower", "#8fb8e6"],
  ["NOT_COMPARED", "Not compared", "#a6a6a6"],
];

const LEVEL_WORDS = {
  PRACTICE: ["GP practice", "GP practices"],
  PCN: ["Primary care network", "primary care networks"],
  SUB_ICB: ["Sub-ICB location", "sub-ICB locations"],
  ICB: ["Integrated care board", "integrated care boards"],
  REGION: ["Region", "regions"],
};
const DIMENSION_WORDS = { AGE_BAND: "Age band", SEX: "Sex", IMD_DECILE: "IMD decile", ETHNICITY: "Ethnicity" };
const POLARITY_WORDS = {
  HIGH_IS_GOOD: "Higher is better",
  LOW_IS_GOOD: "Lower is better",
  NO_JUDGEMENT: "Neither higher nor lower is better",
  UNSPECIFIED: "Not stated",
};
const VALUE_TYPE_WORDS = {
  PROPORTION: "Proportion",
  CRUDE_RATE: "Crude rate",
  DSR: "Directly standardised rate",
  COUNT: "Count",
  COST_PER_HEAD: "Cost per head",
  UNSPECIFIED: "Not stated",
};
const PERIOD_TYPE_WORDS = { MONTH: "Month", QUARTER: "Quarter", FINANCIAL_YEAR: "Financial year" };

const CSV_COLUMNS = [
  "Indicator ID",
  "Indicator Name",
  "Parent Code",
  "Parent Name",
  "Area Code",
  "Area Name",
  "Area Type",
  "Sex",
  "Age",
  "Category Type",
  "Category",
  "Time period",
  "Value",
  "Lower CI 95.0 limit",
  "Upper CI 95.0 limit",
  "Lower CI 99.8 limit",
  "Upper CI 99.8 limit",
  "Count",
  "Denominator",
  "Value note",
  // Fingertips says "Compared to England value or percentiles": Poplar compares with the
  // area's parent, or the region where there is no parent.
  "Compared to parent or region value",
  "Time period start",
  "Time period end",
  "Data as of",
];

/** Helpers bound to the server's enums (see api.js). */
export function makeModel(enums) {
  const sigByNumber = new Map(
    SIGNIFICANCE.map(([key, label, colour]) => [enums.Significance[key], { key, label, colour }]),
  );
  const m = {
    significanceScale: SIGNIFICANCE.map(([key, label, colour]) => ({ key, label, colour })),
    significance: (value) => sigByNumber.get(value?.vsComparator) ?? sigByNumber.get(enums.Significance.NOT_COMPARED),
    levelName: (level) => LEVEL_WORDS[enums.AreaLevel.nameOf(level)]?.[0] ?? enums.AreaLevel.nameOf(level),
    levelPlural: (level) => LEVEL_WORDS[enums.AreaLevel.nameOf(level)]?.[1] ?? enums.AreaLevel.nameOf(level),
    dimensionName: (d) => DIMENSION_WORDS[enums.Dimension.nameOf(d)] ?? enums.Dimension.nameOf(d),
    polarityName: (p) => POLARITY_WORDS[enums.Polarity.nameOf(p)] ?? enums.Polarity.nameOf(p),
    valueTypeName: (t) => VALUE_TYPE_WORDS[enums.ValueType.nameOf(t)] ?? enums.ValueType.nameOf(t),
    periodTypeName: (t) => PERIOD_TYPE_WORDS[enums.PeriodType.nameOf(t)] ?? enums.PeriodType.nameOf(t),

    /** Withheld (any reason): there is no value to show, only a `*`. */
    isSuppressed: (value) => value.suppression !== enums.Suppression.NONE || value.value === undefined,

    /** Why a value is withheld, in a sentence (the CSV's Value note and the table's note). */
    suppressionNote(value, policy) {
      switch (value.suppression) {
        case enums.Suppression.NONE:
          return value.value === undefined ? "No value" : "";
        case enums.Suppression.PRIMARY:
          return `Withheld: fewer than ${policy?.minGroupSize || "the minimum number of"} people`;
        case enums.Suppression.SECONDARY:
          return "Withheld so that another withheld number cannot be worked out from a total";
        case enums.Suppression.NOT_PUBLISHED:
          return "Not published: the rule for publishing this value was not met";
        default:
          return "Withheld";
      }
    },

    /** One string per breakdown cell ("" for the area's total). */
    categoryKey: (value) => value.categories.map((c) => `${c.dimension}:${c.code}`).join("|"),
    categoryLabel: (value) => value.categories.map((c) => c.label || c.code).join(", ") || "All people",

    /** A value as the reader sees it: 1 decimal place for rates and percentages. */
    format(number, measure) {
      if (number === undefined || number === null || Number.isNaN(number)) return "";
      const integer = measure && enums.ValueType.nameOf(measure.valueType) === "COUNT";
      return number.toLocaleString("en-GB", {
        minimumFractionDigits: integer ? 0 : 1,
        maximumFractionDigits: integer ? 0 : 1,
      });
    },
    unitOf: (measure) => measure?.unit || (measure?.multiplier === 100 ? "%" : ""),

    /** Rows in Fingertips' CSV column layout: one per value, then the comparator's. */
    csvRows({ measureOf, values, comparator = [], policy, dataAsOf, areas }) {
      const rows = [];
      const add = (value, measure, areaType) => {
        const area = areas.get(value.areaCode);
        const parent = area && areas.get(area.parentCode);
        const byDimension = (name) => value.categories.filter((c) => enums.Dimension.nameOf(c.dimension) === name);
        const other = value.categories.filter((c) => !["SEX", "AGE_BAND"].includes(enums.Dimension.nameOf(c.dimension)));
        const withheld = m.isSuppressed(value);
        const number = (x) => (withheld || x === undefined ? "" : String(x));
        rows.push({
          "Indicator ID": measure.id,
          "Indicator Name": measure.title,
          "Parent Code": area?.parentCode ?? "",
          "Parent Name": parent?.name ?? "",
          "Area Code": value.areaCode,
          "Area Name": value.areaName || area?.name || "",
          "Area Type": areaType ?? (area ? m.levelName(area.level) : ""),
          Sex: byDimension("SEX")[0]?.label ?? "Persons",
          Age: byDimension("AGE_BAND")[0]?.label ?? "All ages",
          "Category Type": other.map((c) => m.dimensionName(c.dimension)).join(" / "),
          Category: other.map((c) => c.label || c.code).join(" / "),
          "Time period": value.period?.label ?? "",
          Value: number(value.value),
          "Lower CI 95.0 limit": number(value.ci95?.lower),
          "Upper CI 95.0 limit": number(value.ci95?.upper),
          "Lower CI 99.8 limit": number(value.ci998?.lower),
          "Upper CI 99.8 limit": number(value.ci998?.upper),
          Count: number(value.numerator),
          Denominator: number(value.denominator),
          "Value note": m.suppressionNote(value, policy),
          "Compared to parent or region value": areaType ? "" : m.significance(value).label,
          "Time period start": value.period?.start ?? "",
          "Time period end": value.period?.end ?? "",
          "Data as of": dataAsOf ?? "",
        });
      };
      for (const v of values) add(v, measureOf(v), undefined);
      for (const v of comparator) add(v, measureOf(v), `Comparator (${areaTypeOf(areas, v, m)})`);
      return rows;
    },
  };
  return m;
}

function areaTypeOf(areas, value, m) {
  const area = areas.get(value.areaCode);
  return area ? m.levelName(area.level) : "parent or region";
}

/** RFC 4180 text, CRLF lines. Text that a spreadsheet would run as a formula is quoted
 * with a leading apostrophe (OWASP's CSV-injection advice); numbers are left alone. */
export function csvText(rows) {
  const cell = (x) => {
    let s = String(x ?? "");
    if (/^[=+\-@\t\r]/.test(s) && Number.isNaN(Number(s))) s = `'${s}`;
    return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  };
  const lines = [CSV_COLUMNS.map(cell).join(",")];
  for (const row of rows) lines.push(CSV_COLUMNS.map((c) => cell(row[c])).join(","));
  return lines.join("\r\n") + "\r\n";
}

/** Saves text as a file through a Blob URL: built here, nothing sent to the server. */
export function download(filename, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
