//! The doctor's steps and their outcomes, rendered as `ok`/`FAIL` lines for
//! people and as JSON for tools.

use std::fmt;

use serde_json::{json, Value};

/// The steps, in the order a connection goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StepName {
    Parse,
    Socket,
    Resolve,
    Tcp,
    Token,
    Tls,
    Authentication,
    Database,
    Query,
    Pooler,
    Privileges,
    Server,
}

impl StepName {
    pub fn as_str(self) -> &'static str {
        match self {
            StepName::Parse => "parse",
            StepName::Socket => "socket",
            StepName::Resolve => "resolve",
            StepName::Tcp => "tcp",
            StepName::Token => "iam token",
            StepName::Tls => "tls",
            StepName::Authentication => "authentication",
            StepName::Database => "database",
            StepName::Query => "query",
            StepName::Pooler => "pooler",
            StepName::Privileges => "privileges",
            StepName::Server => "server",
        }
    }
}

impl fmt::Display for StepName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one step went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Passed; what was found.
    Ok(String),
    /// Failed: what is wrong, in words, and what to do about it.
    Fail { problem: String, fix: String },
}

/// One diagnosed step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: StepName,
    pub outcome: Outcome,
}

impl Step {
    pub fn is_ok(&self) -> bool {
        matches!(self.outcome, Outcome::Ok(_))
    }

    /// `ok   name: detail`, or `FAIL name: problem` and an indented `fix:` line.
    pub fn to_text(&self) -> String {
        match &self.outcome {
            Outcome::Ok(detail) => format!("ok   {}: {detail}\n", self.name),
            Outcome::Fail { problem, fix } => {
                format!("FAIL {}: {problem}\n     fix: {fix}\n", self.name)
            }
        }
    }

    pub fn to_json(&self) -> Value {
        match &self.outcome {
            Outcome::Ok(detail) => {
                json!({"step": self.name.as_str(), "ok": true, "detail": detail})
            }
            Outcome::Fail { problem, fix } => json!({
                "step": self.name.as_str(),
                "ok": false,
                "problem": problem,
                "fix": fix,
            }),
        }
    }
}

/// Every step that ran; the last one is the failure, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnosis {
    steps: Vec<Step>,
}

impl Diagnosis {
    pub(crate) fn new(steps: Vec<Step>) -> Self {
        Diagnosis { steps }
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Whether every step passed (`pgkit doctor` exits 0).
    pub fn passed(&self) -> bool {
        self.failure().is_none()
    }

    /// The step that stopped the diagnosis.
    pub fn failure(&self) -> Option<&Step> {
        self.steps.iter().find(|s| !s.is_ok())
    }

    /// The step lines, then the verdict.
    pub fn to_text(&self) -> String {
        let mut out: String = self.steps.iter().map(Step::to_text).collect();
        out.push_str(&self.verdict());
        out
    }

    /// The last line of the text form, for callers that printed the steps
    /// as they came.
    pub fn verdict(&self) -> String {
        match self.failure() {
            None => format!("all {} checks passed\n", self.steps.len()),
            Some(step) => format!(
                "stopped at {}: fix it and run pgkit doctor again\n",
                step.name
            ),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "ok": self.passed(),
            "steps": self.steps.iter().map(Step::to_json).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_say_ok_or_fail_with_the_fix() {
        let d = Diagnosis::new(vec![
            Step {
                name: StepName::Parse,
                outcome: Outcome::Ok("postgresql://u:***@/d".into()),
            },
            Step {
                name: StepName::Socket,
                outcome: Outcome::Fail {
                    problem: "socket directory /x does not exist".into(),
                    fix: "start the server".into(),
                },
            },
        ]);
        assert_eq!(
            d.to_text(),
            "ok   parse: postgresql://u:***@/d\n\
             FAIL socket: socket directory /x does not exist\n\
             \x20    fix: start the server\n\
             stopped at socket: fix it and run pgkit doctor again\n"
        );
        assert!(!d.passed());
        let json = d.to_json();
        assert_eq!(json["ok"], false);
        assert_eq!(json["steps"][1]["step"], "socket");
        assert_eq!(json["steps"][1]["fix"], "start the server");
        assert_eq!(json["steps"][0]["detail"], "postgresql://u:***@/d");
    }
}
