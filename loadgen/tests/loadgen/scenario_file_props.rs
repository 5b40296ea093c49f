//! Property tests of scenario files (issue 11): random well-formed files are accepted and
//! never crash the runner — every trial ends in a verdict of the modelled kernel
//! (completed, panicked, time limit, deadlock: exit statuses 0, 3, 4, 5), never an emulator
//! bug or a Rust panic — and random byte mutations of valid files never panic the parser.

use loadgen::scenario::{run_trial, Scenario};
use loadgen::scenario_file::{parse, parse_bytes};
use loadgen::scenarios;
use proptest::prelude::*;
use std::fmt::Write;

/// Choices drawn from a list of random words, so that proptest can shrink a file by
/// shrinking the words.
struct Picker<'a> {
    words: &'a [u32],
    i: usize,
}

impl Picker<'_> {
    fn pick(&mut self, n: usize) -> usize {
        let w = self.words.get(self.i).copied().unwrap_or(0);
        self.i += 1;
        w as usize % n.max(1)
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.pick(100) < percent
    }
    fn one<'s>(&mut self, xs: &[&'s str]) -> &'s str {
        xs[self.pick(xs.len())]
    }
}

/// What the generator knows about a process while it writes the file.
struct P {
    name: String,
    mappings: Vec<String>,
}

/// A condition that is valid by construction: thread conditions watch only `p0`'s main
/// thread, which starts with a populate (it takes its mmap_lock for write and read and
/// allocates) and never waits itself, so nothing can be unsatisfiable or cyclic.
fn condition(p: &mut Picker, procs: &[P], me_is_p0_main: bool) -> String {
    let with_map: Vec<&P> = procs.iter().filter(|x| !x.mappings.is_empty()).collect();
    match p.pick(6) {
        0 => format!("{{ at = \"{}ms\" }}", 1 + p.pick(3000)),
        1 => "{ memory = \"exhausted\" }".to_string(),
        2 if !with_map.is_empty() => {
            let t = with_map[p.pick(with_map.len())];
            format!("{{ mapped = \"{}.{}\" }}", t.name, t.mappings[0])
        }
        3 if !me_is_p0_main => format!(
            "{{ thread = \"p0\", holds = \"mmap_lock:p0\"{} }}",
            p.one(&["", ", mode = \"read\"", ", mode = \"write\""])
        ),
        4 if !me_is_p0_main => "{ thread = \"p0\", blocked_on = \"memory\" }".to_string(),
        5 if !me_is_p0_main => "{ thread = \"p0\", blocked_on = \"mmap_lock:p0\" }".to_string(),
        _ => format!("{{ at = \"{}ms\" }}", 1 + p.pick(500)),
    }
}

fn kernel_steps(p: &mut Picker, procs: &[P], me_is_p0_main: bool) -> String {
    let mut steps = Vec::new();
    if p.chance(50) {
        steps.push(format!(
            "{{ mmap_lock = \"{}\" }}",
            p.one(&["read", "write"])
        ));
    }
    if p.chance(40) {
        steps.push(format!("{{ mutex = \"{}\" }}", p.one(&["m0", "m1"])));
    }
    for _ in 0..1 + p.pick(2) {
        steps.push(match p.pick(4) {
            0 => format!("{{ io_wait = \"{}ms\" }}", p.pick(300)),
            1 if !me_is_p0_main => {
                format!("{{ wait_until = {} }}", condition(p, procs, me_is_p0_main))
            }
            2 => format!(
                "{{ kalloc = \"{}%\", gfp = \"{}\" }}",
                1 + p.pick(40),
                p.one(&["GFP_KERNEL", "GFP_NOFS"])
            ),
            _ => format!("{{ io_wait = \"{}ms\" }}", p.pick(50)),
        });
    }
    format!("[{}]", steps.join(", "))
}

