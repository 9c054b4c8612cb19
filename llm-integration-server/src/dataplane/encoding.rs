//! Content codings (RFC 9110 § 8.4): `gzip`, `deflate` (zlib, or raw
//! deflate as some clients send it), `br` and `zstd`, with `flate2`,
//! `brotli` and `zstd`.
//!
//! A compressed request body is decoded to read it (its `model`, its output
//! limit), within the body size limit, so a decompression bomb gets 413;
//! it is forwarded as sent unless the gateway edits it. A compressed answer
//! (which the gateway did not ask for) is decoded on the side for the
//! usage meter, and relayed decoded only when the relay changes it.

use std::io::{Read, Write};

/// One content coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// `gzip` (RFC 1952).
    Gzip,
    /// `deflate`: zlib (RFC 1950), or raw deflate (RFC 1951).
    Deflate,
    /// `br` (RFC 7932).
    Brotli,
    /// `zstd` (RFC 8878).
    Zstd,
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A coding this gateway does not know.
    #[error("Content-Encoding {0:?} is not supported; send the body uncompressed, or as gzip, deflate, br or zstd")]
    Unsupported(String),
    /// The decoded body is over the limit.
    #[error("the decoded body is over the limit of {0} bytes")]
    TooLarge(usize),
    /// The bytes are not in the coding they claim.
    #[error("the body is not valid {coding}: {reason}")]
    Invalid {
        /// The coding's name.
        coding: &'static str,
        /// What the decoder said.
        reason: String,
    },
}

impl Coding {
    fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }
}

/// The codings a `Content-Encoding` header lists, in the order they were
/// applied (`identity` skipped). `None` when there is none.
///
/// # Errors
/// [`DecodeError::Unsupported`] for a coding not in [`Coding`].
pub fn codings(headers: &http::HeaderMap) -> Result<Option<Vec<Coding>>, DecodeError> {
    let mut out = Vec::new();
    for value in headers.get_all(http::header::CONTENT_ENCODING) {
        let text = value.to_str().map_err(|_| {
            DecodeError::Unsupported(String::from_utf8_lossy(value.as_bytes()).into_owned())
        })?;
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            out.push(match name.to_ascii_lowercase().as_str() {
                "identity" => continue,
                "gzip" | "x-gzip" => Coding::Gzip,
                "deflate" => Coding::Deflate,
                "br" => Coding::Brotli,
                "zstd" => Coding::Zstd,
                _ => return Err(DecodeError::Unsupported(name.to_owned())),
            });
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// Whether a `deflate` body starts with a zlib header (RFC 1950 § 2.2:
/// method 8, and the two bytes a multiple of 31); if not, it is raw deflate.
fn is_zlib(body: &[u8]) -> bool {
    match body {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
        _ => true,
    }
}

fn invalid(coding: Coding, e: std::io::Error) -> DecodeError {
    DecodeError::Invalid {
        coding: coding.name(),
        reason: e.to_string(),
    }
}

/// Reads `reader` to the end, failing past `limit` bytes.
fn read_limited(reader: impl Read, limit: usize, coding: Coding) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| invalid(coding, e))?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge(limit));
    }
    Ok(out)
}

fn decode_one(body: &[u8], coding: Coding, limit: usize) -> Result<Vec<u8>, DecodeError> {
    match coding {
        Coding::Gzip => read_limited(flate2::read::MultiGzDecoder::new(body), limit, coding),
        Coding::Deflate if is_zlib(body) => {
            read_limited(flate2::read::ZlibDecoder::new(body), limit, coding)
        }
        Coding::Deflate => read_limited(flate2::read::DeflateDecoder::new(body), limit, coding),
        Coding::Brotli => read_limited(brotli::Decompressor::new(body, 4096), limit, coding),
        Coding::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(body).map_err(|e| invalid(coding, e))?;
            read_limited(decoder, limit, coding)
        }
    }
}

/// Decodes a whole body coded with `codings` (in the order applied),
/// producing at most `limit` bytes.
///
/// # Errors
/// [`DecodeError::TooLarge`] past `limit`; [`DecodeError::Invalid`] for
/// bytes that are not in their coding.
pub fn decode(body: &[u8], codings: &[Coding], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut current = body.to_vec();
    for coding in codings.iter().rev() {
        current = decode_one(&current, *coding, limit)?;
    }
    Ok(current)
}

/// A decoder fed a body chunk by chunk.
trait ChunkDecoder: Send {
    fn push(&mut self, chunk: &[u8]) -> std::io::Result<Vec<u8>>;
}

/// A `Write` decoder whose output collects in a `Vec`.
struct Writing<W: Write + Send> {
    inner: W,
    take: fn(&mut W) -> Vec<u8>,
}

impl<W: Write + Send> ChunkDecoder for Writing<W> {
    fn push(&mut self, chunk: &[u8]) -> std::io::Result<Vec<u8>> {
        self.inner.write_all(chunk)?;
        self.inner.flush()?;
        Ok((self.take)(&mut self.inner))
    }
}

fn writer(coding: Coding) -> std::io::Result<Box<dyn ChunkDecoder>> {
    Ok(match coding {
        Coding::Gzip => Box::new(Writing {
            inner: flate2::write::MultiGzDecoder::new(Vec::new()),
            take: |w| std::mem::take(w.get_mut()),
        }),
        Coding::Deflate => Box::new(Deflate::Undecided(Vec::new())),
        Coding::Brotli => Box::new(Writing {
            inner: brotli::DecompressorWriter::new(Vec::new(), 4096),
            take: |w| std::mem::take(w.get_mut()),
        }),
        Coding::Zstd => Box::new(Writing {
            inner: zstd::stream::write::Decoder::new(Vec::new())?,
            take: |w| std::mem::take(w.get_mut()),
        }),
    })
}

