//! Per-task event counters, the kernel's per-CPU counter pattern (`this_cpu_add`,
//! `count_vm_event()`, `lockevent_inc()`): each task keeps its own counters, written only by
//! that task with a plain relaxed load + store (no read-modify-write, no shared cache line on
//! the fast paths); readers sum them over the live tasks plus the totals folded in by exited
//! tasks (`TaskList`). One macro declares a list of events and its counter set, so every list
//! (lock events, vm events) is one place with one line per event.

/// Declare an event list: `per_task_events!(Enum, Counters, NR, count_fn, task_field; /// doc
/// Variant => "name", ...)`.
macro_rules! per_task_events {
    (
        $(#[doc = $edoc:literal])* $event:ident,
        $(#[doc = $cdoc:literal])* $counters:ident,
        $nr:ident, $count:ident, $field:ident;
        $($(#[doc = $doc:literal])* $name:ident => $kname:literal,)*
    ) => {
        $(#[doc = $edoc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(usize)]
        pub enum $event { $($(#[doc = $doc])* $name,)* }

        impl $event {
            /// Every event, in declaration order.
            pub const ALL: &'static [$event] = &[$($event::$name,)*];
            /// The kernel's (or oomlab's) snake_case name of the event.
            pub const fn name(self) -> &'static str {
                match self { $($event::$name => $kname,)* }
            }
        }

        /// Number of distinct events.
        pub const $nr: usize = $event::ALL.len();

        $(#[doc = $cdoc])*
        pub struct $counters([std::sync::atomic::AtomicU64; $nr]);

        impl Default for $counters {
            fn default() -> Self {
                $counters(std::array::from_fn(|_| std::sync::atomic::AtomicU64::new(0)))
            }
        }

        impl $counters {
            /// Add to a counter that only the calling task writes (`this_cpu_add`).
            #[inline]
            pub(crate) fn add_local(&self, ev: $event, n: u64) {
                let c = &self.0[ev as usize];
                c.store(
                    c.load(std::sync::atomic::Ordering::Relaxed).wrapping_add(n),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            /// Add to a shared counter (folding).
            pub(crate) fn add_shared(&self, ev: $event, n: u64) {
                self.0[ev as usize].fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
            pub fn get(&self, ev: $event) -> u64 {
                self.0[ev as usize].load(std::sync::atomic::Ordering::Relaxed)
            }
            /// A plain copy of all counters.
            pub fn snapshot(&self) -> [u64; $nr] {
                std::array::from_fn(|i| self.0[i].load(std::sync::atomic::Ordering::Relaxed))
            }
            pub(crate) fn fold_into(&self, total: &$counters) {
                for ev in $event::ALL {
                    let v = self.get(*ev);
                    if v != 0 {
                        total.add_shared(*ev, v);
                    }
                }
            }
        }

        /// Count `n` events for the current task; a no-op outside emulated tasks.
        #[inline]
        pub(crate) fn $count(ev: $event, n: u64) {
            crate::sched::with_current_opt(|t| {
                if let Some(t) = t {
                    t.$field().add_local(ev, n)
                }
            })
        }
    };
}

pub(crate) use per_task_events;
