//! A minimal `--flag value` / `--flag=value` / `--switch` parser (std only).

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

/// Parsed command line: options with values, and boolean switches.
#[derive(Debug, Default)]
pub struct Args {
    values: HashMap<String, String>,
    switches: Vec<String>,
}

impl Args {
    /// Parse `std::env::args()`; `switches` lists the flags that take no value.
    ///
    /// # Errors
    /// A message for an unknown positional argument or a missing value.
    pub fn parse(switches: &[&str]) -> Result<Self, String> {
        Self::parse_from(std::env::args().skip(1), switches)
    }

    /// Parse an explicit argument list (without the program name).
    ///
    /// # Errors
    /// A message for an unknown positional argument or a missing value.
    pub fn parse_from(
        args: impl IntoIterator<Item = String>,
        switches: &[&str],
    ) -> Result<Self, String> {
        let mut out = Self::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let Some(flag) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument {arg:?}"));
            };
            if let Some((k, v)) = flag.split_once('=') {
                out.values.insert(k.to_owned(), v.to_owned());
            } else if switches.contains(&flag) {
                out.switches.push(flag.to_owned());
            } else {
                let v = it.next().ok_or_else(|| format!("--{flag} needs a value"))?;
                out.values.insert(flag.to_owned(), v);
            }
        }
        Ok(out)
    }

    /// The raw value of `--name`, if given.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Whether the switch `--name` was given.
    #[must_use]
    pub fn switch(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }

    /// `--name` parsed as `T`, or `default` when absent.
    ///
    /// # Errors
    /// A message naming the flag when the value does not parse.
    pub fn parsed_or<T>(&self, name: &str, default: T) -> Result<T, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.get(name).map_or(Ok(default), |v| {
            v.parse().map_err(|e| format!("--{name} {v:?}: {e}"))
        })
    }

    /// `--name` parsed as `T`, required.
    ///
    /// # Errors
    /// A message naming the flag when it is missing or does not parse.
    pub fn required<T>(&self, name: &str) -> Result<T, String>
    where
        T: FromStr,
        T::Err: Display,
    {
        let v = self
            .get(name)
            .ok_or_else(|| format!("--{name} is required"))?;
        v.parse().map_err(|e| format!("--{name} {v:?}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values_and_switches() {
        let a = Args::parse_from(
            ["--pid", "12", "--once", "--out=x.json"].map(String::from),
            &["once"],
        )
        .unwrap();
        assert_eq!(a.required::<u32>("pid").unwrap(), 12);
        assert!(a.switch("once"));
        assert_eq!(a.get("out"), Some("x.json"));
        assert_eq!(a.parsed_or("interval-ms", 1000_u64).unwrap(), 1000);
        assert!(a.required::<u32>("missing").is_err());
        assert!(Args::parse_from(["stray".to_owned()], &[]).is_err());
        assert!(Args::parse_from(["--pid".to_owned()], &[]).is_err());
    }
}