/// `deflate` as it streams: zlib or raw, told by the first two bytes.
enum Deflate {
    Undecided(Vec<u8>),
    Zlib(flate2::write::ZlibDecoder<Vec<u8>>),
    Raw(flate2::write::DeflateDecoder<Vec<u8>>),
}

impl ChunkDecoder for Deflate {
    fn push(&mut self, chunk: &[u8]) -> std::io::Result<Vec<u8>> {
        if let Deflate::Undecided(head) = self {
            head.extend_from_slice(chunk);
            if head.len() < 2 {
                return Ok(Vec::new());
            }
            let head = std::mem::take(head);
            *self = if is_zlib(&head) {
                Deflate::Zlib(flate2::write::ZlibDecoder::new(Vec::new()))
            } else {
                Deflate::Raw(flate2::write::DeflateDecoder::new(Vec::new()))
            };
            return self.push(&head);
        }
        match self {
            Deflate::Zlib(w) => {
                w.write_all(chunk)?;
                w.flush()?;
                Ok(std::mem::take(w.get_mut()))
            }
            Deflate::Raw(w) => {
                w.write_all(chunk)?;
                w.flush()?;
                Ok(std::mem::take(w.get_mut()))
            }
            Deflate::Undecided(_) => Ok(Vec::new()),
        }
    }
}

/// Decodes a coded body as it streams; stops (and says so) after `limit`
/// decoded bytes in all, or at the first invalid byte.
pub struct StreamDecoder {
    stages: Vec<Box<dyn ChunkDecoder>>,
    produced: usize,
    limit: usize,
    failed: bool,
}

impl StreamDecoder {
    /// A decoder for `codings` (in the order applied).
    ///
    /// # Errors
    /// A decoder that cannot be set up (zstd's context).
    pub fn new(codings: &[Coding], limit: usize) -> Result<Self, DecodeError> {
        let stages = codings
            .iter()
            .rev()
            .map(|c| writer(*c).map_err(|e| invalid(*c, e)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StreamDecoder {
            stages,
            produced: 0,
            limit,
            failed: false,
        })
    }

    /// The decoded bytes of the next chunk (empty once decoding failed or
    /// passed the limit).
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, DecodeError> {
        if self.failed {
            return Ok(Vec::new());
        }
        let mut data = chunk.to_vec();
        for stage in &mut self.stages {
            data = match stage.push(&data) {
                Ok(d) => d,
                Err(e) => {
                    self.failed = true;
                    return Err(DecodeError::Invalid {
                        coding: "the answer's Content-Encoding",
                        reason: e.to_string(),
                    });
                }
            };
        }
        self.produced = self.produced.saturating_add(data.len());
        if self.produced > self.limit {
            self.failed = true;
            return Err(DecodeError::TooLarge(self.limit));
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn every_coding(data: &[u8]) -> Vec<(Coding, Vec<u8>)> {
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zlib.write_all(data).unwrap();
        let mut raw =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(data).unwrap();
        let mut br = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut br, 4096, 5, 22);
            w.write_all(data).unwrap();
        }
        vec![
            (Coding::Gzip, gzip(data)),
            (Coding::Deflate, zlib.finish().unwrap()),
            (Coding::Deflate, raw.finish().unwrap()),
            (Coding::Brotli, br),
            (Coding::Zstd, zstd::encode_all(data, 3).unwrap()),
        ]
    }

    #[test]
    fn whole_bodies_every_coding() {
        let data = br#"{"model":"claude-sonnet-4-6","max_tokens":5}"#;
        for (coding, coded) in every_coding(data) {
            assert_eq!(
                decode(&coded, &[coding], 1 << 20).unwrap(),
                data,
                "{coding:?}"
            );
            // Chunk by chunk, in any split.
            for split in [1, 3, 17, coded.len()] {
                let mut d = StreamDecoder::new(&[coding], 1 << 20).unwrap();
                let mut out = Vec::new();
                for chunk in coded.chunks(split) {
                    out.extend(d.push(chunk).unwrap());
                }
                assert_eq!(out, data, "{coding:?} split {split}");
            }
        }
        // Two codings, applied in order.
        let twice = gzip(&zstd::encode_all(&data[..], 3).unwrap());
        assert_eq!(
            decode(&twice, &[Coding::Zstd, Coding::Gzip], 1 << 20).unwrap(),
            data
        );
    }

    #[test]
    fn bombs_and_garbage() {
        let zeros = vec![0u8; 10 << 20];
        for (coding, coded) in every_coding(&zeros) {
            assert_eq!(
                decode(&coded, &[coding], 1 << 20),
                Err(DecodeError::TooLarge(1 << 20)),
                "{coding:?}"
            );
            let mut d = StreamDecoder::new(&[coding], 1 << 20).unwrap();
            let mut failed = false;
            for chunk in coded.chunks(4096) {
                if d.push(chunk).is_err() {
                    failed = true;
                }
            }
            assert!(failed, "{coding:?} stream stops at the limit");
        }
        assert!(matches!(
            decode(b"not gzip", &[Coding::Gzip], 100),
            Err(DecodeError::Invalid { .. })
        ));
    }

    #[test]
    fn header_lists() {
        let mut h = http::HeaderMap::new();
        assert_eq!(codings(&h), Ok(None));
        h.insert("content-encoding", "identity".parse().unwrap());
        assert_eq!(codings(&h), Ok(None));
        h.insert("content-encoding", "GZIP, br".parse().unwrap());
        assert_eq!(codings(&h), Ok(Some(vec![Coding::Gzip, Coding::Brotli])));
        h.insert("content-encoding", "compress".parse().unwrap());
        assert_eq!(
            codings(&h),
            Err(DecodeError::Unsupported("compress".into()))
        );
    }
}
