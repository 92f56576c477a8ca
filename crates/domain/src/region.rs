use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A sales region. Every order belongs to its buyer's region, and every event
/// stream is split by region. Lowercase letters, digits and `-`, up to 32.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Region(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    #[error("region must not be empty")]
    Empty,
    #[error("region {0:?} is invalid: use 1 to 32 lowercase letters, digits or '-'")]
    Invalid(String),
    #[error("unknown region {region:?}; known regions: {known}")]
    Unknown { region: String, known: String },
}

impl Region {
    pub fn parse(name: &str) -> Result<Self, RegionError> {
        if name.is_empty() {
            return Err(RegionError::Empty);
        }
        let valid = name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(RegionError::Invalid(name.to_owned()));
        }
        Ok(Region(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Region {
    type Err = RegionError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Region::parse(name)
    }
}

impl TryFrom<String> for Region {
    type Error = RegionError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Region::parse(&name)
    }
}

impl From<Region> for String {
    fn from(region: Region) -> String {
        region.0
    }
}

/// The regions a deployment knows, in a fixed order. Defaults to China's seven
/// geographic regions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct Regions(Vec<Region>);

impl Regions {
    pub const DEFAULT: [&'static str; 7] = [
        "north",
        "northeast",
        "east",
        "central",
        "south",
        "southwest",
        "northwest",
    ];

    pub fn new(regions: Vec<Region>) -> Result<Self, RegionError> {
        if regions.is_empty() {
            return Err(RegionError::Empty);
        }
        let mut unique = Vec::with_capacity(regions.len());
        for region in regions {
            if !unique.contains(&region) {
                unique.push(region);
            }
        }
        Ok(Regions(unique))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Region> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, region: &Region) -> bool {
        self.0.contains(region)
    }

    /// Parses `name` and checks that it is one of these regions.
    pub fn resolve(&self, name: &str) -> Result<Region, RegionError> {
        let region = Region::parse(name)?;
        if self.contains(&region) {
            return Ok(region);
        }
        Err(RegionError::Unknown {
            region: name.to_owned(),
            known: self.to_string(),
        })
    }
}

impl Default for Regions {
    fn default() -> Self {
        Regions(
            Self::DEFAULT
                .iter()
                .map(|name| Region((*name).to_owned()))
                .collect(),
        )
    }
}

impl fmt::Display for Regions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(Region::as_str).collect();
        f.write_str(&names.join(","))
    }
}

impl TryFrom<Vec<String>> for Regions {
    type Error = RegionError;

    fn try_from(names: Vec<String>) -> Result<Self, Self::Error> {
        let regions = names
            .iter()
            .map(|name| Region::parse(name.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        Regions::new(regions)
    }
}

impl From<Regions> for Vec<String> {
    fn from(regions: Regions) -> Vec<String> {
        regions.0.into_iter().map(String::from).collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn default_regions_are_valid_and_resolvable() {
        let regions = Regions::default();
        assert_eq!(regions.len(), 7);
        for name in Regions::DEFAULT {
            assert_eq!(regions.resolve(name).map(String::from), Ok(name.to_owned()));
        }
        assert!(matches!(
            regions.resolve("atlantis"),
            Err(RegionError::Unknown { .. })
        ));
    }

    #[test]
    fn rejects_names_that_would_break_topic_names() {
        for bad in [
            "",
            "East",
            "east china",
            "east.china",
            "a{b}",
            &"x".repeat(33),
        ] {
            assert!(Region::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    proptest! {
        #[test]
        fn parse_accepts_only_the_topic_safe_alphabet(name in "\\PC{0,40}") {
            let valid = !name.is_empty()
                && name.len() <= 32
                && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            prop_assert_eq!(Region::parse(&name).is_ok(), valid);
        }
    }
}
