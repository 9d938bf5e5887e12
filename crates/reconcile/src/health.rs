//! The health gate: which checks a deployed version must pass, and the pure
//! rule that turns rounds of probes into a verdict (N consecutive passing
//! rounds within a deadline).
//!
//! A swarm verdict alone is not health: swarm can report `rollback_completed`
//! before the restored task runs again (docs/swarm.md, "Known swarm quirks"),
//! and a converged service may answer 503. So every deployed version, the
//! target and a restored last-good alike, is probed by lkg itself.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The checks a deployed version must pass, and how many times.
///
/// In a URL, an expected body and a command, `{version}` stands for the
/// version being checked: `body: "{version}"` on `/version` proves the app
/// serves the version just deployed, not the one swarm put back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    /// HTTP checks: each must answer its status (and contain its body).
    #[serde(default)]
    pub http: Vec<HttpCheck>,
    /// Shell commands (`sh -c`): each must exit 0. They see `LKG_APP`,
    /// `LKG_STACK`, `LKG_VERSION` and `LKG_VERSION_TAG` (and `LKG_DIGEST`
    /// for a version pinned by digest).
    #[serde(default)]
    pub commands: Vec<String>,
    /// Every service of the stack runs all its desired tasks and no running
    /// container of the stack reports itself unhealthy or still starting.
    #[serde(default = "yes")]
    pub tasks: bool,
    /// Consecutive passing rounds required.
    #[serde(default = "default_passes")]
    pub passes: u32,
    /// Time between rounds.
    #[serde(default = "default_interval", with = "secs")]
    pub interval: Duration,
    /// Time allowed, from the first round, to reach `passes` in a row.
    #[serde(default = "default_deadline", with = "secs")]
    pub deadline: Duration,
    /// Time allowed for one HTTP request or command.
    #[serde(default = "default_probe_timeout", with = "secs")]
    pub probe_timeout: Duration,
}

fn yes() -> bool {
    true
}
fn default_passes() -> u32 {
    3
}
fn default_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_deadline() -> Duration {
    Duration::from_secs(120)
}
fn default_probe_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Default for HealthSpec {
    fn default() -> HealthSpec {
        HealthSpec {
            http: Vec::new(),
            commands: Vec::new(),
            tasks: true,
            passes: default_passes(),
            interval: default_interval(),
            deadline: default_deadline(),
            probe_timeout: default_probe_timeout(),
        }
    }
}

/// One HTTP check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    /// `http://` or `https://` URL; `{version}` is replaced.
    pub url: String,
    /// The status to expect.
    #[serde(default = "default_status")]
    pub status: u16,
    /// Text the body must contain; `{version}` is replaced.
    #[serde(default)]
    pub body: Option<String>,
}

fn default_status() -> u16 {
    200
}

impl HttpCheck {
    /// A check expecting 200 from `url`.
    pub fn new(url: impl Into<String>) -> HttpCheck {
        HttpCheck { url: url.into(), status: 200, body: None }
    }
}

/// The result of one check in one round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// What was checked (`GET <url>`, `sh -c <cmd>`, `tasks`).
    pub check: String,
    /// Whether it passed.
    pub pass: bool,
    /// What was seen.
    pub detail: String,
}

/// One round of every check.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProbeRound {
    /// Each check's result.
    pub checks: Vec<CheckResult>,
}

impl ProbeRound {
    /// Every check passed (a round of no checks passes).
    pub fn passes(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }

