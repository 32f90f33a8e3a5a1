//! Provisioning rules: what a department's joiners get (contract section 2).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

/// What one department's users get.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Existing IAM group names.
    #[serde(default)]
    pub groups: Vec<String>,
    /// A login profile with a generated password.
    #[serde(default = "yes")]
    pub console: bool,
    /// One access key.
    #[serde(default)]
    pub access_key: bool,
    /// Managed policy ARNs attached directly (discouraged: prefer groups).
    #[serde(default)]
    pub managed_policies: Vec<String>,
    /// A template user whose groups and attached managed policies are added to
    /// this rule's (never its inline policies): the console's "copy permissions".
    #[serde(default)]
    pub copy_from: Option<String>,
}

fn yes() -> bool {
    true
}

impl Default for Rule {
    fn default() -> Self {
        Rule {
            groups: Vec::new(),
            console: true,
            access_key: false,
            managed_policies: Vec::new(),
            copy_from: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rules {
    pub default: Rule,
    pub departments: BTreeMap<String, Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesDoc {
    #[serde(default)]
    default: Option<Rule>,
    #[serde(default)]
    departments: BTreeMap<String, Rule>,
}

impl Rules {
    /// Parses and validates `PROVISIONING_RULES`. Unknown keys are errors: a typo such
    /// as `"group"` must not silently give users nothing.
    pub fn parse(json: &str) -> Result<Rules, String> {
        let doc: RulesDoc = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let rules = Rules {
            default: doc.default.unwrap_or_default(),
            departments: doc.departments,
        };
        check_rule("default", &rules.default)?;
        for (name, rule) in &rules.departments {
            check_rule(&format!("departments.{name}"), rule)?;
        }
        Ok(rules)
    }

    /// The rule of a department: exact name first, then ignoring ASCII case; an
    /// unknown or absent department gets the default rule.
    pub fn for_department(&self, department: Option<&str>) -> &Rule {
        let Some(d) = department else {
            return &self.default;
        };
        self.departments
            .get(d)
            .or_else(|| {
                self.departments
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(d))
                    .map(|(_, r)| r)
            })
            .unwrap_or(&self.default)
    }

    /// Every rule, the default first.
    pub fn all(&self) -> impl Iterator<Item = &Rule> {
        std::iter::once(&self.default).chain(self.departments.values())
    }

    /// The template users the rules name, each once.
    pub fn templates(&self) -> BTreeSet<&str> {
        self.all().filter_map(|r| r.copy_from.as_deref()).collect()
    }
}

fn check_rule(at: &str, rule: &Rule) -> Result<(), String> {
    for g in &rule.groups {
        let ok = !g.is_empty()
            && g.len() <= 128
            && g.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
        if !ok {
            return Err(format!("{at}: {g:?} is not a valid IAM group name"));
        }
    }
    for p in &rule.managed_policies {
        if !crate::config::is_policy_arn(p) {
            return Err(format!("{at}: {p:?} is not an IAM managed policy ARN"));
        }
    }
    if let Some(t) = &rule.copy_from {
        let ok = !t.is_empty() && t.len() <= 64 && t.chars().all(crate::event::is_iam_name_char);
        if !ok {
            return Err(format!(
                "{at}: copy_from {t:?} is not a valid IAM user name"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_default_parses() {
        let r =
            Rules::parse(r#"{"default":{"groups":[],"console":true,"access_key":false}}"#).unwrap();
        assert_eq!(r.default, Rule::default());
        assert!(r.departments.is_empty());
    }

    #[test]
    fn departments_select_rules_and_unknown_falls_back() {
        let r = Rules::parse(
            r#"{"default":{"groups":["staff"]},
                "departments":{"engineering":{"groups":["developers","staff"],"console":true,"access_key":true,
                 "managed_policies":["arn:aws:iam::aws:policy/ReadOnlyAccess"]},
                 "sales":{"groups":["sales"],"console":true}}}"#,
        )
        .unwrap();
        assert!(r.for_department(Some("engineering")).access_key);
        assert!(r.for_department(Some("Engineering")).access_key);
        assert_eq!(r.for_department(Some("sales")).groups, vec!["sales"]);
        assert_eq!(r.for_department(Some("finance")).groups, vec!["staff"]);
        assert_eq!(r.for_department(None).groups, vec!["staff"]);
    }

    #[test]
    fn bad_rules_are_refused() {
        for bad in [
            "not json",
            r#"{"default":{"groups":"developers"}}"#,
            r#"{"default":{"group":["developers"]}}"#,
            r#"{"default":{"groups":["dev ops"]}}"#,
            r#"{"default":{"console":"yes"}}"#,
            r#"{"default":{"managed_policies":["ReadOnlyAccess"]}}"#,
            r#"{"departments":{"x":{"groups":[1]}}}"#,
            r#"{"dept":{}}"#,
            r#"{"default":{"copy_from":"a/b"}}"#,
            r#"{"default":{"copy_from":""}}"#,
        ] {
            assert!(Rules::parse(bad).is_err(), "{bad}");
        }
    }
}
