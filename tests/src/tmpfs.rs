//! A small tmpfs mounted by a test (as root) to make a volume fill up: the daemon's data
//! directory in the disk-full tests, a restore's destination in the backup error tests.
//! Where mounting is not permitted, [`Tmpfs::mount`] prints why and the test skips.

use std::path::Path;
use std::process::Command;

/// A tmpfs mounted on a fresh temporary directory, unmounted when dropped (even on a failed
/// assertion).
#[derive(Debug)]
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=`), or `None` (printed) when not permitted.
    pub fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(output) if output.status.success() => Some(Tmpfs { dir }),
            Ok(output) => {
                println!(
                    "SKIPPED: cannot mount a tmpfs (needs root): {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                );
                None
            }
            Err(error) => {
                println!("SKIPPED: cannot run mount: {error}");
                None
            }
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Changes the size (more space: the test's "operator freed space").
    pub fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.path())
            .status()
            .expect("mount runs");
        assert!(status.success(), "remounting the tmpfs with size={size}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a daemon killed a moment ago may still hold files open.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}
