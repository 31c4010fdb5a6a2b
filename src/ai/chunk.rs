//! Token-aware chunking: chunks fit the embedding model's 256-token window, measured with the
//! model's own tokenizer (truncation off, or long chunks would look short), split on the
//! largest semantic unit that fits (Markdown blocks, paragraphs, sentences, words).

use text_splitter::{ChunkConfig, ChunkSizer, MarkdownSplitter, TextSplitter};
use tokenizers::Tokenizer;

/// Tokens per chunk, without [CLS]/[SEP]: the model sees at most 256 with them.
const CAPACITY: std::ops::Range<usize> = 160..250;
/// Tokens shared by neighbouring chunks, so a sentence on a boundary is found from both sides.
const OVERLAP: usize = 24;
/// Without a tokenizer (remote embedder and no local model files): ~4 characters a token.
const CHARS_PER_TOKEN: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Markdown,
}

/// One chunk and where it came from, in characters of the original text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub content: String,
    pub char_start: usize,
    pub char_end: usize,
}

pub enum Sizer {
    Tokens(Box<Tokenizer>),
    Chars,
}

impl ChunkSizer for Sizer {
    fn size(&self, chunk: &str) -> usize {
        match self {
            Self::Tokens(tokenizer) => tokenizer
                .encode_fast(chunk, false)
                .map(|e| e.len())
                // An unencodable chunk counts as too big: the splitter then tries smaller units.
                .unwrap_or(usize::MAX),
            Self::Chars => chunk.chars().count().div_ceil(CHARS_PER_TOKEN),
        }
    }
}

/// Splits `text` into chunks (blocking: tokenizes repeatedly).
pub fn split(sizer: &Sizer, format: Format, text: &str) -> Vec<Chunk> {
    let config = ChunkConfig::new(CAPACITY)
        .with_overlap(OVERLAP)
        .expect("the overlap is smaller than the capacity")
        .with_sizer(sizer);
    let pieces: Vec<(usize, &str)> = match format {
        Format::Text => TextSplitter::new(config)
            .chunk_char_indices(text)
            .map(|c| (c.char_offset, c.chunk))
            .collect(),
        Format::Markdown => MarkdownSplitter::new(config)
            .chunk_char_indices(text)
            .map(|c| (c.char_offset, c.chunk))
            .collect(),
    };
    pieces
        .into_iter()
        .map(|(start, chunk)| Chunk {
            content: chunk.to_owned(),
            char_start: start,
            char_end: start + chunk.chars().count(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_text_within_the_window() {
        let text = "Opening hours are nine to five. ".repeat(200);
        let chunks = split(&Sizer::Chars, Format::Text, &text);
        assert!(chunks.len() > 1);
        for c in &chunks {
            assert!(Sizer::Chars.size(&c.content) <= CAPACITY.end);
            let original: String = text
                .chars()
                .skip(c.char_start)
                .take(c.char_end - c.char_start)
                .collect();
            assert_eq!(original, c.content);
        }
        assert_eq!(chunks[0].char_start, 0);
        assert!(split(&Sizer::Chars, Format::Markdown, "# Title\n\nBody.").len() == 1);
        assert!(split(&Sizer::Chars, Format::Text, "   ").is_empty());
    }
}
