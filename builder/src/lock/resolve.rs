//! Dependency resolution: from the recipe's wanted packages to the full
//! closure over Depends and Pre-Depends, one version per package name.
//!
//! The strategy is apt's greedy one made deterministic: a dependency already
//! met by a selected package stays met; otherwise the first satisfiable
//! alternative wins, taking the highest version (earliest source on ties).
//! When a later constraint rules out a version chosen earlier, the
//! constraint is remembered and resolution starts over honouring it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use thiserror::Error;

use crate::debian::relation::{self, Constraint, Relation};
use crate::lock::index::{Candidate, Universe};

/// Bounds the restarts caused by version conflicts; each restart adds a
/// constraint, so real recipes need a handful at most.
const MAX_RESTARTS: usize = 100;

#[derive(Debug, Error)]
pub enum ResolveError {
    #[error("package `{name}` does not exist in any source{}{}", chain_text(.chain), suggestion_text(.suggestions))]
    UnknownPackage {
        name: String,
        chain: Vec<String>,
        suggestions: Vec<String>,
    },
    #[error("cannot satisfy `{dependency}` of {}:\n{}", chain_text_inline(.chain), .reasons.join("\n"))]
    Unsatisfiable {
        dependency: String,
        chain: Vec<String>,
        reasons: Vec<String>,
    },
    #[error(
        "`{name}` is both wanted (packages.include) and excluded (packages.exclude): remove it from one of them"
    )]
    WantedAndExcluded { name: String },
    /// Two chosen packages that cannot be installed together; the message
    /// names both and how each got in.
    #[error("{0}; exclude one of them or pin other versions")]
    Conflict(String),
    #[error("package `{name}`: bad {field} field: {message}")]
    BadField {
        name: String,
        field: &'static str,
        message: String,
    },
    #[error("gave up after {MAX_RESTARTS} restarts caused by conflicting version constraints")]
    TooManyRestarts,
}

fn chain_text(chain: &[String]) -> String {
    if chain.is_empty() {
        String::new()
    } else {
        format!(" (needed by {})", chain.join(" ← "))
    }
}

fn chain_text_inline(chain: &[String]) -> String {
    chain.join(" ← ")
}

fn suggestion_text(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!("; did you mean: {}?", suggestions.join(", "))
    }
}

/// One package in the closure and why it is there.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub candidate: Candidate,
    /// Packages whose dependency it satisfies; `recipe` when wanted directly.
    pub required_by: BTreeSet<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Resolution {
    pub packages: BTreeMap<String, Resolved>,
    /// Excluded names that some package asked for → who asked.
    pub excluded: BTreeMap<String, BTreeSet<String>>,
}

pub const RECIPE: &str = "recipe";

pub fn resolve(
    universe: &Universe,
    wanted: &[Relation],
    exclude: &[String],
) -> Result<Resolution, ResolveError> {
    let exclude: BTreeSet<&str> = exclude.iter().map(String::as_str).collect();
    if let Some(both) = wanted.iter().find(|w| exclude.contains(w.name.as_str())) {
        return Err(ResolveError::WantedAndExcluded {
            name: both.name.clone(),
        });
    }
    let mut pins: HashMap<String, Vec<Constraint>> = HashMap::new();
    for _ in 0..MAX_RESTARTS {
        let mut attempt = Attempt {
            universe,
            exclude: &exclude,
            pins: &pins,
            selected: BTreeMap::new(),
            parent: HashMap::new(),
            excluded: BTreeMap::new(),
            queue: VecDeque::new(),
        };
        match attempt.run(wanted) {
            Ok(resolution) => return Ok(resolution),
            Err(Outcome::Restart { name, constraint }) => {
                tracing::debug!("restarting resolution with {name} ({constraint})");
                pins.entry(name).or_default().push(constraint);
            }
            Err(Outcome::Failed(err)) => return Err(err),
        }
    }
    Err(ResolveError::TooManyRestarts)
}

enum Outcome {
    Restart {
        name: String,
        constraint: Constraint,
    },
    Failed(ResolveError),
}

impl From<ResolveError> for Outcome {
    fn from(err: ResolveError) -> Self {
        Outcome::Failed(err)
    }
}

struct Attempt<'u> {
    universe: &'u Universe,
    exclude: &'u BTreeSet<&'u str>,
    pins: &'u HashMap<String, Vec<Constraint>>,
    selected: BTreeMap<String, (&'u Candidate, BTreeSet<String>)>,
    /// First package that pulled each selected one in, for error chains.
    parent: HashMap<String, String>,
    excluded: BTreeMap<String, BTreeSet<String>>,
    queue: VecDeque<String>,
}

