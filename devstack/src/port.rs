//! Free loopback ports, and where the pinned tools are installed.

use std::net::TcpListener;

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it).
pub fn free_port() -> crate::Result<u16> {
    // Binding port 0 makes the kernel choose; the listener is dropped before the server
    // binds, a window other processes on this machine rarely hit (the server then fails to
    // start and says so).
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(crate::DevstackError::io("finding a free port"))
}

/// The port recorded in `file` when it is free now, else a free one, recorded there: a
/// server kept in a directory (`mnemo dev`'s `.mnemo/`) listens on the same port from one
/// start to the next, so its URLs stay as they were printed.
pub fn stable_port(file: &std::path::Path) -> crate::Result<u16> {
    let recorded = std::fs::read_to_string(file)
        .ok()
        .and_then(|t| t.trim().parse::<u16>().ok())
        .filter(|p| *p != 0 && TcpListener::bind(("127.0.0.1", *p)).is_ok());
    if let Some(p) = recorded {
        return Ok(p);
    }
    let p = free_port()?;
    std::fs::write(file, format!("{p}\n")).map_err(crate::DevstackError::io(format!(
        "writing {}",
        file.display()
    )))?;
    Ok(p)
}

/// Where `scripts/setup.sh` installs the pinned servers: `$MNEMO_TOOLS`, else
/// `~/.local/share/mnemo`.
pub(crate) fn tools_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("MNEMO_TOOLS")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".local/share/mnemo"))
        })
}

/// Where a server keeps its files: a temporary directory removed on drop, or a directory
/// that outlives it (`mnemo dev`'s `.mnemo/`).
pub(crate) enum Home {
    Temp(tempfile::TempDir),
    Kept(std::path::PathBuf),
}

impl Home {
    pub(crate) fn temp(prefix: &str) -> crate::Result<Self> {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .map(Home::Temp)
            .map_err(crate::DevstackError::io("creating a temporary directory"))
    }

    pub(crate) fn kept(dir: &std::path::Path) -> crate::Result<Self> {
        std::fs::create_dir_all(dir).map_err(crate::DevstackError::io(format!(
            "creating {}",
            dir.display()
        )))?;
        Ok(Home::Kept(dir.to_path_buf()))
    }

    /// A port for the server: the same from one start to the next in a kept directory
    /// ([`stable_port`], recorded in `port`), any free one in a temporary one.
    pub(crate) fn port(&self) -> crate::Result<u16> {
        match self {
            Home::Temp(_) => free_port(),
            Home::Kept(p) => stable_port(&p.join("port")),
        }
    }

    /// Whether the directory outlives the server (then it is stopped cleanly on drop).
    pub(crate) fn is_kept(&self) -> bool {
        matches!(self, Home::Kept(_))
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        match self {
            Home::Temp(t) => t.path(),
            Home::Kept(p) => p,
        }
    }
}