/// One action; `me` is the index of the acting process.
fn action(p: &mut Picker, procs: &[P], me: usize, me_is_p0_main: bool, depth: usize) -> String {
    let with_map: Vec<&P> = procs.iter().filter(|x| !x.mappings.is_empty()).collect();
    let mut a = match p.pick(11) {
        0 => format!("{{ sleep = \"{}ms\"", p.pick(400)),
        1 => format!(
            "{{ populate = \"{}%\"{}",
            1 + p.pick(70),
            p.one(&["", ", kind = \"shared\"", ", locked = true"])
        ),
        2 if depth < 2 => {
            let n = 1 + p.pick(20);
            let body = (0..1 + p.pick(3))
                .map(|_| action(p, procs, me, me_is_p0_main, depth + 1))
                .collect::<Vec<_>>()
                .join(", ");
            format!("{{ repeat = {n}, do = [{body}]")
        }
        3 => format!(
            "{{ repeat = {}, do = [{{ mmap = \"b\", size = {} }}, {{ touch = \"b\" }}, {{ mprotect = \"b\", prot = \"PROT_READ\" }}, {{ munmap = \"b\" }}]",
            1 + p.pick(30),
            1 + p.pick(16)
        ),
        4 => format!(
            "{{ in_kernel = {}",
            kernel_steps(p, procs, me_is_p0_main)
        ),
        5 if !with_map.is_empty() => {
            let t = with_map[p.pick(with_map.len())];
            let verb = p.one(&["remote_read", "remote_write"]);
            let stall = match p.pick(3) {
                0 => format!(", stall = \"{}ms\"", p.pick(100)),
                1 if !me_is_p0_main => {
                    format!(", stall_until = {}", condition(p, procs, me_is_p0_main))
                }
                _ => String::new(),
            };
            format!(
                "{{ {verb} = \"{}.{}\", size = 1, advance = {}, on_error = \"{}\"{stall}",
                t.name,
                t.mappings[0],
                p.chance(50),
                p.one(&["continue", "break", "exit"])
            )
        }
        6 if p.chance(30) => format!("{{ kill = \"{}\"", procs[p.pick(procs.len())].name),
        7 if !procs[me].mappings.is_empty() => format!(
            "{{ touch = \"{}\", pages = 1",
            procs[me].mappings[0]
        ),
        8 if !procs[me].mappings.is_empty() => {
            format!("{{ mlock = \"{}\"", procs[me].mappings[0])
        }
        9 if depth == 0 && p.chance(20) => return "\"pause\"".to_string(),
        10 if depth == 0 && p.chance(10) => return "\"exit\"".to_string(),
        _ => format!("{{ sleep = \"{}ms\"", 1 + p.pick(100)),
    };
    if !me_is_p0_main && p.chance(25) {
        let _ = write!(a, ", after = {}", condition(p, procs, me_is_p0_main));
    }
    a.push_str(" }");
    a
}

fn script(p: &mut Picker, procs: &[P], me: usize, me_is_p0_main: bool) -> String {
    let mut acts = Vec::new();
    if me_is_p0_main {
        acts.push(format!("{{ populate = {} }}", 1 + p.pick(200)));
    }
    for _ in 0..1 + p.pick(5) {
        acts.push(action(p, procs, me, me_is_p0_main, 0));
    }
    // p0's main thread is what conditions watch: mostly keep it alive until it is killed.
    if me_is_p0_main && p.chance(70) {
        acts.push("\"pause\"".to_string());
    }
    format!("[{}]", acts.join(", "))
}