impl<'u> Attempt<'u> {
    fn run(&mut self, wanted: &[Relation]) -> Result<Resolution, Outcome> {
        for relation in wanted {
            self.satisfy(std::slice::from_ref(relation), RECIPE)?;
        }
        while let Some(name) = self.queue.pop_front() {
            let candidate = self.selected[&name].0;
            for (field, text) in [
                ("Pre-Depends", &candidate.pre_depends),
                ("Depends", &candidate.depends),
            ] {
                if text.is_empty() {
                    continue;
                }
                let groups = parse_field(&name, field, text)?;
                for group in groups {
                    let group: Vec<Relation> = group
                        .into_iter()
                        .filter(|r| r.applies_to_arch(&candidate.architecture))
                        .collect();
                    if !group.is_empty() {
                        self.satisfy(&group, &name)?;
                    }
                }
            }
        }
        self.check_conflicts()?;
        Ok(Resolution {
            packages: self
                .selected
                .iter()
                .map(|(name, (candidate, required_by))| {
                    (
                        name.clone(),
                        Resolved {
                            candidate: (*candidate).clone(),
                            required_by: required_by.clone(),
                        },
                    )
                })
                .collect(),
            excluded: self.excluded.clone(),
        })
    }

    fn chain(&self, from: &str) -> Vec<String> {
        let mut chain = vec![from.to_string()];
        let mut current = from;
        while let Some(parent) = self.parent.get(current) {
            if chain.contains(parent) {
                break;
            }
            chain.push(parent.clone());
            current = parent;
        }
        chain
    }

    fn pins_allow(&self, candidate: &Candidate) -> bool {
        self.pins
            .get(&candidate.name)
            .is_none_or(|pins| pins.iter().all(|pin| pin.matches(&candidate.version)))
    }

    fn usable(&self, candidate: &Candidate, constraint: Option<&Constraint>) -> bool {
        constraint.is_none_or(|c| c.matches(&candidate.version)) && self.pins_allow(candidate)
    }

    /// Whether a selected package meets `relation`, directly or by Provides.
    fn met_by_selection(&self, relation: &Relation) -> Option<String> {
        self.selected_matching(relation, None)
    }

