//! Where the Python ASR worker and its test data are: what `scripts/setup.sh` installs
//! (`$MNEMO_TOOLS`, default `~/.local/share/mnemo`) and this checkout's `workers/asr`.
//! `mnemo dev`, the tests and the benchmark find them here.

use std::path::PathBuf;

/// The Python with the ASR worker's packages: `$MNEMO_PYTHON` (setup.sh exports it), else
/// setup.sh's venv, else `python3` on `PATH`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("MNEMO_PYTHON") {
        return p.into();
    }
    crate::port::tools_dir()
        .map(|t| t.join("venv/bin/python"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| "python3".into())
}

/// The Python worker's source (`python -m mnemo_asr` with it on `PYTHONPATH`):
/// `$MNEMO_ASR_DIR`, else this checkout's `workers/asr`.
pub fn asr_dir() -> PathBuf {
    std::env::var_os("MNEMO_ASR_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../workers/asr"))
}

/// Debian's pocketsphinx-testdata as setup.sh unpacks it (`goforward.raw`, `librivox/`):
/// `$MNEMO_SPEECH_DATA`, else its place under the tools directory.
pub fn speech_data() -> PathBuf {
    std::env::var_os("MNEMO_SPEECH_DATA")
        .map(PathBuf::from)
        .or_else(|| {
            crate::port::tools_dir().map(|t| t.join("speech/usr/share/pocketsphinx/test/data"))
        })
        .unwrap_or_else(|| "speech-data-missing".into())
}