/// A random, well-formed scenario file.
fn random_file(words: &[u32]) -> String {
    let mut p = Picker { words, i: 0 };
    let n = 1 + p.pick(4);
    let procs: Vec<P> = (0..n)
        .map(|i| P {
            name: format!("p{i}"),
            mappings: (0..p.pick(3)).map(|m| format!("m{m}")).collect(),
        })
        .collect();
    let mut out = String::new();
    let _ = writeln!(out, "time_limit = \"6s\"");
    let _ = writeln!(
        out,
        "[kernel]\nlivelock-window = \"1s\"\nwrite-lock = \"{}\"\nreaper = \"{}\"\nreaper-delay = \"{}\"\npanic-on-oom = {}\n",
        p.one(&["killable", "uninterruptible"]),
        p.one(&["on", "off"]),
        p.one(&["0", "0", "200ms"]),
        p.one(&["0", "0", "0", "1"])
    );
    let mut last_pid = 2u32;
    for (i, pr) in procs.iter().enumerate() {
        let _ = writeln!(out, "[[process]]\nname = \"{}\"", pr.name);
        let clone = i > 1 && p.chance(20);
        if clone {
            let _ = writeln!(out, "clone_vm = \"p{}\"", 1 + p.pick(i - 1));
        } else {
            if p.chance(20) {
                last_pid += 1 + p.pick(50) as u32;
                let _ = writeln!(out, "pid = {last_pid}");
            } else {
                last_pid += 1;
            }
            let _ = writeln!(
                out,
                "oom_score_adj = {}",
                p.one(&["0", "0", "-1000", "500", "-300"])
            );
        }
        let maps: Vec<String> = pr
            .mappings
            .iter()
            .map(|m| {
                let size = 1 + p.pick(30);
                let extra = match p.pick(4) {
                    0 => ", kind = \"shared\"".to_string(),
                    1 => ", locked = true".to_string(),
                    2 => format!(", resident = \"{}%\"", 1 + p.pick(size)),
                    _ => String::new(),
                };
                format!("{{ name = \"{m}\", size = \"{size}%\"{extra} }}")
            })
            .collect();
        let _ = writeln!(out, "mapping = [{}]", maps.join(", "));
        let _ = writeln!(out, "script = {}", script(&mut p, &procs, i, i == 0));
        for t in 0..p.pick(3) {
            let _ = writeln!(
                out,
                "[[process.thread]]\nname = \"t{t}\"\nscript = {}",
                script(&mut p, &procs, i, false)
            );
        }
        let _ = writeln!(out);
    }
    out
}

fn cases() -> u32 {
    if cfg!(debug_assertions) {
        12
    } else {
        64
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_well_formed_files_end_in_a_verdict_of_the_model(
        words in prop::collection::vec(any::<u32>(), 300..600),
        seed in 0u64..1000,
    ) {
        let text = random_file(&words);
        let f = match parse("random.toml", "random", &text) {
            Ok(f) => f,
            Err(e) => panic!("the generator wrote a file the parser refuses: {e}\n{text}"),
        };
        let sc = Scenario::from_file(f, "--file random.toml".into());
        let mut cfg = sc.config();
        cfg.seed = seed;
        let t = run_trial(&sc, &cfg).expect("a 16 MiB pool");
        // The exit statuses 0, 3, 4 and 5 of `oomlab scenario`.
        let verdict = t.report.verdict.name();
        prop_assert!(
            ["completed", "panicked", "time-limit", "deadlock"].contains(&verdict),
            "{verdict}: {:?}\n{text}\n{}",
            t.report.verdict,
            t.report.summary().join("\n")
        );
    }
}

/// The valid files to mutate: the canonical scenarios and the worked examples.
fn valid_files() -> Vec<&'static str> {
    let mut v: Vec<&str> = scenarios::FILES.iter().map(|(_, t)| *t).collect();
    v.push(include_str!("../../../scenarios/examples/rfc-chain.toml"));
    v.push(include_str!("../../../scenarios/examples/inode-lock.toml"));
    v
}

/// Bytes a mutation writes: TOML's structure, digits, units, and anything at all.
fn mutation_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        prop::sample::select(b"[]{}\"'=,.\n#%-_0123456789msKiB ".to_vec()),
        any::<u8>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(debug_assertions) { 256 } else { 2048 },
        ..ProptestConfig::default()
    })]

    #[test]
    fn byte_mutations_of_valid_files_never_panic_the_parser(
        file in 0usize..19,
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, mutation_byte()), 1..8),
    ) {
        let files = valid_files();
        let mut bytes = files[file % files.len()].as_bytes().to_vec();
        for (at, op, b) in edits {
            let i = at.index(bytes.len() + 1);
            match op {
                0 if i < bytes.len() => bytes[i] = b,
                1 => bytes.insert(i, b),
                _ if i < bytes.len() => {
                    bytes.remove(i);
                }
                _ => bytes.push(b),
            }
        }
        if let Err(e) = parse_bytes("m.toml", "m", &bytes) {
            let lines = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
            prop_assert!(e.line >= 1 && e.line <= lines, "{e}");
            prop_assert!(e.column >= 1, "{e}");
            prop_assert!(!e.what.contains('\n'), "{e}");
        }
    }
}
