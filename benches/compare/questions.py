"""The questions of the side-by-side suite: SQL a commissioner writes over the landed
tables, in text that both Poplar (DataFusion) and DuckDB run unchanged. Codes come from
Poplar's committed QOF clusters (queries/codelists/), as a commissioner would paste them.
A question marked `poplar_only` reads something only Poplar has (the snapshot's
register membership), so DuckDB has no figure for it."""

import csv
import pathlib
from dataclasses import dataclass

CODELISTS = pathlib.Path(__file__).resolve().parents[2] / "queries" / "codelists"

# The synthetic region's extract date is 2026-09-30: the last whole financial year and the
# twelve months before it are both inside the data.
YEAR_START = "DATE '2025-04-01'"
YEAR_END = "DATE '2026-04-01'"


def codes(cluster):
    with open(CODELISTS / f"{cluster}.csv", newline="") as f:
        return [row["code"] for row in csv.DictReader(f)]


def in_list(cluster):
    return ", ".join(codes(cluster))


# Long-term condition clusters for multimorbidity (each a QOF register's diagnosis cluster).
LTC = ["dm_cod", "ast_cod", "copd_cod", "hyp_cod", "chd_cod", "hf_cod", "afib_cod", "strk_cod"]

# Each person's row from their own practice's list: the registered population.
REGISTERED = "p.source_org = p.registered_practice AND p.registration_end IS NULL AND p.death_month IS NULL"


@dataclass(frozen=True)
class Question:
    id: str
    title: str
    sql: str
    poplar_only: bool = False


def questions(practice):
    """The suite; `practice` is one GP practice's code, for the per-organisation question."""
    ltc_case = " ".join(f"WHEN snomed_code IN ({in_list(c)}) THEN '{c}'" for c in LTC)
    ltc_all = ", ".join(in_list(c) for c in LTC)
    return [
        Question(
            "register_from_events",
            "diabetes cluster, alive and registered, by practice",
            f"""SELECT p.registered_practice AS practice, count(DISTINCT p.person_id) AS people
FROM patients p
WHERE {REGISTERED}
  AND p.person_id IN (SELECT person_id FROM clinical_events WHERE snomed_code IN ({in_list("dm_cod")}))
GROUP BY p.registered_practice""",
        ),
        Question(
            "multimorbidity_by_imd",
            "people with 2+ long-term condition clusters by IMD decile",
            f"""WITH ltc AS (
  SELECT person_id, count(DISTINCT CASE {ltc_case} END) AS clusters
  FROM clinical_events WHERE snomed_code IN ({ltc_all}) GROUP BY person_id)
SELECT p.imd_decile, count(*) AS people
FROM ltc JOIN patients p ON p.person_id = ltc.person_id
WHERE {REGISTERED} AND ltc.clusters >= 2
GROUP BY p.imd_decile""",
        ),
        Question(
            "one_practice_one_year",
            "one practice, one financial year, events by month",
            f"""SELECT date_trunc('month', event_date) AS month, count(*) AS events
FROM clinical_events
WHERE source_org = '{practice}' AND event_date >= {YEAR_START} AND event_date < {YEAR_END}
GROUP BY date_trunc('month', event_date)""",
        ),
        Question(
            "cost_by_setting",
            "encounter cost and distinct people by setting",
            """SELECT setting, sum(cost) AS cost, count(DISTINCT person_id) AS people
FROM encounters GROUP BY setting""",
        ),
        Question(
            "values_by_code",
            "mean value by code",
            """SELECT code, avg(value) AS mean_value, count(DISTINCT person_id) AS people
FROM clinical_events WHERE value IS NOT NULL GROUP BY code""",
        ),
        Question(
            "medications_by_year",
            "medication issues and distinct people by year",
            """SELECT extract(year FROM issue_date) AS year, count(*) AS issues, count(DISTINCT person_id) AS people
FROM medications GROUP BY extract(year FROM issue_date)""",
        ),
        Question(
            "latest_code_window",
            "latest hypertension code per person (a window), people by code",
            f"""SELECT code, count(*) AS people FROM (
  SELECT person_id, code, row_number() OVER (PARTITION BY person_id ORDER BY event_date DESC, code) AS latest
  FROM clinical_events WHERE snomed_code IN ({in_list("hyp_cod")})) l
WHERE latest = 1 GROUP BY code""",
        ),
        Question(
            "four_personal_tables",
            "events, medications and encounters per person, by sex (all four personal tables)",
            f"""SELECT p.sex, count(*) AS people, sum(e.n) AS events, sum(m.n) AS issues, sum(x.n) AS encounters
FROM patients p
JOIN (SELECT person_id, count(*) AS n FROM clinical_events GROUP BY person_id) e ON e.person_id = p.person_id
JOIN (SELECT person_id, count(*) AS n FROM medications GROUP BY person_id) m ON m.person_id = p.person_id
JOIN (SELECT person_id, count(*) AS n FROM encounters GROUP BY person_id) x ON x.person_id = p.person_id
WHERE {REGISTERED}
GROUP BY p.sex""",
        ),
        Question(
            "practice_age_sex",
            "registered population by practice x ten-year age band x sex",
            f"""SELECT p.registered_practice AS practice,
  floor((2026 - extract(year FROM p.birth_month)) / 10) * 10 AS age_band, p.sex, count(*) AS people
FROM patients p WHERE {REGISTERED}
GROUP BY p.registered_practice, floor((2026 - extract(year FROM p.birth_month)) / 10) * 10, p.sex""",
        ),
        Question(
            "people_by_lsoa",
            "distinct people with an asthma code by LSOA",
            f"""SELECT p.lsoa, count(DISTINCT p.person_id) AS people
FROM clinical_events e JOIN patients p ON p.person_id = e.person_id
WHERE {REGISTERED} AND e.snomed_code IN ({in_list("ast_cod")})
GROUP BY p.lsoa""",
        ),
        Question(
            "in_subquery",
            "encounters by setting of people with a COPD code (IN subquery)",
            f"""SELECT setting, count(*) AS encounters, count(DISTINCT person_id) AS people
FROM encounters
WHERE person_id IN (SELECT person_id FROM clinical_events WHERE snomed_code IN ({in_list("copd_cod")}))
GROUP BY setting""",
        ),
        Question(
            "emergency_trend",
            "12-month trend of emergency admissions and people admitted",
            f"""SELECT date_trunc('month', start_date) AS month, count(*) AS admissions, count(DISTINCT person_id) AS people
FROM encounters
WHERE setting = 'inpatient' AND encounter_type = 'emergency'
  AND start_date >= {YEAR_START} AND start_date < {YEAR_END}
GROUP BY date_trunc('month', start_date)""",
        ),
        Question(
            "events_per_person_spill",
            "events per person, then people by event count (a per-person hash table of every person)",
            """SELECT least(n, 200) AS events, count(*) AS people FROM (
  SELECT person_id, count(*) AS n FROM clinical_events GROUP BY person_id) per_person
GROUP BY least(n, 200)""",
        ),
        Question(
            "person_code_pairs_spill",
            "codes recorded per person: a hash table of every (person, code) pair, past a query's memory share",
            """SELECT least(n, 50) AS times_recorded, count(*) AS person_codes FROM (
  SELECT person_id, snomed_code, count(*) AS n FROM clinical_events GROUP BY person_id, snomed_code) per_pair
GROUP BY least(n, 50)""",
        ),
        Question(
            "register_membership",
            "every register by practice (Poplar's register_membership, kept per snapshot)",
            """SELECT register, practice, count(*) AS people FROM register_membership GROUP BY register, practice""",
            poplar_only=True,
        ),
    ]
