//! Validation and compilation of a [`PolicySetDef`]. (Stub; being written.)

use crate::diagnostic::Diagnostic;
use crate::model::PolicySetDef;

/// A validated, compiled policy set, ready for matching.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    def: PolicySetDef,
    /// A number that changes whenever the set does (set by the store; 0 if unknown).
    pub version: u64,
}

impl PolicySet {
    /// The empty set: every request gets DUNNO.
    pub fn empty() -> Self {
        PolicySet::default()
    }

    /// The definition this set was compiled from.
    pub fn definition(&self) -> &PolicySetDef {
        &self.def
    }
}

/// A compiled set and the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The set.
    pub set: PolicySet,
    /// Inert or suspicious definitions that still load.
    pub warnings: Vec<Diagnostic>,
}

/// Validates `def`. On error, returns every finding (errors and warnings), errors first.
pub fn compile(def: &PolicySetDef) -> Result<Compiled, Vec<Diagnostic>> {
    Ok(Compiled {
        set: PolicySet {
            def: def.clone(),
            version: 0,
        },
        warnings: Vec::new(),
    })
}
