//! Files trailsetup writes hold audit records, queue URLs and resource ARNs: directories it creates are 0700 and
//! files 0600 (OpenSSH's rule for private files), whatever the umask.

use std::fs::{File, OpenOptions};
use std::path::Path;

use anyhow::Context as _;

#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};

/// `mkdir -p` with mode 0700 for every directory it creates (existing ones are left as they are).
pub fn private_dir_all(dir: &Path) -> anyhow::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    b.mode(0o700);
    b.create(dir).with_context(|| format!("creating {}", dir.display()))
}

/// The parent of `path`, created private when missing.
pub fn private_parent(path: &Path) -> anyhow::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => private_dir_all(d),
        None => Ok(()),
    }
}

fn private_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    o.mode(0o600);
    o
}

/// Make an existing file of ours private (a file made before this rule, or under a loose umask).
pub fn make_private(f: &File, path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mode = f.metadata().with_context(|| format!("reading {}", path.display()))?.permissions().mode();
        if mode & 0o077 != 0 {
            f.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))
                .with_context(|| format!("making {} private (chmod 600)", path.display()))?;
        }
    }
    let _ = (f, path);
    Ok(())
}

/// Create or truncate `path` for writing, mode 0600.
pub fn create(path: &Path) -> anyhow::Result<File> {
    private_parent(path)?;
    let f = private_options().write(true).create(true).truncate(true).open(path).with_context(|| format!("writing {}", path.display()))?;
    make_private(&f, path)?;
    Ok(f)
}

/// Open `path` for appending, created 0600 when missing.
pub fn append(path: &Path) -> anyhow::Result<File> {
    private_parent(path)?;
    let f = private_options().append(true).create(true).open(path).with_context(|| format!("opening {}", path.display()))?;
    make_private(&f, path)?;
    Ok(f)
}

/// Open (never truncate) `path` for writing, created 0600 when missing: lock files.
pub fn open_rw(path: &Path) -> anyhow::Result<File> {
    private_parent(path)?;
    let f = private_options().write(true).create(true).truncate(false).open(path).with_context(|| format!("opening {}", path.display()))?;
    make_private(&f, path)?;
    Ok(f)
}

/// Write `bytes` to `path` through a private temp file: write, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = create(&tmp)?;
    f.write_all(bytes).with_context(|| format!("writing {}", tmp.display()))?;
    f.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn files_are_0600_and_new_directories_0700() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("a/b/state.json");
        write_atomic(&p, b"{}").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(t.path().join("a")).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(t.path().join("a/b")).unwrap().permissions().mode() & 0o777, 0o700);
        // an old world-readable file of ours becomes private when we open it again
        let q = t.path().join("q.jsonl");
        std::fs::write(&q, b"x\n").unwrap();
        std::fs::set_permissions(&q, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(append(&q).unwrap());
        assert_eq!(std::fs::metadata(&q).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