    fn satisfy(&mut self, group: &[Relation], by: &str) -> Result<(), Outcome> {
        for relation in group {
            if let Some(name) = self.met_by_selection(relation) {
                self.require(&name, by);
                return Ok(());
            }
        }
        // Alternatives in the packager's order of preference: the first one
        // that is excluded or installable decides.
        let mut reasons = Vec::new();
        for relation in group {
            if self.exclude.contains(relation.name.as_str()) {
                self.excluded
                    .entry(relation.name.clone())
                    .or_default()
                    .insert(by.to_string());
                return Ok(());
            }
            match self.choose(relation) {
                Ok(candidate) => {
                    self.select(candidate, by);
                    return Ok(());
                }
                Err(Choice::Restart(constraint)) => {
                    return Err(Outcome::Restart {
                        name: relation.name.clone(),
                        constraint,
                    });
                }
                Err(Choice::Reason(reason)) => reasons.push(format!("  - {relation}: {reason}")),
            }
        }
        let dependency = group
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" | ");
        if by == RECIPE
            && group.len() == 1
            && self.universe.candidates(&group[0].name).is_empty()
            && !self.universe.providers.contains_key(&group[0].name)
        {
            return Err(ResolveError::UnknownPackage {
                name: group[0].name.clone(),
                chain: Vec::new(),
                suggestions: suggest(self.universe, &group[0].name),
            }
            .into());
        }
        let mut chain = self.chain(by);
        if by != RECIPE {
            chain.push(RECIPE.to_string());
            chain.dedup();
        }
        Err(ResolveError::Unsatisfiable {
            dependency,
            chain,
            reasons,
        }
        .into())
    }

    /// Picks the package that will satisfy `relation`, or says why none can.
    fn choose(&self, relation: &Relation) -> Result<&'u Candidate, Choice> {
        let constraint = relation.constraint.as_ref();
        let real = self.universe.candidates(&relation.name);
        if let Some((selected, _)) = self.selected.get(&relation.name) {
            // Selected at a version this relation does not accept.
            let constraint =
                constraint.expect("an unconstrained relation is met by any selected version");
            if real.iter().any(|c| self.usable(c, Some(constraint))) {
                return Err(Choice::Restart(constraint.clone()));
            }
            return Err(Choice::Reason(format!(
                "version {} was selected (for {}) and no version satisfies both; available: {}",
                selected.version,
                self.chain(&relation.name)
                    .get(1)
                    .map(String::as_str)
                    .unwrap_or(RECIPE),
                versions(real)
            )));
        }
        if let Some(candidate) = real.iter().find(|c| self.usable(c, constraint)) {
            return Ok(candidate);
        }
        // A virtual package, or a real one whose versions do not fit but
        // which someone else provides.
        let mut providers: Vec<&'u Candidate> = self
            .universe
            .providers
            .get(&relation.name)
            .into_iter()
            .flatten()
            .map(|(name, i)| &self.universe.packages[name][*i])
            .filter(|c| !self.exclude.contains(c.name.as_str()))
            .filter(|c| !self.selected.contains_key(&c.name) && self.pins_allow(c))
            .filter(|c| provides_match(c, relation))
            .collect();
        providers.sort_by(|a, b| {
            priority_rank(&a.priority)
                .cmp(&priority_rank(&b.priority))
                .then(a.name.cmp(&b.name))
                .then(b.version.cmp(&a.version))
        });
        if let Some(provider) = providers.first() {
            return Ok(provider);
        }
        Err(Choice::Reason(if real.is_empty() {
            if self.universe.providers.contains_key(&relation.name) {
                "only provided by packages that are excluded, conflicting or of the wrong version"
                    .to_string()
            } else {
                let hints = suggest(self.universe, &relation.name);
                format!("no such package in any source{}", suggestion_text(&hints))
            }
        } else {
            let mut why = format!(
                "no candidate version matches; available: {}",
                versions(real)
            );
            if let Some(pins) = self.pins.get(&relation.name) {
                let pins: Vec<String> = pins.iter().map(ToString::to_string).collect();
                why.push_str(&format!(
                    "; also constrained to {} by other packages",
                    pins.join(", ")
                ));
            }
            why
        }))
    }

    fn select(&mut self, candidate: &'u Candidate, by: &str) {
        let name = candidate.name.clone();
        self.parent.insert(name.clone(), by.to_string());
        self.selected
            .insert(name.clone(), (candidate, BTreeSet::from([by.to_string()])));
        self.queue.push_back(name);
    }

    fn require(&mut self, name: &str, by: &str) {
        if let Some((_, required_by)) = self.selected.get_mut(name)
            && name != by
        {
            required_by.insert(by.to_string());
        }
    }

    fn check_conflicts(&self) -> Result<(), ResolveError> {
        for (name, (candidate, _)) in &self.selected {
            for (kind, field, text) in [
                ("conflicts with", "Conflicts", &candidate.conflicts),
                ("breaks", "Breaks", &candidate.breaks),
            ] {
                if text.is_empty() {
                    continue;
                }
                let groups = parse_field(name, field, text)?;
                for relation in groups.into_iter().flatten() {
                    // `Provides: x` with `Conflicts: x` is Debian's idiom for
                    // "the only provider of x": a package never conflicts
                    // with itself.
                    if let Some(other) = self.selected_matching(&relation, Some(name)) {
                        return Err(ResolveError::Conflict(format!(
                            "`{name}` ({}) {kind} `{relation}`, which `{other}` ({}) matches: these two cannot be installed together",
                            self.chain(name).join(" ← "),
                            self.chain(&other).join(" ← "),
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// A selected package other than `except` that matches `relation`,
    /// directly or through Provides.
    fn selected_matching(&self, relation: &Relation, except: Option<&str>) -> Option<String> {
        let allowed = |name: &str| except != Some(name);
        if allowed(&relation.name)
            && let Some((candidate, _)) = self.selected.get(&relation.name)
            && relation
                .constraint
                .as_ref()
                .is_none_or(|c| c.matches(&candidate.version))
        {
            return Some(relation.name.clone());
        }
        let providers = self.universe.providers.get(&relation.name)?;
        providers.iter().find_map(|(name, _)| {
            let (candidate, _) = self.selected.get(name)?;
            (allowed(name) && provides_match(candidate, relation)).then(|| name.clone())
        })
    }
}

/// A relationship field of a package from an index, parsed.
fn parse_field(
    name: &str,
    field: &'static str,
    text: &str,
) -> Result<Vec<Vec<Relation>>, ResolveError> {
    relation::parse_relations(text).map_err(|err| ResolveError::BadField {
        name: name.to_string(),
        field,
        message: err.to_string(),
    })
}

enum Choice {
    Restart(Constraint),
    Reason(String),
}

fn provides_match(candidate: &Candidate, relation: &Relation) -> bool {
    candidate.provides.iter().any(|provided| {
        provided.name == relation.name
            && match (&relation.constraint, &provided.constraint) {
                (None, _) => true,
                // A versioned dependency is met only by a versioned Provides.
                (Some(wanted), Some(given)) => wanted.matches(&given.version),
                (Some(_), None) => false,
            }
    })
}

fn priority_rank(priority: &str) -> u8 {
    match priority {
        "required" => 0,
        "important" => 1,
        "standard" => 2,
        "optional" => 3,
        _ => 4,
    }
}

fn versions(candidates: &[Candidate]) -> String {
    if candidates.is_empty() {
        return "none".to_string();
    }
    candidates
        .iter()
        .map(|c| c.version.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Close names for a package that does not exist: similar spellings and
/// names that extend it (`postgresql` → `postgresql-17`).
pub fn suggest(universe: &Universe, name: &str) -> Vec<String> {
    let mut scored: Vec<(f64, &String)> = universe
        .names()
        .filter_map(|candidate| {
            let score = strsim::normalized_damerau_levenshtein(name, candidate);
            let extends = candidate.starts_with(name) && candidate.len() <= name.len() + 4;
            (score >= 0.75 || extends)
                .then_some((if extends { score.max(0.8) } else { score }, candidate))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored.into_iter().take(4).map(|(_, n)| n.clone()).collect()
}