    /// The failed checks, `check: detail; ...`.
    pub fn failures(&self) -> String {
        self.checks
            .iter()
            .filter(|c| !c.pass)
            .map(|c| format!("{}: {}", c.check, c.detail))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Where the health gate stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthState {
    /// Keep probing: `streak` rounds in a row passed so far.
    Pending {
        /// Consecutive passing rounds so far.
        streak: u32,
    },
    /// `passes` rounds in a row passed.
    Healthy {
        /// Rounds probed in all.
        rounds: u32,
    },
    /// The deadline passed without `passes` rounds in a row.
    Unhealthy {
        /// The deadline, the streak reached and the last failure.
        reason: String,
    },
}

/// The health verdict as a pure state machine: fed one round at a time with
/// the time elapsed since the first round, it needs `passes` consecutive
/// passing rounds before `deadline`. Any failing round resets the streak,
/// so a flapping app never passes.
///
/// ```
/// use std::time::Duration;
/// use lkg_reconcile::{CheckResult, HealthGate, HealthState, ProbeRound};
///
/// let round = |pass| ProbeRound { checks: vec![CheckResult { check: "GET /health".into(), pass, detail: String::new() }] };
/// let mut gate = HealthGate::new(2, Duration::from_secs(10));
/// assert_eq!(gate.observe(&round(true), Duration::ZERO), HealthState::Pending { streak: 1 });
/// assert_eq!(gate.observe(&round(false), Duration::from_secs(1)), HealthState::Pending { streak: 0 });
/// assert_eq!(gate.observe(&round(true), Duration::from_secs(2)), HealthState::Pending { streak: 1 });
/// assert_eq!(gate.observe(&round(true), Duration::from_secs(3)), HealthState::Healthy { rounds: 4 });
/// ```
#[derive(Debug, Clone)]
pub struct HealthGate {
    passes: u32,
    deadline: Duration,
    streak: u32,
    rounds: u32,
    last_failure: Option<String>,
}

impl HealthGate {
    /// Needs `passes` (at least 1) consecutive passing rounds within `deadline`.
    pub fn new(passes: u32, deadline: Duration) -> HealthGate {
        HealthGate { passes: passes.max(1), deadline, streak: 0, rounds: 0, last_failure: None }
    }

    /// Feeds one round, probed `elapsed` after the first.
    pub fn observe(&mut self, round: &ProbeRound, elapsed: Duration) -> HealthState {
        self.rounds += 1;
        if round.passes() {
            self.streak += 1;
            if self.streak >= self.passes {
                return HealthState::Healthy { rounds: self.rounds };
            }
        } else {
            self.streak = 0;
            self.last_failure = Some(round.failures());
        }
        if elapsed >= self.deadline {
            return HealthState::Unhealthy {
                reason: format!(
                    "not healthy {} times in a row within {}s ({} rounds, streak {} at the deadline); last failure: {}",
                    self.passes,
                    self.deadline.as_secs_f64(),
                    self.rounds,
                    self.streak,
                    self.last_failure.as_deref().unwrap_or("none")
                ),
            };
        }
        HealthState::Pending { streak: self.streak }
    }
}

/// Durations as (fractional) seconds in JSON and YAML: `interval: 1.5`.
pub(crate) mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs)
            .map_err(|_| serde::de::Error::custom(format!("{secs} is not a duration in seconds (use a number >= 0)")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(results: &[bool]) -> ProbeRound {
        ProbeRound {
            checks: results
                .iter()
                .enumerate()
                .map(|(i, pass)| CheckResult { check: format!("c{i}"), pass: *pass, detail: format!("d{i}") })
                .collect(),
        }
    }

    #[test]
    fn needs_consecutive_passes_of_every_check() {
        let mut gate = HealthGate::new(3, Duration::from_secs(60));
        let s = Duration::from_secs;
        assert_eq!(gate.observe(&round(&[true, true]), s(0)), HealthState::Pending { streak: 1 });
        assert_eq!(gate.observe(&round(&[true, false]), s(1)), HealthState::Pending { streak: 0 });
        assert_eq!(gate.observe(&round(&[true, true]), s(2)), HealthState::Pending { streak: 1 });
        assert_eq!(gate.observe(&round(&[true, true]), s(3)), HealthState::Pending { streak: 2 });
        assert_eq!(gate.observe(&round(&[true, true]), s(4)), HealthState::Healthy { rounds: 5 });
    }

    #[test]
    fn the_deadline_names_the_last_failure() {
        let mut gate = HealthGate::new(2, Duration::from_secs(5));
        assert!(matches!(gate.observe(&round(&[false]), Duration::from_secs(1)), HealthState::Pending { .. }));
        let HealthState::Unhealthy { reason } = gate.observe(&round(&[true]), Duration::from_secs(5)) else {
            panic!("past the deadline")
        };
        assert_eq!(
            reason,
            "not healthy 2 times in a row within 5s (2 rounds, streak 1 at the deadline); last failure: c0: d0"
        );
    }

    #[test]
    fn a_pass_at_the_deadline_still_counts() {
        let mut gate = HealthGate::new(1, Duration::from_secs(5));
        assert_eq!(gate.observe(&round(&[true]), Duration::from_secs(9)), HealthState::Healthy { rounds: 1 });
    }

    #[test]
    fn specs_read_seconds_and_defaults() {
        let spec: HealthSpec =
            serde_yaml_ng::from_str("http: [{url: 'http://127.0.0.1:8080/health'}]\ninterval: 0.5\n").unwrap();
        assert_eq!(spec.interval, Duration::from_millis(500));
        assert_eq!(spec.http[0].status, 200);
        assert_eq!((spec.passes, spec.tasks, spec.deadline), (3, true, Duration::from_secs(120)));
        assert!(serde_yaml_ng::from_str::<HealthSpec>("interval: -1").is_err());
        assert!(serde_yaml_ng::from_str::<HealthSpec>("intervall: 1").is_err(), "typos are refused");
    }
}
