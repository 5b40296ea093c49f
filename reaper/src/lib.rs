//! OOM killer and oom_reaper (issue 4).
