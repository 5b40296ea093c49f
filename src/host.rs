//! Facts about the host that decide whether a plan can run: the memory the emulated frame
//! pool may take.

use crate::plan::UsageError;
use reaper::units::format_size;

/// The host's available memory in bytes: `MemAvailable`, capped by the cgroup's free memory.
pub(crate) fn available_bytes() -> Result<u64, String> {
    let mut sys = sysinfo::System::new().map_err(|e| e.to_string())?;
    sys.refresh_memory_specifics(sysinfo::MemoryRefreshKind::nothing().with_ram());
    let mut avail = sys.available_memory();
    if let Some(cg) = sys.cgroup_limits() {
        avail = avail.min(cg.free_memory);
    }
    Ok(avail)
}

/// Refuse a frame pool of `bytes` that the host cannot hold (it is pre-faulted real memory).
pub fn check_pool_fits(bytes: u64) -> Result<(), UsageError> {
    let available =
        available_bytes().map_err(|e| UsageError(format!("cannot read the host's memory: {e}")))?;
    if bytes > available {
        return Err(UsageError(format!(
            "--memory {}: larger than the host's available memory ({} MiB); choose a smaller --memory",
            format_size(bytes),
            available >> 20
        )));
    }
    Ok(())
}
