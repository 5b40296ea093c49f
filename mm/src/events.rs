//! Per-task event counters, the kernel's per-CPU counter pattern (`this_cpu_add`,
//! `count_vm_event()`, `lockevent_inc()`): each task keeps its own counters, written only by
//! that task with a plain relaxed load + store (no read-modify-write, no shared cache line on
//! the fast paths); readers sum them over the live tasks plus the totals folded in by exited
//! tasks (`TaskList`). One macro declares a list of events and its counter set, so every list
//! (lock events, vm events, `mmap_lock` wait histograms) is one place with one line per event.
//!
//! A list has one counter per event, or `slots = N` counters per event (a histogram's buckets
//! and sums: [`crate::mmap_lock::MmapLockWait`]).

/// Declare an event list: `per_task_events!(Enum, Counters, NR, count_fn, task_field; /// doc
/// Variant => "name", ...)`, or `per_task_events!(Enum, Counters, NR, slots = N; ...)` for `N`
/// counters per event (the caller adds to its task's set with `add_local_at`).
macro_rules! per_task_events {
    (
        $(#[doc = $edoc:literal])* $event:ident,
        $(#[doc = $cdoc:literal])* $counters:ident,
        $nr:ident, $count:ident, $field:ident;
        $($(#[doc = $doc:literal])* $name:ident => $kname:literal,)*
    ) => {
        crate::events::per_task_events!(@list
            $(#[doc = $edoc])* $event, $(#[doc = $cdoc])* $counters, $nr, 1;
            $($(#[doc = $doc])* $name => $kname,)*
        );

        impl $counters {
            /// Add to a counter that only the calling task writes (`this_cpu_add`).
            #[inline]
            pub(crate) fn add_local(&self, ev: $event, n: u64) {
                self.add_local_slot(ev as usize, n)
            }
            pub fn get(&self, ev: $event) -> u64 {
                self.0[ev as usize].load(std::sync::atomic::Ordering::Relaxed)
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
    (
        $(#[doc = $edoc:literal])* $event:ident,
        $(#[doc = $cdoc:literal])* $counters:ident,
        $nr:ident, slots = $slots:expr;
        $($(#[doc = $doc:literal])* $name:ident => $kname:literal,)*
    ) => {
        crate::events::per_task_events!(@list
            $(#[doc = $edoc])* $event, $(#[doc = $cdoc])* $counters, $nr, $slots;
            $($(#[doc = $doc])* $name => $kname,)*
        );

        impl $counters {
            /// Add to counter `slot` of `ev`, which only the calling task writes.
            #[inline]
            pub(crate) fn add_local_at(&self, ev: $event, slot: usize, n: u64) {
                assert!(slot < $slots, "slot {slot} out of range");
                self.add_local_slot(ev as usize * $slots + slot, n)
            }
            /// Counter `slot` of `ev`.
            pub fn get_at(&self, ev: $event, slot: usize) -> u64 {
                assert!(slot < $slots, "slot {slot} out of range");
                self.0[ev as usize * $slots + slot].load(std::sync::atomic::Ordering::Relaxed)
            }
        }
    };
    (@list
        $(#[doc = $edoc:literal])* $event:ident,
        $(#[doc = $cdoc:literal])* $counters:ident,
        $nr:ident, $slots:expr;
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
        pub struct $counters([std::sync::atomic::AtomicU64; $nr * $slots]);

        impl Default for $counters {
            fn default() -> Self {
                $counters(std::array::from_fn(|_| std::sync::atomic::AtomicU64::new(0)))
            }
        }

        impl $counters {
            #[inline]
            fn add_local_slot(&self, i: usize, n: u64) {
                let c = &self.0[i];
                c.store(
                    c.load(std::sync::atomic::Ordering::Relaxed).wrapping_add(n),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            /// A plain copy of all counters (event-major: every slot of the first event, then
            /// the next event's).
            pub fn snapshot(&self) -> [u64; $nr * $slots] {
                std::array::from_fn(|i| self.0[i].load(std::sync::atomic::Ordering::Relaxed))
            }
            /// Add this set into `total` (a task's counters into the exited tasks' totals).
            pub(crate) fn fold_into(&self, total: &$counters) {
                for (c, t) in self.0.iter().zip(total.0.iter()) {
                    let v = c.load(std::sync::atomic::Ordering::Relaxed);
                    if v != 0 {
                        t.fetch_add(v, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        }
    };
}

pub(crate) use per_task_events;
