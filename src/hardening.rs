//! What the process does to itself before it touches a token: on Linux it becomes non-dumpable.
//!
//! smart-rerun holds the GitHub, GitLab and AI tokens in its environment and memory while the tests run
//! as children under the same user. A non-dumpable process (`PR_SET_DUMPABLE` 0) has its `/proc/PID`
//! files owned by root, so a test cannot read `/proc/$PPID/environ` or `/proc/$PPID/mem`, and cannot
//! ptrace it; it also writes no core dump. The flag is not inherited across `execve`, so pytest and
//! everything it starts stay ordinary processes. It does not stop code running as root (a test under
//! `sudo` on a hosted runner): nothing in one process can.

/// Makes this process non-dumpable where the platform has the notion (Linux); elsewhere nothing.
pub(crate) fn protect_process() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes no pointers and only changes this process's flag.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}
