//! i2b2-style limit on how many answers a noised role's user may take per UTC day. Sticky
//! noise stops averaging one question; differencing needs many *different* questions, and
//! this bounds how many anyone can ask. The count is in memory and is re-read from the
//! audit log when the server starts, so a restart does not reset it.

use chrono::{NaiveDate, Utc};
use std::collections::HashMap;
use std::sync::Mutex;

use super::policy::Policy;
use crate::error::{EngineError, Rule};
use crate::identity::Principal;

#[derive(Debug, Default)]
pub struct Budget {
    used: Mutex<HashMap<String, (NaiveDate, u64)>>,
}

impl Budget {
    /// Take one answer from the user's budget for today, or refuse.
    pub fn charge(&self, policy: &Policy, principal: &Principal) -> Result<(), EngineError> {
        self.charge_on(policy, principal, Utc::now().date_naive())
    }

    pub fn charge_on(&self, policy: &Policy, principal: &Principal, today: NaiveDate) -> Result<(), EngineError> {
        let Some(limit) = policy
            .daily_budget
            .get(&principal.role)
            .copied()
            .filter(|_| policy.noised(principal.role))
        else {
            return Ok(());
        };
        let mut used = crate::sync::lock(&self.used);
        let entry = used.entry(principal.user.clone()).or_insert((today, 0));
        if entry.0 != today {
            *entry = (today, 0);
        }
        if entry.1 >= limit {
            return Err(EngineError::refused(
                Rule::QueryBudget,
                format!(
                    "{} has had the {limit} answers a {} may have today; the budget resets at 00:00 UTC",
                    principal.user,
                    principal.role.as_str()
                ),
            ));
        }
        entry.1 += 1;
        Ok(())
    }

    /// Answers already given today (from the audit log at start-up).
    pub fn restore(&self, user: &str, day: NaiveDate, answers: u64) {
        let mut used = crate::sync::lock(&self.used);
        let entry = used.entry(user.to_string()).or_insert((day, 0));
        if entry.0 == day {
            entry.1 += answers;
        } else if day > entry.0 {
            *entry = (day, answers);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Role;

    #[test]
    fn a_noised_role_is_refused_after_its_daily_budget_and_it_resets_next_day() {
        let mut policy = Policy::new(vec![1; 32]).expect("key");
        policy.daily_budget.insert(Role::Researcher, 3);
        let budget = Budget::default();
        let rita = Principal {
            user: "rita".into(),
            role: Role::Researcher,
        };
        let day = NaiveDate::from_ymd_opt(2026, 11, 22).expect("date");
        for _ in 0..3 {
            budget.charge_on(&policy, &rita, day).expect("within budget");
        }
        let err = budget.charge_on(&policy, &rita, day).expect_err("over budget");
        assert_eq!(err.rule(), Some(Rule::QueryBudget));
        assert!(err.to_string().contains("rule 5"), "{err}");
        budget
            .charge_on(&policy, &rita, day.succ_opt().expect("date"))
            .expect("a new day");
        // Analysts are not noised, so not budgeted; stewards are not under control at all.
        let ann = Principal {
            user: "ann".into(),
            role: Role::Analyst,
        };
        for _ in 0..10 {
            budget.charge_on(&policy, &ann, day).expect("no budget");
        }
    }
}
