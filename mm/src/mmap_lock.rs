//! The `mmap_lock` wrappers (include/linux/mmap_lock.h, v5.8+): thin calls over the
//! address space's rw_semaphore with identical semantics, which also record the hold in the
//! current task's held-lock list (what lockdep's `held_locks` shows), so that livelock
//! reports can name the holders of a victim's `mmap_lock`. All emulated mm code takes
//! `mmap_lock` through these.

use crate::locking::rwsem::{Killed, ReadGuard, WriteGuard};
use crate::mm_types::{MmStruct, VmaTree};
use crate::sched;
use std::ops::{Deref, DerefMut};

fn lock_id(mm: &MmStruct) -> usize {
    mm.mmap_lock.raw() as *const _ as usize
}

fn acquired(mm: &MmStruct, write: bool) {
    sched::with_current_opt(|t| {
        if let Some(t) = t {
            t.lockdep_acquired(lock_id(mm), write)
        }
    });
}

fn released(mm: &MmStruct) {
    sched::with_current_opt(|t| {
        if let Some(t) = t {
            t.lockdep_released(lock_id(mm))
        }
    });
}

/// `mmap_lock` held for read.
pub struct MmapReadGuard<'a> {
    mm: &'a MmStruct,
    g: Option<ReadGuard<'a, VmaTree>>,
}

/// `mmap_lock` held for write.
pub struct MmapWriteGuard<'a> {
    mm: &'a MmStruct,
    g: Option<WriteGuard<'a, VmaTree>>,
}

impl Deref for MmapReadGuard<'_> {
    type Target = VmaTree;
    fn deref(&self) -> &VmaTree {
        self.g.as_ref().expect("live guard")
    }
}
impl Deref for MmapWriteGuard<'_> {
    type Target = VmaTree;
    fn deref(&self) -> &VmaTree {
        self.g.as_ref().expect("live guard")
    }
}
impl DerefMut for MmapWriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut VmaTree {
        self.g.as_mut().expect("live guard")
    }
}
impl Drop for MmapReadGuard<'_> {
    fn drop(&mut self) {
        drop(self.g.take());
        released(self.mm);
    }
}
impl Drop for MmapWriteGuard<'_> {
    fn drop(&mut self) {
        drop(self.g.take());
        released(self.mm);
    }
}

impl<'a> MmapWriteGuard<'a> {
    /// `mmap_write_downgrade()`.
    pub fn downgrade(mut self) -> MmapReadGuard<'a> {
        let g = self.g.take().expect("live guard").downgrade();
        let mm = self.mm;
        std::mem::forget(self);
        released(mm);
        acquired(mm, false);
        MmapReadGuard { mm, g: Some(g) }
    }
}

fn read_guard<'a>(mm: &'a MmStruct, g: ReadGuard<'a, VmaTree>) -> MmapReadGuard<'a> {
    acquired(mm, false);
    MmapReadGuard { mm, g: Some(g) }
}
fn write_guard<'a>(mm: &'a MmStruct, g: WriteGuard<'a, VmaTree>) -> MmapWriteGuard<'a> {
    acquired(mm, true);
    MmapWriteGuard { mm, g: Some(g) }
}

/// `mmap_read_lock()`: `down_read`, TASK_UNINTERRUPTIBLE.
pub fn mmap_read_lock(mm: &MmStruct) -> MmapReadGuard<'_> {
    read_guard(mm, mm.mmap_lock.read())
}
/// `mmap_read_lock_killable()`.
pub fn mmap_read_lock_killable(mm: &MmStruct) -> Result<MmapReadGuard<'_>, Killed> {
    Ok(read_guard(mm, mm.mmap_lock.read_killable()?))
}
/// `mmap_read_trylock()`.
pub fn mmap_read_trylock(mm: &MmStruct) -> Option<MmapReadGuard<'_>> {
    mm.mmap_lock.try_read().map(|g| read_guard(mm, g))
}
/// `mmap_write_lock()`: `down_write`, TASK_UNINTERRUPTIBLE.
pub fn mmap_write_lock(mm: &MmStruct) -> MmapWriteGuard<'_> {
    write_guard(mm, mm.mmap_lock.write())
}
/// `mmap_write_lock_killable()` (v4.7 `down_write_killable`).
pub fn mmap_write_lock_killable(mm: &MmStruct) -> Result<MmapWriteGuard<'_>, Killed> {
    Ok(write_guard(mm, mm.mmap_lock.write_killable()?))
}
/// `mmap_write_trylock()`.
pub fn mmap_write_trylock(mm: &MmStruct) -> Option<MmapWriteGuard<'_>> {
    mm.mmap_lock.try_write().map(|g| write_guard(mm, g))
}
