//! The enforcement mode shared by rules, routes and (later) access policy.

use std::fmt;

use serde::Deserialize;

/// How a rule or a route acts on what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Mode {
    /// Findings block the request.
    #[default]
    Enforce,
    /// Findings are logged and counted exactly like a block (`would_block`), and the request is
    /// forwarded untouched.
    Monitor,
    /// The rule is not evaluated.
    Off,
}

impl Mode {
    /// The mode that results from applying `self` inside a scope whose mode is `outer`: the
    /// weaker of the two wins (`off` < `monitor` < `enforce`), so a monitor route never
    /// blocks and an `off` rule never fires.
    pub fn within(self, outer: Mode) -> Mode {
        match (self, outer) {
            (Mode::Off, _) | (_, Mode::Off) => Mode::Off,
            (Mode::Monitor, _) | (_, Mode::Monitor) => Mode::Monitor,
            (Mode::Enforce, Mode::Enforce) => Mode::Enforce,
        }
    }

    /// The lowercase name used in configs, metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Monitor => "monitor",
            Mode::Off => "off",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
