//! The Python speech-to-text worker (`workers/asr`, nats-py and PocketSphinx) against a real
//! nats-server and mnemo's processing side: real recorded speech in the formats devices
//! send, transcripts derived from it in the chain with a bounded word error rate, and a
//! SIGKILL in the middle of a batch of 50; and its byte formats against the known-answer
//! vectors.

mod support;

use mnemo_core::{MemoryId, UserId};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use support::*;

/// LibriVox clips of Debian's pocketsphinx-testdata and their transcriptions.
fn librivox() -> Vec<(String, String)> {
    let dir = speech_dir().join("librivox");
    let t = std::fs::read_to_string(dir.join("transcription")).unwrap();
    t.lines()
        .filter_map(|l| {
            let (text, id) = l.rsplit_once(" (")?;
            let text = text
                .trim()
                .trim_start_matches("<s>")
                .trim_end_matches("</s>");
            Some((id.trim_end_matches(')').to_owned(), text.trim().to_owned()))
        })
        .collect()
}

/// "Mr" is how the recogniser's dictionary spells "mister".
fn normal(s: &str) -> String {
    s.split_whitespace()
        .map(|w| if w == "mr" { "mister" } else { w })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn transcripts(h: &Harness, u: &UserId) -> HashMap<MemoryId, (MemoryId, String)> {
    let mut out = HashMap::new();
    for (derived, inputs) in h.derived(u).await {
        assert_eq!(
            inputs.len(),
            1,
            "a transcript is derived from one audio memory"
        );
        out.insert(inputs[0], (derived, h.content(u, &derived).await));
    }
    out
}

/// The bound: CMU's own expected output for these LibriVox clips (`test-lm.match` in the
/// same package) scores 26.8% against their transcriptions (19 errors in 71 words), with
/// a language model tuned to them; the stock en-us model of pocketsphinx 5.1.1 and an
/// Opus round trip may cost a few points more. A pipeline that breaks the audio (a wrong
/// rate, byte order or channel count, a truncated decode) scores above 80%.
const MAX_WER: f64 = 0.35;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_speech_in_wav_raw_webm_and_other_rates_is_transcribed_into_the_chain() {
    let mut h = harness().await;
    h.start(patient(60)).await;
    let alice = user("alice");
    h.stack.ledger.create_user(&alice).await.unwrap();
    let key = h.register("asr", &["audio"]).await;
    h.grant(&alice, "asr", &["audio"]).await;
    let dir = speech_dir();
    let tmp = tempfile::tempdir().unwrap();
    // The known transcripts, by the audio memory that carries them.
    let mut expected: HashMap<MemoryId, (&'static str, String)> = HashMap::new();
    let put = |(how, ct, bytes, text): (&'static str, &str, Vec<u8>, &str)| {
        let key = blake3::hash(format!("{how} {text}").as_bytes()).to_hex();
        let m = audio(ct, bytes, &format!("clip-{}", &key[..16]));
        (how, text.to_owned(), m)
    };
    let mut memories = Vec::new();
    let goforward = std::fs::read(dir.join("goforward.raw")).unwrap();
    memories.push(put((
        "raw 16 kHz PCM",
        "audio/l16; rate=16000",
        goforward,
        "go forward ten meters",
    )));
    convert(
        &dir.join("goforward.raw"),
        &tmp.path().join("gf.webm"),
        48000,
    );
    let webm = std::fs::read(tmp.path().join("gf.webm")).unwrap();
    memories.push(put((
        "WebM/Opus",
        "audio/webm;codecs=opus",
        webm,
        "go forward ten meters",
    )));
    for (i, (id, text)) in librivox().into_iter().enumerate() {
        let wav = dir.join("librivox").join(format!("{id}.wav"));
        if i % 2 == 1 {
            // Every other clip at 44.1 kHz: the worker converts the rate.
            let at = tmp.path().join(format!("{id}-44k.wav"));
            convert(&wav, &at, 44100);
            memories.push(put((
                "WAV 44.1 kHz",
                "audio/wav",
                std::fs::read(at).unwrap(),
                &text,
            )));
        } else {
            memories.push(put((
                "WAV 16 kHz",
                "audio/wav",
                std::fs::read(wav).unwrap(),
                &text,
            )));
        }
    }
    for (how, text, m) in memories {
        let r = h.stack.ledger.append(&alice, m).await.unwrap();
        expected.insert(r.memory.unwrap(), (how, text));
    }
    assert_eq!(expected.len(), 7);
    h.spawn_asr("asr", &key, &[]);
    wait_for("7 transcripts", Duration::from_secs(120), || async {
        h.derived(&alice).await.len() >= 7
    })
    .await;
    let got = transcripts(&h, &alice).await;
    assert_eq!(got.len(), 7, "one transcript per recording");
    let (mut errors, mut words) = (0, 0);
    for (audio_id, (how, reference)) in &expected {
        let (_, hyp) = &got[audio_id];
        let (e, n) = word_errors(&normal(reference), &normal(hyp));
        eprintln!("  {how:>15}: {e}/{n} word errors: {hyp:?} for {reference:?}");
        errors += e;
        words += n;
        assert!(
            e < n,
            "{how}: nothing of {reference:?} was recognised ({hyp:?})"
        );
    }
    let wer = errors as f64 / words as f64;
    eprintln!(
        "word error rate: {:.1}% ({errors} errors in {words} words)",
        wer * 100.0
    );
    assert!(wer <= MAX_WER, "word error rate {wer:.3} above {MAX_WER}");
    // Each transcript is a derived memory of the processor, with its lineage.
    let (any_audio, (transcript, _)) = got.iter().next().unwrap();
    let l = h.processing.lineage(&alice, transcript).await.unwrap();
    assert_eq!(l.inputs, vec![*any_audio]);
    assert_eq!(l.derived_by.as_ref().unwrap().0.as_str(), "asr");
    let up = h.processing.lineage(&alice, any_audio).await.unwrap();
    assert_eq!(up.outputs, vec![*transcript]);
    assert!(
        h.audit(&alice).await.valid(),
        "mnemo-audit verifies the chain"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_worker_killed_in_a_batch_of_50_leaves_50_transcripts_and_no_duplicate() {
    let mut h = harness().await;
    h.start(patient(15)).await;
    let alice = user("alice");
    h.stack.ledger.create_user(&alice).await.unwrap();
    let key = h.register("asr", &["audio"]).await;
    h.grant(&alice, "asr", &["audio"]).await;
    // "go forward": the first 1.2 s of goforward.raw, 50 memories.
    let raw = std::fs::read(speech_dir().join("goforward.raw")).unwrap();
    let clip = raw[..38_400].to_vec();
    let mut batch = Vec::new();
    for i in 0..50 {
        let r = h
            .stack
            .ledger
            .append(
                &alice,
                audio("audio/l16; rate=16000", clip.clone(), &format!("clip-{i}")),
            )
            .await
            .unwrap();
        batch.push(r.memory.unwrap());
    }
    let first = h.spawn_asr("asr", &key, &[]);
    wait_for("5 transcripts", Duration::from_secs(90), || async {
        h.derived(&alice).await.len() >= 5
    })
    .await;
    let pid = nix::unistd::Pid::from_raw(h.workers[first].id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = h.workers[first].wait();
    let at_kill = h.derived(&alice).await.len();
    eprintln!("killed with {at_kill} of 50 transcribed");
    assert!(at_kill < 50, "the kill came in the middle ({at_kill} done)");
    h.spawn_asr("asr", &key, &[]);
    wait_for("50 transcripts", Duration::from_secs(150), || async {
        h.derived(&alice).await.len() >= 50
    })
    .await;
    wait_for("an empty queue", Duration::from_secs(30), || async {
        h.queued().await == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = transcripts(&h, &alice).await;
    let derived = h.derived(&alice).await;
    assert_eq!(derived.len(), 50, "no duplicate transcript");
    let covered: HashSet<MemoryId> = got.keys().copied().collect();
    assert_eq!(covered, batch.iter().copied().collect::<HashSet<_>>());
    assert!(
        got.values().all(|(_, t)| t.contains("forward")),
        "each is a transcript of the clip"
    );
    let dead = mnemo_processing::queue::dead_letters(&h.stack.js, Some("asr"), 100)
        .await
        .unwrap();
    assert!(dead.is_empty(), "no task was given up: {dead:?}");
    assert!(
        h.audit(&alice).await.valid(),
        "mnemo-audit verifies the chain"
    );
    h.stop().await;
}

#[test]
fn the_python_worker_writes_the_signed_formats_as_the_known_answer_vectors_say() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new(python())
        .args(["-m", "mnemo_asr.conformance"])
        .arg(root.join("testdata/vectors.json"))
        .arg(root.join("testdata/processing-vectors.json"))
        .env("PYTHONPATH", asr_dir())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    eprintln!("{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    assert!(said.contains("conformance: 3 vectors"), "{said}");
}
