//! Debian relationship fields (Depends, Pre-Depends, Provides, Conflicts,
//! Breaks), Debian Policy §7.1: `name[:arch] [(op version)] [[archs]]`,
//! alternatives separated by `|`, groups by `,`.

use std::fmt;

use thiserror::Error;

use crate::debian::version::Version;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("bad relation {piece:?} in {field:?}: {reason}")]
pub struct RelationError {
    pub field: String,
    pub piece: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

impl Op {
    fn parse(text: &str) -> Option<Op> {
        Some(match text {
            "<<" => Op::Lt,
            // `<` and `>` are obsolete spellings that dpkg reads as <= and >=.
            "<=" | "<" => Op::Le,
            "=" => Op::Eq,
            ">=" | ">" => Op::Ge,
            ">>" => Op::Gt,
            _ => return None,
        })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub op: Op,
    pub version: Version,
}

impl Constraint {
    pub fn matches(&self, version: &Version) -> bool {
        let ordering = version.cmp(&self.version);
        match self.op {
            Op::Lt => ordering.is_lt(),
            Op::Le => ordering.is_le(),
            Op::Eq => ordering.is_eq(),
            Op::Ge => ordering.is_ge(),
            Op::Gt => ordering.is_gt(),
        }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op, self.version)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub name: String,
    /// `any`, `native` or an architecture, from `name:qualifier`.
    pub arch_qualifier: Option<String>,
    pub constraint: Option<Constraint>,
    /// `[amd64 !i386]`; empty means every architecture.
    pub arch_restrictions: Vec<String>,
}

impl Relation {
    pub fn applies_to_arch(&self, arch: &str) -> bool {
        if self.arch_restrictions.is_empty() {
            return true;
        }
        let negated = self.arch_restrictions.iter().any(|a| a.starts_with('!'));
        if negated {
            !self
                .arch_restrictions
                .iter()
                .any(|a| a.strip_prefix('!') == Some(arch))
        } else {
            self.arch_restrictions.iter().any(|a| a == arch)
        }
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(qualifier) = &self.arch_qualifier {
            write!(f, ":{qualifier}")?;
        }
        if let Some(constraint) = &self.constraint {
            write!(f, " ({constraint})")?;
        }
        if !self.arch_restrictions.is_empty() {
            write!(f, " [{}]", self.arch_restrictions.join(" "))?;
        }
        Ok(())
    }
}

/// Parses a Depends-like field into groups of alternatives.
pub fn parse_relations(field: &str) -> Result<Vec<Vec<Relation>>, RelationError> {
    let mut groups = Vec::new();
    for group in field.split(',') {
        if group.trim().is_empty() {
            continue;
        }
        let alternatives = group
            .split('|')
            .map(|piece| parse_one(field, piece))
            .collect::<Result<Vec<_>, _>>()?;
        groups.push(alternatives);
    }
    Ok(groups)
}

/// Parses a Provides field: a list without alternatives.
pub fn parse_provides(field: &str) -> Result<Vec<Relation>, RelationError> {
    parse_relations(field)?
        .into_iter()
        .map(|mut group| {
            if group.len() == 1 {
                Ok(group.remove(0))
            } else {
                Err(RelationError {
                    field: field.to_string(),
                    piece: group
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" | "),
                    reason: "Provides cannot have alternatives".into(),
                })
            }
        })
        .collect()
}

fn parse_one(field: &str, piece: &str) -> Result<Relation, RelationError> {
    let error = |reason: &str| RelationError {
        field: field.to_string(),
        piece: piece.trim().to_string(),
        reason: reason.to_string(),
    };
    let rest = piece.trim();
    let name_end = rest
        .find(|c: char| c.is_whitespace() || c == '(' || c == '[' || c == '<')
        .unwrap_or(rest.len());
    let (name_part, mut tail) = (&rest[..name_end], rest[name_end..].trim_start());
    let (name, arch_qualifier) = match name_part.split_once(':') {
        Some((name, qualifier)) if !qualifier.is_empty() => (name, Some(qualifier.to_string())),
        Some(_) => return Err(error("empty architecture qualifier after ':'")),
        None => (name_part, None),
    };
    if name.is_empty() {
        return Err(error("missing package name"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return Err(error("invalid character in package name"));
    }
    let mut constraint = None;
    if let Some(inner) = tail.strip_prefix('(') {
        let close = inner.find(')').ok_or_else(|| error("missing ')'"))?;
        let spec = inner[..close].trim();
        let op_len = spec
            .find(|c: char| !"<>=".contains(c))
            .ok_or_else(|| error("missing version"))?;
        let op = Op::parse(&spec[..op_len]).ok_or_else(|| error("unknown operator"))?;
        let version = spec[op_len..].trim();
        let version = version
            .parse()
            .map_err(|err: crate::debian::version::VersionError| error(&err.reason))?;
        constraint = Some(Constraint { op, version });
        tail = inner[close + 1..].trim_start();
    }
    let mut arch_restrictions = Vec::new();
    if let Some(inner) = tail.strip_prefix('[') {
        let close = inner.find(']').ok_or_else(|| error("missing ']'"))?;
        arch_restrictions = inner[..close]
            .split_whitespace()
            .map(str::to_string)
            .collect();
        tail = inner[close + 1..].trim_start();
    }
    // Any build-profile groups left (`<stage1> <!nocheck>`) are ignored.
    if !tail.is_empty() && !tail.starts_with('<') {
        return Err(error("unexpected text after the relation"));
    }
    Ok(Relation {
        name: name.to_string(),
        arch_qualifier,
        constraint,
        arch_restrictions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_depends() {
        let groups = parse_relations(
            "libc6 (>= 2.38), libpq5 (>= 17~beta1), debconf (>= 0.5) | debconf-2.0,\n python3:any, perl:any (>= 5.6) | foo [!amd64] <!nocheck>",
        )
        .unwrap();
        assert_eq!(groups.len(), 5);
        assert_eq!(groups[0][0].name, "libc6");
        assert_eq!(groups[0][0].constraint.as_ref().unwrap().op, Op::Ge);
        assert_eq!(groups[2].len(), 2);
        assert_eq!(groups[2][1].name, "debconf-2.0");
        assert_eq!(groups[3][0].arch_qualifier.as_deref(), Some("any"));
        assert_eq!(groups[4][0].to_string(), "perl:any (>= 5.6)");
        assert_eq!(groups[4][1].arch_restrictions, ["!amd64"]);
        assert!(!groups[4][1].applies_to_arch("amd64"));
        assert!(groups[4][1].applies_to_arch("arm64"));
    }

    #[test]
    fn tolerates_spacing_and_empty_entries() {
        let groups = parse_relations("a (>=1.0), b ( << 2 ),, c(=3),").unwrap();
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[1][0].to_string(), "b (<< 2)");
        assert_eq!(groups[2][0].to_string(), "c (= 3)");
        assert_eq!(
            parse_relations("x (< 1)").unwrap()[0][0]
                .constraint
                .as_ref()
                .unwrap()
                .op,
            Op::Le
        );
    }

    #[test]
    fn provides_may_be_versioned_but_not_alternatives() {
        let provides = parse_provides("python3-speedups (= 2.0), mail-transport-agent").unwrap();
        assert_eq!(provides.len(), 2);
        assert!(parse_provides("a | b").is_err());
    }

    #[test]
    fn rejects_malformed_relations() {
        for bad in ["a (>= 1.0", "a (~ 1)", "(>= 1)", "a b", "a (>= )", "a:"] {
            assert!(parse_relations(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn constraints_match_every_operator() {
        let v = |s: &str| s.parse::<Version>().unwrap();
        let c = |op, s: &str| Constraint { op, version: v(s) };
        assert!(c(Op::Lt, "2.0").matches(&v("1.9")));
        assert!(!c(Op::Lt, "2.0").matches(&v("2.0")));
        assert!(c(Op::Le, "2.0").matches(&v("2.0")));
        assert!(c(Op::Eq, "1:2.0").matches(&v("1:2.0-0")));
        assert!(c(Op::Ge, "17~~").matches(&v("17.6-1")));
        assert!(!c(Op::Gt, "2.0").matches(&v("2.0")));
        assert!(c(Op::Gt, "2.0").matches(&v("2.0-1")));
    }
}
