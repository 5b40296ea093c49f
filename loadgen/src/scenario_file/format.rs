//! The TOML schema of a scenario file, as serde reads it: every table denies unknown keys and
//! every value whose meaning depends on others keeps its span (`Spanned`), so that
//! [`super::validate`] can point at it. Value grammars (sizes, durations, enumerations) are
//! checked while deserializing, so their errors carry the value's position too.
//!
//! docs/scenario-format.md is the reference; the field docs here say only what the Rust
//! needs.

use reaper::units;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use toml::Spanned;

/// A size: a number of pages, a byte count with a binary unit, or a share of the machine's
/// memory. Resolved to pages against the machine by [`SizeValue::pages`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeValue {
    Pages(u64),
    /// Bytes, a whole number of pages (checked when read).
    Bytes(u64),
    /// 1 to 100 percent of the machine's frames, rounded down.
    Percent(u64),
}

impl SizeValue {
    /// Pages on a machine of `frames` frames.
    pub fn pages(self, frames: u64) -> u64 {
        match self {
            SizeValue::Pages(p) => p,
            SizeValue::Bytes(b) => b / mm::pgtable::PAGE_SIZE,
            SizeValue::Percent(p) => frames * p / 100,
        }
    }
}

impl fmt::Display for SizeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeValue::Pages(p) => write!(f, "{p} pages"),
            SizeValue::Bytes(b) => f.write_str(&units::format_size(*b)),
            SizeValue::Percent(p) => write!(f, "{p}%"),
        }
    }
}

const SIZE_ACCEPTED: &str =
    "a number of pages (256), a size in binary units (\"1MiB\") or a share of memory (\"45%\")";

/// Parse the string form of a size.
pub fn parse_size_str(s: &str) -> Result<SizeValue, String> {
    if let Some(p) = s.strip_suffix('%') {
        let n: u64 = p
            .parse()
            .map_err(|_| format!("invalid size '{s}': expected {SIZE_ACCEPTED}"))?;
        if !(1..=100).contains(&n) {
            return Err(format!(
                "impossible size '{s}': a share of memory is 1% to 100%"
            ));
        }
        return Ok(SizeValue::Percent(n));
    }
    let bytes = units::parse_size(s).map_err(|e| format!("invalid size '{s}': {e}"))?;
    if bytes % mm::pgtable::PAGE_SIZE != 0 {
        return Err(format!(
            "impossible size '{s}': {bytes} bytes is not a whole number of 4KiB pages"
        ));
    }
    Ok(SizeValue::Bytes(bytes))
}

impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SizeValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(SIZE_ACCEPTED)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SizeValue, E> {
                u64::try_from(v)
                    .map(SizeValue::Pages)
                    .map_err(|_| E::custom(format!("impossible size {v}: negative")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeValue, E> {
                Ok(SizeValue::Pages(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SizeValue, E> {
                parse_size_str(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration, ns (the grammar of [`reaper::units::parse_duration`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurValue(pub u64);

impl DurValue {
    /// Whole milliseconds, if it is a whole number of them.
    pub fn whole_ms(self) -> Option<u64> {
        self.0
            .is_multiple_of(1_000_000)
            .then_some(self.0 / 1_000_000)
    }
}

impl fmt::Display for DurValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.whole_ms() {
            Some(ms) => f.write_str(&units::format_ms(ms)),
            None => write!(f, "{}ns", self.0),
        }
    }
}

impl<'de> Deserialize<'de> for DurValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"100ms\" or \"2s\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurValue, E> {
                if v == 0 {
                    return Ok(DurValue(0));
                }
                Err(E::custom(format!(
                    "invalid duration {v}: a unit is required, e.g. \"{v}ms\""
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurValue, E> {
                let d = units::parse_duration(v)
                    .map_err(|e| E::custom(format!("invalid duration '{v}': {e}")))?;
                u64::try_from(d.as_nanos())
                    .map(DurValue)
                    .map_err(|_| E::custom(format!("invalid duration '{v}': too long")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A knob's value: a string, or an integer or boolean written bare (`panic-on-oom = 1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnobValue(pub String);

impl<'de> Deserialize<'de> for KnobValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KnobValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a knob value (a string or a number)")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KnobValue, E> {
                Ok(KnobValue(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KnobValue, E> {
                Ok(KnobValue(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KnobValue, E> {
                Ok(KnobValue(u8::from(v).to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KnobValue, E> {
                Ok(KnobValue(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `[kernel]`: knob name (a flag without `--`) to value.
pub type KnobTable = BTreeMap<Spanned<String>, Spanned<KnobValue>>;

/// A knob's values in an `[[expect.when]]` case: one value, or a list (the case then stands
/// for every combination).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnobValues(pub Vec<String>);

impl<'de> Deserialize<'de> for KnobValues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KnobValues;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a knob value or a list of them")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KnobValues, E> {
                Ok(KnobValues(vec![v.to_string()]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KnobValues, E> {
                Ok(KnobValues(vec![v.to_string()]))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KnobValues, E> {
                Ok(KnobValues(vec![u8::from(v).to_string()]))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KnobValues, E> {
                Ok(KnobValues(vec![v.to_string()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<KnobValues, A::Error> {
                let mut out = Vec::new();
                while let Some(KnobValue(v)) = seq.next_element()? {
                    out.push(v);
                }
                if out.is_empty() {
                    return Err(de::Error::custom("an empty list of knob values"));
                }
                Ok(KnobValues(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// An `[[expect.when]]` case's `kernel`.
pub type CaseKnobTable = BTreeMap<Spanned<String>, Spanned<KnobValues>>;

/// `resident = "all"` or a size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResidentValue {
    All,
    Size(SizeValue),
}

impl<'de> Deserialize<'de> for ResidentValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ResidentValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "\"all\" or {SIZE_ACCEPTED}")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ResidentValue, E> {
                SizeValue::deserialize(de::value::I64Deserializer::<E>::new(v))
                    .map(ResidentValue::Size)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ResidentValue, E> {
                Ok(ResidentValue::Size(SizeValue::Pages(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ResidentValue, E> {
                if v == "all" {
                    return Ok(ResidentValue::All);
                }
                parse_size_str(v)
                    .map(ResidentValue::Size)
                    .map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// `repeat = N` or `repeat = "forever"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepeatValue {
    Times(u64),
    Forever,
}

impl<'de> Deserialize<'de> for RepeatValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RepeatValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of rounds (at least 1) or \"forever\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RepeatValue, E> {
                match u64::try_from(v) {
                    Ok(n) if n >= 1 => Ok(RepeatValue::Times(n)),
                    _ => Err(E::custom(format!(
                        "invalid repeat {v}: expected a number of rounds (at least 1) or \"forever\""
                    ))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RepeatValue, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RepeatValue, E> {
                if v == "forever" {
                    return Ok(RepeatValue::Forever);
                }
                Err(E::custom(format!(
                    "invalid repeat '{v}': expected a number of rounds (at least 1) or \"forever\""
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// `kalloc = SIZE` or `kalloc = "until-failure"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KallocValue {
    Size(SizeValue),
    UntilFailure,
}

impl<'de> Deserialize<'de> for KallocValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KallocValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "\"until-failure\" or {SIZE_ACCEPTED}")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KallocValue, E> {
                SizeValue::deserialize(de::value::I64Deserializer::<E>::new(v))
                    .map(KallocValue::Size)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KallocValue, E> {
                Ok(KallocValue::Size(SizeValue::Pages(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KallocValue, E> {
                if v == "until-failure" {
                    return Ok(KallocValue::UntilFailure);
                }
                parse_size_str(v).map(KallocValue::Size).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// `gfp = "GFP_KERNEL"` (any mask [`mm::gfp::Gfp::parse`] reads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GfpValue(pub mm::gfp::Gfp);

impl<'de> Deserialize<'de> for GfpValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        mm::gfp::Gfp::parse(&s)
            .map(GfpValue)
            .map_err(de::Error::custom)
    }
}

/// `prot = "PROT_READ|PROT_WRITE"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtValue(pub u32);

impl<'de> Deserialize<'de> for ProtValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use mm::mmap::{PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE};
        let s = String::deserialize(d)?;
        let mut prot = PROT_NONE;
        for part in s.split('|') {
            prot |= match part.trim() {
                "PROT_NONE" => PROT_NONE,
                "PROT_READ" => PROT_READ,
                "PROT_WRITE" => PROT_WRITE,
                "PROT_EXEC" => PROT_EXEC,
                other => {
                    return Err(de::Error::custom(format!(
                        "unknown protection '{other}': expected PROT_NONE, or PROT_READ, \
                         PROT_WRITE and PROT_EXEC joined by '|'"
                    )))
                }
            };
        }
        Ok(ProtValue(prot))
    }
}

/// A count expectation: exactly `N`, or `{ min = N, max = M }` (either bound optional).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountValue {
    pub min: u64,
    pub max: Option<u64>,
}

impl<'de> Deserialize<'de> for CountValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Range {
            min: Option<u64>,
            max: Option<u64>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CountValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a count (2) or a range ({ min = 1, max = 3 })")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<CountValue, E> {
                let n = u64::try_from(v)
                    .map_err(|_| E::custom(format!("invalid count {v}: negative")))?;
                Ok(CountValue {
                    min: n,
                    max: Some(n),
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<CountValue, E> {
                Ok(CountValue {
                    min: v,
                    max: Some(v),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<CountValue, A::Error> {
                let r = Range::deserialize(de::value::MapAccessDeserializer::new(m))?;
                if r.min.is_none() && r.max.is_none() {
                    return Err(de::Error::custom("a range needs min, max or both"));
                }
                let min = r.min.unwrap_or(0);
                if r.max.is_some_and(|max| max < min) {
                    return Err(de::Error::custom("a range's max is below its min"));
                }
                Ok(CountValue { min, max: r.max })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KindValue {
    Private,
    Shared,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeValue {
    Read,
    Write,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnErrorValue {
    Continue,
    Break,
    Exit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndingValue {
    Completed,
    Panicked,
    TimeLimit,
    Deadlock,
}

impl EndingValue {
    pub fn name(self) -> &'static str {
        match self {
            EndingValue::Completed => "completed",
            EndingValue::Panicked => "panicked",
            EndingValue::TimeLimit => "time-limit",
            EndingValue::Deadlock => "deadlock",
        }
    }
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub name: Option<Spanned<String>>,
    pub about: Option<Spanned<String>>,
    pub memory: Option<Spanned<SizeValue>>,
    pub time_limit: Option<Spanned<DurValue>>,
    pub kernel: Option<Spanned<KnobTable>>,
    #[serde(default)]
    pub process: Vec<Spanned<RawProcess>>,
    pub expect: Option<Spanned<RawExpect>>,
}

/// `[[process]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProcess {
    pub name: Spanned<String>,
    pub pid: Option<Spanned<i64>>,
    pub oom_score_adj: Option<Spanned<i64>>,
    pub clone_vm: Option<Spanned<String>>,
    #[serde(default)]
    pub script: Vec<Spanned<RawAction>>,
    #[serde(default)]
    pub mapping: Vec<Spanned<RawMapping>>,
    #[serde(default)]
    pub thread: Vec<Spanned<RawThread>>,
}

/// `[[process.mapping]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMapping {
    pub name: Spanned<String>,
    pub size: Spanned<SizeValue>,
    pub kind: Option<Spanned<KindValue>>,
    pub locked: Option<Spanned<bool>>,
    pub resident: Option<Spanned<ResidentValue>>,
}

/// `[[process.thread]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThread {
    pub name: Spanned<String>,
    #[serde(default)]
    pub script: Vec<Spanned<RawAction>>,
}

/// One action of a script: a bare word (`"pause"`, `"exit"`) or a table.
#[derive(Debug)]
pub enum RawAction {
    Word(String),
    Table(Box<RawActionTable>),
}

impl<'de> Deserialize<'de> for RawAction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAction;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "an action: \"pause\", \"exit\" or a table such as { sleep = \"100ms\" }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAction, E> {
                Ok(RawAction::Word(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<RawAction, A::Error> {
                RawActionTable::deserialize(de::value::MapAccessDeserializer::new(m))
                    .map(|t| RawAction::Table(Box::new(t)))
            }
        }
        d.deserialize_any(V)
    }
}

/// An action table: one verb key and the modifiers that verb takes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawActionTable {
    // ---- verbs
    pub sleep: Option<Spanned<DurValue>>,
    pub populate: Option<Spanned<SizeValue>>,
    pub mmap: Option<Spanned<String>>,
    pub touch: Option<Spanned<String>>,
    pub munmap: Option<Spanned<String>>,
    pub mprotect: Option<Spanned<String>>,
    pub mlock: Option<Spanned<String>>,
    pub remote_read: Option<Spanned<String>>,
    pub remote_write: Option<Spanned<String>>,
    pub kill: Option<Spanned<String>>,
    pub repeat: Option<Spanned<RepeatValue>>,
    pub in_kernel: Option<Spanned<Vec<Spanned<RawKernelAction>>>>,
    // ---- modifiers
    pub size: Option<Spanned<SizeValue>>,
    pub offset: Option<Spanned<SizeValue>>,
    pub pages: Option<Spanned<SizeValue>>,
    pub kind: Option<Spanned<KindValue>>,
    pub locked: Option<Spanned<bool>>,
    pub prot: Option<Spanned<ProtValue>>,
    pub advance: Option<Spanned<bool>>,
    pub on_error: Option<Spanned<OnErrorValue>>,
    pub stall: Option<Spanned<DurValue>>,
    pub stall_until: Option<Spanned<RawCondition>>,
    #[serde(rename = "do")]
    pub body: Option<Spanned<Vec<Spanned<RawAction>>>>,
    pub after: Option<Spanned<RawCondition>>,
}

/// One step inside `in_kernel = [...]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKernelAction {
    pub mmap_lock: Option<Spanned<ModeValue>>,
    pub mutex: Option<Spanned<String>>,
    pub io_wait: Option<Spanned<DurValue>>,
    pub wait_until: Option<Spanned<RawCondition>>,
    pub kalloc: Option<Spanned<KallocValue>>,
    pub gfp: Option<Spanned<GfpValue>>,
}

/// An ordering condition (`after`, `wait_until`, `stall_until`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCondition {
    pub at: Option<Spanned<DurValue>>,
    pub thread: Option<Spanned<String>>,
    pub blocked_on: Option<Spanned<String>>,
    pub holds: Option<Spanned<String>>,
    pub mode: Option<Spanned<ModeValue>>,
    pub memory: Option<Spanned<String>>,
    pub mapped: Option<Spanned<String>>,
}

/// `[expect]` and each `[[expect.when]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    pub seeds: Option<Spanned<Vec<u64>>>,
    pub kernel: Option<Spanned<CaseKnobTable>>,
    pub ending: Option<Spanned<EndingValue>>,
    pub oom_kills: Option<Spanned<CountValue>>,
    pub killed: Option<Spanned<Vec<Spanned<String>>>>,
    pub livelocks: Option<Spanned<CountValue>>,
    pub sysrq_kills: Option<Spanned<CountValue>>,
    pub reaper: Option<Spanned<RawReaperExpect>>,
    pub panicked: Option<Spanned<bool>>,
    pub survivors: Option<Spanned<Vec<Spanned<String>>>>,
    pub log: Option<Spanned<Vec<String>>>,
    pub no_log: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub when: Vec<Spanned<RawExpect>>,
}

/// `reaper = { attempts = .., reaped = .., gave_up = .. }` of an expectation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReaperExpect {
    pub attempts: Option<CountValue>,
    pub reaped: Option<CountValue>,
    pub gave_up: Option<CountValue>,
}
